//! `shuyu-bench`: on-demand benchmarks (never run in CI): TPC-H through Shuyu against bare
//! DataFusion, ingest against a plain DataFusion Parquet write, masked-sample latency, the
//! export gate's checks, and jobs from many tenants at once.
//! `benches/README.md` says how to run them; `benches/RESULTS.md` holds the figures.

mod concurrent;
mod domain;
mod gate;
mod ingest;
mod residents;
mod sample;
mod stats;
mod tpch;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "shuyu-bench", about = "Shuyu benchmarks (run on demand)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The 22 TPC-H queries: bare DataFusion over plaintext Parquet against Shuyu jobs.
    Tpch(tpch::TpchOptions),
    /// CSV ingest: DataFusion writing plaintext Parquet against `Engine::ingest`.
    Ingest(ingest::IngestBenchOptions),
    /// `SampleDataset` latency over a large dataset, as an engineer.
    Sample(sample::SampleOptions),
    /// The export gate's checks on a 10,000-cell aggregate against the job's run time.
    Gate(gate::GateOptions),
    /// Jobs from many tenants at once against the same jobs one after another, a small job's
    /// queue wait while one tenant floods the queue, and server and worker peak memory.
    Concurrent(concurrent::ConcurrentOptions),
}

/// A path made absolute against the current directory (the server hands it to workers).
pub fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map(|dir| dir.join(&path))
            .unwrap_or(path)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    shuyu_server::install_crypto_provider();
    // Quiet unless asked (`RUST_LOG=warn`): the in-process server and engine log to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Tpch(options) => tpch::run(options).await,
        Command::Ingest(options) => ingest::run(options).await,
        Command::Sample(options) => sample::run(options).await,
        Command::Gate(options) => gate::run(options).await,
        Command::Concurrent(options) => concurrent::run(options).await,
    }
}
