//! Audit retention per record class (R33): network and access logs (reads of metadata,
//! denials, failed calls) are kept at least six months, operating records (changes,
//! approvals, exports, deliveries, and every read of data: samples, full results reviewed,
//! traces, job views) at least twenty years; the configuration may lengthen, never shorten
//! them.
//!
//! A purge redacts a record past its class's retention: its payload (who, which tenant,
//! which object, detail) is blanked while its sequence number, time, action, outcome and
//! hashes stay, so the chain and the Merkle tree over the record hashes still verify. Each
//! redaction carries an HMAC under the audit key over what remains, so a record blanked by
//! anyone else, or a redacted record changed afterwards, fails verification.

use shuyu_meta::{Backend, params};

use crate::audit::trail::AuditLog;
use crate::error::{Result, ServerError};
use shuyu_meta::Tx;

/// The redactions of purged records.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_redactions (
    seq BIGINT PRIMARY KEY, class TEXT NOT NULL, redacted_at_ms BIGINT NOT NULL,
    mac TEXT NOT NULL);
";

const DAY_MS: i64 = 86_400_000;

/// Least retention of network and access logs: six months (R33).
pub const MIN_NETWORK_LOG_DAYS: u32 = 183;
/// Least retention of operating records: twenty years (R33).
pub const MIN_OPERATING_RECORD_DAYS: u32 = 7305;

/// How long each record class is kept, days (from `[oversight]`, validated there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionDays {
    /// Network and access logs (reads, denials).
    pub network_log_days: u32,
    /// Operating records (changes, approvals, exports).
    pub operating_record_days: u32,
}

impl Default for RetentionDays {
    /// The legal minimums.
    fn default() -> RetentionDays {
        RetentionDays {
            network_log_days: MIN_NETWORK_LOG_DAYS,
            operating_record_days: MIN_OPERATING_RECORD_DAYS,
        }
    }
}

/// A record's retention class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordClass {
    /// Reads of metadata, calls that changed nothing, denials: at least 183 days.
    NetworkLog,
    /// Changes, approvals, exports, deliveries, agreements, reads of data: at least 20 years.
    OperatingRecord,
}

impl RecordClass {
    pub fn as_str(&self) -> &'static str {
        match self {
            RecordClass::NetworkLog => "network_log",
            RecordClass::OperatingRecord => "operating_record",
        }
    }

    fn parse(text: &str) -> Option<RecordClass> {
        match text {
            "network_log" => Some(RecordClass::NetworkLog),
            "operating_record" => Some(RecordClass::OperatingRecord),
            _ => None,
        }
    }

    /// The legal minimum, days.
    pub fn min_days(&self) -> u32 {
        match self {
            RecordClass::NetworkLog => MIN_NETWORK_LOG_DAYS,
            RecordClass::OperatingRecord => MIN_OPERATING_RECORD_DAYS,
        }
    }

    /// The configured retention, days (never below the minimum: the config is validated).
    pub fn days(&self, c: &RetentionDays) -> u32 {
        match self {
            RecordClass::NetworkLog => c.network_log_days,
            RecordClass::OperatingRecord => c.operating_record_days,
        }
        .max(self.min_days())
    }
}

/// Actions that only read metadata or compute and change nothing.
const READS: &[&str] = &[
    "who_am_i",
    "list_tenants",
    "list_principals",
    "list_datasets",
    "describe_dataset",
    "view_usage",
    "view_export",
    "list_review_queue",
    "list_products",
    "read_audit",
    "view_scenario",
    "view_notifications",
    "view_alerts",
    "view_reports",
    "read_checkpoint",
];

/// Reads of data: masked samples, jobs with their previews, full results shown to reviewers,
/// leaked files traced to their products. Who saw what of the data is an operating record
/// (R33), kept twenty years, not a six-month access log.
const DATA_ACCESS: &[&str] = &[
    "sample_dataset",
    "view_job",
    "review_export",
    "trace_export",
];

/// When data-access reads became operating records (2026-12-07T00:00:00Z). A redaction of one
/// as a network log, past its 183 days and before then, followed the rule of its time and
/// still verifies.
const DATA_ACCESS_RECLASSIFIED_MS: i64 = 1_796_601_600_000;

/// The class of a record: failed or denied calls and reads of metadata are network/access
/// logs; successful changes, deliveries of products and reads of data are operating records.
pub fn classify(action: &str, outcome: &str) -> RecordClass {
    if outcome != "ok" || READS.contains(&action) {
        RecordClass::NetworkLog
    } else {
        RecordClass::OperatingRecord
    }
}

/// A sequence number as a statement parameter.
fn seq_param(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| ServerError::internal("an audit sequence number beyond i64"))
}

/// What a redaction's MAC covers.
fn mac_input(
    seq: u64,
    at_ms: i64,
    action: &str,
    outcome: &str,
    hash: &str,
    class: &str,
    redacted_at_ms: i64,
) -> String {
    format!("{seq}:{at_ms}:{action}:{outcome}:{hash}:{class}:{redacted_at_ms}")
}

/// Checks the redaction of record `seq` (called by the audit verification when a record's
/// hash no longer matches its fields): it must be MAC'd, its payload blank and its class's
/// legal minimum must have passed when it was redacted. `None` when it is not redacted.
///
/// # Errors
/// On store failure.
pub fn check_redaction(
    log: &AuditLog,
    tx: &Tx<'_>,
    r: &crate::audit::trail::AuditRecord,
) -> Result<Option<std::result::Result<(), String>>> {
    // A read-only check of a data dir from before redactions has no such table.
    let exists_sql = match tx.backend() {
        Backend::Sqlite => {
            "SELECT count(*) > 0 AS present FROM sqlite_master
             WHERE type = 'table' AND name = 'audit_redactions'"
        }
        Backend::Postgres => "SELECT to_regclass('audit_redactions') IS NOT NULL AS present",
    };
    let exists: bool = tx.query_one(exists_sql, &[])?.get("present")?;
    if !exists {
        return Ok(None);
    }
    let redaction = tx.query_opt(
        "SELECT class, redacted_at_ms, mac FROM audit_redactions WHERE seq = ?1",
        params![seq_param(r.seq)?],
    )?;
    let Some(redaction) = redaction else {
        return Ok(None);
    };
    let (class, redacted_at_ms, mac): (String, i64, String) = (
        redaction.get("class")?,
        redaction.get("redacted_at_ms")?,
        redaction.get("mac")?,
    );
    let input = mac_input(
        r.seq,
        r.at_ms,
        &r.action,
        &r.outcome,
        &r.hash,
        &class,
        redacted_at_ms,
    );
    if log.redaction_mac(&input) != mac {
        return Ok(Some(Err(format!(
            "record {} is redacted without a valid redaction MAC",
            r.seq
        ))));
    }
    let Some(class) = RecordClass::parse(&class) else {
        return Ok(Some(Err(format!(
            "record {} names an unknown class",
            r.seq
        ))));
    };
    let expected = classify(&r.action, &r.outcome);
    let earlier_rule = class == RecordClass::NetworkLog
        && DATA_ACCESS.contains(&r.action.as_str())
        && redacted_at_ms < DATA_ACCESS_RECLASSIFIED_MS;
    if class != expected && !earlier_rule {
        return Ok(Some(Err(format!(
            "record {} was redacted under the wrong class",
            r.seq
        ))));
    }
    if r.at_ms + i64::from(class.min_days()) * DAY_MS > redacted_at_ms {
        return Ok(Some(Err(format!(
            "record {} was redacted before its retention ended",
            r.seq
        ))));
    }
    let blank = r.principal_id.is_empty()
        && r.role.is_empty()
        && r.tenant_id.is_empty()
        && r.target.is_empty()
        && r.detail.is_empty()
        && r.sealed_detail.is_empty();
    if !blank {
        return Ok(Some(Err(format!(
            "record {} was changed after its redaction",
            r.seq
        ))));
    }
    Ok(Some(Ok(())))
}

/// Redacts every record past its class's retention at `now_ms`; returns how many.
///
/// # Errors
/// On store failure.
pub fn redact_expired(log: &AuditLog, tx: &Tx<'_>, c: &RetentionDays, now_ms: i64) -> Result<u64> {
    let candidates: Vec<(u64, i64, String, String, String)> = {
        let oldest_cut =
            now_ms - i64::from(c.network_log_days.min(c.operating_record_days)) * DAY_MS;
        tx.query(
            "SELECT seq, at_ms, action, outcome, hash FROM audit
             WHERE at_ms < ?1 AND seq NOT IN (SELECT seq FROM audit_redactions) ORDER BY seq",
            params![oldest_cut],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.get("seq")?,
                r.get("at_ms")?,
                r.get("action")?,
                r.get("outcome")?,
                r.get("hash")?,
            ))
        })
        .collect::<Result<_>>()?
    };
    let mut n = 0;
    for (seq, at_ms, action, outcome, hash) in candidates {
        let class = classify(&action, &outcome);
        if at_ms + i64::from(class.days(c)) * DAY_MS > now_ms {
            continue;
        }
        let mac = log.redaction_mac(&mac_input(
            seq,
            at_ms,
            &action,
            &outcome,
            &hash,
            class.as_str(),
            now_ms,
        ));
        let seq = seq_param(seq)?;
        tx.execute(
            "UPDATE audit SET principal_id = '', role = '', tenant_id = '', target = '',
                 detail = '', sealed_detail = '' WHERE seq = ?1",
            params![seq],
        )?;
        tx.execute(
            "INSERT INTO audit_redactions (seq, class, redacted_at_ms, mac) VALUES (?1, ?2, ?3, ?4)",
            params![seq, class.as_str(), now_ms, mac],
        )?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::trail::AuditEntry;
    use crate::store::Store;
    use crate::store::testing::{self, each_backend};

    /// Appends to `store`'s empty trail the domain's genesis record (an operating record),
    /// then one record per (action, outcome): sequence numbers 1, 2, …
    fn trail(store: &Store, actions: &[(&str, &str)]) {
        let genesis = [(crate::audit::trail::GENESIS_ACTION, "ok")];
        for (action, outcome) in genesis.iter().chain(actions) {
            store
                .record(&AuditEntry {
                    principal_id: "p_canary".into(),
                    role: "engineer".into(),
                    tenant_id: "t1".into(),
                    action: (*action).into(),
                    target: "job:j1".into(),
                    outcome: (*outcome).into(),
                    detail: serde_json::json!({"x": 1}),
                    secret_detail: None,
                })
                .unwrap();
        }
    }

    /// Redacts what expired at `now_ms`. Each such write (like every test write) appends
    /// one more record, an operating record of the time it ran.
    fn purge(store: &Store, c: &RetentionDays, now_ms: i64) -> u64 {
        testing::write(store, |tx| redact_expired(store.audit_log(), tx, c, now_ms))
    }

    fn verify(store: &Store) -> crate::audit::trail::VerifyReport {
        store.read(|tx| store.audit_log().verify(tx)).unwrap()
    }

    #[test]
    fn classes_follow_action_and_outcome() {
        assert_eq!(classify("list_datasets", "ok"), RecordClass::NetworkLog);
        // Reads of data are operating records (R33); a refused one is an access log.
        for read in DATA_ACCESS {
            assert_eq!(classify(read, "ok"), RecordClass::OperatingRecord, "{read}");
            assert_eq!(classify(read, "denied"), RecordClass::NetworkLog, "{read}");
        }
        assert_eq!(classify("submit_job", "denied"), RecordClass::NetworkLog);
        assert_eq!(classify("vote_export", "ok"), RecordClass::OperatingRecord);
        assert_eq!(
            classify("download_export", "ok"),
            RecordClass::OperatingRecord
        );
        let c = RetentionDays {
            network_log_days: 10,
            ..RetentionDays::default()
        };
        // A configuration below the minimum never shortens retention.
        assert_eq!(RecordClass::NetworkLog.days(&c), 183);
    }

    #[test]
    fn only_records_past_retention_are_redacted_and_the_trail_still_verifies() {
        each_backend(|store| {
            trail(
                store,
                &[
                    ("list_datasets", "ok"),
                    ("submit_job", "ok"),
                    ("read_audit", "denied"),
                    ("vote_export", "ok"),
                    ("sample_dataset", "ok"),
                    ("review_export", "ok"),
                ],
            );
            let c = RetentionDays::default();
            let now = crate::now_ms();
            // Nothing is old enough yet (record 8 is this purge's own).
            assert_eq!(purge(store, &c, now), 0);
            // 200 days later: the two network-log records go, the operating records stay
            // (record 9 is this purge's own).
            let later = now + 200 * DAY_MS;
            assert_eq!(purge(store, &c, later), 2);
            let records = store.read(|tx| AuditLog::list(tx, 1, 10)).unwrap();
            assert_eq!(records[0].principal_id, "");
            assert_eq!(records[1].principal_id, "p_canary");
            assert_eq!(records[2].detail, "");
            assert_eq!(records[3].target, "job:j1");
            // Who read a sample or a full result is kept like an operating record.
            assert_eq!(records[4].principal_id, "p_canary");
            assert_eq!(records[5].principal_id, "p_canary");
            let report = verify(store);
            assert!(report.ok, "{report:?}");
            assert_eq!(report.n_records, 9);
            // Twenty years on, the rest goes too (the genesis record and the two earlier
            // purges' records included: their actions stay), and it still verifies.
            assert_eq!(purge(store, &c, now + 7400 * DAY_MS), 7);
            let report = verify(store);
            assert!(report.ok, "{report:?}");
        });
    }

    /// Blanks record `seq` as if it was redacted at `redacted_at_ms` as `class`, with a valid
    /// redaction MAC, its time set to `at_ms` (a record from long ago).
    fn redact_as(store: &Store, seq: u64, at_ms: i64, class: &str, redacted_at_ms: i64) {
        let log = store.audit_log();
        let key = i64::try_from(seq).unwrap();
        testing::write(store, |tx| {
            let row = tx.query_one(
                "SELECT action, outcome, hash FROM audit WHERE seq = ?1",
                params![key],
            )?;
            let (action, outcome, hash): (String, String, String) =
                (row.get("action")?, row.get("outcome")?, row.get("hash")?);
            tx.execute(
                "UPDATE audit SET at_ms = ?2, principal_id = '', role = '', tenant_id = '',
                     target = '', detail = '', sealed_detail = '' WHERE seq = ?1",
                params![key, at_ms],
            )?;
            let mac = log.redaction_mac(&mac_input(
                seq,
                at_ms,
                &action,
                &outcome,
                &hash,
                class,
                redacted_at_ms,
            ));
            tx.execute(
                "INSERT INTO audit_redactions (seq, class, redacted_at_ms, mac)
                 VALUES (?1, ?2, ?3, ?4)",
                params![key, class, redacted_at_ms, mac],
            )?;
            Ok(())
        });
    }

    #[test]
    fn a_data_read_redacted_as_an_access_log_verifies_only_under_the_earlier_rule() {
        each_backend(|store| {
            let day = DAY_MS;
            let long_ago = DATA_ACCESS_RECLASSIFIED_MS - 400 * day;
            // (Record 1 is the genesis record.)
            trail(store, &[("sample_dataset", "ok"), ("sample_dataset", "ok")]);
            // Redacted 200 days after it was made, before data reads became operating records.
            redact_as(store, 2, long_ago, "network_log", long_ago + 200 * day);
            let report = verify(store);
            assert!(report.ok, "{report:?}");
            // The same redaction made after the change is a record cut short.
            redact_as(
                store,
                3,
                long_ago,
                "network_log",
                DATA_ACCESS_RECLASSIFIED_MS + day,
            );
            let report = verify(store);
            assert!(!report.ok);
            let problem = report.problem.unwrap();
            assert!(
                problem.contains("record 3") && problem.contains("wrong class"),
                "redacted as an access log after the change: {problem}"
            );
        });
    }

    /// Runs `sql` (no parameters) behind the trail's back, in a test write.
    fn tamper(store: &Store, sql: &str) {
        testing::write(store, |tx| Ok(tx.execute(sql, &[])?));
    }

    #[test]
    fn tampering_with_or_forging_redactions_is_detected() {
        each_backend(|store| {
            trail(store, &[("list_datasets", "ok"), ("submit_job", "ok")]);
            let c = RetentionDays::default();
            let later = crate::now_ms() + 200 * DAY_MS;
            assert_eq!(purge(store, &c, later), 1);
            // A redacted record's action changed afterwards.
            tamper(store, "UPDATE audit SET action = 'who_am_i' WHERE seq = 2");
            let report = verify(store);
            assert!(!report.ok);
            assert!(report.problem.unwrap().contains("record 2"));
            tamper(
                store,
                "UPDATE audit SET action = 'list_datasets' WHERE seq = 2",
            );
            assert!(verify(store).ok);
            // An operating record blanked by someone without the key.
            tamper(
                store,
                "UPDATE audit SET principal_id = '', role = '', tenant_id = '', target = '',
                     detail = '' WHERE seq = 3",
            );
            testing::write(store, |tx| {
                Ok(tx.execute(
                    "INSERT INTO audit_redactions (seq, class, redacted_at_ms, mac)
                     VALUES (3, 'operating_record', ?1, 'forged')",
                    params![later],
                )?)
            });
            let report = verify(store);
            assert!(!report.ok);
            assert!(report.problem.unwrap().contains("record 3"));
        });
    }
}
