use otwrap::prelude::*;

#[parallelize(worker = 4)]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
