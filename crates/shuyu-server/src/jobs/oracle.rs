//! What a production job tells its engineer besides its gated result, kept small (issue 17,
//! "no oracle by error"): a hidden condition can make a job slower, bigger or fail, so
//!
//! - the usage figures engineers see of a production job (CPU, wall time, peak memory,
//!   bytes scanned, live rows and bytes) are rounded up to a coarse logarithmic bucket
//!   ([`coarse`]); admins and auditors, and billing, keep the exact figures;
//! - failed production jobs count against a per-tenant allowance (`[jobs]` of the server
//!   configuration, per rolling window): its overrun freezes the tenant's production job
//!   submission (stored, so a restart keeps it) and raises an alert to the admins, until an
//!   admin lifts it (`LiftProductionFreeze`, audited). Refusals before a job runs (SQL that
//!   does not plan, plan refusals) do not count; failures once it runs (errors, memory,
//!   time limit, a killed worker) do.

use serde::Deserialize;
use serde_json::json;
use shuyu_meta::params;

use crate::error::{Result, ServerError};
use crate::jobs::records::JobUsage;
use crate::notify::{self, Audience, NewNotification};
use crate::oversight::alerts::{self, Finding};
use crate::store::Tx;

/// Schema of the failure and freeze tables. A freeze's id is the next after the largest
/// (freezes are never deleted).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS production_failures (
    job_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, at_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS production_failures_by_tenant
    ON production_failures (tenant_id, at_ms);
CREATE TABLE IF NOT EXISTS production_freezes (
    id BIGINT PRIMARY KEY, tenant_id TEXT NOT NULL, frozen_at_ms BIGINT NOT NULL,
    failures BIGINT NOT NULL, allowance BIGINT NOT NULL, window_hours BIGINT NOT NULL,
    job_ids_json TEXT NOT NULL, lifted_at_ms BIGINT NOT NULL DEFAULT 0,
    lifted_by TEXT NOT NULL DEFAULT '', lift_note TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS production_freezes_by_tenant
    ON production_freezes (tenant_id, id);
";

const HOUR_MS: i64 = 3_600_000;

/// `[jobs]` of the server configuration: the failed-production-job allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Failed production jobs a tenant may have in the window; one more freezes its
    /// production job submission until an admin lifts it. 0 freezes at the first failure.
    #[serde(default = "default_allowance")]
    pub failed_production_allowance: u32,
    /// The rolling window, hours (1 to 720).
    #[serde(default = "default_window_hours")]
    pub failed_production_window_hours: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            failed_production_allowance: default_allowance(),
            failed_production_window_hours: default_window_hours(),
        }
    }
}

fn default_allowance() -> u32 {
    5
}
fn default_window_hours() -> u32 {
    24
}

impl JobsConfig {
    /// Checks value ranges.
    ///
    /// # Errors
    /// Names the offending key.
    pub fn validate(&self) -> Result<()> {
        if self.failed_production_allowance > 1000 {
            return Err(ServerError::InvalidArgument(
                "configuration: jobs.failed_production_allowance must be at most 1000".into(),
            ));
        }
        if !(1..=720).contains(&self.failed_production_window_hours) {
            return Err(ServerError::InvalidArgument(
                "configuration: jobs.failed_production_window_hours must be between 1 and 720"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Rounds `value` up to the next bucket of the series `floor × {1, 3, 10, 30, 100, …}`
/// (about half a decade per bucket); 0 stays 0. What one bucket hides is a factor of about
/// three: a hidden condition must change a figure that much to show.
pub fn coarse(value: u64, floor: u64) -> u64 {
    if value == 0 {
        return 0;
    }
    let mut bucket = floor.max(1);
    let mut times_three = true;
    while bucket < value {
        let next = if times_three {
            bucket.saturating_mul(3)
        } else {
            // 3 → 10: the series stays on round numbers.
            bucket.saturating_div(3).saturating_mul(10)
        };
        if next == bucket {
            return u64::MAX;
        }
        bucket = next;
        times_three = !times_three;
    }
    bucket
}

/// Floor of the time buckets: one second.
pub const TIME_FLOOR_MS: u64 = 1_000;
/// Floor of the byte buckets: one megabyte.
pub const BYTES_FLOOR: u64 = 1_000_000;
/// Floor of the live row-count buckets: a thousand rows.
pub const ROWS_FLOOR: u64 = 1_000;

/// A production job's usage as its engineer sees it: CPU, wall time, peak memory and bytes
/// scanned coarsened; the time it waited in the queue (other tenants' load, not its data)
/// exact; not whether it ran again with sort-merge joins.
pub fn coarse_usage(usage: &JobUsage) -> JobUsage {
    JobUsage {
        cpu_ms: coarse(usage.cpu_ms, TIME_FLOOR_MS),
        bytes_scanned: coarse(usage.bytes_scanned, BYTES_FLOOR),
        peak_memory_bytes: coarse(usage.peak_memory_bytes, BYTES_FLOOR),
        wall_ms: coarse(usage.wall_ms, TIME_FLOOR_MS),
        queued_ms: usage.queued_ms,
        // Whether the job ran out of memory once depends on its data, as a failure's
        // reason does (withheld): operators read it in the audit trail.
        sort_merge_rerun: false,
    }
}

/// A freeze of one tenant's production job submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freeze {
    pub id: i64,
    pub tenant_id: String,
    pub frozen_at_ms: i64,
    /// Failed production jobs counted when it froze.
    pub failures: u32,
    pub allowance: u32,
    pub window_hours: u32,
    /// The jobs counted.
    pub job_ids: Vec<String>,
    pub lifted_at_ms: i64,
    pub lifted_by: String,
    pub lift_note: String,
}

impl Freeze {
    /// Why production submission is refused, for the engineer and the admins.
    pub fn reason(&self) -> String {
        format!(
            "production job submission is frozen since {}: {} production jobs failed within \
             {} hours (the allowance is {}); an admin must look at them and lift the freeze",
            crate::format_ms(self.frozen_at_ms),
            self.failures,
            self.window_hours,
            self.allowance
        )
    }
}

const FREEZE_COLUMNS: &str = "id, tenant_id, frozen_at_ms, failures, allowance, window_hours,
    job_ids_json, lifted_at_ms, lifted_by, lift_note";

fn freeze_row(r: &shuyu_meta::Row) -> Result<Freeze> {
    let job_ids: String = r.get("job_ids_json")?;
    Ok(Freeze {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        frozen_at_ms: r.get("frozen_at_ms")?,
        failures: r.get("failures")?,
        allowance: r.get("allowance")?,
        window_hours: r.get("window_hours")?,
        job_ids: serde_json::from_str(&job_ids).unwrap_or_default(),
        lifted_at_ms: r.get("lifted_at_ms")?,
        lifted_by: r.get("lifted_by")?,
        lift_note: r.get("lift_note")?,
    })
}

/// The tenant's freeze in force, if any.
///
/// # Errors
/// On store failure.
pub fn active_freeze(tx: &Tx<'_>, tenant_id: &str) -> Result<Option<Freeze>> {
    tx.query_opt(
        &format!(
            "SELECT {FREEZE_COLUMNS} FROM production_freezes
             WHERE tenant_id = ?1 AND lifted_at_ms = 0 ORDER BY id DESC LIMIT 1"
        ),
        params![tenant_id],
    )?
    .as_ref()
    .map(freeze_row)
    .transpose()
}

/// When the tenant's last freeze was lifted (0: never).
fn last_lift_ms(tx: &Tx<'_>, tenant_id: &str) -> Result<i64> {
    Ok(tx
        .query_one(
            "SELECT COALESCE(MAX(lifted_at_ms), 0) AS last FROM production_freezes
             WHERE tenant_id = ?1",
            params![tenant_id],
        )?
        .get("last")?)
}

/// Counts a failed production job of the tenant (inside the transaction that records its
/// outcome). When the failures in the window since the last lift exceed the allowance and
/// no freeze is in force, freezes the tenant's production submission, raises an alert to
/// the admins and tells the tenant; returns the new freeze.
///
/// # Errors
/// On store failure.
pub fn count_failure(
    tx: &Tx<'_>,
    config: &JobsConfig,
    tenant_id: &str,
    job_id: &str,
    now_ms: i64,
) -> Result<Option<Freeze>> {
    tx.execute(
        "INSERT INTO production_failures (job_id, tenant_id, at_ms)
         VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![job_id, tenant_id, now_ms],
    )?;
    if active_freeze(tx, tenant_id)?.is_some() {
        return Ok(None);
    }
    let window_ms = i64::from(config.failed_production_window_hours) * HOUR_MS;
    let since = (now_ms - window_ms).max(last_lift_ms(tx, tenant_id)?);
    let job_ids: Vec<String> = tx
        .query(
            "SELECT job_id FROM production_failures
             WHERE tenant_id = ?1 AND at_ms > ?2 ORDER BY at_ms, job_id",
            params![tenant_id, since],
        )?
        .iter()
        .map(|r| r.get("job_id"))
        .collect::<shuyu_meta::Result<_>>()?;
    let failures = u32::try_from(job_ids.len()).unwrap_or(u32::MAX);
    if failures <= config.failed_production_allowance {
        return Ok(None);
    }
    let id: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(id), 0) + 1 AS next FROM production_freezes",
            &[],
        )?
        .get("next")?;
    tx.execute(
        "INSERT INTO production_freezes (id, tenant_id, frozen_at_ms, failures, allowance,
             window_hours, job_ids_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            tenant_id,
            now_ms,
            failures,
            config.failed_production_allowance,
            config.failed_production_window_hours,
            crate::store::to_json(&job_ids, "a freeze's job ids")?
        ],
    )?;
    let freeze = active_freeze(tx, tenant_id)?
        .ok_or_else(|| ServerError::internal("an inserted freeze vanished"))?;
    let recent: Vec<&str> = job_ids.iter().rev().take(10).map(String::as_str).collect();
    alerts::record(
        tx,
        &Finding {
            kind: "production_frozen",
            tenant_id: tenant_id.to_owned(),
            subject: format!("tenant:{tenant_id}"),
            severity: "high",
            evidence: json!({
                "failed_production_jobs": failures,
                "allowance": config.failed_production_allowance,
                "window_hours": config.failed_production_window_hours,
                "job_ids": recent,
                "lift": format!("shuyu tenant lift-freeze {tenant_id} --note …"),
            }),
            events: vec![now_ms],
            threshold: 1,
        },
        now_ms,
    )?;
    notify::notify(
        tx,
        &NewNotification {
            audience: Audience::Tenant(tenant_id.to_owned()),
            tenant_id,
            kind: "production_frozen",
            subject: "production job submission is frozen",
            body: &freeze.reason(),
            reference: tenant_id,
            dedup_key: None,
        },
        now_ms,
    )?;
    Ok(Some(freeze))
}

/// Lifts the tenant's freeze in force (its earlier failures no longer count) and tells the
/// tenant; returns it, or `None` when none is in force.
///
/// # Errors
/// On store failure.
pub fn lift(
    tx: &Tx<'_>,
    tenant_id: &str,
    by: &str,
    note: &str,
    now_ms: i64,
) -> Result<Option<Freeze>> {
    let Some(freeze) = active_freeze(tx, tenant_id)? else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE production_freezes SET lifted_at_ms = ?2, lifted_by = ?3, lift_note = ?4
         WHERE id = ?1",
        params![freeze.id, now_ms.max(freeze.frozen_at_ms + 1), by, note],
    )?;
    notify::notify(
        tx,
        &NewNotification {
            audience: Audience::Tenant(tenant_id.to_owned()),
            tenant_id,
            kind: "production_unfrozen",
            subject: "production job submission is open again",
            body: "an admin looked at the failed production jobs and lifted the freeze",
            reference: tenant_id,
            dedup_key: None,
        },
        now_ms,
    )?;
    Ok(Some(freeze))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, testing};

    #[track_caller]
    fn check_coarse(value: u64, floor: u64, expect: u64) {
        assert_eq!(coarse(value, floor), expect, "coarse({value}, {floor})");
    }

    #[test]
    fn figures_round_up_to_half_decade_buckets() {
        check_coarse(0, 1_000, 0);
        check_coarse(1, 1_000, 1_000);
        check_coarse(1_000, 1_000, 1_000);
        check_coarse(1_001, 1_000, 3_000);
        check_coarse(2_999, 1_000, 3_000);
        check_coarse(3_001, 1_000, 10_000);
        check_coarse(10_001, 1_000, 30_000);
        check_coarse(123_456_789, 1_000_000, 300_000_000);
        check_coarse(u64::MAX - 1, 1, u64::MAX);
        // Every bucket holds its value, and within a factor of ~3.3 of it.
        for value in [1u64, 7, 999, 1_234, 45_678, 9_999_999, 1 << 40] {
            let b = coarse(value, 1);
            assert!(b >= value && b <= value.saturating_mul(4), "{value} -> {b}");
        }
        let usage = JobUsage {
            cpu_ms: 1_234,
            bytes_scanned: 5_000_001,
            peak_memory_bytes: 70_000_000,
            wall_ms: 17,
            queued_ms: 42,
            sort_merge_rerun: true,
        };
        let shown = coarse_usage(&usage);
        assert!(
            !shown.sort_merge_rerun,
            "a rerun for memory depends on the data"
        );
        assert_eq!(
            (
                shown.cpu_ms,
                shown.bytes_scanned,
                shown.peak_memory_bytes,
                shown.wall_ms,
                shown.queued_ms
            ),
            (3_000, 10_000_000, 100_000_000, 1_000, 42)
        );
    }

    /// Counts a failure in its own transaction.
    fn count(
        store: &Store,
        config: &JobsConfig,
        tenant_id: &str,
        job_id: &str,
        now_ms: i64,
    ) -> Option<Freeze> {
        testing::write(store, |tx| {
            count_failure(tx, config, tenant_id, job_id, now_ms)
        })
    }

    fn active(store: &Store, tenant_id: &str) -> Option<Freeze> {
        store.read(|tx| active_freeze(tx, tenant_id)).unwrap()
    }

    #[test]
    fn the_failure_past_the_allowance_freezes_until_lifted_and_raises_one_alert() {
        testing::each_backend(|store| {
            let config = JobsConfig {
                failed_production_allowance: 2,
                failed_production_window_hours: 24,
            };
            let t0 = 1_000 * HOUR_MS;
            // An old failure outside the window does not count.
            assert!(count(store, &config, "t1", "j0", t0 - 25 * HOUR_MS).is_none());
            for (i, job) in ["j1", "j2"].iter().enumerate() {
                assert!(count(store, &config, "t1", job, t0 + i as i64).is_none());
            }
            // Another tenant's failures are its own.
            assert!(count(store, &config, "t2", "k1", t0).is_none());
            let freeze = count(store, &config, "t1", "j3", t0 + 10)
                .expect("the third failure in the window overruns an allowance of 2");
            assert_eq!(freeze.failures, 3);
            assert_eq!(freeze.job_ids, ["j1", "j2", "j3"]);
            assert!(
                freeze
                    .reason()
                    .contains("3 production jobs failed within 24 hours")
            );
            assert_eq!(active(store, "t1"), Some(freeze.clone()));
            assert_eq!(active(store, "t2"), None);
            // More failures while frozen add no freeze and no second alert.
            assert!(count(store, &config, "t1", "j4", t0 + 20).is_none());
            let alerts = store.read(|tx| alerts::list(tx, true)).unwrap();
            assert_eq!(alerts.len(), 1);
            assert_eq!(
                (alerts[0].kind.as_str(), alerts[0].tenant_id.as_str()),
                ("production_frozen", "t1")
            );
            let admin_notes: i64 = store
                .read(|tx| {
                    Ok(tx
                        .query_one(
                            "SELECT count(*) AS n FROM notifications WHERE audience = 'admins'",
                            &[],
                        )?
                        .get("n")?)
                })
                .unwrap();
            assert_eq!(admin_notes, 1);

            // Lifted: the failures before the lift no longer count.
            let lifted = testing::write(store, |tx| {
                lift(tx, "t1", "admin1", "looked at them", t0 + 30)
            })
            .expect("a freeze in force");
            assert_eq!(lifted.id, freeze.id);
            assert_eq!(active(store, "t1"), None);
            assert_eq!(
                testing::write(store, |tx| lift(tx, "t1", "admin1", "again", t0 + 31)),
                None
            );
            for (i, job) in ["j5", "j6"].iter().enumerate() {
                assert!(count(store, &config, "t1", job, t0 + 40 + i as i64).is_none());
            }
            let again = count(store, &config, "t1", "j7", t0 + 50)
                .expect("three new failures freeze again");
            assert_eq!(again.job_ids, ["j5", "j6", "j7"]);
            assert!(again.id > freeze.id, "a new freeze takes the next id");
            // Counting the same job twice changes nothing.
            assert!(count(store, &config, "t1", "j7", t0 + 60).is_none());
        });
    }

    #[test]
    fn an_allowance_of_zero_freezes_at_the_first_failure_and_ranges_are_checked() {
        let store = testing::sqlite();
        let config = JobsConfig {
            failed_production_allowance: 0,
            failed_production_window_hours: 1,
        };
        assert!(count(&store, &config, "t", "j", 5).is_some());
        assert!(JobsConfig::default().validate().is_ok());
        assert_eq!(JobsConfig::default().failed_production_allowance, 5);
        let window = JobsConfig {
            failed_production_window_hours: 0,
            ..JobsConfig::default()
        };
        assert!(window.validate().is_err());
    }
}
