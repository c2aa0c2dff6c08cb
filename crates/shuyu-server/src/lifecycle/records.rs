//! A tenant's lifecycle as enforced state (R26, R27, R28, R32): suspension with a fix-by
//! deadline, emergency stops and their drills, termination and its signed exit report.
//! The tables live here; `service::lifecycle` drives them.
//!
//! One row in `tenant_holds` per tenant that was ever held. A tenant is *suspended* (every
//! call of its principals refused, exports frozen), *stopped* (no new work, exports frozen;
//! its people may still read) or *terminated* (for good). No row: active.

use std::collections::BTreeSet;

use shuyu_meta::{Row, params};
use shuyu_policy::Action;

use crate::error::{Refusal, Result, ServerError};
use crate::notify::{self, Audience, NewNotification};
use crate::store::{Store, Tx};

/// Schema of the lifecycle tables.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenant_holds (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    suspended_at_ms BIGINT NOT NULL DEFAULT 0, suspend_reason TEXT NOT NULL DEFAULT '',
    fix_by_ms BIGINT NOT NULL DEFAULT 0, suspended_by TEXT NOT NULL DEFAULT '',
    stopped_at_ms BIGINT NOT NULL DEFAULT 0, stop_reason TEXT NOT NULL DEFAULT '',
    stopped_by TEXT NOT NULL DEFAULT '',
    terminated_at_ms BIGINT NOT NULL DEFAULT 0, terminate_reason TEXT NOT NULL DEFAULT '',
    terminated_by TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS exit_reports (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id), created_at_ms BIGINT NOT NULL,
    report_json TEXT NOT NULL, report_text TEXT NOT NULL, signature_hex TEXT NOT NULL,
    public_key_hex TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS drills (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), plan_id TEXT NOT NULL,
    note TEXT NOT NULL, run_by TEXT NOT NULL, started_at_ms BIGINT NOT NULL,
    released_at_ms BIGINT NOT NULL, halt_ms BIGINT NOT NULL, jobs_json TEXT NOT NULL,
    exports_frozen BIGINT NOT NULL, outcome TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS drills_by_tenant ON drills (tenant_id, started_at_ms);
";

/// What holds a tenant (all zero: active).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hold {
    pub tenant_id: String,
    pub suspended_at_ms: i64,
    pub suspend_reason: String,
    pub fix_by_ms: i64,
    pub suspended_by: String,
    pub stopped_at_ms: i64,
    pub stop_reason: String,
    pub stopped_by: String,
    pub terminated_at_ms: i64,
    pub terminate_reason: String,
    pub terminated_by: String,
}

impl Hold {
    /// An active tenant's (empty) hold.
    pub fn none(tenant_id: &str) -> Hold {
        Hold {
            tenant_id: tenant_id.to_owned(),
            ..Hold::default()
        }
    }

    /// `active`, `suspended`, `stopped` or `terminated` (the strongest hold).
    pub fn state(&self) -> &'static str {
        if self.terminated_at_ms > 0 {
            "terminated"
        } else if self.suspended_at_ms > 0 {
            "suspended"
        } else if self.stopped_at_ms > 0 {
            "stopped"
        } else {
            "active"
        }
    }

    /// Whether the tenant's exports are frozen (no vote, download or fetch).
    pub fn freezes_exports(&self) -> bool {
        self.state() != "active"
    }

    /// Suspended past its fix-by deadline, not terminated.
    pub fn overdue(&self, now_ms: i64) -> bool {
        self.terminated_at_ms == 0 && self.suspended_at_ms > 0 && now_ms >= self.fix_by_ms
    }

    /// Why the tenant's exports are frozen, for refusals; `None` when they are not.
    pub fn frozen_reason(&self) -> Option<String> {
        match self.state() {
            "terminated" => Some(format!(
                "the tenant was terminated on {}",
                crate::format_ms(self.terminated_at_ms)
            )),
            "suspended" => Some(format!(
                "tenant suspended since {} fix by {}: {}",
                crate::format_ms(self.suspended_at_ms),
                crate::format_ms(self.fix_by_ms),
                self.suspend_reason
            )),
            "stopped" => Some(format!(
                "the tenant's work is stopped (emergency stop) since {}: {}",
                crate::format_ms(self.stopped_at_ms),
                self.stop_reason
            )),
            _ => None,
        }
    }

    /// Why a call of one of the tenant's principals is refused, if it is: suspension and
    /// termination close access entirely; an emergency stop refuses everything but reads.
    pub fn refusal(&self, action: Action) -> Option<String> {
        match self.state() {
            "terminated" | "suspended" => self.frozen_reason(),
            "stopped" if !reads_only(action) => self.frozen_reason(),
            _ => None,
        }
    }

    /// [`Hold::refusal`], typed by the hold's state (its reason tells clients which hold).
    pub fn refused(&self, action: Action) -> Option<Refusal> {
        let message = self.refusal(action)?;
        Some(match self.state() {
            "terminated" => Refusal::TenantTerminated(message),
            "suspended" => Refusal::TenantSuspended(message),
            _ => Refusal::TenantStopped(message),
        })
    }
}

/// The actions a stopped tenant's people keep: they see what happened, start nothing.
fn reads_only(action: Action) -> bool {
    matches!(
        action,
        Action::WhoAmI
            | Action::ViewNotifications
            | Action::ViewJob
            | Action::ViewExport
            | Action::ViewUsage
            | Action::ViewScenario
            | Action::ListDatasets
            | Action::DescribeDataset
            | Action::ListProducts
    )
}

fn hold_row(r: &Row) -> Result<Hold> {
    Ok(Hold {
        tenant_id: r.get("tenant_id")?,
        suspended_at_ms: r.get("suspended_at_ms")?,
        suspend_reason: r.get("suspend_reason")?,
        fix_by_ms: r.get("fix_by_ms")?,
        suspended_by: r.get("suspended_by")?,
        stopped_at_ms: r.get("stopped_at_ms")?,
        stop_reason: r.get("stop_reason")?,
        stopped_by: r.get("stopped_by")?,
        terminated_at_ms: r.get("terminated_at_ms")?,
        terminate_reason: r.get("terminate_reason")?,
        terminated_by: r.get("terminated_by")?,
    })
}

const HOLD_COLUMNS: &str = "tenant_id, suspended_at_ms, suspend_reason, fix_by_ms, suspended_by, \
     stopped_at_ms, stop_reason, stopped_by, terminated_at_ms, terminate_reason, terminated_by";

/// The tenant's hold (an empty one when it is active).
///
/// # Errors
/// If the read fails.
pub fn hold(tx: &Tx<'_>, tenant_id: &str) -> Result<Hold> {
    Ok(tx
        .query_opt(
            &format!("SELECT {HOLD_COLUMNS} FROM tenant_holds WHERE tenant_id = ?1"),
            params![tenant_id],
        )?
        .as_ref()
        .map(hold_row)
        .transpose()?
        .unwrap_or_else(|| Hold::none(tenant_id)))
}

/// Every hold ever recorded.
///
/// # Errors
/// If the read fails.
pub fn holds(tx: &Tx<'_>) -> Result<Vec<Hold>> {
    tx.query(
        &format!("SELECT {HOLD_COLUMNS} FROM tenant_holds ORDER BY tenant_id"),
        &[],
    )?
    .iter()
    .map(hold_row)
    .collect()
}

/// Writes a tenant's hold.
///
/// # Errors
/// If the write fails.
pub fn set_hold(tx: &Tx<'_>, h: &Hold) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO tenant_holds ({HOLD_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (tenant_id) DO UPDATE SET suspended_at_ms = excluded.suspended_at_ms,
                 suspend_reason = excluded.suspend_reason, fix_by_ms = excluded.fix_by_ms,
                 suspended_by = excluded.suspended_by, stopped_at_ms = excluded.stopped_at_ms,
                 stop_reason = excluded.stop_reason, stopped_by = excluded.stopped_by,
                 terminated_at_ms = excluded.terminated_at_ms,
                 terminate_reason = excluded.terminate_reason,
                 terminated_by = excluded.terminated_by"
        ),
        params![
            &h.tenant_id,
            h.suspended_at_ms,
            &h.suspend_reason,
            h.fix_by_ms,
            &h.suspended_by,
            h.stopped_at_ms,
            &h.stop_reason,
            &h.stopped_by,
            h.terminated_at_ms,
            &h.terminate_reason,
            &h.terminated_by
        ],
    )?;
    Ok(())
}

/// Refuses with FAILED_PRECONDITION while the tenant's exports are frozen (suspended,
/// stopped or terminated): no vote, download or fetch of its products.
///
/// # Errors
/// FAILED_PRECONDITION (`EXPORT_FROZEN`) with the hold's reason, or a store error.
pub fn require_exports_open(store: &Store, tenant_id: &str) -> Result<()> {
    let hold = store.read(|c| hold(c, tenant_id))?;
    match hold.frozen_reason() {
        Some(reason) => {
            Err(Refusal::ExportFrozen(format!("the export is frozen: {reason}")).into())
        }
        None => Ok(()),
    }
}

/// The dedup key of the notice that a suspension is overdue: one per suspension.
pub fn overdue_dedup_key(h: &Hold) -> String {
    format!("tenant_overdue:{}:{}", h.tenant_id, h.suspended_at_ms)
}

/// Tells the admins, once per suspension, about every suspended tenant whose fix-by
/// deadline has passed. Returns the tenants newly notified.
///
/// # Errors
/// If a read or write fails.
pub fn notify_overdue(tx: &Tx<'_>, now_ms: i64) -> Result<Vec<String>> {
    let mut told = Vec::new();
    for h in holds(tx)? {
        if !h.overdue(now_ms) {
            continue;
        }
        let dedup = overdue_dedup_key(&h);
        let body = format!(
            "suspended since {} with a fix-by deadline of {} that passed without resumption \
             (R26): resume it or terminate it with `shuyu tenant terminate {}`",
            crate::format_ms(h.suspended_at_ms),
            crate::format_ms(h.fix_by_ms),
            h.tenant_id
        );
        let written = notify::notify(
            tx,
            &NewNotification {
                audience: Audience::Admins,
                tenant_id: &h.tenant_id,
                kind: "tenant_due_for_termination",
                subject: &format!("tenant {} is due for termination", h.tenant_id),
                body: &body,
                reference: &h.tenant_id,
                dedup_key: Some(&dedup),
            },
            now_ms,
        )?;
        if written {
            told.push(h.tenant_id);
        }
    }
    Ok(told)
}

/// Every KEK that is the tenant's: its tenant and pseudonym KEKs, the KEKs it owns, its
/// jobs' KEKs, and every KEK whose parent chain reaches one of those.
///
/// # Errors
/// If the read fails.
pub fn tenant_keks(tx: &Tx<'_>, tenant_id: &str, roots: &[String]) -> Result<BTreeSet<String>> {
    let all: Vec<(String, String, Option<String>)> = tx
        .query("SELECT id, owner, parent FROM keks", &[])?
        .iter()
        .map(|r| Ok((r.get("id")?, r.get("owner")?, r.get("parent")?)))
        .collect::<Result<_>>()?;
    let known: BTreeSet<&str> = all.iter().map(|(id, _, _)| id.as_str()).collect();
    let mut set: BTreeSet<String> = roots
        .iter()
        .filter(|id| known.contains(id.as_str()))
        .cloned()
        .collect();
    set.extend(
        all.iter()
            .filter(|(_, owner, _)| owner == tenant_id)
            .map(|(id, _, _)| id.clone()),
    );
    // Children of anything in the set, to a fixpoint (the hierarchy is at most 8 deep).
    loop {
        let before = set.len();
        for (id, _, parent) in &all {
            if parent.as_ref().is_some_and(|p| set.contains(p)) {
                set.insert(id.clone());
            }
        }
        if set.len() == before {
            return Ok(set);
        }
    }
}

/// Deletes the stored (wrapped) KEKs; returns how many rows went.
///
/// # Errors
/// If the delete fails.
pub fn delete_keks(tx: &Tx<'_>, ids: &BTreeSet<String>) -> Result<usize> {
    let mut n = 0;
    for id in ids {
        n += usize::try_from(tx.execute("DELETE FROM keks WHERE id = ?1", params![id])?)
            .map_err(ServerError::internal)?;
    }
    Ok(n)
}

/// A stored, signed exit report.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitReport {
    pub tenant_id: String,
    pub created_at_ms: i64,
    pub report_json: String,
    pub report_text: String,
    pub signature_hex: String,
    pub public_key_hex: String,
}

/// Stores the exit report.
///
/// # Errors
/// If the write fails.
pub fn insert_exit_report(tx: &Tx<'_>, r: &ExitReport) -> Result<()> {
    tx.execute(
        "INSERT INTO exit_reports
             (tenant_id, created_at_ms, report_json, report_text, signature_hex, public_key_hex)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (tenant_id) DO UPDATE SET created_at_ms = excluded.created_at_ms,
             report_json = excluded.report_json, report_text = excluded.report_text,
             signature_hex = excluded.signature_hex, public_key_hex = excluded.public_key_hex",
        params![
            &r.tenant_id,
            r.created_at_ms,
            &r.report_json,
            &r.report_text,
            &r.signature_hex,
            &r.public_key_hex
        ],
    )?;
    Ok(())
}

/// The tenant's exit report, if it was terminated.
///
/// # Errors
/// If the read fails.
pub fn exit_report(tx: &Tx<'_>, tenant_id: &str) -> Result<Option<ExitReport>> {
    tx.query_opt(
        "SELECT tenant_id, created_at_ms, report_json, report_text, signature_hex,
                public_key_hex FROM exit_reports WHERE tenant_id = ?1",
        params![tenant_id],
    )?
    .map(|r| {
        Ok(ExitReport {
            tenant_id: r.get("tenant_id")?,
            created_at_ms: r.get("created_at_ms")?,
            report_json: r.get("report_json")?,
            report_text: r.get("report_text")?,
            signature_hex: r.get("signature_hex")?,
            public_key_hex: r.get("public_key_hex")?,
        })
    })
    .transpose()
}

/// A recorded drill of the emergency stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Drill {
    pub id: String,
    pub tenant_id: String,
    pub plan_id: String,
    pub note: String,
    pub run_by: String,
    pub started_at_ms: i64,
    pub released_at_ms: i64,
    pub halt_ms: u64,
    pub jobs_stopped: Vec<String>,
    pub exports_frozen: u32,
    /// `halted`, `no_work` or `timeout`.
    pub outcome: String,
}

/// Stores a drill.
///
/// # Errors
/// If the write fails.
pub fn insert_drill(tx: &Tx<'_>, d: &Drill) -> Result<()> {
    tx.execute(
        "INSERT INTO drills (id, tenant_id, plan_id, note, run_by, started_at_ms,
             released_at_ms, halt_ms, jobs_json, exports_frozen, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            &d.id,
            &d.tenant_id,
            &d.plan_id,
            &d.note,
            &d.run_by,
            d.started_at_ms,
            d.released_at_ms,
            i64::try_from(d.halt_ms).unwrap_or(i64::MAX),
            crate::store::to_json(&d.jobs_stopped, "a drill's stopped jobs")?,
            d.exports_frozen,
            &d.outcome
        ],
    )?;
    Ok(())
}

/// Drills of one tenant (or all), oldest first.
///
/// # Errors
/// If the read fails.
pub fn drills(tx: &Tx<'_>, tenant_id: Option<&str>) -> Result<Vec<Drill>> {
    tx.query(
        "SELECT id, tenant_id, plan_id, note, run_by, started_at_ms, released_at_ms, halt_ms,
                jobs_json, exports_frozen, outcome FROM drills
         WHERE CAST(?1 AS TEXT) IS NULL OR tenant_id = ?1 ORDER BY started_at_ms, id",
        params![tenant_id],
    )?
    .iter()
    .map(|r| {
        let jobs: String = r.get("jobs_json")?;
        let halt_ms: i64 = r.get("halt_ms")?;
        Ok(Drill {
            id: r.get("id")?,
            tenant_id: r.get("tenant_id")?,
            plan_id: r.get("plan_id")?,
            note: r.get("note")?,
            run_by: r.get("run_by")?,
            started_at_ms: r.get("started_at_ms")?,
            released_at_ms: r.get("released_at_ms")?,
            halt_ms: halt_ms.max(0).unsigned_abs(),
            jobs_stopped: serde_json::from_str(&jobs).unwrap_or_default(),
            exports_frozen: r.get("exports_frozen")?,
            outcome: r.get("outcome")?,
        })
    })
    .collect()
}

/// Exports of the tenant that a hold freezes: in review or approved.
///
/// # Errors
/// If the read fails.
pub fn open_exports(tx: &Tx<'_>, tenant_id: &str) -> Result<u32> {
    Ok(tx
        .query_one(
            "SELECT count(*) AS n FROM exports
             WHERE tenant_id = ?1 AND status IN ('in_review', 'approved')",
            params![tenant_id],
        )?
        .get("n")?)
}

/// Ends the tenant's exports for good (termination): approved ones are revoked, those in
/// review rejected, each with an event. Returns (revoked, rejected) export ids.
///
/// # Errors
/// If a write fails.
pub fn close_exports(
    tx: &Tx<'_>,
    tenant_id: &str,
    actor_id: &str,
    now_ms: i64,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut closed = (Vec::new(), Vec::new());
    for (from, to) in [("approved", "revoked"), ("in_review", "rejected")] {
        let ids: Vec<String> = tx
            .query(
                "SELECT id FROM exports WHERE tenant_id = ?1 AND status = ?2 ORDER BY id",
                params![tenant_id, from],
            )?
            .iter()
            .map(|r| Ok(r.get("id")?))
            .collect::<Result<_>>()?;
        for id in &ids {
            tx.execute(
                "UPDATE exports SET status = ?2, decided_at_ms = CASE WHEN decided_at_ms = 0
                     THEN ?3 ELSE decided_at_ms END WHERE id = ?1",
                params![id, to, now_ms],
            )?;
            crate::exports::records::append_export_event(
                tx,
                id,
                now_ms,
                actor_id,
                from,
                to,
                "the tenant was terminated",
            )?;
        }
        if to == "revoked" {
            closed.0 = ids;
        } else {
            closed.1 = ids;
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{each_backend, write};

    /// Adds the tenants `t1` and `t2` to `store`.
    fn with_tenants(store: &Store) {
        write(store, |tx| {
            for id in ["t1", "t2"] {
                crate::admin::records::insert_tenant(
                    tx,
                    &crate::admin::records::Tenant {
                        id: id.into(),
                        name: id.into(),
                        kek_id: format!("tenant:{id}"),
                        pseudonym_kek_id: format!("pseudonym:{id}"),
                        created_at_ms: 0,
                        lab_until_ms: 0,
                    },
                )?;
            }
            Ok(())
        });
    }

    fn count_keks(store: &Store) -> i64 {
        store
            .read(|tx| {
                Ok(tx
                    .query_one("SELECT count(*) AS n FROM keks", &[])?
                    .get("n")?)
            })
            .unwrap()
    }

    #[test]
    fn a_tenant_s_keks_are_its_roots_what_it_owns_and_every_descendant() {
        each_backend(a_tenant_s_keks_on);
    }

    fn a_tenant_s_keks_on(store: &Store) {
        with_tenants(store);
        let before = count_keks(store);
        write(store, |tx| {
            for (id, owner, parent) in [
                ("domain", "domain", None),
                ("dataset:d1", "domain", Some("domain")),
                ("tenant:t1", "t1", None),
                ("pseudonym:t1", "t1", None),
                ("job:j1", "t1", Some("tenant:t1")),
                ("import:i1", "someone", Some("tenant:t1")),
                ("import:i2", "someone", Some("import:i1")),
                ("tenant:t2", "t2", None),
                ("job:j2", "t2", Some("tenant:t2")),
                ("job:orphan", "x", None),
            ] {
                crate::store::insert_kek(tx, id, &[0], owner, parent)?;
            }
            Ok(())
        });
        let roots = vec![
            "tenant:t1".to_owned(),
            "job:orphan".to_owned(),
            "job:missing".to_owned(),
        ];
        let set = store.read(|tx| tenant_keks(tx, "t1", &roots)).unwrap();
        assert_eq!(
            set.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "import:i1",
                "import:i2",
                "job:j1",
                "job:orphan",
                "pseudonym:t1",
                "tenant:t1"
            ]
        );
        assert_eq!(write(store, |tx| delete_keks(tx, &set)), 6);
        assert_eq!(count_keks(store), before + 4);
    }

    #[test]
    fn holds_refuse_by_state_and_overdue_tenants_are_told_once() {
        each_backend(|store| {
            with_tenants(store);
            let overdue = |at: i64| write(store, |tx| notify_overdue(tx, at));
            assert_eq!(store.read(|tx| hold(tx, "t1")).unwrap().state(), "active");
            let mut h = Hold::none("t1");
            h.stopped_at_ms = 5;
            h.stop_reason = "incident".into();
            assert_eq!(h.refusal(Action::ViewJob), None);
            assert!(h.refusal(Action::SubmitJob).unwrap().contains("incident"));
            assert_eq!(
                h.refused(Action::SubmitJob).unwrap().reason(),
                "TENANT_STOPPED"
            );
            assert_eq!(h.refused(Action::ViewJob), None);
            h.suspended_at_ms = 10;
            h.fix_by_ms = 20;
            h.suspend_reason = "leak".into();
            assert_eq!(h.state(), "suspended");
            let refusal = h.refusal(Action::WhoAmI).unwrap();
            assert!(refusal.starts_with("tenant suspended since"), "{refusal}");
            assert!(refusal.contains("fix by"), "{refusal}");
            assert_eq!(
                h.refused(Action::WhoAmI).unwrap().reason(),
                "TENANT_SUSPENDED"
            );
            write(store, |tx| set_hold(tx, &h));
            assert_eq!(store.read(|tx| hold(tx, "t1")).unwrap(), h);
            assert!(overdue(19).is_empty());
            assert_eq!(overdue(20), ["t1"]);
            assert!(overdue(30).is_empty(), "told once");
            // A new suspension is a new deadline: told again once it passes.
            h.suspended_at_ms = 40;
            h.fix_by_ms = 50;
            write(store, |tx| set_hold(tx, &h));
            assert_eq!(overdue(60), ["t1"]);
            h.terminated_at_ms = 70;
            h.terminate_reason = "gone".into();
            h.terminated_by = "p_admin".into();
            write(store, |tx| set_hold(tx, &h));
            assert_eq!(store.read(holds).unwrap(), [h.clone()]);
            assert!(!h.overdue(80));
            assert!(h.refusal(Action::ViewJob).unwrap().contains("terminated"));
            assert_eq!(
                h.refused(Action::ViewJob).unwrap().reason(),
                "TENANT_TERMINATED"
            );
        });
    }

    #[test]
    fn exit_reports_and_drills_round_trip() {
        each_backend(|store| {
            with_tenants(store);
            assert_eq!(store.read(|tx| exit_report(tx, "t1")).unwrap(), None);
            let mut report = ExitReport {
                tenant_id: "t1".into(),
                created_at_ms: 1,
                report_json: "{}".into(),
                report_text: "text".into(),
                signature_hex: "00".into(),
                public_key_hex: "01".into(),
            };
            write(store, |tx| insert_exit_report(tx, &report));
            assert_eq!(
                store.read(|tx| exit_report(tx, "t1")).unwrap().as_ref(),
                Some(&report)
            );
            report.created_at_ms = 2;
            report.report_text = "again".into();
            write(store, |tx| insert_exit_report(tx, &report));
            assert_eq!(
                store.read(|tx| exit_report(tx, "t1")).unwrap().as_ref(),
                Some(&report)
            );
            let drill = |id: &str, tenant_id: &str, started_at_ms: i64| Drill {
                id: id.into(),
                tenant_id: tenant_id.into(),
                plan_id: "au_1".into(),
                note: "quarterly".into(),
                run_by: "p_admin".into(),
                started_at_ms,
                released_at_ms: started_at_ms + 10,
                halt_ms: 1_234,
                jobs_stopped: vec!["j1".into(), "j2".into()],
                exports_frozen: 3,
                outcome: "halted".into(),
            };
            let (a, b, c) = (
                drill("d_a", "t1", 20),
                drill("d_b", "t2", 10),
                drill("d_c", "t1", 5),
            );
            write(store, |tx| {
                insert_drill(tx, &a)?;
                insert_drill(tx, &b)?;
                insert_drill(tx, &c)
            });
            assert_eq!(
                store.read(|tx| drills(tx, None)).unwrap(),
                [c.clone(), b.clone(), a.clone()]
            );
            assert_eq!(store.read(|tx| drills(tx, Some("t1"))).unwrap(), [c, a]);
            assert!(store.read(|tx| drills(tx, Some("t3"))).unwrap().is_empty());
            assert_eq!(store.read(|tx| open_exports(tx, "t1")).unwrap(), 0);
        });
    }
}
