//! What an export needs of a staged result, computed where the result may be held whole: in
//! a confined worker process (`shuyu worker`), never in the server.
//!
//! - the export checks ([`Engine::export_checks`]) and the release ledger's inputs — the
//!   result's population sketches and the ledger checks against the tenant's releases
//!   ([`Engine::ledger_inputs`]) — call the gate's one implementation in `checks`, on the
//!   same reads the server made before;
//! - the recipient's copy ([`Engine::render_product`]) is streamed: each batch of the staged
//!   result gets its counts rounded and its pseudonyms re-keyed (`ResultData`'s steps, batch
//!   by batch), each row its keyed order; DataFusion sorts the rows by that key within the
//!   job's memory pool, spilling encrypted (`EncryptedSpillFactory`); the sorted batches are
//!   written, fingerprinted, into the caller's writers. What stays in memory beyond the sort's
//!   pool is one 32-byte hash per row (for the order-free rows digest), charged to the same
//!   pool.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::expressions::col;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};
use shuyu_policy::DisclosurePolicy;
use shuyu_vault::{SecretKey, Sha256Hasher};

use crate::checks::{
    CheckReport, ExportChecks, GateInput, PopulationId, ReleasedCell, release_checks,
    result_sketches, result_units_range, run_export_checks, run_export_checks_on_heads,
};
use crate::disclosure::DisclosureMeta;
use crate::error::EngineError;
use crate::lineage::{OutputColumn, RowInfluence};
use crate::results::{
    ExportFormat, ResultData, batch_row_keys, product_writer_properties, with_fingerprint_schema,
};
use crate::session::{Engine, ResultColumns, SpillOptions};
use crate::sketch::UnitSketch;

/// The column that carries each row's keyed order while the copy is sorted.
const ORDER_COLUMN: &str = "__shuyu_order";
/// A Parquet row group of a product copy is closed once its encoded size passes this, so
/// that a reader (a Flight fetch) holds at most about this much of one column group.
const ROW_GROUP_BYTES: usize = 8 << 20;
/// And once it has this many rows.
const ROW_GROUP_ROWS: usize = 65_536;

/// What the checks read of a staged result beyond its rows: its columns' lineage and the
/// plan-level facts the job recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultGate {
    /// Visible output columns with lineage.
    pub columns: Vec<OutputColumn>,
    /// Plan parts the lineage walker could not analyse.
    pub unanalysable: Vec<String>,
    /// Source columns that decide which rows appear.
    pub row_influencing: Vec<RowInfluence>,
    /// Hidden columns of the result.
    pub disclosure: DisclosureMeta,
}

impl ResultGate {
    fn input<'a>(
        &'a self,
        batches: &'a [RecordBatch],
        released: &'a [ReleasedCell],
    ) -> GateInput<'a> {
        GateInput {
            columns: &self.columns,
            unanalysable: &self.unanalysable,
            row_influencing: &self.row_influencing,
            disclosure: &self.disclosure,
            batches,
            released,
        }
    }
}

/// The tenant's released cells whose populations number between two unit counts (see
/// [`crate::units_range`]); asked for at most once per check run.
pub type ReleasedSource<'a> =
    dyn FnMut(u64, u64) -> Result<Vec<ReleasedCell>, EngineError> + Send + 'a;

/// What the release ledger needs of an approved aggregate result.
#[derive(Debug)]
pub struct LedgerInputs {
    /// The ledger checks (differencing, reconstruction) against the released cells given.
    pub reports: Vec<CheckReport>,
    /// Every population sketch of the result, with where it is (what the ledger records).
    pub sketches: Vec<(PopulationId, UnitSketch)>,
}

/// How the recipient's copy is made.
#[derive(Debug)]
pub struct ProductOptions {
    /// The package's data file format.
    pub format: ExportFormat,
    /// Count cells rounded to the nearest multiple of this (0 or 1: not rounded).
    pub round_counts_to: u64,
    /// The recipient's pseudonym key (derived by the server for this recipient).
    pub recipient_key: SecretKey,
    /// The copy's row-order key (derived by the server from its fingerprint).
    pub order_key: SecretKey,
    /// The copy's fingerprint, written into its schema and file metadata.
    pub fingerprint: String,
    /// The sort's memory pool.
    pub memory_limit_bytes: usize,
    /// Rows the staged result has (its job's count): the rows digest's share of the pool is
    /// reserved for them before the sort takes the rest.
    pub expected_rows: u64,
    /// Where the sort may spill (encrypted); `None`: it may not.
    pub spill: Option<SpillOptions>,
}

/// A file written: its plaintext's SHA-256 and length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    /// Hex SHA-256.
    pub sha256: String,
    /// Bytes.
    pub bytes: u64,
}

/// What [`Engine::render_product`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductFacts {
    /// Rows of the copy.
    pub n_rows: u64,
    /// Order-free digest of its rows (as `ResultData::rows_digest`).
    pub rows_digest: String,
    /// The data file in the requested format.
    pub data: FileFacts,
    /// The Parquet copy for Arrow Flight, when one was asked for.
    pub flight: Option<FileFacts>,
}

/// A writer that hashes and counts what passes through it.
struct Tally<W: Write> {
    inner: W,
    hasher: Sha256Hasher,
    bytes: u64,
}

impl<W: Write> Tally<W> {
    fn new(inner: W) -> Tally<W> {
        Tally {
            inner,
            hasher: Sha256Hasher::new(),
            bytes: 0,
        }
    }

    fn facts(self) -> FileFacts {
        FileFacts {
            sha256: self.hasher.finish_hex(),
            bytes: self.bytes,
        }
    }
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The writer of one output file of a copy.
enum CopyWriter<'a> {
    Parquet(ArrowWriter<Tally<&'a mut (dyn Write + Send)>>),
    Csv(arrow::csv::Writer<Tally<&'a mut (dyn Write + Send)>>),
}

fn io_internal(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(e.to_string())
}

impl<'a> CopyWriter<'a> {
    fn new(
        out: &'a mut (dyn Write + Send),
        format: ExportFormat,
        schema: &SchemaRef,
        fingerprint: &str,
    ) -> Result<CopyWriter<'a>, EngineError> {
        let out = Tally::new(out);
        Ok(match format {
            ExportFormat::Csv => CopyWriter::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            ),
            ExportFormat::Parquet => CopyWriter::Parquet(
                ArrowWriter::try_new(
                    out,
                    Arc::clone(schema),
                    Some(product_writer_properties(fingerprint, ROW_GROUP_ROWS)),
                )
                .map_err(io_internal)?,
            ),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        match self {
            CopyWriter::Csv(w) => w.write(batch).map_err(io_internal),
            CopyWriter::Parquet(w) => {
                w.write(batch).map_err(io_internal)?;
                if w.in_progress_size() >= ROW_GROUP_BYTES {
                    w.flush().map_err(io_internal)?;
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<FileFacts, EngineError> {
        let mut out = match self {
            CopyWriter::Csv(w) => w.into_inner(),
            CopyWriter::Parquet(w) => w.into_inner().map_err(io_internal)?,
        };
        out.flush().map_err(io_internal)?;
        Ok(out.facts())
    }
}

/// A stream that a plan reads once (the mapped batches, into the sort).
struct OnceStream {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for OnceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnceStream")
    }
}

impl PartitionStream for OnceStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().unwrap_or_else(|p| p.into_inner()).take();
        match taken {
            Some(stream) => stream,
            None => Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                futures::stream::once(async {
                    Err(DataFusionError::Internal(
                        "a product copy's rows were read twice".into(),
                    ))
                }),
            )),
        }
    }
}

/// The row hashes behind the rows digest, charged to the memory pool as they grow.
struct RowHashes {
    hashes: Vec<[u8; 32]>,
    reservation: MemoryReservation,
}

impl RowHashes {
    fn push(&mut self, keys: &[Vec<u8>]) -> Result<(), DataFusionError> {
        let needed = (self.hashes.len() + keys.len()) * 32;
        if needed > self.reservation.size() {
            self.reservation
                .try_grow(needed - self.reservation.size())?;
        }
        self.hashes
            .extend(keys.iter().map(|k| shuyu_vault::sha256(k)));
        Ok(())
    }

    /// `ResultData::rows_digest`: SHA-256 over the sorted hex hashes of the rows.
    fn digest(&mut self) -> String {
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.sort_unstable();
        let mut hasher = Sha256Hasher::new();
        for hash in &hashes {
            hasher.update(hex::encode(hash).as_bytes());
        }
        hasher.finish_hex()
    }
}

impl Engine {
    /// Runs the export checks on the stored result `file`, as the server ran them: the
    /// sketches' heads first, the tenant's releases near them in size from `released`, and
    /// the whole result only when a close pair or the reconstruction audit needs the
    /// members.
    ///
    /// # Errors
    /// On storage or key failures, or when `released` fails.
    pub async fn export_checks(
        &self,
        file: &str,
        gate: &ResultGate,
        policy: &DisclosurePolicy,
        released: &mut ReleasedSource<'_>,
    ) -> Result<ExportChecks, EngineError> {
        let batches = self.read_result_for_checks(file).await?;
        let cells = match result_units_range(&batches, policy.min_entities) {
            Some((lo, hi)) => released(lo, hi)?,
            None => Vec::new(),
        };
        if let Some(checks) = run_export_checks_on_heads(&gate.input(&batches, &cells), policy) {
            return Ok(checks);
        }
        let batches = self.read_result(file).await?;
        Ok(run_export_checks(&gate.input(&batches, &cells), policy))
    }

    /// The release ledger's inputs for the approval of the aggregate result `file`: its
    /// population sketches, and the ledger checks (differencing, reconstruction) against the
    /// releases `released` gives.
    ///
    /// # Errors
    /// On storage or key failures, or when `released` fails.
    pub async fn ledger_inputs(
        &self,
        file: &str,
        gate: &ResultGate,
        policy: &DisclosurePolicy,
        released: &mut ReleasedSource<'_>,
    ) -> Result<LedgerInputs, EngineError> {
        let staged = self.read_result(file).await?;
        let cells = match result_units_range(&staged, policy.min_entities) {
            Some((lo, hi)) => released(lo, hi)?,
            None => Vec::new(),
        };
        Ok(LedgerInputs {
            reports: release_checks(&gate.input(&staged, &cells), policy),
            sketches: result_sketches(&staged),
        })
    }

    /// Writes the recipient's copy of the stored result `file` into `data` in
    /// `options.format` and, when `flight` is given, as Parquet into it too: the same rows as
    /// `ResultData`'s product steps give (`round_counts`, `rekey_pseudonyms`,
    /// `order_by_key`, `with_fingerprint`) rendered by `render_export_file`, in bounded
    /// memory (see the module's documentation).
    ///
    /// # Errors
    /// On storage or key failures, or [`EngineError::Internal`] with "Resources exhausted"
    /// when the sort's pool and spill space do not suffice.
    pub async fn render_product(
        &self,
        file: &str,
        columns: &[OutputColumn],
        options: &ProductOptions,
        data: &mut (dyn Write + Send),
        flight: Option<&mut (dyn Write + Send)>,
    ) -> Result<ProductFacts, EngineError> {
        let runtime = self
            .runtime(Some(options.memory_limit_bytes), options.spill.as_ref())
            .map_err(io_internal)?;
        let ctx = SessionContext::new_with_config_rt(
            SessionConfig::new().with_target_partitions(2),
            runtime,
        );
        let frame = self
            .result_frame(&ctx, file, ResultColumns::Visible)
            .await?;
        let scan = frame.create_physical_plan().await.map_err(io_internal)?;
        let task = ctx.task_ctx();
        let staged = execute_stream(scan, Arc::clone(&task)).map_err(io_internal)?;
        render_copy(staged, columns, options, task, data, flight).await
    }
}

/// [`Engine::render_product`] over the staged result's visible batches `staged`.
pub(crate) async fn render_copy(
    staged: SendableRecordBatchStream,
    columns: &[OutputColumn],
    options: &ProductOptions,
    task: Arc<TaskContext>,
    data: &mut (dyn Write + Send),
    flight: Option<&mut (dyn Write + Send)>,
) -> Result<ProductFacts, EngineError> {
    let visible = staged.schema();
    let mut fields: Vec<Field> = visible
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(
        ORDER_COLUMN,
        DataType::FixedSizeBinary(32),
        false,
    ));
    let keyed_schema = Arc::new(Schema::new(fields));
    let reservation = MemoryConsumer::new("product rows digest").register(task.memory_pool());
    let expected = usize::try_from(options.expected_rows).unwrap_or(usize::MAX);
    reservation
        .try_grow(expected.saturating_mul(32))
        .map_err(io_internal)?;
    let row_hashes = Arc::new(Mutex::new(RowHashes {
        hashes: Vec::with_capacity(expected),
        reservation,
    }));

    // Each batch: the product steps that act on single rows, then the row's keyed order.
    let keyed = {
        let columns = columns.to_vec();
        let recipient_key = options.recipient_key.clone();
        let order_key = options.order_key.clone();
        let round_to = options.round_counts_to;
        let keyed_schema = Arc::clone(&keyed_schema);
        let row_hashes = Arc::clone(&row_hashes);
        staged.map(move |batch| {
            let batch = batch?;
            let stepped = ResultData {
                batches: vec![batch],
            }
            .round_counts(&columns, round_to)
            .and_then(|d| d.rekey_pseudonyms(&columns, &recipient_key))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let batch =
                stepped.batches.into_iter().next().ok_or_else(|| {
                    DataFusionError::Internal("a product step lost its batch".into())
                })?;
            let keys =
                batch_row_keys(&batch).map_err(|e| DataFusionError::External(Box::new(e)))?;
            row_hashes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(&keys)?;
            let order =
                FixedSizeBinaryArray::try_from_iter(keys.iter().map(|k| order_key.hmac_sha256(k)));
            let order: ArrayRef = match order {
                Ok(order) => Arc::new(order),
                // An empty batch has no rows to key.
                Err(_) if keys.is_empty() => Arc::new(FixedSizeBinaryArray::new_null(32, 0)),
                Err(e) => return Err(e.into()),
            };
            let mut columns = batch.columns().to_vec();
            columns.push(order);
            RecordBatch::try_new(Arc::clone(&keyed_schema), columns).map_err(Into::into)
        })
    };
    let source = Arc::new(OnceStream {
        schema: Arc::clone(&keyed_schema),
        stream: Mutex::new(Some(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&keyed_schema),
            keyed,
        )))),
    });
    let input: Arc<dyn ExecutionPlan> = Arc::new(
        StreamingTableExec::try_new(
            Arc::clone(&keyed_schema),
            vec![source],
            None,
            Vec::<LexOrdering>::new(),
            false,
            None,
        )
        .map_err(io_internal)?,
    );
    let ordering = LexOrdering::new(vec![PhysicalSortExpr::new_default(
        col(ORDER_COLUMN, &keyed_schema).map_err(io_internal)?,
    )])
    .ok_or_else(|| EngineError::Internal("an empty sort order".into()))?;
    let sorted: Arc<dyn ExecutionPlan> = Arc::new(SortExec::new(ordering, input));
    let mut sorted = execute_stream(sorted, task).map_err(io_internal)?;

    // The copy's schema: the visible columns, the fingerprint in its metadata.
    let schema = with_fingerprint_schema(&visible, &options.fingerprint);
    let keep: Vec<usize> = (0..visible.fields().len()).collect();
    let mut data_writer = CopyWriter::new(data, options.format, &schema, &options.fingerprint)?;
    let mut flight_writer = match flight {
        Some(out) => Some(CopyWriter::new(
            out,
            ExportFormat::Parquet,
            &schema,
            &options.fingerprint,
        )?),
        None => None,
    };
    let mut n_rows = 0u64;
    while let Some(batch) = sorted.next().await {
        let batch = batch.map_err(io_internal)?;
        let batch = batch
            .project(&keep)
            .and_then(|b| b.with_schema(Arc::clone(&schema)))
            .map_err(io_internal)?;
        n_rows += batch.num_rows() as u64;
        data_writer.write(&batch)?;
        if let Some(w) = &mut flight_writer {
            w.write(&batch)?;
        }
    }
    drop(sorted);
    let data = data_writer.finish()?;
    let flight = flight_writer.map(CopyWriter::finish).transpose()?;
    let rows_digest = row_hashes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .digest();
    Ok(ProductFacts {
        n_rows,
        rows_digest,
        data,
        flight,
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::memory::MemoryStream;
    use shuyu_policy::{Classification, MaskingRule};

    use super::*;
    use crate::disclosure::is_hidden;
    use crate::results::render_export_file;
    use crate::spill::EncryptedSpillFactory;

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
            lineage("cost", Classification::Sensitive, false, false, &[]),
        ]
    }

    /// `n_rows` rows in batches of 1,000: a district, a pseudonym, a count, a float (some
    /// rows repeated, so that equal rows meet in the sort).
    fn batches(n_rows: usize) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("district", DataType::Utf8, true),
            Field::new("person", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("cost", DataType::Float64, true),
        ]));
        let row = |i: usize| i % (n_rows - n_rows / 10).max(1);
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter(
                    (0..n_rows).map(|i| Some(format!("区{}", row(i) % 7))),
                )),
                Arc::new(StringArray::from_iter(
                    (0..n_rows).map(|i| Some(format!("p_{:016x}", row(i) * 7919))),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..n_rows).map(|i| row(i) as i64 % 97),
                )),
                Arc::new(Float64Array::from_iter(
                    (0..n_rows).map(|i| (i % 4 != 3).then_some(row(i) as f64 + 0.5)),
                )),
            ],
        )
        .unwrap();
        (0..n_rows)
            .step_by(1000)
            .map(|at| batch.slice(at, 1000.min(n_rows - at)))
            .collect()
    }

    fn options(format: ExportFormat) -> ProductOptions {
        ProductOptions {
            format,
            round_counts_to: 5,
            recipient_key: SecretKey::generate(),
            order_key: SecretKey::generate(),
            fingerprint: "ab".repeat(32),
            memory_limit_bytes: 0,
            expected_rows: 30_000,
            spill: None,
        }
    }

    fn task(memory_limit: usize, spill: Option<&std::path::Path>) -> Arc<TaskContext> {
        let disk = match spill {
            Some(dir) => DiskManagerBuilder::default()
                .with_temp_file_factory(Arc::new(EncryptedSpillFactory::new(dir))),
            None => DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory_limit, 1.0)
            .with_disk_manager_builder(disk)
            .build_arc()
            .unwrap();
        // The merge's reservation scaled down with the pool (10 MiB by default).
        let config = SessionConfig::new().with_sort_spill_reservation_bytes(64 << 10);
        Arc::new(
            TaskContext::default()
                .with_session_config(config)
                .with_runtime(runtime),
        )
    }

    async fn render(
        input: &[RecordBatch],
        options: &ProductOptions,
        task: Arc<TaskContext>,
        with_flight: bool,
    ) -> Result<(ProductFacts, Vec<u8>, Vec<u8>), EngineError> {
        let schema = input[0].schema();
        let stream: SendableRecordBatchStream =
            Box::pin(MemoryStream::try_new(input.to_vec(), schema, None).unwrap());
        let (mut data, mut flight) = (Vec::new(), Vec::new());
        let facts = render_copy(
            stream,
            &columns(),
            options,
            task,
            &mut data,
            with_flight.then_some(&mut flight as &mut (dyn Write + Send)),
        )
        .await?;
        Ok((facts, data, flight))
    }

    /// What the in-memory product steps give for the same input.
    fn expected(input: &[RecordBatch], options: &ProductOptions) -> ResultData {
        ResultData {
            batches: input.to_vec(),
        }
        .round_counts(&columns(), options.round_counts_to)
        .unwrap()
        .rekey_pseudonyms(&columns(), &options.recipient_key)
        .unwrap()
        .order_by_key(&options.order_key)
        .unwrap()
        .with_fingerprint(&options.fingerprint)
        .unwrap()
    }

    #[tokio::test]
    async fn the_streamed_copy_is_the_in_memory_copy_even_when_the_sort_spills() {
        let input = batches(30_000);
        let spill = tempfile::tempdir().unwrap();
        // A pool far smaller than the data: the sort spills (encrypted) and merges.
        let small = 1 << 21;
        for format in [ExportFormat::Csv, ExportFormat::Parquet] {
            let options = options(format);
            let want = expected(&input, &options);
            let (facts, data, flight) =
                render(&input, &options, task(small, Some(spill.path())), true)
                    .await
                    .unwrap();
            assert_eq!(facts.n_rows, 30_000);
            assert_eq!(facts.rows_digest, want.rows_digest().unwrap());
            assert_eq!(facts.data.bytes, data.len() as u64);
            assert_eq!(facts.data.sha256, shuyu_vault::sha256_hex(&data));
            let read = ResultData::from_export_file(&data).unwrap();
            assert_eq!(read.row_keys().unwrap(), want.row_keys().unwrap());
            if format == ExportFormat::Csv {
                // The same file, byte for byte.
                assert_eq!(data, render_export_file(&want, ExportFormat::Csv).unwrap());
            }
            // The Flight copy: Parquet, the same rows in the same order, fingerprinted, in
            // row groups a reader can hold one at a time.
            let flight_facts = facts.flight.unwrap();
            assert_eq!(flight_facts.sha256, shuyu_vault::sha256_hex(&flight));
            let copy = ResultData::from_export_file(&flight).unwrap();
            assert_eq!(copy.row_keys().unwrap(), want.row_keys().unwrap());
            assert_eq!(copy.fingerprint(), Some(options.fingerprint.clone()));
            assert!(copy.is_ordered_by_key(&options.order_key).unwrap());
            let groups = parquet::file::reader::FileReader::metadata(
                &parquet::file::serialized_reader::SerializedFileReader::new(bytes::Bytes::from(
                    flight,
                ))
                .unwrap(),
            )
            .num_row_groups();
            assert!(groups >= 1);
        }
        // Nothing of the spill is left behind.
        assert_eq!(std::fs::read_dir(spill.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn without_spill_space_a_copy_larger_than_its_pool_fails_plainly() {
        let input = batches(30_000);
        let err = render(
            &input,
            &options(ExportFormat::Csv),
            task(1 << 21, None),
            false,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("Resources exhausted"), "{err}");
    }

    #[test]
    fn the_sort_key_is_a_reserved_name() {
        assert!(is_hidden(ORDER_COLUMN));
    }
}
