//! `#[cached]`, `#[cached(disk)]`, `#[cached(disk = "path", version = "...",
//! cache_errors = true)]`: the cache of results, kept by the driver.

use proc_macro2::TokenStream;
use syn::LitStr;

use crate::args::{self, Args, Schema};

const SCHEMA: Schema = Schema {
    attr: "cached",
    keys: &["disk", "version", "cache_errors"],
};

/// Where the cache lives.
pub(crate) enum Store {
    Memory,
    DiskDefault,
    Disk(LitStr),
}

/// The validated arguments.
pub(crate) struct Config {
    pub(crate) store: Store,
    pub(crate) version: Option<LitStr>,
    pub(crate) cache_errors: bool,
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Config> {
    let args: Args = syn::parse2(tokens)?;
    let mut config = Config {
        store: Store::Memory,
        version: None,
        cache_errors: false,
    };
    for (key, value) in SCHEMA.check(&args)? {
        match key.to_string().as_str() {
            "disk" => {
                config.store = match value {
                    None => Store::DiskDefault,
                    Some(_) => {
                        Store::Disk(args::string(key, value, "disk = \".otwrap/beam-cache\"")?)
                    }
                }
            }
            "version" => config.version = Some(args::string(key, value, "version = \"2\"")?),
            "cache_errors" => config.cache_errors = args::boolean(key, value)?,
            _ => unreachable!("the schema lists every key handled here"),
        }
    }
    Ok(config)
}
