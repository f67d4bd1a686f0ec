//! The core of the runtime: the model contract ([`Model`], [`EvalContext`],
//! the registry of compiled-in models), what a model declares (its
//! [`Options`], [`Layers`], [`CacheSpec`]), and how a point fails
//! ([`PointFailure`] and its [`FailureClass`], [`Failed`], [`Location`],
//! [`PointError`]).
//!
//! Every other module depends on this one; it depends on no other module of
//! the crate (only on std, serde and the crates that shape its data).

pub mod codec;
pub mod declared;
pub mod failure;
pub mod host;
pub mod model;
pub mod options;
mod panic;
pub mod paths;

pub use declared::{
    CacheLocation, CacheSpec, Cleanup, Layers, LogSpec, UnknownCleanup, WorkDirSpec,
};
pub(crate) use failure::render_input;
pub use failure::{Attempts, Ending, Failed, FailureClass, Location, PointError, PointFailure};
pub use model::{EvalContext, Model, Registration};
pub use options::{
    Backend, HostKeyCheck, HostSpec, Options, ProgressMode, SlurmOptions, SshOptions,
};
pub use panic::catch_panic;
