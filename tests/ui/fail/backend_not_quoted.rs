use otwrap::prelude::*;

#[parallelize(backend = rayon)]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
