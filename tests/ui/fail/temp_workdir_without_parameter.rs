use otwrap::prelude::*;

#[parallelize]
#[temp_workdir(prefix = "run-")]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
