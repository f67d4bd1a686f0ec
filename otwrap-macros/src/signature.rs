//! Reads the annotated function's signature: which parameters are inputs
//! (by value or by reference), which one is the `#[workdir]`, and whether the
//! return type is a `Result`. Rejects what cannot be a model, with spans.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, PathArguments, ReturnType, Type};

/// How an input parameter is passed.
pub(crate) struct InputParam {
    /// The owned type stored in the batch inputs.
    pub(crate) ty: Type,
    /// `true` for `&T` parameters (passed by reference, not cloned).
    pub(crate) by_ref: bool,
    /// The parameter's name (empty for a pattern such as `(a, b): (f64, f64)`).
    pub(crate) name: String,
}

/// The parameter that receives the work directory.
pub(crate) struct WorkdirParam {
    /// The span of its `#[workdir]` attribute.
    pub(crate) span: Span,
}

/// What the expansion needs to know about the function.
pub(crate) struct Signature {
    /// The parameters in order; `None` for the workdir parameter.
    pub(crate) params: Vec<Option<InputParam>>,
    pub(crate) workdir: Option<WorkdirParam>,
    /// `Some(T)` for `-> T` (or `()`), the full type for `-> Result<..>`.
    pub(crate) output: Output,
}

pub(crate) enum Output {
    /// `-> T` or no return type.
    Plain(Type),
    /// `-> Result<T, E>` (any type whose last path segment is `Result`).
    Fallible(Type),
}

fn is_workdir_attr(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("workdir")
}

/// Removes `#[workdir]` from the parameters, so the function can be emitted
/// as written (also when expansion fails).
pub(crate) fn strip_workdir_attrs(item: &mut ItemFn) {
    for input in &mut item.sig.inputs {
        if let FnArg::Typed(pat) = input {
            pat.attrs.retain(|a| !is_workdir_attr(a));
        }
    }
}

fn push(errors: &mut Option<syn::Error>, e: syn::Error) {
    match errors {
        Some(all) => all.combine(e),
        None => *errors = Some(e),
    }
}

/// Analyses and validates the signature of `item` (before its `#[workdir]`
/// attributes are stripped).
pub(crate) fn analyse(item: &ItemFn) -> syn::Result<Signature> {
    let sig = &item.sig;
    let mut errors = None;
    if let Some(c) = &sig.constness {
        push(&mut errors, syn::Error::new(c.span(), "`const fn` cannot be an otwrap model: a model runs at run time in threads, processes or on other hosts; remove `const`"));
    }
    if let Some(a) = &sig.asyncness {
        push(&mut errors, syn::Error::new(a.span(), "`async fn` cannot be an otwrap model: otwrap runs each point on a thread, a process or a remote worker; make it a plain `fn` (block on your async code inside it if you must)"));
    }
    if let Some(u) = &sig.unsafety {
        push(&mut errors, syn::Error::new(u.span(), "`unsafe fn` cannot be an otwrap model: otwrap calls the model for you; make it a safe `fn` that wraps the unsafe code"));
    }
    if let Some(abi) = &sig.abi {
        push(&mut errors, syn::Error::new(abi.span(), "an `extern` function cannot be an otwrap model; annotate a plain Rust `fn` that calls it"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        push(&mut errors, syn::Error::new(sig.generics.span(), "a generic function cannot be an otwrap model: workers find a model by name and must know its concrete input and output types; annotate a non-generic wrapper that calls it"));
    }
    if let Some(v) = &sig.variadic {
        push(
            &mut errors,
            syn::Error::new(v.span(), "a variadic function cannot be an otwrap model"),
        );
    }

    let mut params = Vec::new();
    let mut workdir: Option<WorkdirParam> = None;
    for input in &sig.inputs {
        let pat = match input {
            FnArg::Receiver(r) => {
                push(&mut errors, syn::Error::new(r.span(), "a method (`self`) cannot be an otwrap model: points are evaluated in other threads, processes and hosts; make it a free function and pass the state it needs as an input parameter"));
                continue;
            }
            FnArg::Typed(pat) => pat,
        };
        if let Some(attr) = pat.attrs.iter().find(|a| is_workdir_attr(a)) {
            if let Some(first) = &workdir {
                let mut e = syn::Error::new(attr.span(), "duplicate `#[workdir]` parameter: a model has one work directory per evaluation");
                e.combine(syn::Error::new(
                    first.span,
                    "the first `#[workdir]` parameter is here",
                ));
                push(&mut errors, e);
            } else if let Err(e) = check_workdir_type(&pat.ty) {
                push(&mut errors, e);
            } else {
                workdir = Some(WorkdirParam { span: attr.span() });
            }
            params.push(None);
            continue;
        }
        match input_param(&pat.ty) {
            Ok(mut p) => {
                if let syn::Pat::Ident(ident) = &*pat.pat {
                    p.name = ident.ident.unraw().to_string();
                }
                params.push(Some(p))
            }
            Err(e) => push(&mut errors, e),
        }
    }

    let output = match &sig.output {
        ReturnType::Default => Output::Plain(syn::parse_quote!(())),
        ReturnType::Type(_, ty) => {
            if contains_impl_trait(ty) {
                push(&mut errors, syn::Error::new(ty.span(), "an `impl Trait` return type cannot be an otwrap output: results are sent between processes and cached, so name a concrete type"));
            }
            if is_result(ty) {
                Output::Fallible((**ty).clone())
            } else {
                Output::Plain((**ty).clone())
            }
        }
    };
    match errors {
        Some(e) => Err(e),
        None => Ok(Signature {
            params,
            workdir,
            output,
        }),
    }
}

fn input_param(ty: &Type) -> syn::Result<InputParam> {
    if contains_impl_trait(ty) {
        return Err(syn::Error::new(ty.span(), "an `impl Trait` parameter makes the function generic, so it cannot be an otwrap model; use a concrete type"));
    }
    match ty {
        Type::Reference(r) => {
            if let Some(m) = &r.mutability {
                return Err(syn::Error::new(m.span(), "a `&mut` parameter cannot be an otwrap input: each point gets its own copy of its inputs; take it by value or by shared reference"));
            }
            match &*r.elem {
                Type::Path(p) if p.path.is_ident("str") => Err(syn::Error::new(r.span(), "a `&str` parameter cannot be an otwrap input (inputs are owned, serializable values); take `String` or `&String` instead")),
                Type::Slice(s) => {
                    let elem = &s.elem;
                    Err(syn::Error::new(r.span(), format!("a slice parameter cannot be an otwrap input (inputs are owned, serializable values); take `Vec<{}>` or `&Vec<{}>` instead", quote::quote!(#elem), quote::quote!(#elem))))
                }
                elem => Ok(InputParam {
                    ty: elem.clone(),
                    by_ref: true,
                    name: String::new(),
                }),
            }
        }
        _ => Ok(InputParam {
            ty: ty.clone(),
            by_ref: false,
            name: String::new(),
        }),
    }
}

fn check_workdir_type(ty: &Type) -> syn::Result<()> {
    let ok = match ty {
        Type::Reference(r) if r.mutability.is_none() => {
            matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Path"))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(syn::Error::new(
            ty.span(),
            "the `#[workdir]` parameter must have type `&std::path::Path`",
        ))
    }
}

fn contains_impl_trait(ty: &Type) -> bool {
    match ty {
        Type::ImplTrait(_) => true,
        Type::Reference(r) => contains_impl_trait(&r.elem),
        Type::Paren(p) => contains_impl_trait(&p.elem),
        Type::Group(g) => contains_impl_trait(&g.elem),
        Type::Tuple(t) => t.elems.iter().any(contains_impl_trait),
        Type::Array(a) => contains_impl_trait(&a.elem),
        Type::Slice(s) => contains_impl_trait(&s.elem),
        Type::Path(p) => p.path.segments.iter().any(|s| match &s.arguments {
            PathArguments::AngleBracketed(a) => a
                .args
                .iter()
                .any(|arg| matches!(arg, syn::GenericArgument::Type(t) if contains_impl_trait(t))),
            _ => false,
        }),
        _ => false,
    }
}

fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => {
            p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Result")
        }
        Type::Group(g) => is_result(&g.elem),
        Type::Paren(p) => is_result(&p.elem),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(src: &str) -> syn::Result<Signature> {
        analyse(&syn::parse_str::<ItemFn>(src).expect("parses"))
    }

    #[test]
    fn inputs_by_value_and_reference() {
        let s =
            sig("fn f(a: f64, b: &Vec<f64>) -> Result<f64, String> { todo!() }").expect("valid");
        assert_eq!(s.params.len(), 2);
        assert!(!s.params[0].as_ref().expect("input").by_ref);
        assert!(s.params[1].as_ref().expect("input").by_ref);
        assert!(matches!(s.output, Output::Fallible(_)));
    }

    #[test]
    fn rejections_name_the_problem() {
        let cases = [
            ("fn f(&self) {}", "method"),
            ("async fn f() {}", "async fn"),
            ("const fn f() {}", "const fn"),
            ("fn f<T>(x: T) {}", "generic"),
            ("fn f(x: &mut f64) {}", "&mut"),
            ("fn f(x: &str) {}", "String"),
            ("fn f(x: &[f64]) {}", "Vec<f64>"),
            ("fn f(x: impl Fn()) {}", "impl Trait"),
            (
                "fn f(#[workdir] d: &std::path::Path, #[workdir] e: &std::path::Path) {}",
                "duplicate `#[workdir]`",
            ),
            ("fn f(#[workdir] d: String) {}", "&std::path::Path"),
        ];
        for (src, expected) in cases {
            let e = sig(src)
                .err()
                .unwrap_or_else(|| panic!("{src} should be rejected"));
            assert!(e.to_string().contains(expected), "{src}: {e}");
        }
    }
}
