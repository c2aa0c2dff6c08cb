//! Supervision of worker processes: start `shuyu worker` with a clean environment, hand it
//! its task (a job, or an export's work on a staged result), answer its key requests from the
//! task's allow-list only and an export task's requests for released cells page by page,
//! relay its progress, and kill it at its deadline or on cancellation. A worker that dies (stack overflow, out of
//! memory, killed) fails only its own job. A worker whose production job ended normally may
//! serve the next job of the same scenario ([`WorkerPool`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shuyu_engine::worker::{
    ExportAnswer, ToServer, ToWorker, WireKey, WireReleasedCell, WorkerTask, WorkerUsage,
};
use shuyu_engine::{JobError, JobOutput, JobProgress};
use shuyu_vault::KekProvider;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::config::WorkerConfig;
use crate::keys::KeyStore;

/// Most of a worker's stderr kept for the audit trail.
const MAX_STDERR_BYTES: usize = 64 << 10;
/// A job's protocol line longer than this is a broken worker (its outcome carries the
/// masked preview and the lineage).
pub const MAX_JOB_LINE_BYTES: usize = 64 << 20;
/// Extra time past the deadline before the worker is killed (it stops itself at the deadline).
const KILL_GRACE: Duration = Duration::from_secs(2);

/// How a worker run ended.
#[derive(Debug)]
pub enum WorkerEnd {
    /// The job succeeded; the result file's hash, as the worker hashed it.
    Finished {
        /// Its output.
        output: Box<JobOutput>,
        /// Hex SHA-256 of the result file.
        result_sha256: String,
    },
    /// An export task is done.
    ExportDone(Box<ExportAnswer>),
    /// The job failed and the worker said why.
    Failed(JobError),
    /// The worker was killed at the job's deadline.
    TimedOut,
    /// The worker was killed because the job was cancelled.
    Cancelled,
    /// The worker died or broke the protocol; `reason` is safe to show.
    Died {
        /// What happened.
        reason: String,
    },
}

/// Everything known about one worker run.
#[derive(Debug)]
pub struct WorkerReport {
    /// How it ended.
    pub end: WorkerEnd,
    /// Last resource use the worker reported.
    pub usage: WorkerUsage,
    /// Last progress the worker reported.
    pub progress: Option<JobProgress>,
    /// Wall time of the run.
    pub wall: Duration,
    /// The confinement the worker reported, if it got that far.
    pub confinement: Option<String>,
    /// KEK ids handed to the worker.
    pub keks_sent: Vec<String>,
    /// KEK ids the worker asked for and was refused.
    pub keks_refused: Vec<String>,
    /// The worker's stderr during the job (may contain data values: audit trail only,
    /// sealed).
    pub stderr: String,
    /// Whether the worker had served earlier jobs of the same scope.
    pub reused: bool,
    /// Jobs the worker has been given, this one included.
    pub worker_jobs: u32,
}

/// One job for a worker.
#[derive(Debug)]
pub struct WorkerRun<'a> {
    /// The task.
    pub task: WorkerTask,
    /// KEK ids the worker may receive.
    pub allowed_keks: HashSet<String>,
    /// Where keys come from.
    pub keys: &'a KeyStore,
    /// When to kill it.
    pub deadline: Instant,
    /// Becomes `true` on cancellation.
    pub cancel: watch::Receiver<bool>,
    /// The tenant whose job it is.
    pub tenant_id: String,
    /// Jobs with the same key may share a worker, one after another (the job carries the
    /// matching reuse scope); `None`: a worker of its own.
    pub reuse_key: Option<String>,
    /// Where an export task's released cells come from; `None`: it gets none.
    pub ledger: Option<LedgerFeed<'a>>,
    /// Longest line the worker may send (its final answer included).
    pub max_line_bytes: usize,
}

/// The release ledger an export task may read: its tenant's cells, page by page.
#[derive(Debug)]
pub struct LedgerFeed<'a> {
    /// The store.
    pub store: &'a crate::store::Store,
    /// Whose ledger.
    pub tenant_id: String,
}

/// Released cells sent to a worker per read of the store.
const RELEASED_PAGE: usize = 256;

fn program(config: &WorkerConfig) -> std::io::Result<PathBuf> {
    match &config.program {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe(),
    }
}

/// A running worker process and its pipes.
#[derive(Debug)]
struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// What it wrote on stderr since it was last taken (capped).
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_task: tokio::task::JoinHandle<()>,
    /// Jobs it has been given.
    jobs: u32,
}

impl Process {
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn take_stderr(&self) -> String {
        drain(&self.stderr)
    }
}

/// What a worker wrote on stderr since the last call (lossily decoded).
fn drain(stderr: &Mutex<Vec<u8>>) -> String {
    let mut kept = stderr.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&std::mem::take(&mut *kept)).into_owned()
}

/// A worker kept for the next job of its scope.
#[derive(Debug)]
struct Idle {
    key: String,
    tenant_id: String,
    since: Instant,
    process: Process,
}

/// The server's worker processes between jobs.
///
/// - One spare, started ahead of its job, so that a job does not wait for the exec and
///   start-up of a large binary. It idles on its stdin, unconfined but holding nothing: it
///   has no job, no key and a cleared environment, and it confines itself only once its job
///   arrives.
/// - Workers that finished a job with a reuse scope (a production job of one scenario), kept
///   for the next job of the same scope, at most `[worker] reuse_jobs` jobs each and
///   `idle_secs` idle, at most `max_idle` of them. Such a worker holds no key between jobs
///   (each job's keys are dropped with its engine), stays confined to its scope, and is
///   killed at once by any abnormal end, a deadline or a cancellation, and when its tenant
///   is suspended, stopped or terminated ([`WorkerPool::evict_tenant`]).
///
/// Every process exits when the server closes its stdin or drops it (killed on drop).
#[derive(Debug, Default)]
pub struct WorkerPool {
    spare: Mutex<Option<Process>>,
    idle: Mutex<Vec<Idle>>,
}

impl WorkerPool {
    /// A kept worker of `key` if one is alive; else the spare if alive, else a new process
    /// (then a new spare is started for the next job). The flag says whether it was kept.
    fn take(&self, config: &WorkerConfig, key: Option<&str>) -> std::io::Result<(Process, bool)> {
        if let Some(key) = key {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let max_idle = Duration::from_secs(config.idle_secs);
            idle.retain(|w| w.since.elapsed() < max_idle);
            while let Some(at) = idle.iter().rposition(|w| w.key == key) {
                let mut kept = idle.swap_remove(at);
                if kept.process.alive() {
                    return Ok((kept.process, true));
                }
            }
        }
        let mut slot = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        let alive = slot.take().and_then(|mut p| p.alive().then_some(p));
        let process = match alive {
            Some(process) => process,
            None => spawn(config)?,
        };
        *slot = spawn(config).ok();
        Ok((process, false))
    }

    /// Keeps `process` for the next job of `key`, evicting the oldest beyond the cap.
    fn keep(&self, config: &WorkerConfig, key: String, tenant_id: String, process: Process) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push(Idle {
            key,
            tenant_id,
            since: Instant::now(),
            process,
        });
        while idle.len() > config.max_idle {
            idle.remove(0);
        }
    }

    /// Kills the tenant's kept workers; how many there were.
    pub fn evict_tenant(&self, tenant_id: &str) -> usize {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let before = idle.len();
        idle.retain(|w| w.tenant_id != tenant_id);
        before - idle.len()
    }
}

/// Runs `run.job` in a worker (a kept one of its scope, the spare or a new one), supervises
/// it to the end and reports; keeps the worker for the next job of its scope if the job
/// ended normally.
pub async fn run(
    config: &WorkerConfig,
    pool: &WorkerPool,
    mut run: WorkerRun<'_>,
    on_progress: &(dyn Fn(JobProgress, WorkerUsage) + Send + Sync),
) -> WorkerReport {
    let started = Instant::now();
    let mut report = WorkerReport {
        end: WorkerEnd::Died {
            reason: "the worker did not start".into(),
        },
        usage: WorkerUsage::default(),
        progress: None,
        wall: Duration::ZERO,
        confinement: None,
        keks_sent: Vec::new(),
        keks_refused: Vec::new(),
        stderr: String::new(),
        reused: false,
        worker_jobs: 0,
    };
    let reusable = matches!(&run.task, WorkerTask::Job(job) if job.reuse_scope.is_some());
    let reuse_key = run
        .reuse_key
        .clone()
        .filter(|_| config.reuse_jobs > 1 && reusable);
    if reuse_key.is_none()
        && let WorkerTask::Job(job) = &mut run.task
    {
        // A worker of its own: it exits after this job.
        job.reuse_scope = None;
    }
    let (mut process, reused) = match pool.take(config, reuse_key.as_deref()) {
        Ok(taken) => taken,
        Err(e) => {
            report.stderr = format!("spawning the worker: {e}");
            return report;
        }
    };
    process.jobs += 1;
    report.reused = reused;
    report.worker_jobs = process.jobs;

    let job_line = {
        let mut line = Zeroizing::new(serde_json::to_vec(&run.task).unwrap_or_default());
        line.push(b'\n');
        line
    };
    let mut ended_normally = false;
    if process.stdin.write_all(&job_line).await.is_err() || process.stdin.flush().await.is_err() {
        report.end = WorkerEnd::Died {
            reason: "the worker exited before it read its job".into(),
        };
    } else {
        let end = converse(
            &mut run,
            &mut process.stdin,
            &mut process.stdout,
            &mut report,
            on_progress,
        )
        .await;
        if matches!(end, WorkerEnd::TimedOut | WorkerEnd::Cancelled) {
            let _ = process.child.start_kill();
        }
        ended_normally = matches!(end, WorkerEnd::Finished { .. } | WorkerEnd::Failed(_));
        report.end = end;
    }

    if let Some(key) = reuse_key.filter(|_| ended_normally && process.jobs < config.reuse_jobs) {
        // Kept: what it wrote on stderr during the job (written before its outcome line).
        tokio::task::yield_now().await;
        report.stderr = process.take_stderr();
        report.wall = started.elapsed();
        pool.keep(config, key, run.tenant_id.clone(), process);
        return report;
    }
    let Process {
        mut child,
        stdin,
        stderr,
        stderr_task,
        ..
    } = process;
    drop(stdin);
    // Whatever happened, the process must be gone before the job is recorded.
    let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    if let WorkerEnd::Died { reason } = &mut report.end
        && reason.is_empty()
    {
        *reason = death_reason(status);
    }
    let _ = stderr_task.await;
    report.stderr = drain(&stderr);
    if let WorkerEnd::Died { reason } = &mut report.end
        && report.stderr.contains("memory allocation of")
    {
        *reason = "the worker exceeded its memory ceiling and was stopped".into();
    }
    report.wall = started.elapsed();
    report
}

fn spawn(config: &WorkerConfig) -> std::io::Result<Process> {
    let mut command = Command::new(program(config)?);
    command
        .arg("worker")
        .arg("--threads")
        .arg(config.threads.to_string())
        .arg("--stack-mib")
        .arg(config.stack_mib.to_string())
        .arg("--address-space-mib")
        .arg(config.address_space_mib.to_string());
    if !config.confine {
        command.arg("--no-confine");
    }
    command
        .env_clear()
        .env("RUST_BACKTRACE", "0")
        // A worker is a fresh process: its whole working set is first-touch page faults,
        // which cost a large share of a query's CPU in a VM; `worker.malloc_tunables`
        // decides how much of it malloc keeps and reuses (benches/RESULTS.md).
        .env("GLIBC_TUNABLES", &config.malloc_tunables)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let (Some(stdin), Some(stdout), Some(mut stderr_pipe)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.start_kill();
        return Err(std::io::Error::other("the worker's pipes are missing"));
    };
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&stderr);
    let stderr_task = tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        loop {
            match stderr_pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                    let room = MAX_STDERR_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    });
    Ok(Process {
        child,
        stdin,
        stdout: BufReader::new(stdout),
        stderr,
        stderr_task,
        jobs: 0,
    })
}

fn death_reason(status: Option<std::process::ExitStatus>) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.and_then(|s| s.signal()) {
            let name = match signal {
                6 => "SIGABRT: typically a stack overflow or a failed allocation",
                9 => "SIGKILL",
                11 => "SIGSEGV",
                31 => "SIGSYS: a forbidden system call",
                _ => "a signal",
            };
            return format!("the worker process died ({name}, signal {signal})");
        }
    }
    match status.and_then(|s| s.code()) {
        Some(code) => format!("the worker process exited with status {code} without a result"),
        None => "the worker process ended without a result".into(),
    }
}

/// Reads the worker's lines until it finishes, dies, times out or is cancelled.
async fn converse(
    run: &mut WorkerRun<'_>,
    stdin: &mut ChildStdin,
    lines: &mut BufReader<ChildStdout>,
    report: &mut WorkerReport,
    on_progress: &(dyn Fn(JobProgress, WorkerUsage) + Send + Sync),
) -> WorkerEnd {
    let deadline = tokio::time::Instant::from_std(run.deadline + KILL_GRACE);
    loop {
        let mut line = Zeroizing::new(String::new());
        let read = tokio::select! {
            read = read_line_capped(lines, &mut line, run.max_line_bytes) => read,
            () = tokio::time::sleep_until(deadline) => return WorkerEnd::TimedOut,
            () = cancelled(&mut run.cancel) => return WorkerEnd::Cancelled,
        };
        match read {
            Ok(0) => {
                return WorkerEnd::Died {
                    reason: String::new(),
                };
            }
            Ok(_) => {}
            Err(e) => {
                return WorkerEnd::Died {
                    reason: format!("the worker broke the protocol ({e})"),
                };
            }
        }
        let message: ToServer = match serde_json::from_str(&line) {
            Ok(message) => message,
            Err(_) => {
                return WorkerEnd::Died {
                    reason: "the worker sent an unreadable message".into(),
                };
            }
        };
        match message {
            ToServer::Started { confinement } => report.confinement = Some(confinement),
            ToServer::Progress { progress, usage } => {
                report.usage = usage;
                report.progress = Some(progress);
                on_progress(progress, usage);
            }
            ToServer::NeedKek { kek_id } => {
                let key = if run.allowed_keks.contains(&kek_id) {
                    match run.keys.kek(&kek_id) {
                        Ok(key) => Some(WireKey::new(&key)),
                        Err(e) => {
                            tracing::warn!(%kek_id, error = %e, "a worker's key does not unwrap");
                            None
                        }
                    }
                } else {
                    None
                };
                if key.is_some() {
                    report.keks_sent.push(kek_id.clone());
                } else {
                    report.keks_refused.push(kek_id.clone());
                }
                let mut answer = Zeroizing::new(
                    serde_json::to_vec(&ToWorker::Kek { kek_id, key }).unwrap_or_default(),
                );
                answer.push(b'\n');
                if stdin.write_all(&answer).await.is_err() || stdin.flush().await.is_err() {
                    return WorkerEnd::Died {
                        reason: String::new(),
                    };
                }
            }
            ToServer::Finished {
                output,
                result_sha256,
                usage,
            } => {
                report.usage = usage;
                return WorkerEnd::Finished {
                    output,
                    result_sha256,
                };
            }
            ToServer::NeedReleased { lo, hi } => {
                let Some(feed) = &run.ledger else {
                    return WorkerEnd::Died {
                        reason: "the worker asked for released cells it may not read".into(),
                    };
                };
                if let Err(reason) = send_released(feed, (lo, hi), stdin).await {
                    return WorkerEnd::Died { reason };
                }
            }
            ToServer::ExportDone { answer, usage } => {
                report.usage = usage;
                return WorkerEnd::ExportDone(answer);
            }
            ToServer::Failed { error, usage } => {
                report.usage = usage;
                return WorkerEnd::Failed(error.into());
            }
        }
    }
}

/// Resolves once the switch is on; never if its sender is gone.
async fn cancelled(switch: &mut watch::Receiver<bool>) {
    if switch.wait_for(|on| *on).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Reads one line of at most `max` bytes: a longer one is an error once `max + 1` bytes were
/// read, never held whole.
async fn read_line_capped(
    lines: &mut BufReader<ChildStdout>,
    line: &mut String,
    max: usize,
) -> std::io::Result<usize> {
    let mut bytes = Zeroizing::new(Vec::new());
    let n = (&mut *lines)
        .take(max as u64 + 1)
        .read_until(b'\n', &mut bytes)
        .await?;
    if n > max {
        return Err(std::io::Error::other("line too long"));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| std::io::Error::other("a line that is not UTF-8"))?;
    line.push_str(text);
    Ok(n)
}

/// Answers [`ToServer::NeedReleased`]: the tenant's released cells in the range, up to the
/// ledger's mark when the request came, one line each, read from the store a page at a time;
/// then the mark.
async fn send_released(
    feed: &LedgerFeed<'_>,
    range: (u64, u64),
    stdin: &mut ChildStdin,
) -> std::result::Result<(), String> {
    let store_error = |e: crate::error::ServerError| format!("reading the release ledger: {e}");
    let mark = feed
        .store
        .read(|c| crate::exports::records::ledger_mark(c, &feed.tenant_id))
        .map_err(store_error)?;
    let mut after = 0;
    loop {
        let page = feed
            .store
            .read(|c| {
                crate::exports::records::released_cells_page(
                    c,
                    &feed.tenant_id,
                    range,
                    (after, mark),
                    RELEASED_PAGE,
                )
            })
            .map_err(store_error)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        let mut lines = Vec::new();
        for (_, cell) in &page {
            serde_json::to_writer(
                &mut lines,
                &ToWorker::Released {
                    cell: WireReleasedCell::from(cell),
                },
            )
            .map_err(|e| e.to_string())?;
            lines.push(b'\n');
        }
        write_line(stdin, &lines).await?;
    }
    let mut end = serde_json::to_vec(&ToWorker::ReleasedEnd { mark }).map_err(|e| e.to_string())?;
    end.push(b'\n');
    write_line(stdin, &end).await
}

async fn write_line(stdin: &mut ChildStdin, bytes: &[u8]) -> std::result::Result<(), String> {
    if stdin.write_all(bytes).await.is_err() || stdin.flush().await.is_err() {
        return Err("the worker stopped reading its answers".into());
    }
    Ok(())
}
