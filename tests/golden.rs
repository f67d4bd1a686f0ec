//! The golden cache: a store written by otwrap before the engine refactor
//! (issue 13), checked in under `tests/golden/cache`, must still answer
//! every point after it. A refactor that changes a key (the prefix frame,
//! the function id, the body hash, the encoding of an input) or an entry
//! (the encoding of a value or a stored error) turns these hits into
//! misses, and this test fails instead of every user's cache going cold.
//!
//! The models below are part of the fixture: editing their signature or
//! body changes their body hash, so their keys, on purpose. Do not edit
//! them; add a new model (and regenerate) instead. To regenerate the store
//! after an intended format change (bump the format version then):
//!
//! ```text
//! cargo test --test golden -- --ignored write_the_golden_store
//! ```

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use otwrap::prelude::*;
use otwrap::Backend;

/// Where the checked-in store lives.
const FIXTURE: &str = "tests/golden/cache";
/// Where the models open it (a copy, so the fixture is never written).
const STORE: &str = "target/otwrap-golden-cache";

static DEFLECTION_EVALS: AtomicUsize = AtomicUsize::new(0);

/// The beam's deflection: an array input, a float output.
#[parallelize(backend = "serial")]
#[cached(disk = "target/otwrap-golden-cache")]
fn deflection(x: [f64; 4]) -> f64 {
    DEFLECTION_EVALS.fetch_add(1, Ordering::SeqCst);
    let [f, e, l, i] = x;
    f * l.powi(3) / (3.0 * e * i)
}

static LABELLED_EVALS: AtomicUsize = AtomicUsize::new(0);

/// Several parameters of several types (a tuple input), a tuple output, and
/// stored errors.
#[parallelize(backend = "serial")]
#[cached(
    disk = "target/otwrap-golden-cache",
    cache_errors = true,
    version = "g1"
)]
fn labelled(name: String, sizes: Vec<u32>, scale: f64) -> Result<(f64, String), String> {
    LABELLED_EVALS.fetch_add(1, Ordering::SeqCst);
    if sizes.is_empty() {
        return Err(format!("{name}: no sizes"));
    }
    let total: u32 = sizes.iter().sum();
    Ok((f64::from(total) * scale, format!("{name}-{}", sizes.len())))
}

fn deflection_points() -> Vec<[f64; 4]> {
    (0..40)
        .map(|i| {
            let t = f64::from(i);
            [3e4 + 100.0 * t, 3e7 - 1e4 * t, 255.0 + t, 400.0 + 0.5 * t]
        })
        .collect()
}

fn labelled_points() -> Vec<(String, Vec<u32>, f64)> {
    (0..12u32)
        .map(|i| {
            let sizes = (0..i % 4).map(|k| k * 7 + i).collect();
            (format!("case-é{i}"), sizes, 0.25 * f64::from(i) - 1.0)
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_name() != "otwrap.lock" {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| format!("{} -> {}: {e}", entry.path().display(), target.display()))?;
        }
    }
    Ok(())
}

#[test]
fn a_store_written_before_the_refactor_still_hits() -> Result<(), Box<dyn std::error::Error>> {
    let _ = std::fs::remove_dir_all(STORE);
    copy_dir(Path::new(FIXTURE), Path::new(STORE))?;

    let points = deflection_points();
    let batch = deflection::runner().backend(Backend::Serial).map(&points)?;
    let summary = batch.summary();
    assert_eq!(
        (summary.cached, summary.evaluated),
        (points.len(), 0),
        "every golden deflection point must be a cache hit: {summary}"
    );
    assert_eq!(DEFLECTION_EVALS.load(Ordering::SeqCst), 0);
    for (x, y) in points.iter().zip(batch.values()?) {
        let [f, e, l, i] = *x;
        assert_eq!(y.to_bits(), (f * l.powi(3) / (3.0 * e * i)).to_bits());
    }

    let points = labelled_points();
    let batch = labelled::runner().backend(Backend::Serial).map(&points)?;
    let summary = batch.summary();
    assert_eq!(
        (summary.cached, summary.evaluated),
        (points.len(), 0),
        "every golden labelled point (stored errors included) must be a cache hit: {summary}"
    );
    assert_eq!(LABELLED_EVALS.load(Ordering::SeqCst), 0);
    let mut errors = 0;
    for ((name, sizes, scale), result) in points.iter().zip(batch.results()) {
        match result {
            Ok((value, label)) => {
                let total: u32 = sizes.iter().sum();
                assert_eq!(value.to_bits(), (f64::from(total) * scale).to_bits());
                assert_eq!(label, &format!("{name}-{}", sizes.len()));
            }
            Err(e) => {
                errors += 1;
                assert!(sizes.is_empty(), "{e}");
                assert!(e.to_string().contains(&format!("{name}: no sizes")), "{e}");
            }
        }
    }
    assert_eq!(
        errors, 3,
        "the three stored errors come back from the cache"
    );
    Ok(())
}

/// Writes `tests/golden/cache` with the current code (ignored: run by hand
/// after an intended format change).
#[test]
#[ignore = "writes the fixture; run by hand after an intended format change"]
fn write_the_golden_store() -> Result<(), Box<dyn std::error::Error>> {
    let _ = std::fs::remove_dir_all(STORE);
    let batch = deflection::runner()
        .backend(Backend::Serial)
        .map(&deflection_points())?;
    assert_eq!(batch.summary().evaluated, 40);
    let batch = labelled::runner()
        .backend(Backend::Serial)
        .map(&labelled_points())?;
    assert_eq!(batch.summary().evaluated, 12);
    deflection::cache()?.ok_or("cached")?.flush()?;
    labelled::cache()?.ok_or("cached")?.flush()?;
    let _ = std::fs::remove_dir_all(FIXTURE);
    copy_dir(Path::new(STORE), Path::new(FIXTURE))?;
    Ok(())
}
