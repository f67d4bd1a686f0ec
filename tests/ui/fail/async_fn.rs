use otwrap::prelude::*;

#[parallelize]
async fn model(x: f64) -> f64 {
    x
}

fn main() {}
