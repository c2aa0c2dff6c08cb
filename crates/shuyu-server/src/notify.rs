//! Notifications: what the domain tells people without their asking — renewal windows,
//! risk stops, anomaly alerts. A notification is written in the same transaction as the
//! change that caused it, so it is never lost and never sent for a change that rolled back.
//!
//! Audiences: every platform admin, every principal of one tenant, or one principal.
//! Auditors read all of them (read-only).

use shuyu_meta::params;
use shuyu_policy::Role;

use crate::admin::records::Principal;
use crate::error::Result;
use crate::store::Tx;

/// Schema of the notifications table. Ids are given in order of writing (the greatest plus
/// one, inside the writing transaction); notifications are never deleted, so an id is never
/// given twice.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    id BIGINT PRIMARY KEY, at_ms BIGINT NOT NULL, audience TEXT NOT NULL,
    tenant_id TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
    ref TEXT NOT NULL, dedup_key TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS notifications_dedup ON notifications (dedup_key)
    WHERE dedup_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_by_audience ON notifications (audience, id);
";

/// Who is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every platform admin.
    Admins,
    /// Every principal of the tenant.
    Tenant(String),
    /// One principal.
    Principal(String),
}

impl Audience {
    fn key(&self) -> String {
        match self {
            Audience::Admins => "admins".into(),
            Audience::Tenant(id) => format!("tenant:{id}"),
            Audience::Principal(id) => format!("principal:{id}"),
        }
    }
}

/// A notification to write.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub audience: Audience,
    /// The tenant it concerns ('' for none).
    pub tenant_id: &'a str,
    /// Machine-readable kind, e.g. `renewal_window`, `risk_stop`, `alert`.
    pub kind: &'a str,
    pub subject: &'a str,
    /// Never a data value.
    pub body: &'a str,
    /// The object it concerns (an authorization, dataset, job… id).
    pub reference: &'a str,
    /// When set, a second notification with the same key is not written (e.g. one renewal
    /// notice per authorization and term).
    pub dedup_key: Option<&'a str>,
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: i64,
    pub at_ms: i64,
    pub audience: String,
    pub tenant_id: String,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub reference: String,
}

/// Writes `n` (inside the caller's transaction). Returns whether it was written (false: a
/// notification with its dedup key already exists).
///
/// # Errors
/// If the insert fails.
pub fn notify(tx: &Tx<'_>, n: &NewNotification<'_>, at_ms: i64) -> Result<bool> {
    let id: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(id), 0) + 1 AS next FROM notifications",
            &[],
        )?
        .get("next")?;
    let written = tx.execute(
        "INSERT INTO notifications
             (id, at_ms, audience, tenant_id, kind, subject, body, ref, dedup_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING",
        params![
            id,
            at_ms,
            n.audience.key(),
            n.tenant_id,
            n.kind,
            n.subject,
            n.body,
            n.reference,
            n.dedup_key
        ],
    )?;
    Ok(written == 1)
}

/// Whether a notification with `dedup_key` exists.
///
/// # Errors
/// If the read fails.
pub fn exists(tx: &Tx<'_>, dedup_key: &str) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 AS present FROM notifications WHERE dedup_key = ?1",
            params![dedup_key],
        )?
        .is_some())
}

/// The notifications `principal` may read, newest first, with id above `after_id`.
/// Admins read those for admins and for themselves; a tenant's principals those for their
/// tenant and themselves; auditors all of them.
///
/// # Errors
/// If the read fails.
pub fn list_for(
    tx: &Tx<'_>,
    principal: &Principal,
    after_id: i64,
    limit: u32,
) -> Result<Vec<Notification>> {
    let own = Audience::Principal(principal.id.clone()).key();
    let tenant = principal
        .tenant_id
        .as_ref()
        .map(|t| Audience::Tenant(t.clone()).key())
        .unwrap_or_default();
    let admins = if principal.role == Role::PlatformAdmin {
        Audience::Admins.key()
    } else {
        String::new()
    };
    let all = principal.role == Role::Auditor;
    tx.query(
        "SELECT id, at_ms, audience, tenant_id, kind, subject, body, ref FROM notifications
         WHERE id > ?1 AND (CAST(?2 AS BOOLEAN) OR audience IN (?3, ?4, ?5))
         ORDER BY id DESC LIMIT ?6",
        params![after_id, all, own, tenant, admins, i64::from(limit)],
    )?
    .iter()
    .map(|r| {
        Ok(Notification {
            id: r.get("id")?,
            at_ms: r.get("at_ms")?,
            audience: r.get("audience")?,
            tenant_id: r.get("tenant_id")?,
            kind: r.get("kind")?,
            subject: r.get("subject")?,
            body: r.get("body")?,
            reference: r.get("ref")?,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{each_backend, write};

    fn principal(id: &str, role: Role, tenant: Option<&str>) -> Principal {
        Principal {
            id: id.into(),
            real_name: "x".into(),
            organisation: "x".into(),
            role,
            tenant_id: tenant.map(str::to_owned),
            created_at_ms: 0,
        }
    }

    fn note<'a>(audience: Audience, dedup: Option<&'a str>) -> NewNotification<'a> {
        NewNotification {
            audience,
            tenant_id: "t1",
            kind: "test",
            subject: "s",
            body: "b",
            reference: "r",
            dedup_key: dedup,
        }
    }

    #[test]
    fn each_audience_reads_only_its_own_and_auditors_read_all() {
        each_backend(|store| {
            write(store, |tx| {
                notify(tx, &note(Audience::Admins, None), 1)?;
                notify(tx, &note(Audience::Tenant("t1".into()), None), 2)?;
                notify(tx, &note(Audience::Tenant("t2".into()), None), 3)?;
                notify(tx, &note(Audience::Principal("p9".into()), None), 4)
            });

            let read = |p: &Principal| -> Vec<String> {
                store
                    .read(|tx| list_for(tx, p, 0, 100))
                    .unwrap()
                    .into_iter()
                    .map(|n| n.audience)
                    .collect()
            };
            assert_eq!(read(&principal("a", Role::PlatformAdmin, None)), ["admins"]);
            assert_eq!(
                read(&principal("p9", Role::Engineer, Some("t1"))),
                ["principal:p9", "tenant:t1"]
            );
            assert_eq!(
                read(&principal("e", Role::Engineer, Some("t2"))),
                ["tenant:t2"]
            );
            assert!(read(&principal("r", Role::Reviewer, None)).is_empty());
            assert_eq!(read(&principal("au", Role::Auditor, None)).len(), 4);
            // Paging: only newer than the last one seen.
            let admin = principal("au", Role::Auditor, None);
            let newer = store.read(|tx| list_for(tx, &admin, 3, 100)).unwrap();
            assert_eq!(newer.len(), 1);
            assert_eq!(
                newer[0],
                Notification {
                    id: 4,
                    at_ms: 4,
                    audience: "principal:p9".into(),
                    tenant_id: "t1".into(),
                    kind: "test".into(),
                    subject: "s".into(),
                    body: "b".into(),
                    reference: "r".into(),
                }
            );
        });
    }

    #[test]
    fn a_dedup_key_is_written_once() {
        each_backend(|store| {
            assert!(write(store, |tx| notify(
                tx,
                &note(Audience::Admins, Some("k")),
                1
            )));
            assert!(!write(store, |tx| notify(
                tx,
                &note(Audience::Admins, Some("k")),
                2
            )));
            // Notifications without a key are never taken for duplicates.
            assert!(write(store, |tx| notify(
                tx,
                &note(Audience::Admins, None),
                3
            )));
            assert!(write(store, |tx| notify(
                tx,
                &note(Audience::Admins, None),
                4
            )));
            let present = |key: &str| store.read(|tx| exists(tx, key)).unwrap();
            assert!(present("k"));
            assert!(!present("other"));
            let ids: Vec<i64> = store
                .read(|tx| list_for(tx, &principal("a", Role::PlatformAdmin, None), 0, 10))
                .unwrap()
                .into_iter()
                .map(|n| n.id)
                .collect();
            assert_eq!(ids, [3, 2, 1]);
        });
    }
}
