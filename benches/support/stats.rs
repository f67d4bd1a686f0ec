//! What every bench measures with: medians of wall times, a timed closure
//! after a warm-up, sizes from the environment. Standard library only.
//!
//! ```ignore
//! #[path = "support/stats.rs"]
//! mod stats;
//! ```
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// The median of `runs` (the upper one for an even count).
pub fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// The median of numbers.
pub fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median wall time of `runs` calls of `f`, after one warm-up call; the
/// first error ends the measurement.
pub fn time<E>(runs: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<Duration, E> {
    f()?;
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        all.push(start.elapsed());
    }
    Ok(median(all))
}

/// A size from the environment, or `default`.
pub fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
