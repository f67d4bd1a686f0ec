use otwrap::prelude::*;

#[parallelize(workers = 0)]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
