use otwrap::prelude::*;

#[parallelize(workers = 2)]
#[parallelize(backend = "serial")]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
