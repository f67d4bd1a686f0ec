//! A described model as a [`Model`] of the engine, and as the model a
//! worker serves when its driver sends a description: both evaluate a point
//! the same way, inside the layers, in a fresh work directory of its own.

use std::path::Path;
use std::sync::Arc;

use super::{DescriptionError, Interpreter, ModelDescription};
use crate::core::model::DynInvoke;
use crate::core::{EvalContext, Failed, Layers, Model, Options, PointFailure, WorkDirSpec};
use crate::layers::evaluate_layers;

/// The id under which every described model runs and is cached: the
/// function id of its cache keys, whose body hash is a hash of the
/// description's bytes ([`ModelDescription::to_bytes`]).
pub const MODEL_ID: &str = "otwrap::described";

/// The engine's model type for every described model. The description
/// itself is not in the type: a batch hands its compiled form to each
/// in-process evaluation through the [`EvalContext`], and to workers as
/// bytes. Never registered by id: a worker asked for [`MODEL_ID`] by name
/// has no description to evaluate, and says it does not know the model.
pub(crate) struct Described;

impl Model for Described {
    type Input = Vec<f64>;
    type Output = Vec<f64>;
    const ID: &'static str = MODEL_ID;
    const NAME: &'static str = "described model";

    fn attribute_options() -> Options {
        Options::default()
    }

    fn evaluate(input: &Vec<f64>, ctx: &EvalContext) -> Result<Vec<f64>, Failed> {
        match ctx
            .data
            .as_deref()
            .and_then(|data| data.downcast_ref::<Prepared>())
        {
            Some(prepared) => prepared.evaluate(input, ctx.index),
            // Only a batch built without its description gets here.
            None => Err(PointFailure::Setup {
                message: "a described model was evaluated without its description; run it \
                          with `DescribedRunner`"
                    .into(),
            }
            .into()),
        }
    }
}

/// A description compiled once, with the layers every evaluation of it
/// runs in.
#[derive(Debug)]
pub(crate) struct Prepared {
    interpreter: Interpreter,
    layers: Layers,
}

impl Prepared {
    /// Validates and compiles `description`.
    pub(crate) fn new(description: &ModelDescription) -> Result<Prepared, DescriptionError> {
        let interpreter = description.compile()?;
        // The work directories are named after the model, with the default
        // base (`OTWRAP_WORKDIR_BASE` or the system's temporary directory),
        // and kept when the point fails: the same on every backend, since
        // a worker knows only the description.
        let layers = Layers {
            workdir: Some(WorkDirSpec::new("").prefix_owned(workdir_prefix(interpreter.name()))),
            log: None,
        };
        Ok(Prepared {
            interpreter,
            layers,
        })
    }

    /// Evaluates one point in a work directory of its own: a failure of a
    /// step, a template or a reader fails the point with the interpreter's
    /// message (which names it), and keeps the directory.
    pub(crate) fn evaluate(&self, input: &[f64], index: usize) -> Result<Vec<f64>, Failed> {
        let name = self.interpreter.name();
        evaluate_layers(name, &self.layers, index, input, |dir: Option<&Path>| {
            let dir = dir.ok_or_else(|| PointFailure::Setup {
                message: format!("model `{name}` was given no work directory"),
            })?;
            self.interpreter
                .evaluate(input, dir)
                .map_err(|error| PointFailure::Model {
                    message: error.to_string(),
                })
        })
    }
}

/// The data a batch of `description` hands to its in-process evaluations.
pub(crate) fn prepared_data(
    description: &ModelDescription,
) -> Result<Arc<Prepared>, DescriptionError> {
    Prepared::new(description).map(Arc::new)
}

/// The entry point of a worker asked to serve the description in `bytes`:
/// decoded, validated and compiled once, here; each call decodes a point,
/// evaluates it and encodes the outputs.
pub(crate) fn worker_invoke(bytes: &[u8]) -> Result<Box<DynInvoke>, DescriptionError> {
    let prepared = Prepared::new(&ModelDescription::from_bytes(bytes)?)?;
    Ok(Box::new(move |input: &[u8], ctx: &EvalContext| {
        let input: Vec<f64> =
            crate::codec::decode(input).map_err(|message| PointFailure::Protocol {
                message: format!(
                    "cannot decode the input of model `{}`: {message}",
                    prepared.interpreter.name()
                ),
            })?;
        let output = prepared.evaluate(&input, ctx.index)?;
        crate::codec::encode(&output).map_err(|message| {
            Failed::from(PointFailure::Protocol {
                message: format!(
                    "cannot encode the outputs of model `{}`: {message}",
                    prepared.interpreter.name()
                ),
            })
        })
    }))
}

/// `<name>-`, with every character a file name could trip on replaced by
/// `_` (a model's name is free text).
fn workdir_prefix(name: &str) -> String {
    let mut prefix: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    prefix.push('-');
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::described::{InputTemplate, OutputReader, ReadRule, Step};

    fn double() -> ModelDescription {
        ModelDescription::new("dou ble/x", ["x"], ["y"])
            .template(InputTemplate::inline("in.txt", "@x@\n").variable("x"))
            .step(Step::new("awk '{ print \"y=\" 2 * $1 }' in.txt > out.txt").shell(true))
            .read(OutputReader::new("y", "out.txt", ReadRule::token("y=")))
    }

    #[test]
    fn the_worker_entry_point_evaluates_encoded_points() {
        let invoke = worker_invoke(&double().to_bytes()).expect("a valid description");
        let input = crate::codec::encode(&vec![2.5]).expect("encodes");
        let output = invoke(&input, &EvalContext::new(4)).expect("evaluates");
        assert_eq!(crate::codec::decode::<Vec<f64>>(&output), Ok(vec![5.0]));
    }

    #[test]
    fn a_bad_description_is_refused_with_its_reason() {
        let mut description = double();
        description.steps.clear();
        let Err(error) = worker_invoke(&description.to_bytes()) else {
            panic!("a description without steps must be refused");
        };
        assert!(error.to_string().contains("has no steps"), "{error}");
    }

    #[test]
    fn work_directories_are_named_after_the_model() {
        assert_eq!(workdir_prefix("dou ble/x"), "dou_ble_x-");
        assert_eq!(workdir_prefix("beam-2.1"), "beam-2.1-");
    }

    #[test]
    fn without_its_description_a_point_fails_as_a_setup_error() {
        let failed = Described::evaluate(&vec![1.0], &EvalContext::new(0)).unwrap_err();
        assert!(
            failed.failure.to_string().contains("DescribedRunner"),
            "{}",
            failed.failure
        );
    }
}
