//! Coupling tools: what a model function needs to drive an external program
//! through files, the counterpart of `openturns.coupling_tools`.
//!
//! One evaluation usually goes through three steps, each in its own
//! submodule:
//!
//! 1. fill an input-file [`Template`] with the point's values
//!    ([`NumberFormat`] says how numbers are printed) and write it into the
//!    evaluation's work directory;
//! 2. run the solver with [`Program`]: no shell unless asked, its own process
//!    group so that a timeout kills the whole tree, stdout/stderr captured to
//!    files in the work directory, a non-zero exit turned into an error that
//!    quotes the end of stderr;
//! 3. read the results back from the files the solver wrote
//!    ([`read_value_by_token`], [`read_value_at`], [`read_values_by_regex`],
//!    [`read_attribute`], or [`ResultFile`] to read one file once and take
//!    several values from it).
//!
//! Every failure is a [`CouplingError`] whose message names the file, token,
//! line, program or exit status involved and says what to check.
//!
//! ```
//! use otwrap_runtime::coupling::{read_attribute, NumberFormat, Program, Template};
//!
//! let dir = std::env::temp_dir().join(format!("otwrap-coupling-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//!
//! let template = Template::new(r#"<inputs F="@F@" L="@L@"/>"#, "beam_input_template.xml");
//! template.fill_to(
//!     dir.join("input.xml"),
//!     &[("@F@", 3e4), ("@L@", 255.0)],
//!     NumberFormat::Scientific { digits: 6 },
//! )?;
//!
//! // Stands in for the solver: copies its input to its output.
//! Program::new("cp").args(["input.xml", "output.xml"]).current_dir(&dir).run()?;
//!
//! assert_eq!(read_attribute(dir.join("output.xml"), "inputs", "F")?, 3e4);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod format;
mod program;
mod results;
mod template;

pub use error::CouplingError;
pub use format::NumberFormat;
pub use program::{Capture, Captured, Output, Program};
pub use regex::Regex;
pub use results::{
    read_attribute, read_value_at, read_value_by_token, read_values_by_regex, ResultFile, Skip,
};
pub use template::{Substitutions, Template, Value};

// For the interpreter of described models, which compiles its output
// patterns once per description.
pub(crate) use results::compile_pattern;
