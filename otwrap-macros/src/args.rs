//! Argument parsing shared by every attribute: a list of `key = value`
//! pairs, bare flags (`disk`) and leading literals (`"beam.log"`), checked
//! against each attribute's schema with precise spans and hints.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, LitStr, Token};

/// One argument as written.
pub(crate) enum Arg {
    /// A literal without a key, e.g. the file of `#[debug_log("f.log")]`.
    Positional(Lit),
    /// `key` alone.
    Flag(Ident),
    /// `key = value`.
    Pair(Ident, Expr),
}

impl Parse for Arg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(Lit) {
            return Ok(Arg::Positional(input.parse()?));
        }
        let key: Ident = input.call(syn::ext::IdentExt::parse_any)?;
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Ok(Arg::Pair(key, input.parse()?))
        } else {
            Ok(Arg::Flag(key))
        }
    }
}

/// All the arguments of one attribute.
pub(crate) struct Args {
    pub(crate) items: Vec<Arg>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let items = Punctuated::<Arg, Token![,]>::parse_terminated(input)?;
        Ok(Args {
            items: items.into_iter().collect(),
        })
    }
}

/// The description of one attribute's arguments.
pub(crate) struct Schema {
    /// The attribute's name, for messages.
    pub(crate) attr: &'static str,
    /// The valid keys.
    pub(crate) keys: &'static [&'static str],
}

impl Schema {
    /// Rejects unknown and duplicate keys; returns the known ones.
    pub(crate) fn check<'a>(
        &self,
        args: &'a Args,
    ) -> syn::Result<Vec<(&'a Ident, Option<&'a Expr>)>> {
        let mut seen: Vec<&Ident> = Vec::new();
        let mut out = Vec::new();
        let mut errors: Option<syn::Error> = None;
        let mut push = |e: syn::Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        for item in &args.items {
            let (key, value) = match item {
                Arg::Positional(lit) => {
                    push(syn::Error::new(
                        lit.span(),
                        format!(
                            "unexpected literal in `#[{}]`; expected `key = value` with a key among: {}",
                            self.attr,
                            self.keys.join(", ")
                        ),
                    ));
                    continue;
                }
                Arg::Flag(key) => (key, None),
                Arg::Pair(key, value) => (key, Some(value)),
            };
            let name = key.to_string();
            if !self.keys.contains(&name.as_str()) {
                let mut msg = format!(
                    "unknown argument `{name}` for `#[{}]`; expected one of: {}",
                    self.attr,
                    self.keys.join(", ")
                );
                if let Some(close) = closest(&name, self.keys) {
                    msg.push_str(&format!(" (did you mean `{close}`?)"));
                }
                push(syn::Error::new(key.span(), msg));
                continue;
            }
            if seen.contains(&key) {
                push(syn::Error::new(
                    key.span(),
                    format!(
                        "duplicate argument `{name}` in `#[{}]`; give it once",
                        self.attr
                    ),
                ));
                continue;
            }
            seen.push(key);
            out.push((key, value));
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// The closest valid name, for "did you mean" hints: at most a third of
/// the candidate's length away (and at least 2 edits), a swap of two
/// neighbouring letters counting as one edit (`strsim::osa_distance`).
///
/// The runtime's `config::value::did_you_mean` applies the same rule to
/// configuration keys; this crate cannot depend on the runtime, so each
/// keeps this one call.
pub(crate) fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::osa_distance(name, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

fn literal(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(e) => Some(&e.lit),
        Expr::Group(g) => literal(&g.expr),
        _ => None,
    }
}

fn value_hint(key: &Ident, value: Option<&Expr>, what: &str, example: &str) -> syn::Error {
    let span = value.map_or(key.span(), |v| v.span());
    let mut msg = format!("`{key}` expects {what}, e.g. `{example}`");
    if let Some(Expr::Path(p)) = value {
        if let Some(ident) = p.path.get_ident() {
            msg.push_str(&format!(
                " (write `{key} = \"{ident}\"` with quotes if `{ident}` is the value)"
            ));
        }
    }
    syn::Error::new(span, msg)
}

/// A string value.
pub(crate) fn string(key: &Ident, value: Option<&Expr>, example: &str) -> syn::Result<LitStr> {
    match value.and_then(literal) {
        Some(Lit::Str(s)) => Ok(s.clone()),
        _ => Err(value_hint(key, value, "a string", example)),
    }
}

/// A boolean value; a bare flag means `true`.
pub(crate) fn boolean(key: &Ident, value: Option<&Expr>) -> syn::Result<bool> {
    match value {
        None => Ok(true),
        Some(v) => match literal(v) {
            Some(Lit::Bool(b)) => Ok(b.value),
            _ => Err(value_hint(
                key,
                value,
                "`true` or `false`",
                &format!("{key} = true"),
            )),
        },
    }
}

/// A positive integer.
pub(crate) fn positive_integer(
    key: &Ident,
    value: Option<&Expr>,
    example: &str,
) -> syn::Result<u64> {
    let err = || value_hint(key, value, "a positive integer", example);
    match value.and_then(literal) {
        Some(Lit::Int(i)) => match i.base10_parse::<u64>() {
            Ok(0) => Err(syn::Error::new(
                i.span(),
                if key == "workers" {
                    format!("`{key}` must be at least 1 (leave it out to use every available CPU)")
                } else {
                    format!("`{key}` must be at least 1")
                },
            )),
            Ok(n) => Ok(n),
            Err(_) => Err(err()),
        },
        _ => Err(err()),
    }
}

/// A whole number, zero allowed.
pub(crate) fn integer(key: &Ident, value: Option<&Expr>, example: &str) -> syn::Result<u64> {
    match value.and_then(literal) {
        Some(Lit::Int(i)) => i
            .base10_parse::<u64>()
            .map_err(|_| value_hint(key, value, "a whole number", example)),
        _ => Err(value_hint(key, value, "a whole number", example)),
    }
}

/// A positive number of seconds (integer or float).
pub(crate) fn seconds(key: &Ident, value: Option<&Expr>, example: &str) -> syn::Result<f64> {
    let err = || value_hint(key, value, "a positive number of seconds", example);
    let secs = match value.and_then(literal) {
        Some(Lit::Int(i)) => i.base10_parse::<f64>().map_err(|_| err())?,
        Some(Lit::Float(f)) => f.base10_parse::<f64>().map_err(|_| err())?,
        _ => return Err(err()),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(err());
    }
    Ok(secs)
}

/// One of a fixed set of strings.
pub(crate) fn choice(
    key: &Ident,
    value: Option<&Expr>,
    choices: &[&'static str],
) -> syn::Result<(&'static str, Span)> {
    let example = format!("{key} = \"{}\"", choices[0]);
    let s = string(key, value, &example).map_err(|_| {
        let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
        value_hint(
            key,
            value,
            &format!("one of {}", quoted.join(", ")),
            &example,
        )
    })?;
    let text = s.value();
    match choices.iter().find(|c| **c == text) {
        Some(c) => Ok((c, s.span())),
        None => {
            let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
            let mut msg = format!(
                "unknown {key} \"{text}\"; expected one of: {}",
                quoted.join(", ")
            );
            if let Some(close) = closest(&text, choices) {
                msg.push_str(&format!(" (did you mean \"{close}\"?)"));
            }
            Err(syn::Error::new(s.span(), msg))
        }
    }
}

/// An array of strings: `["a", "b"]`.
pub(crate) fn string_list(
    key: &Ident,
    value: Option<&Expr>,
    example: &str,
) -> syn::Result<Vec<LitStr>> {
    let err = || value_hint(key, value, "a list of strings", example);
    match value {
        Some(Expr::Array(arr)) => arr
            .elems
            .iter()
            .map(|e| match literal(e) {
                Some(Lit::Str(s)) => Ok(s.clone()),
                _ => Err(syn::Error::new(
                    e.span(),
                    format!("`{key}` takes strings only, e.g. `{example}`"),
                )),
            })
            .collect(),
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_near_names_only() {
        assert_eq!(closest("worker", &["backend", "workers"]), Some("workers"));
        assert_eq!(closest("backnd", &["backend", "workers"]), Some("backend"));
        assert_eq!(closest("zzz", &["backend", "workers"]), None);
    }

    #[test]
    fn schema_rejects_unknown_and_duplicate_keys() {
        let schema = Schema {
            attr: "parallelize",
            keys: &["backend", "workers"],
        };
        let args: Args = syn::parse_str("workers = 2, workers = 3").expect("parses");
        let e = schema.check(&args).map(|v| v.len()).expect_err("duplicate");
        assert!(e.to_string().contains("duplicate argument `workers`"));
        let args: Args = syn::parse_str("worker = 2").expect("parses");
        let e = schema.check(&args).map(|v| v.len()).expect_err("unknown");
        assert!(e.to_string().contains("did you mean `workers`"), "{e}");
    }
}
