use otwrap::prelude::*;

#[parallelize]
#[cached(disk)]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
