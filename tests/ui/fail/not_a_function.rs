use otwrap::prelude::*;

#[parallelize]
struct Model;

fn main() {}
