use otwrap::prelude::*;

struct Deviation(f64);

#[parallelize]
fn model(x: f64) -> Deviation {
    Deviation(x)
}

fn main() {}
