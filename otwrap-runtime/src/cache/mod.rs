//! The result cache: keys (function id, body hash, version salt, input
//! bytes), the stores that hold encoded results (sled on disk, or memory),
//! and [`ModelCache`], the handle the batch engine and single calls use.

pub mod key;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use key::{CacheKey, KeyPrefix};
use store::{CacheError, CacheStore, DiskStore, Entry, MemoryStore};

use crate::error::Error;
use crate::model::Model;

/// The environment variable that moves the default disk cache directory.
pub const CACHE_DIR_ENV: &str = "OTWRAP_CACHE_DIR";
/// The default disk cache directory, relative to the current directory.
pub const DEFAULT_CACHE_DIR: &str = ".otwrap/cache";

/// Where a model's cache lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLocation {
    /// In this process's memory (`#[cached]`).
    Memory,
    /// On disk in `OTWRAP_CACHE_DIR` or `.otwrap/cache` (`#[cached(disk)]`).
    DiskDefault,
    /// On disk in this directory (`#[cached(disk = "path")]`).
    Disk(&'static str),
}

/// A model's cache settings, written by `#[cached(...)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSpec {
    /// Where the entries are stored.
    pub location: CacheLocation,
    /// A hash of the function's tokens taken at expansion time: editing the
    /// function invalidates its entries.
    pub body_hash: u64,
    /// The `version = "..."` salt, to invalidate by hand.
    pub version: &'static str,
    /// Also store failures (their message) and answer them from the cache.
    pub cache_errors: bool,
}

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

impl ModelCache {
    /// The cache of model `M`, or `None` when it is not cached.
    pub fn of<M: Model>() -> Result<Option<ModelCache>, Error> {
        M::cache()
            .map(|spec| ModelCache::open(M::ID, spec))
            .transpose()
    }

    /// Opens the cache of the model with id `id`.
    pub fn open(id: &str, spec: CacheSpec) -> Result<ModelCache, Error> {
        let store: Arc<dyn CacheStore> = match spec.location {
            CacheLocation::Memory => memory_store(id),
            CacheLocation::DiskDefault => {
                let dir = std::env::var_os(CACHE_DIR_ENV)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR));
                DiskStore::open(dir)?
            }
            CacheLocation::Disk(dir) => DiskStore::open(dir)?,
        };
        Ok(ModelCache {
            store,
            prefix: KeyPrefix::new(id, spec.body_hash, spec.version),
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

    /// Stores an entry, and flushes to disk when due (so a killed run loses
    /// at most the last fraction of a second).
    pub fn store(&self, input: &[u8], entry: Entry) -> Result<(), CacheError> {
        self.store.insert(&self.key(input), entry)?;
        self.store.flush_if_due().map(|_| ())
    }

    /// Writes everything stored so far to disk.
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

    /// Where the store lives (`None` in memory).
    pub fn location(&self) -> Option<PathBuf> {
        self.store.location().map(|p| p.to_path_buf())
    }
}
