//! Ingest: validates CSV or Parquet input against the declared columns and stores it as
//! encrypted Parquet. Error messages name lines and columns, never values.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    RecordBatch, StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use chrono::NaiveDate;
use datafusion::common::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use tokio::sync::mpsc::Receiver;

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
    /// A builder with room for `rows` values and, for strings, `string_bytes` bytes of them.
    fn with_capacity(data_type: ColumnType, rows: usize, string_bytes: usize) -> Self {
        match data_type {
            ColumnType::String => {
                ColumnBuilder::String(StringBuilder::with_capacity(rows, string_bytes))
            }
            ColumnType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(rows)),
            ColumnType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(rows)),
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(rows)),
            ColumnType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(rows)),
        }
    }

    /// Appends one field; `Err(())` when it does not parse as the column's type.
    fn append(&mut self, field: &str) -> Result<(), ()> {
        let field = trim(field);
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
                let days = match iso_date_days(field.as_bytes()) {
                    Some(days) => days,
                    None => {
                        let date = NaiveDate::parse_from_str(field, "%Y-%m-%d").map_err(|_| ())?;
                        (date - EPOCH).num_days() as i32
                    }
                };
                b.append_value(days)
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

    /// The values so far as an array; the builder starts again with room for as many rows
    /// (and string bytes) as it just held, so a batch's buffers are allocated once.
    fn finish(&mut self) -> ArrayRef {
        let rows = self.len();
        match self {
            ColumnBuilder::String(b) => {
                let array = b.finish();
                *b = StringBuilder::with_capacity(rows, array.values().len());
                Arc::new(array)
            }
            ColumnBuilder::Int64(b) => {
                let array = b.finish();
                *b = Int64Builder::with_capacity(rows);
                Arc::new(array)
            }
            ColumnBuilder::Float64(b) => {
                let array = b.finish();
                *b = Float64Builder::with_capacity(rows);
                Arc::new(array)
            }
            ColumnBuilder::Date(b) => {
                let array = b.finish();
                *b = Date32Builder::with_capacity(rows);
                Arc::new(array)
            }
            ColumnBuilder::Bool(b) => {
                let array = b.finish();
                *b = BooleanBuilder::with_capacity(rows);
                Arc::new(array)
            }
        }
    }
}

/// `str::trim`, returning at once in the common case of a field that neither starts nor
/// ends with whitespace.
fn trim(field: &str) -> &str {
    let mut chars = field.chars();
    match (chars.next(), chars.next_back()) {
        (Some(first), last) if !first.is_whitespace() && !last.is_some_and(char::is_whitespace) => {
            field
        }
        _ => field.trim(),
    }
}

/// The common `YYYY-MM-DD` form as days since 1970-01-01, without a format parser: `None`
/// unless it is a valid proleptic Gregorian date (other forms go through chrono's
/// `%Y-%m-%d`).
fn iso_date_days(field: &[u8]) -> Option<i32> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *field else {
        return None;
    };
    let digit = |b: u8| b.is_ascii_digit().then(|| u32::from(b - b'0'));
    let year = digit(y0)? * 1000 + digit(y1)? * 100 + digit(y2)? * 10 + digit(y3)?;
    let month = digit(m0)? * 10 + digit(m1)?;
    let day = digit(d0)? * 10 + digit(d1)?;
    if !shuyu_policy::calendar::is_date(i64::from(year), month, day) {
        return None;
    }
    i32::try_from(shuyu_policy::calendar::days_from_civil(
        i64::from(year),
        month,
        day,
    ))
    .ok()
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

/// CSV data larger than this is parsed in parallel chunks.
const PARALLEL_CSV_BYTES: usize = 4 << 20;

/// A CSV input whose header matched the declared columns, its data records split into
/// chunks that each end at a record boundary (one per core for a large input).
#[derive(Debug)]
pub(crate) struct CsvChunks {
    /// Lines before the first data record (the header's).
    header_lines: u64,
    /// The data records, in file order.
    pub(crate) chunks: Vec<Bytes>,
}

impl CsvChunks {
    /// Checks the header against `columns` and splits the data records.
    ///
    /// # Errors
    /// [`EngineError::InvalidInput`] for an unreadable or mismatched header.
    pub(crate) fn split(input: &Bytes, columns: &[ColumnSpec]) -> Result<CsvChunks, EngineError> {
        validate_columns(columns)?;
        let bom = if input.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let input = input.slice(bom..);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(&input[..]);
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
        // The data records start where the header ends; lines are counted from the file's
        // start.
        let data_start = (reader.position().byte() as usize).min(input.len());
        let header_lines = newlines(&input[..data_start]);
        let data = input.slice(data_start..);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let chunks = if data.len() >= PARALLEL_CSV_BYTES && threads > 1 {
            record_chunks(&data, threads)
                .into_iter()
                .map(|chunk| data.slice_ref(chunk))
                .collect()
        } else {
            vec![data]
        };
        Ok(CsvChunks {
            header_lines,
            chunks,
        })
    }

    /// The outcome of parsing every chunk (in file order, as [`parse_chunk`] returns them):
    /// the first error in file order, its line counted from the file's start (the lines of
    /// the chunks before it are counted only then).
    pub(crate) fn first_error(
        &self,
        parsed: impl IntoIterator<Item = Result<(), LineError>>,
    ) -> Result<(), EngineError> {
        for (i, result) in parsed.into_iter().enumerate() {
            if let Err(e) = result {
                let lines_before =
                    self.header_lines + self.chunks[..i].iter().map(|c| newlines(c)).sum::<u64>();
                return Err(EngineError::InvalidInput(format!(
                    "line {}{}",
                    lines_before + e.line,
                    e.what
                )));
            }
        }
        Ok(())
    }
}

/// A CSV problem at a line of a chunk; `what` follows "line N" in the message.
#[derive(Debug)]
pub(crate) struct LineError {
    line: u64,
    what: String,
}

impl LineError {
    /// A chunk whose parsing thread panicked.
    pub(crate) fn panicked() -> LineError {
        LineError {
            line: 0,
            what: " could not be parsed".into(),
        }
    }
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

/// Parses one chunk of data records (no header) into batches of `options.batch_rows` rows,
/// handing each to `emit` (which returns `false` to stop early).
pub(crate) fn parse_chunk(
    chunk: &[u8],
    columns: &[ColumnSpec],
    options: &IngestOptions,
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> Result<(), LineError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(chunk);
    let schema = arrow_schema(columns);
    let mut builders: Vec<ColumnBuilder> = columns
        .iter()
        .map(|c| ColumnBuilder::with_capacity(c.data_type, options.batch_rows, 0))
        .collect();
    let mut record = csv::ByteRecord::new();
    let at = |line: u64, what: String| LineError { line, what };
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(at(line, csv_error_kind(&e).to_owned()));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        // One UTF-8 check of the record's fields together (csv's `StringRecord` checks each
        // field of a non-ASCII record on its own); a field whose bounds split a character
        // is no field of valid UTF-8 either.
        let text = simdutf8::basic::from_utf8(record.as_slice())
            .map_err(|_| at(line, UTF8_ERROR.to_owned()))?;
        let field = |i: usize| {
            record
                .range(i)
                .and_then(|range| text.get(range))
                .ok_or_else(|| at(line, UTF8_ERROR.to_owned()))
        };
        if record.as_slice().len() > options.max_row_bytes {
            return Err(at(
                line,
                format!(
                    " is longer than the limit of {} bytes",
                    options.max_row_bytes
                ),
            ));
        }
        let mut empty = true;
        for i in 0..record.len() {
            if !trim(field(i)?).is_empty() {
                empty = false;
                break;
            }
        }
        if empty {
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
        for (i, (builder, column)) in builders.iter_mut().zip(columns).enumerate() {
            builder.append(field(i)?).map_err(|()| {
                at(
                    line,
                    format!(
                        ", column '{}': the value is not a valid {}",
                        column.name, column.data_type
                    ),
                )
            })?;
        }
        if builders[0].len() >= options.batch_rows
            && !emit(finish_batch(&schema, &mut builders).map_err(|e| at(0, format!(": {e}")))?)
        {
            return Ok(());
        }
    }
    if builders[0].len() > 0 {
        emit(finish_batch(&schema, &mut builders).map_err(|e| at(0, format!(": {e}")))?);
    }
    Ok(())
}

/// One partition of a streaming table whose batches arrive on a channel (a CSV ingest's
/// parsed batches on their way to the encrypted write); it can be executed once.
#[derive(Debug)]
pub(crate) struct ChannelPartition {
    schema: SchemaRef,
    batches: Mutex<Option<Receiver<Result<RecordBatch, DataFusionError>>>>,
}

impl ChannelPartition {
    pub(crate) fn new(
        schema: SchemaRef,
        batches: Receiver<Result<RecordBatch, DataFusionError>>,
    ) -> ChannelPartition {
        ChannelPartition {
            schema,
            batches: Mutex::new(Some(batches)),
        }
    }
}

impl PartitionStream for ChannelPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = self.batches.lock().ok().and_then(|mut b| b.take());
        let stream = match batches {
            Some(batches) => futures::stream::unfold(batches, |mut batches| async move {
                Some((batches.recv().await?, batches))
            })
            .boxed(),
            None => futures::stream::once(async {
                Err(DataFusionError::Internal(
                    "an ingest stream was executed twice".into(),
                ))
            })
            .boxed(),
        };
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        ))
    }
}

fn finish_batch(
    schema: &SchemaRef,
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

/// What follows "line N" for input that is not UTF-8.
const UTF8_ERROR: &str = " is not valid UTF-8";

fn csv_error_kind(e: &csv::Error) -> &'static str {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => UTF8_ERROR,
        csv::ErrorKind::UnequalLengths { .. } => " has the wrong number of fields",
        _ => " is not valid CSV",
    }
}

fn not_parquet() -> EngineError {
    EngineError::InvalidInput("the input is not a valid Parquet file".into())
}

/// A plaintext Parquet upload whose footer has been checked against the declared columns,
/// read a range of row groups at a time, so a large upload is never decoded whole.
///
/// The Parquet reader still panics on some damaged data pages (fuzzing found an assertion
/// in definition-level decoding, `arrow-buffer` 59.3.2 `bit_util::read_up_to_byte_from_offset`,
/// reached from `PackedDecoder::read`). Everything the reader touches is owned by the call
/// that reads and dropped while unwinding, and nothing outside it can see a half-updated
/// value, so a panic in [`ParquetUpload::open`] or [`ParquetUpload::read`] is caught and the
/// file refused like any other invalid one.
pub(crate) struct ParquetUpload {
    input: Bytes,
    metadata: ArrowReaderMetadata,
    columns: Vec<ColumnSpec>,
    schema: SchemaRef,
}

impl ParquetUpload {
    /// Checks `input`'s footer: a flat schema whose columns are `columns`, by name and
    /// type, and column chunks that lie within the file.
    pub(crate) fn open(input: Bytes, columns: &[ColumnSpec]) -> Result<ParquetUpload, EngineError> {
        guarded(|| ParquetUpload::open_unguarded(input, columns))
    }

    fn open_unguarded(input: Bytes, columns: &[ColumnSpec]) -> Result<ParquetUpload, EngineError> {
        // The Parquet reader turns the footer's schema into a tree by recursion, one level
        // per nesting level and without a limit: a crafted footer nesting groups a hundred
        // thousand deep overflows any thread's stack and aborts the whole server. Declared
        // columns are flat, so a schema is read only once the footer shows it flat.
        if !flat_parquet_schema(&input) {
            return Err(not_parquet());
        }
        let file_len = input.len() as u64;
        let metadata = ArrowReaderMetadata::load(&input, ArrowReaderOptions::new())
            .map_err(|_| not_parquet())?;
        // The reader asserts (panics) when a column chunk's offset or size is negative
        // (found by fuzzing, parquet 59.3.2 `ColumnChunkMetaData::byte_range`): every chunk
        // must lie within the file.
        let chunks_in_file = metadata
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|group| group.columns())
            .all(|chunk| {
                let start = chunk
                    .dictionary_page_offset()
                    .unwrap_or(chunk.data_page_offset());
                let (Ok(start), Ok(len), Ok(_)) = (
                    u64::try_from(start),
                    u64::try_from(chunk.compressed_size()),
                    u64::try_from(chunk.data_page_offset()),
                ) else {
                    return false;
                };
                start.checked_add(len).is_some_and(|end| end <= file_len)
            });
        if !chunks_in_file {
            return Err(not_parquet());
        }
        let file_schema = metadata.schema();
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
        Ok(ParquetUpload {
            input,
            metadata,
            columns: columns.to_vec(),
            schema: arrow_schema(columns),
        })
    }

    /// The row groups' rows as the footer states them (a crafted footer may lie: the rows
    /// stored are those [`ParquetUpload::read`] decodes).
    pub(crate) fn row_group_rows(&self) -> Vec<u64> {
        self.metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|group| u64::try_from(group.num_rows()).unwrap_or(0))
            .collect()
    }

    /// Decodes the row groups `groups`, in order, passing each batch, cast to the declared
    /// types, to `emit`; stops early (without error) when `emit` returns `false`.
    pub(crate) fn read(
        &self,
        groups: Range<usize>,
        emit: impl FnMut(RecordBatch) -> bool,
    ) -> Result<(), EngineError> {
        guarded(|| self.read_unguarded(groups, emit))
    }

    fn read_unguarded(
        &self,
        groups: Range<usize>,
        mut emit: impl FnMut(RecordBatch) -> bool,
    ) -> Result<(), EngineError> {
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.input.clone(),
            self.metadata.clone(),
        )
        .with_row_groups(groups.collect())
        .build()
        .map_err(|_| not_parquet())?;
        for batch in reader {
            let batch = batch.map_err(|_| not_parquet())?;
            let arrays = batch
                .columns()
                .iter()
                .zip(&self.columns)
                .map(|(array, column)| {
                    cast(array, &column.data_type.arrow_type()).map_err(|_| {
                        EngineError::InvalidInput(format!(
                            "column '{}' cannot be converted to {}",
                            column.name, column.data_type
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)
                .map_err(|e| EngineError::Internal(format!("building a batch: {e}")))?;
            if !emit(batch) {
                break;
            }
        }
        Ok(())
    }
}

/// Splits row groups of `rows` rows each into at most `parts` consecutive, non-empty ranges
/// of about equal rows (fewer when there are fewer groups), covering every group in order.
pub(crate) fn row_group_ranges(rows: &[u64], parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, rows.len().max(1));
    // In u128: a crafted footer may state rows that overflow a u64 sum.
    let total: u128 = rows.iter().map(|&n| u128::from(n)).sum();
    let mut ranges = Vec::with_capacity(parts);
    let (mut start, mut seen) = (0, 0u128);
    for (i, &n) in rows.iter().enumerate() {
        seen += u128::from(n);
        let left_groups = rows.len() - i - 1;
        let left_parts = parts - ranges.len() - 1;
        // A part ends once it holds its share of the rows, or when each part still to come
        // needs one of the groups left.
        let share = (total * (ranges.len() as u128 + 1)).div_ceil(parts as u128);
        if left_parts > 0 && (seen >= share || left_groups == left_parts) {
            ranges.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < rows.len() || ranges.is_empty() {
        ranges.push(start..rows.len());
    }
    ranges
}

/// `read`'s outcome, a panic of the Parquet reader refusing the file (see [`ParquetUpload`]).
fn guarded<T>(read: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
        .unwrap_or_else(|_| Err(not_parquet()))
}

/// Checks `input` as [`Engine::ingest`](crate::Engine::ingest) would, without storing
/// anything: the CSV header and every record against `columns`, or the Parquet file's
/// columns and every value. Returns the data rows. The fuzz targets drive ingest
/// validation through this.
///
/// # Errors
/// [`EngineError::InvalidInput`] for malformed input, naming lines and columns, never
/// values.
pub fn validate_input(
    format: IngestFormat,
    input: &Bytes,
    columns: &[ColumnSpec],
    options: &IngestOptions,
) -> Result<u64, EngineError> {
    match format {
        IngestFormat::Csv => {
            let split = CsvChunks::split(input, columns)?;
            let mut n_rows = 0u64;
            let parsed: Vec<Result<(), LineError>> = split
                .chunks
                .iter()
                .map(|chunk| {
                    parse_chunk(chunk, columns, options, |batch| {
                        n_rows += batch.num_rows() as u64;
                        true
                    })
                })
                .collect();
            split.first_error(parsed)?;
            Ok(n_rows)
        }
        IngestFormat::Parquet => {
            let upload = ParquetUpload::open(input.clone(), columns)?;
            let mut n_rows = 0u64;
            upload.read(0..upload.row_group_rows().len(), |batch| {
                n_rows += batch.num_rows() as u64;
                true
            })?;
            Ok(n_rows)
        }
    }
}

/// Whether `file` is a Parquet file with a plaintext footer whose schema is flat: a root
/// whose children are all leaves. Reads only the footer's Thrift (compact protocol), with
/// bounded nesting; anything unexpected is "not flat".
fn flat_parquet_schema(file: &[u8]) -> bool {
    let Some(footer) = file
        .len()
        .checked_sub(8)
        .filter(|_| file.ends_with(b"PAR1") && file.starts_with(b"PAR1"))
    else {
        return false;
    };
    let mut len = [0u8; 4];
    len.copy_from_slice(&file[footer..footer + 4]);
    let Some(start) = footer.checked_sub(u32::from_le_bytes(len) as usize) else {
        return false;
    };
    let mut thrift = CompactReader {
        bytes: &file[start..footer],
        at: 0,
    };
    thrift.flat_schema().unwrap_or(false)
}

/// Just enough of Thrift's compact protocol to read a Parquet footer's schema.
struct CompactReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Deepest nesting of structs, lists and maps skipped (the Parquet reader's own: 64).
const THRIFT_SKIP_DEPTH: u32 = 64;

impl CompactReader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A field header: (field id, type); type 0 is the struct's end.
    fn field(&mut self, last_id: i16) -> Option<(i16, u8)> {
        let header = self.byte()?;
        let kind = header & 0x0f;
        if kind == 0 {
            return Some((0, 0));
        }
        let delta = i16::from(header >> 4);
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).ok()?
        } else {
            last_id.checked_add(delta)?
        };
        Some((id, kind))
    }

    /// A list or set header: (element type, size).
    fn list(&mut self) -> Option<(u8, usize)> {
        let header = self.byte()?;
        let size = match header >> 4 {
            15 => usize::try_from(self.varint()?).ok()?,
            n => usize::from(n),
        };
        // Every element takes at least one byte.
        (size <= self.bytes.len() - self.at).then_some((header & 0x0f, size))
    }

    fn skip(&mut self, kind: u8, depth: u32) -> Option<()> {
        let depth = depth.checked_sub(1)?;
        match kind {
            1 | 2 => {}
            3 => {
                self.byte()?;
            }
            4..=6 => {
                self.varint()?;
            }
            7 => {
                self.at = self
                    .at
                    .checked_add(8)
                    .filter(|&at| at <= self.bytes.len())?;
            }
            8 => {
                let len = usize::try_from(self.varint()?).ok()?;
                self.at = self
                    .at
                    .checked_add(len)
                    .filter(|&at| at <= self.bytes.len())?;
            }
            9 | 10 => {
                let (element, size) = self.list()?;
                for _ in 0..size {
                    // Booleans in a list are one byte each.
                    if matches!(element, 1 | 2) {
                        self.byte()?;
                    } else {
                        self.skip(element, depth)?;
                    }
                }
            }
            11 => {
                let size = usize::try_from(self.varint()?).ok()?;
                if size > 0 {
                    let types = self.byte()?;
                    for _ in 0..size {
                        self.skip(types >> 4, depth)?;
                        self.skip(types & 0x0f, depth)?;
                    }
                }
            }
            12 => {
                let mut last = 0;
                loop {
                    let (id, kind) = self.field(last)?;
                    if kind == 0 {
                        break;
                    }
                    self.skip(kind, depth)?;
                    last = id;
                }
            }
            _ => return None,
        }
        Some(())
    }

    /// Reads `FileMetaData` and says whether every schema it holds (field 2, a list of
    /// `SchemaElement`) is a root with only leaf children (`num_children`, field 5, absent
    /// or 0 on every element but the first, which has one per other element).
    fn flat_schema(&mut self) -> Option<bool> {
        let mut last = 0;
        let mut schemas = 0;
        loop {
            let (id, kind) = self.field(last)?;
            if kind == 0 {
                return Some(schemas > 0);
            }
            if (id, kind) == (2, 9) {
                let (element, size) = self.list()?;
                if element != 12 || size < 2 {
                    return Some(false);
                }
                for i in 0..size {
                    let children = self.element_children()?;
                    let flat = if i == 0 {
                        children == Some(size as i64 - 1)
                    } else {
                        matches!(children, None | Some(0))
                    };
                    if !flat {
                        return Some(false);
                    }
                }
                schemas += 1;
            } else {
                self.skip(kind, THRIFT_SKIP_DEPTH)?;
            }
            last = id;
        }
    }

    /// Reads one `SchemaElement`; its `num_children` when set.
    fn element_children(&mut self) -> Option<Option<i64>> {
        let mut last = 0;
        let mut children = None;
        loop {
            let (id, kind) = self.field(last)?;
            match (id, kind) {
                (_, 0) => return Some(children),
                (5, 5) => children = Some(self.zigzag()?),
                _ => self.skip(kind, THRIFT_SKIP_DEPTH)?,
            }
            last = id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shuyu_policy::{Classification, MaskingRule};

    /// The whole CSV parsed as `Engine::ingest` does (chunks on threads, errors in file
    /// order), its batches collected.
    fn parse_csv(
        input: &Bytes,
        columns: &[ColumnSpec],
        options: &IngestOptions,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let split = CsvChunks::split(input, columns)?;
        let parse = |chunk: &Bytes| {
            let mut batches = Vec::new();
            parse_chunk(chunk, columns, options, |batch| {
                batches.push(batch);
                true
            })
            .map(|()| batches)
        };
        let parsed: Vec<Result<Vec<RecordBatch>, LineError>> = if split.chunks.len() == 1 {
            vec![parse(&split.chunks[0])]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = split
                    .chunks
                    .iter()
                    .map(|chunk| scope.spawn(move || parse(chunk)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(LineError::panicked())))
                    .collect()
            })
        };
        let mut batches = Vec::new();
        let mut outcomes = Vec::with_capacity(parsed.len());
        for result in parsed {
            outcomes.push(result.map(|chunk_batches| batches.extend(chunk_batches)));
        }
        split.first_error(outcomes)?;
        Ok(batches)
    }

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
        let chrono_days = |text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(|d| (d - EPOCH).num_days() as i32)
        };
        // Every month 00-13 and day 00-32 of years around the edges of the calendar's
        // rules (year 0, centuries, leap years, the epoch, the last year): the fast path
        // agrees with chrono on each, valid or not.
        let years = (0..=5)
            .chain(96..=104)
            .chain(1896..=1904)
            .chain(1968..=2030)
            .chain(2096..=2104)
            .chain(9995..=9999);
        let mut valid = 0;
        for year in years {
            for month in 0..=13 {
                for day in 0..=32 {
                    let text = format!("{year:04}-{month:02}-{day:02}");
                    let fast = iso_date_days(text.as_bytes());
                    assert_eq!(fast, chrono_days(&text), "{text}");
                    valid += usize::from(fast.is_some());
                }
            }
        }
        assert!(valid > 35_000, "{valid}");
        assert_eq!(iso_date_days(b"1970-01-01"), Some(0));
        assert_eq!(iso_date_days(b"1969-12-31"), Some(-1));
        // Other shapes are left to chrono.
        for text in [
            "2024-1-05",
            "2024/01/05",
            "20240105",
            "2024-01-5x",
            "+2024-01-05",
        ] {
            assert_eq!(iso_date_days(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn invalid_utf8_names_the_line_even_when_fields_together_are_valid() {
        let parse = |csv: &[u8]| {
            parse_csv(
                &Bytes::copy_from_slice(csv),
                &columns(),
                &IngestOptions::default(),
            )
            .unwrap_err()
            .to_string()
        };
        // A lone continuation byte.
        let message = parse(b"note,n\nok,1\ncanary\x80,2\n");
        assert!(message.contains("line 3 is not valid UTF-8"), "{message}");
        assert!(!message.contains("canary"), "{message}");
        // "名" (E5 90 8D) cut by the delimiter: the record's bytes without delimiters are
        // valid UTF-8, its fields are not.
        let message = parse(b"note,n\nok,1\nx\xE5\x90,\x8D2\n");
        assert!(message.contains("line 3 is not valid UTF-8"), "{message}");
        // Valid multi-byte text parses.
        let batches = parse_csv(
            &Bytes::from("note,n\n名字 ,1\n"),
            &columns(),
            &IngestOptions::default(),
        )
        .expect("valid");
        let notes = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(notes.value(0), "名字");
    }

    #[test]
    fn trim_matches_str_trim() {
        for text in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\ta\n",
            "ab",
            "a b",
            "\u{3000}名\u{3000}",
            "名",
            "\u{85}x",
            "x\u{a0}",
            "~",
            "\u{7f}",
            "!x!",
        ] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }

    #[test]
    fn parallel_chunks_split_only_at_record_boundaries() {
        let csv = big_csv(None);
        let data = &csv.as_bytes()["note,n\n".len()..];
        let chunks = record_chunks(data, 3);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), data);
        let batches = parse_csv(
            &Bytes::from(csv.clone()),
            &columns(),
            &IngestOptions::default(),
        )
        .expect("valid");
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
        let err = parse_csv(&Bytes::from(csv), &columns(), &IngestOptions::default()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&format!("line {bad},")), "{message}");
        assert!(!message.contains("not-a-number"), "{message}");
    }
    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one range is the expected split
    fn row_groups_are_split_into_consecutive_ranges_of_about_equal_rows() {
        let covers = |rows: &[u64], ranges: &[Range<usize>]| {
            ranges.first().map(|r| r.start) == Some(0)
                && ranges.last().map(|r| r.end) == Some(rows.len())
                && ranges.windows(2).all(|w| w[0].end == w[1].start)
        };
        for (rows, parts, expected) in [
            (vec![100; 10], 2, vec![0..5, 5..10]),
            (vec![100; 10], 3, vec![0..4, 4..7, 7..10]),
            (vec![100; 3], 8, vec![0..1, 1..2, 2..3]),
            // One large group first: the rest share the second part.
            (vec![1000, 10, 10, 10], 2, vec![0..1, 1..4]),
            // A large group last: each part still gets one group.
            (vec![10, 10, 10, 1000], 2, vec![0..3, 3..4]),
            (vec![5], 4, vec![0..1]),
            (vec![], 4, vec![0..0]),
            (vec![0, 0, 0], 2, vec![0..1, 1..3]),
            // Rows a crafted footer may state: no overflow.
            (vec![u64::MAX; 4], 2, vec![0..2, 2..4]),
        ] {
            let ranges = row_group_ranges(&rows, parts);
            assert_eq!(ranges, expected, "{rows:?} in {parts}");
            assert!(covers(&rows, &ranges) || rows.is_empty());
            assert!(ranges.iter().all(|r| !r.is_empty()) || rows.is_empty());
        }
    }
}

#[cfg(test)]
mod parquet_footer_tests {
    use super::*;
    use shuyu_policy::{Classification, MaskingRule};

    /// Reads and checks a whole plaintext Parquet file against `columns`, guarded.
    fn parse_parquet(
        input: Bytes,
        columns: &[ColumnSpec],
    ) -> Result<Vec<RecordBatch>, EngineError> {
        guarded(|| read_parquet(input, columns))
    }

    /// The same, unguarded: a panic of the reader propagates.
    fn read_parquet(input: Bytes, columns: &[ColumnSpec]) -> Result<Vec<RecordBatch>, EngineError> {
        let upload = ParquetUpload::open_unguarded(input, columns)?;
        let mut batches = Vec::new();
        upload.read_unguarded(0..upload.row_group_rows().len(), |batch| {
            batches.push(batch);
            true
        })?;
        Ok(batches)
    }

    /// Thrift compact protocol, as much as a footer needs.
    #[derive(Default)]
    struct Writer(Vec<u8>);

    impl Writer {
        fn varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
        }
        fn field(&mut self, delta: u8, kind: u8) {
            self.0.push((delta << 4) | kind);
        }
        fn i32(&mut self, delta: u8, v: i32) {
            self.field(delta, 5);
            self.varint(((v << 1) ^ (v >> 31)) as u32 as u64);
        }
        fn name(&mut self, delta: u8, name: &str) {
            self.field(delta, 8);
            self.varint(name.len() as u64);
            self.0.extend_from_slice(name.as_bytes());
        }
        fn list_header(&mut self, kind: u8, size: usize) {
            if size < 15 {
                self.0.push(((size as u8) << 4) | kind);
            } else {
                self.0.push(0xf0 | kind);
                self.varint(size as u64);
            }
        }
        fn stop(&mut self) {
            self.0.push(0);
        }
    }

    /// A Parquet file (no data pages) whose schema nests `depth` groups, one inside the
    /// other, around one INT64 leaf.
    pub(crate) fn nested_file(depth: usize) -> Vec<u8> {
        let mut w = Writer::default();
        w.i32(1, 2); // version
        w.field(1, 9); // 2: schema
        w.list_header(12, depth + 1);
        for level in 0..depth {
            if level > 0 {
                w.i32(3, 0); // 3: repetition_type REQUIRED
                w.name(1, "g");
                w.i32(1, 1); // 5: num_children
            } else {
                w.name(4, "root");
                w.i32(1, 1);
            }
            w.stop();
        }
        w.i32(1, 2); // 1: type INT64
        w.i32(2, 0); // 3: repetition_type
        w.name(1, "x");
        w.stop();
        w.field(1, 6); // 3: num_rows
        w.varint(0);
        w.field(1, 9); // 4: row_groups
        w.list_header(12, 0);
        w.stop();
        let mut file = b"PAR1".to_vec();
        file.extend_from_slice(&w.0);
        file.extend_from_slice(&(w.0.len() as u32).to_le_bytes());
        file.extend_from_slice(b"PAR1");
        file
    }

    fn columns() -> Vec<ColumnSpec> {
        vec![ColumnSpec {
            name: "x".into(),
            data_type: ColumnType::Int64,
            classification: Classification::Ordinary,
            masking: MaskingRule::Keep,
        }]
    }

    #[test]
    fn a_deeply_nested_schema_is_refused_before_the_reader_recurses_into_it() {
        // Five hundred thousand levels: the reader's recursion would need far more stack
        // than any thread has. Run on a 2 MiB stack, as a runtime's blocking thread is.
        let deep = Bytes::from(nested_file(500_000));
        let refused = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse_parquet(deep, &columns()).map(|b| b.len()))
            .unwrap()
            .join()
            .expect("no overflow, no panic");
        assert!(
            matches!(refused, Err(EngineError::InvalidInput(_))),
            "{refused:?}"
        );
        // The same writer's flat file is read on (and refused only for having no rows
        // matching the footer's promises, or accepted: either way not for its schema).
        assert!(flat_parquet_schema(&nested_file(1)));
        assert!(!flat_parquet_schema(&nested_file(2)));
    }

    #[test]
    fn a_damaged_page_that_panics_the_reader_is_refused() {
        // Found by the ingest fuzz target (seed 20261206): a data page whose definition
        // levels make arrow-buffer 59.3.2 assert while decoding.
        let file = Bytes::from_static(include_bytes!(
            "../tests/fuzz-regressions/parquet-definition-levels-panic.parquet"
        ));
        let column = |name: &str, data_type| ColumnSpec {
            name: name.into(),
            data_type,
            classification: Classification::Ordinary,
            masking: MaskingRule::Keep,
        };
        let columns = [
            column("flag", ColumnType::Date),
            column("c1", ColumnType::Bool),
            column("名字", ColumnType::Int64),
        ];
        let unguarded = std::panic::catch_unwind(|| read_parquet(file.clone(), &columns));
        assert!(
            unguarded.is_err(),
            "the reader no longer panics on it: the guard may go"
        );
        assert!(matches!(
            parse_parquet(file, &columns),
            Err(EngineError::InvalidInput(_))
        ));
    }

    #[test]
    fn an_upload_reads_only_the_row_groups_asked_for_in_order() {
        let batch = RecordBatch::try_new(
            arrow_schema(&columns()),
            vec![Arc::new(arrow::array::Int64Array::from_iter_values(0..100)) as ArrayRef],
        )
        .unwrap();
        let mut file = Vec::new();
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(30))
            .build();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut file, batch.schema(), Some(properties))
                .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let upload = ParquetUpload::open(Bytes::from(file), &columns()).unwrap();
        assert_eq!(upload.row_group_rows(), vec![30, 30, 30, 10]);
        let values = |groups: Range<usize>| {
            let mut values = Vec::new();
            upload
                .read(groups, |batch| {
                    let column = batch.column(0).as_any();
                    let column = column.downcast_ref::<arrow::array::Int64Array>().unwrap();
                    values.extend(column.values().iter().copied());
                    true
                })
                .unwrap();
            values
        };
        assert_eq!(values(1..3), (30..90).collect::<Vec<_>>());
        assert_eq!(values(3..4), (90..100).collect::<Vec<_>>());
        assert_eq!(values(0..4), (0..100).collect::<Vec<_>>());
        assert!(values(2..2).is_empty());
        // A consumer that stops is not handed more.
        let mut handed = 0;
        upload
            .read(0..4, |_| {
                handed += 1;
                false
            })
            .unwrap();
        assert_eq!(handed, 1);
    }

    #[test]
    fn files_from_the_arrow_writer_are_flat_and_truncated_footers_are_not() {
        let batch = RecordBatch::try_new(
            arrow_schema(&columns()),
            vec![Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3])) as ArrayRef],
        )
        .unwrap();
        let mut file = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        assert!(flat_parquet_schema(&file));
        let n = validate_input(
            IngestFormat::Parquet,
            &Bytes::from(file.clone()),
            &columns(),
            &IngestOptions::default(),
        )
        .unwrap();
        assert_eq!(n, 3);
        for cut in [1, 9, file.len() / 2] {
            let mut cut_file = file[..file.len() - cut].to_vec();
            cut_file.extend_from_slice(b"PAR1");
            assert!(!flat_parquet_schema(&cut_file) || cut_file.len() == file.len());
        }
        assert!(!flat_parquet_schema(b"PAR1"));
        assert!(!flat_parquet_schema(b""));
    }
}
