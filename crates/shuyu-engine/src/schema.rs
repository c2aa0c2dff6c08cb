//! Column and table descriptions as the catalog declares them, and their Arrow types.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use shuyu_policy::{Classification, MaskingRule};

use crate::error::EngineError;

/// The column types a steward can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// Calendar date (`YYYY-MM-DD`).
    Date,
    /// `true` / `false`.
    Bool,
}

impl ColumnType {
    /// The canonical text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Date => "date",
            ColumnType::Bool => "bool",
        }
    }

    /// The Arrow type datasets of this column type are stored as.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Bool => DataType::Boolean,
        }
    }

    /// The declared type closest to an Arrow type, if any (used for job result columns).
    pub fn from_arrow(data_type: &DataType) -> Option<ColumnType> {
        match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(ColumnType::String),
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => Some(ColumnType::Int64),
            DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..) => Some(ColumnType::Float64),
            DataType::Date32 | DataType::Date64 => Some(ColumnType::Date),
            DataType::Boolean => Some(ColumnType::Bool),
            _ => None,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ColumnType {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "string" | "utf8" | "text" => Ok(ColumnType::String),
            "int64" | "bigint" | "int" | "integer" => Ok(ColumnType::Int64),
            "float64" | "double" | "float" => Ok(ColumnType::Float64),
            "date" => Ok(ColumnType::Date),
            "bool" | "boolean" => Ok(ColumnType::Bool),
            other => Err(EngineError::InvalidInput(format!(
                "unknown column type '{}': expected string, int64, float64, date or bool",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// One declared column of a dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Declared type.
    #[serde(with = "crate::worker::text")]
    pub data_type: ColumnType,
    /// Classification (R14).
    #[serde(with = "crate::worker::text")]
    pub classification: Classification,
    /// Masking rule applied to samples and previews (R15, R16).
    #[serde(with = "crate::worker::text")]
    pub masking: MaskingRule,
}

/// A dataset as a job or a sample sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TableSpec {
    /// The SQL name engineers use (the dataset's name).
    pub name: String,
    /// Catalog id.
    pub dataset_id: String,
    /// Object path prefix under the storage root, e.g. `datasets/<id>/`.
    pub location: String,
    /// Declared columns, in file order.
    pub columns: Vec<ColumnSpec>,
    /// The column naming the person or organisation each row is about (the dataset's first
    /// direct identifier), counted by the export gate. It may be absent from `columns` (a
    /// scenario that does not list it): jobs then cannot read it, only the gate counts it.
    #[serde(default)]
    pub privacy_unit: Option<ColumnSpec>,
}

impl TableSpec {
    /// The Arrow schema of the stored files.
    pub fn arrow_schema(&self) -> SchemaRef {
        arrow_schema(&self.columns)
    }

    /// The privacy unit of a dataset with `columns`: its first direct-identifier column
    /// masked as an identifier number (`pseudonym`, `partial_id`), else its first direct
    /// identifier. A name shared by two people counts them as one unit, which only makes
    /// the gate stricter.
    pub fn privacy_unit_of(columns: &[ColumnSpec]) -> Option<ColumnSpec> {
        let direct = || {
            columns
                .iter()
                .filter(|c| c.classification == Classification::DirectIdentifier)
        };
        direct()
            .find(|c| {
                matches!(
                    c.masking,
                    MaskingRule::Pseudonym | MaskingRule::PartialIdNumber
                )
            })
            .or_else(|| direct().next())
            .cloned()
    }
}

/// The Arrow schema a job's scan reads declared columns as: strings as `Utf8View`, which the
/// Parquet reader fills without copying each value into one buffer, and which DataFusion's
/// grouping, filtering and joins handle faster (DataFusion's own
/// `schema_force_view_types`, on by default for inferred schemas). A job's output is cast
/// back to the declared types before it is stored.
pub fn scan_schema(columns: &[ColumnSpec]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                let data_type = match c.data_type.arrow_type() {
                    DataType::Utf8 => DataType::Utf8View,
                    other => other,
                };
                Field::new(&c.name, data_type, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// The Arrow schema for declared columns (all nullable).
pub fn arrow_schema(columns: &[ColumnSpec]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.arrow_type(), true))
            .collect::<Vec<_>>(),
    ))
}
