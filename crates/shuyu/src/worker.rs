//! `shuyu worker`: runs a job in this process, started and supervised by the server.
//!
//! The job arrives as one JSON line on stdin (see `shuyu_engine::worker`). The worker builds
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

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::sync::Arc;

use shuyu_engine::worker::{ToServer, WireJobError, WorkerChannel, WorkerJob, WorkerUsage};
use shuyu_engine::{Engine, JobError, JobStage, Storage};
use shuyu_vault::{Envelope, KekProvider};
use zeroize::Zeroizing;

use crate::sandbox::{self, Confinement};

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
    let job = match shuyu_engine::worker::parse_job(&line) {
        Ok(job) => job,
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
    // Confine this, the only thread, before any other exists: landlock before ABI 8
    // confines only the calling thread and the threads it starts later.
    let storage = match Storage::local(&job.objects_root) {
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
    let confinement = confinement_for(&job, &options);
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
        .spawn(move || run(job, options, channel, storage, summary));
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.clamp(1, 64))
        .max_blocking_threads(8)
        .thread_stack_size((options.stack_mib.max(8) << 20) / 4)
        .thread_name("shuyu-worker-rt")
        .enable_all()
        .build()
    {
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
        let later = match shuyu_engine::worker::parse_job(&line) {
            Ok(later) => later,
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
            channel.send(&ToServer::Finished {
                output: Box::new(output),
                usage: usage(),
            });
            Some(true)
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
