//! A backend option's value as written in an attribute, a configuration
//! file or an environment variable, and the conversions each key needs.

use std::path::PathBuf;
use std::time::Duration;

/// One option value before it is checked against its key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RawValue {
    /// A string (every environment variable is one).
    Str(String),
    /// A whole number.
    Int(i64),
    /// A number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A list of strings.
    List(Vec<String>),
}

impl From<&str> for RawValue {
    fn from(s: &str) -> Self {
        RawValue::Str(s.to_string())
    }
}

impl From<String> for RawValue {
    fn from(s: String) -> Self {
        RawValue::Str(s)
    }
}

impl From<i64> for RawValue {
    fn from(n: i64) -> Self {
        RawValue::Int(n)
    }
}

impl From<u32> for RawValue {
    fn from(n: u32) -> Self {
        RawValue::Int(i64::from(n))
    }
}

impl From<f64> for RawValue {
    fn from(x: f64) -> Self {
        RawValue::Float(x)
    }
}

impl From<bool> for RawValue {
    fn from(b: bool) -> Self {
        RawValue::Bool(b)
    }
}

impl From<Vec<String>> for RawValue {
    fn from(items: Vec<String>) -> Self {
        RawValue::List(items)
    }
}

impl From<&[&str]> for RawValue {
    fn from(items: &[&str]) -> Self {
        RawValue::List(items.iter().map(|s| s.to_string()).collect())
    }
}

impl RawValue {
    /// Converts a TOML value; `None` for tables and other shapes no option takes.
    pub(crate) fn from_toml(value: &toml::Value) -> Option<RawValue> {
        Some(match value {
            toml::Value::String(s) => RawValue::Str(s.clone()),
            toml::Value::Integer(i) => RawValue::Int(*i),
            toml::Value::Float(f) => RawValue::Float(*f),
            toml::Value::Boolean(b) => RawValue::Bool(*b),
            toml::Value::Array(items) => RawValue::List(
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()?,
            ),
            _ => return None,
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            RawValue::Str(_) => "a string",
            RawValue::Int(_) => "an integer",
            RawValue::Float(_) => "a number",
            RawValue::Bool(_) => "a boolean",
            RawValue::List(_) => "a list",
        }
    }

    pub(crate) fn string(self) -> Result<String, String> {
        match self {
            RawValue::Str(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            RawValue::Str(_) => Err("expected a non-empty string".into()),
            RawValue::Int(i) => Ok(i.to_string()),
            other => Err(format!("expected a string, found {}", other.kind())),
        }
    }

    pub(crate) fn path(self) -> Result<PathBuf, String> {
        self.string().map(|s| expand_home(&s))
    }

    pub(crate) fn integer(self, min: i64, example: &str) -> Result<i64, String> {
        let n = match self {
            RawValue::Int(i) => i,
            RawValue::Str(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("expected a whole number, e.g. {example}; found {s:?}"))?,
            other => {
                return Err(format!(
                    "expected a whole number, e.g. {example}; found {}",
                    other.kind()
                ))
            }
        };
        if n < min {
            return Err(format!("must be at least {min}, found {n}"));
        }
        Ok(n)
    }

    pub(crate) fn boolean(self) -> Result<bool, String> {
        match self {
            RawValue::Bool(b) => Ok(b),
            RawValue::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err(format!("expected true or false, found {s:?}")),
            },
            other => Err(format!("expected true or false, found {}", other.kind())),
        }
    }

    pub(crate) fn seconds(self, example: &str) -> Result<Duration, String> {
        let secs = match self {
            RawValue::Int(i) => i as f64,
            RawValue::Float(f) => f,
            RawValue::Str(s) => s.trim().parse::<f64>().map_err(|_| {
                format!("expected a number of seconds, e.g. {example}; found {s:?}")
            })?,
            other => {
                return Err(format!(
                    "expected a number of seconds, e.g. {example}; found {}",
                    other.kind()
                ))
            }
        };
        match Duration::try_from_secs_f64(secs) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(format!(
                "expected a positive number of seconds, found {secs}"
            )),
        }
    }

    /// A list: a TOML array, or a string split on `separator` (environment
    /// variables, attributes with one item).
    pub(crate) fn list(self, separator: char) -> Result<Vec<String>, String> {
        let items = match self {
            RawValue::List(items) => items,
            RawValue::Str(s) => s.split(separator).map(str::to_string).collect(),
            other => {
                return Err(format!(
                    "expected a list of strings, found {}",
                    other.kind()
                ))
            }
        };
        Ok(items
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect())
    }
}

/// `~/x` → `$HOME/x` (paths in configuration files are often written so).
pub(crate) fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The candidate closest to `name` and its distance: the optimal string
/// alignment distance (`strsim::osa_distance`), where a swap of two
/// neighbouring letters (`backned`) counts as one edit, like a wrong,
/// missing or extra letter. Ties go to the first candidate in sort order.
pub(crate) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<(usize, &'a str)> {
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(name, c), c))
        .min()
}

/// The suggestion for a misspelled key, if one is close: at most a third
/// of the key's length away, and at least 2 edits (the macro crate's
/// `args::closest` applies the same rule to attribute arguments).
pub(crate) fn did_you_mean<'a>(key: &str, keys: &[&'a str]) -> Option<&'a str> {
    keys.iter()
        .map(|k| (strsim::osa_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

/// The message for an unknown key of a section.
pub(crate) fn unknown_key(section: &str, key: &str, keys: &[&str]) -> String {
    let hint = did_you_mean(key, keys)
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    format!(
        "unknown {section} option `{key}`{hint}; expected one of: {}",
        keys.join(", ")
    )
}
