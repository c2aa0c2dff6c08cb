//! `shuyu worker`: runs a job, or the work an export needs of a staged result, in this
//! process, started and supervised by the server.
//!
//! The task arrives as one JSON line on stdin (see `shuyu_engine::worker`). The worker builds
//! its runtime, confines itself (file-system view limited to the job's dataset folders and
//! its result folder, no network sockets, an address-space ceiling, death with its parent),
//! then plans and executes on a thread with a large stack: a query that still overflows it
//! kills only this process, and the server marks the job failed. Keys arrive one by one,
//! only when the engine asks for them and only if the server allowed them for this job.
//!
//! A job with a reuse scope (a production job: its scenario's tables and result folders)
//! leaves the worker running for the next job of the same scope, read from stdin after the
//! outcome: the confinement stays what the first job set, so a later job must fit it. Each
//! job gets a new engine and key envelope (its keys are asked for again and dropped with
//! it); only the runtime and the warm heap are kept.
//!
//! An export task (checks, release-ledger inputs, the recipient's copy) is confined to
//! reading its staged result's folder and writing the export's folder, reads the result with
//! its job's key (asked for like a job's), asks the server for the released cells it needs,
//! writes the copy's files chunk-sealed under keys the server made for them, answers, and
//! exits: what the server would otherwise hold of a result is held here, under this
//! process's memory ceiling.

pub mod sandbox;

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::sync::Arc;

use shuyu_engine::worker::{
    ExportAnswer, ExportTask, LedgerAnswer, ProductTask, ReviewRows, SealedOutput, ToServer,
    WireCheck, WireJobError, WireSketch, WorkerChannel, WorkerJob, WorkerTask, WorkerUsage,
};
use shuyu_engine::{
    CheckOutcome, Engine, EngineError, ExportFormat, JobError, JobStage, ProductOptions,
    SpillOptions, Storage, object_context,
};
use shuyu_policy::DisclosurePolicy;
use shuyu_vault::{ChunkSealer, ChunkedHeader, DEFAULT_CHUNK_BYTES, Envelope, KekProvider};
use zeroize::Zeroizing;

use self::sandbox::Confinement;

/// Options of `shuyu worker`, set by the server from its configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerOptions {
    /// DataFusion threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Stack of the planning thread and of the runtime's threads, MiB.
    #[arg(long, default_value_t = 256)]
    pub stack_mib: usize,
    /// Address-space ceiling of the process, MiB (0: none).
    #[arg(long, default_value_t = 0)]
    pub address_space_mib: u64,
    /// Skip OS confinement (for platforms without it; the server reports it).
    #[arg(long)]
    pub no_confine: bool,
}

/// Runs the worker; never returns to the normal CLI path.
pub fn main(options: WorkerOptions) -> ExitCode {
    // Opened before confinement, which may hide /proc: the peak-memory reading below, and
    // its reset between the jobs of a worker that serves several.
    let _ = PROC_STATUS.set(std::fs::File::open("/proc/self/status").ok());
    let _ = CLEAR_REFS.set(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/clear_refs")
            .ok(),
    );
    let stdin = std::io::stdin();
    let mut input = BufReader::new(stdin);
    let mut line = Zeroizing::new(String::new());
    if input.read_line(&mut line).unwrap_or(0) == 0 {
        eprintln!("worker: no job on stdin");
        return ExitCode::from(2);
    }
    let task = match shuyu_engine::worker::parse_task(&line) {
        Ok(task) => task,
        Err(e) => {
            eprintln!("worker: {e}");
            return ExitCode::from(2);
        }
    };
    drop(line);
    let channel = Arc::new(WorkerChannel::new(
        Box::new(input),
        Box::new(std::io::stdout()),
    ));
    let (objects_root, confinement) = match &task {
        WorkerTask::Job(job) => (job.objects_root.clone(), confinement_for(job, &options)),
        WorkerTask::Export(export) => (
            export.objects_root.clone(),
            export_confinement(export, &options),
        ),
    };
    // Confine this, the only thread, before any other exists: landlock before ABI 8
    // confines only the calling thread and the threads it starts later.
    let storage = match Storage::local(&objects_root) {
        Ok(storage) => storage,
        Err(e) => {
            fail(
                &channel,
                JobError::Execution {
                    detail: format!("object store: {e}"),
                },
            );
            return ExitCode::from(2);
        }
    };
    let summary = if options.no_confine {
        "none (disabled by configuration)".to_owned()
    } else {
        match sandbox::confine(&confinement) {
            Ok(report) => report.summary(),
            Err(e) => {
                fail(
                    &channel,
                    JobError::Execution {
                        detail: format!("confining the worker: {e}"),
                    },
                );
                return ExitCode::from(2);
            }
        }
    };
    let stack = options.stack_mib.max(8) << 20;
    let thread = std::thread::Builder::new()
        .name("shuyu-worker".into())
        .stack_size(stack)
        .spawn(move || match task {
            WorkerTask::Job(job) => run(*job, options, channel, storage, summary),
            WorkerTask::Export(export) => run_export(*export, options, channel, storage, summary),
        });
    match thread.map(|t| t.join()) {
        Ok(Ok(code)) => code,
        _ => ExitCode::from(4),
    }
}

/// `/proc/self/status`, opened at start.
static PROC_STATUS: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
/// `/proc/self/clear_refs`, opened at start: writing `5` resets the peak resident set.
static CLEAR_REFS: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
/// CPU time (ms) the process had used when the current job began.
static CPU_BASE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Starts metering a new job: CPU from now, and the peak resident set from the current one.
fn begin_job() {
    use std::io::Write as _;
    if let Some(Some(file)) = CLEAR_REFS.get() {
        let mut file: &std::fs::File = file;
        let _ = file.write_all(b"5");
    }
    CPU_BASE_MS.store(process_cpu_ms(), std::sync::atomic::Ordering::Relaxed);
}

fn process_cpu_ms() -> u64 {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::resource::{UsageWho, getrusage};
        if let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) {
            let ms = |t: nix::sys::time::TimeVal| {
                (t.tv_sec() as u64) * 1000 + (t.tv_usec() as u64) / 1000
            };
            return ms(u.user_time()) + ms(u.system_time());
        }
    }
    0
}

/// This process's own peak resident set (`VmHWM`), read afresh from the status file opened
/// at start. Not `ru_maxrss`: Linux carries that across `execve`, so a worker started by a
/// large server would report the server's peak.
fn peak_rss_bytes() -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let file = PROC_STATUS.get()?.as_ref()?;
    let mut buf = vec![0u8; 8192];
    let n = file.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The current job's resource use (CPU since it began; the peak since it began, or since the
/// process began where the peak cannot be reset).
fn usage() -> WorkerUsage {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::resource::{UsageWho, getrusage};
        if let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) {
            let base = CPU_BASE_MS.load(std::sync::atomic::Ordering::Relaxed);
            return WorkerUsage {
                cpu_ms: process_cpu_ms().saturating_sub(base),
                // ru_maxrss (KiB on Linux) only if /proc cannot be read.
                peak_rss_bytes: peak_rss_bytes().unwrap_or((u.max_rss().max(0) as u64) * 1024),
            };
        }
    }
    WorkerUsage::default()
}

fn run(
    job: WorkerJob,
    options: WorkerOptions,
    channel: Arc<WorkerChannel>,
    storage: Storage,
    summary: String,
) -> ExitCode {
    let runtime = match worker_runtime(&options) {
        Ok(runtime) => runtime,
        Err(e) => {
            fail(
                &channel,
                JobError::Execution {
                    detail: format!("worker runtime: {e}"),
                },
            );
            return ExitCode::from(2);
        }
    };
    let first = job;
    let mut next: Option<WorkerJob> = None;
    for served in 1u64.. {
        let job = next.take();
        let job = job.as_ref().unwrap_or(&first);
        if served > 1 {
            begin_job();
        }
        channel.send(&ToServer::Started {
            confinement: if served == 1 {
                summary.clone()
            } else {
                format!("{summary}; job {served} of this worker")
            },
        });
        let Some(ok) = run_one(job, &runtime, &channel, &storage) else {
            // The engine panicked: its failure is reported; serve nothing after it.
            return ExitCode::from(3);
        };
        if first.reuse_scope.is_none() {
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        // The next job of the same scope, or the end of input.
        let Some(line) = channel.next_line() else {
            return ExitCode::SUCCESS;
        };
        let later = match shuyu_engine::worker::parse_task(&line) {
            Ok(WorkerTask::Job(later)) => *later,
            Ok(WorkerTask::Export(_)) => {
                fail(
                    &channel,
                    JobError::Execution {
                        detail: "a worker kept for jobs takes no export task".into(),
                    },
                );
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("worker: {e}");
                return ExitCode::from(2);
            }
        };
        drop(line);
        if let Some(why) = later.misfit(&first) {
            fail(
                &channel,
                JobError::Execution {
                    detail: format!("the job does not fit this worker's confinement: {why}"),
                },
            );
            return ExitCode::from(2);
        }
        next = Some(later);
    }
    ExitCode::SUCCESS
}

/// Runs one job with a new engine and key envelope; whether it succeeded, or `None` when
/// the engine panicked (the failure is reported; the worker must not serve another job).
fn run_one(
    job: &WorkerJob,
    runtime: &tokio::runtime::Runtime,
    channel: &Arc<WorkerChannel>,
    storage: &Storage,
) -> Option<bool> {
    let request = match job.request() {
        Ok(request) => request,
        Err(e) => {
            fail(channel, JobError::Execution { detail: e });
            return Some(false);
        }
    };
    let envelope = Arc::new(Envelope::new(Arc::clone(channel) as Arc<dyn KekProvider>));
    let engine = Engine::new(storage.clone(), envelope);
    let progress_channel = Arc::clone(channel);
    // Whether the job got past planning (the engine reports each stage as it enters it).
    let executing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on_progress = Arc::new({
        let executing = Arc::clone(&executing);
        move |progress: shuyu_engine::JobProgress| {
            if progress.stage != JobStage::Planning {
                executing.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            progress_channel.send(&ToServer::Progress {
                progress,
                usage: usage(),
            });
        }
    });
    // A panic inside DataFusion must not leave the job without an answer: fuzzing found
    // one in the Substrait consumer (a field reference past its input's schema indexes out
    // of bounds, datafusion-substrait 55.2.0 via DFSchema::qualified_field). The engine and
    // the request are not used after it, and the worker exits, so catching it is safe. Its
    // message goes to stderr (sealed into the audit trail); while planning the job is
    // refused, once running it failed while processing data (withheld, counted).
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(engine.run_job_with_progress(&request, on_progress))
    }));
    match outcome {
        Ok(Ok(output)) => {
            // The server takes the result's hash from here: hashed in chunks, never read
            // back whole.
            match runtime.block_on(storage.sha256(&job.result_file)) {
                Ok(result_sha256) => {
                    channel.send(&ToServer::Finished {
                        output: Box::new(output),
                        result_sha256,
                        usage: usage(),
                    });
                    Some(true)
                }
                Err(e) => {
                    fail(
                        channel,
                        JobError::Execution {
                            detail: format!("hashing the result: {e}"),
                        },
                    );
                    Some(false)
                }
            }
        }
        Ok(Err(e)) => {
            fail(channel, e);
            Some(false)
        }
        Err(_) if !executing.load(std::sync::atomic::Ordering::Relaxed) => {
            fail(
                channel,
                JobError::Refused(
                    "the job's plan could not be built (an engine fault; the details are in \
                     the audit trail)"
                        .into(),
                ),
            );
            None
        }
        Err(_) => {
            fail(
                channel,
                JobError::Execution {
                    detail: "the engine panicked while running the job (see the worker's \
                             stderr)"
                        .into(),
                },
            );
            None
        }
    }
}

fn fail(channel: &WorkerChannel, error: JobError) {
    channel.send(&ToServer::Failed {
        error: WireJobError::from(error),
        usage: usage(),
    });
    let _ = std::io::stdout().flush();
}

/// The job's file-system view: its tables' folders (read) and its result folder, or the
/// reuse scope holding the result folders of this worker's jobs (write).
fn confinement_for(job: &WorkerJob, options: &WorkerOptions) -> Confinement {
    Confinement {
        read_dirs: job.read_dirs(),
        write_dirs: vec![job.write_dir()],
        address_space_bytes: (options.address_space_mib > 0)
            .then_some(options.address_space_mib << 20),
        deny_network: true,
    }
}

/// The export task's file-system view: its staged result's folder (read) and, when it writes
/// the recipient's copy, the export's folder (write).
fn export_confinement(task: &ExportTask, options: &WorkerOptions) -> Confinement {
    Confinement {
        read_dirs: vec![task.read_dir()],
        write_dirs: task.write_dir().into_iter().collect(),
        address_space_bytes: (options.address_space_mib > 0)
            .then_some(options.address_space_mib << 20),
        deny_network: true,
    }
}

fn worker_runtime(options: &WorkerOptions) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.clamp(1, 64))
        .max_blocking_threads(8)
        .thread_stack_size((options.stack_mib.max(8) << 20) / 4)
        .thread_name("shuyu-worker-rt")
        .enable_all()
        .build()
}

/// Runs one export task and exits.
fn run_export(
    task: ExportTask,
    options: WorkerOptions,
    channel: Arc<WorkerChannel>,
    storage: Storage,
    summary: String,
) -> ExitCode {
    let runtime = match worker_runtime(&options) {
        Ok(runtime) => runtime,
        Err(e) => {
            fail(
                &channel,
                JobError::Execution {
                    detail: format!("worker runtime: {e}"),
                },
            );
            return ExitCode::from(2);
        }
    };
    channel.send(&ToServer::Started {
        confinement: summary,
    });
    let envelope = Arc::new(Envelope::new(Arc::clone(&channel) as Arc<dyn KekProvider>));
    let engine = Engine::new(storage.clone(), envelope);
    // A panic in the engine answers the task (its text goes to the sealed stderr).
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(export_work(&task, &engine, &channel, &storage))
    }));
    let detail = match outcome {
        Ok(Ok(answer)) => {
            channel.send(&ToServer::ExportDone {
                answer: Box::new(answer),
                usage: usage(),
            });
            return ExitCode::SUCCESS;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the engine panicked during an export task (see the worker's stderr)".into(),
    };
    eprintln!("worker: {}: {detail}", task.label);
    let error = if detail.contains("Resources exhausted") {
        JobError::ResourcesExhausted
    } else {
        JobError::Execution { detail }
    };
    fail(&channel, error);
    ExitCode::FAILURE
}

async fn export_work(
    task: &ExportTask,
    engine: &Engine,
    channel: &WorkerChannel,
    storage: &Storage,
) -> Result<ExportAnswer, EngineError> {
    let policy = DisclosurePolicy::from(&task.policy);
    let mark = std::sync::Mutex::new(None::<u64>);
    let mut released = |lo: u64, hi: u64| {
        let (cells, at) = channel
            .released_cells(lo, hi)
            .map_err(EngineError::Internal)?;
        *mark.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
        Ok(cells)
    };
    let mut answer = ExportAnswer::default();
    if task.checks {
        let checks = engine
            .export_checks(&task.result_file, &task.gate, &policy, &mut released)
            .await?;
        answer.checks = checks.reports.iter().map(WireCheck::from).collect();
    }
    if task.ledger {
        *mark.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let inputs = engine
            .ledger_inputs(&task.result_file, &task.gate, &policy, &mut released)
            .await?;
        answer.ledger = Some(LedgerAnswer {
            mark: *mark.lock().unwrap_or_else(|p| p.into_inner()),
            failed: inputs
                .reports
                .iter()
                .filter(|r| r.outcome == CheckOutcome::Fail)
                .map(|r| r.name.to_owned())
                .collect(),
            sketches: inputs
                .sketches
                .iter()
                .map(|(at, sketch)| WireSketch::new(*at, sketch))
                .collect(),
        });
    }
    if task.review_rows > 0 {
        let batches = engine
            .read_result_head(&task.result_file, task.review_rows)
            .await?;
        let shown = shuyu_engine::ResultData { batches };
        let (ipc, _) = shown.to_ipc(task.review_rows)?;
        answer.review = Some(ReviewRows {
            ipc_hex: hex::encode(ipc),
            n_rows: shown.n_rows(),
        });
    }
    if let Some(product) = &task.product {
        answer.product = Some(render_product(task, product, engine, storage).await?);
    }
    Ok(answer)
}

/// A chunk-sealed file the worker writes.
fn sealed_file(
    storage: &Storage,
    output: &SealedOutput,
) -> Result<ChunkSealer<std::io::BufWriter<std::fs::File>>, EngineError> {
    use std::os::unix::fs::OpenOptionsExt;
    let bad = |e: &dyn std::fmt::Display| EngineError::Storage(format!("{}: {e}", output.location));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(storage.path_of(&output.location))
        .map_err(|e| bad(&e))?;
    let key = output.key.key().map_err(|e| bad(&e))?;
    let header = ChunkedHeader {
        metadata: hex::decode(&output.metadata_hex).map_err(|e| bad(&e))?,
        chunk_bytes: DEFAULT_CHUNK_BYTES,
    };
    ChunkSealer::new(
        std::io::BufWriter::new(file),
        key,
        &object_context(&output.location),
        &header,
    )
    .map_err(|e| bad(&e))
}

/// Seals the last chunk and syncs the file.
fn finish_sealed(
    sealer: ChunkSealer<std::io::BufWriter<std::fs::File>>,
) -> Result<(), EngineError> {
    let bad = |e: &dyn std::fmt::Display| EngineError::Storage(format!("finishing a copy: {e}"));
    let (out, _) = sealer.finish().map_err(|e| bad(&e))?;
    let file = out.into_inner().map_err(|e| bad(&e))?;
    file.sync_all().map_err(|e| bad(&e))
}

async fn render_product(
    task: &ExportTask,
    product: &ProductTask,
    engine: &Engine,
    storage: &Storage,
) -> Result<shuyu_engine::ProductFacts, EngineError> {
    let key = |k: &shuyu_engine::worker::WireKey| {
        k.key()
            .map_err(|e| EngineError::Crypto(format!("a product key: {e}")))
    };
    let format = match product.format.as_str() {
        "csv" => ExportFormat::Csv,
        _ => ExportFormat::Parquet,
    };
    let work_dir = task
        .write_dir()
        .ok_or_else(|| EngineError::Internal("a product task without a folder".into()))?;
    let options = ProductOptions {
        format,
        round_counts_to: product.round_counts_to,
        recipient_key: key(&product.recipient_key)?,
        order_key: key(&product.order_key)?,
        fingerprint: product.fingerprint.clone(),
        memory_limit_bytes: product.memory_limit_bytes,
        expected_rows: product.expected_rows,
        spill: (product.spill_max_bytes > 0).then_some(SpillOptions {
            dir: work_dir,
            max_bytes: product.spill_max_bytes,
        }),
    };
    let mut data = sealed_file(storage, &product.data)?;
    let mut flight = product
        .flight
        .as_ref()
        .map(|output| sealed_file(storage, output))
        .transpose()?;
    let facts = engine
        .render_product(
            &task.result_file,
            &task.gate.columns,
            &options,
            &mut data,
            flight
                .as_mut()
                .map(|f| f as &mut (dyn std::io::Write + Send)),
        )
        .await?;
    finish_sealed(data)?;
    if let Some(flight) = flight {
        finish_sealed(flight)?;
    }
    Ok(facts)
}
