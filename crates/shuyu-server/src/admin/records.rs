//! Records of tenants, principals and their client certificates.

use rusqlite::{Connection, OptionalExtension, Row, params};
use shuyu_policy::Role;

use crate::error::Result;
use crate::store::{Schema, unique_violation};

/// The admin tables, the columns added to them since, and what moves older data forward.
pub(crate) const SCHEMA: Schema = Schema {
    tables: "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kek_id TEXT NOT NULL,
    pseudonym_kek_id TEXT NOT NULL, created_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY, real_name TEXT NOT NULL, organisation TEXT NOT NULL, role TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants(id), created_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
    fingerprint TEXT PRIMARY KEY, principal_id TEXT NOT NULL REFERENCES principals(id),
    not_after_ms INTEGER NOT NULL, issued_at_ms INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
",
    added_columns: &[
    ("tenants", "lab_until_ms", "INTEGER NOT NULL DEFAULT 0"),
    ],
    migrate: None,
    functions: None,
};

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

fn tenant_row(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get("id")?,
        name: r.get("name")?,
        kek_id: r.get("kek_id")?,
        pseudonym_kek_id: r.get("pseudonym_kek_id")?,
        created_at_ms: r.get("created_at_ms")?,
        lab_until_ms: r.get("lab_until_ms")?,
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
    let role: String = r.get("role")?;
    Ok(Principal {
        id: r.get("id")?,
        real_name: r.get("real_name")?,
        organisation: r.get("organisation")?,
        role: role.parse().unwrap_or(Role::Auditor),
        tenant_id: r.get("tenant_id")?,
        created_at_ms: r.get("created_at_ms")?,
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
