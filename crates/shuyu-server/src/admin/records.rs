//! Records of tenants, principals and their client certificates.

use shuyu_meta::{Row, params};
use shuyu_policy::Role;

use crate::error::Result;
use crate::store::{Legacy, Tx, unique_violation};

/// The admin tables (their columns added since included).
pub(crate) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kek_id TEXT NOT NULL,
    pseudonym_kek_id TEXT NOT NULL, created_at_ms BIGINT NOT NULL,
    lab_until_ms BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY, real_name TEXT NOT NULL, organisation TEXT NOT NULL, role TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants(id), created_at_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
    fingerprint TEXT PRIMARY KEY, principal_id TEXT NOT NULL REFERENCES principals(id),
    not_after_ms BIGINT NOT NULL, issued_at_ms BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE);
";

/// The columns the admin tables gained before versioned migrations.
pub(crate) const LEGACY: Legacy = Legacy {
    added_columns: &[("tenants", "lab_until_ms", "INTEGER NOT NULL DEFAULT 0")],
    migrate: None,
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

fn tenant_row(r: &Row) -> Result<Tenant> {
    Ok(Tenant {
        id: r.get("id")?,
        name: r.get("name")?,
        kek_id: r.get("kek_id")?,
        pseudonym_kek_id: r.get("pseudonym_kek_id")?,
        created_at_ms: r.get("created_at_ms")?,
        lab_until_ms: r.get("lab_until_ms")?,
    })
}

pub fn insert_tenant(tx: &Tx<'_>, t: &Tenant) -> Result<()> {
    tx.execute(
        "INSERT INTO tenants (id, name, kek_id, pseudonym_kek_id, created_at_ms, lab_until_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            &t.id,
            &t.name,
            &t.kek_id,
            &t.pseudonym_kek_id,
            t.created_at_ms,
            t.lab_until_ms
        ],
    )
    .map_err(|e| unique_violation(e, "a tenant with this name"))?;
    Ok(())
}

pub fn tenant(tx: &Tx<'_>, id: &str) -> Result<Option<Tenant>> {
    tx.query_opt(
        "SELECT id, name, kek_id, pseudonym_kek_id, created_at_ms, lab_until_ms FROM tenants WHERE id = ?1",
        params![id],
    )?
    .map(|r| tenant_row(&r))
    .transpose()
}

pub fn tenants(tx: &Tx<'_>) -> Result<Vec<Tenant>> {
    tx.query(
        "SELECT id, name, kek_id, pseudonym_kek_id, created_at_ms, lab_until_ms FROM tenants ORDER BY created_at_ms, id",
        &[],
    )?
    .iter()
    .map(tenant_row)
    .collect()
}

pub fn set_lab_until(tx: &Tx<'_>, tenant_id: &str, until_ms: i64) -> Result<()> {
    tx.execute(
        "UPDATE tenants SET lab_until_ms = ?2 WHERE id = ?1",
        params![tenant_id, until_ms],
    )?;
    Ok(())
}

fn principal_row(r: &Row) -> Result<Principal> {
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

pub fn insert_principal(tx: &Tx<'_>, p: &Principal) -> Result<()> {
    tx.execute(
        "INSERT INTO principals (id, real_name, organisation, role, tenant_id, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            &p.id,
            &p.real_name,
            &p.organisation,
            p.role.as_str(),
            p.tenant_id.as_deref(),
            p.created_at_ms
        ],
    )?;
    Ok(())
}

pub fn principal(tx: &Tx<'_>, id: &str) -> Result<Option<Principal>> {
    tx.query_opt(
        &format!("SELECT {PRINCIPAL_COLUMNS} FROM principals p WHERE p.id = ?1"),
        params![id],
    )?
    .map(|r| principal_row(&r))
    .transpose()
}

pub fn principals(tx: &Tx<'_>) -> Result<Vec<Principal>> {
    tx.query(
        &format!("SELECT {PRINCIPAL_COLUMNS} FROM principals p ORDER BY p.created_at_ms, p.id"),
        &[],
    )?
    .iter()
    .map(principal_row)
    .collect()
}

/// The principal bound to a certificate fingerprint, if the certificate is registered,
/// unrevoked and unexpired.
pub fn principal_by_certificate(
    tx: &Tx<'_>,
    fingerprint: &str,
    now_ms: i64,
) -> Result<Option<Principal>> {
    tx.query_opt(
        &format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM certificates c JOIN principals p ON p.id = c.principal_id
             WHERE c.fingerprint = ?1 AND c.revoked = FALSE AND c.not_after_ms > ?2"
        ),
        params![fingerprint, now_ms],
    )?
    .map(|r| principal_row(&r))
    .transpose()
}

pub fn insert_certificate(
    tx: &Tx<'_>,
    fingerprint: &str,
    principal_id: &str,
    not_after_ms: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO certificates (fingerprint, principal_id, not_after_ms, issued_at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![fingerprint, principal_id, not_after_ms, crate::now_ms()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ServerError;
    use crate::store::testing::{each_backend, write};

    #[test]
    fn tenants_principals_and_certificates_round_trip() {
        each_backend(|store| {
            let t = Tenant {
                id: "t_1".into(),
                name: "bureau".into(),
                kek_id: "tenant:t_1".into(),
                pseudonym_kek_id: "pseudonym:t_1".into(),
                created_at_ms: 1_700_000_000_000,
                lab_until_ms: 0,
            };
            write(store, |tx| insert_tenant(tx, &t));
            let clash = Tenant {
                id: "t_2".into(),
                ..t.clone()
            };
            let refused = store
                .commit(
                    &crate::audit::trail::system_entry("test", "test", serde_json::json!({})),
                    |tx| insert_tenant(tx, &clash),
                )
                .unwrap_err();
            assert!(
                matches!(refused, ServerError::AlreadyExists(_)),
                "{refused:?}"
            );
            write(store, |tx| set_lab_until(tx, "t_1", 1_800_000_000_000));
            let t = Tenant {
                lab_until_ms: 1_800_000_000_000,
                ..t
            };
            assert_eq!(store.read(|tx| tenant(tx, "t_1")).unwrap(), Some(t.clone()));
            assert_eq!(store.read(tenants).unwrap(), vec![t]);

            let admin = Principal {
                id: "p_0".into(),
                real_name: "Wang Fang".into(),
                organisation: "platform".into(),
                role: Role::PlatformAdmin,
                tenant_id: None,
                created_at_ms: 1,
            };
            let engineer = Principal {
                id: "p_1".into(),
                real_name: "Li Hua".into(),
                organisation: "bureau".into(),
                role: Role::Engineer,
                tenant_id: Some("t_1".into()),
                created_at_ms: 2,
            };
            write(store, |tx| {
                insert_principal(tx, &engineer)?;
                insert_principal(tx, &admin)
            });
            assert_eq!(
                store.read(|tx| principal(tx, "p_1")).unwrap(),
                Some(engineer.clone())
            );
            assert_eq!(
                store.read(principals).unwrap(),
                vec![admin.clone(), engineer.clone()]
            );

            let now = crate::now_ms();
            write(store, |tx| {
                insert_certificate(tx, "fp_live", "p_1", now + 60_000)?;
                insert_certificate(tx, "fp_expired", "p_1", now - 1)?;
                insert_certificate(tx, "fp_revoked", "p_0", now + 60_000)?;
                tx.execute(
                    "UPDATE certificates SET revoked = TRUE WHERE fingerprint = ?1",
                    params!["fp_revoked"],
                )?;
                Ok(())
            });
            let holder = |fingerprint: &str| {
                store
                    .read(|tx| principal_by_certificate(tx, fingerprint, now))
                    .unwrap()
            };
            assert_eq!(holder("fp_live"), Some(engineer));
            assert_eq!(holder("fp_expired"), None);
            assert_eq!(holder("fp_revoked"), None);
            assert_eq!(holder("fp_unknown"), None);
        });
    }
}
