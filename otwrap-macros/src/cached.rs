//! `#[cached]`, `#[cached(disk)]`, `#[cached(disk = "path", version = "...",
//! cache_errors = true, depends = ["solver.py", "templates"])]`: the cache of
//! results, kept by the driver.

use proc_macro2::TokenStream;
use syn::LitStr;

use crate::args::{self, Args, Schema};

const SCHEMA: Schema = Schema {
    attr: "cached",
    keys: &["disk", "version", "cache_errors", "depends"],
};

const DEPENDS_EXAMPLE: &str = "depends = [\"solver/wall.py\", \"templates/wall.in\"]";

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
    /// Files and directories whose contents enter every key.
    pub(crate) depends: Vec<LitStr>,
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Config> {
    let args: Args = syn::parse2(tokens)?;
    let mut config = Config {
        store: Store::Memory,
        version: None,
        cache_errors: false,
        depends: Vec::new(),
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
            "depends" => {
                config.depends = args::string_list(key, value, DEPENDS_EXAMPLE)?;
                validate_depends(key, &config.depends)?;
            }
            _ => unreachable!("the schema lists every key handled here"),
        }
    }
    Ok(config)
}

/// An empty list, an empty path or a path listed twice is a mistake (an
/// empty path would hash the whole current directory, cache included).
fn validate_depends(key: &syn::Ident, paths: &[LitStr]) -> syn::Result<()> {
    if paths.is_empty() {
        return Err(syn::Error::new(
            key.span(),
            format!(
                "`depends` lists no path; list the files and directories the model reads, \
                 e.g. `{DEPENDS_EXAMPLE}`, or leave `depends` out"
            ),
        ));
    }
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for (i, path) in paths.iter().enumerate() {
        let text = path.value();
        if text.trim().is_empty() {
            push(syn::Error::new(
                path.span(),
                "an empty path in `depends` would hash the whole current directory; \
                 name a file or directory",
            ));
        } else if paths[..i].iter().any(|p| p.value() == text) {
            push(syn::Error::new(
                path.span(),
                format!("\"{text}\" is listed twice in `depends`; give it once"),
            ));
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depends(args: &str) -> syn::Result<Vec<String>> {
        let config = parse(args.parse().expect("tokens"))?;
        Ok(config.depends.iter().map(LitStr::value).collect())
    }

    #[test]
    fn depends_takes_a_list_of_paths() {
        assert_eq!(
            depends(r#"disk, depends = ["solver/wall.py", "templates"]"#).expect("valid"),
            ["solver/wall.py", "templates"]
        );
        assert!(depends("disk").expect("valid").is_empty());
    }

    #[test]
    fn depends_rejects_what_cannot_be_a_path_list() {
        let message = |args: &str| depends(args).expect_err("invalid").to_string();
        assert!(message(r#"depends = "wall.py""#).contains("a list of strings"));
        assert!(message("depends = [wall]").contains("takes strings only"));
        assert!(message("depends = []").contains("lists no path"));
        assert!(message(r#"depends = [""]"#).contains("empty path"));
        assert!(message(r#"depends = ["a", "a"]"#).contains("listed twice"));
    }
}
