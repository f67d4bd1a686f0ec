//! The attribute macros of [otwrap](https://docs.rs/otwrap). Use them through
//! the `otwrap` crate, which re-exports them and holds the runtime that the
//! generated code calls.
//!
//! Each attribute is a thin entry point; the work happens in its module
//! (`parse -> validate -> expand`), and [`stack`] makes the attributes compose
//! in any order.

mod args;
mod cached;
mod debug_log;
mod expand;
mod main_attr;
mod parallelize;
mod signature;
mod stack;
mod temp_workdir;

use proc_macro::TokenStream;

/// Evaluates the function over batches of points, in parallel.
///
/// Keeps the function and its single-point call, and adds a companion module
/// of the same name: `name::map(&points)`, `name::runner()` (override the
/// backend and options at run time) and `name::stream(points)` (results in
/// completion order).
///
/// Arguments (all optional; `otwrap.toml` and `OTWRAP_*` variables override
/// them at run time):
/// - `backend = "serial" | "rayon" | "processes"` (default `"rayon"`)
/// - `workers = N` (default: every available CPU)
/// - `fail_fast = true` (stop starting points after the first failure)
/// - `timeout = SECONDS` (per point; `processes` backend)
/// - `progress = "auto" | "always" | "never"`
///
/// The parameters are the point (a tuple when there are several); they and
/// the output must be serde types. The output may be `T` or `Result<T, E>`
/// with `E: Display`.
#[proc_macro_attribute]
pub fn parallelize(args: TokenStream, item: TokenStream) -> TokenStream {
    stack::expand(stack::Kind::Parallelize, args.into(), item.into()).into()
}

/// Gives each evaluation a fresh temporary work directory (mode 0700),
/// passed to the parameter marked `#[workdir] dir: &std::path::Path`,
/// wherever the point runs. The current directory is never changed.
///
/// Arguments: `prefix = "..."` (default: the function name and `-`),
/// `base = "..."` (default: `OTWRAP_WORKDIR_BASE` or the system temp dir),
/// `cleanup = "on_success" | "always" | "never"` (default `"on_success"`: a
/// failed evaluation's directory is kept and named in its error),
/// `copy = ["file", "dir"]` (copied in before the call).
///
/// The single-point call then takes the other parameters only and returns
/// `Result<T, otwrap::Error>`.
#[proc_macro_attribute]
pub fn temp_workdir(args: TokenStream, item: TokenStream) -> TokenStream {
    stack::expand(stack::Kind::TempWorkdir, args.into(), item.into()).into()
}

/// Caches results in memory (`#[cached]`) or on disk (`#[cached(disk)]` in
/// `OTWRAP_CACHE_DIR` or `.otwrap/cache`, `#[cached(disk = "path")]`).
///
/// The key is the function id, a hash of the function's tokens (editing it
/// invalidates its entries; a `//` comment does not), the `version = "..."`
/// salt, the contents of the `depends` files, and the exact bincode bytes of
/// the input. A batch looks every point up first, runs only the misses (a
/// point repeated in the batch once), and stores each result as it arrives.
/// Failures are cached only with `cache_errors = true`.
///
/// `depends = ["solver/wall.py", "templates/wall.in"]` (with any store):
/// files or directories whose contents are hashed into every key, so editing
/// the solver script or the template recomputes every point, and restoring
/// it finds the old entries again. Relative paths are taken from the current
/// directory at run time (as templates are); a missing path stops the batch
/// before any point runs, naming the path and the current directory. A
/// directory covers every file under it (relative names and contents, in a
/// stable order; files the solver writes there count too, e.g. Python's
/// `__pycache__`). Symbolic links are followed (their target's contents are
/// hashed). Hashes are kept per process by path, size and modification
/// time, so a batch or a loop of single calls reads each file once. The
/// files are read where the driver runs (on `ssh` and `slurm`, the driver's
/// copies), and a cache directory inside a `depends` directory is refused.
///
/// What the key does not cover, so editing it leaves old entries valid:
/// helper functions the body calls, constants and statics it reads, crate
/// versions, files not listed in `depends` (including those of
/// `#[temp_workdir(copy = [...])]`), the program found on `PATH`, and the
/// environment. Nothing is hashed implicitly: list what the model reads, or
/// bump `version`.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    stack::expand(stack::Kind::Cached, args.into(), item.into()).into()
}

/// Appends every failed evaluation (or every one with `all = true`, with its
/// duration) to a log file, one line each, with time, function, point index,
/// input, error or panic message, host, pid and kept work dir:
/// `#[debug_log("beam.log")]`. Safe with many threads and processes writing
/// at once; the file is never truncated.
#[proc_macro_attribute]
pub fn debug_log(args: TokenStream, item: TokenStream) -> TokenStream {
    stack::expand(stack::Kind::DebugLog, args.into(), item.into()).into()
}

/// Makes a program worker-capable: put it on `fn main` of every binary that
/// runs batches on the `processes` (and later remote) backends. When the
/// program is started as a worker it serves its driver and exits; otherwise
/// `main` runs as written.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    main_attr::expand(args.into(), item.into()).into()
}
