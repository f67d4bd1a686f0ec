//! The composition rule: whichever otwrap attribute is outermost reads the
//! other otwrap attributes still attached to the function, removes them, and
//! expands the whole stack at once — so the order they are written in does
//! not matter.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{ItemFn, Meta};

use crate::{cached, debug_log, expand, parallelize, signature, temp_workdir};

/// The four model attributes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Parallelize,
    TempWorkdir,
    Cached,
    DebugLog,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Parallelize => "parallelize",
            Kind::TempWorkdir => "temp_workdir",
            Kind::Cached => "cached",
            Kind::DebugLog => "debug_log",
        }
    }

    /// Recognises `name`, `otwrap::name` and `::otwrap::name`.
    fn of(path: &syn::Path) -> Option<Kind> {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let name = match segments.as_slice() {
            [name] => name,
            [krate, name] if krate == "otwrap" => name,
            _ => return None,
        };
        [
            Kind::Parallelize,
            Kind::TempWorkdir,
            Kind::Cached,
            Kind::DebugLog,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// Every attribute of the stack, parsed and validated.
pub(crate) struct Stack {
    pub(crate) parallelize: Option<parallelize::Config>,
    pub(crate) temp_workdir: Option<(temp_workdir::Config, Span)>,
    pub(crate) cached: Option<(cached::Config, Span)>,
    pub(crate) debug_log: Option<(debug_log::Config, Span)>,
}

/// The entry point of the four attribute macros.
pub(crate) fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut function: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                format!(
                    "`#[{}]` applies to a function (`fn name(inputs) -> output`)",
                    kind.name()
                ),
            );
            let mut out = e.to_compile_error();
            out.extend(item);
            return out;
        }
    };
    match build(kind, args, &mut function) {
        Ok(tokens) => tokens,
        Err(e) => {
            // Emit the function as written (minus otwrap's own attributes) so
            // that one mistake gives one message, not a cascade.
            function.attrs.retain(|a| Kind::of(a.path()).is_none());
            signature::strip_workdir_attrs(&mut function);
            let mut out = e.to_compile_error();
            function.to_tokens(&mut out);
            out
        }
    }
}

fn build(kind: Kind, args: TokenStream, function: &mut ItemFn) -> syn::Result<TokenStream> {
    let mut raw = vec![(kind, Span::call_site(), Ok(args))];
    function.attrs.retain(|attr| match Kind::of(attr.path()) {
        Some(k) => {
            let tokens = match &attr.meta {
                Meta::Path(_) => Ok(TokenStream::new()),
                Meta::List(list) => Ok(list.tokens.clone()),
                Meta::NameValue(nv) => Err(syn::Error::new(
                    nv.eq_token.span(),
                    format!("write `#[{}(...)]` with parentheses", k.name()),
                )),
            };
            raw.push((k, attr.path().span(), tokens));
            false
        }
        None => true,
    });

    let mut stack = Stack {
        parallelize: None,
        temp_workdir: None,
        cached: None,
        debug_log: None,
    };
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let mut seen: Vec<Kind> = Vec::new();
    for (k, span, tokens) in raw {
        if seen.contains(&k) {
            push(syn::Error::new(
                span,
                format!(
                    "duplicate `#[{}]` on this function; merge their arguments into one",
                    k.name()
                ),
            ));
            continue;
        }
        seen.push(k);
        let tokens = match tokens {
            Ok(t) => t,
            Err(e) => {
                push(e);
                continue;
            }
        };
        let parsed = match k {
            Kind::Parallelize => parallelize::parse(tokens).map(|c| stack.parallelize = Some(c)),
            Kind::TempWorkdir => {
                temp_workdir::parse(tokens).map(|c| stack.temp_workdir = Some((c, span)))
            }
            Kind::Cached => cached::parse(tokens).map(|c| stack.cached = Some((c, span))),
            Kind::DebugLog => {
                debug_log::parse(tokens, span).map(|c| stack.debug_log = Some((c, span)))
            }
        };
        if let Err(e) = parsed {
            push(e);
        }
    }
    let signature = signature::analyse(function);
    if let Err(e) = &signature {
        push(e.clone());
    }
    if let Some(e) = errors {
        return Err(e);
    }
    let signature = signature?;
    validate(&stack, &signature)?;
    signature::strip_workdir_attrs(function);
    Ok(expand::model(function, &signature, &stack))
}

/// Checks that go across attributes.
fn validate(stack: &Stack, signature: &signature::Signature) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    if let (None, Some((_, span))) = (&signature.workdir, &stack.temp_workdir) {
        errors.push(syn::Error::new(
            *span,
            "`#[temp_workdir]` creates a directory for each evaluation, but no parameter receives it; \
             add a parameter `#[workdir] dir: &std::path::Path`",
        ));
    }
    if let (Some(workdir), None) = (&signature.workdir, &stack.temp_workdir) {
        errors.push(syn::Error::new(
            workdir.span,
            "a `#[workdir]` parameter needs `#[temp_workdir(...)]` on the function, which creates the directory it receives",
        ));
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            errors.for_each(|e| first.combine(e));
            Err(first)
        }
    }
}
