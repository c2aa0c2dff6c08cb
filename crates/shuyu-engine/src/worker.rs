//! The protocol between the server and a worker process (`shuyu worker`).
//!
//! The server starts one worker per task and writes a [`WorkerTask`] as one JSON line on its
//! stdin: a job ([`WorkerJob`]), or the work an export needs of a staged result
//! ([`ExportTask`]: its checks, the release ledger's inputs, the recipient's copy), so that
//! the server never holds a result. The worker answers with JSON lines on stdout ([`ToServer`]): progress, requests
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
use shuyu_policy::{DisclosurePolicy, MaskingDefaults, MaskingRule};
use shuyu_vault::{KekProvider, SecretKey, VaultError};
use zeroize::Zeroizing;

use crate::checks::{CheckReport, PopulationId, ReleasedCell};
use crate::error::JobError;
use crate::schema::TableSpec;
use crate::session::{JobLimits, JobOutput, JobProgress, JobRequest, JobScope, SpillOptions};
use crate::sketch::UnitSketch;

/// What a worker is handed, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerTask {
    /// A job.
    Job(Box<WorkerJob>),
    /// The work an export needs of a staged result.
    Export(Box<ExportTask>),
}

/// The work an export needs of a staged result. The worker reads the result (asking for its
/// job's KEK like a job does), asks the server for the tenant's released cells near the
/// result's populations in size when the checks need them ([`ToServer::NeedReleased`]), and
/// answers [`ToServer::ExportDone`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportTask {
    /// What it is for (`request:<job id>`, `export:<id>`), for the worker's stderr.
    pub label: String,
    /// Root of the local object store.
    pub objects_root: PathBuf,
    /// Object path of the staged result.
    pub result_file: String,
    /// What the checks read of it beyond its rows.
    pub gate: crate::ResultGate,
    /// The policy's disclosure thresholds.
    pub policy: WireDisclosure,
    /// Run the export checks ([`ExportAnswer::checks`]).
    #[serde(default)]
    pub checks: bool,
    /// Compute the release ledger's inputs ([`ExportAnswer::ledger`]).
    #[serde(default)]
    pub ledger: bool,
    /// Write the recipient's copy ([`ExportAnswer::product`]).
    #[serde(default)]
    pub product: Option<ProductTask>,
    /// Read the result's first rows for reviewers, at most this many
    /// ([`ExportAnswer::review`]); 0: none.
    #[serde(default)]
    pub review_rows: usize,
}

impl ExportTask {
    /// The folder of the staged result, which the worker may read.
    pub fn read_dir(&self) -> PathBuf {
        let parent = std::path::Path::new(&self.result_file)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        self.objects_root.join(parent)
    }

    /// The folder the worker may write (the copy's files and the sort's spill), if any.
    pub fn write_dir(&self) -> Option<PathBuf> {
        self.product
            .as_ref()
            .map(|p| self.objects_root.join(p.work_dir.trim_end_matches('/')))
    }
}

/// How to make the recipient's copy of an approved export.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProductTask {
    /// Folder (relative to the objects root) for the copy's files and the sort's encrypted
    /// spill: the only one the worker may write.
    pub work_dir: String,
    /// `parquet` or `csv`.
    pub format: String,
    /// Count cells rounded to the nearest multiple (0: not rounded).
    pub round_counts_to: u64,
    /// The recipient's pseudonym key, derived by the server.
    pub recipient_key: WireKey,
    /// The copy's row-order key, derived by the server from the fingerprint.
    pub order_key: WireKey,
    /// The copy's fingerprint.
    pub fingerprint: String,
    /// Rows of the staged result.
    pub expected_rows: u64,
    /// The sort's memory pool.
    pub memory_limit_bytes: usize,
    /// Most bytes the sort may spill (encrypted, into `work_dir`); 0: none.
    pub spill_max_bytes: u64,
    /// Where the data file goes (the package's `result.*`), chunk-sealed.
    pub data: SealedOutput,
    /// Where the Parquet copy served over Arrow Flight goes, when the data file is not
    /// Parquet.
    #[serde(default)]
    pub flight: Option<SealedOutput>,
}

/// A file the worker writes chunk-sealed ([`shuyu_vault::ChunkSealer`]) under a key the
/// server made for it: an ephemeral key, or a data key wrapped by a KEK the worker never
/// sees (`metadata_hex`, written into the file's header).
#[derive(Debug, Serialize, Deserialize)]
pub struct SealedOutput {
    /// Object path.
    pub location: String,
    /// The data key.
    pub key: WireKey,
    /// The header's metadata, hex (empty for an ephemeral key).
    #[serde(default)]
    pub metadata_hex: String,
}

/// [`shuyu_policy::DisclosurePolicy`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireDisclosure {
    /// See the policy.
    pub min_entities: u64,
    /// See the policy.
    pub dominance_n: u64,
    /// See the policy.
    pub dominance_k: f64,
    /// See the policy.
    pub p_percent: f64,
    /// See the policy.
    pub flag_zero_cells: bool,
    /// See the policy.
    pub flag_extremes: bool,
    /// See the policy.
    pub min_residual_dof: u64,
    /// See the policy.
    pub round_counts_to: u64,
    /// See the policy.
    pub k_anonymity: u64,
    /// See the policy.
    pub block_differencing: bool,
}

impl From<&DisclosurePolicy> for WireDisclosure {
    fn from(p: &DisclosurePolicy) -> WireDisclosure {
        WireDisclosure {
            min_entities: p.min_entities,
            dominance_n: p.dominance_n,
            dominance_k: p.dominance_k,
            p_percent: p.p_percent,
            flag_zero_cells: p.flag_zero_cells,
            flag_extremes: p.flag_extremes,
            min_residual_dof: p.min_residual_dof,
            round_counts_to: p.round_counts_to,
            k_anonymity: p.k_anonymity,
            block_differencing: p.block_differencing,
        }
    }
}

impl From<&WireDisclosure> for DisclosurePolicy {
    fn from(p: &WireDisclosure) -> DisclosurePolicy {
        DisclosurePolicy {
            min_entities: p.min_entities,
            dominance_n: p.dominance_n,
            dominance_k: p.dominance_k,
            p_percent: p.p_percent,
            flag_zero_cells: p.flag_zero_cells,
            flag_extremes: p.flag_extremes,
            min_residual_dof: p.min_residual_dof,
            round_counts_to: p.round_counts_to,
            k_anonymity: p.k_anonymity,
            block_differencing: p.block_differencing,
        }
    }
}

/// What an export task found and wrote.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ExportAnswer {
    /// The export checks, in their fixed order (when asked for).
    #[serde(default)]
    pub checks: Vec<WireCheck>,
    /// The release ledger's inputs (when asked for).
    #[serde(default)]
    pub ledger: Option<LedgerAnswer>,
    /// The recipient's copy (when asked for).
    #[serde(default)]
    pub product: Option<crate::ProductFacts>,
    /// The result's first rows for reviewers (when asked for).
    #[serde(default)]
    pub review: Option<ReviewRows>,
}

/// The first rows of a staged result, as reviewers see them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReviewRows {
    /// An Arrow IPC stream of the visible columns, hex.
    pub ipc_hex: String,
    /// Rows in it.
    pub n_rows: u64,
}

/// A [`CheckReport`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireCheck {
    /// Stable check name.
    pub name: String,
    /// `pass`, `review` or `fail`.
    pub outcome: String,
    /// Evidence for reviewers.
    pub detail: String,
    /// What the requesting engineer may learn.
    pub summary: String,
}

impl From<&CheckReport> for WireCheck {
    fn from(r: &CheckReport) -> WireCheck {
        WireCheck {
            name: r.name.to_owned(),
            outcome: r.outcome.as_str().to_owned(),
            detail: r.detail.clone(),
            summary: r.summary.clone(),
        }
    }
}

/// What the release ledger records of an approved aggregate result, and the ledger checks
/// against the releases the server sent.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LedgerAnswer {
    /// The ledger position the released cells were read at ([`ToWorker::ReleasedEnd`]);
    /// `None` when the checks needed none (the result has no populations to compare).
    pub mark: Option<u64>,
    /// Names of the ledger checks that failed.
    pub failed: Vec<String>,
    /// Every population sketch of the result.
    pub sketches: Vec<WireSketch>,
}

/// A population sketch on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireSketch {
    /// Its row.
    pub row: u64,
    /// Which of the row's populations.
    pub population: u32,
    /// [`UnitSketch::to_bytes`], hex.
    pub sketch_hex: String,
}

impl WireSketch {
    /// Encodes one.
    pub fn new(at: PopulationId, sketch: &UnitSketch) -> WireSketch {
        WireSketch {
            row: at.row as u64,
            population: at.population as u32,
            sketch_hex: hex::encode(sketch.to_bytes()),
        }
    }

    /// Decodes one.
    ///
    /// # Errors
    /// If it is not a sketch.
    pub fn decode(&self) -> Result<(PopulationId, UnitSketch), String> {
        let bytes = hex::decode(&self.sketch_hex).map_err(|_| "a sketch is not hex")?;
        let sketch = UnitSketch::from_vec(bytes).ok_or("a sketch does not decode")?;
        Ok((
            PopulationId {
                row: self.row as usize,
                population: self.population as usize,
            },
            sketch,
        ))
    }
}

/// A [`ReleasedCell`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireReleasedCell {
    /// See [`ReleasedCell`].
    pub export_id: String,
    /// See [`ReleasedCell`].
    pub row: u64,
    /// See [`ReleasedCell`].
    pub population: u32,
    /// The sketch's bytes, hex.
    pub sketch_hex: String,
    /// The sketch's digest, hex.
    pub digest_hex: String,
    /// See [`ReleasedCell`].
    pub screened_k: Option<u64>,
}

impl From<&ReleasedCell> for WireReleasedCell {
    fn from(c: &ReleasedCell) -> WireReleasedCell {
        WireReleasedCell {
            export_id: c.export_id.clone(),
            row: c.row,
            population: c.population,
            sketch_hex: hex::encode(c.sketch.to_bytes()),
            digest_hex: hex::encode(c.digest),
            screened_k: c.screened_k,
        }
    }
}

impl WireReleasedCell {
    /// Decodes one.
    ///
    /// # Errors
    /// If its sketch or digest does not decode.
    pub fn decode(self) -> Result<ReleasedCell, String> {
        let bytes = hex::decode(&self.sketch_hex).map_err(|_| "a sketch is not hex")?;
        let sketch = UnitSketch::from_vec(bytes).ok_or("a released sketch does not decode")?;
        let digest = hex::decode(&self.digest_hex)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or("a released sketch's digest does not decode")?;
        Ok(ReleasedCell {
            export_id: self.export_id,
            row: self.row,
            population: self.population,
            sketch,
            digest,
            screened_k: self.screened_k,
        })
    }
}

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
        /// Hex SHA-256 of the result file as written, hashed by the worker in chunks (the
        /// server does not read the result back to hash it).
        #[serde(default)]
        result_sha256: String,
        /// Final resource use.
        usage: WorkerUsage,
    },
    /// An export task needs the tenant's released cells whose populations number between
    /// `lo` and `hi` units (and those small enough for the reconstruction audit).
    NeedReleased {
        /// Fewest units.
        lo: u64,
        /// Most units.
        hi: u64,
    },
    /// An export task is done.
    ExportDone {
        /// What it found and wrote.
        answer: Box<ExportAnswer>,
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
    /// One released cell, in answer to [`ToServer::NeedReleased`].
    Released {
        /// The cell.
        cell: WireReleasedCell,
    },
    /// The last answer to [`ToServer::NeedReleased`]: every cell was sent.
    ReleasedEnd {
        /// The ledger position the cells were read at (no later release among them).
        mark: u64,
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
            Ok(ToWorker::Released { .. } | ToWorker::ReleasedEnd { .. }) | Err(_) => {
                Err(VaultError::Format("unreadable key answer".into()))
            }
        }
    }
}

impl WorkerChannel {
    /// Asks the server for the tenant's released cells whose populations number between
    /// `lo` and `hi` units; the cells and the ledger position they were read at.
    ///
    /// # Errors
    /// If the server's answer breaks the protocol.
    pub fn released_cells(&self, lo: u64, hi: u64) -> Result<(Vec<ReleasedCell>, u64), String> {
        let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
        self.send(&ToServer::NeedReleased { lo, hi });
        let mut cells = Vec::new();
        loop {
            let mut line = String::new();
            match input.read_line(&mut line) {
                Ok(0) | Err(_) => return Err("the server closed the pipe".into()),
                Ok(_) => {}
            }
            match serde_json::from_str::<ToWorker>(&line) {
                Ok(ToWorker::Released { cell }) => cells.push(cell.decode()?),
                Ok(ToWorker::ReleasedEnd { mark }) => return Ok((cells, mark)),
                Ok(ToWorker::Kek { .. }) | Err(_) => {
                    return Err("an unexpected answer to a request for released cells".into());
                }
            }
        }
    }
}

/// Parses a task line.
///
/// # Errors
/// If the line is not a task.
pub fn parse_task(line: &str) -> Result<WorkerTask, String> {
    serde_json::from_str(line).map_err(|e| format!("unreadable task: {e}"))
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
