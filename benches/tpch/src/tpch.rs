//! `shuyu-bench tpch`: the 22 TPC-H queries, side by side in one run:
//! (a) bare DataFusion in this process over plaintext Parquet; (b) Shuyu jobs through the full
//! path (client → gRPC → worker process → encrypted staging → audit); and, to tell where the
//! difference goes, (c) `Engine::run_job` in this process over the same encrypted datasets
//! (sandboxed session, decryption, encrypted result, preview) without worker or gRPC.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use shuyu_client::{Client, v1 as pb};
use shuyu_engine::{
    ColumnSpec, ColumnType, Engine, JobLimits, JobRequest, SpillOptions, TableSpec,
};
use shuyu_policy::{Classification, MaskingRule};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

use crate::domain::{Domain, DomainOptions, column};
use crate::stats::{median, median_u64, mib, ms};

/// The 22 queries, standard TPC-H text with the default substitution parameters.
pub(crate) const QUERIES: [&str; 22] = [
    include_str!("../queries/q1.sql"),
    include_str!("../queries/q2.sql"),
    include_str!("../queries/q3.sql"),
    include_str!("../queries/q4.sql"),
    include_str!("../queries/q5.sql"),
    include_str!("../queries/q6.sql"),
    include_str!("../queries/q7.sql"),
    include_str!("../queries/q8.sql"),
    include_str!("../queries/q9.sql"),
    include_str!("../queries/q10.sql"),
    include_str!("../queries/q11.sql"),
    include_str!("../queries/q12.sql"),
    include_str!("../queries/q13.sql"),
    include_str!("../queries/q14.sql"),
    include_str!("../queries/q15.sql"),
    include_str!("../queries/q16.sql"),
    include_str!("../queries/q17.sql"),
    include_str!("../queries/q18.sql"),
    include_str!("../queries/q19.sql"),
    include_str!("../queries/q20.sql"),
    include_str!("../queries/q21.sql"),
    include_str!("../queries/q22.sql"),
];

/// A trivial job: measures the fixed cost of one job (worker start, session, staging).
const PROBE_SQL: &str = "select count(*) as n from region";

/// Options of `shuyu-bench tpch`.
#[derive(Debug, Clone, clap::Args)]
pub struct TpchOptions {
    /// TPC-H scale factor.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Runs per query per side; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The release `shuyu` binary the server starts as `shuyu worker`.
    #[arg(long, default_value = "target/release/shuyu")]
    pub shuyu_bin: PathBuf,
    /// Poll `GetJob` at this interval instead of following the job with `WatchJob` (0, the
    /// default, as `Client::wait_job` does). Each poll is an audited RPC: on 2 cores polling
    /// every 5 ms slowed the jobs themselves by 10-25 %.
    #[arg(long, default_value_t = 0)]
    pub poll_ms: u64,
    /// Only these queries (e.g. `--queries 1,6,18`); all 22 by default.
    #[arg(long, value_delimiter = ',')]
    pub queries: Vec<usize>,
    /// Memory pool of one Shuyu job, MiB (the bench policy's `limits.memory_limit_bytes`).
    #[arg(long, default_value_t = 4096)]
    pub memory_limit_mib: u64,
    /// Memory pool of side (a), bare DataFusion, MiB (spilling to the system's temporary
    /// directory); unbounded when left out. At SF 10 an unbounded (a) can take the whole
    /// machine's memory.
    #[arg(long)]
    pub bare_memory_limit_mib: Option<u64>,
    /// Skip side (c), `Engine::run_job` in this process.
    #[arg(long)]
    pub skip_direct: bool,
    /// Runs of the trivial probe job per side.
    #[arg(long, default_value_t = 5)]
    pub probe_runs: usize,
    /// Parent of the temporary directory (data and domain); the system's by default.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Declare the datasets as a steward would (`steward_view`): customers, suppliers and
    /// their keys in orders and partsupp are privacy units, names, addresses and phones are
    /// direct identifiers, balances and prices sensitive, so the gate's rewrite runs on every
    /// aggregate over them. The last line is then `tpch_sf<scale>_gated_ratio=`.
    #[arg(long)]
    pub gated: bool,
    /// Whole runs (data, domain and every query anew each time): each prints its total
    /// ratio (`…_total_ratio_run<i>=`), the median of them is the last line.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// The workers' glibc malloc tunables (the server's `worker.malloc_tunables`, e.g.
    /// `glibc.malloc.arena_max=1`; an empty string for glibc's defaults); the server's
    /// default when left out.
    #[arg(long)]
    pub worker_malloc: Option<String>,
}

/// One generated table: its plaintext Parquet file and declared columns.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) columns: Vec<(String, ColumnType)>,
    pub(crate) n_rows: u64,
}

/// How a steward declares TPC-H's columns for `--gated`: (classification, masking rule).
/// Customers and suppliers are the people (privacy units: the first pseudonymised direct
/// identifier of each table that names them); what identifies them alone is a direct
/// identifier, what they own or pay is sensitive. Their nation (25 of them) and segment,
/// parts, nations, regions and the line items' other columns stay ordinary.
fn steward_view(column: &str) -> (&'static str, &'static str) {
    match column {
        "c_custkey" | "o_custkey" | "s_suppkey" | "ps_suppkey" | "l_suppkey" => {
            ("direct_identifier", "pseudonym")
        }
        "c_name" | "s_name" => ("direct_identifier", "partial_name"),
        "c_phone" | "s_phone" => ("direct_identifier", "partial_mobile"),
        "c_address" | "s_address" => ("direct_identifier", "suppress"),
        "c_acctbal" | "s_acctbal" | "o_totalprice" | "ps_supplycost" | "l_extendedprice" => {
            ("sensitive", "generalize_number:100")
        }
        _ => ("ordinary", "keep"),
    }
}

/// A column's declaration in the run's mode.
fn declared(column: &str, gated: bool) -> (&'static str, &'static str) {
    if gated {
        steward_view(column)
    } else {
        ("ordinary", "keep")
    }
}

/// The declared schema (the types Shuyu stores, all nullable, as `TableSpec::arrow_schema`).
fn declared_schema(columns: &[(String, ColumnType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, data_type)| Field::new(name, data_type.arrow_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Converts generated batches to the declared types (decimals to float64, dates stay dates,
/// string views to strings, int32 to int64) and writes them as one plaintext Parquet file,
/// the way `Engine::ingest` writes its (encrypted) file: a DataFusion single-file write with
/// default Parquet options.
async fn write_table(
    name: &'static str,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    source_schema: SchemaRef,
    dir: &Path,
) -> Result<Table> {
    let columns = source_schema
        .fields()
        .iter()
        .map(|f| {
            let declared = ColumnType::from_arrow(f.data_type())
                .with_context(|| format!("{name}.{}: no declared type", f.name()))?;
            Ok((f.name().clone(), declared))
        })
        .collect::<Result<Vec<_>>>()?;
    let schema = declared_schema(&columns);
    let mut converted = Vec::new();
    let mut n_rows = 0u64;
    for batch in batches {
        let batch = batch?;
        n_rows += batch.num_rows() as u64;
        let arrays = batch
            .columns()
            .iter()
            .zip(&columns)
            .map(|(array, (_, t))| arrow::compute::cast(array, &t.arrow_type()))
            .collect::<Result<Vec<_>, _>>()?;
        converted.push(RecordBatch::try_new(Arc::clone(&schema), arrays)?);
    }
    let path = dir.join(format!("{name}.parquet"));
    let ctx = SessionContext::new();
    ctx.read_batches(converted)?
        .write_parquet(
            path.to_str().context("non-UTF-8 path")?,
            DataFrameWriteOptions::new().with_single_file_output(true),
            Some(TableParquetOptions::new()),
        )
        .await?;
    Ok(Table {
        name,
        path,
        columns,
        n_rows,
    })
}

/// [`generate`], then says what it wrote; the tables and their plaintext bytes.
///
/// # Errors
/// As [`generate`], or if a written file cannot be read back.
pub(crate) async fn generate_reported(scale: f64, dir: &Path) -> Result<(Vec<Table>, u64)> {
    let started = Instant::now();
    let tables = generate(scale, dir).await?;
    let mut plain_bytes = 0;
    for table in &tables {
        plain_bytes += std::fs::metadata(&table.path)?.len();
    }
    println!(
        "generated {} tables ({} rows, {} MiB plaintext Parquet) in {:.1} s",
        tables.len(),
        tables.iter().map(|t| t.n_rows).sum::<u64>(),
        mib(plain_bytes),
        started.elapsed().as_secs_f64()
    );
    Ok((tables, plain_bytes))
}

/// Generates the eight TPC-H tables at `scale` as plaintext Parquet files under `dir`.
async fn generate(scale: f64, dir: &Path) -> Result<Vec<Table>> {
    std::fs::create_dir_all(dir)?;
    Ok(vec![
        write_table(
            "nation",
            NationArrow::new(NationGenerator::new(scale, 1, 1)),
            NationArrow::schema_ref(),
            dir,
        )
        .await?,
        write_table(
            "region",
            RegionArrow::new(RegionGenerator::new(scale, 1, 1)),
            RegionArrow::schema_ref(),
            dir,
        )
        .await?,
        write_table(
            "part",
            PartArrow::new(PartGenerator::new(scale, 1, 1)),
            PartArrow::schema_ref(),
            dir,
        )
        .await?,
        write_table(
            "supplier",
            SupplierArrow::new(SupplierGenerator::new(scale, 1, 1)),
            SupplierArrow::schema_ref(),
            dir,
        )
        .await?,
        write_table(
            "partsupp",
            PartSuppArrow::new(PartSuppGenerator::new(scale, 1, 1)),
            PartSuppArrow::schema_ref(),
            dir,
        )
        .await?,
        write_table(
            "customer",
            CustomerArrow::new(CustomerGenerator::new(scale, 1, 1)),
            CustomerArrow::schema_ref(),
            dir,
        )
        .await?,
        write_table(
            "orders",
            OrderArrow::new(OrderGenerator::new(scale, 1, 1)),
            OrderArrow::schema_ref(),
            dir,
        )
        .await?,
        write_table(
            "lineitem",
            LineItemArrow::new(LineItemGenerator::new(scale, 1, 1)),
            LineItemArrow::schema_ref(),
            dir,
        )
        .await?,
    ])
}

/// Uploads each table through the steward's `IngestDataset` as Parquet (columns declared as
/// [`declared`] says for `gated`), grants it to the domain's tenant and checks the stored row
/// count; returns each dataset with its table.
pub(crate) async fn ingest_tables<'t>(
    domain: &mut Domain,
    tables: &'t [Table],
    scale: f64,
    gated: bool,
) -> Result<Vec<(pb::Dataset, &'t Table)>> {
    let mut datasets = Vec::new();
    for table in tables {
        let header = pb::IngestHeader {
            name: table.name.to_owned(),
            description: format!("TPC-H {} at SF {}", table.name, scale),
            format: pb::DataFormat::Parquet as i32,
            columns: table
                .columns
                .iter()
                .map(|(name, t)| {
                    let (class, masking) = declared(name, gated);
                    column(name, t.as_str(), class, masking)
                })
                .collect(),
        };
        let dataset = domain
            .ingest_and_grant(header, std::fs::read(&table.path)?)
            .await?;
        ensure!(
            dataset.n_rows == table.n_rows,
            "{}: {} rows stored, {} generated",
            table.name,
            dataset.n_rows,
            table.n_rows
        );
        datasets.push((dataset, table));
    }
    Ok(datasets)
}

/// Side (a): bare DataFusion over the plaintext files.
/// Side (a): stock DataFusion over the plaintext files, two partitions as Shuyu's jobs; with
/// `memory_limit` a pool of that size, spilling to the system's temporary directory.
async fn bare_context(tables: &[Table], memory_limit: Option<usize>) -> Result<SessionContext> {
    let config = SessionConfig::new().with_target_partitions(2);
    let ctx = match memory_limit {
        None => SessionContext::new_with_config(config),
        Some(limit) => SessionContext::new_with_config_rt(
            config,
            datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_memory_limit(limit, 1.0)
                .build_arc()?,
        ),
    };
    for table in tables {
        ctx.register_parquet(
            table.name,
            table.path.to_str().context("non-UTF-8 path")?,
            ParquetReadOptions::default(),
        )
        .await?;
    }
    Ok(ctx)
}

async fn run_bare(ctx: &SessionContext, sql: &str) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let batches = ctx.sql(sql).await?.collect().await?;
    let elapsed = started.elapsed();
    Ok((elapsed, batches.iter().map(|b| b.num_rows() as u64).sum()))
}

/// What one Shuyu job run showed.
#[derive(Debug, Clone)]
struct JobRun {
    /// Client-observed: submit until the finished state was seen.
    elapsed: Duration,
    /// Server-side: job created until recorded finished.
    server_ms: u64,
    /// The worker process's wall time (spawn to exit).
    worker_ms: u64,
    /// Time in the queue before a worker started.
    queued_ms: u64,
    peak_memory_bytes: u64,
    /// Rows of the result, `None` when the engineer's preview withholds the count (a
    /// protected column chose the rows: `--gated`).
    n_rows: Option<u64>,
}

/// Side (b): submits `sql` as the engineer and follows it until it has finished: with
/// `WatchJob`, or by polling `GetJob` every `poll` if one is given.
async fn run_shuyu(
    engineer: &mut Client,
    scenario: &str,
    sql: &str,
    poll: Option<Duration>,
) -> Result<JobRun> {
    let started = Instant::now();
    let submitted = engineer
        .jobs
        .submit_job(shuyu_client::production_sql(sql, scenario))
        .await?
        .into_inner()
        .job
        .unwrap_or_default();
    let deadline = started + Duration::from_secs(900);
    let job = match poll {
        None => {
            engineer
                .wait_job(&submitted.id, Duration::from_secs(900))
                .await?
        }
        Some(poll) => loop {
            tokio::time::sleep(poll).await;
            let job = engineer
                .jobs
                .get_job(pb::GetJobRequest {
                    job_id: submitted.id.clone(),
                })
                .await?
                .into_inner()
                .job
                .unwrap_or_default();
            if shuyu_client::is_finished(&job) {
                break job;
            }
            ensure!(Instant::now() < deadline, "job {} did not finish", job.id);
        },
    };
    let elapsed = started.elapsed();
    if job.status != pb::JobStatus::Succeeded as i32 {
        bail!("job {} {}", job.id, job.error);
    }
    let usage = job.usage.unwrap_or_default();
    Ok(JobRun {
        elapsed,
        server_ms: job.finished_at_ms.saturating_sub(job.created_at_ms) as u64,
        worker_ms: usage.wall_ms,
        queued_ms: usage.queued_ms,
        peak_memory_bytes: usage.peak_memory_bytes,
        n_rows: (!job.preview.as_ref().is_some_and(|p| p.rows_withheld)).then_some(job.n_rows),
    })
}

/// Side (c): the engine in this process over the domain's encrypted datasets, with the
/// domain's own key store (opened a second time, read-only use).
struct Direct {
    engine: Engine,
    tables: Vec<TableSpec>,
    limits: JobLimits,
    masking: shuyu_policy::MaskingDefaults,
    results: PathBuf,
    n_jobs: usize,
}

impl Direct {
    fn open(
        data_dir: &Path,
        datasets: &[(pb::Dataset, &Table)],
        memory_limit_bytes: u64,
        gated: bool,
    ) -> Result<Direct> {
        let opened =
            shuyu_server::domain::open(data_dir, &shuyu_server::domain::MetadataConfig::default())?;
        let envelope = opened.envelope();
        let objects = opened.dir.objects();
        let storage = shuyu_engine::Storage::local(&objects)?;
        let tables = datasets
            .iter()
            .map(|(dataset, table)| {
                let columns = table
                    .columns
                    .iter()
                    .map(|(name, data_type)| {
                        let (class, masking) = declared(name, gated);
                        Ok(ColumnSpec {
                            name: name.clone(),
                            data_type: *data_type,
                            classification: class.parse::<Classification>()?,
                            masking: masking.parse::<MaskingRule>()?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(TableSpec {
                    name: dataset.name.clone(),
                    dataset_id: dataset.id.clone(),
                    location: format!("datasets/{}/", dataset.id),
                    privacy_unit: TableSpec::privacy_unit_of(&columns),
                    columns,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let policy = shuyu_policy::Policy::builtin();
        Ok(Direct {
            engine: Engine::new(storage, envelope),
            tables,
            limits: JobLimits {
                max_sql_bytes: policy.limits.max_sql_bytes,
                memory_limit_bytes: memory_limit_bytes as usize,
                timeout: Duration::from_secs(policy.limits.timeout_secs),
                max_result_rows: policy.limits.max_result_rows,
                preview_rows: policy.sample.preview_rows,
            },
            masking: policy.masking,
            results: objects.join("results").join("bench-direct"),
            n_jobs: 0,
        })
    }

    async fn run(&mut self, sql: &str) -> Result<(Duration, u64)> {
        self.n_jobs += 1;
        let job_id = format!("direct{}", self.n_jobs);
        std::fs::create_dir_all(self.results.join(&job_id))?;
        let request = JobRequest {
            scope: shuyu_engine::JobScope::Production,
            job_id: job_id.clone(),
            sql: sql.to_owned(),
            substrait_plan: None,
            tables: self.tables.clone(),
            pseudonym_key: shuyu_vault::SecretKey::generate(),
            result_file: format!("results/bench-direct/{job_id}/result.parquet"),
            result_kek: shuyu_server::DOMAIN_KEK.to_owned(),
            limits: self.limits.clone(),
            masking_defaults: self.masking.clone(),
            min_entities: 10,
            dominance_n: 2,
            dp: None,
            // As the server's default worker configuration: encrypted spilling into the
            // job's result folder, up to 10 GiB.
            spill: Some(SpillOptions {
                dir: self.results.join(&job_id),
                max_bytes: 10 << 30,
            }),
        };
        let started = Instant::now();
        let output = self
            .engine
            .run_job(&request)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((started.elapsed(), output.n_rows))
    }
}

/// The medians of one query on every side.
#[derive(Debug, Default)]
struct QueryResult {
    a: Option<Duration>,
    b: Option<Duration>,
    c: Option<Duration>,
    b_server_ms: u64,
    b_worker_ms: u64,
    b_queued_ms: u64,
    b_peak_bytes: u64,
    rows_a: Option<u64>,
    rows_b: Option<u64>,
    /// The engineer's preview withheld (b)'s row count.
    rows_b_withheld: bool,
    rows_c: Option<u64>,
    errors: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Bare,
    Shuyu,
    Direct,
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(160)
        .collect()
}

fn ratio(num: Duration, den: Duration) -> String {
    if den.is_zero() {
        return "-".into();
    }
    format!("{:.2}", num.as_secs_f64() / den.as_secs_f64())
}

/// Runs the benchmark.
///
/// # Errors
/// If data generation, the domain or an ingest fails (a failing query is reported instead).
pub async fn run(options: TpchOptions) -> Result<()> {
    ensure!(options.repeat >= 1, "--repeat must be at least 1");
    let scale = if options.scale == 1.0 {
        "1".to_owned()
    } else {
        options.scale.to_string()
    };
    let mut ratios = Vec::with_capacity(options.repeat);
    for i in 1..=options.repeat {
        if options.repeat > 1 {
            println!("== run {i} of {}", options.repeat);
        }
        let ratio = run_once(&options).await?;
        if options.repeat > 1 {
            let name = if options.gated { "gated" } else { "total" };
            println!("tpch_sf{scale}_{name}_ratio_run{i}={ratio:.3}");
        }
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    // The median (of an even count, the mean of the middle two).
    let n = ratios.len();
    let median = if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    };
    let name = if options.gated { "gated" } else { "total" };
    println!("tpch_sf{scale}_{name}_ratio={median:.3}");
    Ok(())
}

/// One whole run; its total ratio (Shuyu jobs ÷ bare DataFusion).
async fn run_once(options: &TpchOptions) -> Result<f64> {
    ensure!(options.runs >= 1, "--runs must be at least 1");
    ensure!(options.scale > 0.0, "--scale must be positive");
    let shuyu_bin = crate::absolute(options.shuyu_bin.clone());
    ensure!(
        shuyu_bin.is_file(),
        "{} does not exist: build it with `cargo build --release -p shuyu` or pass --shuyu-bin",
        shuyu_bin.display()
    );
    let selected: Vec<usize> = if options.queries.is_empty() {
        (1..=22).collect()
    } else {
        options.queries.clone()
    };
    ensure!(
        selected.iter().all(|q| (1..=22).contains(q)),
        "queries are numbered 1 to 22"
    );
    let temp = match &options.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("shuyu-tpch-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("shuyu-tpch-").tempdir()?,
    };
    let poll = (options.poll_ms > 0).then(|| Duration::from_millis(options.poll_ms));
    let memory_limit_bytes = options.memory_limit_mib << 20;

    println!(
        "TPC-H SF {} | runs {} (median, sides alternating) | {} | worker {}",
        options.scale,
        options.runs,
        match poll {
            None => "jobs followed with WatchJob".to_owned(),
            Some(poll) => format!("GetJob polled every {} ms", poll.as_millis()),
        },
        shuyu_bin.display()
    );
    let (tables, plain_bytes) =
        generate_reported(options.scale, &temp.path().join("plain")).await?;

    let mut domain = Domain::start(
        temp.path(),
        &DomainOptions {
            max_ingest_bytes: (plain_bytes as usize).max(64 << 20) * 2,
            worker_program: Some(shuyu_bin),
            worker_malloc: options.worker_malloc.clone(),
            memory_limit_bytes: Some(memory_limit_bytes),
        },
    )
    .await?;
    let started = Instant::now();
    let datasets = ingest_tables(&mut domain, &tables, options.scale, options.gated).await?;
    println!(
        "ingested and granted {} datasets through the server (steward, Parquet upload) in {:.1} s",
        datasets.len(),
        started.elapsed().as_secs_f64()
    );

    let listed: Vec<&pb::Dataset> = datasets.iter().map(|(d, _)| d).collect();
    let scenario = domain.approved_scenario(&listed).await?;

    let bare = bare_context(
        &tables,
        options
            .bare_memory_limit_mib
            .map(|mib| (mib << 20) as usize),
    )
    .await?;
    let mut direct = if options.skip_direct {
        None
    } else {
        Some(Direct::open(
            &domain.data_dir,
            &datasets,
            memory_limit_bytes,
            options.gated,
        )?)
    };

    // Fixed cost of one job: a trivial query on every side.
    let mut probe_a = Vec::new();
    let mut probe_b = Vec::new();
    let mut probe_c = Vec::new();
    let mut probe_server = Vec::new();
    let mut probe_worker = Vec::new();
    for _ in 0..options.probe_runs {
        probe_a.push(run_bare(&bare, PROBE_SQL).await?.0);
        let job = run_shuyu(&mut domain.engineer, &scenario, PROBE_SQL, poll).await?;
        probe_b.push(job.elapsed);
        probe_server.push(job.server_ms);
        probe_worker.push(job.worker_ms);
        if let Some(direct) = direct.as_mut() {
            probe_c.push(direct.run(PROBE_SQL).await?.0);
        }
    }
    println!(
        "fixed cost per job (`{PROBE_SQL}`, median of {}): (a) bare {} ms | (b) Shuyu {} ms \
         [server {} ms, worker process {} ms] | (c) engine in-process {} ms",
        options.probe_runs,
        ms(median(&probe_a)),
        ms(median(&probe_b)),
        median_u64(&probe_server),
        median_u64(&probe_worker),
        if probe_c.is_empty() {
            "-".into()
        } else {
            ms(median(&probe_c))
        },
    );

    println!();
    println!(
        "{:<5} {:>9} {:>9} {:>6} {:>9} {:>6} {:>9} {:>9} {:>8} {:>9} {:>9} {:>5}",
        "query",
        "a_ms",
        "b_ms",
        "b/a",
        "c_ms",
        "c/a",
        "b_srv_ms",
        "b_wrk_ms",
        "b_peak",
        "rows_a",
        "rows_b",
        "same"
    );
    let mut results = Vec::new();
    for &q in &selected {
        let sql = QUERIES[q - 1];
        let mut result = QueryResult::default();
        let mut times_a = Vec::new();
        let mut times_b = Vec::new();
        let mut times_c = Vec::new();
        let mut jobs = Vec::new();
        let mut sides = vec![Side::Bare, Side::Shuyu];
        if direct.is_some() {
            sides.push(Side::Direct);
        }
        for run_idx in 0..options.runs {
            // Alternate which side goes first.
            let mut order = sides.clone();
            order.rotate_left(run_idx % sides.len());
            for side in order {
                match side {
                    Side::Bare if result.rows_a.is_some() || run_idx == 0 => {
                        match run_bare(&bare, sql).await {
                            Ok((t, rows)) => {
                                times_a.push(t);
                                result.rows_a = Some(rows);
                            }
                            Err(e) => result
                                .errors
                                .push(format!("(a) {}", first_line(&e.to_string()))),
                        }
                    }
                    Side::Shuyu
                        if result.rows_b.is_some() || result.rows_b_withheld || run_idx == 0 =>
                    {
                        match run_shuyu(&mut domain.engineer, &scenario, sql, poll).await {
                            Ok(job) => {
                                times_b.push(job.elapsed);
                                result.rows_b = job.n_rows;
                                result.rows_b_withheld = job.n_rows.is_none();
                                jobs.push(job);
                            }
                            Err(e) => result
                                .errors
                                .push(format!("(b) {}", first_line(&e.to_string()))),
                        }
                    }
                    Side::Direct if result.rows_c.is_some() || run_idx == 0 => {
                        if let Some(direct) = direct.as_mut() {
                            match direct.run(sql).await {
                                Ok((t, rows)) => {
                                    times_c.push(t);
                                    result.rows_c = Some(rows);
                                }
                                Err(e) => result
                                    .errors
                                    .push(format!("(c) {}", first_line(&e.to_string()))),
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        result.a = (!times_a.is_empty()).then(|| median(&times_a));
        result.b = (!times_b.is_empty()).then(|| median(&times_b));
        result.c = (!times_c.is_empty()).then(|| median(&times_c));
        result.b_server_ms = median_u64(&jobs.iter().map(|j| j.server_ms).collect::<Vec<_>>());
        result.b_worker_ms = median_u64(&jobs.iter().map(|j| j.worker_ms).collect::<Vec<_>>());
        result.b_queued_ms = median_u64(&jobs.iter().map(|j| j.queued_ms).collect::<Vec<_>>());
        result.b_peak_bytes = jobs.iter().map(|j| j.peak_memory_bytes).max().unwrap_or(0);
        let show = |d: Option<Duration>| d.map_or_else(|| "FAIL".to_owned(), ms);
        let rows = |r: Option<u64>| r.map_or_else(|| "-".to_owned(), |r| r.to_string());
        // A count withheld from the engineer is compared through (c), which sees it.
        let same = match (result.rows_a, result.rows_b, result.rows_c) {
            (Some(a), Some(b), c) if a == b && c.is_none_or(|c| c == a) => "yes",
            (Some(a), None, Some(c)) if result.rows_b_withheld && a == c => "yes",
            (Some(_), None, None) if result.rows_b_withheld => "-",
            (Some(_), _, _) if result.rows_b.is_some() || result.rows_b_withheld => "NO",
            _ => "-",
        };
        println!(
            "{:<5} {:>9} {:>9} {:>6} {:>9} {:>6} {:>9} {:>9} {:>8} {:>9} {:>9} {:>5}",
            format!("Q{q}"),
            show(result.a),
            show(result.b),
            match (result.a, result.b) {
                (Some(a), Some(b)) => ratio(b, a),
                _ => "-".into(),
            },
            if direct.is_some() {
                show(result.c)
            } else {
                "-".into()
            },
            match (result.a, result.c) {
                (Some(a), Some(c)) => ratio(c, a),
                _ => "-".into(),
            },
            result.b_server_ms,
            result.b_worker_ms,
            format!("{}MiB", mib(result.b_peak_bytes)),
            rows(result.rows_a),
            if result.rows_b_withheld {
                "withheld".to_owned()
            } else {
                rows(result.rows_b)
            },
            same
        );
        for error in &result.errors {
            println!("      Q{q} failed: {error}");
        }
        results.push((q, result));
    }

    let mut sum_a = Duration::ZERO;
    let mut sum_b = Duration::ZERO;
    let mut sum_c = Duration::ZERO;
    let mut sum_server = 0u64;
    let mut sum_worker = 0u64;
    let mut sum_queued = 0u64;
    let mut included = 0;
    let mut excluded = Vec::new();
    for (q, result) in &results {
        match (result.a, result.b) {
            (Some(a), Some(b)) => {
                included += 1;
                sum_a += a;
                sum_b += b;
                sum_c += result.c.unwrap_or_default();
                sum_server += result.b_server_ms;
                sum_worker += result.b_worker_ms;
                sum_queued += result.b_queued_ms;
            }
            _ => excluded.push(format!("Q{q}")),
        }
    }
    println!();
    println!(
        "totals over {included} queries: (a) bare DataFusion {} ms | (b) Shuyu {} ms \
         [server-side {} ms, of which worker processes {} ms and queue {} ms] | (c) engine in-process {} ms",
        ms(sum_a),
        ms(sum_b),
        sum_server,
        sum_worker,
        sum_queued,
        if direct.is_some() {
            ms(sum_c)
        } else {
            "-".into()
        }
    );
    if direct.is_some() {
        println!("(c)/(a) total ratio: {}", ratio(sum_c, sum_a));
    }
    if excluded.is_empty() {
        println!("no query failed; all are in the totals");
    } else {
        println!(
            "excluded from the totals (failed on a side): {}",
            excluded.join(", ")
        );
    }
    drop(direct);
    domain.shutdown().await?;
    let total_ratio = if sum_a.is_zero() {
        f64::NAN
    } else {
        sum_b.as_secs_f64() / sum_a.as_secs_f64()
    };
    Ok(total_ratio)
}
