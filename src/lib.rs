//! # otwrap
//!
//! Annotate a model function, evaluate it over thousands of points: on the
//! local cores (threads or crash-isolated processes), with results in input
//! order, one `Result` per point, a disk cache, a work directory per
//! evaluation, a log of every failure, progress, and run-time configuration.
//!
//! ```
//! use otwrap::prelude::*;
//!
//! #[parallelize(backend = "rayon", workers = 2)]
//! fn deviation(x: [f64; 4]) -> Result<f64, String> {
//!     let [f, e, l, i] = x;
//!     if f < 0.0 {
//!         return Err(format!("negative load {f}"));
//!     }
//!     Ok(f * l.powi(3) / (3.0 * e * i))
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One point: the function as written.
//! let y = deviation([3e4, 3e7, 255.0, 400.0])?;
//! assert!((y - 13.82).abs() < 0.01);
//!
//! // Many points: results in input order; a failing point fails alone.
//! let points = vec![[3e4, 3e7, 255.0, 400.0], [-1.0, 3e7, 255.0, 400.0]];
//! let batch = deviation::map(&points)?;
//! assert!(batch.results()[0].is_ok());
//! let error = batch.results()[1].as_ref().unwrap_err();
//! assert_eq!(error.index(), 1);
//! assert!(error.to_string().contains("negative load"));
//! println!("{}", batch.summary());
//!
//! // Run-time overrides, and results in completion order.
//! let batch = deviation::runner().backend(Backend::Serial).fail_fast(true).map(&points)?;
//! assert_eq!(batch.summary().failed, 1);
//! for done in deviation::stream(points)? {
//!     println!("point {} -> {:?}", done.index, done.result.map_err(|e| e.to_string()));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Wrapping an external code: every evaluation gets its own work directory,
//! failures are logged, results are cached.
//!
//! ```
//! use otwrap::prelude::*;
//! use std::path::Path;
//!
//! #[parallelize(backend = "rayon", workers = 2)]
//! #[cached]
//! #[temp_workdir(prefix = "doc-", base = "target/doc-workdirs")]
//! #[debug_log("target/doc-model.log")]
//! fn model(x: f64, #[workdir] dir: &Path) -> Result<f64, std::io::Error> {
//!     std::fs::write(dir.join("input.txt"), x.to_string())?;
//!     let text = std::fs::read_to_string(dir.join("input.txt"))?;
//!     Ok(2.0 * text.parse::<f64>().map_err(std::io::Error::other)?)
//! }
//!
//! # fn main() -> Result<(), otwrap::Error> {
//! // The single-point call takes the inputs only; every layer applies.
//! assert_eq!(model(1.5)?, 3.0);
//! let batch = model::map(&[1.0, 2.0, 1.5])?;
//! assert_eq!(batch.values()?, vec![2.0, 4.0, 3.0]);
//! assert_eq!(batch.summary().cached, 1); // 1.5 was computed by the single call
//! # Ok(())
//! # }
//! ```
//!
//! See the README for the backends, the configuration file and the worker
//! mode (`#[otwrap::main]`).

#![warn(missing_docs)]

pub use otwrap_macros::{cached, debug_log, main, parallelize, temp_workdir};
pub use otwrap_runtime::{
    config, coupling, described, interrupt, sample, Backend, Batch, Completed, DescribedRunner,
    Error, EvalContext, Failed, Location, Model, Options, PointError, PointFailure, Progress,
    ProgressMode, ResultStream, Runner, Sample, Settings, Summary,
};

pub use otwrap_runtime::cache::CacheLocation;
pub use otwrap_runtime::failure_log::{create_logger, LoggerConfig};

/// The names most programs need: `use otwrap::prelude::*;`.
pub mod prelude {
    pub use crate::{
        cached, debug_log, parallelize, temp_workdir, Backend, Batch, Completed, Error, PointError,
        PointFailure, Progress, ProgressMode, Runner, Summary,
    };
}

/// What the generated code calls; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use otwrap_runtime::__private::*;
}
