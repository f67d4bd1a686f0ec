//! The one place that knows the wire and cache encoding (bincode 2 with its
//! serde support), so it can be swapped without touching the rest.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The encoding configuration: little endian, variable-length integers, and
/// a size limit so a corrupt length can never make us allocate gigabytes.
const LIMIT: usize = 1 << 30;

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
> {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Encodes a value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())
}

/// Encodes a value at the end of `buf`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, buf, config())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Decodes a value, refusing trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} unexpected trailing bytes", bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let v = ([1.0_f64, 2.0], "x".to_string());
        let mut bytes = encode(&v).expect("encode");
        let back: ([f64; 2], String) = decode(&bytes).expect("decode");
        assert_eq!(back, v);
        bytes.push(0);
        assert!(decode::<([f64; 2], String)>(&bytes).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[0xff; 3][..],
            &[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f][..],
        ] {
            assert!(decode::<Vec<u64>>(bytes).is_err());
        }
    }
}
