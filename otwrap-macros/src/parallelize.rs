//! `#[parallelize(backend = "...", workers = N, ...)]`: the batch options
//! written in the code (the defaults that configuration overrides).

use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::args::{self, Args, Schema};

const SCHEMA: Schema = Schema {
    attr: "parallelize",
    keys: &["backend", "workers", "fail_fast", "timeout", "progress"],
};

/// Every backend name; those not yet available are refused with a message.
const BACKENDS: &[&str] = &["serial", "rayon", "processes", "ssh", "slurm"];
const NOT_YET: &[&str] = &["ssh", "slurm"];

/// The validated arguments.
#[derive(Default)]
pub(crate) struct Config {
    backend: Option<(&'static str, Span)>,
    workers: Option<u64>,
    fail_fast: Option<bool>,
    timeout: Option<(f64, Span)>,
    progress: Option<&'static str>,
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Config> {
    let args: Args = syn::parse2(tokens)?;
    let mut config = Config::default();
    let mut errors: Option<syn::Error> = None;
    for (key, value) in SCHEMA.check(&args)? {
        let parsed: syn::Result<()> = (|| {
            match key.to_string().as_str() {
                "backend" => {
                    let (name, span) = args::choice(key, value, BACKENDS)?;
                    if NOT_YET.contains(&name) {
                        return Err(syn::Error::new(
                            span,
                            format!(
                                "the \"{name}\" backend is not available in this version of otwrap yet; \
                                 use \"serial\", \"rayon\" or \"processes\""
                            ),
                        ));
                    }
                    config.backend = Some((name, span));
                }
                "workers" => {
                    config.workers = Some(args::positive_integer(key, value, "workers = 4")?)
                }
                "fail_fast" => config.fail_fast = Some(args::boolean(key, value)?),
                "timeout" => {
                    let span = value.map_or(key.span(), syn::spanned::Spanned::span);
                    config.timeout = Some((args::seconds(key, value, "timeout = 600")?, span));
                }
                "progress" => {
                    config.progress =
                        Some(args::choice(key, value, &["auto", "always", "never"])?.0)
                }
                _ => unreachable!("the schema lists every key handled here"),
            }
            Ok(())
        })();
        if let Err(e) = parsed {
            match &mut errors {
                Some(all) => all.combine(e),
                None => errors = Some(e),
            }
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }
    validate(&config)?;
    Ok(config)
}

fn validate(config: &Config) -> syn::Result<()> {
    if let (Some((secs, span)), Some((backend @ ("serial" | "rayon"), _))) =
        (config.timeout, config.backend)
    {
        let _ = secs;
        return Err(syn::Error::new(
            span,
            format!(
                "a per-point `timeout` needs an out-of-process backend: a thread of the \"{backend}\" backend \
                 cannot be stopped safely; use `backend = \"processes\"`"
            ),
        ));
    }
    Ok(())
}

/// The body of `Model::attribute_options`.
pub(crate) fn options(config: Option<&Config>) -> TokenStream {
    let rt = quote!(::otwrap::__private);
    let Some(config) = config else {
        return quote!(#rt::Options::new());
    };
    let mut sets = Vec::new();
    if let Some((backend, _)) = config.backend {
        let variant = syn::Ident::new(
            match backend {
                "serial" => "Serial",
                "processes" => "Processes",
                _ => "Rayon",
            },
            Span::call_site(),
        );
        sets.push(quote!(options.backend = ::core::option::Option::Some(#rt::Backend::#variant);));
    }
    if let Some(workers) = config.workers {
        let workers = workers as usize;
        sets.push(quote!(options.workers = ::core::option::Option::Some(#workers);));
    }
    if let Some(on) = config.fail_fast {
        sets.push(quote!(options.fail_fast = ::core::option::Option::Some(#on);));
    }
    if let Some((secs, _)) = config.timeout {
        sets.push(quote!(options.timeout = ::core::option::Option::Some(#rt::Duration::from_secs_f64(#secs));));
    }
    if let Some(mode) = config.progress {
        let variant = syn::Ident::new(
            match mode {
                "always" => "Always",
                "never" => "Never",
                _ => "Auto",
            },
            Span::call_site(),
        );
        sets.push(
            quote!(options.progress = ::core::option::Option::Some(#rt::ProgressMode::#variant);),
        );
    }
    quote! {
        let mut options = #rt::Options::new();
        #(#sets)*
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        match parse(src.parse().expect("tokens")) {
            Ok(_) => panic!("`{src}` should be rejected"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_typed_values() {
        let c = parse(quote!(
            backend = "processes",
            workers = 4,
            fail_fast = true,
            timeout = 2.5
        ))
        .expect("valid");
        assert_eq!(c.backend.map(|b| b.0), Some("processes"));
        assert_eq!(c.workers, Some(4));
        assert_eq!(c.timeout.map(|t| t.0), Some(2.5));
    }

    #[test]
    fn rejects_with_precise_messages() {
        assert!(err(r#"backend = "rayonn""#).contains("did you mean \"rayon\""));
        assert!(err("backend = rayon").contains("with quotes"));
        assert!(err(r#"workers = "4""#).contains("positive integer"));
        assert!(err("workers = 0").contains("at least 1"));
        assert!(err(r#"backend = "ssh""#).contains("not available"));
        assert!(err(r#"backend = "rayon", timeout = 3"#).contains("out-of-process"));
    }
}
