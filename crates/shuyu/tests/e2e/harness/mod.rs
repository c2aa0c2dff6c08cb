//! The end-to-end harness: a domain initialised in a temporary directory, `shuyu serve`
//! child processes on a loopback port (started, killed, restarted over the same data dir),
//! clients with a person's credentials, and polling for a state instead of sleeping.
//! Fixture builders (people, datasets, grants, scenarios, exports) live in [`fixtures`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shuyu_client::{Client, ClientError, Credentials, v1 as pb};
use tonic::Code;

pub mod fixtures;

/// The `shuyu` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_shuyu");
/// A hang guard for anything awaited: jobs, sweeps, polls. Never a pace.
pub const WAIT: Duration = Duration::from_secs(120);
/// An hour, for [`Domain::advance_clock`] and terms measured on the domain's clock.
pub const HOUR: Duration = Duration::from_secs(3600);
pub const HOUR_MS: i64 = 3_600_000;

/// The environment variable that runs the suite's domains on PostgreSQL: `postgres` starts a
/// throwaway PostgreSQL server for each domain (`initdb` in a temporary folder, a unix
/// socket), stopped when the domain drops. Unset or `sqlite`: `meta.db` in the data dir.
pub const METADATA_ENV: &str = "SHUYU_TEST_METADATA";

/// Whether this run keeps domains' metadata in PostgreSQL.
pub fn on_postgres() -> bool {
    match std::env::var(METADATA_ENV).as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("{METADATA_ENV}={other}: use postgres or sqlite"),
    }
}

/// A domain in a temporary directory.
pub struct Domain {
    /// The domain's PostgreSQL, when its metadata lives there (dropped after the servers,
    /// which hold connections to it, as `Server`s are dropped before the `Domain`).
    postgres: Option<shuyu_meta::testing::TestPostgres>,
    _temp: tempfile::TempDir,
    /// The data dir `shuyu init` made.
    pub data: PathBuf,
    creds: PathBuf,
}

impl Domain {
    /// A domain on the backend of this run ([`METADATA_ENV`]).
    pub fn new() -> Domain {
        Domain::create(on_postgres())
    }

    /// A domain whose metadata is `meta.db` in its data dir whatever the run: for tests of
    /// that file itself (edits behind the server's back, its modes, its log).
    pub fn new_sqlite() -> Domain {
        Domain::create(false)
    }

    /// A domain whose metadata lives in a PostgreSQL whatever the run: for servers that
    /// share one domain.
    pub fn new_postgres() -> Domain {
        Domain::create(true)
    }

    fn create(postgres: bool) -> Domain {
        let temp = tempfile::tempdir().expect("temp dir");
        let data = temp.path().join("domain");
        let creds = temp.path().join("creds");
        let postgres = postgres
            .then(|| shuyu_meta::testing::TestPostgres::start().expect("start a test PostgreSQL"));
        let mut init = Command::new(BIN);
        init.args(["init", "--data-dir"])
            .arg(&data)
            .arg("--creds-out")
            .arg(creds.join("admin"))
            .args(["--admin-id-number", &staff_id_number()]);
        if let Some(pg) = &postgres {
            init.args(["--metadata-url", &pg.url().to_string()]);
        }
        let out = init.output().expect("run shuyu init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Domain {
            postgres,
            _temp: temp,
            data,
            creds,
        }
    }

    /// A connection to the domain's metadata, on its backend, beside the server's: to read
    /// what the server committed, or to change it behind the server's back.
    pub fn metadata(&self) -> shuyu_meta::Db {
        let url = match &self.postgres {
            Some(pg) => pg.url(),
            None => shuyu_meta::MetadataUrl::Sqlite(self.data.join("meta.db")),
        };
        shuyu_meta::Db::open(&url, &shuyu_meta::DbOptions::default()).expect("open the metadata")
    }

    /// Rows of `sql` (every column read as text, by the names given) from the domain's
    /// metadata.
    pub fn query_texts(&self, sql: &str, columns: &[&str]) -> Vec<Vec<Option<String>>> {
        self.metadata()
            .read(|tx| {
                tx.query(sql, &[])?
                    .iter()
                    .map(|row| {
                        columns
                            .iter()
                            .map(|c| row.get::<Option<String>>(c))
                            .collect::<shuyu_meta::Result<Vec<_>>>()
                    })
                    .collect::<shuyu_meta::Result<Vec<_>>>()
            })
            .expect("query the metadata")
    }

    pub fn start(&self) -> Server {
        Server::start(&self.data)
    }

    /// Starts the server with extra configuration (TOML keys after `data_dir`) and,
    /// optionally, a policy file's text.
    pub fn start_with(&self, config: &str, policy: Option<&str>) -> Server {
        let dir = self.data.with_extension(format!("conf-{}", uuid_like()));
        std::fs::create_dir_all(&dir).expect("config dir");
        let mut text = format!("data_dir = {:?}\n", self.data.display().to_string());
        if let Some(policy) = policy {
            let path = dir.join("policy.toml");
            std::fs::write(&path, policy).expect("policy file");
            text.push_str(&format!("policy_file = {:?}\n", path.display().to_string()));
        }
        text.push_str(config);
        let path = dir.join("shuyu.toml");
        std::fs::write(&path, text).expect("config file");
        Server::start_args(
            &self.data,
            dir.join("server.log"),
            &["--config", &path.display().to_string()],
        )
    }

    pub fn creds(&self, name: &str) -> PathBuf {
        self.creds.join(name)
    }

    /// Moves the clock of every server of the domain (and of its database's leases) forward
    /// by `by`: a term, a window or a lease runs out without being waited for.
    pub fn advance_clock(&self, by: Duration) {
        let offset = self.clock_offset_ms() + i64::try_from(by.as_millis()).expect("a duration");
        std::fs::write(clock_file(&self.data), offset.to_string()).expect("write the clock");
    }

    /// How far the domain's servers' clock is ahead of the system's.
    pub fn clock_offset_ms(&self) -> i64 {
        std::fs::read_to_string(clock_file(&self.data))
            .map_or(0, |text| text.trim().parse().expect("an offset"))
    }

    /// Now on the domain's servers' clock, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.clock_offset_ms()
    }
}

/// The file holding the clock offset of the servers of the domain at `data`: they read it at
/// every reading of their clock (`SHUYU_TEST_CLOCK_FILE`; test builds only).
fn clock_file(data: &Path) -> PathBuf {
    data.with_extension("clock")
}

/// A `shuyu serve` child process; its stderr (logs at debug level) goes to a file.
pub struct Server {
    pub child: Child,
    /// `https://localhost:PORT`, the name the server's certificate carries.
    pub addr: String,
    pub log: PathBuf,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        let log = data.with_extension(format!("log-{}", uuid_like()));
        Server::start_args(data, log, &["--data-dir", &data.display().to_string()])
    }

    /// Starts `shuyu serve ARGS` on the domain at `data`, on the domain's clock.
    pub fn start_args(data: &Path, log: PathBuf, args: &[&str]) -> Server {
        let child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "debug")
            .env(shuyu_server::clock::TEST_CLOCK_ENV, clock_file(data))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn shuyu serve");
        let mut child = child;
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the serving line");
        let port = line
            .split("https://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Server {
            child,
            addr: format!("https://localhost:{port}"),
            log,
        }
    }

    pub async fn client(&self, creds: &Path) -> Client {
        Client::connect(
            &self.addr,
            &Credentials::from_dir(creds).expect("credentials"),
        )
        .await
        .expect("connect")
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The processes whose parent is `pid` now (a server's workers).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        // pid (comm) state ppid …
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Whether `pid` is gone (or a zombie waiting for its parent to reap it).
pub fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// A name part unique in this test process.
pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A valid resident ID number, distinct on each call in this process (real-name
/// registration refuses the same number twice).
pub fn staff_id_number() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let first17 = format!(
        "3302031985{:02}{:02}{:03}",
        1 + n / 28_000 % 12,
        1 + n / 1000 % 28,
        n % 1000
    );
    let check = shuyu_policy::id_number_check_char(&first17).expect("17 digits");
    format!("{first17}{check}")
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The status code of a client call that must have failed.
pub fn code(result: Result<impl std::fmt::Debug, ClientError>) -> Code {
    match result {
        Err(ClientError::Status(status)) => status.code(),
        other => panic!("expected a status, got {other:?}"),
    }
}

/// The status code of a raw gRPC call that must have failed.
pub fn status_code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match result {
        Err(status) => status.code(),
        Ok(response) => panic!("expected an error, got {response:?}"),
    }
}

/// The stable reason a refusal carries (the `google.rpc.ErrorInfo` in its details, domain
/// `shuyu.v1`): tests match it, not the message. Panics when the status carries none.
pub fn reason(status: &tonic::Status) -> String {
    shuyu_client::error_reason(status).unwrap_or_else(|| panic!("no reason in {status:?}"))
}

/// The stable reason of a raw gRPC call that must have failed.
pub fn status_reason<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
) -> String {
    match result {
        Err(status) => reason(&status),
        Ok(response) => panic!("expected an error, got {response:?}"),
    }
}

/// The stable reason of a client call that must have failed with a status.
pub fn client_reason(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    match result {
        Err(ClientError::Status(status)) => reason(&status),
        other => panic!("expected a status, got {other:?}"),
    }
}

/// The status code of a vote that must have been refused.
pub fn denied_code(result: Result<pb::Export, tonic::Status>) -> Code {
    match result {
        Err(status) => status.code(),
        Ok(export) => panic!("expected an error, got {export:?}"),
    }
}

/// Runs the `shuyu` binary with `args` to its end.
pub fn run_bin(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run shuyu")
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether `needle` occurs in `haystack` (bytes, for files on disk).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `shuyu audit verify` over a data dir (the server must be stopped).
pub fn audit_verify(data: &Path) -> std::process::Output {
    run_bin(&["audit", "verify", "--data-dir", data.to_str().unwrap()])
}

/// Copies a directory tree (a data dir to tamper with).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Polls `probe` until it returns `Some`, and returns that value: the way a test awaits a
/// state (a job running or finished, a sweep's notification, a file, a process gone) instead
/// of sleeping for a guess. Polls every 20 ms, backing off to 250 ms; panics after `timeout`,
/// naming `what` was awaited. A probe may panic itself to fail fast on a state that rules
/// the awaited one out (a job that finished without ever running).
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} awaiting {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
