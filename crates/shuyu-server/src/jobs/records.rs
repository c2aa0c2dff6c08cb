//! Records of jobs (their previews sealed at rest, in Rust, under a key derived from the
//! master key) and of differential-privacy budgets and spends.

use shuyu_engine::{DisclosureMeta, DpSpec, MaskedTable, OutputColumn, RowInfluence, UnitCount};
use shuyu_meta::{Row, params};
use shuyu_policy::{Classification, MaskingRule};

use crate::audit::trail::AuditLog;
use crate::error::{Refusal, Result, ServerError};
use crate::store::{Legacy, Tx};

/// The jobs tables.
pub(crate) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS privacy_budgets (
    tenant_id TEXT NOT NULL, data_sha256 TEXT NOT NULL, epsilon_total DOUBLE PRECISION NOT NULL,
    epsilon_spent DOUBLE PRECISION NOT NULL, PRIMARY KEY (tenant_id, data_sha256));
CREATE TABLE IF NOT EXISTS privacy_spends (
    job_id TEXT NOT NULL, tenant_id TEXT NOT NULL, data_sha256 TEXT NOT NULL,
    dataset_id TEXT NOT NULL, epsilon DOUBLE PRECISION NOT NULL, at_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, author_id TEXT NOT NULL, sql TEXT NOT NULL,
    sql_sha256 TEXT NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL, error_id TEXT NOT NULL,
    n_rows BIGINT NOT NULL, columns_json TEXT NOT NULL, aggregate BOOLEAN NOT NULL,
    preview_json TEXT NOT NULL, inputs_json TEXT NOT NULL, result_file TEXT NOT NULL,
    result_kek TEXT NOT NULL, result_sha256 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL, finished_at_ms BIGINT NOT NULL,
    usage_json TEXT NOT NULL DEFAULT '{}', substrait_plan BLOB NOT NULL,
    mode TEXT NOT NULL DEFAULT 'production', scenario_id TEXT NOT NULL DEFAULT '',
    promoted_from TEXT NOT NULL DEFAULT '', gate_json TEXT NOT NULL DEFAULT '',
    dp_json TEXT NOT NULL DEFAULT '');
";

/// The columns the jobs table gained before versioned migrations. The previews such a data
/// dir may hold in plaintext are sealed by [`seal_plaintext_previews`], which needs the
/// preview key and so is not a key-less `migrate`.
pub(crate) const LEGACY: Legacy = Legacy {
    added_columns: &[
        ("jobs", "usage_json", "TEXT NOT NULL DEFAULT '{}'"),
        ("jobs", "substrait_plan", "BLOB NOT NULL DEFAULT x''"),
        ("jobs", "mode", "TEXT NOT NULL DEFAULT 'production'"),
        ("jobs", "scenario_id", "TEXT NOT NULL DEFAULT ''"),
        ("jobs", "promoted_from", "TEXT NOT NULL DEFAULT ''"),
        ("jobs", "gate_json", "TEXT NOT NULL DEFAULT ''"),
        ("jobs", "dp_json", "TEXT NOT NULL DEFAULT ''"),
    ],
    migrate: Some(seal_plaintext_previews),
};

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
    /// Whether the job ran out of memory with hash joins and ran again, within its limit,
    /// with sort-merge joins (which spill, encrypted).
    pub sort_merge_rerun: bool,
}

/// The prefix of a sealed preview in `jobs.preview_json`.
pub(crate) const SEALED_PREVIEW: &str = "sealed:v1:";

/// Seals a job's masked preview (its JSON text) for `jobs.preview_json`: AES-256-GCM under
/// the audit log's preview key (derived from the master key), bound to the job's id, as
/// `sealed:v1:` and the hex of nonce, ciphertext and tag. It is opened only in memory when
/// the job is read ([`open_preview`]).
pub(crate) fn seal_preview(audit: &AuditLog, job_id: &str, plain: &str) -> String {
    let sealed = audit
        .preview_key()
        .seal(job_id.as_bytes(), plain.as_bytes());
    format!("{SEALED_PREVIEW}{}", hex::encode(sealed))
}

/// Opens a preview sealed by [`seal_preview`] for job `job_id`. Unsealed text (a data dir
/// from before previews were sealed) opens as itself.
///
/// # Errors
/// If the text is sealed but does not open under this domain's key for this job (another
/// domain's key, another job's row, tampering).
pub(crate) fn open_preview(audit: &AuditLog, job_id: &str, text: &str) -> Result<String> {
    let Some(sealed) = text.strip_prefix(SEALED_PREVIEW) else {
        return Ok(text.to_owned());
    };
    let bad = |what: &str| ServerError::internal(format!("job {job_id}: {what}"));
    let sealed = hex::decode(sealed).map_err(|_| bad("a sealed preview is not hex"))?;
    let plain = audit
        .preview_key()
        .open(job_id.as_bytes(), &sealed)
        .map_err(|_| bad("a sealed preview does not open under this domain's key"))?;
    String::from_utf8(plain.to_vec()).map_err(|_| bad("a sealed preview is not UTF-8"))
}

/// Seals the previews a data dir stored in plaintext before previews were sealed (an SQLite
/// data dir written before versioned migrations). Runs inside a transaction, so it cannot
/// checkpoint the SQLite log itself: the store does after the commit, so that no plaintext
/// copy stays in the log.
///
/// # Errors
/// On store failure.
pub(crate) fn seal_plaintext_previews(tx: &Tx<'_>, audit: &AuditLog) -> Result<()> {
    let plaintext: Vec<(String, String)> = tx
        .query("SELECT id, preview_json FROM jobs", &[])?
        .iter()
        .map(|r| Ok((r.get("id")?, r.get("preview_json")?)))
        .collect::<Result<Vec<(String, String)>>>()?
        .into_iter()
        .filter(|(_, preview)| !preview.starts_with(SEALED_PREVIEW))
        .collect();
    for (id, preview) in &plaintext {
        tx.execute(
            "UPDATE jobs SET preview_json = ?2 WHERE id = ?1",
            params![id, seal_preview(audit, id, preview)],
        )?;
    }
    if !plaintext.is_empty() {
        tracing::info!(
            n = plaintext.len(),
            "sealed job previews stored in plaintext"
        );
    }
    Ok(())
}

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

/// The columns of `jobs`, in the order [`upsert_job`] binds them. `sql_sha256` holds the
/// query hash of SQL and Substrait jobs alike (the column predates Substrait jobs).
const JOB_COLUMN_NAMES: [&str; 25] = [
    "id",
    "tenant_id",
    "author_id",
    "sql",
    "sql_sha256",
    "status",
    "error",
    "error_id",
    "n_rows",
    "columns_json",
    "aggregate",
    "preview_json",
    "inputs_json",
    "result_file",
    "result_kek",
    "result_sha256",
    "created_at_ms",
    "finished_at_ms",
    "usage_json",
    "substrait_plan",
    "mode",
    "scenario_id",
    "promoted_from",
    "gate_json",
    "dp_json",
];

/// The `SELECT` list of a job.
fn job_columns() -> String {
    JOB_COLUMN_NAMES.join(", ")
}

/// The job columns qualified by `table` (in a join), under their own names.
fn job_columns_of(table: &str) -> String {
    JOB_COLUMN_NAMES
        .iter()
        .map(|c| format!("{table}.{c} AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A job read from its row. Its preview is opened with `audit`'s preview key; without it
/// (`None`) the preview is left out (empty).
fn job_row(r: &Row, audit: Option<&AuditLog>) -> Result<JobRecord> {
    let id: String = r.get("id")?;
    let status: String = r.get("status")?;
    let columns: String = r.get("columns_json")?;
    let preview = match audit {
        Some(audit) => masked_table_from_json(&open_preview(
            audit,
            &id,
            &r.get::<String>("preview_json")?,
        )?),
        None => MaskedTable::default(),
    };
    let inputs: String = r.get("inputs_json")?;
    let usage: String = r.get("usage_json")?;
    let mode: String = r.get("mode")?;
    let gate: String = r.get("gate_json")?;
    let dp: String = r.get("dp_json")?;
    let aggregate: bool = r.get("aggregate")?;
    Ok(JobRecord {
        tenant_id: r.get("tenant_id")?,
        author_id: r.get("author_id")?,
        sql: r.get("sql")?,
        query_sha256: r.get("sql_sha256")?,
        substrait_plan: r.get("substrait_plan")?,
        mode: JobMode::parse(&mode),
        scenario_id: r.get("scenario_id")?,
        promoted_from: r.get("promoted_from")?,
        status: JobStatus::parse(&status),
        error: r.get("error")?,
        error_id: r.get("error_id")?,
        n_rows: r.get("n_rows")?,
        columns: output_columns_from_json(&columns),
        aggregate,
        gate: serde_json::from_str(&gate).unwrap_or_else(|_| JobGate::unknown(aggregate)),
        dp: serde_json::from_str(&dp).ok(),
        preview,
        inputs: serde_json::from_str(&inputs).unwrap_or_default(),
        result_file: r.get("result_file")?,
        result_kek: r.get("result_kek")?,
        result_sha256: r.get("result_sha256")?,
        created_at_ms: r.get("created_at_ms")?,
        finished_at_ms: r.get("finished_at_ms")?,
        usage: serde_json::from_str(&usage).unwrap_or_default(),
        id,
    })
}

/// The jobs of a query selecting [`job_columns`], their previews opened with `audit`.
fn job_rows(rows: &[Row], audit: Option<&AuditLog>) -> Result<Vec<JobRecord>> {
    rows.iter().map(|r| job_row(r, audit)).collect()
}

/// The result folder of every recorded job (`results/…/<job>/`): what start-up keeps under
/// `results/`.
///
/// # Errors
/// On store failure.
pub fn job_folders(tx: &Tx<'_>) -> Result<Vec<String>> {
    tx.query("SELECT id, tenant_id, result_file FROM jobs", &[])?
        .iter()
        .map(|r| {
            let (id, tenant, file): (String, String, String) =
                (r.get("id")?, r.get("tenant_id")?, r.get("result_file")?);
            Ok(match file.rsplit_once('/') {
                Some((folder, _)) => format!("{folder}/"),
                None => format!("results/{tenant}/{id}/"),
            })
        })
        .collect()
}

/// Records a job (replacing its earlier record), its preview sealed with `audit`'s preview
/// key ([`seal_preview`]).
///
/// # Errors
/// On store failure.
pub fn upsert_job(tx: &Tx<'_>, audit: &AuditLog, j: &JobRecord) -> Result<()> {
    let placeholders: Vec<String> = (1..=JOB_COLUMN_NAMES.len())
        .map(|i| format!("?{i}"))
        .collect();
    let updates: Vec<String> = JOB_COLUMN_NAMES[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    tx.execute(
        &format!(
            "INSERT INTO jobs ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}",
            job_columns(),
            placeholders.join(", "),
            updates.join(", ")
        ),
        params![
            &j.id,
            &j.tenant_id,
            &j.author_id,
            &j.sql,
            &j.query_sha256,
            j.status.as_str(),
            &j.error,
            &j.error_id,
            i64::try_from(j.n_rows).unwrap_or(i64::MAX),
            output_columns_to_json(&j.columns),
            j.aggregate,
            seal_preview(audit, &j.id, &masked_table_to_json(&j.preview)),
            crate::store::to_json(&j.inputs, "a job's inputs")?,
            &j.result_file,
            &j.result_kek,
            &j.result_sha256,
            j.created_at_ms,
            j.finished_at_ms,
            crate::store::to_json(&j.usage, "a job's usage")?,
            j.substrait_plan.as_slice(),
            j.mode.as_str(),
            &j.scenario_id,
            &j.promoted_from,
            crate::store::to_json(&j.gate, "a job's gate")?,
            j.dp.as_ref()
                .map(|d| crate::store::to_json(d, "a job's DP spec"))
                .transpose()?
                .unwrap_or_default()
        ],
    )?;
    Ok(())
}

/// A job of `tenant_id` (another tenant's job is `None`, like a missing one), its preview
/// opened with `audit`'s preview key.
///
/// # Errors
/// On store failure, or a preview that does not open.
pub fn job(tx: &Tx<'_>, audit: &AuditLog, tenant_id: &str, id: &str) -> Result<Option<JobRecord>> {
    tx.query_opt(
        &format!(
            "SELECT {} FROM jobs WHERE id = ?1 AND tenant_id = ?2",
            job_columns()
        ),
        params![id, tenant_id],
    )?
    .map(|r| job_row(&r, Some(audit)))
    .transpose()
}

/// A job of any tenant, its preview opened with `audit`'s preview key.
///
/// # Errors
/// On store failure, or a preview that does not open.
pub fn job_any_tenant(tx: &Tx<'_>, audit: &AuditLog, id: &str) -> Result<Option<JobRecord>> {
    tx.query_opt(
        &format!("SELECT {} FROM jobs WHERE id = ?1", job_columns()),
        params![id],
    )?
    .map(|r| job_row(&r, Some(audit)))
    .transpose()
}

/// The latest 200 jobs of a tenant, newest first, their previews opened with `audit`'s
/// preview key.
///
/// # Errors
/// On store failure, or a preview that does not open.
pub fn jobs(tx: &Tx<'_>, audit: &AuditLog, tenant_id: &str) -> Result<Vec<JobRecord>> {
    let rows = tx.query(
        &format!(
            "SELECT {} FROM jobs WHERE tenant_id = ?1 ORDER BY created_at_ms DESC LIMIT 200",
            job_columns()
        ),
        params![tenant_id],
    )?;
    job_rows(&rows, Some(audit))
}

/// Jobs (of one tenant, or of all) that finished in `[from_ms, to_ms)`, for metering. Their
/// previews are left out (empty: metering and reports read none, and need no key), so a
/// record read here is not one to write back.
///
/// # Errors
/// On store failure.
pub fn finished_jobs_between(
    tx: &Tx<'_>,
    tenant_id: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<JobRecord>> {
    let rows = match tenant_id {
        Some(tenant_id) => tx.query(
            &format!(
                "SELECT {} FROM jobs WHERE finished_at_ms >= ?1 AND finished_at_ms < ?2
                 AND tenant_id = ?3 ORDER BY finished_at_ms, id",
                job_columns()
            ),
            params![from_ms, to_ms, tenant_id],
        )?,
        None => tx.query(
            &format!(
                "SELECT {} FROM jobs WHERE finished_at_ms >= ?1 AND finished_at_ms < ?2
                 ORDER BY finished_at_ms, id",
                job_columns()
            ),
            params![from_ms, to_ms],
        )?,
    };
    job_rows(&rows, None)
}

/// Jobs left queued or running by a crash or restart, their previews opened with `audit`'s
/// preview key.
///
/// # Errors
/// On store failure, or a preview that does not open.
pub fn unfinished_jobs(tx: &Tx<'_>, audit: &AuditLog) -> Result<Vec<JobRecord>> {
    let rows = tx.query(
        &format!(
            "SELECT {} FROM jobs WHERE status IN ('queued', 'running')",
            job_columns()
        ),
        &[],
    )?;
    job_rows(&rows, Some(audit))
}

/// Which server runs each job it accepted (servers sharing a PostgreSQL each run the jobs
/// submitted to them): a later step of the versioned migrations.
pub(crate) const SERVERS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS job_servers (job_id TEXT PRIMARY KEY, server_id TEXT NOT NULL);
";

/// Records that server `server_id` runs job `job_id`.
///
/// # Errors
/// On store failure.
pub fn assign_job(tx: &Tx<'_>, job_id: &str, server_id: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO job_servers (job_id, server_id) VALUES (?1, ?2)
         ON CONFLICT (job_id) DO UPDATE SET server_id = excluded.server_id",
        params![job_id, server_id],
    )?;
    Ok(())
}

/// Jobs left queued or running by a server that is gone: one whose lease (see
/// [`crate::presence`]) has expired or was given up, or none recorded (jobs of an older
/// data dir). Never those of server `me`.
///
/// # Errors
/// On store failure, or a preview that does not open.
pub fn orphaned_jobs(tx: &Tx<'_>, audit: &AuditLog, me: &str) -> Result<Vec<JobRecord>> {
    let now = tx.now_ms()?;
    let rows = tx.query(
        &format!(
            "SELECT {} FROM jobs
             LEFT JOIN job_servers ON job_servers.job_id = jobs.id
             LEFT JOIN shuyu_meta_leases ON shuyu_meta_leases.name = 'server:' || job_servers.server_id
             WHERE jobs.status IN ('queued', 'running')
               AND (job_servers.server_id IS NULL
                    OR (job_servers.server_id <> ?1
                        AND (shuyu_meta_leases.name IS NULL OR shuyu_meta_leases.expires_at_ms <= ?2)))",
            job_columns_of("jobs")
        ),
        params![me, now],
    )?;
    job_rows(&rows, Some(audit))
}

/// A tenant's differential-privacy budget over one dataset's content.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivacyBudget {
    pub tenant_id: String,
    pub data_sha256: String,
    pub epsilon_total: f64,
    pub epsilon_spent: f64,
}

fn budget(tx: &Tx<'_>, tenant_id: &str, data_sha256: &str) -> Result<Option<PrivacyBudget>> {
    tx.query_opt(
        "SELECT epsilon_total, epsilon_spent FROM privacy_budgets
         WHERE tenant_id = ?1 AND data_sha256 = ?2",
        params![tenant_id, data_sha256],
    )?
    .map(|r| {
        Ok(PrivacyBudget {
            tenant_id: tenant_id.to_owned(),
            data_sha256: data_sha256.to_owned(),
            epsilon_total: r.get("epsilon_total")?,
            epsilon_spent: r.get("epsilon_spent")?,
        })
    })
    .transpose()
}

/// The tenant's budget over `data_sha256`, created with total `new_total` if it has none.
fn budget_or_new(
    tx: &Tx<'_>,
    tenant_id: &str,
    data_sha256: &str,
    new_total: f64,
) -> Result<PrivacyBudget> {
    tx.execute(
        "INSERT INTO privacy_budgets (tenant_id, data_sha256, epsilon_total, epsilon_spent)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![tenant_id, data_sha256, new_total, 0.0],
    )?;
    budget(tx, tenant_id, data_sha256)?
        .ok_or_else(|| ServerError::internal("a privacy budget vanished"))
}

/// Spends `epsilon` of the tenant's budget over `data_sha256` for `job_id` (creating the
/// budget at `default_total` on first use), or refuses when it would overspend. Run inside
/// the transaction that records the job, so concurrent jobs cannot overspend.
pub fn spend_privacy(
    tx: &Tx<'_>,
    tenant_id: &str,
    dataset_id: &str,
    data_sha256: &str,
    job_id: &str,
    epsilon: f64,
    default_total: f64,
) -> Result<PrivacyBudget> {
    let mut current = budget_or_new(tx, tenant_id, data_sha256, default_total)?;
    // A tolerance far below any meaningful epsilon absorbs float rounding of the sum.
    if current.epsilon_spent + epsilon > current.epsilon_total + 1e-9 {
        return Err(Refusal::PrivacyBudgetExhausted(format!(
            "the privacy budget of dataset {dataset_id} is exhausted: {:.4} of {:.4} spent, \
             this job needs {epsilon:.4}",
            current.epsilon_spent, current.epsilon_total
        ))
        .into());
    }
    current.epsilon_spent += epsilon;
    tx.execute(
        "UPDATE privacy_budgets SET epsilon_spent = ?3 WHERE tenant_id = ?1 AND data_sha256 = ?2",
        params![tenant_id, data_sha256, current.epsilon_spent],
    )?;
    tx.execute(
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
    tx: &Tx<'_>,
    tenant_id: &str,
    data_sha256: &str,
    epsilon_total: f64,
) -> Result<PrivacyBudget> {
    let current = budget_or_new(tx, tenant_id, data_sha256, epsilon_total)?;
    if epsilon_total + 1e-12 < current.epsilon_spent {
        return Err(Refusal::BudgetBelowSpent(format!(
            "{:.4} of this budget is already spent: the total cannot be lower",
            current.epsilon_spent
        ))
        .into());
    }
    tx.execute(
        "UPDATE privacy_budgets SET epsilon_total = ?3 WHERE tenant_id = ?1 AND data_sha256 = ?2",
        params![tenant_id, data_sha256, epsilon_total],
    )?;
    Ok(PrivacyBudget {
        epsilon_total,
        ..current
    })
}

/// A tenant's budgets (those used or set so far).
pub fn privacy_budgets(tx: &Tx<'_>, tenant_id: &str) -> Result<Vec<PrivacyBudget>> {
    tx.query(
        "SELECT data_sha256, epsilon_total, epsilon_spent FROM privacy_budgets
         WHERE tenant_id = ?1 ORDER BY data_sha256",
        params![tenant_id],
    )?
    .iter()
    .map(|r| {
        Ok(PrivacyBudget {
            tenant_id: tenant_id.to_owned(),
            data_sha256: r.get("data_sha256")?,
            epsilon_total: r.get("epsilon_total")?,
            epsilon_spent: r.get("epsilon_spent")?,
        })
    })
    .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{Store, testing};

    pub(crate) fn sample_job(id: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            tenant_id: "t_1".into(),
            author_id: "p_eng".into(),
            sql: "SELECT 1".into(),
            substrait_plan: vec![1, 2, 3],
            query_sha256: format!("query-{id}"),
            mode: JobMode::Lab,
            scenario_id: "sc_1".into(),
            promoted_from: "j_0".into(),
            status: JobStatus::Succeeded,
            error: "none".into(),
            error_id: "e_1".into(),
            n_rows: 7,
            columns: Vec::new(),
            aggregate: true,
            gate: JobGate::unknown(true),
            dp: None,
            preview: MaskedTable::default(),
            inputs: vec!["ds_1".into()],
            result_file: format!("results/t_1/{id}/result.parquet"),
            result_kek: format!("job:{id}"),
            result_sha256: format!("result-{id}"),
            created_at_ms: 1,
            finished_at_ms: 2,
            usage: JobUsage::default(),
        }
    }

    fn write_job(store: &Store, record: &JobRecord) {
        testing::write(store, |tx| upsert_job(tx, store.audit_log(), record));
    }

    #[track_caller]
    fn check_round_trip(record: JobRecord) {
        testing::each_backend(|store| {
            let audit = store.audit_log();
            write_job(store, &record);
            let read = store
                .read(|tx| job(tx, audit, &record.tenant_id, &record.id))
                .unwrap();
            assert_eq!(read.as_ref(), Some(&record));
            let listed = store.read(|tx| jobs(tx, audit, &record.tenant_id)).unwrap();
            assert_eq!(listed, vec![record.clone()]);
            assert_eq!(
                store
                    .read(|tx| job(tx, audit, "t_other", &record.id))
                    .unwrap(),
                None,
                "a job is read within its tenant only"
            );
            // Written again, the record is replaced.
            let again = JobRecord {
                status: JobStatus::Cancelled,
                n_rows: 0,
                aggregate: !record.aggregate,
                finished_at_ms: 9,
                ..record.clone()
            };
            write_job(store, &again);
            assert_eq!(
                store
                    .read(|tx| job_any_tenant(tx, audit, &record.id))
                    .unwrap(),
                Some(again.clone())
            );
        });
    }

    #[test]
    fn a_lab_job_reads_back_as_written() {
        check_round_trip(sample_job("j_1"));
    }

    #[test]
    fn a_failed_production_job_reads_back_as_written() {
        check_round_trip(JobRecord {
            mode: JobMode::Production,
            status: JobStatus::Failed,
            promoted_from: String::new(),
            preview: MaskedTable {
                columns: vec!["district".into()],
                rows: vec![vec![Some("east".into())], vec![None]],
                ..MaskedTable::default()
            },
            usage: JobUsage {
                cpu_ms: 12,
                bytes_scanned: 3_000_000_000,
                peak_memory_bytes: 1 << 33,
                wall_ms: 40,
                queued_ms: 5,
                sort_merge_rerun: true,
            },
            ..sample_job("j_2")
        });
    }

    #[test]
    fn job_queries_select_by_tenant_period_and_state() {
        testing::each_backend(|store| {
            let audit = store.audit_log();
            let mut a = sample_job("j_a");
            a.finished_at_ms = 100;
            let mut b = sample_job("j_b");
            b.tenant_id = "t_2".into();
            b.result_file = String::new();
            b.finished_at_ms = 150;
            let mut c = sample_job("j_c");
            c.status = JobStatus::Running;
            c.finished_at_ms = 0;
            c.preview = MaskedTable {
                columns: vec!["n".into()],
                rows: vec![vec![Some("3".into())]],
                ..MaskedTable::default()
            };
            for j in [&a, &b, &c] {
                write_job(store, j);
            }
            let ids = |jobs: Vec<JobRecord>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
            let between = |tenant: Option<&str>, from, to| {
                ids(store
                    .read(|tx| finished_jobs_between(tx, tenant, from, to))
                    .unwrap())
            };
            assert_eq!(between(None, 0, 1_000), ["j_c", "j_a", "j_b"]);
            assert_eq!(between(None, 100, 150), ["j_a"]);
            assert_eq!(between(Some("t_1"), 0, 1_000), ["j_c", "j_a"]);
            assert_eq!(between(Some("t_2"), 0, 1_000), ["j_b"]);
            let unfinished = store.read(|tx| unfinished_jobs(tx, audit)).unwrap();
            assert_eq!(unfinished, vec![c.clone()], "its preview opened");
            let mut folders = store.read(job_folders).unwrap();
            folders.sort();
            assert_eq!(
                folders,
                ["results/t_1/j_a/", "results/t_1/j_c/", "results/t_2/j_b/"]
            );
        });
    }

    #[test]
    fn a_sealed_preview_opens_only_for_its_job_and_plaintext_opens_as_itself() {
        let audit = testing::test_log();
        let sealed = seal_preview(&audit, "j_1", r#"{"rows":[["CANARY"]]}"#);
        assert!(sealed.starts_with(SEALED_PREVIEW) && !sealed.contains("CANARY"));
        assert_eq!(
            open_preview(&audit, "j_1", &sealed).unwrap(),
            r#"{"rows":[["CANARY"]]}"#
        );
        assert!(open_preview(&audit, "j_2", &sealed).is_err());
        assert!(open_preview(&testing::test_log(), "j_1", &sealed).is_err());
        assert_eq!(open_preview(&audit, "j_1", "{}").unwrap(), "{}");
    }

    #[test]
    fn plaintext_previews_are_sealed_in_place() {
        let store = testing::sqlite();
        let audit = store.audit_log();
        let mut j = sample_job("j_old");
        j.preview = MaskedTable {
            columns: vec!["m".into()],
            rows: vec![vec![Some("CANARY_13999990001".into())]],
            ..MaskedTable::default()
        };
        write_job(&store, &j);
        let plain = masked_table_to_json(&j.preview);
        testing::write(&store, |tx| {
            tx.execute("UPDATE jobs SET preview_json = ?1", params![&plain])?;
            Ok(())
        });
        testing::write(&store, |tx| seal_plaintext_previews(tx, audit));
        let raw: String = store
            .read(|tx| {
                Ok(tx
                    .query_one("SELECT preview_json FROM jobs", &[])?
                    .get("preview_json")?)
            })
            .unwrap();
        assert!(
            raw.starts_with(SEALED_PREVIEW) && !raw.contains("CANARY"),
            "{raw}"
        );
        assert_eq!(
            store.read(|tx| job_any_tenant(tx, audit, "j_old")).unwrap(),
            Some(j)
        );
    }

    #[test]
    fn privacy_budgets_are_spent_within_their_total() {
        testing::each_backend(|store| {
            let spent = testing::write(store, |tx| {
                spend_privacy(tx, "t_1", "ds_1", "sha_a", "j_1", 0.5, 1.0)
            });
            assert_eq!((spent.epsilon_total, spent.epsilon_spent), (1.0, 0.5));
            let refused = store.commit(
                &crate::audit::trail::system_entry("test", "test", serde_json::json!({})),
                |tx| spend_privacy(tx, "t_1", "ds_1", "sha_a", "j_2", 0.75, 1.0),
            );
            assert!(matches!(
                refused,
                Err(ServerError::Refused(Refusal::PrivacyBudgetExhausted(_)))
            ));
            let lower = store.commit(
                &crate::audit::trail::system_entry("test", "test", serde_json::json!({})),
                |tx| set_privacy_budget(tx, "t_1", "sha_a", 0.25),
            );
            assert!(matches!(
                lower,
                Err(ServerError::Refused(Refusal::BudgetBelowSpent(_)))
            ));
            testing::write(store, |tx| set_privacy_budget(tx, "t_1", "sha_a", 2.0));
            testing::write(store, |tx| set_privacy_budget(tx, "t_1", "sha_b", 3.0));
            assert_eq!(
                store.read(|tx| privacy_budgets(tx, "t_1")).unwrap(),
                [
                    PrivacyBudget {
                        tenant_id: "t_1".into(),
                        data_sha256: "sha_a".into(),
                        epsilon_total: 2.0,
                        epsilon_spent: 0.5,
                    },
                    PrivacyBudget {
                        tenant_id: "t_1".into(),
                        data_sha256: "sha_b".into(),
                        epsilon_total: 3.0,
                        epsilon_spent: 0.0,
                    },
                ]
            );
            assert!(
                store
                    .read(|tx| privacy_budgets(tx, "t_2"))
                    .unwrap()
                    .is_empty()
            );
            let spends: i64 = store
                .read(|tx| {
                    Ok(tx
                        .query_one("SELECT count(*) AS n FROM privacy_spends", &[])?
                        .get("n")?)
                })
                .unwrap();
            assert_eq!(spends, 1);
        });
    }
}
