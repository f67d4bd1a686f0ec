//! The description itself: plain serde data, with builders that read
//! template files and resolve resource paths once, when it is built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::DescriptionError;
use super::FORMAT;
use crate::coupling::{NumberFormat, Template};

/// An external-code coupling described as data: what
/// Persalys calls a `CouplingPhysicalModel` and Dakota a `fork` interface.
///
/// One evaluation, in a fresh work directory: copy the [`copy`](Self::copy)
/// resources in, write each [`InputTemplate`] filled with the point's
/// values, run the [`Step`]s in order, then read each output with its
/// [`OutputReader`].
///
/// Everything an evaluation needs is inside the description except the
/// resources (absolute paths, copied at evaluation time): template texts
/// are embedded when the description is built, so
/// [`to_bytes`](Self::to_bytes) changes when a template does.
///
/// Build it with the methods below, or deserialize it (TOML, JSON); either
/// way check it with [`validate`](Self::validate) (done by
/// [`from_bytes`](Self::from_bytes) and [`compile`](Self::compile) too).
///
/// ```
/// use otwrap_runtime::described::{InputTemplate, ModelDescription, OutputReader, ReadRule, Step};
///
/// let model = ModelDescription::new("double", ["x"], ["y"])
///     .template(InputTemplate::inline("input.txt", "x = @x@\n").variable("x"))
///     .step(Step::new("awk").args(["/^x = / { print \"y =\", 2 * $3 }", "input.txt"]).stdout_file("output.txt"))
///     .read(OutputReader::new("y", "output.txt", ReadRule::token("y =")));
/// model.validate()?;
///
/// let dir = tempfile::tempdir()?;
/// assert_eq!(model.evaluate(&[1.5], dir.path())?, vec![3.0]);
/// assert_eq!(ModelDescription::from_bytes(&model.to_bytes())?, model);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelDescription {
    /// The format version of the description ([`FORMAT`](super::FORMAT) when built here).
    pub format: u32,
    /// The model's name, used in every message.
    pub name: String,
    /// The input variables, in the order of a point's values.
    pub inputs: Vec<String>,
    /// The output variables, in the order of the returned values.
    pub outputs: Vec<String>,
    /// The input files written from templates.
    #[serde(default)]
    pub templates: Vec<InputTemplate>,
    /// Files or folders copied into the work directory (absolute paths).
    #[serde(default)]
    pub copy: Vec<String>,
    /// The commands run, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// How each output is read, one reader per output (in any order).
    #[serde(default)]
    pub readers: Vec<OutputReader>,
}

/// An input file written into the work directory from a template, with a
/// token replaced by each listed variable's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InputTemplate {
    /// The file written, relative to the work directory.
    pub file: String,
    /// The template's text.
    pub text: String,
    /// The variables substituted and their tokens.
    #[serde(default)]
    pub tokens: Vec<TokenBinding>,
    /// How numbers are printed (default: shortest round-trip).
    #[serde(default, with = "NumberFormatDef")]
    pub format: NumberFormat,
}

/// One variable of a template and the token its value replaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBinding {
    /// The input variable.
    pub variable: String,
    /// The literal text replaced by its value, e.g. `@x@`.
    pub token: String,
}

/// One command of an evaluation, run in the work directory with
/// [`Program`](crate::coupling::Program) (its own supervised process group,
/// no shell unless asked). Its stdout and stderr go to `stdout-N.txt` and
/// `stderr-N.txt` in the work directory (`N` its 1-based number).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Step {
    /// The program (found through `PATH`, or a path), or with
    /// [`shell`](Self::shell) a shell command line.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Seconds after which the step and its children are killed.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Environment variables set for the step.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Runs `program` through `sh -c` (arguments appended, quoted).
    #[serde(default)]
    pub shell: bool,
    /// A file (relative to the work directory) that receives stdout instead
    /// of `stdout-N.txt`, for solvers that print their results.
    #[serde(default)]
    pub stdout: Option<String>,
}

/// How one output is read from a file the steps wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutputReader {
    /// The output variable.
    pub output: String,
    /// The file read, relative to the work directory.
    pub file: String,
    /// Where the value is in the file.
    pub rule: ReadRule,
}

/// Where a value is in a result file; each rule is one method of
/// [`ResultFile`](crate::coupling::ResultFile).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadRule {
    /// The number after a token, with the skips of
    /// [`Skip`](crate::coupling::Skip) (`openturns.coupling_tools.get_value`).
    Token {
        /// The token, matched literally.
        token: String,
        /// Occurrences of the token to skip (negative: from the last).
        #[serde(default)]
        skip_tokens: i64,
        /// Lines to move from the token's line (negative: up).
        #[serde(default)]
        skip_lines: i64,
        /// Fields to skip (negative: from the end of the line).
        #[serde(default)]
        skip_cols: i64,
        /// Field separator instead of whitespace.
        #[serde(default)]
        col_sep: Option<String>,
    },
    /// The first capture group of a regex match (`\R` a real, `\I` an
    /// integer), as [`read_values_by_regex`](crate::coupling::read_values_by_regex).
    Regex {
        /// The pattern.
        pattern: String,
        /// Which match (0 the first, negative from the last: -1 the last).
        #[serde(default)]
        occurrence: i64,
    },
    /// The number at a line and column, both 0-based, negative from the end.
    At {
        /// The line.
        line: i64,
        /// The field.
        column: i64,
        /// Field separator instead of whitespace.
        #[serde(default)]
        col_sep: Option<String>,
    },
    /// The number in an XML-ish attribute, as
    /// [`read_attribute`](crate::coupling::read_attribute).
    Attribute {
        /// The element name.
        element: String,
        /// The attribute name.
        attribute: String,
    },
}

/// `NumberFormat` belongs to the coupling tools, which know nothing of
/// serde; this mirror gives it a serde form without touching them.
#[derive(Serialize, Deserialize)]
#[serde(remote = "NumberFormat", rename_all = "snake_case")]
enum NumberFormatDef {
    Scientific { digits: usize },
    Fixed { decimals: usize },
    Shortest,
}

impl ModelDescription {
    /// A model with these inputs and outputs, and nothing else yet.
    pub fn new<I, O>(
        name: impl Into<String>,
        inputs: impl IntoIterator<Item = I>,
        outputs: impl IntoIterator<Item = O>,
    ) -> Self
    where
        I: Into<String>,
        O: Into<String>,
    {
        ModelDescription {
            format: FORMAT,
            name: name.into(),
            inputs: inputs.into_iter().map(Into::into).collect(),
            outputs: outputs.into_iter().map(Into::into).collect(),
            templates: Vec::new(),
            copy: Vec::new(),
            steps: Vec::new(),
            readers: Vec::new(),
        }
    }

    /// Adds an input file written from a template.
    pub fn template(mut self, template: InputTemplate) -> Self {
        self.templates.push(template);
        self
    }

    /// Adds a file or folder copied into every work directory. A relative
    /// path is made absolute now, against the current directory, so that
    /// evaluations do not depend on where they run from.
    pub fn copy(mut self, path: impl AsRef<Path>) -> Result<Self, DescriptionError> {
        let path = path.as_ref();
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let text = absolute
            .to_str()
            .ok_or_else(|| DescriptionError::NonUtf8Path {
                path: absolute.clone(),
            })?;
        self.copy.push(text.to_owned());
        Ok(self)
    }

    /// Adds a step, run after the ones already added.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds the reader of an output.
    pub fn read(mut self, reader: OutputReader) -> Self {
        self.readers.push(reader);
        self
    }
}

impl InputTemplate {
    /// A template given as text, writing `file` in the work directory.
    pub fn inline(file: impl Into<String>, text: impl Into<String>) -> Self {
        InputTemplate {
            file: file.into(),
            text: text.into(),
            tokens: Vec::new(),
            format: NumberFormat::default(),
        }
    }

    /// A template read now from `path` (UTF-8), writing `file` in the work
    /// directory. Its text is embedded in the description: later edits of
    /// the file do not change it.
    pub fn from_file(
        file: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<Self, DescriptionError> {
        let path = path.as_ref();
        let template =
            Template::from_file(path).map_err(|source| DescriptionError::ReadTemplate {
                path: PathBuf::from(path),
                source: Box::new(source),
            })?;
        Ok(InputTemplate::inline(file, template.text()))
    }

    /// Substitutes `variable`, whose token is `@variable@`.
    pub fn variable(self, variable: impl Into<String>) -> Self {
        let variable = variable.into();
        let token = format!("@{variable}@");
        self.variable_token(variable, token)
    }

    /// Substitutes each of `variables`, with the default tokens `@name@`.
    pub fn variables<S: Into<String>>(self, variables: impl IntoIterator<Item = S>) -> Self {
        variables.into_iter().fold(self, Self::variable)
    }

    /// Substitutes `variable`, whose token is `token`.
    pub fn variable_token(mut self, variable: impl Into<String>, token: impl Into<String>) -> Self {
        self.tokens.push(TokenBinding {
            variable: variable.into(),
            token: token.into(),
        });
        self
    }

    /// How numbers are printed (default [`NumberFormat::Shortest`]).
    pub fn format(mut self, format: NumberFormat) -> Self {
        self.format = format;
        self
    }
}

impl Step {
    /// Runs `program` (no shell) with no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Step {
            program: program.into(),
            args: Vec::new(),
            timeout: None,
            env: BTreeMap::new(),
            shell: false,
            stdout: None,
        }
    }

    /// Adds arguments.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Kills the step and its children after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout.as_secs_f64());
        self
    }

    /// Sets an environment variable for the step.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Runs the program string through `sh -c`.
    pub fn shell(mut self, shell: bool) -> Self {
        self.shell = shell;
        self
    }

    /// Sends stdout to this file (relative to the work directory).
    pub fn stdout_file(mut self, file: impl Into<String>) -> Self {
        self.stdout = Some(file.into());
        self
    }
}

impl OutputReader {
    /// Reads `output` from `file` (relative to the work directory) by `rule`.
    pub fn new(output: impl Into<String>, file: impl Into<String>, rule: ReadRule) -> Self {
        OutputReader {
            output: output.into(),
            file: file.into(),
            rule,
        }
    }
}

impl ReadRule {
    /// The number right after the first occurrence of `token`.
    pub fn token(token: impl Into<String>) -> Self {
        ReadRule::Token {
            token: token.into(),
            skip_tokens: 0,
            skip_lines: 0,
            skip_cols: 0,
            col_sep: None,
        }
    }

    /// The first capture group of the first match of `pattern`.
    pub fn regex(pattern: impl Into<String>) -> Self {
        ReadRule::Regex {
            pattern: pattern.into(),
            occurrence: 0,
        }
    }

    /// The number at `line` and `column` (0-based, negative from the end),
    /// fields separated by whitespace.
    pub fn at(line: i64, column: i64) -> Self {
        ReadRule::At {
            line,
            column,
            col_sep: None,
        }
    }

    /// The number in `attribute="..."` of the first `<element>` having it.
    pub fn attribute(element: impl Into<String>, attribute: impl Into<String>) -> Self {
        ReadRule::Attribute {
            element: element.into(),
            attribute: attribute.into(),
        }
    }
}
