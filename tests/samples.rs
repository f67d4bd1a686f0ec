//! Batch results as samples through the attributes: the parameter names
//! the macro records name the input columns, the output's fields name the
//! output columns, and the sample goes through an OpenTURNS `;` file.

use otwrap::prelude::*;
use otwrap::sample::{CsvOptions, Sample};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Response {
    deviation: f64,
    stress: f64,
}

#[parallelize(backend = "serial")]
fn cantilever(load: f64, size: [f64; 2]) -> Result<Response, String> {
    if load < 0.0 {
        return Err(format!("negative load {load}"));
    }
    Ok(Response {
        deviation: load * size[0],
        stress: load / size[1],
    })
}

#[test]
fn a_batch_with_a_failed_point_becomes_a_semicolon_csv() {
    let inputs = vec![(2.0, [3.0, 4.0]), (-1.0, [1.0, 1.0]), (8.0, [0.5, 2.0])];
    let batch = cantilever::map(&inputs).expect("batch");
    assert_eq!(batch.summary().failed, 1);
    let sample = batch
        .to_sample::<cantilever::Model>(&inputs)
        .expect("numbers");
    assert_eq!(
        sample.names(),
        &["load", "size0", "size1", "deviation", "stress"]
    );
    assert_eq!(sample.row(0), &[2.0, 3.0, 4.0, 6.0, 0.5]);
    assert_eq!(sample.row(1)[..3], [-1.0, 1.0, 1.0]);
    assert!(sample.row(1)[3].is_nan() && sample.row(1)[4].is_nan());
    assert_eq!(sample.row(2), &[8.0, 0.5, 2.0, 4.0, 4.0]);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("results.csv");
    sample
        .write_csv_with(&path, CsvOptions::default().with_separator(';'))
        .expect("write");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(
        text,
        "\"load\";\"size0\";\"size1\";\"deviation\";\"stress\"\n\
         2;3;4;6;0.5\n-1;1;1;nan;nan\n8;0.5;2;4;4\n"
    );
    let back = Sample::read_csv(&path).expect("read back");
    assert_eq!(back.names(), sample.names());
    assert_eq!(back.row(2), sample.row(2));
    assert!(back.row(1)[3].is_nan());
}
