//! Code generation for a model: the function as written, a hidden type that
//! implements `otwrap::Model`, its registration for worker processes, and the
//! companion module (`name::map`, `name::runner`, `name::stream`).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, Visibility};

use crate::signature::{Output, Signature};
use crate::stack::Stack;
use crate::{cached, parallelize};

/// The visibility, inside the companion module, of an item that must be seen
/// exactly as far as the function itself (no further: the model's types may
/// be private).
fn inner_visibility(vis: &Visibility) -> TokenStream {
    match vis {
        Visibility::Public(_) => quote!(pub),
        Visibility::Inherited => quote!(pub(super)),
        Visibility::Restricted(r) => {
            let path = &r.path;
            let first = path.segments.first().map(|s| s.ident.to_string());
            match first.as_deref() {
                Some("crate") => quote!(pub(in #path)),
                Some("self") if path.segments.len() == 1 => quote!(pub(super)),
                Some("self") => {
                    let rest = path.segments.iter().skip(1);
                    quote!(pub(in super #(:: #rest)*))
                }
                _ => quote!(pub(in super::#path)),
            }
        }
    }
}

/// A stable 64-bit FNV-1a hash of the function's tokens: editing the
/// signature or the body changes it, a `//` comment does not (comments are
/// not tokens).
fn body_hash(function: &ItemFn) -> u64 {
    let sig = &function.sig;
    let block = &function.block;
    let text = quote!(#sig #block).to_string();
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `Some(...)`/`None` of a string literal.
fn option_str(lit: Option<&syn::LitStr>) -> TokenStream {
    match lit {
        Some(l) => quote!(::core::option::Option::Some(#l)),
        None => quote!(::core::option::Option::None),
    }
}

/// The static layers and cache settings of the stack.
fn layers_and_cache(function: &ItemFn, stack: &Stack) -> (TokenStream, TokenStream) {
    let rt = quote!(::otwrap::__private);
    let workdir = match &stack.temp_workdir {
        None => quote!(::core::option::Option::None),
        Some((config, _)) => {
            let prefix = config.prefix.as_ref().map_or_else(
                || {
                    let p = format!("{}-", function.sig.ident);
                    quote!(#p)
                },
                |l| quote!(#l),
            );
            let base = option_str(config.base.as_ref());
            let cleanup = format_ident!(
                "{}",
                match config.cleanup.unwrap_or("on_success") {
                    "always" => "Always",
                    "never" => "Never",
                    _ => "OnSuccess",
                }
            );
            let copy = &config.copy;
            quote!(::core::option::Option::Some(#rt::WorkDirSpec::from_parts(#prefix, #base, #rt::Cleanup::#cleanup, &[#(#copy),*])))
        }
    };
    let log = match &stack.debug_log {
        None => quote!(::core::option::Option::None),
        Some((config, _)) => {
            let path = &config.path;
            let all = config.all;
            quote!(::core::option::Option::Some(#rt::LogSpec { path: #path, all: #all }))
        }
    };
    let layers = quote! {
        fn layers() -> &'static #rt::Layers {
            static LAYERS: #rt::Layers = #rt::Layers { workdir: #workdir, log: #log };
            &LAYERS
        }
    };
    let cache = match &stack.cached {
        None => quote!(),
        Some((config, _)) => {
            let location = match &config.store {
                cached::Store::Memory => quote!(#rt::CacheLocation::Memory),
                cached::Store::DiskDefault => quote!(#rt::CacheLocation::DiskDefault),
                cached::Store::Disk(path) => quote!(#rt::CacheLocation::Disk(#path)),
            };
            let hash = body_hash(function);
            let version = config
                .version
                .as_ref()
                .map_or_else(|| quote!(""), |v| quote!(#v));
            let cache_errors = config.cache_errors;
            let depends = &config.depends;
            quote! {
                fn cache() -> ::core::option::Option<#rt::CacheSpec> {
                    ::core::option::Option::Some(#rt::CacheSpec {
                        location: #location,
                        body_hash: #hash,
                        version: #version,
                        cache_errors: #cache_errors,
                        depends: &[#(#depends),*],
                    })
                }
            }
        }
    };
    (layers, cache)
}

pub(crate) fn model(function: &ItemFn, signature: &Signature, stack: &Stack) -> TokenStream {
    let rt = quote!(::otwrap::__private);
    let name = &function.sig.ident;
    let vis = &function.vis;
    let inner = inner_visibility(vis);
    let layered =
        stack.temp_workdir.is_some() || stack.cached.is_some() || stack.debug_log.is_some();
    // The model type lives in the companion module and the impl next to the
    // function: neither needs `super::`, so a model may also be declared
    // inside a function body.
    let model = quote!(#name::Model);
    let input = format_ident!("__otwrap_input", span = Span::mixed_site());
    let ctx = format_ident!("__otwrap_ctx", span = Span::mixed_site());
    let dir = format_ident!("__otwrap_dir", span = Span::mixed_site());
    // With layers, the function as written becomes a hidden body function
    // and the public one takes the inputs only.
    let body_fn = if layered {
        format_ident!("__otwrap_body_{}", name)
    } else {
        name.clone()
    };

    let inputs: Vec<_> = signature.params.iter().flatten().collect();
    let input_ty = match inputs.as_slice() {
        [one] => {
            let ty = &one.ty;
            quote!(#ty)
        }
        many => {
            let tys = many.iter().map(|p| &p.ty);
            quote!((#(#tys,)*))
        }
    };
    let bindings: Vec<_> = (0..inputs.len())
        .map(|i| format_ident!("__otwrap_arg{}", i, span = Span::mixed_site()))
        .collect();
    let destructure = match bindings.as_slice() {
        [one] => quote!(let #one = #input;),
        many => quote!(let (#(#many,)*) = #input;),
    };
    // Arguments in the order of the parameters, the work directory in its
    // place. Bindings are references (into the batch inputs, or to the
    // single call's arguments): by-value parameters are cloned out.
    let mut next = 0;
    let call_args: Vec<TokenStream> = signature
        .params
        .iter()
        .map(|p| match p {
            None => quote!(#dir),
            Some(p) => {
                let binding = &bindings[next];
                next += 1;
                let ty = &p.ty;
                if p.by_ref {
                    quote!(#binding)
                } else {
                    quote_spanned!(ty.span()=> {
                        #rt::assert_by_value::<#ty>();
                        ::core::clone::Clone::clone(#binding)
                    })
                }
            }
        })
        .collect();
    let parameter_names = inputs.iter().map(|p| p.name.as_str());
    let input_checks = inputs.iter().map(|p| {
        let ty = &p.ty;
        quote_spanned!(ty.span()=> #rt::assert_input::<#ty>();)
    });

    let (output_ty, call) = match &signature.output {
        Output::Plain(ty) => (
            quote!(#ty),
            quote!(::core::result::Result::Ok(#body_fn(#(#call_args),*))),
        ),
        Output::Fallible(ty) => (
            quote_spanned!(ty.span()=> <#ty as #rt::FallibleOutput>::Ok),
            quote!(#rt::model_result(#body_fn(#(#call_args),*))),
        ),
    };
    let output_span = match &function.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => name.span(),
    };
    let output_check = quote_spanned!(output_span=> #rt::assert_output::<#output_ty>(););
    let options = parallelize::options(stack.parallelize.as_ref());
    let doc_model = format!(
        "The otwrap model of [`{name}`](fn@{name}), as a type for generic code (`otwrap::Runner<Model>`)."
    );
    let doc_mod = format!(
        "Batch evaluation of [`{name}`](fn@{name}), generated by otwrap: [`map`](self::map) over many points, \
         [`runner`](self::runner) to override the backend and options at run time, [`stream`](self::stream) \
         for results in completion order."
    );
    let take_dir = if signature.workdir.is_some() {
        quote! {
            let #dir = match #dir {
                ::core::option::Option::Some(d) => d,
                ::core::option::Option::None => {
                    return ::core::result::Result::Err(#rt::PointFailure::Setup {
                        message: ::std::string::String::from("no work directory was created for this evaluation"),
                    })
                }
            };
        }
    } else {
        quote!(let _ = #dir;)
    };

    let (functions, evaluate, layer_fns) = if layered {
        let (layer_fns, cache_fn) = layers_and_cache(function, stack);
        // The hidden body: the function exactly as written, under another name.
        let mut body = function.clone();
        body.sig.ident = body_fn.clone();
        body.vis = Visibility::Inherited;
        body.attrs.retain(|a| !a.path().is_ident("doc"));
        // The public single-point call: inputs only, every layer applied.
        let outer_params: Vec<TokenStream> = inputs
            .iter()
            .zip(&bindings)
            .map(|(p, b)| {
                let ty = &p.ty;
                if p.by_ref {
                    quote!(#b: &#ty)
                } else {
                    quote!(#b: #ty)
                }
            })
            .collect();
        let refs: Vec<TokenStream> = inputs
            .iter()
            .zip(&bindings)
            .map(|(p, b)| if p.by_ref { quote!(#b) } else { quote!(&#b) })
            .collect();
        let single_input = match refs.as_slice() {
            [one] => quote!(#one),
            many => quote!(&(#(#many,)*)),
        };
        let ref_bindings: Vec<TokenStream> = inputs
            .iter()
            .zip(&bindings)
            .map(|(p, b)| {
                if p.by_ref {
                    quote!(let #b = #b;)
                } else {
                    quote!(let #b = &#b;)
                }
            })
            .collect();
        let attrs = &function.attrs;
        let doc_single = format!(
            "Evaluates one point of `{name}` with every otwrap layer (cache, work directory, log); \
             a failure is an [`otwrap::Error::Point`] that says where its traces are."
        );
        let functions = quote! {
            #[doc(hidden)]
            #[allow(non_snake_case, clippy::too_many_arguments)]
            #body

            #(#attrs)*
            #[doc = ""]
            #[doc = #doc_single]
            #vis fn #name(#(#outer_params),*) -> ::core::result::Result<#output_ty, #rt::Error> {
                #rt::call_single::<#model, _>(#single_input, |#dir: ::core::option::Option<&::std::path::Path>| {
                    #(#ref_bindings)*
                    #take_dir
                    #call
                })
            }
        };
        let evaluate = quote! {
            #rt::evaluate_layers(
                <Self as #rt::Model>::NAME,
                <Self as #rt::Model>::layers(),
                #ctx.index,
                #input,
                |#dir: ::core::option::Option<&::std::path::Path>| {
                    #destructure
                    #take_dir
                    #call
                },
            )
        };
        (functions, evaluate, quote!(#layer_fns #cache_fn))
    } else {
        let evaluate = quote! {
            let #dir: ::core::option::Option<&::std::path::Path> = ::core::option::Option::None;
            let _ = #dir;
            #destructure
            let result: ::core::result::Result<Self::Output, #rt::PointFailure> = #call;
            result.map_err(#rt::Failed::from)
        };
        (quote!(#function), evaluate, quote!())
    };

    quote! {
        #functions

        const _: () = {
            #(#input_checks)*
            #output_check
        };

        impl #rt::Model for #model {
            type Input = #input_ty;
            type Output = #output_ty;
            const ID: &'static str = ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name));
            const NAME: &'static str = ::core::stringify!(#name);
            const PARAMETER_NAMES: &'static [&'static str] = &[#(#parameter_names),*];

            fn attribute_options() -> #rt::Options {
                #options
            }

            #[allow(clippy::unnecessary_cast, clippy::clone_on_copy, clippy::needless_borrow)]
            fn evaluate(
                #input: &Self::Input,
                #ctx: &#rt::EvalContext,
            ) -> ::core::result::Result<Self::Output, #rt::Failed> {
                let _ = #ctx;
                #evaluate
            }

            #layer_fns
        }

        #rt::inventory::submit! { #rt::Registration::of::<#model>() }

        #[doc = #doc_mod]
        #[allow(dead_code)]
        #vis mod #name {
            #[doc = #doc_model]
            #[derive(Debug, Clone, Copy, Default)]
            #inner struct Model;
            /// One point: the function's parameters (a tuple when there are several).
            #inner type Input = <Model as #rt::Model>::Input;
            /// One point's value.
            #inner type Output = <Model as #rt::Model>::Output;

            /// Evaluates every point with the configured backend; results in input order.
            #inner fn map(inputs: &[Input]) -> ::core::result::Result<#rt::Batch<Output>, #rt::Error> {
                runner().map(inputs)
            }

            /// A runner to override the backend and options at run time.
            #inner fn runner() -> #rt::Runner<Model> {
                #rt::Runner::new()
            }

            /// Starts the batch in the background; yields results in completion order.
            #inner fn stream(inputs: ::std::vec::Vec<Input>) -> ::core::result::Result<#rt::ResultStream<Output>, #rt::Error> {
                runner().stream(inputs)
            }

            /// The model's result cache (`None` without `#[cached]`): count, clear, entries.
            #inner fn cache() -> ::core::result::Result<::core::option::Option<#rt::ModelCache>, #rt::Error> {
                #rt::ModelCache::of::<Model>().map_err(#rt::Error::from)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(src: &str) -> u64 {
        body_hash(&syn::parse_str::<ItemFn>(src).expect("parses"))
    }

    #[test]
    fn body_hash_follows_the_code_not_the_comments() {
        let base = hash("fn f(x: f64) -> f64 { x * 2.0 }");
        assert_eq!(
            base,
            hash("fn f(x: f64) -> f64 {\n    // doubled\n    x   *   2.0\n}")
        );
        assert_ne!(base, hash("fn f(x: f64) -> f64 { x * 3.0 }"));
        assert_ne!(base, hash("fn f(x: f32) -> f64 { x * 2.0 }"));
    }
}
