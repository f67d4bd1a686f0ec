//! The interpreter: a validated description compiled once (templates,
//! programs, regexes) and evaluated point after point.

use std::path::{Path, PathBuf};

use regex::Regex;

use super::description::{ModelDescription, ReadRule};
use super::error::{DescribedError, DescriptionError};
use super::validate::{stderr_name, stdout_name, timeout};
use crate::coupling::{CouplingError, NumberFormat, Program, ResultFile, Skip, Template};
use crate::workdir::copy_entry;

/// A [`ModelDescription`] ready to evaluate points: validated once, its
/// templates, programs and regexes built once. Made by
/// [`ModelDescription::compile`]; cheap to share between threads.
///
/// ```
/// use otwrap_runtime::described::{InputTemplate, ModelDescription, OutputReader, ReadRule, Step};
///
/// let model = ModelDescription::new("sum", ["a", "b"], ["s"])
///     .template(InputTemplate::inline("in.txt", "@a@ @b@\n").variables(["a", "b"]))
///     .step(Step::new("awk '{ print \"s=\" $1 + $2 }' in.txt > out.txt").shell(true))
///     .read(OutputReader::new("s", "out.txt", ReadRule::token("s=")))
///     .compile()?;
/// let dir = tempfile::tempdir()?;
/// assert_eq!(model.evaluate(&[1.0, 2.5], dir.path())?, vec![3.5]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Interpreter {
    name: String,
    inputs: Vec<String>,
    templates: Vec<CompiledTemplate>,
    resources: Vec<PathBuf>,
    steps: Vec<Program>,
    readers: Vec<CompiledReader>,
}

#[derive(Clone, Debug)]
struct CompiledTemplate {
    file: String,
    template: Template,
    /// Each token with the index of its input.
    tokens: Vec<(String, usize)>,
    format: NumberFormat,
}

/// The reader of one output, in output order.
#[derive(Clone, Debug)]
struct CompiledReader {
    output: String,
    file: String,
    rule: CompiledRule,
}

#[derive(Clone, Debug)]
enum CompiledRule {
    Token {
        token: String,
        tokens: isize,
        lines: isize,
        cols: isize,
        col_sep: Option<String>,
    },
    Regex {
        /// As written (`\R` unexpanded), for messages.
        pattern: String,
        regex: Regex,
        occurrence: isize,
    },
    At {
        line: isize,
        column: isize,
        col_sep: Option<String>,
    },
    Attribute {
        element: String,
        attribute: String,
    },
}

impl ModelDescription {
    /// Validates the description and prepares it for evaluation; see
    /// [`Interpreter`]. Compile once, evaluate many points.
    pub fn compile(&self) -> Result<Interpreter, DescriptionError> {
        let mut regexes = self.checked()?;
        let input_index = |variable: &str| self.inputs.iter().position(|name| name == variable);
        let templates = self
            .templates
            .iter()
            .map(|template| CompiledTemplate {
                file: template.file.clone(),
                // Named after the file it writes: that is what a user
                // finds in the work directory.
                template: Template::new(
                    template.text.clone(),
                    format!("template of {}", template.file),
                ),
                tokens: template
                    .tokens
                    .iter()
                    .filter_map(|binding| {
                        Some((binding.token.clone(), input_index(&binding.variable)?))
                    })
                    .collect(),
                format: template.format,
            })
            .collect();
        let steps = self
            .steps
            .iter()
            .enumerate()
            .map(|(index, step)| {
                let number = index + 1;
                let mut program = Program::new(&step.program)
                    .args(&step.args)
                    .shell(step.shell)
                    .stdout_file(step.stdout.clone().unwrap_or_else(|| stdout_name(number)))
                    .stderr_file(stderr_name(number));
                if let Some(limit) = step.timeout.and_then(timeout) {
                    program = program.timeout(limit);
                }
                for (key, value) in &step.env {
                    program = program.env(key, value);
                }
                program
            })
            .collect();
        let mut readers = Vec::with_capacity(self.outputs.len());
        for output in &self.outputs {
            // Validation made sure each output has exactly one reader.
            let Some(at) = self
                .readers
                .iter()
                .position(|reader| &reader.output == output)
            else {
                continue;
            };
            let reader = &self.readers[at];
            let bad = |problem: String| DescriptionError::BadReader {
                model: self.name.clone(),
                output: output.clone(),
                problem,
            };
            let offset = |value: i64| {
                isize::try_from(value)
                    .map_err(|_| bad(format!("{value} is out of range on this machine")))
            };
            let rule = match &reader.rule {
                ReadRule::Token {
                    token,
                    skip_tokens,
                    skip_lines,
                    skip_cols,
                    col_sep,
                } => CompiledRule::Token {
                    token: token.clone(),
                    tokens: offset(*skip_tokens)?,
                    lines: offset(*skip_lines)?,
                    cols: offset(*skip_cols)?,
                    col_sep: col_sep.clone(),
                },
                ReadRule::Regex {
                    pattern,
                    occurrence,
                } => CompiledRule::Regex {
                    pattern: pattern.clone(),
                    regex: match regexes.get_mut(at).and_then(Option::take) {
                        Some(regex) => regex,
                        None => crate::coupling::compile_pattern(pattern)
                            .map_err(|error| bad(error.to_string()))?,
                    },
                    occurrence: offset(*occurrence)?,
                },
                ReadRule::At {
                    line,
                    column,
                    col_sep,
                } => CompiledRule::At {
                    line: offset(*line)?,
                    column: offset(*column)?,
                    col_sep: col_sep.clone(),
                },
                ReadRule::Attribute { element, attribute } => CompiledRule::Attribute {
                    element: element.clone(),
                    attribute: attribute.clone(),
                },
            };
            readers.push(CompiledReader {
                output: output.clone(),
                file: reader.file.clone(),
                rule,
            });
        }
        Ok(Interpreter {
            name: self.name.clone(),
            inputs: self.inputs.clone(),
            templates,
            resources: self.copy.iter().map(PathBuf::from).collect(),
            steps,
            readers,
        })
    }

    /// Evaluates one point in `workdir` (which must exist): see
    /// [`Interpreter::evaluate`]. Compiles the description first, each
    /// time; to evaluate many points, [`compile`](Self::compile) once.
    pub fn evaluate(&self, inputs: &[f64], workdir: &Path) -> Result<Vec<f64>, DescribedError> {
        self.compile()?.evaluate(inputs, workdir)
    }
}

impl Interpreter {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of inputs a point has.
    pub fn input_count(&self) -> usize {
        self.inputs.len()
    }

    /// The number of values an evaluation returns.
    pub fn output_count(&self) -> usize {
        self.readers.len()
    }

    /// Evaluates one point in `workdir`, an existing directory of its own:
    /// copies the resources in, writes the input files filled with
    /// `inputs` (one value per input, in order), runs the steps in order
    /// (each in its own supervised process group, killed with its children
    /// at its timeout, an interruption, or the end of this process), then
    /// returns the outputs in order. The first failure stops the
    /// evaluation and names the step, file, token or output involved.
    pub fn evaluate(&self, inputs: &[f64], workdir: &Path) -> Result<Vec<f64>, DescribedError> {
        if inputs.len() != self.inputs.len() {
            return Err(DescribedError::InputCount {
                model: self.name.clone(),
                expected: self.inputs.len(),
                inputs: self.inputs.join(", "),
                given: inputs.len(),
            });
        }

        for resource in &self.resources {
            copy_entry(resource, workdir).map_err(|source| DescribedError::Resource {
                model: self.name.clone(),
                resource: resource.display().to_string(),
                source: Box::new(source),
            })?;
        }

        let mut values: Vec<(&str, f64)> = Vec::new();
        for template in &self.templates {
            values.clear();
            values.extend(
                template
                    .tokens
                    .iter()
                    .map(|(token, index)| (token.as_str(), inputs[*index])),
            );
            template
                .template
                .fill_to(workdir.join(&template.file), &values, template.format)
                .map_err(|source| DescribedError::Input {
                    model: self.name.clone(),
                    file: template.file.clone(),
                    source: Box::new(source),
                })?;
        }

        for (index, program) in self.steps.iter().enumerate() {
            program
                .clone()
                .current_dir(workdir)
                .run()
                .map_err(|source| DescribedError::Step {
                    model: self.name.clone(),
                    step: index + 1,
                    steps: self.steps.len(),
                    source: Box::new(source),
                })?;
        }

        // Each file is read once, however many outputs it holds.
        let mut files: Vec<ResultFile> = Vec::new();
        let mut outputs = Vec::with_capacity(self.readers.len());
        for reader in &self.readers {
            let output_error = |source| DescribedError::Output {
                model: self.name.clone(),
                output: reader.output.clone(),
                file: reader.file.clone(),
                source: Box::new(source),
            };
            let path = workdir.join(&reader.file);
            let file = match files.iter().position(|file| file.path() == path) {
                Some(at) => &files[at],
                None => {
                    files.push(ResultFile::read(&path).map_err(output_error)?);
                    &files[files.len() - 1]
                }
            };
            outputs.push(reader.rule.read(file).map_err(output_error)?);
        }
        Ok(outputs)
    }
}

impl CompiledRule {
    fn read(&self, file: &ResultFile) -> Result<f64, CouplingError> {
        match self {
            CompiledRule::Token {
                token,
                tokens,
                lines,
                cols,
                col_sep,
            } => {
                let mut skip = Skip::new().tokens(*tokens).lines(*lines).cols(*cols);
                if let Some(sep) = col_sep {
                    skip = skip.col_sep(sep);
                }
                file.value_by_token(token, skip)
            }
            CompiledRule::Regex {
                pattern,
                regex,
                occurrence,
            } => {
                let matches = file.values_by_regex(regex)?;
                let index = if *occurrence >= 0 {
                    Some(occurrence.unsigned_abs())
                } else {
                    matches.len().checked_sub(occurrence.unsigned_abs())
                };
                index
                    .and_then(|index| matches.get(index).copied())
                    .ok_or_else(|| CouplingError::ValueNotFound {
                        path: file.path().to_path_buf(),
                        what: format!(
                            "regex `{}` matches {} times, occurrence {occurrence} was asked for \
                             (0-based, negative from the last)",
                            pattern,
                            matches.len()
                        ),
                    })
            }
            CompiledRule::At {
                line,
                column,
                col_sep,
            } => file.value_at(*line, *column, col_sep.as_deref()),
            CompiledRule::Attribute { element, attribute } => file.attribute(element, attribute),
        }
    }
}
