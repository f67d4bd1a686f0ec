use otwrap::prelude::*;

const SOLVER: &str = "solver/wall.py";

#[parallelize(backend = "serial")]
#[cached(disk, depends = [SOLVER])]
fn not_literals(x: f64) -> f64 {
    x
}

#[parallelize(backend = "serial")]
#[cached(depends = ["solver/wall.py", "", "solver/wall.py"])]
fn empty_and_twice(x: f64) -> f64 {
    x
}

#[parallelize(backend = "serial")]
#[cached(disk = "cache", depends = [])]
fn empty_list(x: f64) -> f64 {
    x
}

fn main() {}
