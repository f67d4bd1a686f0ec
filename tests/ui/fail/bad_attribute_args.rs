use otwrap::prelude::*;

#[temp_workdir(cleanup = "sometimes", copy = "input.xml")]
#[debug_log(all = true)]
#[parallelize]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
