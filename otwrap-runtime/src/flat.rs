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
    let mut out = NamedRow::default();
    value.serialize(Namer {
        out: &mut out,
        prefix: String::new(),
        bare_fields: true,
        elements: &[],
        named: false,
    })?;
    Ok(out.values)
}

/// Rebuilds a value from its numbers; every number must be used.
///
/// ```
/// let v: ([f64; 2], u32) = otwrap_runtime::flat::from_row(&[1.0, 2.0, 3.0]).unwrap();
/// assert_eq!(v, ([1.0, 2.0], 3));
/// ```
pub fn from_row<T: DeserializeOwned>(row: &[f64]) -> Result<T, FlatError> {
    let mut reader = Reader {
        row,
        at: 0,
        zeros: false,
    };
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

fn unsupported<T>(what: &str) -> Result<T, FlatError> {
    Err(FlatError(format!(
        "{what} cannot be written as numbers; only numbers, booleans, arrays, tuples, vectors and structs of them can"
    )))
}

/// A value's numbers with one column name each (see [`to_named_row`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NamedRow {
    /// One name per number.
    pub names: Vec<String>,
    /// The numbers, in declaration order (as [`to_row`] gives them).
    pub values: Vec<f64>,
}

/// The numbers of `value` with a column name each: a single number is
/// `root`, the elements of arrays, tuples and vectors are `root0`,
/// `root1`, ... (`root0_1` when nested), the fields of a struct keep their
/// names (`field.sub` for a struct inside a field, `field0` for an array
/// inside one). When `elements` has two names or more, `value` is a tuple
/// (a function's parameters) whose element `i` is named from
/// `elements[i]` instead of `root` (an empty name falls back to `root{i}`);
/// with exactly one, it replaces `root`.
///
/// ```
/// use otwrap_runtime::flat::to_named_row;
///
/// #[derive(serde::Serialize)]
/// struct Out { deviation: f64, stress: [f64; 2] }
/// let row = to_named_row(&Out { deviation: 1.5, stress: [2.0, 3.0] }, "y", &[])?;
/// assert_eq!(row.names, ["deviation", "stress0", "stress1"]);
/// assert_eq!(row.values, [1.5, 2.0, 3.0]);
///
/// let row = to_named_row(&([1.0_f64, 2.0], 3.0_f64), "x", &["x", "load"])?;
/// assert_eq!(row.names, ["x0", "x1", "load"]);
/// assert_eq!(to_named_row(&[4.0_f64; 2], "y", &[])?.names, ["y0", "y1"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn to_named_row<T: Serialize + ?Sized>(
    value: &T,
    root: &str,
    elements: &[&str],
) -> Result<NamedRow, FlatError> {
    let mut out = NamedRow::default();
    let (root, elements) = match elements {
        [one] if !one.is_empty() => (*one, &[][..]),
        [_] => (root, &[][..]),
        many => (root, many),
    };
    value.serialize(Namer {
        out: &mut out,
        prefix: root.to_owned(),
        bare_fields: true,
        elements,
        named: true,
    })?;
    Ok(out)
}

/// A value of `T` with every number zero, for types of a fixed shape
/// (numbers, arrays, tuples and structs of them): its names tell the columns
/// of `T` without a value at hand. A vector has no fixed length: an error.
pub fn zero_value<T: DeserializeOwned>() -> Result<T, FlatError> {
    T::deserialize(&mut Reader {
        row: &[],
        at: 0,
        zeros: true,
    })
}

/// The name of element `i` under `prefix`: `x0`, or `x1_0` when the prefix
/// already ends with a digit.
fn element_name(prefix: &str, i: usize) -> String {
    if prefix.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{prefix}_{i}")
    } else {
        format!("{prefix}{i}")
    }
}

/// The serializer of [`to_row`] and [`to_named_row`]: `prefix` names what
/// it is given (when `named`; [`to_row`] builds no name).
struct Namer<'a> {
    out: &'a mut NamedRow,
    prefix: String,
    /// Struct fields take their bare names (at the top of a value).
    bare_fields: bool,
    /// Names of the elements of a top-level tuple (the parameters).
    elements: &'a [&'a str],
    named: bool,
}

/// A sequence, tuple or struct being named.
struct NamerCompound<'a> {
    out: &'a mut NamedRow,
    prefix: String,
    bare_fields: bool,
    elements: &'a [&'a str],
    index: usize,
    named: bool,
}

impl NamerCompound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), FlatError> {
        let i = self.index;
        self.index += 1;
        let (prefix, bare_fields) = match self.elements.get(i) {
            _ if !self.named => (String::new(), false),
            Some(name) if !name.is_empty() => ((*name).to_owned(), true),
            _ => (element_name(&self.prefix, i), false),
        };
        v.serialize(Namer {
            out: self.out,
            prefix,
            bare_fields,
            elements: &[],
            named: self.named,
        })
    }
}

macro_rules! name_number {
    ($($name:ident: $ty:ty),*) => {
        $(fn $name(self, v: $ty) -> Result<(), FlatError> {
            self.out.values.push(v as f64);
            if self.named {
                self.out.names.push(self.prefix);
            }
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for Namer<'a> {
    type Ok = ();
    type Error = FlatError;
    type SerializeSeq = NamerCompound<'a>;
    type SerializeTuple = NamerCompound<'a>;
    type SerializeTupleStruct = NamerCompound<'a>;
    type SerializeTupleVariant = ser::Impossible<(), FlatError>;
    type SerializeMap = ser::Impossible<(), FlatError>;
    type SerializeStruct = NamerCompound<'a>;
    type SerializeStructVariant = ser::Impossible<(), FlatError>;

    name_number!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_f32: f32, serialize_f64: f64);

    fn serialize_bool(self, v: bool) -> Result<(), FlatError> {
        self.serialize_f64(if v { 1.0 } else { 0.0 })
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
    fn serialize_seq(self, _: Option<usize>) -> Result<NamerCompound<'a>, FlatError> {
        Ok(self.compound())
    }
    fn serialize_tuple(self, _: usize) -> Result<NamerCompound<'a>, FlatError> {
        Ok(self.compound())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<NamerCompound<'a>, FlatError> {
        Ok(self.compound())
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
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<NamerCompound<'a>, FlatError> {
        Ok(self.compound())
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

impl<'a> Namer<'a> {
    fn compound(self) -> NamerCompound<'a> {
        NamerCompound {
            out: self.out,
            prefix: self.prefix,
            bare_fields: self.bare_fields,
            elements: self.elements,
            index: 0,
            named: self.named,
        }
    }
}

macro_rules! named_seq_impl {
    ($($tr:ident :: $method:ident),*) => {
        $(impl ser::$tr for NamerCompound<'_> {
            type Ok = ();
            type Error = FlatError;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), FlatError> {
                self.element(v)
            }
            fn end(self) -> Result<(), FlatError> {
                Ok(())
            }
        })*
    };
}
named_seq_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

impl ser::SerializeStruct for NamerCompound<'_> {
    type Ok = ();
    type Error = FlatError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        field: &'static str,
        v: &T,
    ) -> Result<(), FlatError> {
        let prefix = if !self.named {
            String::new()
        } else if self.bare_fields {
            field.to_owned()
        } else {
            format!("{}.{field}", self.prefix)
        };
        v.serialize(Namer {
            out: self.out,
            prefix,
            bare_fields: false,
            elements: &[],
            named: self.named,
        })
    }
    fn end(self) -> Result<(), FlatError> {
        Ok(())
    }
}

struct Reader<'r> {
    row: &'r [f64],
    at: usize,
    /// Every number is zero and a vector is refused ([`zero_value`]).
    zeros: bool,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<f64, FlatError> {
        if self.zeros {
            self.at += 1;
            return Ok(0.0);
        }
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
        if self.zeros {
            return Err(FlatError(
                "a vector has no fixed length, so its number of columns is unknown".to_owned(),
            ));
        }
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

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Outer {
        inner: Inner,
        grid: [[f64; 2]; 2],
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        a: f64,
    }

    #[test]
    fn names_follow_the_shape() {
        let outer = Outer {
            inner: Inner { a: 1.0 },
            grid: [[2.0, 3.0], [4.0, 5.0]],
        };
        let row = to_named_row(&outer, "y", &[]).expect("named");
        assert_eq!(
            row.names,
            ["inner.a", "grid0_0", "grid0_1", "grid1_0", "grid1_1"]
        );
        assert_eq!(row.values, to_row(&outer).expect("flat"));
        let row = to_named_row(&[[1.0_f64; 2]; 2], "y", &[]).expect("named");
        assert_eq!(row.names, ["y0_0", "y0_1", "y1_0", "y1_1"]);
        // An unnamed parameter (a pattern) falls back to its position.
        let row = to_named_row(
            &(1.0_f64, 2.0_f64, Inner { a: 3.0 }),
            "x",
            &["load", "", "p"],
        )
        .expect("named");
        assert_eq!(row.names, ["load", "x1", "a"]);
        let zero: Outer = zero_value().expect("fixed shape");
        assert_eq!(to_row(&zero).expect("flat"), vec![0.0; 5]);
        assert!(zero_value::<Vec<f64>>().is_err());
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
