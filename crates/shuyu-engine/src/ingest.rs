//! Ingest: validates CSV or Parquet input against the declared columns and stores it as
//! encrypted Parquet. Error messages name lines and columns, never values.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    RecordBatch, StringBuilder,
};
use arrow::compute::cast;
use bytes::Bytes;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::EngineError;
use crate::schema::{ColumnSpec, ColumnType, arrow_schema};

/// Input formats a steward can ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestFormat {
    /// RFC 4180 CSV with a header row naming the declared columns.
    Csv,
    /// A plaintext Parquet file whose columns match the declared ones.
    Parquet,
}

/// Limits for one ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Largest accepted CSV record, in bytes.
    pub max_row_bytes: usize,
    /// Rows per stored batch.
    pub batch_rows: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            max_row_bytes: 1 << 20,
            batch_rows: 8192,
        }
    }
}

/// What an ingest stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    /// Rows stored.
    pub n_rows: u64,
    /// Object path prefix of the stored files.
    pub location: String,
}

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");

enum ColumnBuilder {
    String(StringBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Date(Date32Builder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    fn new(data_type: ColumnType) -> Self {
        match data_type {
            ColumnType::String => ColumnBuilder::String(StringBuilder::new()),
            ColumnType::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
            ColumnType::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::new()),
            ColumnType::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
        }
    }

    /// Appends one field; `Err(())` when it does not parse as the column's type.
    fn append(&mut self, field: &str) -> Result<(), ()> {
        let field = field.trim();
        if field.is_empty() {
            match self {
                ColumnBuilder::String(b) => b.append_null(),
                ColumnBuilder::Int64(b) => b.append_null(),
                ColumnBuilder::Float64(b) => b.append_null(),
                ColumnBuilder::Date(b) => b.append_null(),
                ColumnBuilder::Bool(b) => b.append_null(),
            }
            return Ok(());
        }
        match self {
            ColumnBuilder::String(b) => b.append_value(field),
            ColumnBuilder::Int64(b) => b.append_value(field.parse().map_err(|_| ())?),
            ColumnBuilder::Float64(b) => {
                let v: f64 = field.parse().map_err(|_| ())?;
                if !v.is_finite() {
                    return Err(());
                }
                b.append_value(v)
            }
            ColumnBuilder::Date(b) => {
                let date = match iso_date(field.as_bytes()) {
                    Some(date) => date,
                    None => NaiveDate::parse_from_str(field, "%Y-%m-%d").map_err(|_| ())?,
                };
                b.append_value((date - EPOCH).num_days() as i32)
            }
            ColumnBuilder::Bool(b) => match field.to_ascii_lowercase().as_str() {
                "true" | "1" | "t" | "yes" => b.append_value(true),
                "false" | "0" | "f" | "no" => b.append_value(false),
                _ => return Err(()),
            },
        }
        Ok(())
    }

    fn len(&self) -> usize {
        match self {
            ColumnBuilder::String(b) => b.len(),
            ColumnBuilder::Int64(b) => b.len(),
            ColumnBuilder::Float64(b) => b.len(),
            ColumnBuilder::Date(b) => b.len(),
            ColumnBuilder::Bool(b) => b.len(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::String(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
        }
    }
}

/// The common `YYYY-MM-DD` form without a format parser (a valid calendar date or `None`);
/// other forms go through chrono's `%Y-%m-%d`.
fn iso_date(field: &[u8]) -> Option<NaiveDate> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *field else {
        return None;
    };
    let digit = |b: u8| b.is_ascii_digit().then(|| u32::from(b - b'0'));
    let year = digit(y0)? * 1000 + digit(y1)? * 100 + digit(y2)? * 10 + digit(y3)?;
    let month = digit(m0)? * 10 + digit(m1)?;
    let day = digit(d0)? * 10 + digit(d1)?;
    NaiveDate::from_ymd_opt(year as i32, month, day)
}

/// Validates the declared columns themselves.
///
/// # Errors
/// Empty or duplicate names, or a masking rule that the classification does not allow.
pub fn validate_columns(columns: &[ColumnSpec]) -> Result<(), EngineError> {
    if columns.is_empty() {
        return Err(EngineError::InvalidInput("no columns declared".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for column in columns {
        let name = column.name.trim();
        if name.is_empty() || name.len() > 128 || name.starts_with("__") {
            return Err(EngineError::InvalidInput(
                "column names must be 1 to 128 characters and not start with '__'".into(),
            ));
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(EngineError::InvalidInput(format!(
                "column '{name}' is declared twice"
            )));
        }
        column
            .masking
            .check_allowed_for(column.classification)
            .map_err(|e| EngineError::InvalidInput(format!("column '{name}': {e}")))?;
    }
    Ok(())
}

/// Parses and validates input into record batches of the declared schema.
///
/// # Errors
/// [`EngineError::InvalidInput`] with a message that names lines and columns, never values.
pub fn parse_input(
    format: IngestFormat,
    input: Bytes,
    columns: &[ColumnSpec],
    options: &IngestOptions,
) -> Result<Vec<RecordBatch>, EngineError> {
    validate_columns(columns)?;
    let batches = match format {
        IngestFormat::Csv => parse_csv(&input, columns, options)?,
        IngestFormat::Parquet => parse_parquet(input, columns)?,
    };
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Err(EngineError::InvalidInput(
            "the input has no data rows".into(),
        ));
    }
    Ok(batches)
}

/// CSV data larger than this is parsed in parallel chunks.
const PARALLEL_CSV_BYTES: usize = 4 << 20;

fn parse_csv(
    input: &[u8],
    columns: &[ColumnSpec],
    options: &IngestOptions,
) -> Result<Vec<RecordBatch>, EngineError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let header = reader.headers().map_err(|e| csv_error(&e))?.clone();
    if header.len() != columns.len()
        || header
            .iter()
            .zip(columns)
            .any(|(h, c)| h.trim() != c.name.trim())
    {
        return Err(EngineError::InvalidInput(format!(
            "the CSV header does not match the declared columns (expected {} columns: {})",
            columns.len(),
            columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    // The data records start where the header ends; lines are counted from the file's start.
    let data_start = (reader.position().byte() as usize).min(input.len());
    let header_lines = newlines(&input[..data_start]);
    let data = &input[data_start..];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let chunks = if data.len() >= PARALLEL_CSV_BYTES && threads > 1 {
        record_chunks(data, threads)
    } else {
        vec![data]
    };
    let parsed: Vec<Result<(Vec<RecordBatch>, u64), LineError>> = if chunks.len() == 1 {
        vec![parse_chunk(data, columns, options)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| scope.spawn(move || parse_chunk(chunk, columns, options)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(LineError {
                            line: 0,
                            what: " could not be parsed".into(),
                        })
                    })
                })
                .collect()
        })
    };
    // The first error in file order wins, with its line counted from the file's start.
    let mut lines_before = header_lines;
    let mut batches = Vec::new();
    for result in parsed {
        match result {
            Ok((chunk_batches, chunk_lines)) => {
                batches.extend(chunk_batches);
                lines_before += chunk_lines;
            }
            Err(e) => {
                return Err(EngineError::InvalidInput(format!(
                    "line {}{}",
                    lines_before + e.line,
                    e.what
                )));
            }
        }
    }
    Ok(batches)
}

/// A CSV problem at a line of a chunk; `what` follows "line N" in the message.
struct LineError {
    line: u64,
    what: String,
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Splits CSV data into about `parts` chunks, each ending at a record boundary: a newline
/// outside quotes (RFC 4180 quotes escape by doubling, so quote parity tells).
fn record_chunks(data: &[u8], parts: usize) -> Vec<&[u8]> {
    let target = data.len() / parts;
    let mut chunks = Vec::with_capacity(parts);
    let mut start = 0;
    let mut in_quotes = false;
    let has_quotes = data.contains(&b'"');
    let mut i = 0;
    while i < data.len() && chunks.len() + 1 < parts {
        let want = start + target;
        if !has_quotes {
            // No quotes at all: the next newline after the target is a boundary.
            match data[want.min(data.len())..]
                .iter()
                .position(|&b| b == b'\n')
            {
                Some(off) => {
                    let end = want + off + 1;
                    chunks.push(&data[start..end]);
                    start = end;
                    i = end;
                    continue;
                }
                None => break,
            }
        }
        match data[i] {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes && i + 1 >= want => {
                chunks.push(&data[start..=i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < data.len() || chunks.is_empty() {
        chunks.push(&data[start..]);
    }
    chunks
}

/// Parses one chunk of data records (no header) into batches; returns them and the number
/// of lines the chunk spans.
fn parse_chunk(
    chunk: &[u8],
    columns: &[ColumnSpec],
    options: &IngestOptions,
) -> Result<(Vec<RecordBatch>, u64), LineError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(chunk);
    let schema = arrow_schema(columns);
    let mut builders: Vec<ColumnBuilder> = columns
        .iter()
        .map(|c| ColumnBuilder::new(c.data_type))
        .collect();
    let mut batches = Vec::new();
    let mut record = csv::StringRecord::new();
    let at = |line: u64, what: String| LineError { line, what };
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(at(line, csv_error_kind(&e).to_owned()));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.as_slice().len() > options.max_row_bytes {
            return Err(at(
                line,
                format!(
                    " is longer than the limit of {} bytes",
                    options.max_row_bytes
                ),
            ));
        }
        if record.iter().all(|f| f.trim().is_empty()) {
            return Err(at(line, " is empty".into()));
        }
        if record.len() != columns.len() {
            return Err(at(
                line,
                format!(
                    " has {} fields but {} columns are declared",
                    record.len(),
                    columns.len()
                ),
            ));
        }
        for ((field, builder), column) in record.iter().zip(&mut builders).zip(columns) {
            builder.append(field).map_err(|()| {
                at(
                    line,
                    format!(
                        ", column '{}': the value is not a valid {}",
                        column.name, column.data_type
                    ),
                )
            })?;
        }
        if builders[0].len() >= options.batch_rows {
            batches
                .push(finish_batch(&schema, &mut builders).map_err(|e| at(0, format!(": {e}")))?);
        }
    }
    if builders[0].len() > 0 {
        batches.push(finish_batch(&schema, &mut builders).map_err(|e| at(0, format!(": {e}")))?);
    }
    Ok((batches, newlines(chunk)))
}

fn finish_batch(
    schema: &arrow::datatypes::SchemaRef,
    builders: &mut [ColumnBuilder],
) -> Result<RecordBatch, EngineError> {
    let arrays = builders.iter_mut().map(ColumnBuilder::finish).collect();
    RecordBatch::try_new(Arc::clone(schema), arrays)
        .map_err(|e| EngineError::Internal(format!("building a batch: {e}")))
}

fn csv_error(e: &csv::Error) -> EngineError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    EngineError::InvalidInput(format!("line {line}{}", csv_error_kind(e)))
}

fn csv_error_kind(e: &csv::Error) -> &'static str {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => " is not valid UTF-8",
        csv::ErrorKind::UnequalLengths { .. } => " has the wrong number of fields",
        _ => " is not valid CSV",
    }
}

fn parse_parquet(input: Bytes, columns: &[ColumnSpec]) -> Result<Vec<RecordBatch>, EngineError> {
    let not_parquet = || EngineError::InvalidInput("the input is not a valid Parquet file".into());
    let builder = ParquetRecordBatchReaderBuilder::try_new(input).map_err(|_| not_parquet())?;
    let file_schema = builder.schema().clone();
    let names: Vec<&str> = file_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    if names.len() != columns.len() || names.iter().zip(columns).any(|(n, c)| *n != c.name) {
        return Err(EngineError::InvalidInput(format!(
            "the Parquet columns ({}) do not match the declared columns ({})",
            names.join(", "),
            columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (field, column) in file_schema.fields().iter().zip(columns) {
        if ColumnType::from_arrow(field.data_type()) != Some(column.data_type) {
            return Err(EngineError::InvalidInput(format!(
                "column '{}' is stored as {} but declared as {}",
                column.name,
                field.data_type(),
                column.data_type
            )));
        }
    }
    let schema = arrow_schema(columns);
    let reader = builder.build().map_err(|_| not_parquet())?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|_| not_parquet())?;
        let arrays = batch
            .columns()
            .iter()
            .zip(columns)
            .map(|(array, column)| {
                cast(array, &column.data_type.arrow_type()).map_err(|_| {
                    EngineError::InvalidInput(format!(
                        "column '{}' cannot be converted to {}",
                        column.name, column.data_type
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        batches.push(
            RecordBatch::try_new(Arc::clone(&schema), arrays)
                .map_err(|e| EngineError::Internal(format!("building a batch: {e}")))?,
        );
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shuyu_policy::{Classification, MaskingRule};

    fn columns() -> Vec<ColumnSpec> {
        ["note", "n"]
            .iter()
            .zip([ColumnType::String, ColumnType::Int64])
            .map(|(name, data_type)| ColumnSpec {
                name: (*name).to_owned(),
                data_type,
                classification: Classification::Ordinary,
                masking: MaskingRule::Keep,
            })
            .collect()
    }

    /// A CSV past the parallel threshold whose quoted fields hold newlines and commas.
    fn big_csv(bad_line: Option<u64>) -> String {
        let mut csv = String::from("note,n\n");
        let mut line = 2u64;
        let mut i = 0u64;
        while csv.len() < PARALLEL_CSV_BYTES * 2 + 1000 {
            if Some(line) == bad_line {
                csv.push_str("x,not-a-number\n");
                line += 1;
            } else if i.is_multiple_of(7) {
                // Two lines in one record, a doubled quote and a comma inside quotes.
                csv.push_str(&format!("\"multi\nline \"\"{i}\"\", a\",{i}\n"));
                line += 2;
            } else {
                csv.push_str(&format!("plain {i},{i}\n"));
                line += 1;
            }
            i += 1;
        }
        csv
    }

    #[test]
    fn iso_dates_parse_like_chrono() {
        for text in [
            "2024-02-29",
            "2023-02-29",
            "1970-01-01",
            "0001-01-01",
            "9999-12-31",
            "2024-13-01",
            "2024-00-10",
            "2024-1-05",
            "2024/01/05",
            "20240105",
            "2024-01-5x",
        ] {
            let chrono = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
            let fast = iso_date(text.as_bytes());
            if fast.is_some() {
                assert_eq!(fast, chrono, "{text}");
            } else if text.len() == 10 && text.as_bytes()[4] == b'-' {
                assert_eq!(chrono, None, "{text}");
            }
        }
    }

    #[test]
    fn parallel_chunks_split_only_at_record_boundaries() {
        let csv = big_csv(None);
        let data = &csv.as_bytes()["note,n\n".len()..];
        let chunks = record_chunks(data, 3);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), data);
        let batches =
            parse_csv(csv.as_bytes(), &columns(), &IngestOptions::default()).expect("valid");
        let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let expected = csv.matches(",").count() - 1 - csv.matches("\", a\"").count();
        assert_eq!(n, expected);
        // Rows stay in file order across chunks.
        let mut previous = -1;
        for batch in &batches {
            let ns = batch
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            for v in ns.iter().flatten() {
                assert_eq!(v, previous + 1);
                previous = v;
            }
        }
    }

    #[test]
    fn errors_in_later_chunks_name_the_file_line_and_no_value() {
        let csv = big_csv(None);
        let total_lines = csv.matches('\n').count() as u64;
        // A bad value near the end, in the last chunk; find a line that starts a record.
        let bad = total_lines - 3;
        let csv = big_csv(Some(bad));
        let err = parse_csv(csv.as_bytes(), &columns(), &IngestOptions::default()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&format!("line {bad},")), "{message}");
        assert!(!message.contains("not-a-number"), "{message}");
    }
}
