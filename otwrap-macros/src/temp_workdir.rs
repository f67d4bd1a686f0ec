//! `#[temp_workdir(prefix = "...", base = "...", cleanup = "...", copy = [...])]`:
//! a fresh directory per evaluation; parsed and checked here, created by
//! `otwrap_runtime::workdir` wherever the point runs.

use proc_macro2::TokenStream;
use syn::LitStr;

use crate::args::{self, Args, Schema};

const SCHEMA: Schema = Schema {
    attr: "temp_workdir",
    keys: &["prefix", "base", "cleanup", "copy"],
};

/// The validated arguments.
#[derive(Default)]
pub(crate) struct Config {
    pub(crate) prefix: Option<LitStr>,
    pub(crate) base: Option<LitStr>,
    pub(crate) cleanup: Option<&'static str>,
    pub(crate) copy: Vec<LitStr>,
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Config> {
    let args: Args = syn::parse2(tokens)?;
    let mut config = Config::default();
    for (key, value) in SCHEMA.check(&args)? {
        match key.to_string().as_str() {
            "prefix" => config.prefix = Some(args::string(key, value, "prefix = \"beam-\"")?),
            "base" => config.base = Some(args::string(key, value, "base = \"/scratch/runs\"")?),
            "cleanup" => {
                config.cleanup =
                    Some(args::choice(key, value, &["on_success", "always", "never"])?.0);
            }
            "copy" => {
                config.copy = args::string_list(key, value, "copy = [\"beam.xml\", \"data/\"]")?
            }
            _ => unreachable!("the schema lists every key handled here"),
        }
    }
    Ok(config)
}
