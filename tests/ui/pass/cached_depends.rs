use otwrap::prelude::*;

#[parallelize(backend = "serial")]
#[cached(disk, depends = ["solver/wall.py", "templates"])]
fn on_disk(x: f64) -> f64 {
    x
}

#[cached(depends = ["solver/wall.py"], version = "2")]
fn in_memory(x: f64) -> f64 {
    x
}

#[cached(disk = "target/wall-cache", depends = ["/opt/solver/bin/wall"])]
fn at_path(x: f64) -> f64 {
    x
}

fn main() {
    let spec = <on_disk::Model as otwrap::Model>::cache().expect("cached");
    assert_eq!(spec.depends, ["solver/wall.py", "templates"]);
    let _ = (in_memory::map, at_path::map);
}
