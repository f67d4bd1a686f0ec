use otwrap::prelude::*;

#[parallelize(workers = 2, workers = 4)]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
