use otwrap::prelude::*;

#[parallelize(backend = "ssh", hosts = 4, host_key_check = "never", time = "1 hour", points_per_task = 0)]
fn model(x: f64) -> f64 {
    x
}

fn main() {}
