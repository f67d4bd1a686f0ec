//! The result cache: keys (function id, body hash, version salt, input bytes)
//! and the stores that hold encoded results (sled on disk, or memory).

pub mod key;
pub mod store;
