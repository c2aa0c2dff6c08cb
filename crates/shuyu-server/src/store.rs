//! The embedded metadata store (SQLite, WAL, `synchronous=FULL`): tenants, principals,
//! certificates, wrapped keys, datasets, grants, jobs and exports, plus the audit trail.
//!
//! Every change commits together with its audit record ([`Store::commit`]), so a crash at any
//! point leaves either both or neither.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use shuyu_engine::{
    AUDITED_UNITS, ColumnSpec, ColumnType, DisclosureMeta, DpSpec, MaskedTable, OutputColumn,
    PopulationId, ReleasedCell, RowInfluence, UnitCount, UnitSketch,
};
use shuyu_policy::{Classification, MaskingRule, PriceRates, Role, ScenarioCategory};

use crate::audit::trail::{AuditEntry, AuditLog};
use crate::error::{Result, ServerError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keks (
    id TEXT PRIMARY KEY, wrapped BLOB NOT NULL, owner TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
    parent TEXT);
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kek_id TEXT NOT NULL,
    pseudonym_kek_id TEXT NOT NULL, created_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY, real_name TEXT NOT NULL, organisation TEXT NOT NULL, role TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants(id), created_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
    fingerprint TEXT PRIMARY KEY, principal_id TEXT NOT NULL REFERENCES principals(id),
    not_after_ms INTEGER NOT NULL, issued_at_ms INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL,
    steward_id TEXT NOT NULL, columns_json TEXT NOT NULL, n_rows INTEGER NOT NULL,
    location TEXT NOT NULL, kek_id TEXT NOT NULL, source_sha256 TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
    dataset_id TEXT NOT NULL REFERENCES datasets(id), tenant_id TEXT NOT NULL REFERENCES tenants(id),
    granted_by TEXT NOT NULL, granted_at_ms INTEGER NOT NULL, PRIMARY KEY (dataset_id, tenant_id));
CREATE TABLE IF NOT EXISTS releases (
    export_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, job_id TEXT NOT NULL,
    query_sha256 TEXT NOT NULL, population_json TEXT NOT NULL, n_cells INTEGER NOT NULL,
    released_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS released_cells (
    export_id TEXT NOT NULL REFERENCES releases(export_id), tenant_id TEXT NOT NULL,
    row INTEGER NOT NULL, population INTEGER NOT NULL DEFAULT 0, units INTEGER NOT NULL,
    sketch BLOB NOT NULL, PRIMARY KEY (export_id, row, population));
CREATE INDEX IF NOT EXISTS released_cells_by_size ON released_cells (tenant_id, units);
CREATE TABLE IF NOT EXISTS privacy_budgets (
    tenant_id TEXT NOT NULL, data_sha256 TEXT NOT NULL, epsilon_total REAL NOT NULL,
    epsilon_spent REAL NOT NULL, PRIMARY KEY (tenant_id, data_sha256));
CREATE TABLE IF NOT EXISTS privacy_spends (
    job_id TEXT NOT NULL, tenant_id TEXT NOT NULL, data_sha256 TEXT NOT NULL,
    dataset_id TEXT NOT NULL, epsilon REAL NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, author_id TEXT NOT NULL, sql TEXT NOT NULL,
    sql_sha256 TEXT NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL, error_id TEXT NOT NULL,
    n_rows INTEGER NOT NULL, columns_json TEXT NOT NULL, aggregate INTEGER NOT NULL,
    preview_json TEXT NOT NULL, inputs_json TEXT NOT NULL, result_file TEXT NOT NULL,
    result_kek TEXT NOT NULL, result_sha256 TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL, finished_at_ms INTEGER NOT NULL,
    usage_json TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS exports (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id), tenant_id TEXT NOT NULL,
    requester_id TEXT NOT NULL, purpose TEXT NOT NULL, format TEXT NOT NULL, status TEXT NOT NULL,
    checks_json TEXT NOT NULL, requested_at_ms INTEGER NOT NULL, decided_at_ms INTEGER NOT NULL,
    package_location TEXT NOT NULL, package_sha256 TEXT NOT NULL, policy_version TEXT NOT NULL,
    quorum INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS export_votes (
    export_id TEXT NOT NULL REFERENCES exports(id), reviewer_id TEXT NOT NULL,
    decision TEXT NOT NULL, shared_comment TEXT NOT NULL, private_comment TEXT NOT NULL,
    result_sha256 TEXT NOT NULL, query_sha256 TEXT NOT NULL, policy_version TEXT NOT NULL,
    at_ms INTEGER NOT NULL, PRIMARY KEY (export_id, reviewer_id));
CREATE TABLE IF NOT EXISTS export_comments (
    export_id TEXT NOT NULL REFERENCES exports(id), seq INTEGER NOT NULL,
    author_id TEXT NOT NULL, author_role TEXT NOT NULL, private INTEGER NOT NULL,
    text TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (export_id, seq));
CREATE TABLE IF NOT EXISTS export_events (
    export_id TEXT NOT NULL REFERENCES exports(id), seq INTEGER NOT NULL, at_ms INTEGER NOT NULL,
    actor_id TEXT NOT NULL, from_status TEXT NOT NULL, to_status TEXT NOT NULL,
    note TEXT NOT NULL, PRIMARY KEY (export_id, seq));
CREATE TABLE IF NOT EXISTS scenarios (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), name TEXT NOT NULL,
    purpose TEXT NOT NULL, data_list_json TEXT NOT NULL, valid_from_ms INTEGER NOT NULL,
    valid_until_ms INTEGER NOT NULL, status TEXT NOT NULL, applicant_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scenario_approvals (
    scenario_id TEXT NOT NULL REFERENCES scenarios(id), capacity TEXT NOT NULL,
    dataset_id TEXT NOT NULL, approver_id TEXT NOT NULL, decided INTEGER NOT NULL DEFAULT 0,
    approved INTEGER NOT NULL DEFAULT 0, decided_by TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '', decided_at_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scenario_id, capacity, dataset_id));
";

/// A tenant (operating unit).
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    /// KEK wrapping the tenant's staged results.
    pub kek_id: String,
    /// KEK id under which the tenant's pseudonym key is stored.
    pub pseudonym_kek_id: String,
    pub created_at_ms: i64,
    /// End of the tenant's data-lab access (R20); 0: none.
    pub lab_until_ms: i64,
}

/// A registered person.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub id: String,
    pub real_name: String,
    pub organisation: String,
    pub role: Role,
    pub tenant_id: Option<String>,
    pub created_at_ms: i64,
}

/// A dataset in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub steward_id: String,
    pub columns: Vec<ColumnSpec>,
    pub n_rows: u64,
    pub location: String,
    pub kek_id: String,
    pub source_sha256: String,
    pub created_at_ms: i64,
    /// A principal whose approval every scenario listing this dataset needs (R12).
    pub extra_approver_id: Option<String>,
}

/// Job lifecycle states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
    /// Succeeded, failed or cancelled: the record no longer changes.
    pub fn is_finished(&self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
    fn parse(s: &str) -> JobStatus {
        match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "cancelled" => JobStatus::Cancelled,
            _ => JobStatus::Failed,
        }
    }
}

/// Where a job runs (R3): the data lab on masked samples, or production on the raw data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobMode {
    #[default]
    Production,
    Lab,
}

impl JobMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobMode::Production => "production",
            JobMode::Lab => "lab",
        }
    }
    fn parse(s: &str) -> JobMode {
        if s == "lab" {
            JobMode::Lab
        } else {
            JobMode::Production
        }
    }
}

/// A job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub tenant_id: String,
    pub author_id: String,
    /// The SQL text; empty for a Substrait job.
    pub sql: String,
    /// The Substrait plan as submitted; empty for a SQL job.
    pub substrait_plan: Vec<u8>,
    /// Hex SHA-256 of the query as submitted (SQL text or plan bytes); kept on promotion.
    pub query_sha256: String,
    pub mode: JobMode,
    /// The scenario a production job runs under.
    pub scenario_id: String,
    /// The lab job a production job was promoted from.
    pub promoted_from: String,
    pub status: JobStatus,
    pub error: String,
    pub error_id: String,
    pub n_rows: u64,
    pub columns: Vec<OutputColumn>,
    pub aggregate: bool,
    /// What the export gate reads beyond the columns' lineage.
    pub gate: JobGate,
    /// A differential-privacy job's parameters.
    pub dp: Option<DpSpec>,
    pub preview: MaskedTable,
    pub inputs: Vec<String>,
    pub result_file: String,
    pub result_kek: String,
    pub result_sha256: String,
    pub created_at_ms: i64,
    pub finished_at_ms: i64,
    /// Resources the job used (R6: metering).
    pub usage: JobUsage,
}

/// A job's plan-level lineage and the hidden gate columns of its result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobGate {
    /// Source columns that decide which rows or groups appear.
    pub row_influencing: Vec<RowInfluence>,
    /// Plan parts the lineage walker could not analyse.
    pub unanalysable: Vec<String>,
    /// Hidden columns of the staged result.
    pub disclosure: DisclosureMeta,
}

impl JobGate {
    /// For a job that has not run, or ran before the gate counted privacy units: the checks
    /// then count rows and flag the result for review.
    pub fn unknown(aggregate: bool) -> JobGate {
        JobGate {
            row_influencing: Vec::new(),
            unanalysable: Vec::new(),
            disclosure: DisclosureMeta {
                aggregate,
                units: UnitCount::Rows(
                    "the job ran before the gate counted privacy units: rows counted".into(),
                ),
                dominance: Vec::new(),
                dominance_missing: Vec::new(),
                dp: None,
                // Unknown: compare the cells with each other too.
                overlapping_cells: true,
                populations: Vec::new(),
                refused: Vec::new(),
            },
        }
    }
}

impl JobRecord {
    /// "sql" or "substrait": how the query was submitted.
    pub fn query_kind(&self) -> &'static str {
        if self.substrait_plan.is_empty() {
            "sql"
        } else {
            "substrait"
        }
    }
}

/// What a job consumed, metered per job (R6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct JobUsage {
    /// CPU time of the worker process (user + system), milliseconds.
    pub cpu_ms: u64,
    /// Encrypted bytes read from storage.
    pub bytes_scanned: u64,
    /// Peak resident memory of the worker process, bytes.
    pub peak_memory_bytes: u64,
    /// Wall time from start to finish, milliseconds.
    pub wall_ms: u64,
    /// Time spent queued before a worker started, milliseconds.
    pub queued_ms: u64,
}

/// Export request states (R22). Every change is recorded in `export_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStatus {
    /// An automated check failed (terminal).
    Refused,
    /// Waiting for reviewers' votes.
    InReview,
    /// The quorum of approvals was reached; the package is built.
    Approved,
    /// A reviewer rejected it (terminal).
    Rejected,
    /// A reviewer returned it for changes (terminal: a revised job gets a new export).
    Returned,
    /// Approved, then withdrawn (terminal): no longer downloadable.
    Revoked,
    /// Approved, past its product's expiry: never stored, derived when read
    /// ([`ExportRecord::status_at`]).
    Expired,
}

impl ExportStatus {
    /// The stored text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExportStatus::Refused => "refused",
            ExportStatus::InReview => "in_review",
            ExportStatus::Approved => "approved",
            ExportStatus::Rejected => "rejected",
            ExportStatus::Returned => "returned",
            ExportStatus::Revoked => "revoked",
            ExportStatus::Expired => "expired",
        }
    }
    /// Unknown text reads as `Refused`: nothing unknown can be approved or downloaded.
    fn parse(s: &str) -> ExportStatus {
        match s {
            "in_review" => ExportStatus::InReview,
            "approved" => ExportStatus::Approved,
            "rejected" => ExportStatus::Rejected,
            "returned" => ExportStatus::Returned,
            "revoked" => ExportStatus::Revoked,
            "expired" => ExportStatus::Expired,
            _ => ExportStatus::Refused,
        }
    }
}

/// The first event of every export (`""` → `submitted`), followed by the check's outcome
/// (`submitted` → `in_review` or `refused`).
pub const EXPORT_SUBMITTED: &str = "submitted";

/// A stored check outcome: `pass`, `review` (reviewers must look at the flagged cells) or
/// `fail` (the export is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckVerdict {
    Pass,
    Review,
    Fail,
}

impl CheckVerdict {
    /// The stored text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckVerdict::Pass => "pass",
            CheckVerdict::Review => "review",
            CheckVerdict::Fail => "fail",
        }
    }
}

/// A stored check result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredCheck {
    pub name: String,
    pub outcome: CheckVerdict,
    /// Evidence for reviewers.
    pub detail: String,
    /// What the requesting tenant may learn.
    pub summary: String,
}

/// An export request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRecord {
    pub id: String,
    pub job_id: String,
    pub tenant_id: String,
    pub requester_id: String,
    pub purpose: String,
    /// "parquet" or "csv".
    pub format: String,
    pub status: ExportStatus,
    pub checks: Vec<StoredCheck>,
    pub requested_at_ms: i64,
    /// When the review ended (approved, rejected, returned); 0 before.
    pub decided_at_ms: i64,
    pub package_location: String,
    pub package_sha256: String,
    /// The policy version the checks ran under.
    pub policy_version: String,
    /// Approvals needed, fixed from the policy when the export was requested.
    pub quorum: u64,
    /// The recipient principal the product is for; empty for exports requested before
    /// products (their requester was their recipient).
    pub recipient_id: String,
    /// What the recipient may use the product for (R23).
    pub permitted_use: String,
    /// Days the product is usable after approval.
    pub expires_in_days: u32,
    /// The registered product, once approved.
    pub product: Option<ProductRecord>,
    /// Downloads of the package and Flight fetches, and the last one's time.
    pub download_count: u64,
    pub last_download_at_ms: i64,
}

impl ExportRecord {
    /// The status at `now_ms`: an approved product past its expiry is expired.
    pub fn status_at(&self, now_ms: i64) -> ExportStatus {
        match (&self.status, &self.product) {
            (ExportStatus::Approved, Some(p))
                if p.expires_at_ms > 0 && now_ms >= p.expires_at_ms =>
            {
                ExportStatus::Expired
            }
            (status, _) => *status,
        }
    }

    /// Who receives the product: its recipient, or for exports from before products, the
    /// requester.
    pub fn recipient(&self) -> &str {
        if self.recipient_id.is_empty() {
            &self.requester_id
        } else {
            &self.recipient_id
        }
    }
}

/// An approved export as a registered data product (R21, R24): what its manifest states.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProductRecord {
    pub scenario_id: String,
    #[serde(with = "category_text")]
    pub scenario_category: ScenarioCategory,
    pub recipient_organisation: String,
    pub approved_at_ms: i64,
    pub expires_at_ms: i64,
    /// The rates it is charged at (zero when free).
    pub per_10k_rows_fen: u64,
    pub per_download_fen: u64,
    pub n_rows: u64,
    /// Hex HMAC-SHA256 over (export id, recipient id) under the domain's fingerprint key.
    pub fingerprint: String,
    /// Base count cells were rounded to (0: none).
    pub round_counts_to: u64,
    /// Columns whose pseudonyms were re-keyed for the recipient.
    pub rekeyed_columns: Vec<String>,
    /// Order-free digest of the product's rows (see `ResultData::rows_digest`).
    pub rows_digest: String,
    /// The Parquet copy served over Arrow Flight when the package's data file is not
    /// Parquet (a Parquet package's own data file is served); absent for products from
    /// before copies were stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flight_copy: Option<StoredCopy>,
}

/// A sealed object that belongs to a product, with the hash and length of its plaintext.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredCopy {
    /// Object path (chunk-sealed under a data key wrapped by the tenant's KEK).
    pub location: String,
    /// Hex SHA-256 of its plaintext.
    pub sha256: String,
    /// Bytes of its plaintext.
    pub bytes: u64,
}

impl ProductRecord {
    /// The price basis filed with it.
    pub fn price_basis(&self) -> shuyu_policy::PriceBasis {
        shuyu_policy::PriceBasis::new(
            self.scenario_category,
            PriceRates {
                per_10k_rows_fen: self.per_10k_rows_fen,
                per_download_fen: self.per_download_fen,
            },
            self.n_rows,
        )
    }
}

mod category_text {
    use shuyu_policy::ScenarioCategory;

    pub fn serialize<S: serde::Serializer>(c: &ScenarioCategory, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<ScenarioCategory, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A reviewer's decision on an export in review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDecision {
    Approve,
    Reject,
    /// Returned for changes.
    Return,
}

impl ExportDecision {
    /// The stored text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExportDecision::Approve => "approve",
            ExportDecision::Reject => "reject",
            ExportDecision::Return => "return",
        }
    }
    fn parse(s: &str) -> rusqlite::Result<ExportDecision> {
        match s {
            "approve" => Ok(ExportDecision::Approve),
            "reject" => Ok(ExportDecision::Reject),
            "return" => Ok(ExportDecision::Return),
            other => Err(rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown export decision '{other}'").into(),
            )),
        }
    }
}

/// One reviewer's vote on an export and what it was cast on.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportVote {
    pub reviewer_id: String,
    pub decision: ExportDecision,
    pub shared_comment: String,
    pub private_comment: String,
    /// The job's result hash when the vote was cast.
    pub result_sha256: String,
    /// The job's query hash when the vote was cast.
    pub query_sha256: String,
    /// The server's policy version when the vote was cast.
    pub policy_version: String,
    pub at_ms: i64,
}

/// A comment on an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportComment {
    pub seq: u64,
    pub author_id: String,
    pub author_role: Role,
    /// Written and read by reviewers only.
    pub private: bool,
    pub text: String,
    pub at_ms: i64,
}

/// Everything recorded about an export besides the export itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExportHistory {
    pub votes: Vec<ExportVote>,
    pub comments: Vec<ExportComment>,
    pub events: Vec<ExportEvent>,
}

/// One status change of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportEvent {
    pub seq: u64,
    pub at_ms: i64,
    pub actor_id: String,
    /// An [`ExportStatus`] text, [`EXPORT_SUBMITTED`], or empty for the first event.
    pub from_status: String,
    pub to_status: String,
    pub note: String,
}

/// The metadata store.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    audit: AuditLog,
}

impl Store {
    /// Opens (or creates) the store at `path`. A new file is created 0600 (its `-wal` and
    /// `-shm` files take the same mode).
    ///
    /// # Errors
    /// If the file cannot be opened or the schema created.
    pub fn open(path: &Path, audit: AuditLog) -> Result<Store> {
        create_private_file(path)?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted and overwritten content (a preview sealed in place) is zeroed, not left in
        // free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        register_preview_seal(&conn, &audit)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::audit::trail::SCHEMA)?;
        conn.execute_batch(crate::notify::SCHEMA)?;
        conn.execute_batch(crate::stewardship::records::SCHEMA)?;
        crate::oversight::tasks::create_tables(&conn)?;
        conn.execute_batch(crate::lifecycle::records::SCHEMA)?;
        conn.execute_batch(crate::governance::records::SCHEMA)?;
        conn.execute_batch(crate::jobs::plan_texts::SCHEMA)?;
        conn.execute_batch(crate::audit::bindings::SCHEMA)?;
        conn.execute_batch(crate::jobs::oracle::SCHEMA)?;
        migrate(&conn)?;
        seal_plaintext_previews(&conn)?;
        crate::audit::bindings::install_triggers(&conn)?;
        let bind_existing = crate::audit::bindings::mark_unbound_rows(&conn)?;
        let store = Store {
            conn: Mutex::new(conn),
            audit,
        };
        if bind_existing {
            store.record(&crate::oversight::tasks::system_entry(
                crate::audit::bindings::BIND_EXISTING_ACTION,
                "meta",
                serde_json::json!({}),
            ))?;
        }
        Ok(store)
    }

    /// Opens the store at `path` read-only, for checks on the host (`shuyu audit verify`):
    /// no schema, no migration, no write to the database or its log; a missing file is an
    /// error, not a new store.
    ///
    /// # Errors
    /// If the file cannot be opened.
    pub fn open_read_only(path: &Path, audit: AuditLog) -> Result<Store> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        let conn = if path.exists() && !wal.exists() {
            // No log: no server has the file open, and everything is in the file. Opened
            // immutable, SQLite creates no `-wal` or `-shm` beside it.
            let text = path.to_string_lossy();
            let escaped = text
                .replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23");
            Connection::open_with_flags(
                format!("file:{escaped}?immutable=1"),
                flags | OpenFlags::SQLITE_OPEN_URI,
            )?
        } else {
            Connection::open_with_flags(path, flags)?
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "query_only", true)?;
        register_preview_seal(&conn, &audit)?;
        Ok(Store {
            conn: Mutex::new(conn),
            audit,
        })
    }

    /// The audit trail's keys.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction (SQLite rolls
        // it back), so a poisoned lock is safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` and appends `entry` in one durable transaction.
    ///
    /// # Errors
    /// If either fails; then nothing is committed.
    pub fn commit<T>(
        &self,
        entry: &AuditEntry,
        change: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let value = change(&tx)?;
        self.append_bound(&tx, entry)?;
        tx.commit()?;
        Ok(value)
    }

    /// Appends `entry`, binding the rows changed in `tx` to it (see [`crate::audit::bindings`]).
    fn append_bound(&self, tx: &Transaction<'_>, entry: &AuditEntry) -> Result<u64> {
        let bindings = crate::audit::bindings::take_pending(tx)?;
        if bindings.is_empty() {
            return self.audit.append(tx, entry);
        }
        let mut entry = entry.clone();
        entry.detail = crate::audit::bindings::with_bindings(&entry.detail, &bindings);
        let seq = self.audit.append(tx, &entry)?;
        crate::audit::bindings::record(tx, &bindings, seq)?;
        Ok(seq)
    }

    /// Runs `change`, which reads, decides and returns the audit entry describing what it
    /// did, in one durable transaction: read-modify-write without lost updates.
    ///
    /// # Errors
    /// If either fails; then nothing is committed.
    pub fn commit_with<T>(
        &self,
        change: impl FnOnce(&Transaction<'_>) -> Result<(T, AuditEntry)>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let (value, entry) = change(&tx)?;
        self.append_bound(&tx, &entry)?;
        tx.commit()?;
        Ok(value)
    }

    /// Appends an audit record on its own (denials, failures, reads).
    ///
    /// # Errors
    /// On store failure.
    pub fn record(&self, entry: &AuditEntry) -> Result<()> {
        self.commit(entry, |_| Ok(()))
    }

    /// Runs a read.
    ///
    /// # Errors
    /// Whatever `read` returns.
    pub fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        read(&conn)
    }
}

/// The prefix of a sealed preview in `jobs.preview_json`.
const SEALED_PREVIEW: &str = "sealed:v1:";

/// Registers, on this connection only, `shuyu_seal_preview(json, job_id)` and
/// `shuyu_open_preview(text, job_id)`: a job's masked preview is stored AES-256-GCM sealed
/// under a key derived from the master key, bound to the job's id, and opened only in memory
/// when the job is read. Unsealed text (a data dir from before) opens as itself.
fn register_preview_seal(conn: &Connection, audit: &AuditLog) -> Result<()> {
    use rusqlite::functions::FunctionFlags;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    let key = audit.preview_key().clone();
    conn.create_scalar_function("shuyu_seal_preview", 2, flags, move |ctx| {
        let plain: String = ctx.get(0)?;
        let job_id: String = ctx.get(1)?;
        let sealed = key.seal(job_id.as_bytes(), plain.as_bytes());
        Ok(format!("{SEALED_PREVIEW}{}", hex::encode(sealed)))
    })?;
    let key = audit.preview_key().clone();
    conn.create_scalar_function("shuyu_open_preview", 2, flags, move |ctx| {
        let text: String = ctx.get(0)?;
        let job_id: String = ctx.get(1)?;
        let Some(sealed) = text.strip_prefix(SEALED_PREVIEW) else {
            return Ok(text);
        };
        let bad = |what: &str| rusqlite::Error::UserFunctionError(what.to_owned().into());
        let sealed = hex::decode(sealed).map_err(|_| bad("a sealed preview is not hex"))?;
        let plain = key
            .open(job_id.as_bytes(), &sealed)
            .map_err(|_| bad("a sealed preview does not open under this domain's key"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad("a sealed preview is not UTF-8"))
    })?;
    Ok(())
}

/// Seals the previews a data dir stored in plaintext before previews were sealed, then
/// checkpoints the log so that no plaintext copy stays in it.
fn seal_plaintext_previews(conn: &Connection) -> Result<()> {
    let n = conn.execute(
        &format!(
            "UPDATE jobs SET preview_json = shuyu_seal_preview(preview_json, id)
             WHERE substr(preview_json, 1, {}) != '{SEALED_PREVIEW}'",
            SEALED_PREVIEW.len()
        ),
        [],
    )?;
    if n > 0 {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        tracing::info!(n, "sealed job previews stored in plaintext");
    }
    Ok(())
}

/// Creates `path` empty with mode 0600 unless it exists (whatever the umask), so that SQLite,
/// which gives its `-wal` and `-shm` files the database's mode, never makes a readable file.
fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ServerError::from_io(&path.display().to_string(), e)),
    }
}

/// Columns added after a table was first released: added to older data dirs on open.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("keks", "parent", "TEXT"),
    ("jobs", "usage_json", "TEXT NOT NULL DEFAULT '{}'"),
    ("jobs", "substrait_plan", "BLOB NOT NULL DEFAULT x''"),
    ("jobs", "mode", "TEXT NOT NULL DEFAULT 'production'"),
    ("jobs", "scenario_id", "TEXT NOT NULL DEFAULT ''"),
    ("jobs", "promoted_from", "TEXT NOT NULL DEFAULT ''"),
    ("tenants", "lab_until_ms", "INTEGER NOT NULL DEFAULT 0"),
    ("datasets", "extra_approver_id", "TEXT"),
    ("jobs", "gate_json", "TEXT NOT NULL DEFAULT ''"),
    ("jobs", "dp_json", "TEXT NOT NULL DEFAULT ''"),
    ("exports", "quorum", "INTEGER NOT NULL DEFAULT 1"),
    (
        "scenarios",
        "category",
        "TEXT NOT NULL DEFAULT 'commercial'",
    ),
    ("exports", "recipient_id", "TEXT NOT NULL DEFAULT ''"),
    ("exports", "permitted_use", "TEXT NOT NULL DEFAULT ''"),
    ("exports", "expires_in_days", "INTEGER NOT NULL DEFAULT 0"),
    ("exports", "product_json", "TEXT NOT NULL DEFAULT ''"),
    ("exports", "fingerprint", "TEXT NOT NULL DEFAULT ''"),
    ("exports", "rows_digest", "TEXT NOT NULL DEFAULT ''"),
    ("exports", "download_count", "INTEGER NOT NULL DEFAULT 0"),
    (
        "exports",
        "last_download_at_ms",
        "INTEGER NOT NULL DEFAULT 0",
    ),
    // The sketch's digest (NULL in older ledgers: computed when read) and the threshold of
    // the blocking differencing check the release passed (NULL: not blocked on, or older).
    ("released_cells", "digest", "BLOB"),
    ("released_cells", "screened_k", "INTEGER"),
];

fn migrate(conn: &Connection) -> Result<()> {
    for (table, column, declaration) in ADDED_COLUMNS {
        let present: bool = conn.query_row(
            &format!("SELECT count(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            [column],
            |r| r.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
            ))?;
        }
    }
    migrate_released_populations(conn)?;
    migrate_single_reviewer_exports(conn)
}

/// Gives the release ledger one row per population of a released cell (its people and its
/// branch populations), keyed by (export, row, population): ledgers written before hold
/// population 0 only.
fn migrate_released_populations(conn: &Connection) -> Result<()> {
    let present: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('released_cells') WHERE name = 'population'",
        [],
        |r| r.get(0),
    )?;
    if present {
        return Ok(());
    }
    conn.execute_batch(
        "CREATE TABLE released_cells_v2 (
             export_id TEXT NOT NULL REFERENCES releases(export_id), tenant_id TEXT NOT NULL,
             row INTEGER NOT NULL, population INTEGER NOT NULL DEFAULT 0,
             units INTEGER NOT NULL, sketch BLOB NOT NULL, digest BLOB, screened_k INTEGER,
             PRIMARY KEY (export_id, row, population));
         INSERT INTO released_cells_v2
             (export_id, tenant_id, row, population, units, sketch, digest, screened_k)
             SELECT export_id, tenant_id, row, 0, units, sketch, digest, screened_k
             FROM released_cells;
         DROP TABLE released_cells;
         ALTER TABLE released_cells_v2 RENAME TO released_cells;
         CREATE INDEX IF NOT EXISTS released_cells_by_size ON released_cells (tenant_id, units);",
    )?;
    Ok(())
}

/// Moves exports of the single-reviewer gate (one `reviewer_id` and `comment` on the export,
/// status `pending_review`, checks with `passed: bool`) to the quorum review: the decision
/// becomes a vote bound to the job's hashes and the export's policy version, the history is
/// rebuilt as events, statuses and check outcomes get their new text, and the two columns go.
/// Runs once, in one transaction, on a store that still has `exports.reviewer_id`.
fn migrate_single_reviewer_exports(conn: &Connection) -> Result<()> {
    let legacy: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('exports') WHERE name = 'reviewer_id'",
        [],
        |r| r.get(0),
    )?;
    if !legacy {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(
        "UPDATE exports SET status = 'in_review' WHERE status = 'pending_review';
         INSERT OR IGNORE INTO export_votes (export_id, reviewer_id, decision, shared_comment,
             private_comment, result_sha256, query_sha256, policy_version, at_ms)
         SELECT e.id, e.reviewer_id,
                CASE e.status WHEN 'approved' THEN 'approve' ELSE 'reject' END,
                e.comment, '', j.result_sha256, j.sql_sha256, e.policy_version, e.decided_at_ms
         FROM exports e JOIN jobs j ON j.id = e.job_id
         WHERE e.reviewer_id != '' AND e.status IN ('approved', 'rejected');
         INSERT OR IGNORE INTO export_events
             (export_id, seq, at_ms, actor_id, from_status, to_status, note)
         SELECT id, 1, requested_at_ms, requester_id, '', 'submitted', 'migrated'
         FROM exports;
         INSERT OR IGNORE INTO export_events
             (export_id, seq, at_ms, actor_id, from_status, to_status, note)
         SELECT id, 2, requested_at_ms, requester_id, 'submitted',
                CASE status WHEN 'refused' THEN 'refused' ELSE 'in_review' END, 'migrated'
         FROM exports;
         INSERT OR IGNORE INTO export_events
             (export_id, seq, at_ms, actor_id, from_status, to_status, note)
         SELECT id, 3, decided_at_ms, reviewer_id, 'in_review', status, 'migrated'
         FROM exports WHERE reviewer_id != '' AND status IN ('approved', 'rejected');
         ALTER TABLE exports DROP COLUMN reviewer_id;
         ALTER TABLE exports DROP COLUMN comment;",
    )?;
    let rows: Vec<(String, String)> = {
        let mut stmt = tx.prepare("SELECT id, checks_json FROM exports")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (id, checks_json) in rows {
        let mut checks: Vec<serde_json::Value> = serde_json::from_str(&checks_json)
            .map_err(|e| ServerError::internal(format!("export {id}: stored checks: {e}")))?;
        for check in &mut checks {
            if let Some(object) = check.as_object_mut()
                && let Some(passed) = object.remove("passed")
            {
                let outcome = if passed.as_bool() == Some(true) {
                    CheckVerdict::Pass
                } else {
                    CheckVerdict::Fail
                };
                object.insert("outcome".into(), outcome.as_str().into());
            }
        }
        tx.execute(
            "UPDATE exports SET checks_json = ?2 WHERE id = ?1",
            params![id, serde_json::Value::from(checks).to_string()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

// ------------------------------------------------------------------ meta and keys

pub fn meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Stores a KEK wrapped by `parent` (`None`: by the master key).
pub fn insert_kek(
    conn: &Connection,
    id: &str,
    wrapped: &[u8],
    owner: &str,
    parent: Option<&str>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO keks (id, wrapped, owner, created_at_ms, parent) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, wrapped, owner, crate::now_ms(), parent],
    )?;
    Ok(())
}

/// A stored KEK: id, wrapped key, parent KEK id (`None`: wrapped by the master key).
pub type StoredKek = (String, Vec<u8>, Option<String>);

/// Every stored KEK.
pub fn all_keks(conn: &Connection) -> Result<Vec<StoredKek>> {
    let mut stmt = conn.prepare("SELECT id, wrapped, parent FROM keks")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ------------------------------------------------------------------ tenants and principals

fn tenant_row(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        kek_id: r.get(2)?,
        pseudonym_kek_id: r.get(3)?,
        created_at_ms: r.get(4)?,
        lab_until_ms: r.get(5)?,
    })
}

pub fn insert_tenant(conn: &Connection, t: &Tenant) -> Result<()> {
    conn.execute(
        "INSERT INTO tenants (id, name, kek_id, pseudonym_kek_id, created_at_ms, lab_until_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            t.id,
            t.name,
            t.kek_id,
            t.pseudonym_kek_id,
            t.created_at_ms,
            t.lab_until_ms
        ],
    )
    .map_err(|e| unique_violation(e, "a tenant with this name"))?;
    Ok(())
}

pub fn tenant(conn: &Connection, id: &str) -> Result<Option<Tenant>> {
    Ok(conn
        .query_row(
            "SELECT id, name, kek_id, pseudonym_kek_id, created_at_ms, lab_until_ms FROM tenants WHERE id = ?1",
            [id],
            tenant_row,
        )
        .optional()?)
}

pub fn tenants(conn: &Connection) -> Result<Vec<Tenant>> {
    let mut stmt = conn.prepare(
        "SELECT id, name, kek_id, pseudonym_kek_id, created_at_ms, lab_until_ms FROM tenants ORDER BY created_at_ms, id",
    )?;
    let rows = stmt.query_map([], tenant_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn set_lab_until(conn: &Connection, tenant_id: &str, until_ms: i64) -> Result<()> {
    conn.execute(
        "UPDATE tenants SET lab_until_ms = ?2 WHERE id = ?1",
        params![tenant_id, until_ms],
    )?;
    Ok(())
}

fn principal_row(r: &Row<'_>) -> rusqlite::Result<Principal> {
    let role: String = r.get(3)?;
    Ok(Principal {
        id: r.get(0)?,
        real_name: r.get(1)?,
        organisation: r.get(2)?,
        role: role.parse().unwrap_or(Role::Auditor),
        tenant_id: r.get(4)?,
        created_at_ms: r.get(5)?,
    })
}

const PRINCIPAL_COLUMNS: &str =
    "p.id, p.real_name, p.organisation, p.role, p.tenant_id, p.created_at_ms";

pub fn insert_principal(conn: &Connection, p: &Principal) -> Result<()> {
    conn.execute(
        "INSERT INTO principals (id, real_name, organisation, role, tenant_id, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            p.id,
            p.real_name,
            p.organisation,
            p.role.as_str(),
            p.tenant_id,
            p.created_at_ms
        ],
    )?;
    Ok(())
}

pub fn principal(conn: &Connection, id: &str) -> Result<Option<Principal>> {
    Ok(conn
        .query_row(
            &format!("SELECT {PRINCIPAL_COLUMNS} FROM principals p WHERE p.id = ?1"),
            [id],
            principal_row,
        )
        .optional()?)
}

pub fn principals(conn: &Connection) -> Result<Vec<Principal>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {PRINCIPAL_COLUMNS} FROM principals p ORDER BY p.created_at_ms, p.id"
    ))?;
    let rows = stmt.query_map([], principal_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The principal bound to a certificate fingerprint, if the certificate is registered,
/// unrevoked and unexpired.
pub fn principal_by_certificate(
    conn: &Connection,
    fingerprint: &str,
    now_ms: i64,
) -> Result<Option<Principal>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {PRINCIPAL_COLUMNS} FROM certificates c JOIN principals p ON p.id = c.principal_id
                 WHERE c.fingerprint = ?1 AND c.revoked = 0 AND c.not_after_ms > ?2"
            ),
            params![fingerprint, now_ms],
            principal_row,
        )
        .optional()?)
}

pub fn insert_certificate(
    conn: &Connection,
    fingerprint: &str,
    principal_id: &str,
    not_after_ms: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO certificates (fingerprint, principal_id, not_after_ms, issued_at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![fingerprint, principal_id, not_after_ms, crate::now_ms()],
    )?;
    Ok(())
}

// ------------------------------------------------------------------ datasets

pub fn columns_to_json(columns: &[ColumnSpec]) -> String {
    serde_json::Value::Array(
        columns
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "data_type": c.data_type.as_str(),
                    "classification": c.classification.as_str(),
                    "masking": c.masking.to_string(),
                })
            })
            .collect(),
    )
    .to_string()
}

pub(crate) fn columns_from_json(text: &str) -> rusqlite::Result<Vec<ColumnSpec>> {
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            what.to_owned().into(),
        )
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad("columns json"))?;
    let field = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap_or_default().to_owned();
    value
        .as_array()
        .ok_or_else(|| bad("columns json"))?
        .iter()
        .map(|c| {
            Ok(ColumnSpec {
                name: field(c, "name"),
                data_type: field(c, "data_type")
                    .parse::<ColumnType>()
                    .map_err(|_| bad("column type"))?,
                classification: field(c, "classification")
                    .parse::<Classification>()
                    .map_err(|_| bad("classification"))?,
                masking: field(c, "masking")
                    .parse::<MaskingRule>()
                    .map_err(|_| bad("masking"))?,
            })
        })
        .collect()
}

const DATASET_COLUMNS: &str = "d.id, d.name, d.description, d.steward_id, d.columns_json, d.n_rows,
    d.location, d.kek_id, d.source_sha256, d.created_at_ms, d.extra_approver_id";

fn dataset_row(r: &Row<'_>) -> rusqlite::Result<DatasetRecord> {
    let columns: String = r.get(4)?;
    Ok(DatasetRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        steward_id: r.get(3)?,
        columns: columns_from_json(&columns)?,
        n_rows: r.get(5)?,
        location: r.get(6)?,
        kek_id: r.get(7)?,
        source_sha256: r.get(8)?,
        created_at_ms: r.get(9)?,
        extra_approver_id: r.get(10)?,
    })
}

pub fn insert_dataset(conn: &Connection, d: &DatasetRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO datasets (id, name, description, steward_id, columns_json, n_rows, location, kek_id,
                               source_sha256, created_at_ms, extra_approver_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            d.id,
            d.name,
            d.description,
            d.steward_id,
            columns_to_json(&d.columns),
            d.n_rows,
            d.location,
            d.kek_id,
            d.source_sha256,
            d.created_at_ms,
            d.extra_approver_id
        ],
    )
    .map_err(|e| unique_violation(e, "a dataset with this name"))?;
    Ok(())
}

pub fn set_extra_approver(
    conn: &Connection,
    dataset_id: &str,
    approver_id: Option<&str>,
) -> Result<()> {
    conn.execute(
        "UPDATE datasets SET extra_approver_id = ?2 WHERE id = ?1",
        params![dataset_id, approver_id],
    )?;
    Ok(())
}

pub fn dataset_name_taken(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM datasets WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn dataset(conn: &Connection, id: &str) -> Result<Option<DatasetRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {DATASET_COLUMNS} FROM datasets d WHERE d.id = ?1"),
            [id],
            dataset_row,
        )
        .optional()?)
}

pub fn datasets(conn: &Connection) -> Result<Vec<DatasetRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {DATASET_COLUMNS} FROM datasets d ORDER BY d.name"
    ))?;
    let rows = stmt.query_map([], dataset_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A dataset granted to `tenant_id`, or `None` (missing and not granted look the same).
pub fn granted_dataset(
    conn: &Connection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<DatasetRecord>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {DATASET_COLUMNS} FROM datasets d JOIN grants g ON g.dataset_id = d.id
                 WHERE g.tenant_id = ?1 AND d.id = ?2"
            ),
            params![tenant_id, id],
            dataset_row,
        )
        .optional()?)
}

pub fn granted_datasets(conn: &Connection, tenant_id: &str) -> Result<Vec<DatasetRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {DATASET_COLUMNS} FROM datasets d JOIN grants g ON g.dataset_id = d.id
         WHERE g.tenant_id = ?1 ORDER BY d.name"
    ))?;
    let rows = stmt.query_map([tenant_id], dataset_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn insert_grant(
    conn: &Connection,
    dataset_id: &str,
    tenant_id: &str,
    granted_by: &str,
) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO grants (dataset_id, tenant_id, granted_by, granted_at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![dataset_id, tenant_id, granted_by, crate::now_ms()],
    )?;
    Ok(())
}

// ------------------------------------------------------------------ jobs

fn output_columns_to_json(columns: &[OutputColumn]) -> String {
    serde_json::Value::Array(
        columns
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "data_type": c.data_type,
                    "sources": c.sources,
                    "classification": c.classification.as_str(),
                    "aggregated": c.aggregated,
                    "masked": c.masked,
                    "bare": c.bare,
                    "per_unit": c.per_unit,
                    "preview_rule": c.preview_rule.to_string(),
                    "functions": c.functions,
                })
            })
            .collect(),
    )
    .to_string()
}

fn output_columns_from_json(text: &str) -> Vec<OutputColumn> {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    value
        .as_array()
        .map(|columns| {
            columns
                .iter()
                .map(|c| OutputColumn {
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    data_type: c["data_type"].as_str().unwrap_or_default().to_owned(),
                    sources: c["sources"]
                        .as_array()
                        .map(|s| {
                            s.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    // An unreadable classification counts as the strictest.
                    classification: c["classification"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(Classification::DirectIdentifier),
                    aggregated: c["aggregated"].as_bool().unwrap_or(false),
                    masked: c["masked"].as_bool().unwrap_or(false),
                    bare: c["bare"].as_bool().unwrap_or(false),
                    per_unit: c["per_unit"].as_bool().unwrap_or(false),
                    preview_rule: c["preview_rule"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(MaskingRule::Suppress),
                    functions: c["functions"]
                        .as_array()
                        .map(|s| {
                            s.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn masked_table_to_json(t: &MaskedTable) -> String {
    serde_json::json!({
        "columns": t.columns,
        "rows": t.rows,
        "withheld": t.withheld,
        "rows_withheld": t.rows_withheld,
        "note": t.note,
    })
    .to_string()
}

fn masked_table_from_json(text: &str) -> MaskedTable {
    // Older rows hold only columns and rows; the other fields default.
    serde_json::from_str(text).unwrap_or_default()
}

/// `sql_sha256` holds the query hash of SQL and Substrait jobs alike (the column predates
/// Substrait jobs).
const JOB_COLUMNS: &str =
    "id, tenant_id, author_id, sql, sql_sha256, status, error, error_id, n_rows,
    columns_json, aggregate, shuyu_open_preview(preview_json, id), inputs_json, result_file,
    result_kek, result_sha256,
    created_at_ms, finished_at_ms, usage_json, substrait_plan, mode, scenario_id, promoted_from,
    gate_json, dp_json";

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let status: String = r.get(5)?;
    let columns: String = r.get(9)?;
    let preview: String = r.get(11)?;
    let inputs: String = r.get(12)?;
    let usage: String = r.get(18)?;
    let mode: String = r.get(20)?;
    let gate: String = r.get(23)?;
    let dp: String = r.get(24)?;
    let aggregate: bool = r.get(10)?;
    Ok(JobRecord {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        author_id: r.get(2)?,
        sql: r.get(3)?,
        query_sha256: r.get(4)?,
        substrait_plan: r.get(19)?,
        mode: JobMode::parse(&mode),
        scenario_id: r.get(21)?,
        promoted_from: r.get(22)?,
        status: JobStatus::parse(&status),
        error: r.get(6)?,
        error_id: r.get(7)?,
        n_rows: r.get(8)?,
        columns: output_columns_from_json(&columns),
        aggregate,
        gate: serde_json::from_str(&gate).unwrap_or_else(|_| JobGate::unknown(aggregate)),
        dp: serde_json::from_str(&dp).ok(),
        preview: masked_table_from_json(&preview),
        inputs: serde_json::from_str(&inputs).unwrap_or_default(),
        result_file: r.get(13)?,
        result_kek: r.get(14)?,
        result_sha256: r.get(15)?,
        created_at_ms: r.get(16)?,
        finished_at_ms: r.get(17)?,
        usage: serde_json::from_str(&usage).unwrap_or_default(),
    })
}

/// The result folder of every recorded job (`results/…/<job>/`): what start-up keeps under
/// `results/`.
///
/// # Errors
/// On store failure.
pub fn job_folders(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT id, tenant_id, result_file FROM jobs")?;
    let rows = stmt.query_map([], |r| {
        let (id, tenant, file): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        Ok(match file.rsplit_once('/') {
            Some((folder, _)) => format!("{folder}/"),
            None => format!("results/{tenant}/{id}/"),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The package of every export that has one: what start-up keeps under `exports/`.
///
/// # Errors
/// On store failure.
/// Every object an export names: its package and its product's Flight copy.
pub fn package_locations(conn: &Connection) -> Result<std::collections::HashSet<String>> {
    let mut stmt = conn.prepare(
        "SELECT package_location, product_json FROM exports WHERE package_location != ''",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut locations = std::collections::HashSet::new();
    for row in rows {
        let (package, product) = row?;
        locations.insert(package);
        if let Ok(ProductRecord {
            flight_copy: Some(copy),
            ..
        }) = serde_json::from_str::<ProductRecord>(&product)
        {
            locations.insert(copy.location);
        }
    }
    Ok(locations)
}

pub fn upsert_job(conn: &Connection, j: &JobRecord) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO jobs ({})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, shuyu_seal_preview(?12, ?1),
                     ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
            JOB_COLUMNS.replace("shuyu_open_preview(preview_json, id)", "preview_json")
        ),
        params![
            j.id,
            j.tenant_id,
            j.author_id,
            j.sql,
            j.query_sha256,
            j.status.as_str(),
            j.error,
            j.error_id,
            j.n_rows,
            output_columns_to_json(&j.columns),
            j.aggregate,
            masked_table_to_json(&j.preview),
            serde_json::to_string(&j.inputs).unwrap_or_default(),
            j.result_file,
            j.result_kek,
            j.result_sha256,
            j.created_at_ms,
            j.finished_at_ms,
            serde_json::to_string(&j.usage).unwrap_or_default(),
            j.substrait_plan,
            j.mode.as_str(),
            j.scenario_id,
            j.promoted_from,
            serde_json::to_string(&j.gate).unwrap_or_default(),
            j.dp.as_ref()
                .map(|d| serde_json::to_string(d).unwrap_or_default())
                .unwrap_or_default()
        ],
    )?;
    Ok(())
}

/// A job of `tenant_id` (another tenant's job is `None`, like a missing one).
pub fn job(conn: &Connection, tenant_id: &str, id: &str) -> Result<Option<JobRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND tenant_id = ?2"),
            params![id, tenant_id],
            job_row,
        )
        .optional()?)
}

pub fn job_any_tenant(conn: &Connection, id: &str) -> Result<Option<JobRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            [id],
            job_row,
        )
        .optional()?)
}

pub fn jobs(conn: &Connection, tenant_id: &str) -> Result<Vec<JobRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = ?1 ORDER BY created_at_ms DESC LIMIT 200"
    ))?;
    let rows = stmt.query_map([tenant_id], job_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Jobs left queued or running by a crash or restart.
/// Jobs (of one tenant, or of all) that finished in `[from_ms, to_ms)`, for metering.
pub fn finished_jobs_between(
    conn: &Connection,
    tenant_id: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<JobRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE finished_at_ms >= ?1 AND finished_at_ms < ?2
         AND (?3 IS NULL OR tenant_id = ?3) ORDER BY finished_at_ms, id"
    ))?;
    let rows = stmt.query_map(params![from_ms, to_ms, tenant_id], job_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn unfinished_jobs(conn: &Connection) -> Result<Vec<JobRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('queued', 'running')"
    ))?;
    let rows = stmt.query_map([], job_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ------------------------------------------------------------------ release ledger

/// Records an approved aggregate export's cells in its tenant's release ledger: the query,
/// its population predicate (row-influencing columns) and each cell's population sketch
/// with its digest, and `screened_k`: the threshold of the blocking differencing check the
/// release passed (`None` when the policy let reviewers judge close pairs).
pub fn record_release(
    conn: &Connection,
    export: &ExportRecord,
    job: &JobRecord,
    sketches: &[(PopulationId, UnitSketch)],
    screened_k: Option<u64>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO releases (export_id, tenant_id, job_id, query_sha256, population_json,
                               n_cells, released_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            export.id,
            export.tenant_id,
            job.id,
            job.query_sha256,
            serde_json::to_string(&job.gate.row_influencing).unwrap_or_default(),
            sketches.len() as u64,
            crate::now_ms()
        ],
    )?;
    let mut insert = conn.prepare(
        "INSERT INTO released_cells (export_id, tenant_id, row, population, units, sketch,
                                     digest, screened_k)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (at, sketch) in sketches {
        insert.execute(params![
            export.id,
            export.tenant_id,
            at.row as u64,
            at.population as u64,
            sketch.units(),
            sketch.to_bytes(),
            sketch.digest().to_vec(),
            screened_k
        ])?;
    }
    Ok(())
}

/// The position of a tenant's release ledger: the last released cell recorded for it (0
/// when none). Cells are only ever added, so an unchanged mark means an unchanged ledger: a
/// check run against the cells up to a mark still holds while the mark stays.
pub fn ledger_mark(conn: &Connection, tenant_id: &str) -> Result<u64> {
    Ok(conn.query_row(
        "SELECT coalesce(max(rowid), 0) FROM released_cells WHERE tenant_id = ?1",
        [tenant_id],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// One page of a tenant's released cells whose populations number between `lo` and `hi`
/// units (for the differencing check), and every one small enough to be audited for
/// reconstruction: at most `limit` cells after position `after` and up to `mark`
/// ([`ledger_mark`]), in order, each with its position (read page by page, the ledger is
/// never held whole).
pub fn released_cells_page(
    conn: &Connection,
    tenant_id: &str,
    (lo, hi): (u64, u64),
    (after, mark): (u64, u64),
    limit: usize,
) -> Result<Vec<(u64, ReleasedCell)>> {
    let mut stmt = conn.prepare(
        "SELECT rowid, export_id, row, population, sketch, digest, screened_k
         FROM released_cells
         WHERE tenant_id = ?1 AND (units BETWEEN ?2 AND ?3 OR units <= ?4)
           AND rowid > ?5 AND rowid <= ?6
         ORDER BY rowid LIMIT ?7",
    )?;
    let audited = AUDITED_UNITS as u64;
    let rows = stmt.query_map(
        params![tenant_id, lo, hi, audited, after, mark, limit as u64],
        |r| {
            Ok((
                r.get::<_, i64>("rowid")? as u64,
                r.get::<_, String>("export_id")?,
                r.get::<_, u64>("row")?,
                r.get::<_, u32>("population")?,
                r.get::<_, Vec<u8>>("sketch")?,
                r.get::<_, Option<Vec<u8>>>("digest")?,
                r.get::<_, Option<u64>>("screened_k")?,
            ))
        },
    )?;
    let mut cells = Vec::new();
    for row in rows {
        let (at, export_id, row, population, sketch, digest, screened_k) = row?;
        let unreadable =
            || crate::error::ServerError::internal("a released cell's sketch is unreadable");
        let sketch = UnitSketch::from_vec(sketch).ok_or_else(unreadable)?;
        // Older ledgers have no digest: computed then.
        let digest = match digest {
            Some(stored) => stored.try_into().map_err(|_| unreadable())?,
            None => sketch.digest(),
        };
        cells.push((
            at,
            ReleasedCell {
                export_id,
                row,
                population,
                sketch,
                digest,
                screened_k,
            },
        ));
    }
    Ok(cells)
}

// ------------------------------------------------------------------ privacy budgets

/// A tenant's differential-privacy budget over one dataset's content.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacyBudget {
    pub tenant_id: String,
    pub data_sha256: String,
    pub epsilon_total: f64,
    pub epsilon_spent: f64,
}

fn budget(conn: &Connection, tenant_id: &str, data_sha256: &str) -> Result<Option<PrivacyBudget>> {
    Ok(conn
        .query_row(
            "SELECT epsilon_total, epsilon_spent FROM privacy_budgets
             WHERE tenant_id = ?1 AND data_sha256 = ?2",
            params![tenant_id, data_sha256],
            |r| {
                Ok(PrivacyBudget {
                    tenant_id: tenant_id.to_owned(),
                    data_sha256: data_sha256.to_owned(),
                    epsilon_total: r.get(0)?,
                    epsilon_spent: r.get(1)?,
                })
            },
        )
        .optional()?)
}

/// The tenant's budget over `data_sha256`, created with total `new_total` if it has none.
fn budget_or_new(
    conn: &Connection,
    tenant_id: &str,
    data_sha256: &str,
    new_total: f64,
) -> Result<PrivacyBudget> {
    conn.execute(
        "INSERT OR IGNORE INTO privacy_budgets (tenant_id, data_sha256, epsilon_total, epsilon_spent)
         VALUES (?1, ?2, ?3, 0)",
        params![tenant_id, data_sha256, new_total],
    )?;
    budget(conn, tenant_id, data_sha256)?
        .ok_or_else(|| ServerError::internal("a privacy budget vanished"))
}

/// Spends `epsilon` of the tenant's budget over `data_sha256` for `job_id` (creating the
/// budget at `default_total` on first use), or refuses when it would overspend. Run inside
/// the transaction that records the job, so concurrent jobs cannot overspend.
pub fn spend_privacy(
    conn: &Connection,
    tenant_id: &str,
    dataset_id: &str,
    data_sha256: &str,
    job_id: &str,
    epsilon: f64,
    default_total: f64,
) -> Result<PrivacyBudget> {
    let mut current = budget_or_new(conn, tenant_id, data_sha256, default_total)?;
    // A tolerance far below any meaningful epsilon absorbs float rounding of the sum.
    if current.epsilon_spent + epsilon > current.epsilon_total + 1e-9 {
        return Err(ServerError::ResourceExhausted(format!(
            "the privacy budget of dataset {dataset_id} is exhausted: {:.4} of {:.4} spent, \
             this job needs {epsilon:.4}",
            current.epsilon_spent, current.epsilon_total
        )));
    }
    current.epsilon_spent += epsilon;
    conn.execute(
        "UPDATE privacy_budgets SET epsilon_spent = ?3 WHERE tenant_id = ?1 AND data_sha256 = ?2",
        params![tenant_id, data_sha256, current.epsilon_spent],
    )?;
    conn.execute(
        "INSERT INTO privacy_spends (job_id, tenant_id, data_sha256, dataset_id, epsilon, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            job_id,
            tenant_id,
            data_sha256,
            dataset_id,
            epsilon,
            crate::now_ms()
        ],
    )?;
    Ok(current)
}

/// Sets a budget's total (never below what is spent).
pub fn set_privacy_budget(
    conn: &Connection,
    tenant_id: &str,
    data_sha256: &str,
    epsilon_total: f64,
) -> Result<PrivacyBudget> {
    let current = budget_or_new(conn, tenant_id, data_sha256, epsilon_total)?;
    if epsilon_total + 1e-12 < current.epsilon_spent {
        return Err(ServerError::FailedPrecondition(format!(
            "{:.4} of this budget is already spent: the total cannot be lower",
            current.epsilon_spent
        )));
    }
    conn.execute(
        "UPDATE privacy_budgets SET epsilon_total = ?3 WHERE tenant_id = ?1 AND data_sha256 = ?2",
        params![tenant_id, data_sha256, epsilon_total],
    )?;
    Ok(PrivacyBudget {
        epsilon_total,
        ..current
    })
}

/// A tenant's budgets (those used or set so far).
pub fn privacy_budgets(conn: &Connection, tenant_id: &str) -> Result<Vec<PrivacyBudget>> {
    let mut stmt = conn.prepare(
        "SELECT data_sha256, epsilon_total, epsilon_spent FROM privacy_budgets
         WHERE tenant_id = ?1 ORDER BY data_sha256",
    )?;
    let rows = stmt.query_map([tenant_id], |r| {
        Ok(PrivacyBudget {
            tenant_id: tenant_id.to_owned(),
            data_sha256: r.get(0)?,
            epsilon_total: r.get(1)?,
            epsilon_spent: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ------------------------------------------------------------------ exports

const EXPORT_COLUMNS: &str = "id, job_id, tenant_id, requester_id, purpose, format, status,
    checks_json, requested_at_ms, decided_at_ms, package_location, package_sha256, policy_version,
    quorum, recipient_id, permitted_use, expires_in_days, product_json, fingerprint, rows_digest,
    download_count, last_download_at_ms";

fn export_row(r: &Row<'_>) -> rusqlite::Result<ExportRecord> {
    let status: String = r.get(6)?;
    let checks: String = r.get(7)?;
    Ok(ExportRecord {
        id: r.get(0)?,
        job_id: r.get(1)?,
        tenant_id: r.get(2)?,
        requester_id: r.get(3)?,
        purpose: r.get(4)?,
        format: r.get(5)?,
        status: ExportStatus::parse(&status),
        // A check list that does not parse must not read as "no checks".
        checks: serde_json::from_str(&checks).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, e.into())
        })?,
        requested_at_ms: r.get(8)?,
        decided_at_ms: r.get(9)?,
        package_location: r.get(10)?,
        package_sha256: r.get(11)?,
        policy_version: r.get(12)?,
        quorum: r.get(13)?,
        recipient_id: r.get(14)?,
        permitted_use: r.get(15)?,
        expires_in_days: r.get(16)?,
        product: {
            let json: String = r.get(17)?;
            if json.is_empty() {
                None
            } else {
                Some(serde_json::from_str(&json).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        17,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })?)
            }
        },
        download_count: r.get(20)?,
        last_download_at_ms: r.get(21)?,
    })
}

pub fn upsert_export(conn: &Connection, e: &ExportRecord) -> Result<()> {
    let checks = serde_json::to_string(&e.checks)
        .map_err(|err| ServerError::internal(format!("serialising checks: {err}")))?;
    let product = match &e.product {
        Some(p) => serde_json::to_string(p)
            .map_err(|err| ServerError::internal(format!("serialising a product: {err}")))?,
        None => String::new(),
    };
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO exports ({EXPORT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18, ?19, ?20, ?21, ?22)"
        ),
        params![
            e.id,
            e.job_id,
            e.tenant_id,
            e.requester_id,
            e.purpose,
            e.format,
            e.status.as_str(),
            checks,
            e.requested_at_ms,
            e.decided_at_ms,
            e.package_location,
            e.package_sha256,
            e.policy_version,
            e.quorum,
            e.recipient_id,
            e.permitted_use,
            e.expires_in_days,
            product,
            e.product
                .as_ref()
                .map(|p| p.fingerprint.as_str())
                .unwrap_or(""),
            e.product
                .as_ref()
                .map(|p| p.rows_digest.as_str())
                .unwrap_or(""),
            e.download_count,
            e.last_download_at_ms
        ],
    )?;
    Ok(())
}

/// Counts one download (package or Flight fetch) of a product.
pub fn record_download(conn: &Connection, export_id: &str, at_ms: i64) -> Result<u64> {
    Ok(conn.query_row(
        "UPDATE exports SET download_count = download_count + 1, last_download_at_ms = ?2
         WHERE id = ?1 RETURNING download_count",
        params![export_id, at_ms],
        |r| r.get(0),
    )?)
}

/// Products (exports that were approved: approved, revoked or expired) naming `recipient_id`,
/// newest first.
pub fn products_of_recipient(conn: &Connection, recipient_id: &str) -> Result<Vec<ExportRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE product_json != ''
         AND (recipient_id = ?1 OR (recipient_id = '' AND requester_id = ?1))
         ORDER BY requested_at_ms DESC LIMIT 500"
    ))?;
    let rows = stmt.query_map([recipient_id], export_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Products of one tenant, or of every tenant but `except_tenant`, newest first.
pub fn products(
    conn: &Connection,
    tenant_id: Option<&str>,
    except_tenant: Option<&str>,
) -> Result<Vec<ExportRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE product_json != ''
         AND (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR tenant_id != ?2)
         ORDER BY requested_at_ms DESC LIMIT 500"
    ))?;
    let rows = stmt.query_map(params![tenant_id, except_tenant], export_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The product whose copy carries `fingerprint`.
pub fn product_by_fingerprint(
    conn: &Connection,
    fingerprint: &str,
) -> Result<Option<ExportRecord>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {EXPORT_COLUMNS} FROM exports WHERE fingerprint = ?1 AND fingerprint != ''"
            ),
            [fingerprint],
            export_row,
        )
        .optional()?)
}

/// Products whose rows are exactly `rows_digest` (in any order).
pub fn products_with_rows(conn: &Connection, rows_digest: &str) -> Result<Vec<ExportRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE rows_digest = ?1 AND rows_digest != ''
         ORDER BY requested_at_ms LIMIT 10000"
    ))?;
    let rows = stmt.query_map([rows_digest], export_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn export(conn: &Connection, id: &str) -> Result<Option<ExportRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {EXPORT_COLUMNS} FROM exports WHERE id = ?1"),
            [id],
            export_row,
        )
        .optional()?)
}

pub fn exports_of_tenant(conn: &Connection, tenant_id: &str) -> Result<Vec<ExportRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE tenant_id = ?1 ORDER BY requested_at_ms DESC LIMIT 200"
    ))?;
    let rows = stmt.query_map([tenant_id], export_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Exports in review, oldest first, except those of `except_tenant` (a reviewer's own).
pub fn exports_in_review(
    conn: &Connection,
    except_tenant: Option<&str>,
) -> Result<Vec<ExportRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE status = 'in_review'
         AND (?1 IS NULL OR tenant_id != ?1) ORDER BY requested_at_ms, id LIMIT 500"
    ))?;
    let rows = stmt.query_map([except_tenant], export_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn insert_export_vote(conn: &Connection, export_id: &str, v: &ExportVote) -> Result<()> {
    conn.execute(
        "INSERT INTO export_votes (export_id, reviewer_id, decision, shared_comment,
             private_comment, result_sha256, query_sha256, policy_version, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            export_id,
            v.reviewer_id,
            v.decision.as_str(),
            v.shared_comment,
            v.private_comment,
            v.result_sha256,
            v.query_sha256,
            v.policy_version,
            v.at_ms
        ],
    )
    .map_err(|e| unique_violation(e, "a vote of this reviewer on this export"))?;
    Ok(())
}

/// An export's votes in the order they were cast.
pub fn export_votes(conn: &Connection, export_id: &str) -> Result<Vec<ExportVote>> {
    let mut stmt = conn.prepare(
        "SELECT reviewer_id, decision, shared_comment, private_comment, result_sha256,
                query_sha256, policy_version, at_ms
         FROM export_votes WHERE export_id = ?1 ORDER BY at_ms, reviewer_id",
    )?;
    let rows = stmt.query_map([export_id], |r| {
        let decision: String = r.get(1)?;
        Ok(ExportVote {
            reviewer_id: r.get(0)?,
            decision: ExportDecision::parse(&decision)?,
            shared_comment: r.get(2)?,
            private_comment: r.get(3)?,
            result_sha256: r.get(4)?,
            query_sha256: r.get(5)?,
            policy_version: r.get(6)?,
            at_ms: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Appends a comment; returns it with its sequence number.
pub fn insert_export_comment(
    conn: &Connection,
    export_id: &str,
    author_id: &str,
    author_role: Role,
    private: bool,
    text: &str,
    at_ms: i64,
) -> Result<ExportComment> {
    let seq: u64 = conn.query_row(
        "SELECT coalesce(max(seq), 0) + 1 FROM export_comments WHERE export_id = ?1",
        [export_id],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO export_comments (export_id, seq, author_id, author_role, private, text, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            export_id,
            seq,
            author_id,
            author_role.as_str(),
            private,
            text,
            at_ms
        ],
    )?;
    Ok(ExportComment {
        seq,
        author_id: author_id.to_owned(),
        author_role,
        private,
        text: text.to_owned(),
        at_ms,
    })
}

/// An export's comments in the order they were written.
pub fn export_comments(conn: &Connection, export_id: &str) -> Result<Vec<ExportComment>> {
    let mut stmt = conn.prepare(
        "SELECT seq, author_id, author_role, private, text, at_ms
         FROM export_comments WHERE export_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([export_id], |r| {
        let role: String = r.get(2)?;
        Ok(ExportComment {
            seq: r.get(0)?,
            author_id: r.get(1)?,
            author_role: role.parse().map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    format!("unknown role '{role}'").into(),
                )
            })?,
            private: r.get(3)?,
            text: r.get(4)?,
            at_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// An export's votes, comments and events.
pub fn export_history(conn: &Connection, export_id: &str) -> Result<ExportHistory> {
    Ok(ExportHistory {
        votes: export_votes(conn, export_id)?,
        comments: export_comments(conn, export_id)?,
        events: export_events(conn, export_id)?,
    })
}

/// Appends a status change to an export's history; returns its sequence number.
pub fn append_export_event(
    conn: &Connection,
    export_id: &str,
    at_ms: i64,
    actor_id: &str,
    from_status: &str,
    to_status: &str,
    note: &str,
) -> Result<u64> {
    let seq: u64 = conn.query_row(
        "SELECT coalesce(max(seq), 0) + 1 FROM export_events WHERE export_id = ?1",
        [export_id],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO export_events (export_id, seq, at_ms, actor_id, from_status, to_status, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            export_id,
            seq,
            at_ms,
            actor_id,
            from_status,
            to_status,
            note
        ],
    )?;
    Ok(seq)
}

/// An export's history, oldest first.
pub fn export_events(conn: &Connection, export_id: &str) -> Result<Vec<ExportEvent>> {
    let mut stmt = conn.prepare(
        "SELECT seq, at_ms, actor_id, from_status, to_status, note
         FROM export_events WHERE export_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([export_id], |r| {
        Ok(ExportEvent {
            seq: r.get(0)?,
            at_ms: r.get(1)?,
            actor_id: r.get(2)?,
            from_status: r.get(3)?,
            to_status: r.get(4)?,
            note: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ------------------------------------------------------------------ scenarios

/// Scenario decision states as stored; "expired" is derived from the validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioStatus {
    Pending,
    Approved,
    Rejected,
}

impl ScenarioStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ScenarioStatus::Pending => "pending",
            ScenarioStatus::Approved => "approved",
            ScenarioStatus::Rejected => "rejected",
        }
    }
    fn parse(s: &str) -> ScenarioStatus {
        match s {
            "approved" => ScenarioStatus::Approved,
            "rejected" => ScenarioStatus::Rejected,
            _ => ScenarioStatus::Pending,
        }
    }
}

/// One dataset of a scenario's data list and the columns it may read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataListItem {
    pub dataset_id: String,
    pub columns: Vec<String>,
}

/// Who must approve: a listed dataset's steward, its extra approver (R12), or an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    Steward,
    Extra,
    Admin,
}

impl Capacity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Capacity::Steward => "steward",
            Capacity::Extra => "extra",
            Capacity::Admin => "admin",
        }
    }
    fn parse(s: &str) -> Capacity {
        match s {
            "steward" => Capacity::Steward,
            "extra" => Capacity::Extra,
            _ => Capacity::Admin,
        }
    }
}

/// One required approval of a scenario and its decision, once made.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioApproval {
    pub capacity: Capacity,
    /// Empty for [`Capacity::Admin`].
    pub dataset_id: String,
    /// The principal who must decide; empty for [`Capacity::Admin`] (any admin).
    pub approver_id: String,
    pub decided: bool,
    pub approved: bool,
    pub decided_by: String,
    pub comment: String,
    pub decided_at_ms: i64,
}

/// An application scenario: one scenario, one data list, one approval (R11).
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioRecord {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub purpose: String,
    pub data_list: Vec<DataListItem>,
    pub valid_from_ms: i64,
    pub valid_until_ms: i64,
    pub status: ScenarioStatus,
    pub applicant_id: String,
    pub created_at_ms: i64,
    pub approvals: Vec<ScenarioApproval>,
    /// What it serves: decides whether its products are free (R24).
    pub category: ScenarioCategory,
}

const SCENARIO_COLUMNS: &str = "id, tenant_id, name, purpose, data_list_json, valid_from_ms,
    valid_until_ms, status, applicant_id, created_at_ms, category";

fn scenario_row(r: &Row<'_>) -> rusqlite::Result<ScenarioRecord> {
    let data_list: String = r.get(4)?;
    let status: String = r.get(7)?;
    Ok(ScenarioRecord {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        name: r.get(2)?,
        purpose: r.get(3)?,
        data_list: serde_json::from_str(&data_list).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                "data list json".into(),
            )
        })?,
        valid_from_ms: r.get(5)?,
        valid_until_ms: r.get(6)?,
        status: ScenarioStatus::parse(&status),
        applicant_id: r.get(8)?,
        created_at_ms: r.get(9)?,
        approvals: Vec::new(),
        category: {
            let text: String = r.get(10)?;
            text.parse().map_err(|e: shuyu_policy::PolicyError| {
                rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, e.into())
            })?
        },
    })
}

fn with_approvals(conn: &Connection, mut s: ScenarioRecord) -> Result<ScenarioRecord> {
    let mut stmt = conn.prepare(
        "SELECT capacity, dataset_id, approver_id, decided, approved, decided_by, comment,
                decided_at_ms
         FROM scenario_approvals WHERE scenario_id = ?1
         ORDER BY CASE capacity WHEN 'steward' THEN 0 WHEN 'extra' THEN 1 ELSE 2 END, dataset_id",
    )?;
    let rows = stmt.query_map([&s.id], |r| {
        let capacity: String = r.get(0)?;
        Ok(ScenarioApproval {
            capacity: Capacity::parse(&capacity),
            dataset_id: r.get(1)?,
            approver_id: r.get(2)?,
            decided: r.get(3)?,
            approved: r.get(4)?,
            decided_by: r.get(5)?,
            comment: r.get(6)?,
            decided_at_ms: r.get(7)?,
        })
    })?;
    s.approvals = rows.collect::<rusqlite::Result<_>>()?;
    Ok(s)
}

/// Stores a scenario with its required approvals (its decisions included).
pub fn upsert_scenario(conn: &Connection, s: &ScenarioRecord) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO scenarios ({SCENARIO_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ),
        params![
            s.id,
            s.tenant_id,
            s.name,
            s.purpose,
            serde_json::to_string(&s.data_list).unwrap_or_default(),
            s.valid_from_ms,
            s.valid_until_ms,
            s.status.as_str(),
            s.applicant_id,
            s.created_at_ms,
            s.category.as_str()
        ],
    )?;
    for a in &s.approvals {
        conn.execute(
            "INSERT OR REPLACE INTO scenario_approvals (scenario_id, capacity, dataset_id,
                 approver_id, decided, approved, decided_by, comment, decided_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                s.id,
                a.capacity.as_str(),
                a.dataset_id,
                a.approver_id,
                a.decided,
                a.approved,
                a.decided_by,
                a.comment,
                a.decided_at_ms
            ],
        )?;
    }
    Ok(())
}

pub fn scenario(conn: &Connection, id: &str) -> Result<Option<ScenarioRecord>> {
    let found = conn
        .query_row(
            &format!("SELECT {SCENARIO_COLUMNS} FROM scenarios WHERE id = ?1"),
            [id],
            scenario_row,
        )
        .optional()?;
    found.map(|s| with_approvals(conn, s)).transpose()
}

/// Scenarios of one tenant, or of all, newest first.
pub fn scenarios(conn: &Connection, tenant_id: Option<&str>) -> Result<Vec<ScenarioRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {SCENARIO_COLUMNS} FROM scenarios WHERE (?1 IS NULL OR tenant_id = ?1)
         ORDER BY created_at_ms DESC, id LIMIT 500"
    ))?;
    let rows = stmt
        .query_map([tenant_id], scenario_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|s| with_approvals(conn, s)).collect()
}

fn unique_violation(e: rusqlite::Error, what: &str) -> ServerError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            ServerError::AlreadyExists(format!("{what} already exists"))
        }
        _ => ServerError::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exports table of the single-reviewer gate.
    const LEGACY_EXPORTS: &str = "
    CREATE TABLE exports (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id), tenant_id TEXT NOT NULL,
        requester_id TEXT NOT NULL, purpose TEXT NOT NULL, format TEXT NOT NULL,
        status TEXT NOT NULL, checks_json TEXT NOT NULL, reviewer_id TEXT NOT NULL,
        comment TEXT NOT NULL, requested_at_ms INTEGER NOT NULL, decided_at_ms INTEGER NOT NULL,
        package_location TEXT NOT NULL, package_sha256 TEXT NOT NULL,
        policy_version TEXT NOT NULL);";

    fn job(id: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            tenant_id: "t_1".into(),
            author_id: "p_eng".into(),
            sql: "SELECT 1".into(),
            substrait_plan: Vec::new(),
            query_sha256: format!("query-{id}"),
            mode: JobMode::Production,
            scenario_id: "sc_1".into(),
            promoted_from: String::new(),
            status: JobStatus::Succeeded,
            error: String::new(),
            error_id: String::new(),
            n_rows: 1,
            columns: Vec::new(),
            aggregate: true,
            gate: JobGate::unknown(true),
            dp: None,
            preview: MaskedTable::default(),
            inputs: Vec::new(),
            result_file: String::new(),
            result_kek: String::new(),
            result_sha256: format!("result-{id}"),
            created_at_ms: 1,
            finished_at_ms: 2,
            usage: JobUsage::default(),
        }
    }

    #[test]
    fn single_reviewer_exports_move_to_the_quorum_review() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        {
            let conn = Connection::open(&path).unwrap();
            register_preview_seal(&conn, &audit).unwrap();
            let old_schema = SCHEMA
                .split("CREATE TABLE IF NOT EXISTS ")
                .filter(|t| !t.starts_with("exports") && !t.starts_with("export_"))
                .collect::<Vec<_>>()
                .join("CREATE TABLE IF NOT EXISTS ");
            conn.execute_batch(&old_schema).unwrap();
            conn.execute_batch(LEGACY_EXPORTS).unwrap();
            for (table, column, declaration) in ADDED_COLUMNS {
                let present: bool = conn
                    .query_row(
                        &format!(
                            "SELECT count(*) > 0 FROM pragma_table_info('{table}') \
                             WHERE name = ?1"
                        ),
                        [column],
                        |r| r.get(0),
                    )
                    .unwrap();
                if *table != "exports" && !present {
                    conn.execute_batch(&format!(
                        "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
                    ))
                    .unwrap();
                }
            }
            for id in ["job_a", "job_b", "job_c"] {
                upsert_job(&conn, &job(id)).unwrap();
            }
            let passed = r#"[{"name":"min_group_rows","passed":true,"detail":"d","summary":"s"}]"#;
            let failed = r#"[{"name":"min_group_rows","passed":false,"detail":"d","summary":"s"}]"#;
            for (id, job, status, checks, reviewer, comment) in [
                ("exp_a", "job_a", "pending_review", passed, "", ""),
                ("exp_b", "job_b", "approved", passed, "p_rev", "fine"),
                ("exp_c", "job_c", "refused", failed, "", ""),
            ] {
                conn.execute(
                    "INSERT INTO exports VALUES (?1, ?2, 't_1', 'p_eng', 'purpose', 'csv', ?3, ?4,
                     ?5, ?6, 10, 20, 'exports/t_1/x.pkg', 'pkgsha', '2026.11-1')",
                    params![id, job, status, checks, reviewer, comment],
                )
                .unwrap();
            }
        }
        let store = Store::open(&path, audit.clone()).unwrap();
        let read = |store: &Store, id: &str| store.read(|c| export(c, id)).unwrap().unwrap();

        let pending = read(&store, "exp_a");
        assert_eq!(pending.status, ExportStatus::InReview);
        assert_eq!(pending.quorum, 1);
        assert_eq!(pending.checks[0].outcome, CheckVerdict::Pass);
        assert_eq!(read(&store, "exp_c").checks[0].outcome, CheckVerdict::Fail);
        assert_eq!(read(&store, "exp_c").status, ExportStatus::Refused);

        let approved = store.read(|c| export_history(c, "exp_b")).unwrap();
        assert_eq!(
            approved.votes,
            vec![ExportVote {
                reviewer_id: "p_rev".into(),
                decision: ExportDecision::Approve,
                shared_comment: "fine".into(),
                private_comment: String::new(),
                result_sha256: "result-job_b".into(),
                query_sha256: "query-job_b".into(),
                policy_version: "2026.11-1".into(),
                at_ms: 20,
            }]
        );
        let steps: Vec<(&str, &str)> = approved
            .events
            .iter()
            .map(|e| (e.from_status.as_str(), e.to_status.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                ("", "submitted"),
                ("submitted", "in_review"),
                ("in_review", "approved")
            ]
        );
        let refused = store.read(|c| export_history(c, "exp_c")).unwrap();
        assert!(refused.votes.is_empty());
        assert_eq!(refused.events[1].to_status, "refused");
        assert!(
            store
                .read(|c| export_history(c, "exp_a"))
                .unwrap()
                .votes
                .is_empty()
        );

        // The legacy columns are gone, and opening again changes nothing.
        drop(store);
        let store = Store::open(&path, audit).unwrap();
        let columns: Vec<String> = store
            .read(|c| {
                let mut stmt = c.prepare("SELECT name FROM pragma_table_info('exports')")?;
                let names = stmt.query_map([], |r| r.get(0))?;
                Ok(names.collect::<rusqlite::Result<_>>()?)
            })
            .unwrap();
        assert!(!columns.iter().any(|c| c == "reviewer_id" || c == "comment"));
        assert_eq!(
            store
                .read(|c| export_history(c, "exp_b"))
                .unwrap()
                .events
                .len(),
            3
        );
        // A new export round-trips with its quorum and a review outcome.
        let mut fresh = read(&store, "exp_a");
        fresh.id = "exp_new".into();
        fresh.quorum = 3;
        fresh.checks[0].outcome = CheckVerdict::Review;
        store.read(|c| upsert_export(c, &fresh)).unwrap();
        assert_eq!(read(&store, "exp_new"), fresh);
    }

    fn files_of(dir: &Path) -> std::collections::BTreeMap<String, (Vec<u8>, u32)> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    (std::fs::read(&path).unwrap(), mode),
                )
            })
            .collect()
    }

    fn system(action: &str) -> AuditEntry {
        crate::oversight::tasks::system_entry(action, "t", serde_json::json!({}))
    }

    #[test]
    fn previews_are_sealed_at_rest_and_opened_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        let store = Store::open(&path, audit.clone()).unwrap();
        store
            .commit(&system(crate::audit::trail::GENESIS_ACTION), |_| Ok(()))
            .unwrap();
        let mut j = job("job_p");
        j.preview = MaskedTable {
            columns: vec!["id_number".into()],
            rows: vec![vec![Some("CANARY_330203198807071236".into())]],
            ..MaskedTable::default()
        };
        store.commit(&system("x"), |tx| upsert_job(tx, &j)).unwrap();
        let raw: String = store
            .read(|c| Ok(c.query_row("SELECT preview_json FROM jobs", [], |r| r.get(0))?))
            .unwrap();
        assert!(
            raw.starts_with(SEALED_PREVIEW) && !raw.contains("CANARY"),
            "{raw}"
        );
        assert_eq!(
            store
                .read(|c| job_any_tenant(c, "job_p"))
                .unwrap()
                .unwrap()
                .preview,
            j.preview
        );
        // Moved to another job's row, it does not open.
        store
            .read(|c| {
                let mut other = job("job_q");
                other.preview = MaskedTable::default();
                upsert_job(c, &other)?;
                c.execute(
                    "UPDATE jobs SET preview_json = ?1 WHERE id = 'job_q'",
                    [&raw],
                )?;
                Ok(())
            })
            .unwrap();
        assert!(store.read(|c| job_any_tenant(c, "job_q")).is_err());
        store
            .read(|c| Ok(c.execute("DELETE FROM jobs WHERE id = 'job_q'", [])?))
            .unwrap();
        // A preview stored in plaintext by an older server is sealed when the store opens,
        // and no copy stays in the file or its log.
        store
            .read(|c| {
                Ok(c.execute(
                    "UPDATE jobs SET preview_json = ?1",
                    [r#"{"columns":["m"],"rows":[["CANARY_13999990001"]]}"#],
                )?)
            })
            .unwrap();
        drop(store);
        let store = Store::open(&path, audit).unwrap();
        let preview = store
            .read(|c| job_any_tenant(c, "job_p"))
            .unwrap()
            .unwrap()
            .preview;
        assert_eq!(preview.rows[0][0].as_deref(), Some("CANARY_13999990001"));
        for (name, (bytes, _)) in files_of(dir.path()) {
            assert!(
                !bytes.windows(6).any(|w| w == b"CANARY"),
                "a plaintext preview in {name}"
            );
        }
    }

    #[test]
    fn the_database_and_its_log_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("meta.db"),
            AuditLog::new(&shuyu_vault::SecretKey::generate()),
        )
        .unwrap();
        store
            .commit(&system(crate::audit::trail::GENESIS_ACTION), |_| Ok(()))
            .unwrap();
        let files = files_of(dir.path());
        assert!(files.contains_key("meta.db-wal"), "{:?}", files.keys());
        for (name, (_, mode)) in files {
            assert_eq!(mode, 0o600, "{name} is {mode:o}");
        }
    }

    #[test]
    fn a_read_only_store_writes_nothing_to_the_database_or_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        let store = Store::open(&path, audit.clone()).unwrap();
        for action in [crate::audit::trail::GENESIS_ACTION, "a", "b"] {
            store.commit(&system(action), |_| Ok(())).unwrap();
        }
        let check = |expect_records: u64| {
            let before = files_of(dir.path());
            let reader = Store::open_read_only(&path, audit.clone()).unwrap();
            let report = reader.read(|c| reader.audit_log().verify(c)).unwrap();
            assert!(report.ok, "{report:?}");
            assert_eq!(report.n_records, expect_records);
            assert!(reader.record(&system("c")).is_err());
            drop(reader);
            let after = files_of(dir.path());
            for (name, content) in &after {
                if name.ends_with("-shm") {
                    continue; // shared memory of the readers' locks, not the database
                }
                let old = before.get(name).map(|(b, m)| (b.len(), *m));
                assert_eq!(
                    before.get(name),
                    Some(content),
                    "{name} changed: {old:?} -> {:?}",
                    (content.0.len(), content.1)
                );
            }
            assert_eq!(
                before.keys().filter(|n| !n.ends_with("-shm")).count(),
                after.keys().filter(|n| !n.ends_with("-shm")).count()
            );
        };
        // While the server runs (its log holds the records) and after it stopped.
        check(3);
        drop(store);
        check(3);
        assert!(Store::open_read_only(&dir.path().join("none.db"), audit).is_err());
        assert!(!dir.path().join("none.db").exists());
    }
}
