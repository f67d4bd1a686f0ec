//! What the beam example and the beam benchmark share: the input template
//! and the solver binary (found, or built on first use).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use otwrap::coupling::Template;

/// The error type of the beam model.
pub type BoxError = Box<dyn Error + Send + Sync>;

const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/beam/beam_input_template.xml"
);

/// The XML input template, read once.
pub fn template() -> Result<&'static Template, BoxError> {
    static TEMPLATE_TEXT: OnceLock<Result<Template, String>> = OnceLock::new();
    TEMPLATE_TEXT
        .get_or_init(|| Template::from_file(TEMPLATE).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| e.clone().into())
}

/// The solver binary: `$BEAM_SOLVER`, or `beam` next to this example's
/// target directory (built with cargo when missing).
pub fn solver() -> Result<&'static Path, BoxError> {
    static SOLVER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SOLVER
        .get_or_init(|| find_or_build_solver().map_err(|e| e.to_string()))
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(|e| e.clone().into())
}

fn find_or_build_solver() -> Result<PathBuf, BoxError> {
    if let Some(path) = std::env::var_os("BEAM_SOLVER") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/beam -> target/<profile>/beam
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory; set BEAM_SOLVER to the solver binary")?;
    let solver = profile_dir.join("beam");
    if solver.is_file() {
        return Ok(solver);
    }
    eprintln!("building the beam solver (examples/beam-solver) ...");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-q", "-p", "beam-solver", "--manifest-path"]);
    build.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status()?;
    if !status.success() || !solver.is_file() {
        return Err(format!(
            "building the beam solver failed ({status}); build it with `cargo build --release -p beam-solver` \
             or set BEAM_SOLVER"
        )
        .into());
    }
    Ok(solver)
}
