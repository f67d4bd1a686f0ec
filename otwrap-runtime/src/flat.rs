//! Numbers in, numbers out: a serde bridge between a model's inputs or
//! outputs (numbers, arrays, tuples, vectors and structs of them) and a flat
//! row of `f64`, so a cache can be exported to and imported from a
//! [`Sample`](crate::Sample) / CSV file.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde::ser::{self, Serialize};

/// Why a value cannot be flattened or rebuilt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FlatError(String);

impl ser::Error for FlatError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FlatError(msg.to_string())
    }
}

impl de::Error for FlatError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FlatError(msg.to_string())
    }
}

/// The numbers of `value`, in declaration order.
///
/// ```
/// let row = otwrap_runtime::flat::to_row(&([1.0_f64, 2.0], 3_u32)).unwrap();
/// assert_eq!(row, vec![1.0, 2.0, 3.0]);
/// ```
pub fn to_row<T: Serialize + ?Sized>(value: &T) -> Result<Vec<f64>, FlatError> {
    let mut row = Vec::new();
    value.serialize(&mut Flattener { row: &mut row })?;
    Ok(row)
}

/// Rebuilds a value from its numbers; every number must be used.
///
/// ```
/// let v: ([f64; 2], u32) = otwrap_runtime::flat::from_row(&[1.0, 2.0, 3.0]).unwrap();
/// assert_eq!(v, ([1.0, 2.0], 3));
/// ```
pub fn from_row<T: DeserializeOwned>(row: &[f64]) -> Result<T, FlatError> {
    let mut reader = Reader { row, at: 0 };
    let value = T::deserialize(&mut reader)?;
    if reader.at != row.len() {
        return Err(FlatError(format!(
            "the row has {} numbers but the value uses {}",
            row.len(),
            reader.at
        )));
    }
    Ok(value)
}

struct Flattener<'a> {
    row: &'a mut Vec<f64>,
}

fn unsupported<T>(what: &str) -> Result<T, FlatError> {
    Err(FlatError(format!(
        "{what} cannot be written as numbers; only numbers, booleans, arrays, tuples, vectors and structs of them can"
    )))
}

macro_rules! push_number {
    ($($name:ident: $ty:ty),*) => {
        $(fn $name(self, v: $ty) -> Result<(), FlatError> {
            self.row.push(v as f64);
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for &mut Flattener<'a> {
    type Ok = ();
    type Error = FlatError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = ser::Impossible<(), FlatError>;
    type SerializeMap = ser::Impossible<(), FlatError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), FlatError>;

    push_number!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_f32: f32, serialize_f64: f64);

    fn serialize_bool(self, v: bool) -> Result<(), FlatError> {
        self.row.push(if v { 1.0 } else { 0.0 });
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), FlatError> {
        unsupported("a character")
    }
    fn serialize_str(self, _: &str) -> Result<(), FlatError> {
        unsupported("a string")
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), FlatError> {
        unsupported("a byte string")
    }
    fn serialize_none(self) -> Result<(), FlatError> {
        unsupported("an Option")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), FlatError> {
        unsupported("an Option")
    }
    fn serialize_unit(self) -> Result<(), FlatError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), FlatError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), FlatError> {
        unsupported("an enum")
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), FlatError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), FlatError> {
        unsupported("an enum")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, FlatError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, FlatError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, FlatError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, FlatError> {
        unsupported("an enum")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, FlatError> {
        unsupported("a map")
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, FlatError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, FlatError> {
        unsupported("an enum")
    }
}

macro_rules! seq_impl {
    ($($tr:ident :: $method:ident),*) => {
        $(impl<'a> ser::$tr for &mut Flattener<'a> {
            type Ok = ();
            type Error = FlatError;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), FlatError> {
                v.serialize(&mut Flattener { row: self.row })
            }
            fn end(self) -> Result<(), FlatError> {
                Ok(())
            }
        })*
    };
}
seq_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

impl<'a> ser::SerializeStruct for &mut Flattener<'a> {
    type Ok = ();
    type Error = FlatError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        v: &T,
    ) -> Result<(), FlatError> {
        v.serialize(&mut Flattener { row: self.row })
    }
    fn end(self) -> Result<(), FlatError> {
        Ok(())
    }
}

struct Reader<'r> {
    row: &'r [f64],
    at: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<f64, FlatError> {
        let v = self.row.get(self.at).copied().ok_or_else(|| {
            FlatError(format!(
                "the row has only {} numbers; the value needs more",
                self.row.len()
            ))
        })?;
        self.at += 1;
        Ok(v)
    }

    fn integer(&mut self) -> Result<i128, FlatError> {
        let v = self.next()?;
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(FlatError(format!(
                "{v} at position {} is not a whole number",
                self.at
            )));
        }
        Ok(v as i128)
    }
}

macro_rules! read_integer {
    ($($name:ident => $visit:ident: $ty:ty),*) => {
        $(fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
            let v = self.integer()?;
            let v = <$ty>::try_from(v).map_err(|_| FlatError(format!("{v} does not fit in {}", stringify!($ty))))?;
            visitor.$visit(v)
        })*
    };
}

impl<'de> de::Deserializer<'de> for &mut Reader<'_> {
    type Error = FlatError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        visitor.visit_f64(self.next()?)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        visitor.visit_f64(self.next()?)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        visitor.visit_f32(self.next()? as f32)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        visitor.visit_bool(self.next()? != 0.0)
    }
    read_integer!(deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32, deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32, deserialize_u64 => visit_u64: u64);
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, FlatError> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, FlatError> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FlatError> {
        // A vector of unknown length takes every remaining number.
        let left = self.row.len() - self.at;
        visitor.visit_seq(Elements { reader: self, left })
    }
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, FlatError> {
        visitor.visit_seq(Elements {
            reader: self,
            left: len,
        })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, FlatError> {
        visitor.visit_seq(Elements {
            reader: self,
            left: len,
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FlatError> {
        visitor.visit_seq(Elements {
            reader: self,
            left: fields.len(),
        })
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf option map enum identifier ignored_any
    }
}

struct Elements<'a, 'r> {
    reader: &'a mut Reader<'r>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, '_> {
    type Error = FlatError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, FlatError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Point {
        x: f64,
        k: u32,
        tags: [i8; 2],
    }

    #[test]
    fn round_trips() {
        let p = Point {
            x: 1.5,
            k: 7,
            tags: [-1, 2],
        };
        let row = to_row(&p).expect("flat");
        assert_eq!(row, vec![1.5, 7.0, -1.0, 2.0]);
        assert_eq!(from_row::<Point>(&row).expect("back"), p);
        let v: Vec<f64> = from_row(&[1.0, 2.0, 3.0]).expect("vec");
        assert_eq!(v, vec![1.0, 2.0, 3.0]);
        assert_eq!(from_row::<f64>(&[4.0]).expect("scalar"), 4.0);
    }

    #[test]
    fn refuses_what_is_not_numbers() {
        assert!(to_row(&"text")
            .unwrap_err()
            .to_string()
            .contains("a string"));
        assert!(from_row::<u32>(&[1.5])
            .unwrap_err()
            .to_string()
            .contains("not a whole number"));
        assert!(from_row::<[f64; 3]>(&[1.0])
            .unwrap_err()
            .to_string()
            .contains("only 1"));
        assert!(from_row::<f64>(&[1.0, 2.0])
            .unwrap_err()
            .to_string()
            .contains("uses 1"));
        assert!(from_row::<u8>(&[300.0]).is_err());
    }
}
