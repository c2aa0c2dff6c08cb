//! `shuyu-bench gate`: what the export gate costs on an aggregate of 10,000 cells, against
//! the job that produced it, side by side in one run.
//!
//! In process, over one encrypted dataset of person-level visits (a privacy unit, a sensitive
//! cost): the job `GROUP BY region, category` (100 × 100 cells, with `count` and a sensitive
//! `sum`) runs
//! - (a) with the gate's rewrite (privacy-unit sketches per cell, per-person dominance
//!   statistics) — the job as Shuyu runs it;
//! - (b) over the same files declared without a privacy unit and with `cost` ordinary, so no
//!   rewrite happens: the cost of the rewrite is (a) / (b);
//! - (f) the floor: the information the gate needs, computed by plain SQL over (b)'s files
//!   (per cell the visits, the sum, the count of distinct persons and the largest per-person
//!   total: a `GROUP BY cell, person`, then `GROUP BY cell`), as a job like (b). A lower
//!   bound: the second largest total, which the gate keeps too, has no plain-SQL form cheaper
//!   than an ordered aggregate (`nth_value(s, 2 ORDER BY s DESC)` alone made this side three
//!   times slower than (a)). `gate_floor_ratio=<(a) / (f)>` is what the rewrite costs beyond
//!   that floor (target ≤ 1.3);
//!
//! then the checks run over (a)'s staged result (reading and decrypting it, every check):
//! - (c) with an empty release ledger;
//! - (d) with a ledger holding an earlier release of 9,900 cells of similar sizes (the same
//!   query over 99% of the visits, which leaves out one of the 100 regions), released through
//!   the blocking differencing check: the 9,900 cells whose populations are released ones
//!   are recognised by their digests, the other 100 are compared with the ledger;
//! - (e) with the same ledger as if it had been released under a policy that let reviewers
//!   judge close pairs (not screened): every cell is compared exactly, so the full sketches
//!   are read and the 9,900 identical member lists compared.
//!
//! The checks read as the server does: the sketches' heads first, the whole result only when
//! a comparison or the reconstruction audit needs the members. The last line is
//! `gate_check_ratio=<(d) / (a)>`: the target is at most 0.05.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use bytes::Bytes;
use shuyu_engine::{
    ColumnSpec, ColumnType, Engine, GateInput, IngestFormat, IngestOptions, JobLimits, JobOutput,
    JobRequest, ReleasedCell, Storage, TableSpec, result_sketches, run_export_checks,
    run_export_checks_on_heads,
};
use shuyu_policy::{Classification, MaskingRule, Policy};
use shuyu_vault::{Envelope, KekProvider, SecretKey, VaultError};

use crate::stats::median;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Options of `shuyu-bench gate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GateOptions {
    /// Visit rows.
    #[arg(long, default_value_t = 4_000_000)]
    pub rows: usize,
    /// Distinct people (each has rows / people visits, spread over cells).
    #[arg(long, default_value_t = 400_000)]
    pub people: usize,
    /// Timed runs per side.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Parent of the temporary directory; the system's by default.
    #[arg(long)]
    pub work_dir: Option<std::path::PathBuf>,
    /// Runs one side's job only (`a`, `b` or `f`), `--runs` times, and prints its median: to
    /// profile one side. No checks, no ratios.
    #[arg(long, value_parser = ["a", "b", "f"])]
    pub only: Option<String>,
}

#[derive(Debug)]
struct Keks(HashMap<String, SecretKey>);

impl KekProvider for Keks {
    fn kek(&self, kek_id: &str) -> Result<SecretKey, VaultError> {
        self.0
            .get(kek_id)
            .cloned()
            .ok_or_else(|| VaultError::UnknownKey(kek_id.to_owned()))
    }
}

fn columns(protected: bool) -> Vec<ColumnSpec> {
    let spec = |name: &str, data_type, classification, masking| ColumnSpec {
        name: name.into(),
        data_type,
        classification,
        masking,
    };
    let (person, cost) = if protected {
        (Classification::DirectIdentifier, Classification::Sensitive)
    } else {
        (Classification::Ordinary, Classification::Ordinary)
    };
    let masked = |c: Classification| {
        if c == Classification::Ordinary {
            MaskingRule::Keep
        } else {
            MaskingRule::Suppress
        }
    };
    vec![
        spec("person_id", ColumnType::String, person, masked(person)),
        spec(
            "region",
            ColumnType::Int64,
            Classification::Ordinary,
            MaskingRule::Keep,
        ),
        spec(
            "category",
            ColumnType::Int64,
            Classification::Ordinary,
            MaskingRule::Keep,
        ),
        spec("cost", ColumnType::Float64, cost, masked(cost)),
    ]
}

const SQL: &str = "SELECT region, category, count(*) AS n, sum(cost) AS total FROM visits \
                   GROUP BY region, category";
/// The floor of (a): what the gate needs per cell, in plain SQL (the largest per-person
/// total; see the module's doc for the second).
const FLOOR_SQL: &str = "SELECT region, category, sum(n) AS n, sum(s) AS total, \
                         count(*) AS people, max(s) AS top1 \
                         FROM (SELECT region, category, person_id, count(*) AS n, sum(cost) AS s \
                         FROM visits GROUP BY region, category, person_id) AS per \
                         GROUP BY region, category";
const EARLIER_SQL: &str = "SELECT region, category, count(*) AS n, sum(cost) AS total \
                           FROM visits WHERE cost > 1.0 GROUP BY region, category";

/// Runs the benchmark.
///
/// # Errors
/// If generation, ingest, a job or a check fails.
pub async fn run(options: GateOptions) -> Result<()> {
    ensure!(options.runs >= 1, "--runs must be at least 1");
    ensure!(
        options.people >= 1 && options.rows >= options.people,
        "--rows must be at least --people"
    );
    let temp = match &options.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("shuyu-gate-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new().prefix("shuyu-gate-").tempdir()?,
    };
    let keks = Arc::new(Keks(
        ["domain", "tenant"]
            .into_iter()
            .map(|id| (id.to_owned(), SecretKey::generate()))
            .collect(),
    ));
    let engine = Engine::new(
        Storage::local(&temp.path().join("objects"))?,
        Arc::new(Envelope::new(keks)),
    );
    let started = Instant::now();
    let mut csv = String::with_capacity(options.rows * 32);
    csv.push_str("person_id,region,category,cost\n");
    for i in 0..options.rows {
        // People are spread over cells; costs vary (and 1% are at most 1.0, which the
        // earlier release leaves out).
        let person =
            ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize % options.people;
        let cost = if i % 100 == 0 {
            0.5
        } else {
            10.0 + (i % 997) as f64
        };
        let _ = writeln!(csv, "P{person:07},{},{},{cost}", i % 100, (i / 100) % 100);
    }
    let location = "datasets/ds_visits/".to_owned();
    engine
        .ingest(
            IngestFormat::Csv,
            Bytes::from(csv),
            &columns(true),
            &location,
            "domain",
            &IngestOptions::default(),
        )
        .await
        .map_err(|e| anyhow!("ingest: {e}"))?;
    println!(
        "gate: {} visits of {} people ingested encrypted in {:.1} s",
        options.rows,
        options.people,
        started.elapsed().as_secs_f64()
    );
    let protected = TableSpec {
        name: "visits".into(),
        dataset_id: "ds_visits".into(),
        location: location.clone(),
        columns: columns(true),
        privacy_unit: TableSpec::privacy_unit_of(&columns(true)),
    };
    let plain = TableSpec {
        columns: columns(false),
        privacy_unit: None,
        ..protected.clone()
    };
    let key = SecretKey::generate();
    let policy = Policy::builtin();
    let mut n = 0;
    let mut job = |sql: &str, table: &TableSpec| {
        n += 1;
        JobRequest {
            scope: shuyu_engine::JobScope::Production,
            job_id: format!("gate_{n}"),
            sql: sql.into(),
            substrait_plan: None,
            tables: vec![table.clone()],
            pseudonym_key: key.clone(),
            result_file: format!("results/gate_{n}/result.parquet"),
            result_kek: "tenant".into(),
            limits: JobLimits {
                max_sql_bytes: policy.limits.max_sql_bytes,
                memory_limit_bytes: 4 << 30,
                timeout: Duration::from_secs(600),
                max_result_rows: 1_000_000,
                preview_rows: 20,
            },
            masking_defaults: policy.masking.clone(),
            min_entities: policy.disclosure.min_entities,
            dominance_n: policy.disclosure.dominance_n as usize,
            dp: None,
            spill: None,
        }
    };

    // The earlier release for (d).
    let earlier = job(EARLIER_SQL, &protected);
    engine
        .run_job(&earlier)
        .await
        .map_err(|e| anyhow!("{e:?}"))?;
    let released: Vec<ReleasedCell> =
        result_sketches(&engine.read_result(&earlier.result_file).await?)
            .into_iter()
            .map(|(at, sketch)| {
                // Released through the gate: its blocking differencing check (against an
                // empty ledger: the cells of one GROUP BY cover different visits) passed.
                let screened = policy
                    .disclosure
                    .block_differencing
                    .then_some(policy.disclosure.min_entities);
                ReleasedCell::new("exp_earlier", at, sketch, screened)
            })
            .collect();

    // The same release, as if the policy had let reviewers judge close pairs when it was
    // released: nothing in the ledger was screened, so every cell is compared exactly.
    let unscreened: Vec<ReleasedCell> = released
        .iter()
        .map(|c| ReleasedCell {
            screened_k: None,
            ..c.clone()
        })
        .collect();
    let ledgers: [(&str, &[ReleasedCell]); 3] = [
        ("(c) checks, empty ledger", &[]),
        ("(d) checks, 9,900 released cells", &released),
        (
            "(e) checks, the same released cells, not screened",
            &unscreened,
        ),
    ];

    if let Some(side) = &options.only {
        let request = match side.as_str() {
            "a" => job(SQL, &protected),
            "b" => job(SQL, &plain),
            _ => job(FLOOR_SQL, &plain),
        };
        let mut times = Vec::with_capacity(options.runs);
        for _ in 0..options.runs {
            let t = Instant::now();
            let output = engine
                .run_job(&request)
                .await
                .map_err(|e| anyhow!("{e:?}"))?;
            times.push(t.elapsed());
            ensure!(output.n_rows == 10_000, "expected 10,000 cells");
        }
        println!(
            "gate: ({side}) alone, median of {} runs: {:.1} ms",
            options.runs,
            ms(median(&times))
        );
        return Ok(());
    }
    let (mut with_gate, mut without, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    // Per ledger: the whole check, reading (decrypting, parsing) the staged result, and the
    // checks alone.
    let mut checks: [(Vec<Duration>, Vec<Duration>, Vec<Duration>); 3] = Default::default();
    let mut last: Option<(JobOutput, String)> = None;
    for run in 0..options.runs {
        // Rotate which side goes first.
        for k in 0..3 {
            let side = (run + k) % 3;
            let request = match side {
                0 => job(SQL, &protected),
                1 => job(SQL, &plain),
                _ => job(FLOOR_SQL, &plain),
            };
            let t = Instant::now();
            let output = engine
                .run_job(&request)
                .await
                .map_err(|e| anyhow!("{e:?}"))?;
            let elapsed = t.elapsed();
            ensure!(
                output.n_rows == 10_000,
                "expected 10,000 cells, got {}",
                output.n_rows
            );
            match side {
                0 => {
                    with_gate.push(elapsed);
                    last = Some((output, request.result_file));
                }
                1 => without.push(elapsed),
                _ => floor.push(elapsed),
            }
        }
        let (output, file) = last.as_ref().expect("a gated run");
        for ((label, ledger), (times, reads, only)) in ledgers.iter().zip(checks.iter_mut()) {
            // As the server checks: the sketches' heads first, the whole result only when
            // a comparison or the reconstruction audit needs the members.
            let t = Instant::now();
            let batches = engine.read_result_for_checks(file).await?;
            let mut read = t.elapsed();
            let checked = run_export_checks_on_heads(
                &GateInput::of_output(output, &batches, ledger),
                &policy.disclosure,
            );
            let whole = checked.is_none();
            let report = match checked {
                Some(report) => report,
                None => {
                    let r = Instant::now();
                    let batches = engine.read_result(file).await?;
                    read += r.elapsed();
                    run_export_checks(
                        &GateInput::of_output(output, &batches, ledger),
                        &policy.disclosure,
                    )
                }
            };
            times.push(t.elapsed());
            reads.push(read);
            only.push(t.elapsed() - read);
            if run == 0 {
                println!(
                    "  {label}: {}",
                    if whole {
                        "the full sketches were read too"
                    } else {
                        "the sketches' heads sufficed"
                    }
                );
                for r in &report.reports {
                    println!(
                        "    check {:<30} {:<6} {}",
                        r.name,
                        r.outcome.as_str(),
                        r.detail.chars().take(100).collect::<String>()
                    );
                }
            }
        }
    }
    let (a, b, f) = (median(&with_gate), median(&without), median(&floor));
    println!("gate: medians of {} runs", options.runs);
    println!(
        "  (a) job with the gate's rewrite                        {:>8.1} ms",
        ms(a)
    );
    println!(
        "  (b) job without (no unit, cost ordinary)               {:>8.1} ms",
        ms(b)
    );
    println!(
        "  (f) the floor: the same information in plain SQL        {:>8.1} ms",
        ms(f)
    );
    for ((label, _), (times, reads, only)) in ledgers.iter().zip(&checks) {
        println!(
            "  {label:<54} {:>8.1} ms  ({:.3} of (a)): reading the result {:.1} ms, the \
             checks alone {:.1} ms",
            ms(median(times)),
            ms(median(times)) / ms(a),
            ms(median(reads)),
            ms(median(only)),
        );
    }
    println!("gate_rewrite_ratio={:.3}", ms(a) / ms(b));
    println!("gate_floor_ratio={:.3}", ms(a) / ms(f));
    println!(
        "gate_check_ratio_empty_ledger={:.3}",
        ms(median(&checks[0].0)) / ms(a)
    );
    println!(
        "gate_check_ratio_unscreened_ledger={:.3}",
        ms(median(&checks[2].0)) / ms(a)
    );
    println!("gate_check_ratio={:.3}", ms(median(&checks[1].0)) / ms(a));
    Ok(())
}
