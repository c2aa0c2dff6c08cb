//! `shuyu worker`: runs one job in this process, started and supervised by the server.
//!
//! The job arrives as one JSON line on stdin (see `shuyu_engine::worker`). The worker builds
//! its runtime, confines itself (file-system view limited to the job's dataset folders and
//! its result folder, no network sockets, an address-space ceiling, death with its parent),
//! then plans and executes on a thread with a large stack: a query that still overflows it
//! kills only this process, and the server marks the job failed. Keys arrive one by one,
//! only when the engine asks for them and only if the server allowed them for this job.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use shuyu_engine::worker::{ToServer, WireJobError, WorkerChannel, WorkerJob, WorkerUsage};
use shuyu_engine::{Engine, JobError, Storage};
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
    // Opened before confinement, which may hide /proc: the peak-memory reading below.
    let _ = PROC_STATUS.set(std::fs::File::open("/proc/self/status").ok());
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

fn usage() -> WorkerUsage {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::resource::{UsageWho, getrusage};
        if let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) {
            let ms = |t: nix::sys::time::TimeVal| {
                (t.tv_sec() as u64) * 1000 + (t.tv_usec() as u64) / 1000
            };
            return WorkerUsage {
                cpu_ms: ms(u.user_time()) + ms(u.system_time()),
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
    channel.send(&ToServer::Started {
        confinement: summary,
    });
    let request = match job.request() {
        Ok(request) => request,
        Err(e) => {
            fail(&channel, JobError::Execution { detail: e });
            return ExitCode::from(2);
        }
    };
    let envelope = Arc::new(Envelope::new(Arc::clone(&channel) as Arc<dyn KekProvider>));
    let engine = Engine::new(storage, envelope);
    let progress_channel = Arc::clone(&channel);
    let on_progress = Arc::new(move |progress| {
        progress_channel.send(&ToServer::Progress {
            progress,
            usage: usage(),
        });
    });
    let outcome = runtime.block_on(engine.run_job_with_progress(&request, on_progress));
    match outcome {
        Ok(output) => {
            channel.send(&ToServer::Finished {
                output: Box::new(output),
                usage: usage(),
            });
            ExitCode::SUCCESS
        }
        Err(e) => {
            fail(&channel, e);
            ExitCode::FAILURE
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

/// The job's file-system view: its tables' folders (read) and its result folder (write).
fn confinement_for(job: &WorkerJob, options: &WorkerOptions) -> Confinement {
    let under_root = |location: &str| -> PathBuf { job.objects_root.join(location) };
    let read_dirs = job
        .tables
        .iter()
        .map(|t| under_root(t.location.trim_end_matches('/')))
        .filter(|p| p.is_dir())
        .collect();
    Confinement {
        read_dirs,
        write_dirs: vec![job.result_dir()],
        address_space_bytes: (options.address_space_mib > 0)
            .then_some(options.address_space_mib << 20),
        deny_network: true,
    }
}
