//! Models described by data, evaluated for real: a shell-script solver
//! copied in as a resource, reading the input file rendered from a template,
//! computing with `awk` in a child process, leaving a grandchild behind;
//! the refusals and failures an evaluation reports; the canonical bytes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use otwrap_runtime::coupling::{CouplingError, NumberFormat};
use otwrap_runtime::described::{
    DescribedError, DescriptionError, InputTemplate, ModelDescription, OutputReader, ReadRule, Step,
};

/// Reads `input.txt`, computes in an `awk` child, and leaves a `sleep`
/// behind that must die with the evaluation (its pid in `leftover.pid`).
const SOLVER: &str = r#"#!/bin/sh
set -e
sleep 4000 &
echo $! > leftover.pid
awk -v scale="$SCALE" '
  /^x =/ { x = $3 }
  /^y =/ { y = $3 }
  END {
    printf "sum = %.17g\n", scale * (x + y)
    printf "product %.17g\nproduct %.17g\n", 0, x * y
    printf "<result ratio=\"%.17g\"/>\n", x / y
  }' input.txt > output.txt &
wait $!
echo "solver done"
"#;

const TEMPLATE: &str = "# input of the solver\nx = @x@\ny = @y@\n";

/// The solver script in `dir`, for the description to copy.
fn solver_in(dir: &Path) -> PathBuf {
    let path = dir.join("solver.sh");
    std::fs::write(&path, SOLVER).unwrap();
    path
}

fn model(solver: &Path) -> ModelDescription {
    ModelDescription::new("solver", ["x", "y"], ["sum", "product", "ratio", "twice"])
        .copy(solver)
        .unwrap()
        .template(
            InputTemplate::inline("input.txt", TEMPLATE)
                .variables(["x", "y"])
                .format(NumberFormat::Scientific { digits: 6 }),
        )
        .step(
            Step::new("sh")
                .args(["solver.sh"])
                .env("SCALE", "10")
                .timeout(Duration::from_secs(120)),
        )
        .step(
            Step::new("sed -n 1p output.txt | awk '{ print \"twice\", $3 * 2 }' > twice.txt")
                .shell(true),
        )
        .read(OutputReader::new(
            "ratio",
            "output.txt",
            ReadRule::attribute("result", "ratio"),
        ))
        .read(OutputReader::new(
            "sum",
            "output.txt",
            ReadRule::token("sum ="),
        ))
        .read(OutputReader::new(
            "product",
            "output.txt",
            ReadRule::Regex {
                pattern: String::from(r"product (\R)"),
                occurrence: -1,
            },
        ))
        .read(OutputReader::new("twice", "twice.txt", ReadRule::at(0, 1)))
}

/// Whether `pid` is gone or a zombie (dead, not yet reaped).
fn dead(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn dead_within_5_s(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while !dead(pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    dead(pid)
}

/// A fresh work directory under `base`.
fn workdir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

#[test]
fn a_shell_solver_is_evaluated_over_several_points() {
    let base = tempfile::tempdir().unwrap();
    let interpreter = model(&solver_in(base.path())).compile().unwrap();
    assert_eq!(interpreter.name(), "solver");
    assert_eq!(interpreter.input_count(), 2);
    assert_eq!(interpreter.output_count(), 4);

    // (x, y) -> [10 (x + y), x y, x / y, 20 (x + y)], all exact in binary.
    let points = [
        ([1.5, 2.0], [35.0, 3.0, 0.75, 70.0]),
        ([-0.25, 4.0], [37.5, -1.0, -0.0625, 75.0]),
        ([3.0, -1.5], [15.0, -4.5, -2.0, 30.0]),
    ];
    for (index, (inputs, expected)) in points.iter().enumerate() {
        let dir = workdir(base.path(), &format!("point-{index}"));
        let outputs = interpreter.evaluate(inputs, &dir).unwrap();
        assert_eq!(outputs, expected, "point {index}");

        let leftover: u32 = std::fs::read_to_string(dir.join("leftover.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            dead_within_5_s(leftover),
            "the solver's background child {leftover} outlived the evaluation"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("stdout-1.txt")).unwrap(),
            "solver done\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("stderr-1.txt")).unwrap(),
            ""
        );
    }
    assert_eq!(
        std::fs::read_to_string(base.path().join("point-0/input.txt")).unwrap(),
        "# input of the solver\nx = 1.500000e+00\ny = 2.000000e+00\n"
    );
}

#[test]
fn points_are_evaluated_from_several_threads_at_once() {
    let base = tempfile::tempdir().unwrap();
    let interpreter = model(&solver_in(base.path())).compile().unwrap();
    let results: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let dir = workdir(base.path(), &format!("thread-{i}"));
                let interpreter = &interpreter;
                scope.spawn(move || interpreter.evaluate(&[f64::from(i), 2.0], &dir).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, outputs) in results.iter().enumerate() {
        let x = i as f64;
        assert_eq!(
            outputs,
            &[10.0 * (x + 2.0), x * 2.0, x / 2.0, 20.0 * (x + 2.0)]
        );
    }
}

#[test]
fn a_failing_step_is_named_with_the_end_of_its_stderr() {
    let base = tempfile::tempdir().unwrap();
    let description = model(&solver_in(base.path())).step(Step::new("sh").args([
        "-c",
        "echo 'post: reading output.txt'; echo 'post: mesh.dat is missing' >&2; exit 3",
    ]));
    let dir = workdir(base.path(), "run");
    let error = description.evaluate(&[1.0, 2.0], &dir).unwrap_err();
    assert!(
        matches!(
            &error,
            DescribedError::Step { step: 3, steps: 3, source, .. }
                if matches!(**source, CouplingError::ProgramFailed { .. })
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "model `solver`, step 3 of 3: `sh -c \"echo 'post: reading output.txt'; echo 'post: \
             mesh.dat is missing' >&2; exit 3\"` in `{}` failed with exit status 3; check its \
             input files and logs, or use .check(false) to accept this status; end of stderr:\n    \
             post: mesh.dat is missing",
            dir.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("stdout-3.txt")).unwrap(),
        "post: reading output.txt\n"
    );
}

#[test]
fn a_step_past_its_timeout_is_killed_and_named() {
    let base = tempfile::tempdir().unwrap();
    let description = ModelDescription::new("slow", ["x"], ["y"])
        .template(InputTemplate::inline("in.txt", "@x@").variable("x"))
        .step(
            Step::new("sleep")
                .args(["30"])
                .timeout(Duration::from_millis(200)),
        )
        .read(OutputReader::new("y", "in.txt", ReadRule::at(0, 0)));
    let dir = workdir(base.path(), "run");
    let error = description.evaluate(&[1.0], &dir).unwrap_err();
    assert!(
        matches!(
            &error,
            DescribedError::Step { step: 1, steps: 1, source, .. }
                if matches!(**source, CouplingError::Timeout { timeout, .. }
                    if timeout == Duration::from_millis(200))
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("model `slow`, step 1 of 1: `sleep 30` in `"),
        "{error}"
    );
}

/// A model whose step writes `out.txt` with `text`.
fn writing(text: &str) -> ModelDescription {
    ModelDescription::new("writer", ["x"], ["y"])
        .template(InputTemplate::inline("in.txt", "@x@").variable("x"))
        .step(Step::new("printf").args([text]).stdout_file("out.txt"))
}

#[test]
fn a_missing_output_names_the_file_and_token() {
    let base = tempfile::tempdir().unwrap();
    let dir = workdir(base.path(), "run");
    let description =
        writing("total = 1\n").read(OutputReader::new("y", "out.txt", ReadRule::token("Y=")));
    let error = description.evaluate(&[1.0], &dir).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "model `writer`, output `y` (read from `out.txt`): `{}`: token `Y=` not found; check \
             that the program wrote the expected output",
            dir.join("out.txt").display()
        )
    );

    let dir = workdir(base.path(), "run-2");
    let description =
        writing("total = 1\n").read(OutputReader::new("y", "results.txt", ReadRule::token("Y=")));
    let error = description.evaluate(&[1.0], &dir).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "model `writer`, output `y` (read from `results.txt`): cannot read `{}`: No such file \
             or directory (os error 2); check that the file exists and is readable",
            dir.join("results.txt").display()
        )
    );

    let dir = workdir(base.path(), "run-3");
    let description = writing("Y=1 Y=2\n").read(OutputReader::new(
        "y",
        "out.txt",
        ReadRule::Regex {
            pattern: String::from(r"Y=(\I)"),
            occurrence: 2,
        },
    ));
    let error = description.evaluate(&[1.0], &dir).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "model `writer`, output `y` (read from `out.txt`): `{}`: regex `Y=(\\I)` matches 2 \
             times, occurrence 2 was asked for (0-based, negative from the last); check that the \
             program wrote the expected output",
            dir.join("out.txt").display()
        )
    );
}

#[test]
fn token_skips_and_separators_reach_the_reader() {
    let base = tempfile::tempdir().unwrap();
    let dir = workdir(base.path(), "run");
    let description = writing("# a;b;c\n1;2;3\n# a;b;c\n4;5;6\n").read(OutputReader::new(
        "y",
        "out.txt",
        ReadRule::Token {
            token: String::from("#"),
            skip_tokens: -1,
            skip_lines: 1,
            skip_cols: -2,
            col_sep: Some(String::from(";")),
        },
    ));
    assert_eq!(description.evaluate(&[1.0], &dir).unwrap(), vec![5.0]);
}

#[test]
fn wrong_input_counts_missing_resources_and_invalid_descriptions_are_errors() {
    let base = tempfile::tempdir().unwrap();
    let interpreter = model(&solver_in(base.path())).compile().unwrap();
    let dir = workdir(base.path(), "run");
    let error = interpreter.evaluate(&[1.0], &dir).unwrap_err();
    assert_eq!(
        error.to_string(),
        "model `solver` takes 2 inputs (x, y) but the point has 1 values"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing ran");

    let missing = base.path().join("no-such-mesh.dat");
    let description = model(&solver_in(base.path())).copy(&missing).unwrap();
    let error = description.evaluate(&[1.0, 2.0], &dir).unwrap_err();
    assert!(
        matches!(&error, DescribedError::Resource { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(&format!(
            "model `solver`, resource `{}`: file or folder to copy into the work directory not \
             found",
            missing.display()
        )),
        "{error}"
    );

    let mut invalid = model(&solver_in(base.path()));
    invalid.readers.pop();
    let error = invalid.evaluate(&[1.0, 2.0], &dir).unwrap_err();
    assert_eq!(
        error.to_string(),
        "model `solver`: output `twice` has no reader; say which file and how to read it"
    );
}

#[test]
fn bytes_are_canonical_and_round_trip() {
    let solver = Path::new("/opt/solver/solver.sh");
    let description = model(solver);
    let bytes = description.to_bytes();
    assert_eq!(
        bytes,
        model(solver).to_bytes(),
        "same description, same bytes"
    );
    assert_eq!(bytes[0], 1, "the format version comes first");
    assert_eq!(ModelDescription::from_bytes(&bytes).unwrap(), description);

    let mut changed = model(solver);
    changed.templates[0].text.push_str("# one more line\n");
    assert_ne!(
        changed.to_bytes(),
        bytes,
        "a changed template changes the bytes"
    );
    let mut changed = model(solver);
    changed.steps[0]
        .env
        .insert(String::from("SCALE"), String::from("11"));
    assert_ne!(
        changed.to_bytes(),
        bytes,
        "a changed step changes the bytes"
    );

    // Environment variables are sorted: the order they were given in does
    // not matter.
    let ab = Step::new("solver").env("A", "1").env("B", "2");
    let ba = Step::new("solver").env("B", "2").env("A", "1");
    let with = |step: Step| {
        ModelDescription::new("m", ["x"], ["y"])
            .template(InputTemplate::inline("in", "@x@").variable("x"))
            .step(step)
            .read(OutputReader::new("y", "in", ReadRule::at(0, 0)))
            .to_bytes()
    };
    assert_eq!(with(ab), with(ba));
}

/// The bytes of a small description, pinned: they enter cache keys, so a
/// change here is a change of every described model's key and needs a new
/// [`FORMAT`](otwrap_runtime::described::FORMAT).
#[test]
fn bytes_of_a_small_description_are_pinned() {
    let description = ModelDescription::new("m", ["x"], ["y"])
        .template(
            InputTemplate::inline("in", "x=@x@")
                .variable("x")
                .format(NumberFormat::Fixed { decimals: 3 }),
        )
        .step(
            Step::new("s")
                .args(["a"])
                .timeout(Duration::from_secs(2))
                .env("K", "v"),
        )
        .read(OutputReader::new("y", "out", ReadRule::token("y=")));
    let hex: String = description
        .to_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(hex, PINNED);
}

/// Format 1, then the fields in order: "m", ["x"], ["y"]; template "in",
/// "x=@x@", [("x", "@x@")], Fixed (variant 1) 3; no copy; step "s", ["a"],
/// Some(2.0 as little-endian f64), {"K": "v"}, no shell, no stdout file;
/// reader "y", "out", Token (variant 0) "y=" 0 0 0 None.
const PINNED: &str = "01016d0101780101790102696e05783d4078400101780340784001030001017301016101\
                      000000000000004001014b01760000010179036f75740002793d00000000";

#[test]
fn templates_read_from_files_are_embedded_when_built() {
    let base = tempfile::tempdir().unwrap();
    let path = base.path().join("input.tpl");
    std::fs::write(&path, TEMPLATE).unwrap();
    let build = || {
        ModelDescription::new("solver", ["x", "y"], ["s"])
            .template(
                InputTemplate::from_file("input.txt", &path)
                    .unwrap()
                    .variables(["x", "y"]),
            )
            .step(Step::new("true"))
            .read(OutputReader::new("s", "input.txt", ReadRule::token("x =")))
    };
    let built = build();
    assert_eq!(built.templates[0].text, TEMPLATE);
    let bytes = built.to_bytes();

    std::fs::write(&path, "x = @x@ y = @y@\n").unwrap();
    assert_eq!(
        built.to_bytes(),
        bytes,
        "the built description keeps its text"
    );
    assert_ne!(build().to_bytes(), bytes, "a rebuilt one has the new text");

    let dir = workdir(base.path(), "run");
    assert_eq!(built.evaluate(&[0.5, 1.0], &dir).unwrap(), vec![0.5]);

    let missing = base.path().join("missing.tpl");
    let error = InputTemplate::from_file("input.txt", &missing).unwrap_err();
    assert!(
        matches!(&error, DescriptionError::ReadTemplate { path, .. } if *path == missing),
        "{error:?}"
    );
    assert!(error.to_string().contains("missing.tpl"), "{error}");
}

#[test]
fn bytes_that_are_not_a_valid_description_are_refused() {
    let error = ModelDescription::from_bytes(&[]).unwrap_err();
    assert!(
        matches!(error, DescriptionError::Decode { .. }),
        "{error:?}"
    );
    let error = ModelDescription::from_bytes(&[1, 200, 7]).unwrap_err();
    assert!(
        matches!(error, DescriptionError::Decode { .. }),
        "{error:?}"
    );

    let mut bytes = model(Path::new("/opt/solver.sh")).to_bytes();
    bytes[0] = 2;
    let error = ModelDescription::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        error.to_string(),
        "model description format 2 is not supported by this otwrap, which reads format 1; use \
         the same otwrap version on the driver and the workers"
    );

    let mut invalid = model(Path::new("/opt/solver.sh"));
    invalid.steps[1].program.clear();
    let error = ModelDescription::from_bytes(&invalid.to_bytes()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "model `solver`, step 2: the program is empty; give the command to run"
    );
}

#[test]
fn a_description_reads_from_toml() {
    let text = r#"
        format = 1
        name = "beam"
        inputs = ["F", "L"]
        outputs = ["deviation"]
        copy = ["/opt/beam/beam.sh"]

        [[templates]]
        file = "beam.xml"
        text = '<beam F="@F@" L="@L@"/>'
        format = { scientific = { digits = 6 } }
        tokens = [{ variable = "F", token = "@F@" }, { variable = "L", token = "@L@" }]

        [[steps]]
        program = "sh"
        args = ["beam.sh", "beam.xml"]
        timeout = 60.0
        env = { OMP_NUM_THREADS = "1" }

        [[readers]]
        output = "deviation"
        file = "out.xml"
        rule = { attribute = { element = "outputs", attribute = "deviation" } }
    "#;
    let parsed: ModelDescription = toml::from_str(text).unwrap();
    let built = ModelDescription::new("beam", ["F", "L"], ["deviation"])
        .copy("/opt/beam/beam.sh")
        .unwrap()
        .template(
            InputTemplate::inline("beam.xml", r#"<beam F="@F@" L="@L@"/>"#)
                .variables(["F", "L"])
                .format(NumberFormat::C_E),
        )
        .step(
            Step::new("sh")
                .args(["beam.sh", "beam.xml"])
                .timeout(Duration::from_secs(60))
                .env("OMP_NUM_THREADS", "1"),
        )
        .read(OutputReader::new(
            "deviation",
            "out.xml",
            ReadRule::attribute("outputs", "deviation"),
        ));
    assert_eq!(parsed, built);
    assert_eq!(parsed.to_bytes(), built.to_bytes());
    parsed.validate().unwrap();
}
