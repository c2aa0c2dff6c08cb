//! Values bound to statements and read from rows, the same on both backends.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};

/// A parameter or column value. On PostgreSQL, `Int` binds to `BIGINT` (also `INTEGER` and
/// `SMALLINT` when it fits), `Real` to `DOUBLE PRECISION`, `Text` to `TEXT`, `Bytes` to
/// `BYTEA`, `Bool` to `BOOLEAN`; `Null` to anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A boolean (SQLite stores 0 or 1).
    Bool(bool),
}

impl Value {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Bool(_) => "boolean",
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v.into())
            }
        }
    )*};
}
value_from!(i64 => Int, i32 => Int, u32 => Int, i16 => Int, u8 => Int, f64 => Real,
    bool => Bool, String => Text, Vec<u8> => Bytes);

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a parameter list: `params![id, name, None::<i64>]`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::Value] };
    ($($p:expr),+ $(,)?) => { &[$($crate::Value::from($p)),+] as &[$crate::Value] };
}

/// A result row, read by column name only (a column's position is not part of the API, so
/// reordering a `SELECT` list cannot silently swap values).
#[derive(Debug, Clone)]
pub struct Row {
    pub(crate) columns: Arc<Columns>,
    pub(crate) values: Vec<Value>,
}

/// Column names of a result, shared by its rows.
#[derive(Debug)]
pub(crate) struct Columns {
    index: HashMap<String, usize>,
}

impl Columns {
    pub(crate) fn new(names: impl IntoIterator<Item = String>) -> Columns {
        let mut index = HashMap::new();
        for (i, name) in names.into_iter().enumerate() {
            // The first of two equal names wins, as in most drivers.
            index.entry(name).or_insert(i);
        }
        Columns { index }
    }
}

impl Row {
    /// The value of column `name`, converted.
    ///
    /// # Errors
    /// [`Error::NoSuchColumn`], or [`Error::WrongType`] when it cannot convert (a NULL
    /// read into anything but an `Option`, an integer out of range, …).
    pub fn get<T: FromValue>(&self, name: &str) -> Result<T> {
        let value = self.value(name)?;
        T::from_value(value).ok_or_else(|| Error::WrongType {
            column: name.to_owned(),
            expected: T::EXPECTED,
            found: value.type_name(),
        })
    }

    /// The raw value of column `name`.
    ///
    /// # Errors
    /// [`Error::NoSuchColumn`].
    pub fn value(&self, name: &str) -> Result<&Value> {
        self.columns
            .index
            .get(name)
            .and_then(|&i| self.values.get(i))
            .ok_or_else(|| Error::NoSuchColumn(name.to_owned()))
    }
}

/// A Rust type a column converts into.
pub trait FromValue: Sized {
    /// What the caller asked for, for error messages.
    const EXPECTED: &'static str;
    /// The conversion; `None` when the value does not fit.
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    const EXPECTED: &'static str = "integer";
    fn from_value(value: &Value) -> Option<i64> {
        match value {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}

macro_rules! from_value_int {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            const EXPECTED: &'static str = stringify!($t);
            fn from_value(value: &Value) -> Option<$t> {
                match value {
                    Value::Int(v) => <$t>::try_from(*v).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
from_value_int!(i32, u32, u64, usize, i16, u16, u8);

impl FromValue for f64 {
    const EXPECTED: &'static str = "real";
    fn from_value(value: &Value) -> Option<f64> {
        match value {
            Value::Real(v) => Some(*v),
            // SQLite may hand back an integral REAL as an integer; exact only below 2^53.
            Value::Int(v) if v.unsigned_abs() <= 1 << 53 => Some(*v as f64),
            _ => None,
        }
    }
}

impl FromValue for bool {
    const EXPECTED: &'static str = "boolean";
    fn from_value(value: &Value) -> Option<bool> {
        match value {
            Value::Bool(v) => Some(*v),
            Value::Int(0) => Some(false),
            Value::Int(1) => Some(true),
            _ => None,
        }
    }
}

impl FromValue for String {
    const EXPECTED: &'static str = "text";
    fn from_value(value: &Value) -> Option<String> {
        match value {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    const EXPECTED: &'static str = "bytes";
    fn from_value(value: &Value) -> Option<Vec<u8>> {
        match value {
            Value::Bytes(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl FromValue for Value {
    const EXPECTED: &'static str = "any value";
    fn from_value(value: &Value) -> Option<Value> {
        Some(value.clone())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(value: &Value) -> Option<Option<T>> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}
