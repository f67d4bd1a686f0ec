use otwrap::prelude::*;

#[parallelize(backend = "rayon", timeout = 10)]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
