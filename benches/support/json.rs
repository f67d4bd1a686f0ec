//! Machine-readable bench results for `bench/run.sh`: when
//! `OTWRAP_BENCH_JSON=path` is set, every measurement is appended to that
//! file as one JSON object on one line (JSON Lines), next to the bench's
//! human output. Standard library only.
//!
//! Include it with:
//!
//! ```ignore
//! #[path = "support/json.rs"]
//! mod json;
//! ```
//!
//! Every record has `bench` (the bench target), `name` (the variant),
//! `points`, `runs`, `median_s` (median wall time of the runs, seconds),
//! `per_point_us` and `points_per_s`, plus the bench's own fields.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

/// A field value.
pub enum Value {
    Num(f64),
    Int(u64),
    Text(String),
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Num(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(v as u64)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::Num(x) if x.is_finite() => {
            let _ = write!(out, "{x}");
        }
        Value::Num(_) => out.push_str("null"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Text(s) => push_str(out, s),
    }
}

/// Appends one record to `$OTWRAP_BENCH_JSON` (nothing when it is unset).
/// An I/O error is printed, not fatal: the human output is still there.
pub fn emit(
    bench: &str,
    name: &str,
    points: usize,
    runs: usize,
    median: Duration,
    extra: &[(&str, Value)],
) {
    let Some(path) = std::env::var_os("OTWRAP_BENCH_JSON").filter(|p| !p.is_empty()) else {
        return;
    };
    let secs = median.as_secs_f64();
    let mut fields: Vec<(&str, Value)> = vec![
        ("bench", bench.into()),
        ("name", name.into()),
        ("points", points.into()),
        ("runs", runs.into()),
        ("median_s", secs.into()),
        (
            "per_point_us",
            if points > 0 {
                (secs * 1e6 / points as f64).into()
            } else {
                Value::Num(f64::NAN)
            },
        ),
        (
            "points_per_s",
            if secs > 0.0 {
                (points as f64 / secs).into()
            } else {
                Value::Num(f64::NAN)
            },
        ),
    ];
    fields.extend(extra.iter().map(|(k, v)| {
        (
            *k,
            match v {
                Value::Num(x) => Value::Num(*x),
                Value::Int(i) => Value::Int(*i),
                Value::Text(s) => Value::Text(s.clone()),
            },
        )
    }));
    let mut line = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            line.push_str(", ");
        }
        push_str(&mut line, key);
        line.push_str(": ");
        push_value(&mut line, value);
    }
    line.push_str("}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "could not append to OTWRAP_BENCH_JSON={}: {e}",
            std::path::Path::new(&path).display()
        );
    }
}
