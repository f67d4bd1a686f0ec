//! Behaviour of the batch contract on the in-process backends, through the
//! facade, as a user writes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use otwrap::prelude::*;
use serde::{Deserialize, Serialize};

/// A model with a known failure point and a known panic point.
#[parallelize(backend = "rayon", workers = 2)]
fn shaky(x: f64, k: u32) -> Result<f64, String> {
    if k == 13 {
        return Err(format!("k = {k} is unlucky"));
    }
    if k == 42 {
        panic!("k = {k} makes the model panic");
    }
    Ok(x.sin() * f64::from(k))
}

fn points(n: u32) -> Vec<(f64, u32)> {
    (0..n).map(|k| (f64::from(k) * 0.37, k)).collect()
}

#[test]
fn single_point_call_is_the_function_as_written() {
    assert_eq!(shaky(1.0, 2), Ok(1.0_f64.sin() * 2.0));
    assert!(shaky(1.0, 13).is_err());
}

#[test]
fn serial_and_rayon_give_identical_results_in_input_order() {
    let inputs = points(1000);
    let serial = shaky::runner()
        .backend(Backend::Serial)
        .map(&inputs)
        .expect("batch runs");
    let rayon = shaky::runner()
        .backend(Backend::Rayon)
        .workers(2)
        .map(&inputs)
        .expect("batch runs");
    assert_eq!(serial.len(), 1000);
    for (k, (a, b)) in serial.results().iter().zip(rayon.results()).enumerate() {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.to_bits(), b.to_bits(), "point {k}");
                assert_eq!(*a, (k as f64 * 0.37).sin() * k as f64);
            }
            (Err(a), Err(b)) => {
                assert_eq!(a.index(), k);
                assert_eq!(a.failure(), b.failure());
            }
            _ => panic!("point {k} differs between backends: {a:?} vs {b:?}"),
        }
    }
}

#[test]
fn a_failing_and_a_panicking_point_fail_alone_with_precise_errors() {
    let inputs = points(100);
    let batch = shaky::map(&inputs).expect("batch runs");
    let summary = batch.summary();
    assert_eq!(
        (
            summary.total,
            summary.failed,
            summary.evaluated,
            summary.not_run
        ),
        (100, 2, 100, 0)
    );
    let errors: Vec<_> = batch.errors().collect();
    assert_eq!(errors.len(), 2);

    let returned = errors[0];
    assert_eq!(returned.index(), 13);
    assert_eq!(returned.input(), "[4.81,13]");
    assert_eq!(
        returned.failure(),
        &PointFailure::Model {
            message: "k = 13 is unlucky".into()
        }
    );
    assert_eq!(returned.location().backend, "rayon");
    let text = returned.to_string();
    assert!(
        text.contains("point 13") && text.contains("[4.81,13]") && text.contains("unlucky"),
        "{text}"
    );

    let panicked = errors[1];
    assert_eq!(panicked.index(), 42);
    match panicked.failure() {
        PointFailure::Panic { message } => {
            assert!(
                message.contains("k = 42 makes the model panic"),
                "{message}"
            );
            assert!(
                message.contains("tests/backends.rs"),
                "the panic location is kept: {message}"
            );
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    // Every other point is there.
    assert_eq!(batch.results().iter().filter(|r| r.is_ok()).count(), 98);
    // values() gives the first error in input order.
    assert_eq!(batch.values().unwrap_err().index(), 13);
}

#[test]
fn fail_fast_stops_early_and_keeps_what_finished() {
    let inputs = points(200);
    let batch = shaky::runner()
        .backend(Backend::Serial)
        .fail_fast(true)
        .map(&inputs)
        .expect("batch runs");
    let s = batch.summary();
    assert_eq!(s.evaluated, 14, "points 0..=13 ran, then the batch stopped");
    assert_eq!(s.not_run, 186);
    assert_eq!(s.failed, 187);
    assert!(batch.results()[..13].iter().all(Result::is_ok));
    let not_run = batch.results()[100].as_ref().unwrap_err();
    assert!(not_run.is_not_run());
    assert!(
        not_run.to_string().contains("after point 13 failed"),
        "{not_run}"
    );

    // On a pool, points already running when the failure arrives finish and
    // are kept; how many depends on timing, the accounting does not.
    let batch = shaky::runner()
        .fail_fast(true)
        .map(&inputs)
        .expect("batch runs");
    let s = batch.summary();
    assert_eq!(s.evaluated + s.not_run, 200);
    assert_eq!(
        batch.results().iter().filter(|r| r.is_ok()).count() + s.failed,
        200
    );
    assert!(batch.results().iter().all(|r| match r {
        Ok(_) => true,
        Err(e) => e.is_not_run() || [13, 42].contains(&e.index()),
    }));
}

#[test]
fn stream_yields_every_point_once_in_completion_order() {
    let inputs = points(500);
    let mut stream = shaky::stream(inputs).expect("starts");
    let mut seen = vec![false; 500];
    for done in stream.by_ref() {
        assert!(!seen[done.index], "point {} twice", done.index);
        seen[done.index] = true;
        assert_eq!(done.result.is_err(), done.index == 13 || done.index == 42);
    }
    assert!(seen.iter().all(|s| *s));
    let summary = stream.finish().expect("summary");
    assert_eq!(summary.total, 500);
    assert_eq!(summary.failed, 2);
}

#[test]
fn for_each_and_progress_callbacks_see_every_point() {
    let inputs = points(300);
    let calls = Arc::new(AtomicUsize::new(0));
    let last_done = Arc::new(AtomicUsize::new(0));
    let (c, l) = (Arc::clone(&calls), Arc::clone(&last_done));
    let mut seen = 0;
    let summary = shaky::runner()
        .on_progress(move |p| {
            c.fetch_add(1, Ordering::Relaxed);
            l.store(p.done, Ordering::Relaxed);
            assert!(p.done <= p.total && p.failed <= p.done);
        })
        .for_each(&inputs, |_done| seen += 1)
        .expect("batch runs");
    assert_eq!(seen, 300);
    assert_eq!(calls.load(Ordering::Relaxed), 300);
    assert_eq!(last_done.load(Ordering::Relaxed), 300);
    assert_eq!(summary.failed, 2);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Beam {
    load: f64,
    length: f64,
}

/// Serde structs, reference parameters and plain outputs.
#[parallelize(backend = "serial")]
fn deflection(beam: &Beam, scale: f64) -> f64 {
    beam.load * beam.length.powi(3) * scale
}

#[test]
fn struct_inputs_by_reference_and_plain_outputs() {
    let inputs = vec![
        (
            Beam {
                load: 2.0,
                length: 3.0,
            },
            0.5,
        ),
        (
            Beam {
                load: 1.0,
                length: 1.0,
            },
            1.0,
        ),
    ];
    let values = deflection::map(&inputs)
        .expect("runs")
        .values()
        .expect("all succeed");
    assert_eq!(values, vec![27.0, 1.0]);
    assert_eq!(deflection(&inputs[0].0, 0.5), 27.0);
}

#[test]
fn an_empty_batch_is_fine() {
    let batch = shaky::map(&[]).expect("runs");
    assert!(batch.is_empty());
    assert_eq!(batch.summary().total, 0);
}

#[test]
fn a_configuration_file_overrides_the_attribute() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("otwrap.toml");
    std::fs::write(
        &path,
        "backend = \"processes\"\nworkers = 3\n[model.shaky]\nworkers = 1\n",
    )
    .expect("write");
    let settings = shaky::runner()
        .config_file(&path)
        .settings()
        .expect("valid");
    assert_eq!(settings.backend, Backend::Processes);
    assert_eq!(settings.workers, 1);
    // The runner's own overrides win over the file.
    let settings = shaky::runner()
        .config_file(&path)
        .workers(5)
        .settings()
        .expect("valid");
    assert_eq!(settings.workers, 5);

    std::fs::write(&path, "wrokers = 3\n").expect("write");
    let err = shaky::runner()
        .config_file(&path)
        .map(&points(3))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown key `wrokers`") && err.contains("workers"),
        "{err}"
    );

    let err = shaky::runner()
        .config_file(dir.path().join("missing.toml"))
        .map(&points(3))
        .unwrap_err();
    assert!(err.to_string().contains("missing.toml"), "{err}");
}

#[test]
fn a_timeout_on_an_in_process_backend_is_refused_clearly() {
    let err = shaky::runner()
        .timeout(std::time::Duration::from_secs(1))
        .map(&points(3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("out-of-process backend"), "{err}");
}

#[test]
fn workers_default_to_every_available_cpu() {
    #[allow(dead_code)]
    #[parallelize]
    fn plain(x: f64) -> f64 {
        x
    }
    let settings = plain::runner().settings().expect("valid");
    assert_eq!(
        settings.workers,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    assert_eq!(settings.backend, Backend::Rayon);
}
