//! `shuyu-bench concurrent`: jobs from many tenants at once against the same jobs one after
//! another, on one in-process server with its default scheduler (`max_running_jobs` worker
//! processes domain-wide, one per tenant, tenants served in turn).
//!
//! TPC-H at `--scale` is generated and ingested once and granted to `--tenants` tenants,
//! each with its own authorization (and emergency plan), engineer and approved scenario.
//! Every tenant has `--jobs-per-tenant` production jobs from a fixed mix ([`job_for`]):
//! small ones (a count over `region`, aggregates over `nation`/`supplier`) alternating with
//! TPC-H-sized ones (Q1, Q3, Q6, Q10, Q12, Q14).
//!
//! - Sequential side: every job submitted and followed to its end before the next, tenant by
//!   tenant (each tenant's jobs back to back, so its scenario's worker is reused: the order
//!   most favourable to this side).
//! - Concurrent side: one task per job, all spawned at once in tenant-interleaved order, each
//!   submitting its job and following it (`WatchJob`); the wall time ends when the last has
//!   finished.
//!
//! The sides alternate which goes first, `--runs` times; medians are reported. A job that
//! does not end `Succeeded` (or whose RPC fails) is a failure, listed with its reason.
//!
//! Then the flood: the first tenant submits `--flood` TPC-H-sized jobs at once and, once they
//! are all queued, the second tenant runs `--flood-small` small jobs one after another
//! (submit, follow to the end, wait `--flood-gap-ms`). A small job's queue wait is its
//! record's `usage.queued_ms` (server clock: created → dispatched to a worker); its latency is
//! client-side, submit → finished seen. Only small jobs submitted while a flood job was still
//! unfinished count.
//!
//! Memory: the server runs in this process, so the process's peak RSS (`VmHWM`) is the
//! server's plus this harness's own (data generation, clients, tasks). Workers' peak is the
//! largest `usage.peak_memory_bytes` of any job. Engineers see production jobs' worker wall
//! time and peak memory coarsened, so after the measurements an auditor reads every job's
//! exact usage (one `ListJobs`) and those figures are used.
//!
//! Whether the metadata store is the limit is not measured inside the server (nothing
//! exposes the store's own time); what shows from outside, per side: the `SubmitJob` round
//! trip (it writes the job record and its audit entry), and per job the server-clock time
//! outside the worker after dispatch (created → finished, less the queue wait and the
//! worker's wall time: recording the job running and finished, the result's sync, the audit
//! entry). And the worker slots' use on the concurrent side: Σ worker wall time ÷
//! (`max_running_jobs` × wall time); near 1 the workers, not the store, are the limit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use shuyu_client::{Client, v1 as pb};

use crate::domain::{Domain, DomainOptions};
use crate::stats::{median, median_f64, mib, ms, percentile};
use crate::tpch::{QUERIES, generate_reported, ingest_tables};

/// Longest one job is followed.
const JOB_TIMEOUT: Duration = Duration::from_secs(900);

/// The small jobs: (label, SQL), all over `region`, `nation` and `supplier`.
const SMALL: [(&str, &str); 6] = [
    ("region_count", "select count(*) as n from region"),
    (
        "nations_per_region",
        "select r_name, count(*) as nations from nation join region \
         on n_regionkey = r_regionkey group by r_name order by r_name",
    ),
    (
        "suppliers_per_nation",
        "select n_name, count(*) as suppliers, avg(s_acctbal) as avg_acctbal \
         from supplier join nation on s_nationkey = n_nationkey group by n_name order by n_name",
    ),
    (
        "nation_list",
        "select n_nationkey, n_name from nation where n_regionkey = 1 order by n_nationkey",
    ),
    (
        "supplier_balance",
        "select count(*) as n, min(s_acctbal) as lo, max(s_acctbal) as hi from supplier",
    ),
    (
        "region_names",
        "select r_regionkey, r_name from region order by r_regionkey",
    ),
];

/// The TPC-H-sized jobs: query numbers in `benches/tpch/queries/`.
const TPCH: [usize; 6] = [1, 3, 6, 10, 12, 14];

/// Options of `shuyu-bench concurrent`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConcurrentOptions {
    /// TPC-H scale factor.
    #[arg(long, default_value_t = 0.1)]
    pub scale: f64,
    /// Tenants, each with its own engineer, authorization and scenario.
    #[arg(long, default_value_t = 8)]
    pub tenants: usize,
    /// Jobs per tenant (small and TPC-H-sized alternating).
    #[arg(long, default_value_t = 8)]
    pub jobs_per_tenant: usize,
    /// Runs of each side (alternating which goes first); medians are reported.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// TPC-H-sized jobs the first tenant submits at once for the flood (0 skips the flood;
    /// at most the server's `tenant_max_queued_jobs`, 32).
    #[arg(long, default_value_t = 16)]
    pub flood: usize,
    /// Small jobs the second tenant runs one after another during the flood.
    #[arg(long, default_value_t = 20)]
    pub flood_small: usize,
    /// Pause between two of the second tenant's small jobs, ms.
    #[arg(long, default_value_t = 100)]
    pub flood_gap_ms: u64,
    /// The release `shuyu` binary the server starts as `shuyu worker`.
    #[arg(long, default_value = "target/release/shuyu")]
    pub shuyu_bin: PathBuf,
    /// Memory pool of one Shuyu job, MiB (the bench policy's `limits.memory_limit_bytes`).
    #[arg(long, default_value_t = 4096)]
    pub memory_limit_mib: u64,
    /// Parent of the temporary directory (data and domain); the system's by default.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Small job or TPC-H-sized job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A count or aggregate over the small tables.
    Small,
    /// One of the TPC-H queries.
    Tpch,
}

/// One job of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSpec {
    /// Which kind.
    pub kind: Kind,
    /// A short name (`Q6`, `region_count`).
    pub label: &'static str,
    /// Its SQL.
    pub sql: &'static str,
}

/// Labels of the TPC-H-sized jobs, in [`TPCH`]'s order.
const TPCH_LABELS: [&str; 6] = ["Q1", "Q3", "Q6", "Q10", "Q12", "Q14"];

/// The `i`-th entry of the mix's cycle: even entries small, odd ones TPC-H-sized.
fn mix_entry(i: usize) -> JobSpec {
    let k = (i / 2) % SMALL.len();
    if i.is_multiple_of(2) {
        JobSpec {
            kind: Kind::Small,
            label: SMALL[k].0,
            sql: SMALL[k].1,
        }
    } else {
        let k = (i / 2) % TPCH.len();
        JobSpec {
            kind: Kind::Tpch,
            label: TPCH_LABELS[k],
            sql: QUERIES[TPCH[k] - 1],
        }
    }
}

/// The `job`-th job of tenant `tenant`: the mix's cycle shifted by the tenant, so tenants
/// alternate small and TPC-H-sized jobs out of step with each other.
pub fn job_for(tenant: usize, job: usize) -> JobSpec {
    mix_entry(tenant + job)
}

/// The `i`-th job of the flood: TPC-H-sized, cycling through [`TPCH`].
fn flood_job(i: usize) -> JobSpec {
    mix_entry(2 * i + 1)
}

/// A tenant's engineer and its approved scenario.
#[derive(Debug, Clone)]
struct TenantJobs {
    engineer: Client,
    scenario: String,
}

/// What one finished job showed.
#[derive(Debug, Clone)]
struct Outcome {
    job_id: String,
    kind: Kind,
    /// The `SubmitJob` round trip.
    submit: Duration,
    /// Client-side: submit until the finished state was seen.
    elapsed: Duration,
    /// Server clock: created until recorded finished.
    server_ms: u64,
    /// Server clock: created until dispatched to a worker.
    queued_ms: u64,
    /// The worker's wall time (coarsened as the engineer sees it until [`exact_usage`]).
    worker_ms: u64,
    /// The worker's peak RSS (coarsened likewise until [`exact_usage`]).
    peak_memory_bytes: u64,
}

impl Outcome {
    /// Server-clock time after dispatch outside the worker.
    fn outside_worker_ms(&self) -> u64 {
        self.server_ms
            .saturating_sub(self.queued_ms)
            .saturating_sub(self.worker_ms)
    }
}

/// Submits `spec` as `tenant`'s engineer; returns the job's id, when the submission started
/// and the `SubmitJob` round trip.
async fn submit(tenant: &mut TenantJobs, spec: JobSpec) -> Result<(String, Instant, Duration)> {
    let started = Instant::now();
    let job = tenant
        .engineer
        .jobs
        .submit_job(shuyu_client::production_sql(spec.sql, &tenant.scenario))
        .await
        .with_context(|| format!("submitting {}", spec.label))?
        .into_inner()
        .job
        .context("no job in the answer")?;
    Ok((job.id, started, started.elapsed()))
}

/// Follows a submitted job (`WatchJob`) to its end; an error unless it succeeded.
async fn follow(
    tenant: &mut TenantJobs,
    spec: JobSpec,
    (job_id, started, submit): (String, Instant, Duration),
) -> Result<Outcome> {
    let job = tenant
        .engineer
        .wait_job(&job_id, JOB_TIMEOUT)
        .await
        .with_context(|| format!("following {} ({job_id})", spec.label))?;
    let elapsed = started.elapsed();
    if job.status != pb::JobStatus::Succeeded as i32 {
        bail!(
            "{} ({job_id}) ended {:?}: {}",
            spec.label,
            pb::JobStatus::try_from(job.status).unwrap_or_default(),
            job.error
        );
    }
    let usage = job.usage.unwrap_or_default();
    Ok(Outcome {
        job_id,
        kind: spec.kind,
        submit,
        elapsed,
        server_ms: job.finished_at_ms.saturating_sub(job.created_at_ms) as u64,
        queued_ms: usage.queued_ms,
        worker_ms: usage.wall_ms,
        peak_memory_bytes: usage.peak_memory_bytes,
    })
}

/// Submits and follows one job.
async fn run_job(tenant: &mut TenantJobs, spec: JobSpec) -> Result<Outcome> {
    let submitted = submit(tenant, spec).await?;
    follow(tenant, spec, submitted).await
}

/// One side's run.
#[derive(Debug, Default)]
struct SideRun {
    wall: Duration,
    outcomes: Vec<Outcome>,
    failures: Vec<String>,
}

/// Every job one after another, tenant by tenant.
async fn sequential(tenants: &[TenantJobs], jobs_per_tenant: usize) -> SideRun {
    let mut run = SideRun::default();
    let started = Instant::now();
    for (t, tenant) in tenants.iter().enumerate() {
        let mut tenant = tenant.clone();
        for j in 0..jobs_per_tenant {
            match run_job(&mut tenant, job_for(t, j)).await {
                Ok(outcome) => run.outcomes.push(outcome),
                Err(e) => run.failures.push(format!("sequential, tenant {t}: {e:#}")),
            }
        }
    }
    run.wall = started.elapsed();
    run
}

/// Every job at once: one task per job, tenants interleaved.
async fn concurrent(tenants: &[TenantJobs], jobs_per_tenant: usize) -> SideRun {
    let mut run = SideRun::default();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(tenants.len() * jobs_per_tenant);
    for j in 0..jobs_per_tenant {
        for (t, tenant) in tenants.iter().enumerate() {
            let mut tenant = tenant.clone();
            tasks.push((
                t,
                tokio::spawn(async move { run_job(&mut tenant, job_for(t, j)).await }),
            ));
        }
    }
    for (t, task) in tasks {
        match task.await {
            Ok(Ok(outcome)) => run.outcomes.push(outcome),
            Ok(Err(e)) => run.failures.push(format!("concurrent, tenant {t}: {e:#}")),
            Err(e) => run.failures.push(format!("concurrent, tenant {t}: {e}")),
        }
    }
    run.wall = started.elapsed();
    run
}

/// What the flood showed.
#[derive(Debug, Default)]
struct FloodRun {
    /// Small jobs submitted while a flood job was unfinished: queue waits and latencies.
    queue_waits: Vec<Duration>,
    latencies: Vec<Duration>,
    /// Small jobs submitted after the flood had finished (not in the figures).
    late: usize,
    outcomes: Vec<Outcome>,
    failures: Vec<String>,
    wall: Duration,
}

/// The first tenant floods the queue with `n_flood` TPC-H-sized jobs; the second runs
/// `n_small` small jobs one after another meanwhile.
async fn flood(
    flooder: &TenantJobs,
    prober: &TenantJobs,
    n_flood: usize,
    n_small: usize,
    gap: Duration,
) -> FloodRun {
    let mut run = FloodRun::default();
    let started = Instant::now();
    // All flood jobs are submitted at once, then followed; the small jobs start once every
    // flood job is in the queue.
    let submits: Vec<_> = (0..n_flood)
        .map(|i| {
            let mut tenant = flooder.clone();
            tokio::spawn(async move { submit(&mut tenant, flood_job(i)).await })
        })
        .collect();
    let remaining = Arc::new(AtomicUsize::new(0));
    let mut followers = Vec::new();
    for (i, task) in submits.into_iter().enumerate() {
        match task.await {
            Ok(Ok(submitted)) => {
                remaining.fetch_add(1, Ordering::SeqCst);
                let mut tenant = flooder.clone();
                let remaining = Arc::clone(&remaining);
                followers.push(tokio::spawn(async move {
                    let outcome = follow(&mut tenant, flood_job(i), submitted).await;
                    remaining.fetch_sub(1, Ordering::SeqCst);
                    outcome
                }));
            }
            Ok(Err(e)) => run.failures.push(format!("flood: {e:#}")),
            Err(e) => run.failures.push(format!("flood: {e}")),
        }
    }
    let mut prober = prober.clone();
    for k in 0..n_small {
        let during = remaining.load(Ordering::SeqCst) > 0;
        match run_job(&mut prober, mix_entry(2 * k)).await {
            Ok(outcome) => {
                if during {
                    run.queue_waits
                        .push(Duration::from_millis(outcome.queued_ms));
                    run.latencies.push(outcome.elapsed);
                } else {
                    run.late += 1;
                }
                run.outcomes.push(outcome);
            }
            Err(e) => run.failures.push(format!("flood, small job: {e:#}")),
        }
        tokio::time::sleep(gap).await;
    }
    for task in followers {
        match task.await {
            Ok(Ok(outcome)) => run.outcomes.push(outcome),
            Ok(Err(e)) => run.failures.push(format!("flood: {e:#}")),
            Err(e) => run.failures.push(format!("flood: {e}")),
        }
    }
    run.wall = started.elapsed();
    run
}

/// Replaces the engineer's coarsened worker wall time and peak memory (production usage is
/// shown to engineers in buckets of 1, 3, 10, 30 … s and MB) with the exact figures an
/// auditor reads (R35), in one `ListJobs` over every tenant after the measurements.
async fn exact_usage<'o>(
    auditor: &mut Client,
    outcomes: impl Iterator<Item = &'o mut Outcome>,
) -> Result<()> {
    let jobs = auditor
        .jobs
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .context("listing the jobs as the auditor")?
        .into_inner()
        .jobs;
    let usage: HashMap<String, pb::JobUsage> = jobs
        .into_iter()
        .filter_map(|job| Some((job.id, job.usage?)))
        .collect();
    for outcome in outcomes {
        let exact = usage
            .get(&outcome.job_id)
            .with_context(|| format!("job {} not in the auditor's list", outcome.job_id))?;
        outcome.worker_ms = exact.wall_ms;
        outcome.peak_memory_bytes = exact.peak_memory_bytes;
    }
    Ok(())
}

/// This process's peak resident set (`VmHWM` in `/proc/self/status`), bytes; `None` where
/// the file or line is missing.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// The `VmHWM:   123 kB` line of a `/proc/<pid>/status` text, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A ratio with two decimals, `-` when the denominator is zero.
fn ratio(num: f64, den: f64) -> String {
    if den == 0.0 {
        "-".into()
    } else {
        format!("{:.2}", num / den)
    }
}

/// Mean of `f` over `outcomes`, ms, zero when empty.
fn mean_ms(outcomes: &[&Outcome], f: impl Fn(&Outcome) -> u64) -> String {
    if outcomes.is_empty() {
        return "0".into();
    }
    let sum: u64 = outcomes.iter().map(|&o| f(o)).sum();
    format!("{:.1}", sum as f64 / outcomes.len() as f64)
}

/// Runs the benchmark.
///
/// # Errors
/// If data generation, the domain, an ingest or the tenants' set-up fails (a failing job is
/// counted and listed instead).
pub async fn run(options: ConcurrentOptions) -> Result<()> {
    ensure!(options.runs >= 1, "--runs must be at least 1");
    ensure!(options.scale > 0.0, "--scale must be positive");
    ensure!(options.tenants >= 1, "--tenants must be at least 1");
    ensure!(
        options.jobs_per_tenant >= 1,
        "--jobs-per-tenant must be at least 1"
    );
    ensure!(
        options.flood == 0 || options.tenants >= 2,
        "the flood needs two tenants (--tenants 2 or more, or --flood 0)"
    );
    ensure!(options.tenants < 900, "at most 899 tenants");
    let shuyu_bin = crate::absolute(options.shuyu_bin.clone());
    ensure!(
        shuyu_bin.is_file(),
        "{} does not exist: build it with `cargo build --release -p shuyu` or pass --shuyu-bin",
        shuyu_bin.display()
    );
    let temp = match &options.work_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("shuyu-concurrent-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new()
            .prefix("shuyu-concurrent-")
            .tempdir()?,
    };
    let n_jobs = options.tenants * options.jobs_per_tenant;
    let n_small = (0..options.tenants)
        .flat_map(|t| (0..options.jobs_per_tenant).map(move |j| job_for(t, j)))
        .filter(|spec| spec.kind == Kind::Small)
        .count();
    println!(
        "concurrent: TPC-H SF {} | {} tenants × {} jobs = {n_jobs} ({n_small} small, {} \
         TPC-H-sized) | runs {} (median, sides alternating) | flood {} + {} small | worker {}",
        options.scale,
        options.tenants,
        options.jobs_per_tenant,
        n_jobs - n_small,
        options.runs,
        options.flood,
        options.flood_small,
        shuyu_bin.display()
    );

    let (tables, plain_bytes) =
        generate_reported(options.scale, &temp.path().join("plain")).await?;
    let mut domain = Domain::start(
        temp.path(),
        &DomainOptions {
            max_ingest_bytes: (plain_bytes as usize).max(64 << 20) * 2,
            worker_program: Some(shuyu_bin),
            worker_malloc: None,
            memory_limit_bytes: Some(options.memory_limit_mib << 20),
        },
    )
    .await?;
    let started = Instant::now();
    let datasets = ingest_tables(&mut domain, &tables, options.scale, false).await?;
    let listed: Vec<&pb::Dataset> = datasets.iter().map(|(d, _)| d).collect();
    println!(
        "ingested {} datasets through the server in {:.1} s",
        listed.len(),
        started.elapsed().as_secs_f64()
    );

    // The domain's own tenant is the first; the others get the same datasets.
    let started = Instant::now();
    let mut tenants = Vec::with_capacity(options.tenants);
    let scenario = domain.approved_scenario(&listed).await?;
    tenants.push(TenantJobs {
        engineer: domain.engineer.clone(),
        scenario,
    });
    for i in 1..options.tenants {
        let tenant = domain
            .add_tenant(&format!("bench-tenant-{i}"), 100 + i as u32)
            .await?;
        for dataset in &listed {
            domain
                .grant(dataset, &tenant.tenant_id, &tenant.authorization_id)
                .await?;
        }
        let mut engineer = tenant.engineer.clone();
        let scenario = domain.approved_scenario_for(&mut engineer, &listed).await?;
        tenants.push(TenantJobs { engineer, scenario });
    }
    println!(
        "set up {} tenants (authorization, engineer, grants, approved scenario) in {:.1} s; \
         server runs at most {} workers at once",
        tenants.len(),
        started.elapsed().as_secs_f64(),
        domain.max_running_jobs
    );

    let mut sequential_runs = Vec::new();
    let mut concurrent_runs = Vec::new();
    for r in 0..options.runs {
        let order = if r.is_multiple_of(2) {
            [false, true]
        } else {
            [true, false]
        };
        for at_once in order {
            if at_once {
                let run = concurrent(&tenants, options.jobs_per_tenant).await;
                println!(
                    "run {}: concurrent {} ms ({} jobs ok, {} failed)",
                    r + 1,
                    ms(run.wall),
                    run.outcomes.len(),
                    run.failures.len()
                );
                concurrent_runs.push(run);
            } else {
                let run = sequential(&tenants, options.jobs_per_tenant).await;
                println!(
                    "run {}: sequential {} ms ({} jobs ok, {} failed)",
                    r + 1,
                    ms(run.wall),
                    run.outcomes.len(),
                    run.failures.len()
                );
                sequential_runs.push(run);
            }
        }
    }

    let mut flood_run = if options.flood > 0 {
        let run = flood(
            &tenants[0],
            &tenants[1],
            options.flood,
            options.flood_small,
            Duration::from_millis(options.flood_gap_ms),
        )
        .await;
        println!(
            "flood: {} TPC-H-sized jobs from one tenant, {} small jobs from another ({} \
             submitted while the flood was unfinished, {} after) in {} ms",
            options.flood,
            options.flood_small,
            run.queue_waits.len(),
            run.late,
            ms(run.wall)
        );
        Some(run)
    } else {
        None
    };
    let server_peak = peak_rss_bytes();
    let slots = domain.max_running_jobs;
    let mut auditor = domain.add_auditor(99).await?;
    let outcomes = sequential_runs
        .iter_mut()
        .chain(&mut concurrent_runs)
        .flat_map(|r| &mut r.outcomes)
        .chain(flood_run.iter_mut().flat_map(|r| &mut r.outcomes));
    if let Err(e) = exact_usage(&mut auditor, outcomes).await {
        println!(
            "exact usage unavailable ({e:#}): worker wall times and peaks below are the \
             engineer's coarsened figures"
        );
    }
    domain.shutdown().await?;

    let failures: Vec<&String> = sequential_runs
        .iter()
        .chain(&concurrent_runs)
        .flat_map(|r| &r.failures)
        .chain(flood_run.iter().flat_map(|r| &r.failures))
        .collect();
    for failure in &failures {
        println!("failed: {failure}");
    }
    let all: Vec<&Outcome> = sequential_runs
        .iter()
        .chain(&concurrent_runs)
        .flat_map(|r| &r.outcomes)
        .chain(flood_run.iter().flat_map(|r| &r.outcomes))
        .collect();
    let worker_peak = all.iter().map(|o| o.peak_memory_bytes).max().unwrap_or(0);

    // Per side, over every run: submit round trips and the server's time outside workers.
    let side_figures = |runs: &[SideRun], side: &str| {
        let outcomes: Vec<&Outcome> = runs.iter().flat_map(|r| &r.outcomes).collect();
        let submits: Vec<Duration> = outcomes.iter().map(|o| o.submit).collect();
        let by_kind = |kind: Kind| -> Vec<Duration> {
            outcomes
                .iter()
                .filter(|o| o.kind == kind)
                .map(|o| o.elapsed)
                .collect()
        };
        println!(
            "{side}: per job, server clock: created → finished {} ms = queued {} ms + worker {} \
             ms + outside the worker {} ms; client-side latency median small {} ms, \
             TPC-H-sized {} ms",
            mean_ms(&outcomes, |o| o.server_ms),
            mean_ms(&outcomes, |o| o.queued_ms),
            mean_ms(&outcomes, |o| o.worker_ms),
            mean_ms(&outcomes, Outcome::outside_worker_ms),
            ms(median(&by_kind(Kind::Small))),
            ms(median(&by_kind(Kind::Tpch))),
        );
        println!(
            "submit_rpc_p50_ms_{side}={}",
            ms(percentile(&submits, 50.0))
        );
        println!(
            "submit_rpc_p99_ms_{side}={}",
            ms(percentile(&submits, 99.0))
        );
        println!(
            "outside_worker_ms_per_job_{side}={}",
            mean_ms(&outcomes, Outcome::outside_worker_ms)
        );
    };
    side_figures(&sequential_runs, "sequential");
    side_figures(&concurrent_runs, "concurrent");
    // Worker slots' use on the concurrent side: Σ worker wall ÷ (slots × wall), median.
    let slot_use: Vec<f64> = concurrent_runs
        .iter()
        .map(|r| {
            let busy: u64 = r.outcomes.iter().map(|o| o.worker_ms).sum();
            let capacity = slots as f64 * r.wall.as_secs_f64() * 1000.0;
            if capacity > 0.0 {
                busy as f64 / capacity
            } else {
                0.0
            }
        })
        .collect();
    println!("concurrent_worker_slot_use={:.2}", median_f64(&slot_use));
    let sequential_ms = median(&sequential_runs.iter().map(|r| r.wall).collect::<Vec<_>>());
    let concurrent_ms = median(&concurrent_runs.iter().map(|r| r.wall).collect::<Vec<_>>());
    println!("concurrent_sequential_ms={}", ms(sequential_ms));
    println!("concurrent_wall_ms={}", ms(concurrent_ms));
    if let Some(run) = &flood_run {
        println!(
            "flood_small_queue_wait_p50_ms={}",
            ms(percentile(&run.queue_waits, 50.0))
        );
        println!(
            "flood_small_queue_wait_p99_ms={}",
            ms(percentile(&run.queue_waits, 99.0))
        );
        println!(
            "flood_small_latency_p99_ms={}",
            ms(percentile(&run.latencies, 99.0))
        );
    }
    println!(
        "server_peak_rss_mib={}",
        server_peak.map_or_else(|| "-".to_owned(), mib)
    );
    println!("worker_peak_rss_mib={}", mib(worker_peak));
    println!("concurrent_failures={}", failures.len());
    println!(
        "concurrent_throughput_ratio={}",
        ratio(sequential_ms.as_secs_f64(), concurrent_ms.as_secs_f64())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_fixed_and_has_both_kinds() {
        let first: Vec<JobSpec> = (0..8)
            .flat_map(|t| (0..8).map(move |j| job_for(t, j)))
            .collect();
        let again: Vec<JobSpec> = (0..8)
            .flat_map(|t| (0..8).map(move |j| job_for(t, j)))
            .collect();
        assert_eq!(first, again);
        let small = first.iter().filter(|s| s.kind == Kind::Small).count();
        assert_eq!(small, 32, "half of the 64 default jobs are small");
        for t in 0..8 {
            let kinds: Vec<Kind> = (0..8).map(|j| job_for(t, j).kind).collect();
            assert!(kinds.contains(&Kind::Small) && kinds.contains(&Kind::Tpch));
        }
        // Every small job and every TPC-H query of the mix appears.
        for (label, _) in SMALL {
            assert!(first.iter().any(|s| s.label == label), "{label}");
        }
        for label in TPCH_LABELS {
            assert!(first.iter().any(|s| s.label == label), "{label}");
        }
    }

    #[test]
    fn tpch_labels_name_their_queries() {
        for (k, q) in TPCH.iter().enumerate() {
            assert_eq!(TPCH_LABELS[k], format!("Q{q}"));
        }
        let q6 = mix_entry(5);
        assert_eq!(q6.label, "Q6");
        assert_eq!(q6.sql, QUERIES[5]);
        assert!((0..40).all(|i| flood_job(i).kind == Kind::Tpch));
    }

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status = "Name:\tshuyu-bench\nVmPeak:\t  900 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }
}
