use otwrap::prelude::*;

#[parallelize(workers = "4", fail_fast = 1)]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
