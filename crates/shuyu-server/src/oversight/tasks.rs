//! Oversight's periodic tasks: the monitor that raises alerts (R30), signed
//! checkpoints of the audit trail (R27) and the audit retention purge (R33), each also
//! callable on demand by an admin RPC.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::Context;
use crate::audit::trail::AuditEntry;
use crate::audit::trail::system_entry;
use crate::error::{Refusal, Result};
use crate::oversight::alerts;
use crate::store::Audited;

#[cfg(test)]
use crate::oversight::config::OversightConfig;

fn spawn_every(
    state: &Arc<Context>,
    secs: u64,
    what: &'static str,
    task: fn(&Context) -> Result<()>,
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
            // Off the async threads: a task may hash the whole trail. One server at a time
            // runs it.
            let state = Arc::clone(&state);
            let period = Duration::from_secs(secs);
            let run = move || match state.presence.on_duty(what, period) {
                Ok(true) => task(&state),
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            };
            match tokio::task::spawn_blocking(run).await {
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
pub fn purge(state: &Context, entry: Option<AuditEntry>) -> Result<Audited<u64>> {
    let log = state.store.audit_log();
    let config = state.oversight.retention();
    state.store.commit_with(|tx| {
        let n = crate::audit::retention::redact_expired(log, tx, &config, crate::now_ms())?;
        let mut entry = entry
            .clone()
            .unwrap_or_else(|| system_entry("purge_audit", "audit", serde_json::Value::Null));
        entry.detail = json!({"redacted": n, "network_log_days": config.network_log_days,
                              "operating_record_days": config.operating_record_days});
        Ok((n, entry))
    })
}

/// Runs the monitor ([`alerts`]) once: detects, records and notifies in one transaction with its audit
/// record (the caller's entry, or the server's own when `entry` is `None`).
///
/// # Errors
/// On store failure.
pub fn scan(state: &Context, entry: Option<AuditEntry>) -> Result<Audited<alerts::ScanOutcome>> {
    let config = &state.oversight;
    state.store.commit_with(|tx| {
        let now = crate::now_ms();
        let mut outcome = alerts::ScanOutcome::default();
        for finding in alerts::detect(tx, config, now)? {
            match alerts::record(tx, &finding, now)? {
                alerts::Recorded::Raised(alert) => outcome.raised.push(alert),
                alerts::Recorded::Updated => outcome.n_updated += 1,
                alerts::Recorded::Unchanged => {}
            }
        }
        let detail = json!({
            "raised": outcome.raised.iter().map(|a| a.id).collect::<Vec<_>>(),
            "updated": outcome.n_updated,
        });
        let mut entry = entry
            .clone()
            .unwrap_or_else(|| system_entry("scan_alerts", "alerts", serde_json::Value::Null));
        entry.detail = detail;
        Ok((outcome, entry))
    })
}

/// Starts the periodic monitor, checkpoint and purge tasks (each off when its interval is 0).
pub fn start(state: &Arc<Context>) -> Vec<tokio::task::JoinHandle<()>> {
    let c = &state.oversight;
    [
        spawn_every(state, c.monitor_interval_secs, "monitor", |s| {
            scan(s, None).map(|_| ())
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

/// Takes, stores and audits a signed checkpoint of the trail (the periodic task). The root
/// is read from the stored Merkle tree (`audit::tree`: O(log n) reads, outside the store's
/// lock); a checkpoint of the first N records stays true. Signing still waits for
/// [`check_before_signing`], which verifies the whole trail.
///
/// # Errors
/// On store failure, or [`Refusal::TrailBroken`] when the trail does not verify
/// (nothing is signed; an alert is raised).
pub fn take_checkpoint(state: &Context) -> Result<crate::audit::checkpoint::Checkpoint> {
    use crate::audit::{checkpoint, tree};
    let (tree_size, root_hash) = state.store.read(|c| {
        let n = tree::size(c)?;
        Ok((n, tree::root(c, n)?))
    })?;
    check_before_signing(state, tree_size)?;
    let (cp, note) = checkpoint::signed(tree_size, root_hash, &state.signing);
    let entry = system_entry(
        "take_checkpoint",
        "audit",
        json!({"tree_size": cp.tree_size, "root_hash": hex::encode(cp.root_hash)}),
    );
    state
        .store
        .commit(&entry, |tx| {
            checkpoint::store(tx, &cp, &note, crate::now_ms())
        })?
        .into_inner();
    Ok(cp)
}

/// What a checkpoint of the first `tree_size` records must not be signed over: a trail
/// whose chain (the whole trail: a record rewritten before the last checkpoint must stop
/// the next one, so this part stays O(n)), head or bound rows do not verify, a stored Merkle tree whose leaf of the
/// last record is not that record's hash (records rewritten behind the tree), or a trail
/// whose first records are no longer those of the last stored checkpoint (its root read
/// from the stored tree).
///
/// # Errors
/// On store failure.
pub fn trail_problem(state: &Context, tree_size: u64) -> Result<Option<String>> {
    use crate::audit::{checkpoint, tree};
    let log = state.store.audit_log();
    let (report, rows, last, head_leaf) = state.store.read(|c| {
        let last = match checkpoint::last_stored(c)? {
            Some((size, root_hex)) if size <= tree_size => {
                Some((size, root_hex, Some(tree::root(c, size)?)))
            }
            Some((size, root_hex)) => Some((size, root_hex, None)),
            None => None,
        };
        let report = log.verify(c)?;
        if !report.ok {
            return Ok((report, None, None, None));
        }
        let rows = crate::audit::bindings::verify(c)?;
        let head_leaf = tree::stored_leaf(c, report.n_records)?;
        Ok((report, rows, last, head_leaf))
    })?;
    if !report.ok {
        return Ok(Some(report.problem.unwrap_or_default()));
    }
    if rows.is_some() {
        return Ok(rows);
    }
    let n = report.n_records;
    if head_leaf != Some(checkpoint::leaf_of(n, &report.head_hash)?) {
        return Ok(Some(format!(
            "the stored Merkle tree's leaf of record {n} is not that record's hash: the trail \
             or its tree was rewritten"
        )));
    }
    if let Some((size, root_hex, root)) = last {
        let Some(root) = root else {
            return Ok(Some(format!(
                "the trail holds {tree_size} records, fewer than the {size} of the last \
                 checkpoint signed: it was cut down"
            )));
        };
        if hex::encode(root) != root_hex {
            return Ok(Some(format!(
                "the first {size} records are not those of the last checkpoint signed: the \
                 trail was rewritten"
            )));
        }
    }
    Ok(None)
}

/// Refuses to sign a checkpoint of the first `tree_size` records over a trail with a
/// [`trail_problem`]: raises (or counts again) the `audit_trail_broken` alert, audited, and
/// answers FAILED_PRECONDITION.
///
/// # Errors
/// As said, or on store failure.
pub fn check_before_signing(state: &Context, tree_size: u64) -> Result<()> {
    let Some(problem) = trail_problem(state, tree_size)? else {
        return Ok(());
    };
    tracing::error!(%problem, "the audit trail does not verify: no checkpoint signed");
    let now = crate::now_ms();
    let finding = crate::oversight::alerts::Finding {
        kind: "audit_trail_broken",
        tenant_id: String::new(),
        subject: "audit".into(),
        severity: "critical",
        evidence: json!({"problem": problem, "tree_size": tree_size}),
        events: vec![now],
        threshold: 1,
    };
    let entry = AuditEntry {
        outcome: "error".into(),
        ..system_entry(
            "checkpoint_refused",
            "audit",
            json!({"problem": problem, "tree_size": tree_size}),
        )
    };
    state
        .store
        .commit(&entry, |tx| {
            crate::oversight::alerts::record(tx, &finding, now).map(|_| ())
        })?
        .into_inner();
    Err(Refusal::TrailBroken(format!(
        "the audit trail does not verify ({problem}): no checkpoint was signed and an alert \
         was raised"
    ))
    .into())
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
