//! The two error types of described models: [`DescriptionError`] for a
//! description that cannot be used at all, [`DescribedError`] for one
//! evaluation that failed.

use std::path::PathBuf;

use crate::coupling::CouplingError;
use crate::workdir::WorkDirError;

/// A description that is refused: it does not decode, comes from another
/// format version, or says something that cannot work. Messages name the
/// variable, file, token, step or output involved and what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptionError {
    /// The bytes are not a description (truncated, damaged, not one at all).
    #[error("the bytes are not a model description: {message}")]
    Decode {
        /// What the decoder said.
        message: String,
    },

    /// The description was written in another format version.
    #[error(
        "model description format {found} is not supported by this otwrap, which reads format \
         {supported}; use the same otwrap version on the driver and the workers"
    )]
    UnsupportedFormat {
        /// The format the description says it has.
        found: u32,
        /// The only format this build reads.
        supported: u32,
    },

    /// The model has no name (it is used in every message about it).
    #[error("the model has an empty name; give it a name")]
    EmptyName,

    /// An input or output variable has an empty name.
    #[error("model `{model}`: {kind} {position} has an empty name; name every variable")]
    EmptyVariable {
        /// The model.
        model: String,
        /// `input` or `output`.
        kind: &'static str,
        /// Its 1-based position in its list.
        position: usize,
    },

    /// The same name is given to two variables.
    #[error(
        "model `{model}`: the name `{name}` is given to two variables ({first} and {second}); \
         inputs and outputs need distinct names"
    )]
    DuplicateVariable {
        /// The model.
        model: String,
        /// The repeated name.
        name: String,
        /// Where it first appears, e.g. `input 1`.
        first: String,
        /// Where it appears again, e.g. `output 2`.
        second: String,
    },

    /// The model has no output.
    #[error("model `{model}` has no outputs; list at least one output and how to read it")]
    NoOutputs {
        /// The model.
        model: String,
    },

    /// The model has no step.
    #[error("model `{model}` has no steps; add the command that runs the solver")]
    NoSteps {
        /// The model.
        model: String,
    },

    /// A step's program is empty.
    #[error("model `{model}`, step {step}: the program is empty; give the command to run")]
    EmptyProgram {
        /// The model.
        model: String,
        /// The 1-based step number.
        step: usize,
    },

    /// A step's timeout is not a positive number of seconds.
    #[error(
        "model `{model}`, step {step}: timeout {seconds} s is not a positive, finite number of \
         seconds; give one (e.g. 3600) or none"
    )]
    BadTimeout {
        /// The model.
        model: String,
        /// The 1-based step number.
        step: usize,
        /// The timeout as given.
        seconds: f64,
    },

    /// A template substitutes a variable that is not an input.
    #[error(
        "model `{model}`, template for `{file}`: `{variable}` is not an input of the model \
         (inputs: {inputs}); check its spelling"
    )]
    TemplateUnknownVariable {
        /// The model.
        model: String,
        /// The file the template writes.
        file: String,
        /// The unknown variable.
        variable: String,
        /// The model's inputs, comma-separated.
        inputs: String,
    },

    /// A template substitutes the same variable twice.
    #[error("model `{model}`, template for `{file}`: variable `{variable}` is listed twice")]
    TemplateDuplicateVariable {
        /// The model.
        model: String,
        /// The file the template writes.
        file: String,
        /// The repeated variable.
        variable: String,
    },

    /// A variable's token does not occur in its template's text (or is empty).
    #[error(
        "model `{model}`, template for `{file}`: the token `{token}` of variable `{variable}` \
         does not occur in the template's text; tokens are matched literally and \
         case-sensitively, check its spelling in the template"
    )]
    TokenNotInTemplate {
        /// The model.
        model: String,
        /// The file the template writes.
        file: String,
        /// The variable.
        variable: String,
        /// Its token.
        token: String,
    },

    /// An input is substituted into no template, so its value would change
    /// nothing.
    #[error(
        "model `{model}`: input `{variable}` occurs in no template, so its value would not reach \
         the solver; add it to a template or remove it from the inputs"
    )]
    UnusedInput {
        /// The model.
        model: String,
        /// The input.
        variable: String,
    },

    /// A reader names an output the model does not have.
    #[error(
        "model `{model}`: a reader is given for `{output}`, which is not an output of the model \
         (outputs: {outputs}); check its spelling"
    )]
    ReaderUnknownOutput {
        /// The model.
        model: String,
        /// The name the reader gives.
        output: String,
        /// The model's outputs, comma-separated.
        outputs: String,
    },

    /// Two readers are given for one output.
    #[error("model `{model}`: output `{output}` has two readers; keep one")]
    DuplicateReader {
        /// The model.
        model: String,
        /// The output.
        output: String,
    },

    /// An output has no reader.
    #[error("model `{model}`: output `{output}` has no reader; say which file and how to read it")]
    OutputWithoutReader {
        /// The model.
        model: String,
        /// The output.
        output: String,
    },

    /// A reader's rule cannot work (an invalid regex, a regex without a
    /// capture group, an empty token or separator).
    #[error("model `{model}`, reader of output `{output}`: {problem}")]
    BadReader {
        /// The model.
        model: String,
        /// The output.
        output: String,
        /// What is wrong.
        problem: String,
    },

    /// A path that must stay inside the work directory does not (absolute,
    /// empty, or with `..`), or a resource path that is not absolute.
    #[error("model `{model}`: {what} `{path}` {problem}")]
    BadPath {
        /// The model.
        model: String,
        /// What the path is for, e.g. `the file written by template 1`.
        what: String,
        /// The path as given.
        path: String,
        /// What is wrong and what to do.
        problem: &'static str,
    },

    /// Two things would be written to the same name in the work directory.
    #[error(
        "model `{model}`: `{name}` in the work directory would be written by both {first} and \
         {second}; give them different names"
    )]
    NameClash {
        /// The model.
        model: String,
        /// The clashing name.
        name: String,
        /// The first writer.
        first: String,
        /// The second writer.
        second: String,
    },

    /// A template file could not be read while building the description.
    #[error("cannot use `{}` as a template: {source}", .path.display())]
    ReadTemplate {
        /// The template file.
        path: PathBuf,
        /// Why (missing, unreadable, not UTF-8).
        #[source]
        source: Box<CouplingError>,
    },

    /// A path given while building the description is not valid UTF-8, so
    /// it could not travel to workers on other hosts.
    #[error("`{}` is not valid UTF-8; rename it (descriptions hold UTF-8 paths)", .path.display())]
    NonUtf8Path {
        /// The path.
        path: PathBuf,
    },
}

// The causes are boxed: a `CouplingError` is large, and these errors travel
// in every `Result` of the interpreter.

/// One evaluation of a described model that failed. Messages start with the
/// model's name and the part that failed (input file, resource, step,
/// output), followed by the coupling tools' own message (file, token, exit
/// status and end of stderr).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescribedError {
    /// The description itself is refused (see [`DescriptionError`]).
    #[error(transparent)]
    Description(Box<DescriptionError>),

    /// The point does not have one value per input.
    #[error("model `{model}` takes {expected} inputs ({inputs}) but the point has {given} values")]
    InputCount {
        /// The model.
        model: String,
        /// The number of inputs.
        expected: usize,
        /// The inputs, comma-separated.
        inputs: String,
        /// The number of values given.
        given: usize,
    },

    /// An input file could not be written from its template.
    #[error("model `{model}`, input file `{file}`: {source}")]
    Input {
        /// The model.
        model: String,
        /// The file, relative to the work directory.
        file: String,
        /// What went wrong.
        #[source]
        source: Box<CouplingError>,
    },

    /// A resource could not be copied into the work directory.
    #[error("model `{model}`, resource `{resource}`: {source}")]
    Resource {
        /// The model.
        model: String,
        /// The resource path.
        resource: String,
        /// What went wrong.
        #[source]
        source: Box<WorkDirError>,
    },

    /// A step failed: it exited unsuccessfully, timed out, was interrupted,
    /// or could not be started.
    #[error("model `{model}`, step {step} of {steps}: {source}")]
    Step {
        /// The model.
        model: String,
        /// The 1-based step number.
        step: usize,
        /// The number of steps.
        steps: usize,
        /// What went wrong (command line, exit status, end of stderr).
        #[source]
        source: Box<CouplingError>,
    },

    /// An output could not be read.
    #[error("model `{model}`, output `{output}` (read from `{file}`): {source}")]
    Output {
        /// The model.
        model: String,
        /// The output.
        output: String,
        /// The file it is read from, relative to the work directory.
        file: String,
        /// What went wrong (file, token, line).
        #[source]
        source: Box<CouplingError>,
    },
}

impl From<DescriptionError> for DescribedError {
    fn from(error: DescriptionError) -> Self {
        DescribedError::Description(Box::new(error))
    }
}
