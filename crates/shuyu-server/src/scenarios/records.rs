//! Records of scenarios and their approvals.

use rusqlite::{Connection, OptionalExtension, Row, params};
use shuyu_policy::ScenarioCategory;

use crate::error::Result;
use crate::store::Schema;

/// The scenarios tables, the columns added to them since, and what moves older data forward.
pub(crate) const SCHEMA: Schema = Schema {
    tables: "
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
",
    added_columns: &[(
        "scenarios",
        "category",
        "TEXT NOT NULL DEFAULT 'commercial'",
    )],
    migrate: None,
    functions: None,
};

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
    let data_list: String = r.get("data_list_json")?;
    let status: String = r.get("status")?;
    Ok(ScenarioRecord {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        name: r.get("name")?,
        purpose: r.get("purpose")?,
        data_list: serde_json::from_str(&data_list).map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                "data list json".into(),
            )
        })?,
        valid_from_ms: r.get("valid_from_ms")?,
        valid_until_ms: r.get("valid_until_ms")?,
        status: ScenarioStatus::parse(&status),
        applicant_id: r.get("applicant_id")?,
        created_at_ms: r.get("created_at_ms")?,
        approvals: Vec::new(),
        category: {
            let text: String = r.get("category")?;
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
