//! The protocol between the server and a job worker process (`shuyu worker`).
//!
//! The server starts one worker per job and writes a [`WorkerJob`] as one JSON line on its
//! stdin. The worker answers with JSON lines on stdout ([`ToServer`]): progress, requests
//! for key-encryption keys, and finally the outcome. A KEK is sent only when the worker asks
//! for it and only if the server allowed it for this job ([`ToWorker::Kek`]), so a worker
//! holds the keys of the datasets it actually reads and of its own result, never another
//! tenant's. Nothing but protocol lines is written on stdout; logs go to stderr, which the
//! server treats as confidential (it may contain data values) and seals into the audit trail.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shuyu_policy::{MaskingDefaults, MaskingRule};
use shuyu_vault::{KekProvider, SecretKey, VaultError};
use zeroize::Zeroizing;

use crate::error::JobError;
use crate::schema::TableSpec;
use crate::session::{JobLimits, JobOutput, JobProgress, JobRequest, JobScope, SpillOptions};

/// A job as the server hands it to a worker.
#[derive(Serialize, Deserialize)]
pub struct WorkerJob {
    /// Lab or production (what the preview may show; production when absent).
    #[serde(default)]
    pub scope: JobScope,
    /// Job id.
    pub job_id: String,
    /// The query (SQL text, or a description of the Substrait plan).
    pub sql: String,
    /// A dataframe job's Substrait plan, hex-encoded.
    #[serde(default)]
    pub substrait_plan_hex: Option<String>,
    /// The only tables the query can resolve.
    pub tables: Vec<TableSpec>,
    /// The tenant's pseudonym key, hex.
    pub pseudonym_key: WireKey,
    /// Object path of the result file.
    pub result_file: String,
    /// KEK that wraps the result file's data key (the worker asks for it like any other).
    pub result_kek: String,
    /// Limits.
    pub limits: WireLimits,
    /// Policy masking defaults, by classification, in rule text form.
    pub masking_defaults: [String; 4],
    /// k of the preview's small-group suppression.
    pub min_entities: u64,
    /// n of the n-k dominance rule (how many top contributions the gate needs).
    #[serde(default)]
    pub dominance_n: u64,
    /// A differential-privacy job's parameters.
    #[serde(default)]
    pub dp: Option<crate::dp::DpSpec>,
    /// Root of the local object store.
    pub objects_root: PathBuf,
    /// Most bytes the job may spill (encrypted, into its result folder); 0 disables spilling.
    #[serde(default)]
    pub spill_max_bytes: u64,
    /// When set, the worker serves later jobs too (one at a time): this folder, relative to
    /// `objects_root`, holds the result folders of all of them and is the only one it may
    /// write, and its tables' folders are the only ones it may read. A later job must name
    /// the same folder, objects root and tables' folders, or the worker refuses it and exits.
    #[serde(default)]
    pub reuse_scope: Option<String>,
}

impl std::fmt::Debug for WorkerJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerJob")
            .field("job_id", &self.job_id)
            .field("sql_bytes", &self.sql.len())
            .field("tables", &self.tables.len())
            .field("result_file", &self.result_file)
            .finish_non_exhaustive()
    }
}

/// [`JobLimits`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireLimits {
    /// SQL size cap.
    pub max_sql_bytes: usize,
    /// Memory pool.
    pub memory_limit_bytes: usize,
    /// Time limit in milliseconds (the server also kills the worker at its deadline).
    pub timeout_ms: u64,
    /// Result row cap.
    pub max_result_rows: u64,
    /// Preview rows.
    pub preview_rows: usize,
}

/// A key in hex; zeroized on drop, never printed.
#[derive(Serialize, Deserialize, Clone)]
#[serde(transparent)]
pub struct WireKey(Zeroizing<String>);

impl std::fmt::Debug for WireKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WireKey(<redacted>)")
    }
}

impl WireKey {
    /// Encodes a key.
    pub fn new(key: &SecretKey) -> WireKey {
        WireKey(Zeroizing::new(hex::encode(key.expose())))
    }

    /// Decodes the key.
    ///
    /// # Errors
    /// If the text is not a key.
    pub fn key(&self) -> Result<SecretKey, VaultError> {
        let bytes = Zeroizing::new(
            hex::decode(self.0.as_bytes())
                .map_err(|_| VaultError::Format("a wire key is not hex".into()))?,
        );
        SecretKey::from_bytes(&bytes)
    }
}

/// Lines the worker writes on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToServer {
    /// The worker is confined and starting (with what confinement was applied).
    Started {
        /// Human-readable summary of the OS confinement.
        confinement: String,
    },
    /// Progress and resource use so far.
    Progress {
        /// Engine progress.
        progress: JobProgress,
        /// Resource use of the worker process so far.
        usage: WorkerUsage,
    },
    /// The worker needs this key-encryption key.
    NeedKek {
        /// Its id.
        kek_id: String,
    },
    /// The job succeeded.
    Finished {
        /// Its output.
        output: Box<JobOutput>,
        /// Final resource use.
        usage: WorkerUsage,
    },
    /// The job failed.
    Failed {
        /// Why.
        error: WireJobError,
        /// Final resource use.
        usage: WorkerUsage,
    },
}

/// Lines the server writes on the worker's stdin after the job.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToWorker {
    /// The answer to [`ToServer::NeedKek`]: the key, or `None` if the job may not use it.
    Kek {
        /// Its id.
        kek_id: String,
        /// The key, if allowed.
        key: Option<WireKey>,
    },
}

/// Resource use of a worker process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerUsage {
    /// User plus system CPU time, milliseconds.
    pub cpu_ms: u64,
    /// Peak resident set size, bytes.
    pub peak_rss_bytes: u64,
}

/// [`JobError`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireJobError {
    /// See [`JobError::Refused`].
    Refused(String),
    /// See [`JobError::Plan`].
    Plan(String),
    /// See [`JobError::ResourcesExhausted`].
    ResourcesExhausted,
    /// See [`JobError::Timeout`].
    Timeout,
    /// See [`JobError::Execution`].
    Execution(String),
}

impl From<JobError> for WireJobError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Refused(m) => WireJobError::Refused(m),
            JobError::Plan(m) => WireJobError::Plan(m),
            JobError::ResourcesExhausted => WireJobError::ResourcesExhausted,
            JobError::Timeout => WireJobError::Timeout,
            JobError::Execution { detail } => WireJobError::Execution(detail),
        }
    }
}

impl From<WireJobError> for JobError {
    fn from(e: WireJobError) -> Self {
        match e {
            WireJobError::Refused(m) => JobError::Refused(m),
            WireJobError::Plan(m) => JobError::Plan(m),
            WireJobError::ResourcesExhausted => JobError::ResourcesExhausted,
            WireJobError::Timeout => JobError::Timeout,
            WireJobError::Execution(detail) => JobError::Execution { detail },
        }
    }
}

/// Encodes masking defaults for [`WorkerJob::masking_defaults`].
pub fn masking_defaults_to_wire(d: &MaskingDefaults) -> [String; 4] {
    [
        d.direct_identifier.to_string(),
        d.quasi_identifier.to_string(),
        d.sensitive.to_string(),
        d.ordinary.to_string(),
    ]
}

impl WorkerJob {
    /// The engine request this job describes.
    ///
    /// # Errors
    /// If a key or masking rule does not decode.
    pub fn request(&self) -> Result<JobRequest, String> {
        let rule = |text: &str| text.parse::<MaskingRule>().map_err(|e| e.to_string());
        let [direct, quasi, sensitive, ordinary] = &self.masking_defaults;
        Ok(JobRequest {
            scope: self.scope,
            job_id: self.job_id.clone(),
            sql: self.sql.clone(),
            substrait_plan: match &self.substrait_plan_hex {
                Some(text) => Some(
                    hex::decode(text).map_err(|_| "the Substrait plan is not hex".to_owned())?,
                ),
                None => None,
            },
            tables: self.tables.clone(),
            pseudonym_key: self.pseudonym_key.key().map_err(|e| e.to_string())?,
            result_file: self.result_file.clone(),
            result_kek: self.result_kek.clone(),
            limits: JobLimits {
                max_sql_bytes: self.limits.max_sql_bytes,
                memory_limit_bytes: self.limits.memory_limit_bytes,
                timeout: Duration::from_millis(self.limits.timeout_ms),
                max_result_rows: self.limits.max_result_rows,
                preview_rows: self.limits.preview_rows,
            },
            masking_defaults: MaskingDefaults {
                direct_identifier: rule(direct)?,
                quasi_identifier: rule(quasi)?,
                sensitive: rule(sensitive)?,
                ordinary: rule(ordinary)?,
            },
            min_entities: self.min_entities,
            dominance_n: self.dominance_n as usize,
            dp: self.dp.clone(),
            spill: (self.spill_max_bytes > 0).then(|| SpillOptions {
                dir: self.result_dir(),
                max_bytes: self.spill_max_bytes,
            }),
        })
    }

    /// The folder the worker may write: the reuse scope of a worker that serves several
    /// jobs, else the job's result folder.
    pub fn write_dir(&self) -> PathBuf {
        match &self.reuse_scope {
            Some(scope) => self.objects_root.join(scope.trim_end_matches('/')),
            None => self.result_dir(),
        }
    }

    /// The folders of the job's tables (those that exist), which the worker may read.
    pub fn read_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .tables
            .iter()
            .map(|t| self.objects_root.join(t.location.trim_end_matches('/')))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Why `self`, a later job, cannot run in a worker confined for `first`; `None` if it
    /// can: the same objects root and reuse scope, no table folder outside the first job's,
    /// and its result folder inside the scope.
    pub fn misfit(&self, first: &WorkerJob) -> Option<String> {
        if self.reuse_scope.is_none() || self.reuse_scope != first.reuse_scope {
            return Some("its reuse scope differs".into());
        }
        if self.objects_root != first.objects_root {
            return Some("its object store differs".into());
        }
        let allowed = first.read_dirs();
        if self.read_dirs().iter().any(|d| !allowed.contains(d)) {
            return Some("it reads a folder outside the worker's view".into());
        }
        let scope = self.write_dir();
        let result = self.result_dir();
        if !result.starts_with(&scope) || result == scope {
            return Some("its result folder is outside the worker's scope".into());
        }
        None
    }

    /// The folder of the result file: the only place the worker may write.
    pub fn result_dir(&self) -> PathBuf {
        let parent = std::path::Path::new(&self.result_file)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        self.objects_root.join(parent)
    }
}

/// The worker's side of the pipe: writes [`ToServer`] lines and fetches KEKs from the server
/// on demand (a [`KekProvider`] for the worker's envelope).
pub struct WorkerChannel {
    out: Mutex<Box<dyn Write + Send>>,
    input: Mutex<Box<dyn BufRead + Send>>,
}

impl std::fmt::Debug for WorkerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerChannel")
    }
}

impl WorkerChannel {
    /// A channel over the worker's stdin (already past the job line) and stdout.
    pub fn new(input: Box<dyn BufRead + Send>, out: Box<dyn Write + Send>) -> WorkerChannel {
        WorkerChannel {
            out: Mutex::new(out),
            input: Mutex::new(input),
        }
    }

    /// The next line on stdin (a worker that serves several jobs reads its next job so);
    /// `None` at the end of input.
    pub fn next_line(&self) -> Option<Zeroizing<String>> {
        let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = Zeroizing::new(String::new());
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }

    /// Writes one message. A broken pipe means the server is gone; the worker then exits.
    pub fn send(&self, message: &ToServer) {
        let mut line = serde_json::to_vec(message).expect("protocol messages serialize");
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if out.write_all(&line).and_then(|()| out.flush()).is_err() {
            std::process::exit(3);
        }
    }
}

impl KekProvider for WorkerChannel {
    fn kek(&self, kek_id: &str) -> Result<SecretKey, VaultError> {
        // Hold the input lock across request and answer so concurrent requests pair up.
        let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
        self.send(&ToServer::NeedKek {
            kek_id: kek_id.to_owned(),
        });
        let mut line = Zeroizing::new(String::new());
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return Err(VaultError::UnknownKey(kek_id.to_owned())),
            Ok(_) => {}
        }
        match serde_json::from_str::<ToWorker>(&line) {
            Ok(ToWorker::Kek {
                kek_id: answered,
                key: Some(key),
            }) if answered == kek_id => key.key(),
            Ok(ToWorker::Kek { .. }) => Err(VaultError::KeyNotAllowed(kek_id.to_owned())),
            Err(_) => Err(VaultError::Format("unreadable key answer".into())),
        }
    }
}

/// Parses the job line a worker reads first.
///
/// # Errors
/// If the line is not a job.
pub fn parse_job(line: &str) -> Result<WorkerJob, String> {
    serde_json::from_str(line).map_err(|e| format!("unreadable job: {e}"))
}

/// Serialization of policy types by their text forms.
pub(crate) mod text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}
