//! The one place that knows the wire and cache encoding (bincode 2 with its
//! serde support), so it can be swapped without touching the rest.
//!
//! Decoding is bounded by the bytes given: whatever lengths the bytes
//! announce, [`decode`] never allocates much more than the input's own size
//! (see the comment on `Bounded` for how, and `tests/hostile.rs` for the
//! measurement).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, Visitor};
use serde::Serialize;

/// The encoding configuration: little endian, variable-length integers, and
/// a size limit on what one value may claim.
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
///
/// Memory is bounded by `bytes.len()`: a corrupt length prefix inside the
/// bytes is an error once the bytes run out, never an allocation of the
/// announced size.
///
/// ```
/// // A `String` announcing 200 MiB, with 3 bytes behind the length.
/// let mut bytes = vec![0xfc];
/// bytes.extend_from_slice(&(200u32 << 20).to_le_bytes());
/// bytes.extend_from_slice(b"abc");
/// assert!(otwrap_runtime::codec::decode::<String>(&bytes).is_err());
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) =
        bincode::serde::seed_decode_from_slice(BoundedSeed(PhantomData::<T>), bytes, config())
            .map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} unexpected trailing bytes", bytes.len() - used));
    }
    Ok(value)
}

// ------------------------------------------------------------------------
// Bounded decoding
// ------------------------------------------------------------------------
//
// bincode 2 decodes an owned `String` or byte buffer by allocating its
// announced length (zeroed) and then reading into it; its limit (1 GiB
// here) is the only check, so 10 bytes announcing a 200 MiB string cost
// 200 MiB before the error. Borrowed strings and bytes are different: the
// slice reader checks that the bytes exist and hands out a view of them.
// Every value we decode comes from a slice already in memory, so the
// wrapper below asks for the borrowed form instead (`deserialize_str` for
// `deserialize_string`, `deserialize_bytes` for `deserialize_byte_buf`) at
// every level of nesting; serde's visitors then copy exactly the bytes that
// are there. The encodings are identical (a length, then the bytes), so
// nothing changes on the wire. Sequences and maps were already safe: serde
// caps their pre-allocation at 1 MiB whatever the announced length.

/// A [`Deserializer`] that forwards to `D`, asking for borrowed strings and
/// bytes where owned ones were asked for, so that no length read from the
/// input is allocated before the bytes are known to exist.
struct Bounded<D>(D);

struct BoundedSeed<T>(PhantomData<T>);

impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for BoundedSeed<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        T::deserialize(Bounded(deserializer))
    }
}

/// Wraps the deserializer handed to a seed.
struct SeedOf<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for SeedOf<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Bounded(deserializer))
    }
}

/// Wraps the nested deserializers and accessors a visitor is handed.
struct VisitorOf<V>(V);

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.0.$method(VisitorOf(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_bytes,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_str(VisitorOf(visitor))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_bytes(VisitorOf(visitor))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, VisitorOf(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, VisitorOf(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, VisitorOf(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_tuple_struct(name, len, VisitorOf(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, VisitorOf(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, VisitorOf(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for VisitorOf<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.visit_some(Bounded(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        self.0.visit_newtype_struct(Bounded(deserializer))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(Bounded(seq))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(Bounded(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.0.visit_enum(Bounded(data))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Bounded<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(SeedOf(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Bounded<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(SeedOf(seed))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(SeedOf(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Bounded<A> {
    type Error = A::Error;
    type Variant = Bounded<A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        self.0
            .variant_seed(SeedOf(seed))
            .map(|(value, variant)| (value, Bounded(variant)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Bounded<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(SeedOf(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, VisitorOf(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, VisitorOf(visitor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};
    use std::path::PathBuf;

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

    /// Every shape the wrapper forwards decodes as plain bincode would.
    #[test]
    fn the_bounded_decoder_reads_what_bincode_writes() {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        enum Shape {
            Unit,
            Newtype(String),
            Tuple(u8, Vec<u8>),
            Struct { name: String, path: PathBuf },
        }
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct Wrapper(u128);
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct Unit;
        type Everything = (
            (bool, i8, i16, i32, i64, i128, u8, u16, u32, u64),
            (f32, f64, char, String, Option<String>, Option<u8>, ()),
            (Vec<Shape>, HashMap<String, Vec<f64>>, BTreeMap<u8, String>),
            (Wrapper, Unit, [u16; 3], Result<Vec<u8>, String>),
        );
        let value: Everything = (
            (
                true,
                -1,
                -300,
                70_000,
                -1 << 40,
                i128::MIN,
                255,
                65_535,
                1,
                u64::MAX,
            ),
            (1.5, -0.25, 'é', "héllo".into(), Some("x".into()), None, ()),
            (
                vec![
                    Shape::Unit,
                    Shape::Newtype("n".into()),
                    Shape::Tuple(7, vec![1, 2, 3]),
                    Shape::Struct {
                        name: String::new(),
                        path: PathBuf::from("/tmp/a b"),
                    },
                ],
                HashMap::from([("k".to_string(), vec![1.0, f64::INFINITY])]),
                BTreeMap::from([(3, "three".to_string())]),
            ),
            (Wrapper(u128::MAX), Unit, [1, 2, 3], Err("failed".into())),
        );
        let bytes = encode(&value).expect("encode");
        let plain: (Everything, usize) =
            bincode::serde::decode_from_slice(&bytes, config()).expect("plain decode");
        let bounded: Everything = decode(&bytes).expect("bounded decode");
        assert_eq!(bounded, plain.0);
        assert_eq!(format!("{bounded:?}"), format!("{value:?}"));
    }

    /// A length prefix larger than what follows is an error, for owned
    /// strings and bytes at any depth.
    #[test]
    fn lengths_beyond_the_input_are_errors() {
        let mut string = vec![0xfc];
        string.extend_from_slice(&(200u32 << 20).to_le_bytes());
        string.extend_from_slice(b"abc");
        assert!(decode::<String>(&string).is_err());
        assert!(decode::<PathBuf>(&string).is_err());
        assert!(decode::<Vec<u8>>(&string).is_err());
        let mut nested = vec![1u8, 0];
        nested.extend_from_slice(&string);
        assert!(decode::<(Option<u8>, Result<String, String>)>(&nested).is_err());
    }
}
