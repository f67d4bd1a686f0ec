use otwrap::prelude::*;
use std::path::Path;

/// Every attribute, in an unusual order, with every argument.
#[debug_log("model.log", all = true)]
#[cached(disk = "target/ui-cache", version = "2", cache_errors = true)]
#[temp_workdir(prefix = "ui-", base = "target", cleanup = "always", copy = ["Cargo.toml"])]
#[otwrap::parallelize(backend = "processes", workers = 2)]
pub fn full(x: &Vec<f64>, #[workdir] dir: &Path, k: u32) -> Result<f64, String> {
    let _ = dir;
    Ok(x.iter().sum::<f64>() * f64::from(k))
}

#[cached]
fn memory_only(x: f64) -> f64 {
    x
}

#[otwrap::main]
fn main() {
    let _: Result<f64, otwrap::Error> = full(&vec![1.0], 2);
    let _: Result<f64, otwrap::Error> = memory_only(1.0);
    let _ = full::cache();
}
