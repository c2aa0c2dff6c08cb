//! Records of catalogued datasets (their columns as JSON) and the grants of datasets to
//! tenants.

use rusqlite::{Connection, OptionalExtension, Row, params};
use shuyu_engine::{ColumnSpec, ColumnType};
use shuyu_policy::{Classification, MaskingRule};

use crate::error::Result;
use crate::store::{Schema, unique_violation};

/// The catalog tables, the columns added to them since, and what moves older data forward.
pub(crate) const SCHEMA: Schema = Schema {
    tables: "
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL,
    steward_id TEXT NOT NULL, columns_json TEXT NOT NULL, n_rows INTEGER NOT NULL,
    location TEXT NOT NULL, kek_id TEXT NOT NULL, source_sha256 TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
    dataset_id TEXT NOT NULL REFERENCES datasets(id), tenant_id TEXT NOT NULL REFERENCES tenants(id),
    granted_by TEXT NOT NULL, granted_at_ms INTEGER NOT NULL, PRIMARY KEY (dataset_id, tenant_id));
",
    added_columns: &[
    ("datasets", "extra_approver_id", "TEXT"),
    ],
    migrate: None,
    functions: None,
};

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
    let columns: String = r.get("columns_json")?;
    Ok(DatasetRecord {
        id: r.get("id")?,
        name: r.get("name")?,
        description: r.get("description")?,
        steward_id: r.get("steward_id")?,
        columns: columns_from_json(&columns)?,
        n_rows: r.get("n_rows")?,
        location: r.get("location")?,
        kek_id: r.get("kek_id")?,
        source_sha256: r.get("source_sha256")?,
        created_at_ms: r.get("created_at_ms")?,
        extra_approver_id: r.get("extra_approver_id")?,
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
