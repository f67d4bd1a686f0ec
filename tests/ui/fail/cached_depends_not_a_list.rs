use otwrap::prelude::*;

#[parallelize(backend = "serial")]
#[cached(disk, depends = "solver/wall.py")]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
