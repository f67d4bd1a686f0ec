//! The checks a description passes before anything runs: each refusal
//! names the model and the variable, file, token, step or output at fault.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path};
use std::time::Duration;

use regex::Regex;

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
        self.checked().map(drop)
    }

    /// [`validate`](Self::validate), keeping what it built: the compiled
    /// regex of each reader that has one (in the order of `readers`), so
    /// that compiling a description builds each regex once.
    pub(super) fn checked(&self) -> Result<Vec<Option<Regex>>, DescriptionError> {
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

    fn check_readers(&self) -> Result<Vec<Option<Regex>>, DescriptionError> {
        let model = || self.name.clone();
        let mut read = HashSet::new();
        let mut regexes = Vec::with_capacity(self.readers.len());
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
            let regex =
                check_rule(&reader.rule).map_err(|problem| DescriptionError::BadReader {
                    model: model(),
                    output: reader.output.clone(),
                    problem,
                })?;
            regexes.push(regex);
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
            None => Ok(regexes),
        }
    }
}

/// The rule's compiled regex if it has one, or what makes it unusable.
fn check_rule(rule: &ReadRule) -> Result<Option<Regex>, String> {
    let empty_separator = |col_sep: &Option<String>| match col_sep {
        Some(sep) if sep.is_empty() => Err(String::from(
            "the column separator is empty; give one or none (whitespace)",
        )),
        _ => Ok(None),
    };
    match rule {
        ReadRule::Token { token, col_sep, .. } => {
            if token.is_empty() {
                Err(String::from(
                    "the token is empty; give the text that precedes the value",
                ))
            } else {
                empty_separator(col_sep)
            }
        }
        ReadRule::Regex { pattern, .. } => match compile_pattern(pattern) {
            Err(error) => Err(error.to_string()),
            Ok(regex) if regex.captures_len() < 2 => Err(CouplingError::RegexWithoutGroup {
                pattern: pattern.clone(),
            }
            .to_string()),
            Ok(regex) => Ok(Some(regex)),
        },
        ReadRule::At { col_sep, .. } => empty_separator(col_sep),
        ReadRule::Attribute { element, attribute } => {
            if element.is_empty() || attribute.is_empty() {
                Err(String::from(
                    "the element or attribute name is empty; give both",
                ))
            } else {
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{InputTemplate, OutputReader, Step};
    use super::*;

    /// A description that passes; each test breaks one thing.
    fn valid() -> ModelDescription {
        ModelDescription::new("beam", ["F", "L"], ["y", "z"])
            .template(InputTemplate::inline("in.txt", "F=@F@ L=@L@").variables(["F", "L"]))
            .step(Step::new("solver").args(["in.txt"]))
            .read(OutputReader::new("y", "out.txt", ReadRule::token("y=")))
            .read(OutputReader::new(
                "z",
                "out.txt",
                ReadRule::regex(r"z=(\R)"),
            ))
    }

    fn refused(description: &ModelDescription) -> String {
        match description.validate() {
            Ok(()) => panic!("{description:?} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_valid_description_passes() {
        valid().validate().unwrap();
        let mut with_everything = valid().copy("/opt/beam/mesh").unwrap().step(
            Step::new("post")
                .timeout(Duration::from_millis(1500))
                .env("A", "1")
                .stdout_file("results/post.log"),
        );
        with_everything.templates[0].file = String::from("./inputs//in.txt");
        with_everything.validate().unwrap();
    }

    #[test]
    fn format_name_and_variables() {
        let mut d = valid();
        d.format = 2;
        assert_eq!(
            refused(&d),
            "model description format 2 is not supported by this otwrap, which reads format 1; \
             use the same otwrap version on the driver and the workers"
        );

        let mut d = valid();
        d.name.clear();
        assert_eq!(refused(&d), "the model has an empty name; give it a name");

        let mut d = valid();
        d.outputs[1].clear();
        assert_eq!(
            refused(&d),
            "model `beam`: output 2 has an empty name; name every variable"
        );

        let mut d = valid();
        d.inputs[1] = String::from("F");
        assert_eq!(
            refused(&d),
            "model `beam`: the name `F` is given to two variables (input 1 and input 2); \
             inputs and outputs need distinct names"
        );

        let mut d = valid();
        d.outputs[0] = String::from("L");
        assert_eq!(
            refused(&d),
            "model `beam`: the name `L` is given to two variables (input 2 and output 1); \
             inputs and outputs need distinct names"
        );

        let mut d = valid();
        d.outputs.clear();
        assert_eq!(
            refused(&d),
            "model `beam` has no outputs; list at least one output and how to read it"
        );
    }

    #[test]
    fn steps() {
        let mut d = valid();
        d.steps.clear();
        assert_eq!(
            refused(&d),
            "model `beam` has no steps; add the command that runs the solver"
        );

        let d = valid().step(Step::new("  "));
        assert_eq!(
            refused(&d),
            "model `beam`, step 2: the program is empty; give the command to run"
        );

        for seconds in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut d = valid();
            d.steps[0].timeout = Some(seconds);
            assert_eq!(
                refused(&d),
                format!(
                    "model `beam`, step 1: timeout {seconds} s is not a positive, finite number \
                     of seconds; give one (e.g. 3600) or none"
                )
            );
        }
    }

    #[test]
    fn templates() {
        let mut d = valid();
        d.templates[0].tokens[1].variable = String::from("l");
        assert_eq!(
            refused(&d),
            "model `beam`, template for `in.txt`: `l` is not an input of the model (inputs: F, L); \
             check its spelling"
        );

        let d = valid().template(InputTemplate::inline("b.txt", "@F@ @F@").variables(["F", "F"]));
        assert_eq!(
            refused(&d),
            "model `beam`, template for `b.txt`: variable `F` is listed twice"
        );

        let mut d = valid();
        d.templates[0].tokens[0].token = String::from("@f@");
        assert_eq!(
            refused(&d),
            "model `beam`, template for `in.txt`: the token `@f@` of variable `F` does not occur \
             in the template's text; tokens are matched literally and case-sensitively, check its \
             spelling in the template"
        );
        d.templates[0].tokens[0].token.clear();
        assert!(
            refused(&d).contains("the token `` of variable `F` does not occur"),
            "{}",
            refused(&d)
        );

        let mut d = valid();
        d.templates[0].tokens.pop();
        assert_eq!(
            refused(&d),
            "model `beam`: input `L` occurs in no template, so its value would not reach the \
             solver; add it to a template or remove it from the inputs"
        );
    }

    #[test]
    fn readers() {
        let d = valid().read(OutputReader::new("w", "out.txt", ReadRule::token("w=")));
        assert_eq!(
            refused(&d),
            "model `beam`: a reader is given for `w`, which is not an output of the model \
             (outputs: y, z); check its spelling"
        );

        let d = valid().read(OutputReader::new("y", "other.txt", ReadRule::at(0, 0)));
        assert_eq!(
            refused(&d),
            "model `beam`: output `y` has two readers; keep one"
        );

        let mut d = valid();
        d.readers.remove(0);
        assert_eq!(
            refused(&d),
            "model `beam`: output `y` has no reader; say which file and how to read it"
        );

        let mut d = valid();
        d.readers[1].rule = ReadRule::regex(r"z=\R");
        assert_eq!(
            refused(&d),
            "model `beam`, reader of output `z`: regular expression `z=\\R` has no capture group; \
             surround the number with parentheses, e.g. `Y=(\\R)`"
        );
        d.readers[1].rule = ReadRule::regex(r"z=(\R");
        assert!(
            refused(&d).starts_with(
                "model `beam`, reader of output `z`: invalid regular expression `z=(\\R`: "
            ),
            "{}",
            refused(&d)
        );

        let mut d = valid();
        d.readers[0].rule = ReadRule::token("");
        assert_eq!(
            refused(&d),
            "model `beam`, reader of output `y`: the token is empty; give the text that precedes \
             the value"
        );
        d.readers[0].rule = ReadRule::At {
            line: 0,
            column: 1,
            col_sep: Some(String::new()),
        };
        assert_eq!(
            refused(&d),
            "model `beam`, reader of output `y`: the column separator is empty; give one or none \
             (whitespace)"
        );
        d.readers[0].rule = ReadRule::attribute("outputs", "");
        assert_eq!(
            refused(&d),
            "model `beam`, reader of output `y`: the element or attribute name is empty; give both"
        );
    }

    #[test]
    fn paths_stay_inside_the_work_directory_and_do_not_clash() {
        let mut d = valid();
        d.templates[0].file = String::from("../in.txt");
        assert_eq!(
            refused(&d),
            "model `beam`: the file written by template 1 `../in.txt` goes up with `..`; files \
             stay inside the work directory"
        );
        d.templates[0].file = String::from("/tmp/in.txt");
        assert_eq!(
            refused(&d),
            "model `beam`: the file written by template 1 `/tmp/in.txt` is absolute; give a path \
             relative to the work directory"
        );
        d.templates[0].file = String::from(".");
        assert_eq!(
            refused(&d),
            "model `beam`: the file written by template 1 `.` names no file; give a file name \
             relative to the work directory"
        );

        let mut d = valid();
        d.readers[0].file = String::from("/etc/passwd");
        assert_eq!(
            refused(&d),
            "model `beam`: the file of output `y` `/etc/passwd` is absolute; give a path \
             relative to the work directory"
        );

        let mut d = valid();
        d.copy.push(String::from("mesh.dat"));
        assert_eq!(
            refused(&d),
            "model `beam`: resource 1 `mesh.dat` is relative; resources are absolute paths, so \
             that evaluations do not depend on the current directory of the process that runs them"
        );

        let d = valid().copy("/opt/beam/in.txt").unwrap();
        assert_eq!(
            refused(&d),
            "model `beam`: `in.txt` in the work directory would be written by both resource \
             `/opt/beam/in.txt` and template 1; give them different names"
        );
        let d = valid().step(Step::new("post").stdout_file("./in.txt"));
        assert_eq!(
            refused(&d),
            "model `beam`: `in.txt` in the work directory would be written by both template 1 and \
             the stdout of step 2; give them different names"
        );
        let d = valid().template(InputTemplate::inline("stderr-1.txt", "@F@").variable("F"));
        assert_eq!(
            refused(&d),
            "model `beam`: `stderr-1.txt` in the work directory would be written by both \
             template 2 and the stderr of step 1; give them different names"
        );
    }
}
