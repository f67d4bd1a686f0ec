use otwrap::prelude::*;

#[parallelize]
fn model(x: f64, #[workdir] dir: &std::path::Path) -> f64 {
    let _ = dir;
    x
}

fn main() {}
