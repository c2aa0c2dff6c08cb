//! `shuyu-bench ingest`: a resident-records CSV ingested two ways: (a) DataFusion parses it
//! and writes plaintext Parquet; (b) `Engine::ingest` validates it and writes encrypted
//! Parquet through the envelope (a fresh data key wrapped by a KEK).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use arrow::datatypes::{Field, Schema, SchemaRef};
use bytes::Bytes;
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use shuyu_engine::{ColumnSpec, Engine, IngestFormat, IngestOptions, Storage};
use shuyu_vault::{Envelope, KekProvider, SecretKey, VaultError};

use crate::residents;
use crate::stats::{median, ms};

/// The id of the benchmark's one key-encryption key.
pub const BENCH_KEK: &str = "bench";

/// Options of `shuyu-bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestBenchOptions {
    /// Data rows of the CSV.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Runs per side; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Parent of the temporary directory; the system's by default.
    #[arg(long)]
    pub work_dir: Option<std::path::PathBuf>,
}

/// A KEK provider holding one generated key.
#[derive(Debug)]
pub struct OneKek(SecretKey);

impl OneKek {
    /// A provider with a fresh key.
    pub fn generate() -> OneKek {
        OneKek(SecretKey::generate())
    }
}

impl KekProvider for OneKek {
    fn kek(&self, kek_id: &str) -> Result<SecretKey, VaultError> {
        if kek_id == BENCH_KEK {
            Ok(self.0.clone())
        } else {
            Err(VaultError::UnknownKey(kek_id.to_owned()))
        }
    }
}

/// The declared columns of the resident-records table.
///
/// # Errors
/// If a declaration does not parse (a bug in [`residents::COLUMNS`]).
pub fn column_specs() -> Result<Vec<ColumnSpec>> {
    residents::COLUMNS
        .iter()
        .map(|(name, data_type, classification, masking)| {
            Ok(ColumnSpec {
                name: (*name).to_owned(),
                data_type: data_type.parse()?,
                classification: classification
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
                masking: masking
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
            })
        })
        .collect()
}

/// The Arrow schema the declared columns are stored as.
pub fn schema(columns: &[ColumnSpec]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.arrow_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// DataFusion: reads the CSV file with the declared schema and writes one plaintext Parquet
/// file with default options.
pub async fn datafusion_csv_to_parquet(csv: &Path, schema: &Schema, out: &Path) -> Result<()> {
    let ctx = SessionContext::new();
    ctx.read_csv(
        csv.to_str().context("non-UTF-8 path")?,
        CsvReadOptions::new().schema(schema).has_header(true),
    )
    .await?
    .write_parquet(
        out.to_str().context("non-UTF-8 path")?,
        DataFrameWriteOptions::new().with_single_file_output(true),
        Some(TableParquetOptions::new()),
    )
    .await?;
    Ok(())
}

/// Runs the benchmark.
///
/// # Errors
/// If either side fails.
pub async fn run(options: IngestBenchOptions) -> Result<()> {
    ensure!(options.runs >= 1, "--runs must be at least 1");
    ensure!(options.rows >= 1, "--rows must be at least 1");
    let temp = match &options.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("shuyu-ingest-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("shuyu-ingest-").tempdir()?,
    };
    let columns = column_specs()?;
    let schema = schema(&columns);
    let mut csv = String::new();
    residents::write_csv(options.rows, &mut csv);
    let csv_path = temp.path().join("residents.csv");
    std::fs::write(&csv_path, &csv)?;
    let input = Bytes::from(csv.into_bytes());
    println!(
        "ingest: {} rows, {} columns, {:.1} MiB CSV | runs {} (median, sides alternating)",
        options.rows,
        columns.len(),
        input.len() as f64 / (1u64 << 20) as f64,
        options.runs
    );

    let objects = temp.path().join("objects");
    std::fs::create_dir_all(&objects)?;
    let engine = Engine::new(
        Storage::local(&objects)?,
        Arc::new(Envelope::new(Arc::new(OneKek::generate()))),
    );
    let plain_dir = temp.path().join("plain");
    std::fs::create_dir_all(&plain_dir)?;

    let mut times_a: Vec<Duration> = Vec::new();
    let mut times_b: Vec<Duration> = Vec::new();
    let mut cpu_a: Vec<ProcessUsage> = Vec::new();
    let mut cpu_b: Vec<ProcessUsage> = Vec::new();
    let mut size_a = 0;
    let mut size_b = 0;
    for run_idx in 0..options.runs {
        for side in [run_idx % 2, (run_idx + 1) % 2] {
            if side == 0 {
                let out = plain_dir.join(format!("run{run_idx}.parquet"));
                let (started, usage) = (Instant::now(), ProcessUsage::now());
                datafusion_csv_to_parquet(&csv_path, &schema, &out).await?;
                times_a.push(started.elapsed());
                cpu_a.push(ProcessUsage::now().since(&usage));
                size_a = std::fs::metadata(&out)?.len();
            } else {
                let location = format!("datasets/run{run_idx}/");
                let (started, usage) = (Instant::now(), ProcessUsage::now());
                let outcome = engine
                    .ingest(
                        IngestFormat::Csv,
                        input.clone(),
                        &columns,
                        &location,
                        BENCH_KEK,
                        &IngestOptions::default(),
                    )
                    .await?;
                times_b.push(started.elapsed());
                cpu_b.push(ProcessUsage::now().since(&usage));
                ensure!(
                    outcome.n_rows == options.rows as u64,
                    "stored {} rows",
                    outcome.n_rows
                );
                // One file per core for a large input.
                size_b = std::fs::read_dir(objects.join(&location))?
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum();
            }
        }
    }
    // Where (b)'s time goes: the same ingest from the Parquet file (a) wrote, so without CSV
    // parsing: Parquet decode, cast, encrypted write.
    let parquet_input = Bytes::from(std::fs::read(plain_dir.join("run0.parquet"))?);
    let mut times_b_parquet: Vec<Duration> = Vec::new();
    for run_idx in 0..options.runs {
        let started = Instant::now();
        engine
            .ingest(
                IngestFormat::Parquet,
                parquet_input.clone(),
                &columns,
                &format!("datasets/parquet{run_idx}/"),
                BENCH_KEK,
                &IngestOptions::default(),
            )
            .await?;
        times_b_parquet.push(started.elapsed());
    }
    let a = median(&times_a);
    let b = median(&times_b);
    println!(
        "(a) DataFusion CSV → plaintext Parquet: median {} ms (runs: {}), {:.1} MiB",
        ms(a),
        times_a
            .iter()
            .map(|t| ms(*t))
            .collect::<Vec<_>>()
            .join(", "),
        size_a as f64 / (1u64 << 20) as f64
    );
    println!(
        "(b) Engine::ingest CSV → validated, encrypted Parquet: median {} ms (runs: {}), {:.1} MiB",
        ms(b),
        times_b
            .iter()
            .map(|t| ms(*t))
            .collect::<Vec<_>>()
            .join(", "),
        size_b as f64 / (1u64 << 20) as f64
    );
    println!(
        "(b') Engine::ingest from that Parquet file instead of CSV (no CSV parsing): median {} ms",
        ms(median(&times_b_parquet))
    );
    for (side, usage) in [("(a)", &cpu_a), ("(b)", &cpu_b)] {
        println!(
            "process usage {side} (all threads; CPU in 10 ms ticks): {}",
            ProcessUsage::medians(usage)
        );
    }
    println!(
        "throughput: (a) {:.0} rows/s | (b) {:.0} rows/s",
        options.rows as f64 / a.as_secs_f64(),
        options.rows as f64 / b.as_secs_f64()
    );
    println!("ingest_ratio={:.3}", b.as_secs_f64() / a.as_secs_f64());
    Ok(())
}

/// What this process has used so far (every thread), from `/proc/self/stat`; zeros where
/// that cannot be read. CPU times are in 10 ms ticks (Linux reports them in USER_HZ = 100).
#[derive(Debug, Clone, Copy, Default)]
struct ProcessUsage {
    user: Duration,
    system: Duration,
    /// Minor page faults: pages the kernel mapped (and zeroed) on first touch.
    minor_faults: u64,
}

impl ProcessUsage {
    fn now() -> ProcessUsage {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return ProcessUsage::default();
        };
        // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return ProcessUsage::default();
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 10 (minflt), 14 (utime) and 15 (stime) of the line: 7, 11, 12 after ')'.
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ProcessUsage {
            user: Duration::from_millis(field(11) * 10),
            system: Duration::from_millis(field(12) * 10),
            minor_faults: field(7),
        }
    }

    fn since(&self, earlier: &ProcessUsage) -> ProcessUsage {
        ProcessUsage {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
        }
    }

    /// The medians of each figure over runs, as one line.
    fn medians(runs: &[ProcessUsage]) -> String {
        let user = median(&runs.iter().map(|u| u.user).collect::<Vec<_>>());
        let system = median(&runs.iter().map(|u| u.system).collect::<Vec<_>>());
        let mut faults: Vec<u64> = runs.iter().map(|u| u.minor_faults).collect();
        faults.sort_unstable();
        format!(
            "median user {} ms, system {} ms, minor page faults {} (runs: {})",
            ms(user),
            ms(system),
            faults.get(faults.len() / 2).copied().unwrap_or(0),
            runs.iter()
                .map(|u| format!("{}+{}", ms(u.user), ms(u.system)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}
