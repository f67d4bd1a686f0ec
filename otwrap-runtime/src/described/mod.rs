//! Models described by data: an external-code coupling (templates, copied
//! files, steps, output readers) given as a [`ModelDescription`] instead of
//! a compiled function, and the interpreter that evaluates it.
//!
//! A description travels as bytes ([`ModelDescription::to_bytes`], the
//! codec of the wire and the cache) to wherever points are evaluated, and
//! the same bytes key its cache entries, so the same description always
//! gives the same bytes and any change to it (a template's text, a step's
//! argument) gives others. [`ModelDescription::compile`] validates it once
//! into an [`Interpreter`] whose [`evaluate`](Interpreter::evaluate) runs
//! one point in a work directory with the coupling tools: filled
//! [`Template`](crate::coupling::Template)s, supervised
//! [`Program`](crate::coupling::Program)s, [`ResultFile`](crate::coupling::ResultFile) readers.
//!
//! What the description does not capture: the content of its resources
//! (copied by path at evaluation time) and of the programs it runs.
//!
//! A batch of a description runs on any backend with
//! [`DescribedRunner`](crate::DescribedRunner): in process, or in workers
//! that receive the description's bytes and compile it once each. Its
//! cache keys are those of the function [`MODEL_ID`] with a hash of the
//! description's bytes as body hash.

mod description;
mod error;
mod interpreter;
mod model;
mod validate;

pub use description::{
    InputTemplate, ModelDescription, OutputReader, ReadRule, Step, TokenBinding,
};
pub use error::{DescribedError, DescriptionError};
pub use interpreter::Interpreter;
pub use model::MODEL_ID;
pub(crate) use model::{prepared_data, worker_invoke, Described};

use crate::codec;

/// The format version of the descriptions this build writes and reads.
///
/// Raise it when the meaning or layout of a description changes. It stays
/// below 251, so that it is the first byte of [`ModelDescription::to_bytes`]
/// whatever follows (bincode writes smaller integers as one byte), and a
/// description from another version is recognised even when it does not
/// decode.
pub const FORMAT: u32 = 1;

impl ModelDescription {
    /// The canonical bytes of the description: bincode through
    /// [`codec::encode`], as on the wire and in the cache. Equal
    /// descriptions give equal bytes (every field is ordered: lists in
    /// their order, environment variables sorted by name).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Encoding into memory cannot fail for these types: every string,
        // list and map has a known length and bincode's size limit applies
        // only when decoding.
        codec::encode(self).unwrap_or_else(|error| {
            unreachable!("a model description always encodes, but: {error}")
        })
    }

    /// A description from [`to_bytes`](Self::to_bytes), validated (see
    /// [`validate`](Self::validate)). Bytes of another format version are
    /// refused as such, bytes that do not decode as a clear error.
    ///
    /// ```
    /// use otwrap_runtime::described::{DescriptionError, ModelDescription};
    ///
    /// let error = ModelDescription::from_bytes(&[7, 1, 2]).unwrap_err();
    /// assert!(matches!(error, DescriptionError::UnsupportedFormat { found: 7, supported: 1 }));
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DescriptionError> {
        let decoded = codec::decode::<ModelDescription>(bytes);
        // The version first: a description of another format may decode
        // into garbage or not at all.
        if let Some(&found) = bytes.first() {
            if u32::from(found) != FORMAT && found < 251 {
                return Err(DescriptionError::UnsupportedFormat {
                    found: found.into(),
                    supported: FORMAT,
                });
            }
        }
        let description = decoded.map_err(|message| DescriptionError::Decode { message })?;
        description.validate()?;
        Ok(description)
    }
}
