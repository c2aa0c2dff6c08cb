//! Stewardship records: external-data import applications (R17), data-quality tickets (R18)
//! and risk stops (R19). Pure storage; the decisions live in `service::stewardship`.

use shuyu_engine::ColumnSpec;
use shuyu_meta::{Row, params};

use crate::catalog::records::{columns_from_json, columns_to_json};
use crate::error::{Result, ServerError};
use crate::store::Tx;

/// Schema of the stewardship tables.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS import_applications (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, applicant_id TEXT NOT NULL,
    name TEXT NOT NULL, description TEXT NOT NULL, source TEXT NOT NULL,
    legal_basis TEXT NOT NULL, columns_json TEXT NOT NULL, status TEXT NOT NULL,
    decided_by TEXT NOT NULL DEFAULT '', decision_comment TEXT NOT NULL DEFAULT '',
    decided_at_ms BIGINT NOT NULL DEFAULT 0, dataset_id TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS import_applications_by_dataset ON import_applications (dataset_id);
CREATE TABLE IF NOT EXISTS quality_tickets (
    id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, column_name TEXT NOT NULL,
    tenant_id TEXT NOT NULL, reporter_id TEXT NOT NULL, description TEXT NOT NULL,
    status TEXT NOT NULL, created_at_ms BIGINT NOT NULL, due_at_ms BIGINT NOT NULL,
    resolved_by TEXT NOT NULL DEFAULT '', resolution TEXT NOT NULL DEFAULT '',
    resolved_at_ms BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS risk_stops (
    id TEXT PRIMARY KEY, target_kind TEXT NOT NULL, target_id TEXT NOT NULL,
    raised_by TEXT NOT NULL, raised_by_role TEXT NOT NULL, tenant_id TEXT NOT NULL,
    reason TEXT NOT NULL, raised_at_ms BIGINT NOT NULL, active BOOLEAN NOT NULL,
    lifted_by TEXT NOT NULL DEFAULT '', lift_comment TEXT NOT NULL DEFAULT '',
    lifted_at_ms BIGINT NOT NULL DEFAULT 0, jobs_stopped_json TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS risk_stops_active ON risk_stops (target_kind, target_id, active);
";

// ------------------------------------------------------------------ imports (R17)

/// Where an import application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStatus {
    Pending,
    Approved,
    Rejected,
    /// Uploaded; the dataset exists.
    Imported,
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Pending => "pending",
            ImportStatus::Approved => "approved",
            ImportStatus::Rejected => "rejected",
            ImportStatus::Imported => "imported",
        }
    }

    fn parse(text: &str) -> Result<ImportStatus> {
        Ok(match text {
            "pending" => ImportStatus::Pending,
            "approved" => ImportStatus::Approved,
            "rejected" => ImportStatus::Rejected,
            "imported" => ImportStatus::Imported,
            other => return Err(bad_text("import status", other)),
        })
    }
}

fn bad_text(what: &str, text: &str) -> ServerError {
    ServerError::internal(format!("metadata store: unknown {what} '{text}'"))
}

/// A tenant's application to bring its own data into the domain.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportApplication {
    pub id: String,
    pub tenant_id: String,
    pub applicant_id: String,
    pub name: String,
    pub description: String,
    pub source: String,
    pub legal_basis: String,
    pub columns: Vec<ColumnSpec>,
    pub status: ImportStatus,
    pub decided_by: String,
    pub decision_comment: String,
    pub decided_at_ms: i64,
    pub dataset_id: String,
    pub created_at_ms: i64,
}

const IMPORT_COLUMNS: &str = "id, tenant_id, applicant_id, name, description, source, legal_basis,
    columns_json, status, decided_by, decision_comment, decided_at_ms, dataset_id, created_at_ms";

fn import_row(r: &Row) -> Result<ImportApplication> {
    Ok(ImportApplication {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        applicant_id: r.get("applicant_id")?,
        name: r.get("name")?,
        description: r.get("description")?,
        source: r.get("source")?,
        legal_basis: r.get("legal_basis")?,
        columns: columns_from_json(&r.get::<String>("columns_json")?)?,
        status: ImportStatus::parse(&r.get::<String>("status")?)?,
        decided_by: r.get("decided_by")?,
        decision_comment: r.get("decision_comment")?,
        decided_at_ms: r.get("decided_at_ms")?,
        dataset_id: r.get("dataset_id")?,
        created_at_ms: r.get("created_at_ms")?,
    })
}

/// Inserts or replaces an application.
///
/// # Errors
/// On store failure.
pub fn upsert_import(tx: &Tx<'_>, a: &ImportApplication) -> Result<()> {
    tx.execute(
        &upsert_sql("import_applications", IMPORT_COLUMNS),
        params![
            &a.id,
            &a.tenant_id,
            &a.applicant_id,
            &a.name,
            &a.description,
            &a.source,
            &a.legal_basis,
            columns_to_json(&a.columns),
            a.status.as_str(),
            &a.decided_by,
            &a.decision_comment,
            a.decided_at_ms,
            &a.dataset_id,
            a.created_at_ms
        ],
    )?;
    Ok(())
}

/// One application.
///
/// # Errors
/// On store failure.
pub fn import(tx: &Tx<'_>, id: &str) -> Result<Option<ImportApplication>> {
    tx.query_opt(
        &format!("SELECT {IMPORT_COLUMNS} FROM import_applications WHERE id = ?1"),
        params![id],
    )?
    .map(|r| import_row(&r))
    .transpose()
}

/// Applications, newest first: one tenant's, or all (`None`).
///
/// # Errors
/// On store failure.
pub fn imports(tx: &Tx<'_>, tenant_id: Option<&str>) -> Result<Vec<ImportApplication>> {
    tx.query(
        &format!(
            "SELECT {IMPORT_COLUMNS} FROM import_applications
             WHERE CAST(?1 AS TEXT) IS NULL OR tenant_id = ?1 ORDER BY created_at_ms DESC, id"
        ),
        params![tenant_id],
    )?
    .iter()
    .map(import_row)
    .collect()
}

/// Whether an open application (pending or approved, not yet uploaded) already claims `name`.
///
/// # Errors
/// On store failure.
pub fn import_name_claimed(tx: &Tx<'_>, name: &str) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 AS claimed FROM import_applications
             WHERE name = ?1 AND status IN ('pending', 'approved') LIMIT 1",
            params![name],
        )?
        .is_some())
}

/// The tenant that imported `dataset_id`, if it is imported data (not public data).
///
/// # Errors
/// On store failure.
pub fn imported_by(tx: &Tx<'_>, dataset_id: &str) -> Result<Option<String>> {
    Ok(tx
        .query_opt(
            "SELECT tenant_id FROM import_applications
             WHERE dataset_id = ?1 AND status = 'imported' LIMIT 1",
            params![dataset_id],
        )?
        .map(|r| r.get("tenant_id"))
        .transpose()?)
}

/// Ids of every imported dataset.
///
/// # Errors
/// On store failure.
pub fn imported_dataset_ids(tx: &Tx<'_>) -> Result<Vec<String>> {
    tx.query(
        "SELECT dataset_id FROM import_applications WHERE status = 'imported' AND dataset_id != ''",
        &[],
    )?
    .iter()
    .map(|r| Ok(r.get("dataset_id")?))
    .collect()
}

// ------------------------------------------------------------------ quality tickets (R18)

/// Where a data-quality ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketStatus {
    Open,
    /// The steward fixed the data.
    Resolved,
    /// The steward found no defect, with a reason.
    Declined,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Resolved => "resolved",
            TicketStatus::Declined => "declined",
        }
    }

    fn parse(text: &str) -> Result<TicketStatus> {
        Ok(match text {
            "open" => TicketStatus::Open,
            "resolved" => TicketStatus::Resolved,
            "declined" => TicketStatus::Declined,
            other => return Err(bad_text("ticket status", other)),
        })
    }
}

/// A data-quality ticket against a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityTicket {
    pub id: String,
    pub dataset_id: String,
    pub column: String,
    pub tenant_id: String,
    pub reporter_id: String,
    pub description: String,
    pub status: TicketStatus,
    pub created_at_ms: i64,
    pub due_at_ms: i64,
    pub resolved_by: String,
    pub resolution: String,
    pub resolved_at_ms: i64,
}

impl QualityTicket {
    /// Open past its deadline.
    pub fn overdue(&self, now_ms: i64) -> bool {
        self.status == TicketStatus::Open && now_ms >= self.due_at_ms
    }
}

const TICKET_COLUMNS: &str = "id, dataset_id, column_name, tenant_id, reporter_id, description,
    status, created_at_ms, due_at_ms, resolved_by, resolution, resolved_at_ms";

fn ticket_row(r: &Row) -> Result<QualityTicket> {
    Ok(QualityTicket {
        id: r.get("id")?,
        dataset_id: r.get("dataset_id")?,
        column: r.get("column_name")?,
        tenant_id: r.get("tenant_id")?,
        reporter_id: r.get("reporter_id")?,
        description: r.get("description")?,
        status: TicketStatus::parse(&r.get::<String>("status")?)?,
        created_at_ms: r.get("created_at_ms")?,
        due_at_ms: r.get("due_at_ms")?,
        resolved_by: r.get("resolved_by")?,
        resolution: r.get("resolution")?,
        resolved_at_ms: r.get("resolved_at_ms")?,
    })
}

/// Inserts or replaces a ticket.
///
/// # Errors
/// On store failure.
pub fn upsert_ticket(tx: &Tx<'_>, t: &QualityTicket) -> Result<()> {
    tx.execute(
        &upsert_sql("quality_tickets", TICKET_COLUMNS),
        params![
            &t.id,
            &t.dataset_id,
            &t.column,
            &t.tenant_id,
            &t.reporter_id,
            &t.description,
            t.status.as_str(),
            t.created_at_ms,
            t.due_at_ms,
            &t.resolved_by,
            &t.resolution,
            t.resolved_at_ms
        ],
    )?;
    Ok(())
}

/// One ticket.
///
/// # Errors
/// On store failure.
pub fn ticket(tx: &Tx<'_>, id: &str) -> Result<Option<QualityTicket>> {
    tx.query_opt(
        &format!("SELECT {TICKET_COLUMNS} FROM quality_tickets WHERE id = ?1"),
        params![id],
    )?
    .map(|r| ticket_row(&r))
    .transpose()
}

/// Every ticket, newest first.
///
/// # Errors
/// On store failure.
pub fn tickets(tx: &Tx<'_>) -> Result<Vec<QualityTicket>> {
    tx.query(
        &format!("SELECT {TICKET_COLUMNS} FROM quality_tickets ORDER BY created_at_ms DESC, id"),
        &[],
    )?
    .iter()
    .map(ticket_row)
    .collect()
}

/// Open tickets whose deadline has passed.
///
/// # Errors
/// On store failure.
pub fn overdue_tickets(tx: &Tx<'_>, now_ms: i64) -> Result<Vec<QualityTicket>> {
    tx.query(
        &format!(
            "SELECT {TICKET_COLUMNS} FROM quality_tickets WHERE status = 'open' AND due_at_ms <= ?1
             ORDER BY due_at_ms"
        ),
        params![now_ms],
    )?
    .iter()
    .map(ticket_row)
    .collect()
}

// ------------------------------------------------------------------ risk stops (R19)

/// What a risk stop halts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskTarget {
    Dataset,
    Scenario,
}

impl RiskTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskTarget::Dataset => "dataset",
            RiskTarget::Scenario => "scenario",
        }
    }

    fn parse(text: &str) -> Result<RiskTarget> {
        Ok(match text {
            "dataset" => RiskTarget::Dataset,
            "scenario" => RiskTarget::Scenario,
            other => return Err(bad_text("risk target", other)),
        })
    }
}

/// A risk stop on a dataset or scenario (R19).
#[derive(Debug, Clone, PartialEq)]
pub struct RiskStop {
    pub id: String,
    pub target: RiskTarget,
    pub target_id: String,
    pub raised_by: String,
    pub raised_by_role: String,
    /// The raiser's tenant ('' for stewards).
    pub tenant_id: String,
    pub reason: String,
    pub raised_at_ms: i64,
    pub active: bool,
    pub lifted_by: String,
    pub lift_comment: String,
    pub lifted_at_ms: i64,
    pub jobs_stopped: Vec<String>,
}

const STOP_COLUMNS: &str = "id, target_kind, target_id, raised_by, raised_by_role, tenant_id,
    reason, raised_at_ms, active, lifted_by, lift_comment, lifted_at_ms, jobs_stopped_json";

fn stop_row(r: &Row) -> Result<RiskStop> {
    let jobs: String = r.get("jobs_stopped_json")?;
    Ok(RiskStop {
        id: r.get("id")?,
        target: RiskTarget::parse(&r.get::<String>("target_kind")?)?,
        target_id: r.get("target_id")?,
        raised_by: r.get("raised_by")?,
        raised_by_role: r.get("raised_by_role")?,
        tenant_id: r.get("tenant_id")?,
        reason: r.get("reason")?,
        raised_at_ms: r.get("raised_at_ms")?,
        active: r.get("active")?,
        lifted_by: r.get("lifted_by")?,
        lift_comment: r.get("lift_comment")?,
        lifted_at_ms: r.get("lifted_at_ms")?,
        jobs_stopped: serde_json::from_str(&jobs).map_err(|e| {
            ServerError::internal(format!("metadata store: bad jobs_stopped_json: {e}"))
        })?,
    })
}

/// Inserts or replaces a risk stop.
///
/// # Errors
/// On store failure.
pub fn upsert_stop(tx: &Tx<'_>, s: &RiskStop) -> Result<()> {
    tx.execute(
        &upsert_sql("risk_stops", STOP_COLUMNS),
        params![
            &s.id,
            s.target.as_str(),
            &s.target_id,
            &s.raised_by,
            &s.raised_by_role,
            &s.tenant_id,
            &s.reason,
            s.raised_at_ms,
            s.active,
            &s.lifted_by,
            &s.lift_comment,
            s.lifted_at_ms,
            crate::store::to_json(&s.jobs_stopped, "a risk stop's stopped jobs")?
        ],
    )?;
    Ok(())
}

/// One risk stop.
///
/// # Errors
/// On store failure.
pub fn stop(tx: &Tx<'_>, id: &str) -> Result<Option<RiskStop>> {
    tx.query_opt(
        &format!("SELECT {STOP_COLUMNS} FROM risk_stops WHERE id = ?1"),
        params![id],
    )?
    .map(|r| stop_row(&r))
    .transpose()
}

/// Every risk stop, newest first.
///
/// # Errors
/// On store failure.
pub fn stops(tx: &Tx<'_>) -> Result<Vec<RiskStop>> {
    tx.query(
        &format!("SELECT {STOP_COLUMNS} FROM risk_stops ORDER BY raised_at_ms DESC, id"),
        &[],
    )?
    .iter()
    .map(stop_row)
    .collect()
}

/// The active stop on a target, if any (the earliest raised).
///
/// # Errors
/// On store failure.
pub fn active_stop(tx: &Tx<'_>, target: RiskTarget, target_id: &str) -> Result<Option<RiskStop>> {
    tx.query_opt(
        &format!(
            "SELECT {STOP_COLUMNS} FROM risk_stops WHERE target_kind = ?1 AND target_id = ?2
             AND active = TRUE ORDER BY raised_at_ms LIMIT 1"
        ),
        params![target.as_str(), target_id],
    )?
    .map(|r| stop_row(&r))
    .transpose()
}

/// `INSERT` of a row keyed by `id` with `columns` (`id` first) as `?1, ?2, …`, updating every
/// other column of an existing row.
fn upsert_sql(table: &str, columns: &str) -> String {
    let names: Vec<&str> = columns.split(',').map(str::trim).collect();
    let values: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = names
        .iter()
        .filter(|n| **n != "id")
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}",
        names.join(", "),
        values.join(", "),
        updates.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{each_backend, write};

    #[test]
    fn risk_stops_round_trip_and_only_active_ones_bind() {
        each_backend(|store| {
            let mut s = RiskStop {
                id: "rs_1".into(),
                target: RiskTarget::Dataset,
                target_id: "ds_1".into(),
                raised_by: "p_1".into(),
                raised_by_role: "engineer".into(),
                tenant_id: "t_1".into(),
                reason: "links persons to addresses".into(),
                raised_at_ms: 5,
                active: true,
                lifted_by: String::new(),
                lift_comment: String::new(),
                lifted_at_ms: 0,
                jobs_stopped: vec!["job_1".into()],
            };
            write(store, |tx| upsert_stop(tx, &s));
            assert_eq!(
                store.read(|tx| stop(tx, "rs_1")).unwrap().as_ref(),
                Some(&s)
            );
            let active = |target| {
                store
                    .read(|tx| active_stop(tx, target, "ds_1"))
                    .unwrap()
                    .is_some()
            };
            assert!(active(RiskTarget::Dataset));
            assert!(!active(RiskTarget::Scenario));
            s.active = false;
            s.lifted_by = "p_admin".into();
            s.lift_comment = "reviewed".into();
            s.lifted_at_ms = 9;
            write(store, |tx| upsert_stop(tx, &s));
            assert!(!active(RiskTarget::Dataset));
            assert_eq!(store.read(stops).unwrap(), vec![s.clone()]);
        });
    }

    #[test]
    fn imports_round_trip_and_claim_their_names() {
        each_backend(|store| {
            let mut a = ImportApplication {
                id: "imp_1".into(),
                tenant_id: "t_1".into(),
                applicant_id: "p_1".into(),
                name: "own_data".into(),
                description: "d".into(),
                source: "s".into(),
                legal_basis: "contract".into(),
                columns: Vec::new(),
                status: ImportStatus::Pending,
                decided_by: String::new(),
                decision_comment: String::new(),
                decided_at_ms: 0,
                dataset_id: String::new(),
                created_at_ms: 3,
            };
            write(store, |tx| upsert_import(tx, &a));
            assert_eq!(
                store.read(|tx| import(tx, "imp_1")).unwrap(),
                Some(a.clone())
            );
            assert!(
                store
                    .read(|tx| import_name_claimed(tx, "own_data"))
                    .unwrap()
            );
            assert_eq!(store.read(|tx| imports(tx, Some("t_2"))).unwrap(), []);
            a.status = ImportStatus::Imported;
            a.dataset_id = "ds_9".into();
            write(store, |tx| upsert_import(tx, &a));
            assert_eq!(store.read(|tx| imports(tx, None)).unwrap(), vec![a.clone()]);
            assert!(
                !store
                    .read(|tx| import_name_claimed(tx, "own_data"))
                    .unwrap()
            );
            assert_eq!(
                store.read(|tx| imported_by(tx, "ds_9")).unwrap().as_deref(),
                Some("t_1")
            );
            assert_eq!(store.read(imported_dataset_ids).unwrap(), ["ds_9"]);
        });
    }

    #[test]
    fn overdue_tickets_are_open_ones_past_their_deadline() {
        let ticket = |id: &str, due: i64, status: TicketStatus| QualityTicket {
            id: id.into(),
            dataset_id: "ds".into(),
            column: String::new(),
            tenant_id: "t".into(),
            reporter_id: "p".into(),
            description: "d".into(),
            status,
            created_at_ms: 0,
            due_at_ms: due,
            resolved_by: String::new(),
            resolution: String::new(),
            resolved_at_ms: 0,
        };
        each_backend(|store| {
            write(store, |tx| {
                upsert_ticket(tx, &ticket("a", 10, TicketStatus::Open))?;
                upsert_ticket(tx, &ticket("b", 100, TicketStatus::Open))?;
                upsert_ticket(tx, &ticket("c", 10, TicketStatus::Resolved))
            });
            let late: Vec<String> = store
                .read(|tx| overdue_tickets(tx, 50))
                .unwrap()
                .into_iter()
                .map(|t| t.id)
                .collect();
            assert_eq!(late, ["a"]);
            assert_eq!(
                store.read(|tx| ticket_of(tx, "c")).unwrap(),
                Some(ticket("c", 10, TicketStatus::Resolved))
            );
        });
        assert!(ticket("a", 10, TicketStatus::Open).overdue(10));
        assert!(!ticket("a", 10, TicketStatus::Declined).overdue(10));
    }

    fn ticket_of(tx: &Tx<'_>, id: &str) -> Result<Option<QualityTicket>> {
        super::ticket(tx, id)
    }
}
