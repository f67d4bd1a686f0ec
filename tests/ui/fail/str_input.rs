use otwrap::prelude::*;

#[parallelize]
fn model(name: &str) -> usize {
    name.len()
}

fn main() {}
