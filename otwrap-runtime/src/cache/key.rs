//! Cache keys: which function version a result belongs to, and for which input.
//!
//! A key is a 16-byte [`KeyPrefix`] followed by the exact input bytes:
//!
//! ```text
//! byte 0..16   KeyPrefix = xxh3_128(framed (function id, body hash, version salt)), little endian
//! byte 16..    the input bytes, verbatim (bincode of the point)
//! ```
//!
//! The prefix frame hashed is
//! `b"otwrap.cache.key.v1" ++ u64_le(len(function_id)) ++ function_id ++
//! body_hash (16 bytes) ++ u64_le(len(version_salt)) ++ version_salt`;
//! the lengths make `("ab", "c")` and `("a", "bc")` different functions.
//!
//! A model with `#[cached(depends = [...])]` appends
//! `b"otwrap.cache.depends" ++ depends_hash (16 bytes)` to that frame (see
//! [`super::depends`]). A model without `depends` hashes exactly the frame
//! above, so its keys are the ones it had before `depends` existed; and
//! since the frame without it is fully length-delimited, the longer frame can
//! never equal a shorter one.
//!
//! The prefix only has to tell apart the few versions of the few functions
//! stored in one cache, so a 128-bit non-cryptographic hash is plenty. The
//! input is kept verbatim rather than hashed, so two different inputs of the
//! same function version can never share a key. Keeping the prefix first
//! lets the store count, export or clear one function version with a single
//! ordered prefix scan.
//!
//! The layout is part of the on-disk format: changing the frame or the hash
//! orphans every existing cache entry (they become misses, never wrong hits).
//! The `prefix_layout_is_stable` test pins it.

use std::fmt;

/// Length in bytes of a [`KeyPrefix`], and so of the head of every [`CacheKey`].
pub const PREFIX_LEN: usize = 16;

/// Tag hashed in front of every prefix frame; bump the `v1` to change the layout.
const FRAME_TAG: &[u8] = b"otwrap.cache.key.v1";

/// Tag in front of the dependency hash, for models that declare `depends`.
const DEPENDS_TAG: &[u8] = b"otwrap.cache.depends";

/// Hash of a function's body (its token stream at macro expansion time).
///
/// Built from whatever width the macro computes: a `u64`, a `u128` or 16 raw
/// bytes. Narrower hashes are zero-extended.
///
/// ```
/// use otwrap_runtime::cache::key::BodyHash;
///
/// assert_eq!(BodyHash::from(7u64), BodyHash::from(7u128));
/// assert_eq!(BodyHash::from([0u8; 16]), BodyHash::from(0u64));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct BodyHash([u8; 16]);

impl BodyHash {
    /// The 16 bytes that enter the prefix frame (little-endian for integers).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl From<u64> for BodyHash {
    fn from(hash: u64) -> Self {
        BodyHash(u128::from(hash).to_le_bytes())
    }
}

impl From<u128> for BodyHash {
    fn from(hash: u128) -> Self {
        BodyHash(hash.to_le_bytes())
    }
}

impl From<[u8; 16]> for BodyHash {
    fn from(bytes: [u8; 16]) -> Self {
        BodyHash(bytes)
    }
}

/// The 16-byte head shared by all keys of one function version
/// (function id, body hash, version salt).
///
/// Pass it to the store's `count`, `clear` and `iter` to manage one function
/// version without knowing its inputs.
///
/// ```
/// use otwrap_runtime::cache::key::{CacheKey, KeyPrefix};
///
/// let prefix = KeyPrefix::new("beam::deflection", 0xfeed_u64, "v2");
/// let key = CacheKey::new("beam::deflection", 0xfeed_u64, "v2", b"point");
/// assert_eq!(key.prefix(), prefix);
/// assert_ne!(prefix, KeyPrefix::new("beam::deflection", 0xfeed_u64, "v3"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPrefix([u8; PREFIX_LEN]);

impl KeyPrefix {
    /// Derives the prefix of one function version.
    pub fn new(function_id: &str, body_hash: impl Into<BodyHash>, version_salt: &str) -> Self {
        KeyPrefix::with_depends(function_id, body_hash, version_salt, None)
    }

    /// Derives the prefix of one function version that also depends on
    /// files: `depends` is the hash of their contents
    /// ([`hash_depends`](super::depends::hash_depends)). `None` gives
    /// exactly [`KeyPrefix::new`].
    ///
    /// ```
    /// use otwrap_runtime::cache::key::KeyPrefix;
    ///
    /// let plain = KeyPrefix::new("wall::solve", 7u64, "");
    /// assert_eq!(plain, KeyPrefix::with_depends("wall::solve", 7u64, "", None));
    /// assert_ne!(plain, KeyPrefix::with_depends("wall::solve", 7u64, "", Some([0; 16])));
    /// ```
    pub fn with_depends(
        function_id: &str,
        body_hash: impl Into<BodyHash>,
        version_salt: &str,
        depends: Option<[u8; 16]>,
    ) -> Self {
        let body = body_hash.into().to_bytes();
        let mut frame = Vec::with_capacity(
            FRAME_TAG.len()
                + 8
                + function_id.len()
                + body.len()
                + 8
                + version_salt.len()
                + DEPENDS_TAG.len()
                + 16,
        );
        frame.extend_from_slice(FRAME_TAG);
        frame.extend_from_slice(&(function_id.len() as u64).to_le_bytes());
        frame.extend_from_slice(function_id.as_bytes());
        frame.extend_from_slice(&body);
        frame.extend_from_slice(&(version_salt.len() as u64).to_le_bytes());
        frame.extend_from_slice(version_salt.as_bytes());
        if let Some(depends) = depends {
            frame.extend_from_slice(DEPENDS_TAG);
            frame.extend_from_slice(&depends);
        }
        KeyPrefix(xxhash_rust::xxh3::xxh3_128(&frame).to_le_bytes())
    }

    /// Rebuilds a prefix from its bytes, e.g. read back from a key or a CLI argument.
    pub fn from_bytes(bytes: [u8; PREFIX_LEN]) -> Self {
        KeyPrefix(bytes)
    }

    /// The prefix bytes, as they appear at the head of every key.
    pub fn as_bytes(&self) -> &[u8; PREFIX_LEN] {
        &self.0
    }

    /// The key of `input_bytes` under this function version.
    pub fn key(&self, input_bytes: &[u8]) -> CacheKey {
        let mut bytes = Vec::with_capacity(PREFIX_LEN + input_bytes.len());
        bytes.extend_from_slice(&self.0);
        bytes.extend_from_slice(input_bytes);
        CacheKey { bytes }
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPrefix({self})")
    }
}

/// Lower-case hex, the form to show in logs and to accept on a command line.
impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The full key of one cached evaluation: [`KeyPrefix`] then the exact input bytes.
///
/// ```
/// use otwrap_runtime::cache::key::{CacheKey, PREFIX_LEN};
///
/// let key = CacheKey::new("beam::deflection", 42u64, "", &[1, 2, 3]);
/// assert_eq!(key.as_bytes().len(), PREFIX_LEN + 3);
/// assert_eq!(key.input_bytes(), &[1, 2, 3]);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    bytes: Vec<u8>,
}

impl CacheKey {
    /// Derives the key of `input_bytes` for the function version
    /// (`function_id`, `body_hash`, `version_salt`).
    pub fn new(
        function_id: &str,
        body_hash: impl Into<BodyHash>,
        version_salt: &str,
        input_bytes: &[u8],
    ) -> Self {
        KeyPrefix::new(function_id, body_hash, version_salt).key(input_bytes)
    }

    /// Takes back a key from its stored bytes; `None` if shorter than a prefix.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= PREFIX_LEN).then_some(CacheKey { bytes })
    }

    /// The function version this key belongs to.
    pub fn prefix(&self) -> KeyPrefix {
        let mut head = [0u8; PREFIX_LEN];
        head.copy_from_slice(&self.bytes[..PREFIX_LEN]);
        KeyPrefix(head)
    }

    /// The input bytes, exactly as given to [`CacheKey::new`].
    pub fn input_bytes(&self) -> &[u8] {
        &self.bytes[PREFIX_LEN..]
    }

    /// The whole key as stored: prefix then input bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole key as stored, without copying.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl AsRef<[u8]> for CacheKey {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKey")
            .field("prefix", &self.prefix())
            .field("input_len", &self.input_bytes().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_layout_is_stable() {
        // Pinned: if this changes, every cache on disk silently becomes cold.
        let prefix = KeyPrefix::new("beam::deflection", 0x0123_4567_89ab_cdef_u64, "v1");
        assert_eq!(prefix.to_string(), PINNED_PREFIX);
    }

    // Cross-checked with the Python `xxhash` package (xxh3_128_intdigest, little endian).
    const PINNED_PREFIX: &str = "6c3414d9c34e1df0ca0236cbc7613b5e";

    #[test]
    fn depends_prefix_layout_is_stable() {
        let prefix = KeyPrefix::with_depends(
            "beam::deflection",
            0x0123_4567_89ab_cdef_u64,
            "v1",
            Some(*b"0123456789abcdef"),
        );
        assert_eq!(prefix.to_string(), PINNED_DEPENDS_PREFIX);
        assert_ne!(prefix.to_string(), PINNED_PREFIX);
    }

    // The frame of PINNED_PREFIX with b"otwrap.cache.depends" ++ b"0123456789abcdef"
    // appended; recorded from this implementation when `depends` was added.
    const PINNED_DEPENDS_PREFIX: &str = "56a259f33c002b0602bc8cdc68e3e0ca";

    #[test]
    fn key_is_prefix_then_exact_input() {
        let input = [0u8, 255, 7, 7, 0];
        let key = CacheKey::new("f", 1u64, "", &input);
        assert_eq!(&key.as_bytes()[..PREFIX_LEN], key.prefix().as_bytes());
        assert_eq!(key.input_bytes(), &input);
        assert_eq!(key.clone().into_bytes().len(), PREFIX_LEN + input.len());
        assert_eq!(CacheKey::from_bytes(key.clone().into_bytes()), Some(key));
    }

    #[test]
    fn every_part_of_the_identity_changes_the_prefix() {
        let base = KeyPrefix::new("f", 1u64, "v");
        assert_ne!(base, KeyPrefix::new("g", 1u64, "v"));
        assert_ne!(base, KeyPrefix::new("f", 2u64, "v"));
        assert_ne!(base, KeyPrefix::new("f", 1u64, "w"));
        // Length framing: moving a byte between fields is a different function.
        assert_ne!(
            KeyPrefix::new("ab", 1u64, "c"),
            KeyPrefix::new("a", 1u64, "bc")
        );
        assert_eq!(base, KeyPrefix::new("f", 1u128, "v"));
    }

    #[test]
    fn different_inputs_never_share_a_key() {
        let prefix = KeyPrefix::new("f", 1u64, "");
        assert_ne!(prefix.key(b"a"), prefix.key(b"a\0"));
        assert_ne!(prefix.key(b""), prefix.key(b"\0"));
    }

    #[test]
    fn short_bytes_are_not_a_key() {
        assert_eq!(CacheKey::from_bytes(vec![0; PREFIX_LEN - 1]), None);
        let empty_input = CacheKey::from_bytes(vec![9; PREFIX_LEN]);
        assert_eq!(empty_input.map(|k| k.input_bytes().len()), Some(0));
    }

    #[test]
    fn prefix_round_trips_through_bytes() {
        let prefix = KeyPrefix::new("f", [3u8; 16], "salt");
        assert_eq!(KeyPrefix::from_bytes(*prefix.as_bytes()), prefix);
        assert_eq!(prefix.to_string().len(), 2 * PREFIX_LEN);
    }
}
