//! The engine: sandboxed DataFusion sessions over a tenant's granted tables, ingest writes,
//! masked samples and SQL jobs whose results stay encrypted inside the domain.
//!
//! Sandbox (see ENGINE-NOTES): a tenant-only catalog, no table factories, no
//! information_schema, no URL tables, `sql_with_options` refusing DDL, DML and statements,
//! an allow-list of plan nodes (so no EXPLAIN), a cap on SQL size before parsing, a memory
//! pool, no disk manager (no spill files at all) and a timeout.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use bytes::Bytes;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, DataFusionError};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::parquet_encryption::EncryptionFactory;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use rand::SeedableRng;
use rand::seq::index::sample as sample_indices;
use shuyu_policy::{MaskingDefaults, MaskingRule};
use shuyu_vault::{Envelope, SecretKey};

use crate::crypto::{
    ENCRYPTION_FACTORY_ID, EnvelopeEncryptionFactory, read_options, write_options,
};
use crate::disclosure::{
    DisclosureMeta, HIDDEN_PREFIX, POPULATION_HEAD_PREFIX, POPULATION_PREFIX, UNIT_HEAD_PREFIX,
    UNITS_PREFIX, UnitSource,
};
use crate::error::{EngineError, JobError};
use crate::ingest::{
    ChannelPartition, CsvChunks, IngestFormat, IngestOptions, IngestOutcome, LineError,
    ParquetUpload, parse_chunk, row_group_ranges,
};
use crate::lineage::{OutputColumn, RowInfluence, plan_lineage};
use crate::masking::{MaskedTable, MaskingUdf, display_key, mask_array_typed, mask_batches};
use crate::memory::{InFlightOverdraft, SmallSidesHashJoined};
use crate::plan_text::PlanText;
use crate::schema::{ColumnSpec, TableSpec};
use crate::schema::{arrow_schema, scan_schema};
use crate::spill::EncryptedSpillFactory;
use crate::storage::Storage;

pub use crate::disclosure::GROUP_ROWS_COLUMN;

const CATALOG: &str = "shuyu";
const SCHEMA: &str = "tenant";
/// An ingest is split into parallel part files only when each gets at least this many rows.
const INGEST_PART_MIN_ROWS: u64 = 250_000;

/// Parsed batches waiting, per part, for a CSV ingest's write.
const INGEST_QUEUE_BATCHES: usize = 4;
/// Rows read for sampling before the server picks the sample from them.
const SAMPLE_POOL_ROWS: usize = 2000;

/// Resource limits for one job.
#[derive(Debug, Clone)]
pub struct JobLimits {
    /// SQL text larger than this is refused before parsing.
    pub max_sql_bytes: usize,
    /// Memory pool size for the job's large operators (batches in flight between partitions
    /// may overdraw it by half before they spill).
    pub memory_limit_bytes: usize,
    /// Wall-clock limit for planning and execution.
    pub timeout: Duration,
    /// Results with more rows fail.
    pub max_result_rows: u64,
    /// Rows of the masked preview.
    pub preview_rows: usize,
}

/// How often progress is reported while a job runs.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// The stage a job is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStage {
    /// Parsing, checking and planning the query.
    Planning,
    /// Executing and writing the encrypted result.
    Running,
    /// Closing the result file and building the preview.
    Finishing,
}

impl JobStage {
    /// Text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStage::Planning => "planning",
            JobStage::Running => "running",
            JobStage::Finishing => "finishing",
        }
    }
}

/// A snapshot of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobProgress {
    /// Current stage.
    pub stage: JobStage,
    /// Result rows written so far.
    pub rows: u64,
    /// Bytes read from storage so far (encrypted Parquet pages).
    pub bytes_scanned: u64,
}

/// Live progress of one job: the main flow sets the stage, rows and plan; a ticker task
/// reports them every [`PROGRESS_INTERVAL`], independently of how long one poll of the
/// plan's stream takes (an aggregate over a large join may not yield for seconds).
struct ProgressReporter {
    sink: Arc<dyn Fn(JobProgress) + Send + Sync>,
    stage: std::sync::Mutex<JobStage>,
    rows: std::sync::atomic::AtomicU64,
    plan: std::sync::Mutex<Option<Arc<dyn ExecutionPlan>>>,
    /// Set once execution has started: from then on, errors depend on the data.
    touching_data: std::sync::atomic::AtomicBool,
}

impl ProgressReporter {
    fn new(sink: Arc<dyn Fn(JobProgress) + Send + Sync>) -> Self {
        ProgressReporter {
            sink,
            stage: std::sync::Mutex::new(JobStage::Planning),
            rows: std::sync::atomic::AtomicU64::new(0),
            plan: std::sync::Mutex::new(None),
            touching_data: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Execution is about to start.
    fn touching_data(&self) {
        self.touching_data
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn has_touched_data(&self) -> bool {
        self.touching_data.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Moves to `stage` and reports at once.
    fn stage(&self, stage: JobStage) {
        *self.stage.lock().unwrap_or_else(|p| p.into_inner()) = stage;
        self.tick();
    }

    fn executing(&self, plan: Arc<dyn ExecutionPlan>) {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = Some(plan);
        self.stage(JobStage::Running);
    }

    fn rows(&self, n_rows: u64) {
        self.rows
            .store(n_rows, std::sync::atomic::Ordering::Relaxed);
    }

    fn tick(&self) {
        let stage = *self.stage.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = self
            .plan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |plan| bytes_scanned(plan.as_ref()));
        (self.sink)(JobProgress {
            stage,
            rows: self.rows.load(std::sync::atomic::Ordering::Relaxed),
            bytes_scanned: bytes,
        });
    }
}

/// Where a job runs, which decides what its engineer sees of its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobScope {
    /// The data lab: masked copies, shown masked by lineage; errors keep their kind.
    Lab,
    /// Production: raw data behind the gate. The preview shows no value derived from a
    /// protected column (only ordinary columns of rows chosen by ordinary columns; a
    /// differential-privacy job's noisy cells), and every error raised once execution
    /// has started is withheld.
    #[default]
    Production,
}

/// Everything one job needs.
#[derive(Debug)]
pub struct JobRequest {
    /// Lab or production.
    pub scope: JobScope,
    /// Job id (for logs and file names).
    pub job_id: String,
    /// The engineer's SQL (ignored when `substrait_plan` is set).
    pub sql: String,
    /// A dataframe job: a serialized Substrait `Plan` (protobuf), resolved only through
    /// `tables`. Never a datafusion-proto plan: those carry file paths.
    pub substrait_plan: Option<Vec<u8>>,
    /// The tenant's granted tables: the only names the SQL can resolve.
    pub tables: Vec<TableSpec>,
    /// The tenant's pseudonym key (for `pseudonym()` and previews).
    pub pseudonym_key: SecretKey,
    /// Object path of the result file, e.g. `results/<job>/result.parquet`.
    pub result_file: String,
    /// KEK that wraps the result file's data key.
    pub result_kek: String,
    /// Limits.
    pub limits: JobLimits,
    /// Policy masking defaults (for derived columns of the preview).
    pub masking_defaults: MaskingDefaults,
    /// k: aggregate cells over fewer privacy units are suppressed in the preview.
    pub min_entities: u64,
    /// n of the n-k dominance rule: the gate gets the n (at least 2) largest contributions.
    pub dominance_n: usize,
    /// A differential-privacy job: its parameters.
    pub dp: Option<crate::dp::DpSpec>,
    /// Where operators may spill, encrypted under an ephemeral key; `None` disables
    /// spilling (operators that would spill fail with a memory error instead).
    pub spill: Option<SpillOptions>,
}

/// Encrypted spilling for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillOptions {
    /// Directory for the job's spill files (the worker may write there).
    pub dir: std::path::PathBuf,
    /// Most bytes the job may spill.
    pub max_bytes: u64,
}

/// Which columns of a stored result to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultColumns {
    /// Every column, the gate's hidden ones included.
    All,
    /// What the export checks read first: every column but the full unit sketches that have
    /// a head beside them.
    ForChecks,
    /// Only the columns the engineer's query produced.
    Visible,
}

/// A finished job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobOutput {
    /// Result rows.
    pub n_rows: u64,
    /// Output columns with lineage (without the hidden columns).
    pub columns: Vec<OutputColumn>,
    /// Whether the result is an aggregate with per-row group sizes stored.
    pub aggregate: bool,
    /// Source columns that decide which rows or groups appear.
    pub row_influencing: Vec<RowInfluence>,
    /// Plan parts the lineage walker could not analyse (such a result cannot be exported).
    pub unanalysable: Vec<String>,
    /// The hidden columns the export gate reads.
    pub disclosure: DisclosureMeta,
    /// Masked preview for the engineer.
    pub preview: MaskedTable,
    /// Datasets the query read.
    pub input_datasets: Vec<String>,
    /// Bytes read from storage.
    pub bytes_scanned: u64,
    /// The plan as reviewers read it: a dataframe job rendered as SQL, and every source.
    #[serde(default)]
    pub plan_text: crate::plan_text::PlanText,
    /// Whether the job ran out of memory with hash joins and ran again with sort-merge
    /// joins, which spill.
    #[serde(default)]
    pub sort_merge_rerun: bool,
}

/// The DataFusion engine of one domain.
#[derive(Debug, Clone)]
pub struct Engine {
    storage: Storage,
    envelope: Arc<Envelope>,
}

impl Engine {
    /// An engine over `storage`, with keys from `envelope`.
    pub fn new(storage: Storage, envelope: Arc<Envelope>) -> Engine {
        Engine { storage, envelope }
    }

    /// The object store.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub(crate) fn runtime(
        &self,
        memory_limit: Option<usize>,
        spill: Option<&SpillOptions>,
    ) -> Result<Arc<RuntimeEnv>, DataFusionError> {
        self.runtime_with(memory_limit, spill, false)
    }

    /// [`Engine::runtime`]; with `fair`, operators that can spill share the memory pool
    /// evenly (DataFusion's `FairSpillPool`) instead of first come, first served.
    fn runtime_with(
        &self,
        memory_limit: Option<usize>,
        spill: Option<&SpillOptions>,
        fair: bool,
    ) -> Result<Arc<RuntimeEnv>, DataFusionError> {
        let disk = match spill {
            None => DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            Some(spill) => DiskManagerBuilder::default()
                .with_temp_file_factory(Arc::new(EncryptedSpillFactory::new(&spill.dir)))
                .with_max_temp_directory_size(spill.max_bytes)
                .with_max_spill_merge_fan_in(spill_merge_fan_in(memory_limit)),
        };
        let mut builder = RuntimeEnvBuilder::new().with_disk_manager_builder(disk);
        // The five largest consumers are named when the pool runs out (`job_error` logs them).
        let top = NonZeroUsize::new(5).expect("non-zero");
        match memory_limit {
            Some(limit) if fair => {
                builder = builder.with_memory_pool(Arc::new(TrackConsumersPool::new(
                    InFlightOverdraft::new(FairSpillPool::new(limit), limit),
                    top,
                )));
            }
            Some(limit) => {
                builder = builder.with_memory_pool(Arc::new(TrackConsumersPool::new(
                    InFlightOverdraft::new(GreedyMemoryPool::new(limit), limit),
                    top,
                )));
            }
            None => {}
        }
        let runtime = Arc::new(builder.build()?);
        self.storage.register(&runtime);
        runtime.register_parquet_encryption_factory(
            ENCRYPTION_FACTORY_ID,
            Arc::new(EnvelopeEncryptionFactory::new(Arc::clone(&self.envelope))),
        );
        Ok(runtime)
    }

    /// For each table with a privacy unit, a scan that also reads the unit column (used only
    /// by the export gate's plan rewrite, never resolvable by name).
    fn unit_sources(
        &self,
        tables: &[TableSpec],
    ) -> Result<HashMap<String, UnitSource>, DataFusionError> {
        let mut sources = HashMap::new();
        for table in tables {
            let Some(unit) = &table.privacy_unit else {
                continue;
            };
            let mut columns = table.columns.clone();
            if !columns.iter().any(|c| c.name == unit.name) {
                columns.push(unit.clone());
            }
            let url = ListingTableUrl::parse(self.storage.url(&table.location))?;
            let format = ParquetFormat::default().with_options(read_options());
            let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(scan_schema(&columns));
            let provider: Arc<dyn TableProvider> = Arc::new(ListingTable::try_new(config)?);
            sources.insert(
                table.name.clone(),
                UnitSource {
                    source: provider_as_source(provider),
                    unit_column: unit.name.clone(),
                },
            );
        }
        Ok(sources)
    }

    /// A sandboxed session whose catalog holds exactly `tables`, their strings read as
    /// `Utf8View` for jobs ([`scan_schema`]) or as declared.
    fn session(
        &self,
        runtime: Arc<RuntimeEnv>,
        tables: &[TableSpec],
        pseudonym_key: &SecretKey,
        string_views: bool,
    ) -> Result<SessionContext, DataFusionError> {
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG, SCHEMA)
            .with_target_partitions(2);
        let schema = Arc::new(MemorySchemaProvider::new());
        for table in tables {
            let url = ListingTableUrl::parse(self.storage.url(&table.location))?;
            let format = ParquetFormat::default().with_options(read_options());
            let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(if string_views {
                    scan_schema(&table.columns)
                } else {
                    table.arrow_schema()
                });
            schema.register_table(table.name.clone(), Arc::new(ListingTable::try_new(config)?))?;
        }
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog.register_schema(SCHEMA, schema)?;
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        catalogs.register_catalog(CATALOG.to_owned(), catalog);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_table_factories(HashMap::new())
            .with_catalog_list(catalogs)
            .build();
        let ctx = SessionContext::new_with_state(state);
        for udf in MaskingUdf::all(pseudonym_key) {
            ctx.register_udf(udf);
        }
        Ok(ctx)
    }

    /// Validates `input` against `columns` and stores it encrypted at `location`
    /// (`datasets/<id>/`, which must be the ingest's own), data keys wrapped under `kek_id`.
    /// The input is written while it is parsed; if any of it is invalid, or a write fails,
    /// whatever was written under `location` is removed.
    ///
    /// # Errors
    /// [`EngineError::InvalidInput`] for malformed input, others for storage or key failures.
    pub async fn ingest(
        &self,
        format: IngestFormat,
        input: Bytes,
        columns: &[ColumnSpec],
        location: &str,
        kek_id: &str,
        options: &IngestOptions,
    ) -> Result<IngestOutcome, EngineError> {
        let n_rows = match format {
            IngestFormat::Csv => {
                self.ingest_csv(input, columns, location, kek_id, options)
                    .await
            }
            IngestFormat::Parquet => self.ingest_parquet(input, columns, location, kek_id).await,
        };
        let n_rows = match n_rows {
            Ok(0) => Err(EngineError::InvalidInput(
                "the input has no data rows".into(),
            )),
            other => other,
        };
        match n_rows {
            Ok(n_rows) => Ok(IngestOutcome {
                n_rows,
                location: location.to_owned(),
            }),
            Err(e) => {
                // The input is written while it is parsed: parts written before an error
                // found later in the input go.
                if let Err(cleanup) = self.storage.delete_prefix(location).await {
                    tracing::warn!(location, error = %cleanup, "removing a failed ingest's parts");
                }
                Err(e)
            }
        }
    }

    /// A CSV ingest in one pass: each chunk of records is parsed on its own thread and its
    /// batches flow, a few at a time, into the encrypted write of its own part file, so the
    /// parsed table is never held whole and each batch is encoded while still in cache.
    /// Returns the rows stored.
    async fn ingest_csv(
        &self,
        input: Bytes,
        columns: &[ColumnSpec],
        location: &str,
        kek_id: &str,
        options: &IngestOptions,
    ) -> Result<u64, EngineError> {
        let split = CsvChunks::split(&input, columns)?;
        let schema = arrow_schema(columns);
        let runtime = self.runtime(None, None).map_err(internal)?;
        let mut parses = Vec::with_capacity(split.chunks.len());
        let mut writes = Vec::with_capacity(split.chunks.len());
        for (i, chunk) in split.chunks.iter().enumerate() {
            let chunk = chunk.clone();
            let columns = columns.to_vec();
            let options = options.clone();
            let (parse, write) =
                self.spawn_streamed_part(&runtime, &schema, location, i, kek_id, move |emit| {
                    parse_chunk(&chunk, &columns, &options, emit)
                })?;
            parses.push(parse);
            writes.push(write);
        }
        let parsed = futures::future::join_all(parses).await;
        let written = futures::future::join_all(writes).await;
        let mut n_rows = 0;
        // An invalid input is the caller's error, whatever the writes then did.
        split.first_error(parsed.into_iter().map(|result| {
            n_rows += result.unwrap_or_else(|_| Err(LineError::panicked()))?;
            Ok(())
        }))?;
        join_part_writes(written)?;
        Ok(n_rows)
    }

    /// A Parquet ingest in one pass: the footer is checked first, then consecutive ranges
    /// of row groups, one per core, are each decoded on their own thread and flow, a few
    /// batches at a time, into the encrypted write of their own part file, so the decoded
    /// table is never held whole (a 60 M-row upload decoded whole took 22 GB). Returns the
    /// rows stored.
    async fn ingest_parquet(
        &self,
        input: Bytes,
        columns: &[ColumnSpec],
        location: &str,
        kek_id: &str,
    ) -> Result<u64, EngineError> {
        let upload = tokio::task::spawn_blocking({
            let columns = columns.to_vec();
            move || ParquetUpload::open(input, &columns)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("parsing task: {e}")))??;
        let upload = Arc::new(upload);
        let group_rows = upload.row_group_rows();
        // As the footer states them (a crafted one may overflow a plain sum).
        let total = group_rows
            .iter()
            .fold(0u64, |sum, &n| sum.saturating_add(n));
        // A large input is written as one file per core, in parallel; each file has its own
        // data key like any other.
        let parts = std::thread::available_parallelism()
            .map_or(1, |n| n.get().min(8))
            .min((total / INGEST_PART_MIN_ROWS).max(1) as usize);
        let schema = arrow_schema(columns);
        let runtime = self.runtime(None, None).map_err(internal)?;
        let mut reads = Vec::with_capacity(parts);
        let mut writes = Vec::with_capacity(parts);
        for (i, groups) in row_group_ranges(&group_rows, parts).into_iter().enumerate() {
            let upload = Arc::clone(&upload);
            let (read, write) =
                self.spawn_streamed_part(&runtime, &schema, location, i, kek_id, move |emit| {
                    upload.read(groups, emit)
                })?;
            reads.push(read);
            writes.push(write);
        }
        let read = futures::future::join_all(reads).await;
        let written = futures::future::join_all(writes).await;
        let mut n_rows = 0;
        // An invalid input is the caller's error, whatever the writes then did.
        for result in read {
            n_rows += result.map_err(|e| EngineError::Internal(format!("parsing task: {e}")))??;
        }
        join_part_writes(written)?;
        Ok(n_rows)
    }

    /// Starts part `part` of an ingest: `produce` runs on a blocking thread and hands its
    /// batches (of `schema`), a few at a time, to the encrypted write of
    /// `{location}part-{part}.parquet`; its `emit` returns `false` once the write has
    /// stopped. If `produce` fails, the write fails rather than finishing a file with the
    /// rows so far. Returns the producer's task (the rows it produced) and the write.
    fn spawn_streamed_part<E: Send + 'static>(
        &self,
        runtime: &Arc<RuntimeEnv>,
        schema: &SchemaRef,
        location: &str,
        part: usize,
        kek_id: &str,
        produce: impl FnOnce(&mut dyn FnMut(RecordBatch) -> bool) -> Result<(), E> + Send + 'static,
    ) -> Result<(tokio::task::JoinHandle<Result<u64, E>>, PartWrite), EngineError> {
        let (batches, received) = tokio::sync::mpsc::channel(INGEST_QUEUE_BATCHES);
        let produced = tokio::task::spawn_blocking(move || {
            let mut rows = 0u64;
            let outcome = produce(&mut |batch: RecordBatch| {
                rows += batch.num_rows() as u64;
                batches.blocking_send(Ok(batch)).is_ok()
            });
            if outcome.is_err() {
                let _ = batches.blocking_send(Err(DataFusionError::Execution(
                    "the input is not valid".into(),
                )));
            }
            outcome.map(|()| rows)
        });
        let table = StreamingTable::try_new(
            Arc::clone(schema),
            vec![Arc::new(ChannelPartition::new(
                Arc::clone(schema),
                received,
            ))],
        )
        .map_err(internal)?;
        let write = self.spawn_part_write(runtime, Arc::new(table), location, part, kek_id);
        Ok((produced, write))
    }

    /// Writes each group of batches (of `schema`) as a part file of `location`, all groups
    /// in parallel.
    async fn write_encrypted_parts(
        &self,
        schema: SchemaRef,
        groups: Vec<Vec<RecordBatch>>,
        location: &str,
        kek_id: &str,
    ) -> Result<(), EngineError> {
        let runtime = self.runtime(None, None).map_err(internal)?;
        let mut writes = Vec::with_capacity(groups.len());
        for (i, group) in groups.into_iter().enumerate() {
            let table = MemTable::try_new(Arc::clone(&schema), vec![group]).map_err(internal)?;
            writes.push(self.spawn_part_write(&runtime, Arc::new(table), location, i, kek_id));
        }
        join_part_writes(futures::future::join_all(writes).await)
    }

    /// Starts writing `source` as `{location}part-{part}.parquet`, encrypted with its own
    /// data key wrapped under `kek_id`.
    fn spawn_part_write(
        &self,
        runtime: &Arc<RuntimeEnv>,
        source: Arc<dyn TableProvider>,
        location: &str,
        part: usize,
        kek_id: &str,
    ) -> PartWrite {
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), Arc::clone(runtime));
        let url = self.storage.url(&format!("{location}part-{part}.parquet"));
        let options = write_options(kek_id);
        tokio::spawn(async move {
            ctx.read_table(source)?
                .write_parquet(
                    &url,
                    DataFrameWriteOptions::new().with_single_file_output(true),
                    Some(options),
                )
                .await
        })
    }

    /// The first `n_rows` rows of `table`, its files in name order, as its declared schema.
    ///
    /// Read with parquet's reader rather than a DataFusion scan: DataFusion loads a file's
    /// page index only to prune by a predicate, so a scan under a bare LIMIT fetches (and
    /// decrypts) the whole column chunks of a row group — tens of MiB of a large dataset
    /// for a sample of 20. With the offset index, only the pages holding the first rows
    /// are fetched.
    async fn first_rows(
        &self,
        table: &TableSpec,
        n_rows: usize,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let schema = table.arrow_schema();
        let mut files: Vec<String> = self
            .storage
            .list(&table.location)
            .await?
            .into_iter()
            .filter(|f| f.ends_with(".parquet"))
            .collect();
        files.sort();
        let wanted = |file_schema: &Schema| -> Vec<usize> {
            schema
                .fields()
                .iter()
                .filter_map(|f| file_schema.index_of(f.name()).ok())
                .collect()
        };
        self.head_of_files(&files, n_rows, &wanted)
            .await?
            .iter()
            .map(|batch| as_declared(&schema, batch))
            .collect()
    }

    /// The first `n_rows` rows of `files`, in that order, of the columns `wanted` picks from
    /// each file's schema (as stored): only the pages holding those rows are fetched and
    /// decrypted, through the offset index ([`Self::first_rows`] says why not a scan).
    async fn head_of_files(
        &self,
        files: &[String],
        n_rows: usize,
        wanted: &(dyn Fn(&Schema) -> Vec<usize> + Sync),
    ) -> Result<Vec<RecordBatch>, EngineError> {
        use datafusion::config::EncryptionFactoryOptions;
        use datafusion::datasource::listing::PartitionedFile;
        use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
        use datafusion::datasource::physical_plan::parquet::DefaultParquetFileReaderFactory;
        use datafusion::parquet::arrow::ProjectionMask;
        use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
        use datafusion::parquet::arrow::async_reader::{
            AsyncFileReader, ParquetRecordBatchStreamBuilder,
        };
        use datafusion::parquet::file::metadata::PageIndexPolicy;
        use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;

        let factory = EnvelopeEncryptionFactory::new(Arc::clone(&self.envelope));
        let readers = DefaultParquetFileReaderFactory::new(self.storage.object_store());
        let metrics = ExecutionPlanMetricsSet::new();
        let mut batches = Vec::new();
        let mut left = n_rows;
        for file in files {
            if left == 0 {
                break;
            }
            let path = ObjectPath::from(file.as_str());
            let decryption = factory
                .get_file_decryption_properties(&EncryptionFactoryOptions::default(), &path)
                .await
                .map_err(internal)?
                .ok_or_else(|| EngineError::Internal("no decryption properties".into()))?;
            let options = ArrowReaderOptions::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                .with_file_decryption_properties(decryption);
            let size = self.storage.size(file).await?;
            let reader: Box<dyn AsyncFileReader> = readers
                .create_reader(0, PartitionedFile::new(file.clone(), size), None, &metrics)
                .map_err(internal)?;
            let builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options)
                .await
                .map_err(|e| EngineError::Storage(format!("{file}: {e}")))?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), wanted(builder.schema()));
            let mut stream = builder
                .with_projection(mask)
                .with_limit(left)
                .with_batch_size(left.min(8192))
                .build()
                .map_err(|e| EngineError::Storage(format!("{file}: {e}")))?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|e| EngineError::Storage(format!("{file}: {e}")))?;
                let take = batch.num_rows().min(left);
                left -= take;
                batches.push(batch.slice(0, take));
                if left == 0 {
                    break;
                }
            }
        }
        Ok(batches)
    }

    /// Up to `n_rows` rows of `table` chosen from its first rows, stable for a seed.
    async fn pick_rows(
        &self,
        table: &TableSpec,
        n_rows: usize,
        seed: u64,
    ) -> Result<RecordBatch, EngineError> {
        let batches = self
            .first_rows(table, SAMPLE_POOL_ROWS.max(n_rows.saturating_mul(2)))
            .await?;
        let pool = arrow::compute::concat_batches(&table.arrow_schema(), &batches)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let take = n_rows.min(pool.num_rows());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut chosen: Vec<usize> = sample_indices(&mut rng, pool.num_rows(), take).into_vec();
        chosen.sort_unstable();
        let indices =
            arrow::array::UInt32Array::from(chosen.iter().map(|&i| i as u32).collect::<Vec<_>>());
        arrow::compute::take_record_batch(&pool, &indices)
            .map_err(|e| EngineError::Internal(e.to_string()))
    }

    /// A masked sample of up to `n_rows` server-chosen rows. The choice is stable for a seed
    /// (the server derives it from tenant and dataset), so asking again reveals nothing new.
    ///
    /// # Errors
    /// On storage, key or internal failures.
    pub async fn sample(
        &self,
        table: &TableSpec,
        n_rows: usize,
        pseudonym_key: &SecretKey,
        seed: u64,
    ) -> Result<MaskedTable, EngineError> {
        let picked = self.pick_rows(table, n_rows, seed).await?;
        let rules: Vec<MaskingRule> = table.columns.iter().map(|c| c.masking.clone()).collect();
        mask_batches(&[picked], &rules, &display_key(pseudonym_key), n_rows)
    }

    /// Writes the data lab's copy of `table`: up to `n_rows` server-chosen rows (stable for a
    /// seed), every column masked by its rule with its type kept ([`mask_array_typed`]),
    /// encrypted at `location` (a folder) under `kek_id`. Returns the table as a lab job sees
    /// it: same name and types, values already masked (so its rules become `keep`).
    ///
    /// # Errors
    /// On storage, key or internal failures.
    pub async fn write_lab_table(
        &self,
        table: &TableSpec,
        n_rows: usize,
        pseudonym_key: &SecretKey,
        seed: u64,
        location: &str,
        kek_id: &str,
    ) -> Result<TableSpec, EngineError> {
        let picked = self.pick_rows(table, n_rows, seed).await?;
        let display = display_key(pseudonym_key);
        let columns = picked
            .columns()
            .iter()
            .zip(&table.columns)
            .map(|(array, spec)| mask_array_typed(array, &spec.masking, &display))
            .collect::<Result<Vec<_>, _>>()?;
        let masked = RecordBatch::try_new(table.arrow_schema(), columns)
            .map_err(|e| EngineError::Internal(format!("lab table: {e}")))?;
        self.write_encrypted_parts(masked.schema(), vec![vec![masked]], location, kek_id)
            .await?;
        Ok(TableSpec {
            name: table.name.clone(),
            dataset_id: table.dataset_id.clone(),
            location: location.to_owned(),
            columns: table
                .columns
                .iter()
                .map(|c| ColumnSpec {
                    masking: MaskingRule::Keep,
                    ..c.clone()
                })
                .collect(),
            // Lab results never leave the lab: the gate does not count them.
            privacy_unit: None,
        })
    }

    /// Runs a SQL job: plans it in the sandbox, writes the result encrypted, and returns its
    /// lineage and masked preview.
    ///
    /// # Errors
    /// [`JobError`]; only its `public_message` may reach the engineer.
    ///
    /// A failed job (including one that timed out) leaves no result file behind.
    ///
    /// # Cancel safety
    /// Dropping the future stops execution; a partially written (encrypted) result file may
    /// remain, and is never referenced: the server removes it when it records the failure.
    pub async fn run_job(&self, request: &JobRequest) -> Result<JobOutput, JobError> {
        self.run_job_with_progress(request, Arc::new(|_| {})).await
    }

    /// [`Engine::run_job`], calling `on_progress` as the job advances (at most every
    /// [`PROGRESS_INTERVAL`], and at every stage change).
    ///
    /// # Errors
    /// As [`Engine::run_job`].
    ///
    /// # Cancel safety
    /// As [`Engine::run_job`].
    pub async fn run_job_with_progress(
        &self,
        request: &JobRequest,
        on_progress: Arc<dyn Fn(JobProgress) + Send + Sync>,
    ) -> Result<JobOutput, JobError> {
        let progress = Arc::new(ProgressReporter::new(on_progress));
        // A thread, not a task: CPU-bound operators may occupy every runtime thread for
        // seconds without yielding, and a task would starve behind them.
        let (stop_ticker, stopped) = std::sync::mpsc::channel::<()>();
        let ticker = std::thread::Builder::new()
            .name("shuyu-progress".into())
            .stack_size(256 << 10)
            .spawn({
                let progress = Arc::clone(&progress);
                move || {
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(PROGRESS_INTERVAL)
                    {
                        progress.tick();
                    }
                }
            })
            .ok();
        let inner = self.run_job_inner(request, &progress);
        let result = match tokio::time::timeout(request.limits.timeout, inner).await {
            Ok(result) => result,
            Err(_) => Err(JobError::Timeout),
        };
        // Once a production job touches data, why it failed may depend on the data (a
        // hidden condition that divides by zero, exhausts memory or runs long): withheld.
        let result = match result {
            Err(e)
                if request.scope == JobScope::Production
                    && progress.has_touched_data()
                    && !e.is_withheld() =>
            {
                Err(JobError::Execution {
                    detail: format!("after execution started: {e}"),
                })
            }
            other => other,
        };
        drop(stop_ticker);
        if let Some(ticker) = ticker {
            let _ = ticker.join();
        }
        if result.is_err()
            && let Err(e) = self.storage.delete(&request.result_file).await
        {
            tracing::warn!(job = %request.job_id, error = %e, "removing a failed job's result");
        }
        result
    }

    async fn run_job_inner(
        &self,
        request: &JobRequest,
        progress: &ProgressReporter,
    ) -> Result<JobOutput, JobError> {
        progress.stage(JobStage::Planning);
        match &request.substrait_plan {
            Some(plan) if plan.len() > MAX_SUBSTRAIT_BYTES => {
                return Err(JobError::Refused(format!(
                    "the Substrait plan is {} bytes; the limit is {MAX_SUBSTRAIT_BYTES}",
                    plan.len()
                )));
            }
            None if request.sql.len() > request.limits.max_sql_bytes => {
                return Err(JobError::Refused(format!(
                    "the SQL text is {} bytes; the limit is {}",
                    request.sql.len(),
                    request.limits.max_sql_bytes
                )));
            }
            _ => {}
        }
        let runtime = self
            .runtime(
                Some(request.limits.memory_limit_bytes),
                request.spill.as_ref(),
            )
            .map_err(job_error)?;
        let ctx = self
            .session(runtime, &request.tables, &request.pseudonym_key, true)
            .map_err(job_error)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let state = ctx.state();
        let plan = match &request.substrait_plan {
            Some(bytes) => substrait_to_plan(&state, bytes).await?,
            None => {
                let dialect = state.config().options().sql_parser.dialect;
                let statement = state
                    .sql_to_statement(&request.sql, &dialect)
                    .map_err(job_error)?;
                check_expression_depth(&statement)?;
                state
                    .statement_to_plan(statement)
                    .await
                    .map_err(job_error)?
            }
        };
        // One gate for every plan, from SQL or Substrait: no DDL, DML or statements, and
        // only allow-listed plan nodes.
        options.verify_plan(&plan).map_err(job_error)?;
        check_plan_nodes(&plan)?;
        crate::functions::check_functions(&plan)?;

        if let Some(field) = plan
            .schema()
            .fields()
            .iter()
            .find(|f| f.name().to_ascii_lowercase().starts_with(HIDDEN_PREFIX))
        {
            return Err(JobError::Refused(format!(
                "result column names beginning with {HIDDEN_PREFIX} are reserved: rename {}",
                field.name().chars().take(64).collect::<String>()
            )));
        }

        let input_datasets = scanned_datasets(&plan, &request.tables);
        // Lineage follows the optimised plan (subqueries decorrelated into joins); an
        // optimiser failure leaves the analysed plan, which the walker reads more strictly.
        let optimised = state.optimize(&plan).unwrap_or_else(|_| plan.clone());
        // What reviewers read beside the query: rendered here, in the worker, so that the
        // server never plans engineer input.
        let plan_text = match &request.substrait_plan {
            Some(_) => PlanText::of_dataframe(&plan, &optimised, &request.tables),
            None => PlanText::of_sql(&optimised, &request.tables),
        };
        let lineage = plan_lineage(&optimised, &request.tables, &request.masking_defaults);
        let units = self.unit_sources(&request.tables).map_err(job_error)?;
        let sketch = crate::sketch::UnitSketchUdaf::udaf(&request.pseudonym_key);
        let (plan, disclosure) = match &request.dp {
            Some(spec) => {
                let carry = |p: &LogicalPlan| {
                    crate::disclosure::carry_units(
                        p,
                        &request.tables,
                        &units,
                        &request.masking_defaults,
                        Arc::clone(&sketch),
                    )
                };
                let (plan, guarantee) = crate::dp::rewrite(&plan, spec, &carry)?;
                let mut meta = DisclosureMeta::row_level();
                meta.units = crate::disclosure::UnitCount::Rows(
                    "differential privacy: cells are noisy, groups thresholded".into(),
                );
                meta.dp = Some(guarantee);
                (plan, meta)
            }
            None => crate::disclosure::rewrite(
                plan,
                &request.tables,
                &units,
                &request.masking_defaults,
                request.dominance_n,
                sketch,
                crate::sketch::UnitHashing::new(&request.pseudonym_key),
            ),
        };
        let plan = declared_strings(plan).map_err(job_error)?;
        let aggregate = disclosure.aggregate;
        let columns = lineage.columns;
        let mut state = with_sort_reservation(&ctx.state(), request.limits.memory_limit_bytes);
        let mut sort_merge_rerun = false;
        let (physical, Written { n_rows, head }) = loop {
            let physical = state.create_physical_plan(&plan).await.map_err(job_error)?;
            progress.touching_data();
            match self
                .write_result(&physical, &state, request, progress)
                .await
            {
                Ok(written) => break (physical, written),
                // Hash joins hold their build side in memory; sort-merge joins spill (through
                // the encrypted spill files) as the sorts before them do. A job that ran out of
                // memory with hash joins runs once more with sort-merge joins: slower, within
                // its limit. Its first, partial result is replaced. Without a place to spill
                // the sorts could not spill either: no rerun.
                Err(JobError::ResourcesExhausted)
                    if !sort_merge_rerun
                        && request.spill.is_some()
                        && has_hash_join(physical.as_ref()) =>
                {
                    tracing::info!(
                        job = %request.job_id,
                        "out of memory with hash joins: running again with sort-merge joins"
                    );
                    drop(physical);
                    // A fresh pool, shared evenly: the plan now holds a sort on each side
                    // of each join in each partition, and with a first-come pool one
                    // sort's rows leave another nothing for its merge.
                    let runtime = self
                        .runtime_with(
                            Some(request.limits.memory_limit_bytes),
                            request.spill.as_ref(),
                            true,
                        )
                        .map_err(job_error)?;
                    state = sort_merge_joins(&state, runtime, request.limits.memory_limit_bytes);
                    sort_merge_rerun = true;
                }
                Err(e) => return Err(e),
            }
        };
        let bytes_scanned = bytes_scanned(physical.as_ref());
        let shown = match (request.scope, &disclosure.dp) {
            (JobScope::Lab, _) | (JobScope::Production, Some(_)) => Shown::Masked,
            // Datasets that declare no protected column hold nothing a preview must hide,
            // whatever the plan's shape.
            (JobScope::Production, None) if no_protected_column(&request.tables) => {
                Shown::Ordinary {
                    rows_chosen_by: Vec::new(),
                }
            }
            (JobScope::Production, None) => Shown::Ordinary {
                rows_chosen_by: rows_chosen_by(&lineage.row_influencing, &lineage.unanalysable),
            },
        };
        let preview = preview(
            &head,
            &columns,
            aggregate,
            shown,
            request.limits.preview_rows,
            request.min_entities,
        )
        .map_err(|e| JobError::Execution {
            detail: e.to_string(),
        })?;
        Ok(JobOutput {
            n_rows,
            columns,
            aggregate,
            row_influencing: lineage.row_influencing,
            unanalysable: lineage.unanalysable,
            disclosure,
            preview,
            input_datasets,
            bytes_scanned,
            plan_text,
            sort_merge_rerun,
        })
    }

    /// Executes `physical` and writes its rows, encrypted, as the job's result (each unit
    /// sketch followed by its head, which the checks read); keeps the first rows for the
    /// preview.
    async fn write_result(
        &self,
        physical: &Arc<dyn ExecutionPlan>,
        state: &SessionState,
        request: &JobRequest,
        progress: &ProgressReporter,
    ) -> Result<Written, JobError> {
        let stored_schema = crate::sketch::schema_with_heads(&physical.schema());
        let task = Arc::new(TaskContext::from(state));
        let mut stream = execute_stream(Arc::clone(physical), task).map_err(job_error)?;
        let mut writer = self
            .result_writer(&request.result_file, &request.result_kek, &stored_schema)
            .await?;
        let mut n_rows: u64 = 0;
        let mut head: Vec<RecordBatch> = Vec::new();
        let mut head_rows = 0usize;
        progress.executing(Arc::clone(physical));
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(job_error)?;
            n_rows += batch.num_rows() as u64;
            if n_rows > request.limits.max_result_rows {
                return Err(JobError::Refused(format!(
                    "the result has more than {} rows",
                    request.limits.max_result_rows
                )));
            }
            if head_rows < request.limits.preview_rows {
                head_rows += batch.num_rows();
                head.push(batch.clone());
            }
            let stored = crate::sketch::with_heads(&batch, &stored_schema).map_err(job_error)?;
            writer
                .write(&stored)
                .await
                .map_err(|e| JobError::Execution {
                    detail: format!("writing the result: {e}"),
                })?;
            progress.rows(n_rows);
        }
        drop(stream);
        progress.stage(JobStage::Finishing);
        writer.close().await.map_err(|e| JobError::Execution {
            detail: format!("closing the result: {e}"),
        })?;
        Ok(Written { n_rows, head })
    }

    /// An encrypted Parquet writer for a job result at `file`, its data key wrapped by `kek_id`.
    async fn result_writer(
        &self,
        file: &str,
        kek_id: &str,
        schema: &SchemaRef,
    ) -> Result<AsyncArrowWriter<BufWriter>, JobError> {
        let path = ObjectPath::from(file);
        let factory = EnvelopeEncryptionFactory::new(Arc::clone(&self.envelope));
        let options = write_options(kek_id);
        let encryption = factory
            .get_file_encryption_properties(&options.crypto.factory_options, schema, &path)
            .await
            .map_err(job_error)?
            .ok_or_else(|| JobError::Execution {
                detail: "no encryption properties for the result".into(),
            })?;
        let mut properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .with_file_encryption_properties(encryption);
        // The population sketches are keyed hashes: they neither compress nor repeat, and
        // nothing filters on them. Written plain, they are not compressed, interned into a
        // dictionary or summarised when written, and not decompressed when checked.
        for field in schema.fields() {
            let sketch = [
                UNITS_PREFIX,
                UNIT_HEAD_PREFIX,
                POPULATION_PREFIX,
                POPULATION_HEAD_PREFIX,
            ]
            .iter()
            .any(|prefix| field.name().starts_with(prefix))
                && field.data_type() == &DataType::Binary;
            if sketch {
                let column = ColumnPath::from(field.name().as_str());
                properties = properties
                    .set_column_compression(column.clone(), Compression::UNCOMPRESSED)
                    .set_column_dictionary_enabled(column.clone(), false)
                    .set_column_statistics_enabled(column, EnabledStatistics::None);
            }
        }
        let properties = properties.build();
        let sink = BufWriter::new(self.storage.object_store(), path);
        AsyncArrowWriter::try_new(sink, Arc::clone(schema), Some(properties)).map_err(|e| {
            JobError::Execution {
                detail: format!("creating the result writer: {e}"),
            }
        })
    }

    /// Reads (decrypts) a stored result file.
    ///
    /// # Errors
    /// On storage or key failures.
    pub async fn read_result(&self, file: &str) -> Result<Vec<RecordBatch>, EngineError> {
        self.read_result_columns(file, false).await
    }

    /// Reads (decrypts) what the export checks need of a stored result: every column but
    /// the full unit sketches when the result carries their heads (results staged before
    /// heads were written are read whole). When [`crate::members_needed`] says so, read the
    /// result whole ([`Engine::read_result`]) and check that instead.
    ///
    /// # Errors
    /// On storage or key failures.
    pub async fn read_result_for_checks(
        &self,
        file: &str,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        self.read_result_columns(file, true).await
    }

    async fn read_result_columns(
        &self,
        file: &str,
        heads_only: bool,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let runtime = self.runtime(None, None).map_err(internal)?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        let columns = if heads_only {
            ResultColumns::ForChecks
        } else {
            ResultColumns::All
        };
        self.result_frame(&ctx, file, columns)
            .await?
            .collect()
            .await
            .map_err(internal)
    }

    /// At most `max_rows` rows of a stored result's visible columns (the gate's hidden
    /// columns are not read), for reviewers: only the pages holding those rows are fetched
    /// and decrypted (as for samples: [`Self::first_rows`]), whatever the result's size.
    ///
    /// # Errors
    /// On storage or key failures.
    pub async fn read_result_head(
        &self,
        file: &str,
        max_rows: usize,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let visible = |schema: &Schema| -> Vec<usize> {
            schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| !crate::disclosure::is_hidden(f.name()))
                .map(|(i, _)| i)
                .collect()
        };
        self.head_of_files(&[file.to_owned()], max_rows, &visible)
            .await
    }

    /// Whether a stored result still opens: its encrypted footer decrypts (under the file's
    /// data key, which its columns are encrypted with too). Reads the footer only, whatever
    /// the result's size (termination proves by trying).
    ///
    /// # Errors
    /// The reason it does not open.
    pub async fn try_open_result(&self, file: &str) -> Result<(), EngineError> {
        let runtime = self.runtime(None, None).map_err(internal)?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        self.result_frame(&ctx, file, ResultColumns::All)
            .await
            .map(|_| ())
    }

    /// A stored result as a DataFrame of `columns` in `ctx` (whose runtime reads through
    /// this engine's envelope).
    pub(crate) async fn result_frame(
        &self,
        ctx: &SessionContext,
        file: &str,
        columns: ResultColumns,
    ) -> Result<DataFrame, EngineError> {
        let url = ListingTableUrl::parse(self.storage.url(file)).map_err(internal)?;
        let format = ParquetFormat::default().with_options(read_options());
        let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .infer_schema(&ctx.state())
            .await
            .map_err(internal)?;
        let table = ListingTable::try_new(config).map_err(internal)?;
        let df = ctx.read_table(Arc::new(table)).map_err(internal)?;
        let names: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let has_heads = names.iter().any(|n| n.starts_with(UNIT_HEAD_PREFIX));
        // A full sketch with a head beside it is left out; one without (a count) is kept.
        let has_head = |name: &str| {
            let head = if let Some(k) = name.strip_prefix(UNITS_PREFIX) {
                format!("{UNIT_HEAD_PREFIX}{k}")
            } else if let Some(m) = name.strip_prefix(POPULATION_PREFIX) {
                format!("{POPULATION_HEAD_PREFIX}{m}")
            } else {
                return false;
            };
            names.contains(&head)
        };
        let keep: Vec<&str> = match columns {
            ResultColumns::All => return Ok(df),
            ResultColumns::ForChecks if !has_heads => return Ok(df),
            ResultColumns::ForChecks => names
                .iter()
                .map(String::as_str)
                .filter(|n| !has_head(n))
                .collect(),
            ResultColumns::Visible => names
                .iter()
                .map(String::as_str)
                .filter(|n| !crate::disclosure::is_hidden(n))
                .collect(),
        };
        df.select_columns(&keep).map_err(internal)
    }
}

/// Sums the `bytes_scanned` metric of every node of a physical plan (live while it runs).
fn bytes_scanned(plan: &dyn ExecutionPlan) -> u64 {
    let own = plan
        .metrics()
        .and_then(|m| m.sum_by_name("bytes_scanned"))
        .map(|v| v.as_usize() as u64)
        .unwrap_or(0);
    own + plan
        .children()
        .into_iter()
        .map(|child| bytes_scanned(child.as_ref()))
        .sum::<u64>()
}

/// What [`Engine::write_result`] wrote: its rows, and the first batches for the preview.
struct Written {
    n_rows: u64,
    head: Vec<RecordBatch>,
}

/// Whether `plan` holds a hash join (whose build side cannot spill).
fn has_hash_join(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<datafusion::physical_plan::joins::HashJoinExec>()
        || plan
            .children()
            .into_iter()
            .any(|child| has_hash_join(child.as_ref()))
}

/// How many of a sort's spill files one merge pass reads: one per 32 MiB of the job's pool,
/// between 4 and 128 (16 at the default 512 MiB); unbounded (0) without a pool.
/// DataFusion's multi-level merge otherwise reads as many files at once as the pool lets it
/// reserve buffers for, and that memory cannot spill: at SF 10, one sort's merge of a few
/// hundred files held 440 MB of a 512 MiB pool, and the next sort could not reserve its
/// first 8 MiB. Bounded, a merge of more files takes further passes over the (encrypted)
/// spill files, within its share.
fn spill_merge_fan_in(memory_limit: Option<usize>) -> usize {
    memory_limit.map_or(0, |limit| (limit / (32 << 20)).clamp(4, 128))
}

/// `state` with each sort reserving for its in-memory merge a 64th of the job's memory pool
/// (DataFusion's 10 MiB at most): a plan of several sorts — a sort-merge join sorts both of
/// its sides in every partition — still fits a small pool.
fn with_sort_reservation(state: &SessionState, memory_limit: usize) -> SessionState {
    let mut config = state.config().clone();
    let reservation = &mut config.options_mut().execution.sort_spill_reservation_bytes;
    *reservation = (*reservation).min(memory_limit / 64);
    SessionStateBuilder::new_from_existing(state.clone())
        .with_config(config)
        .build()
}

/// `state` planning equi-joins as sort-merge joins, which spill, instead of hash joins, over
/// `runtime` — but for joins with a side of at most a 16th of `memory_limit` by the
/// planner's statistics, which stay hash joins ([`SmallSidesHashJoined`]).
fn sort_merge_joins(
    state: &SessionState,
    runtime: Arc<RuntimeEnv>,
    memory_limit: usize,
) -> SessionState {
    let mut config = state.config().clone();
    config.options_mut().optimizer.prefer_hash_join = false;
    let mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> =
        vec![Arc::new(SmallSidesHashJoined {
            max_build_bytes: memory_limit / 16,
        })];
    rules.extend(state.physical_optimizers().iter().cloned());
    SessionStateBuilder::new_from_existing(state.clone())
        .with_config(config)
        .with_runtime_env(runtime)
        .with_physical_optimizer_rules(rules)
        .build()
}

/// A part file being written.
type PartWrite = tokio::task::JoinHandle<Result<Vec<RecordBatch>, DataFusionError>>;

/// The outcome of finished part writes: the first failure, if any.
fn join_part_writes(
    written: Vec<Result<Result<Vec<RecordBatch>, DataFusionError>, tokio::task::JoinError>>,
) -> Result<(), EngineError> {
    for write in written {
        write
            .map_err(|e| EngineError::Internal(format!("writing task: {e}")))?
            .map_err(internal)?;
    }
    Ok(())
}

fn internal(e: DataFusionError) -> EngineError {
    EngineError::Internal(e.to_string())
}

/// Maps a DataFusion error to a job error: only planning errors, whose text derives from the
/// SQL itself, are passed through; anything raised while touching data is withheld.
fn job_error(e: DataFusionError) -> JobError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(which) => {
            // Which operators held the pool (names and sizes, no values): for operators,
            // in the worker's log that the sealed failure record keeps.
            let which: String = which.chars().take(1_000).collect();
            tracing::warn!(consumers = %which, "a job ran out of memory");
            JobError::ResourcesExhausted
        }
        DataFusionError::Plan(msg) => JobError::Plan(first_line(msg)),
        DataFusionError::SQL(parser_error, _) => {
            JobError::Plan(first_line(&parser_error.to_string()))
        }
        DataFusionError::SchemaError(schema_error, _) => {
            JobError::Plan(first_line(&schema_error.to_string()))
        }
        DataFusionError::NotImplemented(msg) => {
            JobError::Plan(first_line(&format!("not supported: {msg}")))
        }
        other => JobError::Execution {
            detail: other.to_string(),
        },
    }
}

fn first_line(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or_default();
    line.chars().take(300).collect()
}

/// Largest Substrait plan accepted, in bytes.
pub const MAX_SUBSTRAIT_BYTES: usize = 1 << 20;

/// Decodes a Substrait plan and resolves it through the session's (tenant-only) catalog.
/// Protobuf decoding stops at a nesting depth of 100, which bounds expression depth.
async fn substrait_to_plan(
    state: &datafusion::execution::SessionState,
    bytes: &[u8],
) -> Result<LogicalPlan, JobError> {
    use datafusion_substrait::substrait::proto::Plan;
    use prost::Message;

    let plan = Plan::decode(bytes).map_err(|e| {
        JobError::Refused(format!(
            "the dataframe job is not a valid Substrait plan ({e})"
        ))
    })?;
    datafusion_substrait::logical_plan::consumer::from_substrait_plan(state, &plan)
        .await
        .map_err(job_error)
}

/// Deepest expression nesting a query may have. Planning cost grows steeply with depth and
/// a flat chain such as `1+1+…` nests one level per term (ENGINE-NOTES: 5,000 terms abort
/// DataFusion's planner on an ordinary stack), so deeper queries are refused before
/// planning. Real queries nest a few dozen levels.
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;

/// Refuses a parsed query whose expressions nest deeper than [`MAX_EXPRESSION_DEPTH`]. The
/// walk stops at the limit, so it never recurses deeper than that itself.
fn check_expression_depth(statement: &datafusion::sql::parser::Statement) -> Result<(), JobError> {
    use std::ops::ControlFlow;

    use datafusion::sql::parser::Statement as DfStatement;
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Visit, Visitor};

    struct Depth {
        current: usize,
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _expr: &SqlExpr) -> ControlFlow<()> {
            self.current += 1;
            if self.current > MAX_EXPRESSION_DEPTH {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        fn post_visit_expr(&mut self, _expr: &SqlExpr) -> ControlFlow<()> {
            self.current -= 1;
            ControlFlow::Continue(())
        }
    }
    let DfStatement::Statement(statement) = statement else {
        // DDL-like DataFusion statements are refused by the SQL options anyway.
        return Ok(());
    };
    let mut depth = Depth { current: 0 };
    match statement.visit(&mut depth) {
        ControlFlow::Break(()) => Err(JobError::Refused(format!(
            "the query nests expressions more than {MAX_EXPRESSION_DEPTH} levels deep"
        ))),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Refuses every plan node outside the allow-list, including inside subqueries.
fn check_plan_nodes(plan: &LogicalPlan) -> Result<(), JobError> {
    let mut refused: Option<String> = None;
    plan.apply_with_subqueries(|node| {
        let allowed = matches!(
            node,
            LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::Window(_)
                | LogicalPlan::Aggregate(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::Repartition(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::TableScan(_)
                | LogicalPlan::EmptyRelation(_)
                | LogicalPlan::Subquery(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Values(_)
                | LogicalPlan::Distinct(_)
                | LogicalPlan::Unnest(_)
        );
        if allowed {
            Ok(TreeNodeRecursion::Continue)
        } else {
            refused = Some(match node {
                LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => {
                    "EXPLAIN is not available for jobs".to_owned()
                }
                other => format!("{} is not allowed in a job", node_name(other)),
            });
            Ok(TreeNodeRecursion::Stop)
        }
    })
    .map_err(job_error)?;
    match refused {
        Some(reason) => Err(JobError::Refused(reason)),
        None => Ok(()),
    }
}

pub(crate) fn node_name(plan: &LogicalPlan) -> String {
    let display = plan.display().to_string();
    display
        .split(|c: char| c == ':' || c.is_whitespace())
        .next()
        .unwrap_or("this statement")
        .to_owned()
}

fn scanned_datasets(plan: &LogicalPlan, tables: &[TableSpec]) -> Vec<String> {
    let mut names = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            names.insert(scan.table_name.table().to_owned());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    tables
        .iter()
        .filter(|t| names.contains(&t.name))
        .map(|t| t.dataset_id.clone())
        .collect()
}

/// What a preview may show.
#[derive(Debug, Clone)]
enum Shown {
    /// Every column, masked by lineage (lab jobs on masked copies; a differential-privacy
    /// job's noisy cells). Tokens of derived identifiers use a key made for this preview
    /// alone, so no token can be matched against `pseudonym()` of a guess.
    Masked,
    /// Production: values of ordinary columns only, and none at all (nor the row count)
    /// when protected columns choose the rows, named here.
    Ordinary { rows_chosen_by: Vec<String> },
}

/// Whether every column of every table a job reads is ordinary.
fn no_protected_column(tables: &[TableSpec]) -> bool {
    tables.iter().all(|t| {
        t.columns
            .iter()
            .all(|c| c.classification == shuyu_policy::Classification::Ordinary)
    })
}

/// The protected columns (and plan parts the lineage could not follow) that decide which
/// rows or groups a result has.
fn rows_chosen_by(influence: &[RowInfluence], unanalysable: &[String]) -> Vec<String> {
    let mut chosen: Vec<String> = influence
        .iter()
        .filter(|r| r.classification != shuyu_policy::Classification::Ordinary)
        .map(|r| format!("{} ({})", r.source, r.role))
        .collect();
    chosen.extend(unanalysable.iter().map(|u| format!("{u} (not analysable)")));
    chosen.sort();
    chosen.dedup();
    chosen
}

/// The engineer's preview (see [`Shown`]); in aggregate results every aggregated cell of a
/// group smaller than k is suppressed as well.
fn preview(
    batches: &[RecordBatch],
    columns: &[OutputColumn],
    aggregate: bool,
    shown: Shown,
    max_rows: usize,
    min_group_rows: u64,
) -> Result<MaskedTable, EngineError> {
    let mut visible = Vec::new();
    let mut group_rows = Vec::new();
    for batch in batches {
        let n_visible = columns.len();
        visible.push(
            batch
                .project(&(0..n_visible).collect::<Vec<_>>())
                .map_err(|e| EngineError::Internal(format!("projecting the preview: {e}")))?,
        );
        if aggregate {
            group_rows.extend(crate::checks::cell_units(batch)?);
        }
    }
    let (keep, rows_withheld, note): (Vec<usize>, bool, String) = match &shown {
        Shown::Masked => ((0..columns.len()).collect(), false, String::new()),
        Shown::Ordinary { rows_chosen_by } if !rows_chosen_by.is_empty() => (
            Vec::new(),
            true,
            format!(
                "production result: protected columns choose its rows ({}), so neither its \
                 values nor its row count are shown; request an export to have it reviewed",
                rows_chosen_by.join(", ")
            ),
        ),
        Shown::Ordinary { .. } => {
            let keep: Vec<usize> = columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.classification == shuyu_policy::Classification::Ordinary)
                .map(|(i, _)| i)
                .collect();
            let note = if keep.len() == columns.len() {
                "production result: every column is ordinary".to_owned()
            } else {
                "production result: only ordinary columns are shown; the others derive from \
                 protected columns and leave only through an export's review"
                    .to_owned()
            };
            (keep, false, note)
        }
    };
    let withheld: Vec<String> = columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !keep.contains(i))
        .map(|(_, c)| c.name.clone())
        .collect();
    let shown_columns: Vec<OutputColumn> = keep.iter().map(|&i| columns[i].clone()).collect();
    let projected: Vec<RecordBatch> = visible
        .iter()
        .map(|b| b.project(&keep))
        .collect::<Result<_, _>>()
        .map_err(|e| EngineError::Internal(format!("projecting the preview: {e}")))?;
    let rules: Vec<MaskingRule> = shown_columns
        .iter()
        .map(|c| c.preview_rule.clone())
        .collect();
    let key = SecretKey::generate();
    let mut table = if keep.is_empty() {
        MaskedTable::default()
    } else {
        mask_batches(&projected, &rules, &key, max_rows)?
    };
    if aggregate {
        for (row, n) in table.rows.iter_mut().zip(&group_rows) {
            if (*n as u64) < min_group_rows {
                for (cell, column) in row.iter_mut().zip(&shown_columns) {
                    if column.aggregated && cell.is_some() {
                        *cell = Some(shuyu_policy::suppressed().to_owned());
                    }
                }
            }
        }
    }
    if keep.is_empty() {
        table.columns = Vec::new();
        table.rows = Vec::new();
    }
    table.withheld = withheld;
    table.rows_withheld = rows_withheld;
    table.note = note;
    Ok(table)
}

/// `plan` with its `Utf8View` output columns cast to `Utf8`, the type results are stored and
/// checked in (jobs scan strings as views, [`scan_schema`]).
fn declared_strings(plan: LogicalPlan) -> Result<LogicalPlan, DataFusionError> {
    if !plan
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type() == &DataType::Utf8View)
    {
        return Ok(plan);
    }
    let exprs: Vec<Expr> = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::from((qualifier, field)));
            if field.data_type() == &DataType::Utf8View {
                cast(column, DataType::Utf8).alias_qualified(qualifier.cloned(), field.name())
            } else {
                column
            }
        })
        .collect();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

/// `batch` as `schema`: its columns by name, cast where the file stores another type, null
/// where the file has no such column (as a scan of the declared schema reads it).
fn as_declared(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch, EngineError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(Arc::clone(column)),
            Some(column) => arrow::compute::cast(column, field.data_type())
                .map_err(|e| EngineError::Internal(format!("{}: {e}", field.name()))),
            None => Ok(arrow::array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| EngineError::Internal(format!("sample rows: {e}")))
}
