//! The `beam` binary as a wrapper sees it: exit statuses, stderr messages,
//! the output file's format and the deviation's value.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BEAM: &str = env!("CARGO_BIN_EXE_beam");
const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../beam/beam_input_template.xml"
);
const DOE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../beam/doe.csv");
const OUTPUT_FILE: &str = "_beam_outputs_.xml";

/// A fresh work directory, removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("beam-cli-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        WorkDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, text: &str) {
        fs::write(self.0.join(name), text).unwrap();
    }

    fn output(&self) -> String {
        fs::read_to_string(self.0.join(OUTPUT_FILE)).unwrap()
    }

    fn has_output(&self) -> bool {
        self.0.join(OUTPUT_FILE).exists()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn beam(dir: &WorkDir, args: &[&str]) -> Output {
    Command::new(BEAM)
        .args(args)
        .current_dir(dir.path())
        .env_remove("BEAM_REQUIRE_LICENCE")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn filled_template(f: &str, e: &str, l: &str, i: &str) -> String {
    fs::read_to_string(TEMPLATE)
        .unwrap()
        .replace("@F@", f)
        .replace("@E@", e)
        .replace("@L@", l)
        .replace("@I@", i)
}

fn deviation_in(output: &str) -> f64 {
    let start = output.find("<outputs deviation=\"").unwrap() + "<outputs deviation=\"".len();
    let end = start + output[start..].find('"').unwrap();
    output[start..end].parse().unwrap()
}

fn formula(f: f64, e: f64, l: f64, i: f64) -> f64 {
    f * l.powi(3) / (3.0 * e * i)
}

#[test]
fn computes_the_deviation_from_the_filled_template() {
    let dir = WorkDir::new("ok");
    dir.write("input.xml", &filled_template("30000", "3e7", "255", "400"));
    let output = beam(&dir, &["-x", "input.xml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stderr.is_empty());
    // printf("%e", 30000 * pow(255, 3) / (3 * 3e7 * 400))
    assert_eq!(
        dir.output(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <beam>\n  \
             <description>\n    \
             Cantilever beam under a point load at its free end.\n    \
             deviation = F * L^3 / (3 * E * I)\n  \
             </description>\n  \
             <inputs F=\"3.000000e+04\" E=\"3.000000e+07\" L=\"2.550000e+02\" I=\"4.000000e+02\"/>\n  \
             <outputs deviation=\"1.381781e+01\"/>\n\
             </beam>\n"
    );
}

#[test]
fn deviation_matches_the_formula_to_printed_precision() {
    let dir = WorkDir::new("formula");
    let points = [
        (
            35127.43356887938,
            27193269.86607188,
            252.13801743792388,
            386.7852920856028,
        ),
        (300.0, 7e10, 2.55, 1.5e-7),
        (0.0, 3e7, 250.0, 310.0),
        (1e-3, 1e12, 1e-2, 1e3),
    ];
    for (f, e, l, i) in points {
        let text = filled_template(
            &f.to_string(),
            &e.to_string(),
            &l.to_string(),
            &i.to_string(),
        );
        dir.write("input.xml", &text);
        let output = beam(&dir, &["-x", "input.xml"]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let printed = deviation_in(&dir.output());
        let exact = formula(f, e, l, i);
        assert!(
            (printed - exact).abs() <= 5e-7 * exact.abs(),
            "{printed} vs {exact}"
        );
    }
}

#[test]
fn output_uses_c_percent_e_format() {
    let dir = WorkDir::new("format");
    dir.write("input.xml", &filled_template("1", "1", "1", "1e-8"));
    assert_eq!(beam(&dir, &["-x", "input.xml"]).status.code(), Some(0));
    let output = dir.output();
    assert!(
        output.contains("<outputs deviation=\"3.333333e+07\"/>"),
        "{output}"
    );
    assert!(output.contains("I=\"1.000000e-08\""), "{output}");
}

#[test]
fn zero_inertia_gives_infinity_not_an_error() {
    let dir = WorkDir::new("inf");
    dir.write("input.xml", &filled_template("30000", "3e7", "255", "0"));
    let output = beam(&dir, &["-x", "input.xml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(dir.output().contains("<outputs deviation=\"inf\"/>"));
}

#[test]
fn zero_over_zero_prints_nan() {
    let dir = WorkDir::new("nan");
    dir.write("input.xml", &filled_template("0", "3e7", "255", "0"));
    assert_eq!(beam(&dir, &["-x", "input.xml"]).status.code(), Some(0));
    // glibc prints "-nan" for x86's default NaN, "nan" elsewhere.
    assert!(dir.output().contains("nan\"/>"), "{}", dir.output());
}

#[test]
fn missing_file_name_is_exit_3() {
    let dir = WorkDir::new("usage");
    for args in [&[][..], &["-x"][..], &["-x", ""][..]] {
        let output = beam(&dir, args);
        assert_eq!(output.status.code(), Some(3), "{args:?}");
        assert_eq!(stderr(&output), "beam: fileName is not set\n");
    }
    let output = beam(&dir, &["input.xml"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("unexpected argument `input.xml`"));
    assert!(!dir.has_output());
}

#[test]
fn attached_option_value_and_help() {
    let dir = WorkDir::new("attached");
    dir.write("input.xml", &filled_template("1", "1", "1", "1"));
    assert_eq!(beam(&dir, &["-xinput.xml"]).status.code(), Some(0));
    let help = beam(&dir, &["-h"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("beam -x INPUT.xml"));
}

#[test]
fn unreadable_or_malformed_input_is_exit_4_naming_the_file() {
    let dir = WorkDir::new("input");
    let cases = [
        (None, "cannot read input file `input.xml`"),
        (Some("hello, world"), "not a beam input file"),
        (
            Some("<other><inputs F=\"1\" E=\"1\" L=\"1\" I=\"1\"/></other>"),
            "root element is not <beam>",
        ),
        (Some("<beam><description/></beam>"), "no <inputs> element"),
        (
            Some("<beam><inputs F=\"1\" E=\"1\" L=\"1\"/></beam>"),
            "attribute I missing from <inputs>",
        ),
        (
            Some("<beam><inputs F=\"1\" E=\"abc\" L=\"1\" I=\"1\"/></beam>"),
            "attribute E=\"abc\" of <inputs> is not a number",
        ),
        (
            Some("<beam><inputs F=\"1\" E=\"1\" L=1 I=\"1\"/></beam>"),
            "malformed <inputs> element",
        ),
        (
            Some("<beam><inputs F=\"@F@\" E=\"1\" L=\"1\" I=\"1\"/></beam>"),
            "attribute F=\"@F@\"",
        ),
    ];
    for (content, expected) in cases {
        let _ = fs::remove_file(dir.path().join("input.xml"));
        if let Some(content) = content {
            dir.write("input.xml", content);
        }
        let output = beam(&dir, &["-x", "input.xml"]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(4), "{message}");
        assert!(message.starts_with("beam: "), "{message}");
        assert!(message.contains("input.xml"), "{message}");
        assert!(message.contains(expected), "{message} lacks {expected}");
        assert!(!dir.has_output());
    }
}

#[test]
fn attributes_are_read_by_name_in_any_order_and_spacing() {
    let dir = WorkDir::new("order");
    dir.write(
        "input.xml",
        "<?xml version=\"1.0\"?>\n<!-- swapped -->\n<beam>\n<inputs\n   I = '400'\tL=\"255\"\n E=\"3e7\"   F=\"30000\"\n/>\n</beam>\n",
    );
    let output = beam(&dir, &["-x", "input.xml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(deviation_in(&dir.output()), 1.381781e1);
    // No description in the input: none in the output.
    assert!(!dir.output().contains("description"));
}

#[test]
fn negative_load_is_refused_with_exit_2() {
    let dir = WorkDir::new("negative");
    dir.write("input.xml", &filled_template("-1", "3e7", "255", "400"));
    let output = beam(&dir, &["-x", "input.xml"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr(&output), "beam: F est strictement negatif\n");
    assert!(!dir.has_output());
}

#[test]
fn unwritable_output_is_exit_5() {
    let dir = WorkDir::new("unwritable");
    dir.write("input.xml", &filled_template("1", "1", "1", "1"));
    // A directory in the way fails even for root.
    fs::create_dir(dir.path().join(OUTPUT_FILE)).unwrap();
    let output = beam(&dir, &["-x", "input.xml"]);
    assert_eq!(output.status.code(), Some(5));
    assert!(
        stderr(&output)
            .starts_with("beam: cannot write `_beam_outputs_.xml` in the current directory"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn licence_is_required_only_when_asked() {
    let dir = WorkDir::new("licence");
    dir.write("input.xml", &filled_template("1", "1", "1", "1"));
    let run = |value: &str| {
        Command::new(BEAM)
            .args(["-x", "input.xml"])
            .current_dir(dir.path())
            .env("BEAM_REQUIRE_LICENCE", value)
            .output()
            .unwrap()
    };
    let output = run("1");
    assert_eq!(output.status.code(), Some(6));
    assert!(
        stderr(&output).contains("licence file `licence.txt` not found"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.has_output());

    assert_eq!(run("0").status.code(), Some(0));
    dir.write("licence.txt", "granted\n");
    assert_eq!(run("1").status.code(), Some(0));
}

#[test]
fn whole_design_of_experiments_runs() {
    let doe = fs::read_to_string(DOE).unwrap();
    let mut lines = doe.lines();
    assert_eq!(
        lines.next(),
        Some("\"Load\",\"Young modulus\",\"Length\",\"Inertia\"")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|line| line.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 100);
    assert_eq!(rows.iter().filter(|row| row[3] == 0.0).count(), 1);

    let dir = WorkDir::new("doe");
    for row in &rows {
        assert_eq!(row.len(), 4);
        let values: Vec<String> = row.iter().map(|v| format!("{v:e}")).collect();
        dir.write(
            "input.xml",
            &filled_template(&values[0], &values[1], &values[2], &values[3]),
        );
        let output = beam(&dir, &["-x", "input.xml"]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let deviation = deviation_in(&dir.output());
        if row[3] == 0.0 {
            assert_eq!(deviation, f64::INFINITY);
        } else {
            let exact = formula(row[0], row[1], row[2], row[3]);
            assert!((deviation - exact).abs() <= 5e-7 * exact, "{row:?}");
            assert!((3.0..60.0).contains(&deviation), "{row:?}: {deviation}");
        }
    }
}
