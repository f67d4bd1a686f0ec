use otwrap::prelude::*;

#[derive(Clone)]
struct Point {
    x: f64,
}

#[parallelize]
fn model(p: Point, scale: f64) -> f64 {
    p.x * scale
}

fn main() {}
