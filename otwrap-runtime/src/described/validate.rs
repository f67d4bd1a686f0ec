//! The checks a description passes before anything runs: each refusal
//! names the model and the variable, file, token, step or output at fault.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path};
use std::time::Duration;

use super::description::{ModelDescription, ReadRule};
use super::error::DescriptionError;
use super::FORMAT;
use crate::coupling::{compile_pattern, CouplingError};

/// The file a step's stdout goes to unless it names one.
pub(super) fn stdout_name(step: usize) -> String {
    format!("stdout-{step}.txt")
}

/// The file a step's stderr goes to.
pub(super) fn stderr_name(step: usize) -> String {
    format!("stderr-{step}.txt")
}

/// A step's timeout as a `Duration`, if it is a usable one.
pub(super) fn timeout(seconds: f64) -> Option<Duration> {
    if seconds > 0.0 {
        Duration::try_from_secs_f64(seconds).ok()
    } else {
        None
    }
}

/// The path relative to the work directory, normalised (`./a//b` is
/// `a/b`), or what is wrong with it.
pub(super) fn inside_workdir(path: &str) -> Result<String, &'static str> {
    let mut parts = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().unwrap_or_default()),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err("goes up with `..`; files stay inside the work directory")
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("is absolute; give a path relative to the work directory")
            }
        }
    }
    if parts.is_empty() {
        return Err("names no file; give a file name relative to the work directory");
    }
    Ok(parts.join("/"))
}

impl ModelDescription {
    /// Checks that the description can work, without running anything:
    /// its format version; non-empty, distinct variable names; at least
    /// one output and one step; templates that substitute known inputs
    /// whose tokens occur in their text; every input used by a template;
    /// one reader per output, each with a usable rule; non-empty programs,
    /// positive timeouts; work-directory paths that stay inside it and do
    /// not clash; absolute resource paths.
    ///
    /// ```
    /// use otwrap_runtime::described::{ModelDescription, Step};
    ///
    /// let error = ModelDescription::new("beam", ["F"], Vec::<String>::new())
    ///     .step(Step::new("beam-solver"))
    ///     .validate()
    ///     .unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     "model `beam` has no outputs; list at least one output and how to read it"
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), DescriptionError> {
        if self.format != FORMAT {
            return Err(DescriptionError::UnsupportedFormat {
                found: self.format,
                supported: FORMAT,
            });
        }
        if self.name.is_empty() {
            return Err(DescriptionError::EmptyName);
        }
        let model = || self.name.clone();
        self.check_variables()?;
        if self.outputs.is_empty() {
            return Err(DescriptionError::NoOutputs { model: model() });
        }
        if self.steps.is_empty() {
            return Err(DescriptionError::NoSteps { model: model() });
        }

        // Every name written into the work directory, with its writer.
        let mut written: HashMap<String, String> = HashMap::new();
        let mut claim = |name: String, writer: String| match written.get(&name) {
            Some(first) => Err(DescriptionError::NameClash {
                model: model(),
                name,
                first: first.clone(),
                second: writer,
            }),
            None => {
                written.insert(name, writer);
                Ok(())
            }
        };
        let bad_path = |what: String, path: &str, problem| DescriptionError::BadPath {
            model: model(),
            what,
            path: path.to_owned(),
            problem,
        };

        for (index, resource) in self.copy.iter().enumerate() {
            let what = format!("resource {}", index + 1);
            let path = Path::new(resource);
            if !path.is_absolute() {
                return Err(bad_path(
                    what,
                    resource,
                    "is relative; resources are absolute paths, so that evaluations do not \
                     depend on the current directory of the process that runs them",
                ));
            }
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                return Err(bad_path(
                    what,
                    resource,
                    "has no file name; name the file or folder itself",
                ));
            };
            claim(name.to_owned(), format!("resource `{resource}`"))?;
        }

        let mut used_inputs = HashSet::new();
        for (index, template) in self.templates.iter().enumerate() {
            let what = format!("the file written by template {}", index + 1);
            let file = inside_workdir(&template.file)
                .map_err(|problem| bad_path(what, &template.file, problem))?;
            claim(file, format!("template {}", index + 1))?;
            let mut seen = HashSet::new();
            for binding in &template.tokens {
                if !self.inputs.contains(&binding.variable) {
                    return Err(DescriptionError::TemplateUnknownVariable {
                        model: model(),
                        file: template.file.clone(),
                        variable: binding.variable.clone(),
                        inputs: self.inputs.join(", "),
                    });
                }
                if !seen.insert(binding.variable.as_str()) {
                    return Err(DescriptionError::TemplateDuplicateVariable {
                        model: model(),
                        file: template.file.clone(),
                        variable: binding.variable.clone(),
                    });
                }
                if binding.token.is_empty() || !template.text.contains(&binding.token) {
                    return Err(DescriptionError::TokenNotInTemplate {
                        model: model(),
                        file: template.file.clone(),
                        variable: binding.variable.clone(),
                        token: binding.token.clone(),
                    });
                }
                used_inputs.insert(binding.variable.as_str());
            }
        }
        if let Some(unused) = self
            .inputs
            .iter()
            .find(|input| !used_inputs.contains(input.as_str()))
        {
            return Err(DescriptionError::UnusedInput {
                model: model(),
                variable: unused.clone(),
            });
        }

        for (index, step) in self.steps.iter().enumerate() {
            let number = index + 1;
            if step.program.trim().is_empty() {
                return Err(DescriptionError::EmptyProgram {
                    model: model(),
                    step: number,
                });
            }
            if let Some(seconds) = step.timeout {
                if timeout(seconds).is_none() {
                    return Err(DescriptionError::BadTimeout {
                        model: model(),
                        step: number,
                        seconds,
                    });
                }
            }
            let stdout = match &step.stdout {
                Some(file) => inside_workdir(file).map_err(|problem| {
                    bad_path(format!("the stdout file of step {number}"), file, problem)
                })?,
                None => stdout_name(number),
            };
            claim(stdout, format!("the stdout of step {number}"))?;
            claim(stderr_name(number), format!("the stderr of step {number}"))?;
        }

        self.check_readers()
    }

    fn check_variables(&self) -> Result<(), DescriptionError> {
        let mut seen: HashMap<&str, String> = HashMap::new();
        let all = (self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, name)| ("input", i, name)))
        .chain(
            self.outputs
                .iter()
                .enumerate()
                .map(|(i, name)| ("output", i, name)),
        );
        for (kind, index, name) in all {
            let place = format!("{kind} {}", index + 1);
            if name.is_empty() {
                return Err(DescriptionError::EmptyVariable {
                    model: self.name.clone(),
                    kind,
                    position: index + 1,
                });
            }
            if let Some(first) = seen.get(name.as_str()) {
                return Err(DescriptionError::DuplicateVariable {
                    model: self.name.clone(),
                    name: name.clone(),
                    first: first.clone(),
                    second: place,
                });
            }
            seen.insert(name, place);
        }
        Ok(())
    }

    fn check_readers(&self) -> Result<(), DescriptionError> {
        let model = || self.name.clone();
        let mut read = HashSet::new();
        for reader in &self.readers {
            if !self.outputs.contains(&reader.output) {
                return Err(DescriptionError::ReaderUnknownOutput {
                    model: model(),
                    output: reader.output.clone(),
                    outputs: self.outputs.join(", "),
                });
            }
            if !read.insert(reader.output.as_str()) {
                return Err(DescriptionError::DuplicateReader {
                    model: model(),
                    output: reader.output.clone(),
                });
            }
            inside_workdir(&reader.file).map_err(|problem| DescriptionError::BadPath {
                model: model(),
                what: format!("the file of output `{}`", reader.output),
                path: reader.file.clone(),
                problem,
            })?;
            rule_problem(&reader.rule).map_or(Ok(()), |problem| {
                Err(DescriptionError::BadReader {
                    model: model(),
                    output: reader.output.clone(),
                    problem,
                })
            })?;
        }
        match self
            .outputs
            .iter()
            .find(|output| !read.contains(output.as_str()))
        {
            Some(output) => Err(DescriptionError::OutputWithoutReader {
                model: model(),
                output: output.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// What makes a rule unusable, if anything.
fn rule_problem(rule: &ReadRule) -> Option<String> {
    let empty_separator = |col_sep: &Option<String>| {
        matches!(col_sep, Some(sep) if sep.is_empty())
            .then(|| String::from("the column separator is empty; give one or none (whitespace)"))
    };
    match rule {
        ReadRule::Token { token, col_sep, .. } => {
            if token.is_empty() {
                Some(String::from(
                    "the token is empty; give the text that precedes the value",
                ))
            } else {
                empty_separator(col_sep)
            }
        }
        ReadRule::Regex { pattern, .. } => match compile_pattern(pattern) {
            Err(error) => Some(error.to_string()),
            Ok(regex) if regex.captures_len() < 2 => Some(
                CouplingError::RegexWithoutGroup {
                    pattern: pattern.clone(),
                }
                .to_string(),
            ),
            Ok(_) => None,
        },
        ReadRule::At { col_sep, .. } => empty_separator(col_sep),
        ReadRule::Attribute { element, attribute } => (element.is_empty() || attribute.is_empty())
            .then(|| String::from("the element or attribute name is empty; give both")),
    }
}
