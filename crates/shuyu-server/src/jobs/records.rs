//! Records of jobs (their previews sealed at rest through SQL functions registered on each
//! connection) and of differential-privacy budgets and spends.

use rusqlite::{Connection, OptionalExtension, Row, params};
use shuyu_engine::{DisclosureMeta, DpSpec, MaskedTable, OutputColumn, RowInfluence, UnitCount};
use shuyu_policy::{Classification, MaskingRule};

use crate::audit::trail::AuditLog;
use crate::error::{Result, ServerError};
use crate::store::Schema;

/// The jobs tables, the columns added to them since, and what moves older data forward.
pub(crate) const SCHEMA: Schema = Schema {
    tables: "
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
",
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
    functions: Some(register_preview_seal),
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
}

/// The prefix of a sealed preview in `jobs.preview_json`.
pub(crate) const SEALED_PREVIEW: &str = "sealed:v1:";

/// Registers, on this connection only, `shuyu_seal_preview(json, job_id)` and
/// `shuyu_open_preview(text, job_id)`: a job's masked preview is stored AES-256-GCM sealed
/// under a key derived from the master key, bound to the job's id, and opened only in memory
/// when the job is read. Unsealed text (a data dir from before) opens as itself.
pub(crate) fn register_preview_seal(conn: &Connection, audit: &AuditLog) -> Result<()> {
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
    columns_json, aggregate, shuyu_open_preview(preview_json, id) AS preview_json, inputs_json, result_file,
    result_kek, result_sha256,
    created_at_ms, finished_at_ms, usage_json, substrait_plan, mode, scenario_id, promoted_from,
    gate_json, dp_json";

fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let status: String = r.get("status")?;
    let columns: String = r.get("columns_json")?;
    let preview: String = r.get("preview_json")?;
    let inputs: String = r.get("inputs_json")?;
    let usage: String = r.get("usage_json")?;
    let mode: String = r.get("mode")?;
    let gate: String = r.get("gate_json")?;
    let dp: String = r.get("dp_json")?;
    let aggregate: bool = r.get("aggregate")?;
    Ok(JobRecord {
        id: r.get("id")?,
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
        preview: masked_table_from_json(&preview),
        inputs: serde_json::from_str(&inputs).unwrap_or_default(),
        result_file: r.get("result_file")?,
        result_kek: r.get("result_kek")?,
        result_sha256: r.get("result_sha256")?,
        created_at_ms: r.get("created_at_ms")?,
        finished_at_ms: r.get("finished_at_ms")?,
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

pub fn upsert_job(conn: &Connection, j: &JobRecord) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO jobs ({})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, shuyu_seal_preview(?12, ?1),
                     ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
            JOB_COLUMNS.replace(
                "shuyu_open_preview(preview_json, id) AS preview_json",
                "preview_json"
            )
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::trail::system_entry;
    use crate::store::Store;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        let store = crate::domain::open_store(&dir.path().join("meta.db"), audit).unwrap();
        (dir, store)
    }

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

    #[track_caller]
    fn check_round_trip(record: JobRecord) {
        let (_dir, store) = store();
        store
            .commit(&system_entry("test", "job", serde_json::json!({})), |tx| {
                upsert_job(tx, &record)
            })
            .unwrap();
        let read = store
            .read(|c| job(c, &record.tenant_id, &record.id))
            .unwrap();
        assert_eq!(read.as_ref(), Some(&record));
        let listed = store.read(|c| jobs(c, &record.tenant_id)).unwrap();
        assert_eq!(listed, vec![record.clone()]);
        assert_eq!(
            store.read(|c| job(c, "t_other", &record.id)).unwrap(),
            None,
            "a job is read within its tenant only"
        );
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
            ..sample_job("j_2")
        });
    }
}
