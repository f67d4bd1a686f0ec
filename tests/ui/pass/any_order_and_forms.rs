use otwrap::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
}

/// Public model with a doc comment, struct and reference inputs.
#[otwrap::parallelize(backend = "processes", workers = 2, fail_fast = false, timeout = 1.5, progress = "never")]
pub fn public_model(p: &Point, scale: f64) -> Result<f64, std::io::Error> {
    Ok(p.x * scale)
}

#[parallelize]
pub(crate) fn no_output(_x: [u8; 4]) {}

#[parallelize(backend = "serial")]
fn no_input() -> u32 {
    7
}

mod inner {
    #[otwrap::parallelize]
    pub(super) fn visible_above(x: f64) -> f64 {
        x
    }
}

#[otwrap::main]
fn main() {
    let _ = public_model::map(&[(Point { x: 1.0 }, 2.0)]);
    let _: fn() -> otwrap::Runner<public_model::Model> = public_model::runner;
    let _ = no_output::runner();
    assert_eq!(no_input(), 7);
    let _ = inner::visible_above::map(&[1.0]);
}
