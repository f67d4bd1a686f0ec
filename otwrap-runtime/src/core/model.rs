//! The model contract ([`Model`]), the evaluation of one point in the current
//! process (with panic capture), and the registry that lets a worker process
//! find a model by its stable id.

use std::any::Any;
use std::fmt::Display;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::declared::{CacheSpec, Layers};
use super::failure::{Failed, PointFailure};
use super::options::Options;
use super::panic::{install_panic_hook, set_capturing, take_panic_message};

/// A model function made evaluable over batches.
///
/// `#[parallelize]` (and the other otwrap attributes) implement this trait
/// for a hidden type named by the companion module (`beam::Model`). You
/// rarely implement it by hand, but generic code can take any model:
///
/// ```
/// use otwrap_runtime::{EvalContext, Failed, Model, Options, Runner};
///
/// struct Square;
/// impl Model for Square {
///     type Input = f64;
///     type Output = f64;
///     const ID: &'static str = "doc::square";
///     const NAME: &'static str = "square";
///     fn attribute_options() -> Options {
///         Options::default()
///     }
///     fn evaluate(x: &f64, _ctx: &EvalContext) -> Result<f64, Failed> {
///         Ok(x * x)
///     }
/// }
///
/// let batch = Runner::<Square>::new().map(&[1.0, 2.0, 3.0])?;
/// assert_eq!(batch.values()?, vec![1.0, 4.0, 9.0]);
/// # Ok::<(), otwrap_runtime::Error>(())
/// ```
pub trait Model: Send + Sync + 'static {
    /// The point type: the function's parameters (a tuple when there are several).
    type Input: PointInput;
    /// The value type (the `T` of a `Result<T, E>` return type).
    type Output: PointOutput;
    /// A stable id: the module path and the function name. Workers find the
    /// model by it.
    const ID: &'static str;
    /// The function's name, for messages and logs.
    const NAME: &'static str;
    /// The names of the function's input parameters, in order (an empty
    /// name, or an empty list, when unknown): the input columns of
    /// [`Batch::to_sample`](crate::Batch::to_sample).
    const PARAMETER_NAMES: &'static [&'static str] = &[];
    /// The options written in the attributes: the defaults that the
    /// configuration file, the environment and the [`Runner`](crate::Runner)
    /// override.
    fn attribute_options() -> Options;
    /// Evaluates one point in the current thread, inside the model's layers
    /// (work directory, failure log).
    fn evaluate(input: &Self::Input, ctx: &EvalContext) -> Result<Self::Output, Failed>;
    /// The per-evaluation layers (`#[temp_workdir]`, `#[debug_log]`).
    fn layers() -> &'static Layers {
        &Layers::NONE
    }
    /// The cache settings of `#[cached]`, if the model is cached.
    fn cache() -> Option<CacheSpec> {
        None
    }
}

/// What an evaluation knows about itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EvalContext {
    /// The index of the point in the batch (0 for single calls).
    pub index: usize,
    /// The data of a model given at run time rather than by its type alone
    /// (a described model's compiled interpreter), handed over by the batch
    /// that runs it; `None` for compiled-in models. Carried here, not in a
    /// process-wide map, so that two batches of different such models run
    /// side by side in one process.
    pub(crate) data: Option<ModelData>,
}

/// The run-time data of a model (see [`EvalContext`]); type-erased, so
/// that the core knows nothing of the models that use it.
pub(crate) type ModelData = Arc<dyn Any + Send + Sync>;

impl EvalContext {
    /// The context of point `index`.
    pub fn new(index: usize) -> Self {
        EvalContext { index, data: None }
    }

    /// The context of point `index` of a model given at run time.
    pub(crate) fn with_data(index: usize, data: Option<ModelData>) -> Self {
        EvalContext { index, data }
    }
}

/// Turns a model's `Result<T, E>` into the runtime's result, keeping the
/// error's message.
pub fn model_result<T, E: Display>(result: Result<T, E>) -> Result<T, PointFailure> {
    result.map_err(|e| PointFailure::Model {
        message: e.to_string(),
    })
}

/// Names the `T` of a `Result<T, E>` return type. Implemented only for
/// `Result`, so a return type spelled `Result` that is something else is a
/// clear compile error.
#[diagnostic::on_unimplemented(
    message = "otwrap reads a return type named `Result` as `Result<T, E>` with `E: Display`, but `{Self}` is not one",
    note = "return `Result<T, E>` with an error type that implements `std::fmt::Display`, or a plain value"
)]
pub trait FallibleOutput {
    /// The value type.
    type Ok;
}

impl<T, E: Display> FallibleOutput for Result<T, E> {
    type Ok = T;
}

/// Inputs must cross process and host boundaries and go into the cache.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an otwrap model input: inputs must implement serde's `Serialize` and `Deserialize`, and be `Send + Sync + 'static`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`, or take plain types (f64, arrays, Vec, tuples, String)"
)]
pub trait PointInput: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> PointInput for T {}

/// Outputs come back from workers and go into the cache.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an otwrap model output: outputs must implement serde's `Serialize` and `Deserialize`, and be `Send + 'static`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`, or return plain types (f64, arrays, Vec, tuples, String)"
)]
pub trait PointOutput: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> PointOutput for T {}

/// A parameter taken by value is cloned out of the batch's inputs.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is taken by value, so otwrap must clone it out of the batch inputs, but it is not `Clone`",
    note = "derive `Clone`, or take the parameter by reference (`&{Self}`)"
)]
pub trait ByValueInput: Clone {}
impl<T: Clone> ByValueInput for T {}

/// Compile-time check used by the generated code; the argument is never called.
pub const fn assert_input<T: PointInput>() {}
/// Compile-time check used by the generated code.
pub const fn assert_output<T: PointOutput>() {}
/// Compile-time check used by the generated code.
pub const fn assert_by_value<T: ByValueInput>() {}

/// Evaluates one point of model `M` in this thread; a panic becomes a
/// failure.
pub fn evaluate_caught<M: Model>(input: &M::Input, ctx: &EvalContext) -> Result<M::Output, Failed> {
    // Every event the model emits through `tracing` carries the function and
    // the point (nearly free without a subscriber).
    let _span =
        tracing::debug_span!("otwrap.eval", function = M::NAME, point = ctx.index).entered();
    super::panic::catch_panic(|| M::evaluate(input, ctx))
}

/// Evaluates a run of consecutive points (indices `base..`) in this thread,
/// giving each outcome to `put` in order: the same outcomes as
/// [`evaluate_caught`] point by point, with the panic guard set up once per
/// run instead of once per point. A panic fails its point only; the run
/// goes on with the next one.
pub(crate) fn evaluate_run<M: Model>(
    inputs: &[M::Input],
    base: usize,
    mut put: impl FnMut(usize, Result<M::Output, Failed>),
) {
    install_panic_hook();
    let was_capturing = set_capturing(true);
    let mut next = 0;
    while next < inputs.len() {
        let run = panic::catch_unwind(AssertUnwindSafe(|| {
            while next < inputs.len() {
                let ctx = EvalContext::new(base + next);
                let _span =
                    tracing::debug_span!("otwrap.eval", function = M::NAME, point = ctx.index)
                        .entered();
                let outcome = M::evaluate(&inputs[next], &ctx);
                put(next, outcome);
                next += 1;
            }
        }));
        if run.is_err() {
            let message = take_panic_message();
            put(next, Err(PointFailure::Panic { message }.into()));
            next += 1;
        }
    }
    set_capturing(was_capturing);
}

/// The type-erased entry point a worker uses: bincode input bytes in,
/// bincode output bytes out.
pub type InvokeFn = fn(&[u8], &EvalContext) -> Result<Vec<u8>, Failed>;

/// An entry point a worker may build at run time (a model given as data).
pub type DynInvoke = dyn Fn(&[u8], &EvalContext) -> Result<Vec<u8>, Failed> + Send + Sync;

/// One model in the process-wide registry, filled at compile time by the
/// attributes (through `inventory`).
#[derive(Debug)]
pub struct Registration {
    /// The model's stable id ([`Model::ID`]).
    pub id: &'static str,
    /// Decodes an input, evaluates it and encodes the output.
    pub invoke: InvokeFn,
}

impl Registration {
    /// The registration of model `M`.
    pub const fn of<M: Model>() -> Self {
        Registration {
            id: M::ID,
            invoke: invoke_encoded::<M>,
        }
    }
}

inventory::collect!(Registration);

fn invoke_encoded<M: Model>(input: &[u8], ctx: &EvalContext) -> Result<Vec<u8>, Failed> {
    let input: M::Input = super::codec::decode(input).map_err(|e| PointFailure::Protocol {
        message: format!("cannot decode the input of {}: {e}", M::ID),
    })?;
    let output = evaluate_caught::<M>(&input, ctx)?;
    super::codec::encode(&output).map_err(|e| {
        Failed::from(PointFailure::Protocol {
            message: format!("cannot encode the output of {}: {e}", M::ID),
        })
    })
}

/// Finds a registered model by id.
pub fn find_registered(id: &str) -> Option<&'static Registration> {
    inventory::iter::<Registration>().find(|r| r.id == id)
}

/// The ids of every model registered in this binary.
pub fn registered_ids() -> Vec<&'static str> {
    let mut ids: Vec<_> = inventory::iter::<Registration>().map(|r| r.id).collect();
    ids.sort_unstable();
    ids
}
