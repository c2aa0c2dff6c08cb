//! Monitoring and alerts (R30): anomalies detected from the audit trail, the jobs and the
//! exports — denied-call streaks, refused or rejected export streaks, repeated withheld
//! (value-dependent) job errors, volumes far above a tenant's own baseline, calls at odd
//! local hours. Alerts are stored deduplicated by (kind, subject): new events of an open
//! alert raise its count; admins are told of a new alert by a notification written in the
//! same transaction. Evidence holds counts, thresholds and ids, never a data value.

use std::collections::BTreeMap;

use serde_json::json;
use shuyu_meta::{Row, params};

use crate::error::Result;
use crate::notify::{self, Audience, NewNotification};
use crate::oversight::config::OversightConfig;
use crate::store::Tx;

/// Schema of the alerts table.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    id BIGINT PRIMARY KEY, kind TEXT NOT NULL, tenant_id TEXT NOT NULL,
    subject TEXT NOT NULL, severity TEXT NOT NULL, evidence_json TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL, count BIGINT NOT NULL,
    acked_by TEXT NOT NULL DEFAULT '', acked_at_ms BIGINT NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS alerts_by_key ON alerts (kind, subject, id);
";

const DAY_MS: i64 = 86_400_000;

/// A stored alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    pub tenant_id: String,
    pub subject: String,
    pub severity: String,
    pub evidence_json: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub count: u64,
    pub acked_by: String,
    pub acked_at_ms: i64,
}

/// What one rule found for one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: &'static str,
    pub tenant_id: String,
    /// The principal or tenant concerned.
    pub subject: String,
    pub severity: &'static str,
    pub evidence: serde_json::Value,
    /// Times of the events behind it, ascending.
    pub events: Vec<i64>,
    /// Events (newer than any earlier alert of the same key) needed to raise a fresh alert.
    pub threshold: usize,
}

const ALERT_COLUMNS: &str = "id, kind, tenant_id, subject, severity, evidence_json, first_seen_ms,
    last_seen_ms, count, acked_by, acked_at_ms";

fn alert_row(r: &Row) -> Result<Alert> {
    Ok(Alert {
        id: r.get("id")?,
        kind: r.get("kind")?,
        tenant_id: r.get("tenant_id")?,
        subject: r.get("subject")?,
        severity: r.get("severity")?,
        evidence_json: r.get("evidence_json")?,
        first_seen_ms: r.get("first_seen_ms")?,
        last_seen_ms: r.get("last_seen_ms")?,
        count: r.get("count")?,
        acked_by: r.get("acked_by")?,
        acked_at_ms: r.get("acked_at_ms")?,
    })
}

fn alert_rows(rows: &[Row]) -> Result<Vec<Alert>> {
    rows.iter().map(alert_row).collect()
}

/// Alerts, newest first (open ones only unless `include_acked`).
///
/// # Errors
/// On store failure.
pub fn list(tx: &Tx<'_>, include_acked: bool) -> Result<Vec<Alert>> {
    alert_rows(&tx.query(
        &format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE CAST(?1 AS BOOLEAN) OR acked_at_ms = 0
             ORDER BY id DESC LIMIT 1000"
        ),
        params![include_acked],
    )?)
}

/// One alert.
///
/// # Errors
/// On store failure.
pub fn get(tx: &Tx<'_>, id: i64) -> Result<Option<Alert>> {
    tx.query_opt(
        &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
        params![id],
    )?
    .as_ref()
    .map(alert_row)
    .transpose()
}

/// Alerts of a tenant first seen in `[from_ms, to_ms)`.
///
/// # Errors
/// On store failure.
pub fn of_tenant(tx: &Tx<'_>, tenant_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<Alert>> {
    alert_rows(&tx.query(
        &format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE tenant_id = ?1 AND first_seen_ms >= ?2
             AND first_seen_ms < ?3 ORDER BY id"
        ),
        params![tenant_id, from_ms, to_ms],
    )?)
}

/// Acknowledges an open alert; returns it, or `None` when there is no such alert.
///
/// # Errors
/// On store failure.
pub fn ack(tx: &Tx<'_>, id: i64, by: &str, at_ms: i64) -> Result<Option<Alert>> {
    tx.execute(
        "UPDATE alerts SET acked_by = ?2, acked_at_ms = ?3 WHERE id = ?1 AND acked_at_ms = 0",
        params![id, by, at_ms],
    )?;
    get(tx, id)
}

/// What recording a finding did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Raised(Alert),
    Updated,
    Unchanged,
}

/// Records a finding: a fresh alert (and a notification to the admins), new events on the
/// open alert of its key, or nothing when its events were already counted.
///
/// # Errors
/// On store failure.
pub fn record(tx: &Tx<'_>, f: &Finding, now_ms: i64) -> Result<Recorded> {
    let latest: Option<Alert> = tx
        .query_opt(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE kind = ?1 AND subject = ?2
                 ORDER BY id DESC LIMIT 1"
            ),
            params![f.kind, &f.subject],
        )?
        .as_ref()
        .map(alert_row)
        .transpose()?;
    let seen = latest.as_ref().map_or(i64::MIN, |a| a.last_seen_ms);
    let new: Vec<i64> = f.events.iter().copied().filter(|&t| t > seen).collect();
    let (Some(&first), Some(&last)) = (new.iter().min(), new.iter().max()) else {
        return Ok(Recorded::Unchanged);
    };
    let evidence = f.evidence.to_string();
    let n_new = i64::try_from(new.len()).unwrap_or(i64::MAX);
    match latest {
        Some(open) if open.acked_at_ms == 0 => {
            tx.execute(
                "UPDATE alerts SET count = count + ?2, last_seen_ms = ?3, evidence_json = ?4,
                     severity = ?5 WHERE id = ?1",
                params![open.id, n_new, last, evidence, f.severity],
            )?;
            Ok(Recorded::Updated)
        }
        _ if new.len() < f.threshold => Ok(Recorded::Unchanged),
        _ => {
            // Ids grow and are never reused: no alert is ever deleted.
            let id: i64 = tx
                .query_one("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM alerts", &[])?
                .get("next")?;
            tx.execute(
                "INSERT INTO alerts (id, kind, tenant_id, subject, severity, evidence_json,
                     first_seen_ms, last_seen_ms, count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    f.kind,
                    &f.tenant_id,
                    &f.subject,
                    f.severity,
                    evidence,
                    first,
                    last,
                    n_new
                ],
            )?;
            let subject = format!("{} alert: {}", f.severity, f.kind.replace('_', " "));
            let body = format!(
                "{} event(s) concerning {} (tenant {}); evidence: {}. `shuyu alerts list` shows \
                 it, `shuyu alerts ack {id}` acknowledges it.",
                new.len(),
                f.subject,
                if f.tenant_id.is_empty() {
                    "-"
                } else {
                    &f.tenant_id
                },
                f.evidence
            );
            let reference = format!("alert:{id}");
            notify::notify(
                tx,
                &NewNotification {
                    audience: Audience::Admins,
                    tenant_id: &f.tenant_id,
                    kind: "alert",
                    subject: &subject,
                    body: &body,
                    reference: &reference,
                    dedup_key: Some(&reference),
                },
                now_ms,
            )?;
            Ok(Recorded::Raised(get(tx, id)?.ok_or_else(|| {
                crate::error::ServerError::internal("an inserted alert vanished")
            })?))
        }
    }
}

/// Runs every rule over the store at `now_ms`.
///
/// # Errors
/// On store failure or a bad time zone.
pub fn detect(tx: &Tx<'_>, c: &OversightConfig, now_ms: i64) -> Result<Vec<Finding>> {
    let window_ms = i64::try_from(c.window_minutes)
        .unwrap_or(i64::MAX / 120_000)
        .saturating_mul(60_000);
    let since = now_ms.saturating_sub(window_ms);
    let mut findings = Vec::new();

    // Denied calls per principal within the window.
    let mut denied: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for r in tx.query(
        "SELECT at_ms, principal_id, tenant_id FROM audit
         WHERE outcome = 'denied' AND at_ms >= ?1 ORDER BY seq",
        params![since],
    )? {
        denied
            .entry((r.get("principal_id")?, r.get("tenant_id")?))
            .or_default()
            .push(r.get("at_ms")?);
    }
    for ((principal, tenant), events) in denied {
        if (events.len() as u64) < c.denied_calls_threshold {
            continue;
        }
        findings.push(Finding {
            kind: "denied_calls",
            tenant_id: tenant,
            subject: format!("principal:{principal}"),
            severity: "medium",
            evidence: json!({"denied_in_window": events.len(), "window_minutes": c.window_minutes,
                             "threshold": c.denied_calls_threshold}),
            threshold: usize::try_from(c.denied_calls_threshold).unwrap_or(usize::MAX),
            events,
        });
    }

    // Consecutive refused (failed checks) or rejected exports, per tenant.
    let mut exports: BTreeMap<String, Vec<(String, String, i64)>> = BTreeMap::new();
    for r in tx.query(
        "SELECT tenant_id, id, status, requested_at_ms FROM exports
         ORDER BY requested_at_ms, id",
        &[],
    )? {
        exports.entry(r.get("tenant_id")?).or_default().push((
            r.get("id")?,
            r.get("status")?,
            r.get("requested_at_ms")?,
        ));
    }
    for (tenant, list) in exports {
        let streak: Vec<&(String, String, i64)> = list
            .iter()
            .rev()
            .filter(|(_, status, _)| status != "in_review")
            .take_while(|(_, status, _)| status == "refused" || status == "rejected")
            .collect();
        if (streak.len() as u64) < c.rejected_exports_streak {
            continue;
        }
        let mut events: Vec<i64> = streak.iter().map(|e| e.2).collect();
        events.sort_unstable();
        let ids: Vec<&str> = streak.iter().take(20).map(|e| e.0.as_str()).collect();
        findings.push(Finding {
            kind: "rejected_exports",
            tenant_id: tenant.clone(),
            subject: format!("tenant:{tenant}"),
            severity: "high",
            evidence: json!({"streak": streak.len(), "threshold": c.rejected_exports_streak,
                             "export_ids": ids}),
            threshold: 1,
            events,
        });
    }

    // Jobs failing with a withheld error (the error may depend on data values).
    let mut errors: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for r in tx.query(
        "SELECT tenant_id, finished_at_ms, error_id FROM jobs
         WHERE status = 'failed' AND error_id != '' AND finished_at_ms >= ?1
         ORDER BY finished_at_ms",
        params![since],
    )? {
        errors
            .entry(r.get("tenant_id")?)
            .or_default()
            .push((r.get("finished_at_ms")?, r.get("error_id")?));
    }
    for (tenant, list) in errors {
        if (list.len() as u64) < c.job_errors_threshold {
            continue;
        }
        let ids: Vec<&str> = list.iter().rev().take(10).map(|e| e.1.as_str()).collect();
        findings.push(Finding {
            kind: "job_errors",
            tenant_id: tenant.clone(),
            subject: format!("tenant:{tenant}"),
            severity: "medium",
            evidence: json!({"failed_with_error_id": list.len(), "window_minutes": c.window_minutes,
                             "threshold": c.job_errors_threshold, "error_ids": ids}),
            threshold: usize::try_from(c.job_errors_threshold).unwrap_or(usize::MAX),
            events: list.iter().map(|e| e.0).collect(),
        });
    }

    findings.extend(volume(tx, c, now_ms)?);

    // Calls at odd local hours, per principal (the server's own tasks excluded).
    let offset = c.utc_offset_secs()?;
    let mut odd: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for r in tx.query(
        "SELECT at_ms, principal_id, tenant_id FROM audit
         WHERE at_ms >= ?1 AND principal_id NOT IN ('-', 'system') ORDER BY seq",
        params![since],
    )? {
        let at: i64 = r.get("at_ms")?;
        if c.is_odd_hour(at, offset) {
            odd.entry((r.get("principal_id")?, r.get("tenant_id")?))
                .or_default()
                .push(at);
        }
    }
    for ((principal, tenant), events) in odd {
        findings.push(Finding {
            kind: "odd_hours",
            tenant_id: tenant,
            subject: format!("principal:{principal}"),
            severity: "low",
            evidence: json!({"calls": events.len(), "timezone": c.timezone,
                             "odd_hours": format!("{:02}:00-{:02}:00", c.odd_hours_start, c.odd_hours_end)}),
            threshold: 1,
            events,
        });
    }
    Ok(findings)
}

/// Per tenant (jobs) and per recipient (downloads): the last day against the daily average
/// of the preceding baseline days.
fn volume(tx: &Tx<'_>, c: &OversightConfig, now_ms: i64) -> Result<Vec<Finding>> {
    let day_start = now_ms - DAY_MS;
    let base_start = day_start - i64::from(c.volume_baseline_days) * DAY_MS;
    // (jobs, bytes, rows, latest) per tenant: today and baseline.
    type Totals = [u64; 3];
    let mut today: BTreeMap<String, (Totals, i64)> = BTreeMap::new();
    let mut base: BTreeMap<String, Totals> = BTreeMap::new();
    for job in crate::jobs::records::finished_jobs_between(tx, None, base_start, now_ms)? {
        let add = [1, job.usage.bytes_scanned, job.n_rows];
        if job.finished_at_ms >= day_start {
            let e = today.entry(job.tenant_id.clone()).or_default();
            for (t, a) in e.0.iter_mut().zip(add) {
                *t += a;
            }
            e.1 = e.1.max(job.finished_at_ms);
        } else {
            let e = base.entry(job.tenant_id.clone()).or_default();
            for (t, a) in e.iter_mut().zip(add) {
                *t += a;
            }
        }
    }
    let days = f64::from(c.volume_baseline_days);
    let mut findings = Vec::new();
    let unusual = |now: u64, total_base: u64, floor: u64| {
        now >= floor && (now as f64) > c.volume_factor * (total_base as f64 / days)
    };
    for (tenant, (now, latest)) in today {
        let b = base.get(&tenant).copied().unwrap_or_default();
        let names = ["jobs", "bytes_scanned", "rows"];
        let floors = [c.volume_min_jobs, c.volume_min_bytes, c.volume_min_rows];
        let over: Vec<&str> = (0..3)
            .filter(|&i| unusual(now[i], b[i], floors[i]))
            .map(|i| names[i])
            .collect();
        if over.is_empty() {
            continue;
        }
        findings.push(Finding {
            kind: "volume",
            tenant_id: tenant.clone(),
            subject: format!("tenant:{tenant}"),
            severity: "medium",
            evidence: json!({"unusual": over, "last_day": {"jobs": now[0], "bytes_scanned": now[1], "rows": now[2]},
                             "baseline_daily_avg": {"jobs": b[0] as f64 / days, "bytes_scanned": b[1] as f64 / days, "rows": b[2] as f64 / days},
                             "factor": c.volume_factor}),
            threshold: 1,
            events: vec![latest],
        });
    }
    // Downloads and fetches of products per recipient.
    let mut downloads: BTreeMap<String, (u64, u64, i64)> = BTreeMap::new();
    for r in tx.query(
        "SELECT at_ms, principal_id FROM audit WHERE at_ms >= ?1 AND outcome = 'ok'
         AND action IN ('download_export', 'fetch_product')",
        params![base_start],
    )? {
        let at: i64 = r.get("at_ms")?;
        let e = downloads.entry(r.get("principal_id")?).or_default();
        if at >= day_start {
            e.0 += 1;
            e.2 = e.2.max(at);
        } else {
            e.1 += 1;
        }
    }
    for (principal, (now, b, latest)) in downloads {
        if now == 0 || !unusual(now, b, c.volume_min_downloads) {
            continue;
        }
        findings.push(Finding {
            kind: "volume",
            tenant_id: String::new(),
            subject: format!("principal:{principal}"),
            severity: "medium",
            evidence: json!({"unusual": ["downloads"], "last_day": {"downloads": now},
                             "baseline_daily_avg": {"downloads": b as f64 / days},
                             "factor": c.volume_factor}),
            threshold: 1,
            events: vec![latest],
        });
    }
    Ok(findings)
}

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanOutcome {
    pub raised: Vec<Alert>,
    pub n_updated: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::testing::{self, each_backend};

    fn finding(events: Vec<i64>, threshold: usize) -> Finding {
        Finding {
            kind: "denied_calls",
            tenant_id: "t1".into(),
            subject: "principal:p1".into(),
            severity: "medium",
            evidence: json!({"n": events.len()}),
            events,
            threshold,
        }
    }

    #[test]
    fn findings_are_deduplicated_counted_and_notified_once() {
        each_backend(deduplicated_counted_and_notified_once);
    }

    fn deduplicated_counted_and_notified_once(store: &Store) {
        let rec = |f: Finding, now: i64| testing::write(store, |tx| record(tx, &f, now));
        let listed = |include_acked: bool| store.read(|tx| list(tx, include_acked)).unwrap();
        let Recorded::Raised(alert) = rec(finding(vec![1, 2, 3, 4, 5], 5), 10) else {
            panic!("expected a new alert")
        };
        assert_eq!(
            (
                alert.id,
                alert.count,
                alert.first_seen_ms,
                alert.last_seen_ms
            ),
            (1, 5, 1, 5)
        );
        // The same events again: nothing changes.
        assert_eq!(
            rec(finding(vec![1, 2, 3, 4, 5], 5), 11),
            Recorded::Unchanged
        );
        // Two more events: the open alert counts them.
        assert_eq!(rec(finding(vec![3, 4, 5, 6, 7], 5), 12), Recorded::Updated);
        let alerts = listed(false);
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].count, alerts[0].last_seen_ms), (7, 7));
        let admin = crate::admin::records::Principal {
            id: "a".into(),
            real_name: "a".into(),
            organisation: "a".into(),
            role: shuyu_policy::Role::PlatformAdmin,
            tenant_id: None,
            created_at_ms: 0,
        };
        let notes = store
            .read(|tx| notify::list_for(tx, &admin, 0, 10))
            .unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].kind, "alert");
        // Acknowledged: a fresh alert needs the threshold again among newer events.
        let acked = testing::write(store, |tx| ack(tx, alerts[0].id, "a", 13)).unwrap();
        assert_eq!((acked.acked_by.as_str(), acked.acked_at_ms), ("a", 13));
        assert!(listed(false).is_empty());
        assert_eq!(rec(finding(vec![5, 6, 7, 8], 5), 14), Recorded::Unchanged);
        let Recorded::Raised(fresh) = rec(finding(vec![8, 9, 10, 11, 12], 5), 15) else {
            panic!("expected a fresh alert")
        };
        assert_eq!(fresh.id, 2);
        let all = listed(true);
        assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(store.read(|tx| get(tx, 1)).unwrap(), Some(acked));
        assert_eq!(store.read(|tx| get(tx, 3)).unwrap(), None);
        assert_eq!(store.read(|tx| of_tenant(tx, "t1", 8, 9)).unwrap(), [fresh]);
    }

    /// Adds `jobs` rows to `store`: (tenant, finished_at_ms, status, error_id).
    fn add_jobs(store: &Store, jobs: &[(&str, i64, &str, &str)]) {
        testing::write(store, |tx| {
            for (i, (tenant, at, status, error_id)) in jobs.iter().enumerate() {
                tx.execute(
                    "INSERT INTO jobs (id, tenant_id, author_id, sql, sql_sha256, status, error,
                         error_id, n_rows, columns_json, aggregate, preview_json, inputs_json,
                         result_file, result_kek, result_sha256, created_at_ms, finished_at_ms,
                         usage_json, substrait_plan)
                     VALUES (?1, ?2, 'p', '', '', ?3, '', ?4, 10, '[]', FALSE, '{}', '[]', '', '',
                             '', ?5, ?5, '{\"bytes_scanned\": 100}', ?6)",
                    params![
                        format!("j{i}"),
                        *tenant,
                        *status,
                        *error_id,
                        *at,
                        Vec::<u8>::new()
                    ],
                )?;
            }
            Ok(())
        });
    }

    #[test]
    fn withheld_job_errors_and_unusual_volumes_are_detected_per_tenant() {
        let now = 1_000 * DAY_MS;
        let mut jobs = Vec::new();
        // t1: three withheld errors within the hour; t2: two, and a third long ago.
        for m in [5, 10, 20] {
            jobs.push(("t1", now - m * 60_000, "failed", "e1d"));
        }
        for m in [5, 10] {
            jobs.push(("t2", now - m * 60_000, "failed", "e2d"));
        }
        jobs.push(("t2", now - 300 * 60_000, "failed", "e2old"));
        // A failure without an error id is an ordinary refusal, not a value-dependent error.
        jobs.push(("t2", now - 60_000, "failed", ""));
        // t3: one job a day for 30 days, then 20 today; t4: three a day, then 20 today.
        for d in 2..32 {
            jobs.push(("t3", now - d * DAY_MS, "succeeded", ""));
            for _ in 0..3 {
                jobs.push(("t4", now - d * DAY_MS, "succeeded", ""));
            }
        }
        for _ in 0..20 {
            jobs.push(("t3", now - 3_600_000, "succeeded", ""));
            jobs.push(("t4", now - 3_600_000, "succeeded", ""));
        }
        let c = OversightConfig {
            volume_min_jobs: 5,
            // Odd hours never: only the rules under test speak.
            odd_hours_start: 0,
            odd_hours_end: 0,
            ..OversightConfig::default()
        };
        each_backend(|store| {
            add_jobs(store, &jobs);
            let findings = store.read(|tx| detect(tx, &c, now)).unwrap();
            let kinds: Vec<(&str, &str)> = findings
                .iter()
                .map(|f| (f.kind, f.subject.as_str()))
                .collect();
            assert_eq!(
                kinds,
                [("job_errors", "tenant:t1"), ("volume", "tenant:t3")],
                "{findings:#?}"
            );
            assert_eq!(findings[0].events.len(), 3);
            assert_eq!(findings[0].evidence["error_ids"][0], "e1d");
            assert_eq!(findings[1].evidence["unusual"], json!(["jobs"]));
            assert_eq!(findings[1].evidence["last_day"]["jobs"], 20);
        });
    }

    #[test]
    fn calls_at_odd_local_hours_are_flagged_and_others_not() {
        let now = crate::now_ms();
        let c0 = OversightConfig::default();
        let offset = c0.utc_offset_secs().unwrap();
        let recent = now - 10 * 60_000;
        let hour =
            u32::try_from(((recent / 1000 + i64::from(offset)).rem_euclid(86_400)) / 3600).unwrap();
        let c = OversightConfig {
            odd_hours_start: hour,
            odd_hours_end: hour + 1,
            window_minutes: 180,
            ..c0
        };
        each_backend(|store| {
            testing::write(store, |tx| {
                for (principal, at) in [
                    ("p_night", recent),
                    ("p_day", now - 150 * 60_000),
                    ("system", recent),
                ] {
                    tx.execute(
                        "INSERT INTO audit (seq, at_ms, principal_id, role, tenant_id, action,
                             target, outcome, detail, sealed_detail, prev_hash, hash, mac)
                         VALUES ((SELECT COALESCE(MAX(seq), 0) + 100 FROM audit), ?1, ?2,
                                 'engineer', 't1', 'who_am_i', '', 'ok', '{}', '', '', '', '')",
                        params![at, principal],
                    )?;
                }
                Ok(())
            });
            let findings = store.read(|tx| detect(tx, &c, now)).unwrap();
            let odd: Vec<&str> = findings
                .iter()
                .filter(|f| f.kind == "odd_hours")
                .map(|f| f.subject.as_str())
                .collect();
            assert_eq!(odd, ["principal:p_night"], "{findings:#?}");
        });
    }
}
