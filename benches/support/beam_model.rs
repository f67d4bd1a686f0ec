//! The beam model every bench runs (in a temporary work directory: fill the
//! template, run the solver without a shell, read the deviation), and the
//! same evaluation written by hand without otwrap, the limit it is compared
//! with. Needs the including bench to have `mod common;` (examples/beam/common.rs).
//!
//! ```ignore
//! #[path = "support/beam_model.rs"]
//! mod beam_model;
//! ```
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{solver, template, BoxError};
use otwrap::coupling::{read_attribute, Capture, NumberFormat, Program};
use otwrap::prelude::*;

/// The design of experiments of the beam case.
pub const DOE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/beam/doe.csv");
const TEMPLATE_TEXT: &str = include_str!("../../examples/beam/beam_input_template.xml");

#[parallelize(backend = "rayon", progress = "never")]
#[temp_workdir(prefix = "otwrap-bench-beam-", cleanup = "always")]
pub fn beam(x: [f64; 4], #[workdir] dir: &Path) -> Result<f64, BoxError> {
    let [f, e, l, i] = x;
    template()?.fill_to(
        dir.join("beam.xml"),
        &[("@F@", f), ("@E@", e), ("@L@", l), ("@I@", i)],
        NumberFormat::Shortest,
    )?;
    Program::new(solver()?)
        .args(["-x", "beam.xml"])
        .current_dir(dir)
        .stdout(Capture::Discard)
        .stderr(Capture::Memory)
        .run()?;
    Ok(read_attribute(
        dir.join("_beam_outputs_.xml"),
        "outputs",
        "deviation",
    )?)
}

/// One evaluation written by hand: a temp dir, the template filled with
/// `str::replace`, the solver spawned, the output parsed, the dir removed.
pub fn by_hand(x: &[f64; 4], solver: &Path) -> Result<f64, BoxError> {
    let dir = std::env::temp_dir().join(format!(
        "hand-beam-{}-{:?}-{}",
        std::process::id(),
        std::thread::current().id(),
        x[0].to_bits()
    ));
    std::fs::create_dir(&dir)?;
    let text = TEMPLATE_TEXT
        .replace("@F@", &x[0].to_string())
        .replace("@E@", &x[1].to_string())
        .replace("@L@", &x[2].to_string())
        .replace("@I@", &x[3].to_string());
    std::fs::write(dir.join("beam.xml"), text)?;
    let out = Command::new(solver)
        .args(["-x", "beam.xml"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if !out.status.success() {
        return Err(format!("solver failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let xml = std::fs::read_to_string(dir.join("_beam_outputs_.xml"))?;
    let start = xml.find("deviation=\"").ok_or("no deviation")? + "deviation=\"".len();
    let end = start + xml[start..].find('"').ok_or("no closing quote")?;
    let value = xml[start..end].parse()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(value)
}
