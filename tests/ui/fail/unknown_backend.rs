use otwrap::prelude::*;

#[parallelize(backend = "rayonn")]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
