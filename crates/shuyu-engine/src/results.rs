//! Staged results as reviewers and exports see them: the gate's hidden columns removed,
//! rendered as Arrow IPC (for review) or as the exported Parquet or CSV file; and one
//! recipient's copy of a data product (R23, R24): count cells rounded, pseudonyms re-keyed
//! for the recipient, rows in an order keyed by the copy's fingerprint, the fingerprint in
//! the file's metadata; and leaked copies read back for tracing.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow::ipc::writer::StreamWriter;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use shuyu_policy::Classification;
use shuyu_vault::SecretKey;

use crate::disclosure::is_hidden;
use crate::error::EngineError;
use crate::lineage::OutputColumn;

/// The key under which a product copy's fingerprint is kept: in the Arrow schema metadata of
/// its batches (and so of a Flight stream) and in the Parquet file's key-value metadata.
const FINGERPRINT_KEY: &str = "shuyu.fingerprint";

/// Most rows a leaked file may have to be read for tracing.
const MAX_TRACE_ROWS: usize = 2_000_000;

fn internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

/// Export file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Plain Parquet (the package itself is signed; at rest it is sealed).
    Parquet,
    /// CSV with a header row.
    Csv,
}

impl ExportFormat {
    /// File name inside the package.
    pub fn file_name(&self) -> &'static str {
        match self {
            ExportFormat::Parquet => "result.parquet",
            ExportFormat::Csv => "result.csv",
        }
    }
}

/// A staged result without its hidden columns.
#[derive(Debug, Clone)]
pub struct ResultData {
    /// Visible batches.
    pub batches: Vec<RecordBatch>,
}

/// Removes the gate's hidden columns.
///
/// # Errors
/// On internal failures.
pub fn read_result(batches: Vec<RecordBatch>) -> Result<ResultData, EngineError> {
    let batches = batches
        .into_iter()
        .map(|batch| {
            let keep: Vec<usize> = batch
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| !is_hidden(f.name()))
                .map(|(i, _)| i)
                .collect();
            batch
                .project(&keep)
                .map_err(|e| EngineError::Internal(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok(ResultData { batches })
}

impl ResultData {
    /// Rows.
    pub fn n_rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    /// Arrow IPC stream of at most `max_rows` rows, and whether rows were cut.
    ///
    /// # Errors
    /// On internal failures.
    pub fn to_ipc(&self, max_rows: usize) -> Result<(Vec<u8>, bool), EngineError> {
        let mut out = Vec::new();
        let mut written = 0;
        let mut truncated = false;
        if let Some(first) = self.batches.first() {
            let mut writer = StreamWriter::try_new(&mut out, &first.schema())
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            for batch in &self.batches {
                let take = (max_rows - written).min(batch.num_rows());
                if take < batch.num_rows() {
                    truncated = true;
                }
                if take > 0 {
                    writer
                        .write(&batch.slice(0, take))
                        .map_err(|e| EngineError::Internal(e.to_string()))?;
                }
                written += take;
            }
            writer
                .finish()
                .map_err(|e| EngineError::Internal(e.to_string()))?;
        }
        Ok((out, truncated))
    }
}

/// One value of a cell as text, the same whether read from the product's Arrow batches, its
/// Parquet file or a CSV conversion of either: numbers in their shortest round-trip form,
/// date-times with a space, NULL and the empty string alike.
fn canonical_cell(text: Option<&str>) -> String {
    let Some(text) = text else {
        return String::new();
    };
    if let Ok(number) = text.trim().parse::<f64>()
        && number.is_finite()
    {
        return format!("{}", number + 0.0);
    }
    let bytes = text.as_bytes();
    if bytes.len() >= 19 && bytes[4] == b'-' && bytes[10] == b'T' {
        let mut out = text.replacen('T', " ", 1);
        if out.ends_with('Z') {
            out.pop();
        }
        return out;
    }
    text.to_owned()
}

fn display_column(array: &dyn Array) -> Result<Vec<Option<String>>, EngineError> {
    let options = FormatOptions::default().with_null("");
    let formatter = ArrayFormatter::try_new(array, &options).map_err(internal)?;
    Ok((0..array.len())
        .map(|i| (!array.is_null(i)).then(|| formatter.value(i).to_string()))
        .collect())
}

/// The rounded value of a count: the nearest multiple of `base`, halves up.
fn round_to(value: i64, base: i64) -> i64 {
    value
        .saturating_add(base / 2)
        .div_euclid(base)
        .saturating_mul(base)
}

/// Whether `text` is a pseudonym token of the `pseudonym` masking function: `p_` and 16 hex.
fn is_pseudonym_token(text: &str) -> bool {
    text.len() == 18
        && text.starts_with("p_")
        && text[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The pseudonym `value` re-keyed under `key`, in the same shape.
fn rekey_token(key: &SecretKey, value: &str) -> String {
    let mac = key.hmac_sha256(value.as_bytes());
    format!("p_{}", hex::encode(&mac[..8]))
}

/// A 63-bit integer pseudonym re-keyed under `key`, in the same shape as the lab's.
fn rekey_number(key: &SecretKey, value: i64) -> i64 {
    let mac = key.hmac_sha256(value.to_string().as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&mac[..8]);
    (u64::from_be_bytes(bytes) >> 1) as i64
}

/// `array` transformed as `Int64` (`f`) or as text (`g`), cast back to its own type.
fn map_column(
    array: &ArrayRef,
    as_int: impl Fn(i64) -> i64,
    as_text: Option<&dyn Fn(&str) -> String>,
) -> Result<ArrayRef, EngineError> {
    let data_type = array.data_type().clone();
    let cast = |a: &ArrayRef, to: &DataType| arrow::compute::cast(a, to).map_err(internal);
    if data_type.is_integer() {
        let ints = cast(array, &DataType::Int64)?;
        let mapped: Int64Array = ints
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map(&as_int))
            .collect();
        return cast(&(Arc::new(mapped) as ArrayRef), &data_type);
    }
    match (&data_type, as_text) {
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Some(f)) => {
            let text = cast(array, &DataType::Utf8)?;
            let mapped: StringArray = text.as_string::<i32>().iter().map(|v| v.map(f)).collect();
            cast(&(Arc::new(mapped) as ArrayRef), &data_type)
        }
        _ => Ok(Arc::clone(array)),
    }
}

impl ResultData {
    /// One batch holding every row (the schema of the first batch).
    fn concatenated(&self) -> Result<Option<RecordBatch>, EngineError> {
        let Some(first) = self.batches.first() else {
            return Ok(None);
        };
        arrow::compute::concat_batches(&first.schema(), &self.batches)
            .map(Some)
            .map_err(internal)
    }

    fn map_columns(
        self,
        mut f: impl FnMut(&str, &ArrayRef) -> Result<Option<ArrayRef>, EngineError>,
    ) -> Result<ResultData, EngineError> {
        let batches = self
            .batches
            .into_iter()
            .map(|batch| {
                let schema = batch.schema();
                let columns = schema
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(|(field, column)| {
                        Ok(f(field.name(), column)?.unwrap_or_else(|| Arc::clone(column)))
                    })
                    .collect::<Result<Vec<_>, EngineError>>()?;
                RecordBatch::try_new(schema, columns).map_err(internal)
            })
            .collect::<Result<_, _>>()?;
        Ok(ResultData { batches })
    }

    /// Rounds every count cell (an aggregated column whose only function is `count`) to the
    /// nearest multiple of `base`; a base of 0 or 1 changes nothing.
    ///
    /// # Errors
    /// On internal failures.
    pub fn round_counts(
        self,
        columns: &[OutputColumn],
        base: u64,
    ) -> Result<ResultData, EngineError> {
        if base <= 1 {
            return Ok(self);
        }
        let base = i64::try_from(base).map_err(internal)?;
        let counts: Vec<&str> = columns
            .iter()
            .filter(|c| c.aggregated && c.functions == ["count"])
            .map(|c| c.name.as_str())
            .collect();
        self.map_columns(|name, column| {
            if !counts.contains(&name) {
                return Ok(None);
            }
            map_column(column, |v| round_to(v, base), None).map(Some)
        })
    }

    /// Replaces every pseudonym in the columns that carry a pseudonymised direct identifier
    /// (lineage: direct identifier, masked, not aggregated) by a keyed hash of it under
    /// `recipient_key`, in the same type and shape (`p_` and 16 hex, or a 63-bit integer),
    /// so that two recipients cannot join their copies on it. Other values (partial masks)
    /// stay as they are.
    ///
    /// # Errors
    /// On internal failures.
    pub fn rekey_pseudonyms(
        self,
        columns: &[OutputColumn],
        recipient_key: &SecretKey,
    ) -> Result<ResultData, EngineError> {
        let rekeyed: Vec<&str> = columns
            .iter()
            .filter(|c| {
                c.classification == Classification::DirectIdentifier && c.masked && !c.aggregated
            })
            .map(|c| c.name.as_str())
            .collect();
        let text = |v: &str| {
            if is_pseudonym_token(v) {
                rekey_token(recipient_key, v)
            } else {
                v.to_owned()
            }
        };
        self.map_columns(|name, column| {
            if !rekeyed.contains(&name) {
                return Ok(None);
            }
            map_column(column, |v| rekey_number(recipient_key, v), Some(&text)).map(Some)
        })
    }

    /// The names of the columns [`ResultData::rekey_pseudonyms`] re-keys.
    pub fn rekeyed_columns(columns: &[OutputColumn]) -> Vec<String> {
        columns
            .iter()
            .filter(|c| {
                c.classification == Classification::DirectIdentifier && c.masked && !c.aggregated
            })
            .map(|c| c.name.clone())
            .collect()
    }

    /// Each row as canonical bytes: the columns in name order, each name with its value's
    /// canonical text. The same rows give the same keys whether they come from the product's
    /// batches, its Parquet file, or a CSV or Parquet rewrite of it.
    ///
    /// # Errors
    /// On internal failures.
    pub fn row_keys(&self) -> Result<Vec<Vec<u8>>, EngineError> {
        let Some(batch) = self.concatenated()? else {
            return Ok(Vec::new());
        };
        batch_row_keys(&batch)
    }

    /// Hex SHA-256 of the multiset of rows (order-free): equal for two copies with the same
    /// rows in any order.
    ///
    /// # Errors
    /// On internal failures.
    pub fn rows_digest(&self) -> Result<String, EngineError> {
        let mut hashes: Vec<String> = self
            .row_keys()?
            .iter()
            .map(|k| shuyu_vault::sha256_hex(k))
            .collect();
        hashes.sort_unstable();
        Ok(shuyu_vault::sha256_hex(hashes.concat().as_bytes()))
    }

    /// The rows in the order of their keyed hash under `order_key` (a key derived from the
    /// copy's fingerprint): the same rows and values, in an order only that key produces.
    /// The mark survives the loss of metadata and conversion between Parquet and CSV.
    ///
    /// # Errors
    /// On internal failures.
    pub fn order_by_key(self, order_key: &SecretKey) -> Result<ResultData, EngineError> {
        let Some(batch) = self.concatenated()? else {
            return Ok(self);
        };
        let keys = self.row_keys()?;
        let mut rows: Vec<([u8; 32], u32)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (order_key.hmac_sha256(k), i as u32))
            .collect();
        rows.sort_unstable();
        let indices = arrow::array::UInt32Array::from_iter_values(rows.into_iter().map(|(_, i)| i));
        let batch = arrow::compute::take_record_batch(&batch, &indices).map_err(internal)?;
        Ok(ResultData {
            batches: vec![batch],
        })
    }

    /// Whether the rows are in the order [`ResultData::order_by_key`] gives under
    /// `order_key`.
    ///
    /// # Errors
    /// On internal failures.
    pub fn is_ordered_by_key(&self, order_key: &SecretKey) -> Result<bool, EngineError> {
        let macs: Vec<[u8; 32]> = self
            .row_keys()?
            .iter()
            .map(|k| order_key.hmac_sha256(k))
            .collect();
        Ok(macs.windows(2).all(|w| w[0] <= w[1]))
    }

    /// The batches with `fingerprint` in their schema metadata
    /// ([`render_export_file`] writes it into a Parquet file's key-value metadata too).
    ///
    /// # Errors
    /// On internal failures.
    pub fn with_fingerprint(self, fingerprint: &str) -> Result<ResultData, EngineError> {
        let batches = self
            .batches
            .into_iter()
            .map(|batch| {
                let mut metadata = batch.schema().metadata().clone();
                metadata.insert(FINGERPRINT_KEY.to_owned(), fingerprint.to_owned());
                let schema = Arc::new(batch.schema().as_ref().clone().with_metadata(metadata));
                batch.with_schema(schema).map_err(internal)
            })
            .collect::<Result<_, _>>()?;
        Ok(ResultData { batches })
    }

    /// The fingerprint in the schema metadata, if any.
    pub fn fingerprint(&self) -> Option<String> {
        self.batches
            .first()
            .and_then(|b| b.schema().metadata().get(FINGERPRINT_KEY).cloned())
    }

    /// Reads an exported file of unknown provenance (a leaked copy): Parquet (by its magic
    /// bytes, with the fingerprint of its key-value metadata if present) or CSV with a
    /// header row (every column read as text).
    ///
    /// # Errors
    /// [`EngineError::InvalidInput`] if it is neither, or has more rows than can be traced.
    pub fn from_export_file(bytes: &[u8]) -> Result<ResultData, EngineError> {
        let invalid = |what: &str| EngineError::InvalidInput(what.to_owned());
        let (batches, fingerprint) = if bytes.len() >= 8
            && bytes.starts_with(b"PAR1")
            && bytes.ends_with(b"PAR1")
        {
            let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::copy_from_slice(bytes),
            )
            .map_err(|_| invalid("the file is not a readable Parquet file"))?;
            let fingerprint = builder
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .and_then(|kv| kv.iter().find(|e| e.key == FINGERPRINT_KEY))
                .and_then(|e| e.value.clone())
                .or_else(|| builder.schema().metadata().get(FINGERPRINT_KEY).cloned());
            let reader = builder
                .build()
                .map_err(|_| invalid("the file is not a readable Parquet file"))?;
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid("the Parquet file's data does not decode"))?;
            (batches, fingerprint)
        } else {
            let format = arrow::csv::reader::Format::default().with_header(true);
            let (inferred, _) = format
                .infer_schema(std::io::Cursor::new(bytes), Some(1))
                .map_err(|_| invalid("the file is neither Parquet nor CSV with a header row"))?;
            let text_schema = Arc::new(Schema::new(
                inferred
                    .fields()
                    .iter()
                    .map(|f| Field::new(f.name(), DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            ));
            let reader = arrow::csv::ReaderBuilder::new(text_schema)
                .with_header(true)
                .build(std::io::Cursor::new(bytes))
                .map_err(|_| invalid("the file is neither Parquet nor CSV with a header row"))?;
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid("the CSV file does not parse (ragged or malformed rows)"))?;
            (batches, None)
        };
        let data = ResultData { batches };
        if data.n_rows() > MAX_TRACE_ROWS as u64 {
            return Err(EngineError::InvalidInput(format!(
                "the file has more than {MAX_TRACE_ROWS} rows"
            )));
        }
        match fingerprint {
            Some(fp) => data.with_fingerprint(&fp),
            None => Ok(data),
        }
    }
}

/// [`ResultData::row_keys`] of one batch: a row's key does not depend on the batch it is in.
pub(crate) fn batch_row_keys(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, EngineError> {
    let schema = batch.schema();
    let mut order: Vec<usize> = (0..batch.num_columns()).collect();
    order.sort_by(|a, b| schema.field(*a).name().cmp(schema.field(*b).name()));
    let cells = order
        .iter()
        .map(|&i| display_column(batch.column(i).as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            let mut key = Vec::new();
            for (&i, column) in order.iter().zip(&cells) {
                key.extend_from_slice(schema.field(i).name().as_bytes());
                key.push(0x1f);
                key.extend_from_slice(canonical_cell(column[row].as_deref()).as_bytes());
                key.push(0x1e);
            }
            key
        })
        .collect())
}

/// `schema` with `fingerprint` in its metadata (as [`ResultData::with_fingerprint`] sets it).
pub(crate) fn with_fingerprint_schema(
    schema: &arrow::datatypes::SchemaRef,
    fingerprint: &str,
) -> arrow::datatypes::SchemaRef {
    let mut metadata = schema.metadata().clone();
    metadata.insert(FINGERPRINT_KEY.to_owned(), fingerprint.to_owned());
    Arc::new(schema.as_ref().clone().with_metadata(metadata))
}

/// Parquet writer properties of a product copy: its fingerprint in the file's key-value
/// metadata, row groups of at most `max_row_group_rows` rows.
pub(crate) fn product_writer_properties(
    fingerprint: &str,
    max_row_group_rows: usize,
) -> WriterProperties {
    WriterProperties::builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            FINGERPRINT_KEY.to_owned(),
            fingerprint.to_owned(),
        )]))
        .set_max_row_group_row_count(Some(max_row_group_rows.max(1)))
        .build()
}

/// Renders the approved result as the export file.
///
/// # Errors
/// On internal failures.
pub fn render_export_file(data: &ResultData, format: ExportFormat) -> Result<Vec<u8>, EngineError> {
    let err = |e: &dyn std::fmt::Display| EngineError::Internal(e.to_string());
    let mut out = Vec::new();
    match format {
        ExportFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in &data.batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
        }
        ExportFormat::Parquet => {
            let Some(first) = data.batches.first() else {
                return Ok(out);
            };
            // A product copy's fingerprint goes into the file's key-value metadata.
            let metadata: HashMap<String, String> = first.schema().metadata().clone();
            let properties = metadata.get(FINGERPRINT_KEY).map(|fp| {
                WriterProperties::builder()
                    .set_key_value_metadata(Some(vec![KeyValue::new(
                        FINGERPRINT_KEY.to_owned(),
                        fp.clone(),
                    )]))
                    .build()
            });
            let mut writer =
                ArrowWriter::try_new(&mut out, first.schema(), properties).map_err(|e| err(&e))?;
            for batch in &data.batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
            writer.close().map_err(|e| err(&e))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use arrow::array::Float64Array;
    use shuyu_policy::MaskingRule;

    use super::*;

    fn lineage(
        name: &str,
        classification: Classification,
        aggregated: bool,
        masked: bool,
        functions: &[&str],
    ) -> OutputColumn {
        OutputColumn {
            name: name.into(),
            data_type: "Int64".into(),
            sources: Vec::new(),
            classification,
            aggregated,
            masked,
            bare: false,
            per_unit: false,
            preview_rule: MaskingRule::Keep,
            functions: functions.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    fn columns() -> Vec<OutputColumn> {
        vec![
            lineage("district", Classification::Ordinary, false, false, &[]),
            lineage("person", Classification::DirectIdentifier, false, true, &[]),
            lineage("n", Classification::Ordinary, true, false, &["count"]),
            lineage("total", Classification::Sensitive, true, false, &["sum"]),
            lineage("cost", Classification::Sensitive, false, false, &[]),
        ]
    }

    /// `n_rows` rows: a district, a pseudonym (one row a partial mask), a count, a sum of
    /// counts and a float.
    fn data(n_rows: usize) -> ResultData {
        let schema = Arc::new(Schema::new(vec![
            Field::new("district", DataType::Utf8, true),
            Field::new("person", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("total", DataType::Int64, false),
            Field::new("cost", DataType::Float64, true),
        ]));
        let person = (0..n_rows).map(|i| {
            Some(if i == 0 {
                "3302**********1236".to_owned()
            } else {
                format!("p_{:016x}", i * 7919)
            })
        });
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter(
                    (0..n_rows).map(|i| Some(format!("区{}", i % 3))),
                )),
                Arc::new(StringArray::from_iter(person)),
                Arc::new(Int64Array::from_iter_values((0..n_rows).map(|i| i as i64))),
                Arc::new(Int64Array::from_iter_values(
                    (0..n_rows).map(|i| i as i64 + 1),
                )),
                Arc::new(Float64Array::from_iter(
                    (0..n_rows).map(|i| (i % 4 != 3).then_some(i as f64 + 0.5)),
                )),
            ],
        )
        .unwrap();
        // Two batches, as a staged result usually has.
        ResultData {
            batches: vec![
                batch.slice(0, n_rows / 2),
                batch.slice(n_rows / 2, n_rows - n_rows / 2),
            ],
        }
    }

    fn ints(data: &ResultData, column: &str) -> Vec<i64> {
        data.batches
            .iter()
            .flat_map(|b| {
                b.column_by_name(column)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    fn texts(data: &ResultData, column: &str) -> Vec<String> {
        data.batches
            .iter()
            .flat_map(|b| {
                let array =
                    arrow::compute::cast(b.column_by_name(column).unwrap(), &DataType::Utf8)
                        .unwrap();
                array
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn count_cells_round_to_the_base_and_nothing_else_changes() {
        let check = |base: u64, expect: &[i64]| {
            let rounded = data(14).round_counts(&columns(), base).unwrap();
            assert_eq!(ints(&rounded, "n"), expect, "base {base}");
            // A sum is not a count; other columns are untouched.
            assert_eq!(ints(&rounded, "total"), (1..=14).collect::<Vec<_>>());
            assert_eq!(texts(&rounded, "person"), texts(&data(14), "person"));
        };
        check(5, &[0, 0, 0, 5, 5, 5, 5, 5, 10, 10, 10, 10, 10, 15]);
        check(10, &[0, 0, 0, 0, 0, 10, 10, 10, 10, 10, 10, 10, 10, 10]);
        check(1, &(0..14).collect::<Vec<_>>());
        check(0, &(0..14).collect::<Vec<_>>());
        assert_eq!(round_to(i64::MAX, 5) % 5, 0);
    }

    #[test]
    fn pseudonyms_are_rekeyed_per_recipient_in_the_same_shape() {
        let (alice, bob) = (SecretKey::generate(), SecretKey::generate());
        let original = data(40);
        let a = data(40).rekey_pseudonyms(&columns(), &alice).unwrap();
        let b = data(40).rekey_pseudonyms(&columns(), &bob).unwrap();
        let (pa, pb, po) = (
            texts(&a, "person"),
            texts(&b, "person"),
            texts(&original, "person"),
        );
        // The partial mask is not a pseudonym and stays; every token changes shape-preserving.
        assert_eq!(pa[0], po[0]);
        assert_eq!(pb[0], po[0]);
        let tokens = |v: &[String]| {
            v[1..]
                .iter()
                .cloned()
                .collect::<std::collections::HashSet<_>>()
        };
        assert!(tokens(&pa).iter().all(|t| is_pseudonym_token(t)));
        assert!(tokens(&pa).is_disjoint(&tokens(&pb)));
        assert!(tokens(&pa).is_disjoint(&tokens(&po)));
        assert_eq!(
            tokens(&pa).len(),
            39,
            "re-keying keeps distinct values distinct"
        );
        // Deterministic per recipient; other columns identical.
        assert_eq!(
            texts(
                &data(40).rekey_pseudonyms(&columns(), &alice).unwrap(),
                "person"
            ),
            pa
        );
        for column in ["district", "n", "total", "cost"] {
            assert_eq!(texts(&a, column), texts(&b, column), "{column}");
        }
        assert_eq!(ResultData::rekeyed_columns(&columns()), ["person"]);
        // Integer pseudonyms keep their type.
        let ints_only = ResultData {
            batches: vec![
                RecordBatch::try_new(
                    Arc::new(Schema::new(vec![Field::new(
                        "person",
                        DataType::Int64,
                        true,
                    )])),
                    vec![Arc::new(Int64Array::from(vec![Some(5), None]))],
                )
                .unwrap(),
            ],
        };
        let rekeyed = ints_only.rekey_pseudonyms(&columns(), &alice).unwrap();
        let column = rekeyed.batches[0].column(0).as_primitive::<Int64Type>();
        assert!(column.value(0) >= 0 && column.value(0) != 5);
        assert!(column.is_null(1));
    }

    #[test]
    fn the_keyed_order_survives_csv_and_metadata_free_parquet() {
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let product = data(50)
            .order_by_key(&key)
            .unwrap()
            .with_fingerprint("f00d")
            .unwrap();
        // Same rows, new order.
        assert_eq!(
            product.rows_digest().unwrap(),
            data(50).rows_digest().unwrap()
        );
        assert_ne!(product.row_keys().unwrap(), data(50).row_keys().unwrap());
        assert!(product.is_ordered_by_key(&key).unwrap());
        assert!(!product.is_ordered_by_key(&other).unwrap());
        assert!(!data(50).is_ordered_by_key(&key).unwrap());

        // The Parquet file carries the fingerprint in its key-value metadata.
        let parquet = render_export_file(&product, ExportFormat::Parquet).unwrap();
        let read = ResultData::from_export_file(&parquet).unwrap();
        assert_eq!(read.fingerprint().as_deref(), Some("f00d"));
        assert_eq!(read.row_keys().unwrap(), product.row_keys().unwrap());

        // Stripped of metadata, or converted to CSV, the order still identifies the key.
        let stripped = ResultData {
            batches: product
                .batches
                .iter()
                .map(|b| {
                    let schema =
                        Arc::new(b.schema().as_ref().clone().with_metadata(HashMap::new()));
                    RecordBatch::try_new(schema, b.columns().to_vec()).unwrap()
                })
                .collect(),
        };
        let bare = render_export_file(&stripped, ExportFormat::Parquet).unwrap();
        let csv = render_export_file(&product, ExportFormat::Csv).unwrap();
        for file in [bare, csv] {
            let leaked = ResultData::from_export_file(&file).unwrap();
            assert_eq!(leaked.fingerprint(), None);
            assert_eq!(leaked.n_rows(), 50);
            assert_eq!(
                leaked.rows_digest().unwrap(),
                product.rows_digest().unwrap()
            );
            assert!(leaked.is_ordered_by_key(&key).unwrap());
            assert!(!leaked.is_ordered_by_key(&other).unwrap());
        }
        // A file that claims to be Parquet but is not is refused as input, not an internal
        // failure.
        assert!(matches!(
            ResultData::from_export_file(b"PAR1 truncated PAR1"),
            Err(EngineError::InvalidInput(_))
        ));
    }

    #[test]
    fn canonical_cells_agree_across_renderings() {
        for (a, b) in [
            ("12", "12.0"),
            ("100.5", "1.005e2"),
            ("2024-01-02T03:04:05", "2024-01-02 03:04:05"),
        ] {
            assert_eq!(canonical_cell(Some(a)), canonical_cell(Some(b)), "{a} {b}");
        }
        assert_eq!(canonical_cell(None), canonical_cell(Some("")));
        assert_ne!(canonical_cell(Some("a")), canonical_cell(Some("b")));
    }
}
