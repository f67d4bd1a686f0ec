use otwrap::prelude::*;

#[parallelize]
const fn model(x: f64) -> f64 {
    x
}

fn main() {}
