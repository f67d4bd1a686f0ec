//! `#[parallelize(backend = "...", workers = N, ...)]`: the batch options
//! written in the code (the defaults that configuration overrides).

use proc_macro2::{Span, TokenStream};
use quote::quote;

use crate::args::{self, Args, Schema};

const SCHEMA: Schema = Schema {
    attr: "parallelize",
    keys: &[
        "backend",
        "workers",
        "fail_fast",
        "timeout",
        "progress",
        "retries",
        // ssh (otwrap_runtime::config::SshOptions::KEYS)
        "hosts",
        "key",
        "known_hosts",
        "host_key_check",
        "connect_timeout",
        "worker_path",
        "remote_dir",
        // slurm (otwrap_runtime::config::SlurmOptions::KEYS)
        "partition",
        "account",
        "qos",
        "time",
        "cpus_per_task",
        "mem",
        "wckey",
        "constraint",
        "job_name",
        "log_dir",
        "run_dir",
        "array_parallelism",
        "points_per_task",
        "start_timeout",
        "setup",
        "sbatch",
        "retry_model_failures",
        "dry_run",
    ],
};

/// Every backend name.
const BACKENDS: &[&str] = &["serial", "rayon", "processes", "ssh", "slurm"];

/// The kind of value each backend option takes (checked here; the values
/// themselves are checked by the runtime, which reports them when a batch
/// starts).
fn backend_option_kind(key: &str) -> Kind {
    match key {
        "retries" | "cpus_per_task" | "array_parallelism" | "points_per_task" => Kind::Integer,
        "connect_timeout" | "start_timeout" => Kind::Seconds,
        "retry_model_failures" | "dry_run" => Kind::Bool,
        "hosts" | "setup" | "sbatch" => Kind::StringOrList,
        "time" => Kind::StringOrInteger,
        "host_key_check" => Kind::Choice(&["strict", "accept-new", "off"]),
        _ => Kind::String,
    }
}

#[derive(Clone, Copy)]
enum Kind {
    String,
    StringOrList,
    StringOrInteger,
    Integer,
    Seconds,
    Bool,
    Choice(&'static [&'static str]),
}

/// The validated arguments.
#[derive(Default)]
pub(crate) struct Config {
    backend: Option<(&'static str, Span)>,
    workers: Option<u64>,
    fail_fast: Option<bool>,
    timeout: Option<(f64, Span)>,
    progress: Option<&'static str>,
    /// Backend options, as runtime `RawValue` expressions.
    backend_options: Vec<(String, TokenStream)>,
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Config> {
    let args: Args = syn::parse2(tokens)?;
    let mut config = Config::default();
    let mut errors: Option<syn::Error> = None;
    for (key, value) in SCHEMA.check(&args)? {
        let parsed: syn::Result<()> = (|| {
            match key.to_string().as_str() {
                "backend" => {
                    config.backend = Some(args::choice(key, value, BACKENDS)?);
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
                other => {
                    let raw = raw_value(key, value, backend_option_kind(other))?;
                    config.backend_options.push((other.to_string(), raw));
                }
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

/// The runtime `RawValue` for a backend option's literal.
fn raw_value(key: &syn::Ident, value: Option<&syn::Expr>, kind: Kind) -> syn::Result<TokenStream> {
    let rt = quote!(::otwrap::__private::RawValue);
    let example = match key.to_string().as_str() {
        "hosts" => "hosts = \"4/alice@node1, 2/alice@node2:2222\"".to_string(),
        "setup" => "setup = [\"module load openturns\"]".to_string(),
        "sbatch" => "sbatch = [\"--exclusive\"]".to_string(),
        "time" => "time = \"01:30:00\"".to_string(),
        "mem" => "mem = \"2G\"".to_string(),
        other => format!("{other} = \"...\""),
    };
    let string = |v| -> syn::Result<TokenStream> {
        let s = args::string(key, v, &example)?;
        Ok(quote!(#rt::Str(::std::string::String::from(#s))))
    };
    Ok(match kind {
        Kind::String => string(value)?,
        Kind::Choice(choices) => {
            let (s, _) = args::choice(key, value, choices)?;
            quote!(#rt::Str(::std::string::String::from(#s)))
        }
        Kind::Bool => {
            let b = args::boolean(key, value)?;
            quote!(#rt::Bool(#b))
        }
        Kind::Integer => {
            let example = format!("{key} = 2");
            let n = if key == "retries" {
                args::integer(key, value, &example)?
            } else {
                args::positive_integer(key, value, &example)?
            } as i64;
            quote!(#rt::Int(#n))
        }
        Kind::Seconds => {
            let secs = args::seconds(key, value, &format!("{key} = 60"))?;
            quote!(#rt::Float(#secs))
        }
        Kind::StringOrInteger => match value {
            Some(syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(_),
                ..
            })) => {
                let n = args::positive_integer(key, value, &format!("{key} = 30"))? as i64;
                quote!(#rt::Int(#n))
            }
            _ => string(value)?,
        },
        Kind::StringOrList => match value {
            Some(syn::Expr::Array(array)) => {
                let mut items = Vec::new();
                for element in &array.elems {
                    items.push(args::string(
                        key,
                        Some(element),
                        &format!("{key} = [\"...\"]"),
                    )?);
                }
                quote!(#rt::List(::std::vec![#(::std::string::String::from(#items)),*]))
            }
            _ => string(value)?,
        },
    })
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
                "ssh" => "Ssh",
                "slurm" => "Slurm",
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
    for (key, raw) in &config.backend_options {
        sets.push(quote!(options.set(#key, #raw, "#[parallelize]");));
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
        assert!(err(r#"backend = "ssh", hosts = 3"#).contains("a string"));
        assert!(err(r#"partion = "debug""#).contains("did you mean `partition`"));
        assert!(err(r#"host_key_check = "never""#).contains("accept-new"));
        assert!(err(r#"backend = "rayon", timeout = 3"#).contains("out-of-process"));
    }
}
