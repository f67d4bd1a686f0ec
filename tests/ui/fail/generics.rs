use otwrap::prelude::*;

#[parallelize]
fn model<T: Into<f64>>(x: T) -> f64 {
    x.into()
}

fn main() {}
