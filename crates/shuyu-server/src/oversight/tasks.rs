//! Oversight's configuration and periodic task: the monitor that raises alerts (R30), signed
//! checkpoints of the audit trail (R27) and the audit retention purge (R33), each also
//! callable on demand by an admin RPC.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::audit::trail::AuditEntry;
use crate::audit::trail::system_entry;
use crate::error::{Result, ServerError};
use crate::state::AppState;

use crate::audit::retention::RetentionDays;
pub use crate::audit::retention::{MIN_NETWORK_LOG_DAYS, MIN_OPERATING_RECORD_DAYS};

/// `[oversight]` of the server configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OversightConfig {
    /// Seconds between monitor runs (0: only on demand, `shuyu alerts scan`).
    pub monitor_interval_secs: u64,
    /// The domain's time zone for odd hours: an IANA name of a zone without daylight saving
    /// (`Asia/Shanghai`, `Asia/Urumqi`, `UTC`…) or a fixed offset such as `+08:00`.
    pub timezone: String,
    /// Odd hours, local: from this hour (inclusive)…
    pub odd_hours_start: u32,
    /// …to this hour (exclusive); start > end wraps past midnight; start = end: none.
    pub odd_hours_end: u32,
    /// Window of the streak rules, minutes.
    pub window_minutes: u64,
    /// Denied calls by one principal within the window that raise an alert.
    pub denied_calls_threshold: u64,
    /// Consecutive refused (failed checks) or rejected exports of one tenant.
    pub rejected_exports_streak: u64,
    /// Jobs of one tenant failing with a withheld (value-dependent) error within the window.
    pub job_errors_threshold: u64,
    /// A day's volume above this many times the tenant's own daily average is unusual…
    pub volume_factor: f64,
    /// …over this many preceding days…
    pub volume_baseline_days: u32,
    /// …and only above these floors (a quiet tenant's first busy day is not an anomaly).
    pub volume_min_jobs: u64,
    pub volume_min_bytes: u64,
    pub volume_min_rows: u64,
    pub volume_min_downloads: u64,
    /// Seconds between stored checkpoints (0: only on demand).
    pub checkpoint_interval_secs: u64,
    /// Seconds between retention purges (0: only on demand, `shuyu audit purge`).
    pub purge_interval_secs: u64,
    /// Retention of network and access logs (reads, denials), days; at least 183.
    pub network_log_days: u32,
    /// Retention of operating records (changes, approvals, exports), days; at least 7305.
    pub operating_record_days: u32,
}

impl Default for OversightConfig {
    fn default() -> Self {
        OversightConfig {
            monitor_interval_secs: 300,
            timezone: "Asia/Shanghai".into(),
            odd_hours_start: 22,
            odd_hours_end: 6,
            window_minutes: 60,
            denied_calls_threshold: 5,
            rejected_exports_streak: 3,
            job_errors_threshold: 3,
            volume_factor: 10.0,
            volume_baseline_days: 30,
            volume_min_jobs: 50,
            volume_min_bytes: 10 << 30,
            volume_min_rows: 100_000_000,
            volume_min_downloads: 50,
            checkpoint_interval_secs: 3600,
            purge_interval_secs: 86_400,
            network_log_days: MIN_NETWORK_LOG_DAYS,
            operating_record_days: MIN_OPERATING_RECORD_DAYS,
        }
    }
}

impl OversightConfig {
    /// How long each audit record class is kept.
    pub fn retention(&self) -> RetentionDays {
        RetentionDays {
            network_log_days: self.network_log_days,
            operating_record_days: self.operating_record_days,
        }
    }

    /// Checks value ranges; retention below the legal minimums is refused.
    ///
    /// # Errors
    /// Names the offending key.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| {
            Err(ServerError::InvalidArgument(format!(
                "configuration: {msg}"
            )))
        };
        self.utc_offset_secs()?;
        if self.odd_hours_start > 23 || self.odd_hours_end > 24 {
            return bad("oversight.odd_hours_start must be 0–23 and odd_hours_end 0–24".into());
        }
        if self.network_log_days < MIN_NETWORK_LOG_DAYS {
            return bad(format!(
                "oversight.network_log_days must be at least {MIN_NETWORK_LOG_DAYS} (six months)"
            ));
        }
        if self.operating_record_days < MIN_OPERATING_RECORD_DAYS {
            return bad(format!(
                "oversight.operating_record_days must be at least {MIN_OPERATING_RECORD_DAYS} \
                 (twenty years)"
            ));
        }
        if !(self.volume_factor.is_finite() && self.volume_factor >= 1.0) {
            return bad("oversight.volume_factor must be at least 1".into());
        }
        for (key, value) in [
            ("window_minutes", self.window_minutes),
            ("denied_calls_threshold", self.denied_calls_threshold),
            ("rejected_exports_streak", self.rejected_exports_streak),
            ("job_errors_threshold", self.job_errors_threshold),
            ("volume_baseline_days", u64::from(self.volume_baseline_days)),
        ] {
            if value == 0 {
                return bad(format!("oversight.{key} must be at least 1"));
            }
        }
        Ok(())
    }

    /// The time zone's offset from UTC, seconds.
    ///
    /// # Errors
    /// An unknown zone name or malformed offset.
    pub fn utc_offset_secs(&self) -> Result<i32> {
        let tz = self.timezone.trim();
        let fixed = match tz {
            "UTC" | "Etc/UTC" | "GMT" => Some(0),
            "Asia/Shanghai" | "Asia/Chongqing" | "Asia/Harbin" | "Asia/Hong_Kong"
            | "Asia/Macau" | "Asia/Taipei" | "PRC" => Some(8 * 3600),
            "Asia/Urumqi" | "Asia/Kashgar" => Some(6 * 3600),
            _ => None,
        };
        if let Some(offset) = fixed {
            return Ok(offset);
        }
        let parsed = (|| {
            let (sign, rest) = match tz.as_bytes().first()? {
                b'+' => (1, &tz[1..]),
                b'-' => (-1, &tz[1..]),
                _ => return None,
            };
            let (h, m) = rest.split_once(':')?;
            let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
            ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
        })();
        parsed.ok_or_else(|| {
            ServerError::InvalidArgument(format!(
                "configuration: oversight.timezone '{tz}' is not a known zone without daylight \
                 saving nor an offset like +08:00"
            ))
        })
    }

    /// Whether `at_ms` falls in the odd hours, local time.
    pub fn is_odd_hour(&self, at_ms: i64, offset_secs: i32) -> bool {
        let local_secs = at_ms.div_euclid(1000) + i64::from(offset_secs);
        let hour = u32::try_from(local_secs.rem_euclid(86_400) / 3600).unwrap_or(0);
        let (start, end) = (self.odd_hours_start, self.odd_hours_end);
        match start.cmp(&end) {
            std::cmp::Ordering::Less => (start..end).contains(&hour),
            std::cmp::Ordering::Greater => hour >= start || hour < end,
            std::cmp::Ordering::Equal => false,
        }
    }
}

fn spawn_every(
    state: &Arc<AppState>,
    secs: u64,
    what: &'static str,
    task: fn(&AppState) -> Result<()>,
) -> Option<tokio::task::JoinHandle<()>> {
    if secs == 0 {
        return None;
    }
    let state = Arc::clone(state);
    Some(tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(secs));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            // Off the async threads: a task may hash the whole trail.
            let state = Arc::clone(&state);
            match tokio::task::spawn_blocking(move || task(&state)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(task = what, error = %e, "periodic oversight task failed");
                }
                Err(e) => tracing::warn!(task = what, error = %e, "periodic oversight task died"),
            }
        }
    }))
}

/// Runs the retention purge ([`crate::audit::retention`]) in one transaction with its audit record (the caller's entry, or the
/// server's own when `entry` is `None`).
///
/// # Errors
/// On store failure.
pub fn purge(state: &AppState, entry: Option<AuditEntry>) -> Result<u64> {
    let log = state.store.audit_log();
    let config = state.config.oversight.retention();
    state.store.commit_with(|tx| {
        let n = crate::audit::retention::redact_expired(log, tx, &config, crate::now_ms())?;
        let mut entry =
            entry.unwrap_or_else(|| system_entry("purge_audit", "audit", serde_json::Value::Null));
        entry.detail = json!({"redacted": n, "network_log_days": config.network_log_days,
                              "operating_record_days": config.operating_record_days});
        Ok((n, entry))
    })
}

/// Starts the periodic monitor, checkpoint and purge tasks (each off when its interval is 0).
pub fn start(state: &Arc<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    let c = &state.config.oversight;
    [
        spawn_every(state, c.monitor_interval_secs, "monitor", |s| {
            crate::oversight::alerts::scan(s, None).map(|_| ())
        }),
        spawn_every(state, c.checkpoint_interval_secs, "checkpoint", |s| {
            take_checkpoint(s).map(|_| ())
        }),
        spawn_every(state, c.purge_interval_secs, "purge", |s| {
            purge(s, None).map(|_| ())
        }),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Takes, stores and audits a signed checkpoint of the trail (the periodic task). The tree
/// is hashed outside the store's lock; a checkpoint of the first N records stays true.
///
/// # Errors
/// On store failure, or [`ServerError::FailedPrecondition`] when the trail does not verify
/// (nothing is signed; an alert is raised).
pub fn take_checkpoint(state: &AppState) -> Result<crate::audit::checkpoint::Checkpoint> {
    use crate::audit::checkpoint;
    let hashes = state.store.read(|c| checkpoint::audit_hashes(c, None))?;
    let leaves = checkpoint::leaves_of(&hashes)?;
    check_before_signing(state, &leaves)?;
    let (cp, note) = checkpoint::signed(&leaves, &state.signing);
    let entry = system_entry(
        "take_checkpoint",
        "audit",
        json!({"tree_size": cp.tree_size, "root_hash": hex::encode(cp.root_hash)}),
    );
    state.store.commit(&entry, |tx| {
        checkpoint::store(tx, &cp, &note, crate::now_ms())
    })?;
    Ok(cp)
}

/// What a checkpoint must not be signed over: a trail whose chain, head or bound rows do
/// not verify, or whose first records are no longer those of the last stored checkpoint.
///
/// # Errors
/// On store failure.
pub fn trail_problem(
    state: &AppState,
    leaves: &[crate::audit::checkpoint::Hash],
) -> Result<Option<String>> {
    let log = state.store.audit_log();
    let (report, rows, last) = state.store.read(|c| {
        let report = log.verify(c)?;
        let rows = if report.ok {
            crate::audit::bindings::verify(c)?
        } else {
            None
        };
        Ok((report, rows, crate::audit::checkpoint::last_stored(c)?))
    })?;
    if !report.ok {
        return Ok(Some(report.problem.unwrap_or_default()));
    }
    if rows.is_some() {
        return Ok(rows);
    }
    if let Some((size, root_hex)) = last {
        let Some(prefix) = usize::try_from(size).ok().and_then(|n| leaves.get(..n)) else {
            return Ok(Some(format!(
                "the trail holds {} records, fewer than the {size} of the last checkpoint \
                 signed: it was cut down",
                leaves.len()
            )));
        };
        if hex::encode(crate::audit::checkpoint::root(prefix)) != root_hex {
            return Ok(Some(format!(
                "the first {size} records are not those of the last checkpoint signed: the \
                 trail was rewritten"
            )));
        }
    }
    Ok(None)
}

/// Refuses to sign over a trail with a [`trail_problem`]: raises (or counts again) the
/// `audit_trail_broken` alert, audited, and answers FAILED_PRECONDITION.
///
/// # Errors
/// As said, or on store failure.
pub fn check_before_signing(
    state: &AppState,
    leaves: &[crate::audit::checkpoint::Hash],
) -> Result<()> {
    let Some(problem) = trail_problem(state, leaves)? else {
        return Ok(());
    };
    tracing::error!(%problem, "the audit trail does not verify: no checkpoint signed");
    let now = crate::now_ms();
    let finding = crate::oversight::alerts::Finding {
        kind: "audit_trail_broken",
        tenant_id: String::new(),
        subject: "audit".into(),
        severity: "critical",
        evidence: json!({"problem": problem, "tree_size": leaves.len()}),
        events: vec![now],
        threshold: 1,
    };
    let entry = AuditEntry {
        outcome: "error".into(),
        ..system_entry(
            "checkpoint_refused",
            "audit",
            json!({"problem": problem, "tree_size": leaves.len()}),
        )
    };
    state.store.commit(&entry, |tx| {
        crate::oversight::alerts::record(tx, &finding, now).map(|_| ())
    })?;
    Err(ServerError::FailedPrecondition(format!(
        "the audit trail does not verify ({problem}): no checkpoint was signed and an alert \
         was raised"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_below_the_minimums_and_unknown_zones_are_refused() {
        assert!(OversightConfig::default().validate().is_ok());
        let low = OversightConfig {
            network_log_days: 182,
            ..OversightConfig::default()
        };
        assert!(
            low.validate()
                .unwrap_err()
                .to_string()
                .contains("network_log_days")
        );
        let low = OversightConfig {
            operating_record_days: 7000,
            ..OversightConfig::default()
        };
        assert!(
            low.validate()
                .unwrap_err()
                .to_string()
                .contains("operating_record_days")
        );
        let zone = OversightConfig {
            timezone: "Europe/Paris".into(),
            ..OversightConfig::default()
        };
        assert!(zone.validate().is_err());
        let zone = OversightConfig {
            timezone: "+05:30".into(),
            ..OversightConfig::default()
        };
        assert_eq!(zone.utc_offset_secs().unwrap(), 5 * 3600 + 1800);
    }

    #[test]
    fn odd_hours_are_local_and_wrap_past_midnight() {
        let c = OversightConfig::default();
        let offset = c.utc_offset_secs().unwrap();
        let at = |utc_hour: i64| utc_hour * 3_600_000;
        // 14:00 UTC is 22:00 in Shanghai (odd); 22:00 UTC is 06:00 (not); 01:00 UTC is 09:00.
        assert!(c.is_odd_hour(at(14), offset));
        assert!(c.is_odd_hour(at(21), offset));
        assert!(!c.is_odd_hour(at(22), offset));
        assert!(!c.is_odd_hour(at(1), offset));
        assert!(!c.is_odd_hour(at(13), offset));
        let none = OversightConfig {
            odd_hours_start: 5,
            odd_hours_end: 5,
            ..OversightConfig::default()
        };
        assert!(!none.is_odd_hour(at(14), offset));
    }
}
