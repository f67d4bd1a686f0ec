//! `#[debug_log("func.log", all = true)]`: a log of every failed (or every)
//! evaluation, written wherever the point runs.

use proc_macro2::{Span, TokenStream};
use syn::{Lit, LitStr};

use crate::args::{self, Arg, Args, Schema};

const SCHEMA: Schema = Schema {
    attr: "debug_log",
    keys: &["all"],
};

/// The validated arguments.
pub(crate) struct Config {
    pub(crate) path: LitStr,
    pub(crate) all: bool,
}

pub(crate) fn parse(tokens: TokenStream, span: Span) -> syn::Result<Config> {
    let mut args: Args = syn::parse2(tokens)?;
    let path = match args.items.first() {
        Some(Arg::Positional(Lit::Str(s))) => s.clone(),
        Some(Arg::Positional(other)) => {
            return Err(syn::Error::new(
                other.span(),
                "`#[debug_log]` expects the log file as a string first, e.g. `#[debug_log(\"beam.log\")]`",
            ))
        }
        _ => {
            return Err(syn::Error::new(
                span,
                "`#[debug_log]` needs the log file, e.g. `#[debug_log(\"beam.log\")]`",
            ))
        }
    };
    args.items.remove(0);
    let mut all = false;
    for (key, value) in SCHEMA.check(&args)? {
        match key.to_string().as_str() {
            "all" => all = args::boolean(key, value)?,
            _ => unreachable!("the schema lists every key handled here"),
        }
    }
    Ok(Config { path, all })
}
