use otwrap::prelude::*;

struct Solver;

impl Solver {
    #[parallelize]
    fn model(&self, x: f64) -> f64 {
        x
    }
}

fn main() {}
