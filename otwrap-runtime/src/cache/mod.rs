//! The result cache: keys (function id, body hash, version salt, declared
//! dependencies, input bytes), the stores that hold encoded results (sled on
//! disk, or memory), and [`ModelCache`], the handle the batch engine and
//! single calls use.
//!
//! What a key covers, and what it does not:
//! - the function id (module path and name) and the body hash: the macro's
//!   hash of the function's own tokens, signature and body (a `//` comment
//!   or spacing does not change it);
//! - the `version = "..."` salt;
//! - the contents of the files and directories listed in `depends = [...]`,
//!   read when the cache is opened ([`depends`]);
//! - the exact bincode bytes of the input.
//!
//! Not covered, so editing them leaves old entries valid: helper functions
//! the body calls, constants and statics it reads, the crates it uses, any
//! file not listed in `depends` (the solver, its templates, files copied in
//! by `#[temp_workdir(copy = [...])]`), the program found on `PATH`, and
//! the environment. Nothing is hashed implicitly: list what the model reads
//! in `depends`, or bump `version`.

pub mod depends;
mod flusher;
pub mod key;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use key::{CacheKey, KeyPrefix};
use store::{CacheError, CacheStore, DiskStore, Entry, MemoryStore};

pub use crate::core::{CacheLocation, CacheSpec};
use crate::flat;
use crate::model::Model;
use crate::sample::Sample;

/// The environment variable that moves the default disk cache directory.
pub const CACHE_DIR_ENV: &str = "OTWRAP_CACHE_DIR";
/// The default disk cache directory, relative to the current directory.
pub const DEFAULT_CACHE_DIR: &str = ".otwrap/cache";

/// One cached point of model `M`: its input and its value or stored error.
pub type CachedEntry<M> = (<M as Model>::Input, Result<<M as Model>::Output, String>);

/// The cache of one model (one function version): lookups and stores by the
/// input's encoded bytes, and management (count, clear, entries).
#[derive(Debug, Clone)]
pub struct ModelCache {
    store: Arc<dyn CacheStore>,
    prefix: KeyPrefix,
    spec: CacheSpec,
}

fn memory_store(id: &str) -> Arc<MemoryStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Arc::clone(stores.entry(id.to_string()).or_default())
}

/// Disk stores stay open for the life of the process: opening sled costs
/// milliseconds, and a store closing in the background would make the next
/// open in this process wait for it. Other processes are refused while this
/// one runs (the lock names the path).
fn disk_store(dir: PathBuf, owned: usize) -> Result<Arc<DiskStore>, CacheError> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Arc<DiskStore>>>> = OnceLock::new();
    let mut open = OPEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(store) = open.get(&dir) {
        return Ok(Arc::clone(store));
    }
    let store = DiskStore::open_owned(&dir, owned)?;
    open.insert(dir, Arc::clone(&store));
    Ok(store)
}

impl ModelCache {
    /// The cache of model `M`, or `None` when it is not cached.
    pub fn of<M: Model>() -> Result<Option<ModelCache>, CacheError> {
        M::cache()
            .map(|spec| ModelCache::open(M::ID, spec))
            .transpose()
    }

    /// Opens the cache of the model with id `id`. With `depends`, hashes the
    /// declared files first (a missing one is an error naming it).
    pub fn open(id: &str, spec: CacheSpec) -> Result<ModelCache, CacheError> {
        let depends = match spec.depends {
            [] => None,
            paths => Some(depends::hash_depends(id, paths)?.to_bytes()),
        };
        let store: Arc<dyn CacheStore> = match spec.location {
            CacheLocation::Memory => memory_store(id),
            // `.otwrap` and `.otwrap/cache` are otwrap's own: both are
            // checked (a directory the user names is judged alone).
            CacheLocation::DiskDefault => match std::env::var_os(CACHE_DIR_ENV) {
                Some(dir) => disk_store(PathBuf::from(dir), 1)?,
                None => disk_store(PathBuf::from(DEFAULT_CACHE_DIR), 2)?,
            },
            CacheLocation::Disk(dir) => disk_store(PathBuf::from(dir), 1)?,
        };
        if let Some(dir) = store.location() {
            depends::check_cache_outside(id, spec.depends, dir)?;
        }
        Ok(ModelCache {
            store,
            prefix: KeyPrefix::with_depends(id, spec.body_hash, spec.version, depends),
            spec,
        })
    }

    fn key(&self, input: &[u8]) -> CacheKey {
        self.prefix.key(input)
    }

    /// The settings.
    pub fn spec(&self) -> &CacheSpec {
        &self.spec
    }

    /// The stored entry for these input bytes, if any (a damaged entry is a
    /// warning and a miss).
    pub fn lookup(&self, input: &[u8]) -> Result<Option<Entry>, CacheError> {
        Ok(match self.store.get(&self.key(input))? {
            Some(Entry::Error(_)) if !self.spec.cache_errors => None,
            other => other,
        })
    }

    /// Stores an entry; a disk store writes it out with its next flush, which
    /// starts as soon as the previous one ends (so a killed run loses only
    /// what the last flush had not yet covered).
    pub fn store(&self, input: &[u8], entry: Entry) -> Result<(), CacheError> {
        self.store.insert(&self.key(input), entry)
    }

    /// Waits until everything stored so far is written out.
    pub fn flush(&self) -> Result<(), CacheError> {
        self.store.flush()
    }

    /// The number of entries of this model version.
    pub fn count(&self) -> Result<usize, CacheError> {
        self.store.count(&self.prefix)
    }

    /// Removes every entry of this model version; returns how many.
    pub fn clear(&self) -> Result<usize, CacheError> {
        self.store.clear(&self.prefix)
    }

    /// Every entry of this model version, decoded: the input and its value
    /// (or stored error message). Undecodable entries are skipped with a
    /// warning.
    pub fn entries<M: Model>(&self) -> Result<Vec<CachedEntry<M>>, CacheError> {
        let mut out = Vec::new();
        for item in self.store.iter(&self.prefix) {
            let (input, entry) = item?;
            let Ok(input) = crate::codec::decode::<M::Input>(&input) else {
                tracing::warn!(model = M::ID, "a cached input does not decode; skipped");
                continue;
            };
            let value = match entry {
                Entry::Value(bytes) => match crate::codec::decode::<M::Output>(&bytes) {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        tracing::warn!(
                            model = M::ID,
                            "a cached value does not decode ({e}); skipped"
                        );
                        continue;
                    }
                },
                Entry::Error(message) => Err(message),
            };
            out.push((input, value));
        }
        Ok(out)
    }

    /// Every cached value of this model version as a [`Sample`]: one row per
    /// point, the input's numbers (columns `X0`, `X1`, ...) then the output's
    /// (`Y0`, ...). Stored failures are left out. Inputs and outputs must be
    /// made of numbers (arrays, tuples, vectors and structs of them).
    pub fn export_sample<M: Model>(&self) -> Result<Sample, CacheError> {
        let mut sample: Option<Sample> = None;
        for (input, value) in self.entries::<M>()? {
            let Ok(value) = value else { continue };
            let mut row = flat::to_row(&input).map_err(|e| CacheError::Sample {
                message: format!("cannot export the inputs of {}: {e}", M::NAME),
            })?;
            let inputs = row.len();
            row.extend(flat::to_row(&value).map_err(|e| CacheError::Sample {
                message: format!("cannot export the outputs of {}: {e}", M::NAME),
            })?);
            let sample = sample.get_or_insert_with(|| {
                let names = (0..inputs)
                    .map(|i| format!("X{i}"))
                    .chain((0..row.len() - inputs).map(|j| format!("Y{j}")))
                    .collect();
                Sample::new(names)
            });
            sample.push(&row).map_err(|e| CacheError::Sample {
                message: format!("cannot export the cache of {}: {e}", M::NAME),
            })?;
        }
        Ok(sample.unwrap_or_default())
    }

    /// Stores the rows of `sample` as cached results: the first
    /// `input_columns` numbers of each row are the input, the rest the
    /// output (the layout [`export_sample`](Self::export_sample) writes, and
    /// the way the EDF material reloads a CSV cache). Returns how many rows
    /// were stored; a row that does not fit the model's types is an error
    /// naming it.
    pub fn import_sample<M: Model>(
        &self,
        sample: &Sample,
        input_columns: usize,
    ) -> Result<usize, CacheError> {
        if input_columns > sample.dimension() {
            return Err(CacheError::Sample { message: format!(
                "import into the cache of {}: {input_columns} input columns asked but the sample has {}",
                M::NAME,
                sample.dimension()
            ) });
        }
        for (i, row) in sample.rows().enumerate() {
            let bad = |what: &str, e: flat::FlatError| CacheError::Sample {
                message: format!(
                    "import into the cache of {}: row {i}: the {what} does not fit: {e}",
                    M::NAME
                ),
            };
            let input: M::Input =
                flat::from_row(&row[..input_columns]).map_err(|e| bad("input", e))?;
            let output: M::Output =
                flat::from_row(&row[input_columns..]).map_err(|e| bad("output", e))?;
            let (Ok(input), Ok(output)) =
                (crate::codec::encode(&input), crate::codec::encode(&output))
            else {
                return Err(CacheError::Sample {
                    message: format!(
                        "import into the cache of {}: row {i} cannot be encoded",
                        M::NAME
                    ),
                });
            };
            self.store(&input, Entry::Value(output))?;
        }
        self.flush()?;
        Ok(sample.len())
    }

    /// Where the store lives (`None` in memory).
    pub fn location(&self) -> Option<PathBuf> {
        self.store.location().map(|p| p.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Options;
    use crate::layers::Failed;
    use crate::model::EvalContext;

    struct Square;
    impl Model for Square {
        type Input = ([f64; 2], u32);
        type Output = f64;
        const ID: &'static str = "cache::tests::square";
        const NAME: &'static str = "square";
        fn attribute_options() -> Options {
            Options::default()
        }
        fn evaluate(input: &Self::Input, _ctx: &EvalContext) -> Result<f64, Failed> {
            Ok(input.0[0] * input.0[1] * f64::from(input.1))
        }
        fn cache() -> Option<CacheSpec> {
            Some(CacheSpec {
                location: CacheLocation::Memory,
                body_hash: 1,
                version: "",
                cache_errors: false,
                depends: &[],
            })
        }
    }

    #[test]
    fn export_then_import_round_trips_through_a_sample() {
        let cache = ModelCache::of::<Square>().expect("opens").expect("cached");
        cache.clear().expect("clear");
        let inputs = vec![([1.0, 2.0], 3), ([0.5, 4.0], 1)];
        let batch = crate::Runner::<Square>::new().map(&inputs).expect("runs");
        assert_eq!(batch.summary().evaluated, 2);
        let sample = cache.export_sample::<Square>().expect("exports");
        assert_eq!(sample.names(), ["X0", "X1", "X2", "Y0"]);
        assert_eq!(sample.len(), 2);

        cache.clear().expect("clear");
        assert_eq!(cache.count().expect("count"), 0);
        assert_eq!(
            cache.import_sample::<Square>(&sample, 3).expect("imports"),
            2
        );
        let again = crate::Runner::<Square>::new().map(&inputs).expect("runs");
        assert_eq!(again.summary().evaluated, 0);
        assert_eq!(again.values().expect("values"), vec![6.0, 2.0]);

        let err = cache
            .import_sample::<Square>(&sample, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 0"), "{err}");
    }
}
