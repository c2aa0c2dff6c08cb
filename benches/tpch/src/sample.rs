//! `shuyu-bench sample`: ingests a large resident-records dataset through the real server
//! (as a Parquet upload by the steward), then times `SampleDataset` calls by an engineer:
//! each authenticates, audits, opens the encrypted dataset, reads a pool of rows, picks the
//! server-chosen rows and masks them.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use shuyu_client::v1 as pb;

use crate::domain::{Domain, DomainOptions, column};
use crate::ingest::{column_specs, datafusion_csv_to_parquet, schema};
use crate::residents;
use crate::stats::{median, ms, percentile};

/// Options of `shuyu-bench sample`.
#[derive(Debug, Clone, clap::Args)]
pub struct SampleOptions {
    /// Data rows of the dataset.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Timed `SampleDataset` calls.
    #[arg(long, default_value_t = 200)]
    pub calls: usize,
    /// Rows asked for per call (the policy caps it at `sample.rows`, 20 by default).
    #[arg(long, default_value_t = 20)]
    pub sample_rows: u32,
    /// Parent of the temporary directory; the system's by default.
    #[arg(long)]
    pub work_dir: Option<std::path::PathBuf>,
}

/// Runs the benchmark.
///
/// # Errors
/// If generation, the domain, the ingest or a call fails.
pub async fn run(options: SampleOptions) -> Result<()> {
    ensure!(options.calls >= 1, "--calls must be at least 1");
    let temp = match &options.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("shuyu-sample-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("shuyu-sample-").tempdir()?,
    };
    let started = Instant::now();
    let csv_path = temp.path().join("residents.csv");
    {
        let mut csv = String::new();
        residents::write_csv(options.rows, &mut csv);
        std::fs::write(&csv_path, &csv)?;
    }
    let parquet_path = temp.path().join("residents.parquet");
    datafusion_csv_to_parquet(&csv_path, &schema(&column_specs()?), &parquet_path).await?;
    std::fs::remove_file(&csv_path)?;
    let upload = std::fs::read(&parquet_path)?;
    println!(
        "sample: {} rows generated as a {:.1} MiB Parquet upload in {:.1} s",
        options.rows,
        upload.len() as f64 / (1u64 << 20) as f64,
        started.elapsed().as_secs_f64()
    );

    let mut domain = Domain::start(
        temp.path(),
        &DomainOptions {
            max_ingest_bytes: (upload.len() * 2).max(64 << 20),
            worker_program: None,
            worker_malloc: None,
            memory_limit_bytes: None,
        },
    )
    .await?;
    let header = pb::IngestHeader {
        name: "residents".into(),
        description: "Resident records (synthetic, benchmark)".into(),
        format: pb::DataFormat::Parquet as i32,
        columns: residents::COLUMNS
            .iter()
            .map(|(name, data_type, classification, masking)| {
                column(name, data_type, classification, masking)
            })
            .collect(),
    };
    let started = Instant::now();
    let dataset = domain.ingest_and_grant(header, upload).await?;
    ensure!(
        dataset.n_rows == options.rows as u64,
        "stored {} rows",
        dataset.n_rows
    );
    println!(
        "ingested through the server (steward's IngestDataset, max_ingest_bytes raised to fit) \
         and granted in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let request = pb::SampleDatasetRequest {
        dataset_id: dataset.id.clone(),
        n_rows: options.sample_rows,
    };
    let started = Instant::now();
    let first = domain
        .engineer
        .catalog
        .sample_dataset(request.clone())
        .await?
        .into_inner();
    let first_ms = started.elapsed();
    let n_sampled = first.sample.map_or(0, |s| s.rows.len());
    let mut latencies: Vec<Duration> = Vec::with_capacity(options.calls);
    for _ in 0..options.calls {
        let started = Instant::now();
        let answer = domain
            .engineer
            .catalog
            .sample_dataset(request.clone())
            .await?
            .into_inner();
        latencies.push(started.elapsed());
        ensure!(
            answer.sample.map_or(0, |s| s.rows.len()) == n_sampled,
            "a sample changed size"
        );
    }
    // The floor of any call, measured the same way: an audited read that touches no data
    // (`WhoAmI`: authenticate, authorise, hold checks, one audit record committed).
    let mut floor: Vec<Duration> = Vec::with_capacity(options.calls);
    for _ in 0..options.calls {
        let started = Instant::now();
        domain
            .engineer
            .session
            .who_am_i(pb::WhoAmIRequest {})
            .await?;
        floor.push(started.elapsed());
    }
    domain.shutdown().await?;
    let total: Duration = latencies.iter().sum();
    println!(
        "SampleDataset as an engineer, {} masked rows per call: first (untimed warm-up) {} ms; \
         {} timed calls: p50 {} ms, p99 {} ms, max {} ms, mean {} ms",
        n_sampled,
        ms(first_ms),
        options.calls,
        ms(median(&latencies)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.iter().copied().max().unwrap_or_default()),
        ms(total / options.calls as u32)
    );
    println!(
        "WhoAmI as the same engineer (any audited call's floor), {} calls: p50 {} ms, p99 {} ms",
        options.calls,
        ms(median(&floor)),
        ms(percentile(&floor, 99.0)),
    );
    println!("sample_p99_ms={}", ms(percentile(&latencies, 99.0)));
    Ok(())
}
