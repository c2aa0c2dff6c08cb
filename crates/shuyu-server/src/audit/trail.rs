//! The tamper-evident audit trail (R29, R31): an append-only, hash-chained table in the
//! metadata store, written in the same transaction as the change it records.
//!
//! Each record's hash covers the previous hash and every field; each hash carries an HMAC
//! under a key derived from the master key, and a MAC'd head pointer records the last
//! sequence number, so changing, removing, inserting, reordering or truncating records is
//! detected by [`AuditLog::verify`]. Records hold ids, outcomes and hashes only; error text
//! that may contain data values is stored sealed (AES-GCM), never in plaintext. The record
//! hash and the chain's links are `shuyu_verify::audit`'s; the MACs, redactions and head
//! pointer, which need the master key and the store, are checked here.

use shuyu_meta::params;

use shuyu_meta::Tx;
use shuyu_vault::SecretKey;
use shuyu_verify::VerifyError;
pub(crate) use shuyu_verify::audit::{AuditRecord, GENESIS_ACTION};
use shuyu_verify::audit::{GENESIS_HASH as GENESIS, check_link, record_hash};

use crate::error::{Result, ServerError};

/// What a service call records.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// Acting principal ("-" when unauthenticated).
    pub principal_id: String,
    /// Role text.
    pub role: String,
    /// Tenant of the principal, or empty.
    pub tenant_id: String,
    /// Action (snake_case).
    pub action: String,
    /// Target ids, e.g. `dataset:ds_…`.
    pub target: String,
    /// "ok", "denied", "invalid", "not_found", "busy", "error".
    pub outcome: String,
    /// Ids and hashes only.
    pub detail: serde_json::Value,
    /// Error text that may contain data values, sealed before it is stored.
    pub secret_detail: Option<String>,
}

/// Result of a verification.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Whether the whole trail verified.
    pub ok: bool,
    /// Records checked.
    pub n_records: u64,
    /// Hash of the last record.
    pub head_hash: String,
    /// The first problem found.
    pub problem: Option<String>,
}

/// Keys and operations of the trail (and the key the store seals job previews under).
#[derive(Debug, Clone)]
pub struct AuditLog {
    mac_key: SecretKey,
    seal_key: SecretKey,
    preview_key: SecretKey,
}

/// Creates the audit table.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    principal_id TEXT NOT NULL,
    role TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    sealed_detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT NOT NULL
);
";

impl AuditLog {
    /// The trail's keys, derived from the master key.
    pub fn new(master: &SecretKey) -> AuditLog {
        AuditLog {
            mac_key: master.derive("shuyu-audit-mac:v1"),
            seal_key: master.derive("shuyu-audit-seal:v1"),
            preview_key: master.derive("shuyu-job-preview-seal:v1"),
        }
    }

    /// The key job previews are sealed under in the metadata store.
    pub(crate) fn preview_key(&self) -> &SecretKey {
        &self.preview_key
    }

    /// The MAC of a retention redaction (see [`crate::audit::retention`]).
    pub(crate) fn redaction_mac(&self, input: &str) -> String {
        self.mac("redaction", input)
    }

    fn mac(&self, label: &str, hash: &str) -> String {
        hex::encode(
            self.mac_key
                .hmac_sha256(format!("{label}:{hash}").as_bytes()),
        )
    }

    /// Appends a record inside `tx`; it becomes durable when `tx` commits.
    ///
    /// # Errors
    /// On store failure (the caller's transaction then fails as a whole).
    pub fn append(&self, tx: &Tx<'_>, entry: &AuditEntry) -> Result<u64> {
        let head: Option<(u64, String)> = tx
            .query_opt("SELECT seq, hash FROM audit_head WHERE id = 1", &[])?
            .map(|row| Ok::<_, ServerError>((row.get("seq")?, row.get("hash")?)))
            .transpose()?;
        let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS.to_owned()));
        let sealed_detail = entry
            .secret_detail
            .as_ref()
            .map(|text| hex::encode(self.seal_key.seal(b"shuyu-audit-detail", text.as_bytes())))
            .unwrap_or_default();
        let mut record = AuditRecord {
            seq: prev_seq + 1,
            at_ms: crate::now_ms(),
            principal_id: entry.principal_id.clone(),
            role: entry.role.clone(),
            tenant_id: entry.tenant_id.clone(),
            action: entry.action.clone(),
            target: entry.target.clone(),
            outcome: entry.outcome.clone(),
            detail: entry.detail.to_string(),
            sealed_detail,
            prev_hash,
            hash: String::new(),
            mac: String::new(),
        };
        record.hash = record_hash(&record);
        record.mac = self.mac("record", &record.hash);
        // The head first: two servers appending at once then both write that one row, and
        // the later one fails to serialize and runs again (on the record's key it would meet
        // a plain duplicate).
        let head_mac = self.mac("head", &format!("{}:{}", record.seq, record.hash));
        tx.execute(
            "INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
            params![seq_param(record.seq)?, record.hash.as_str(), head_mac],
        )?;
        tx.execute(
            "INSERT INTO audit (seq, at_ms, principal_id, role, tenant_id, action, target, outcome,
                                detail, sealed_detail, prev_hash, hash, mac)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                seq_param(record.seq)?,
                record.at_ms,
                record.principal_id.as_str(),
                record.role.as_str(),
                record.tenant_id.as_str(),
                record.action.as_str(),
                record.target.as_str(),
                record.outcome.as_str(),
                record.detail.as_str(),
                record.sealed_detail.as_str(),
                record.prev_hash.as_str(),
                record.hash.as_str(),
                record.mac.as_str()
            ],
        )?;
        crate::audit::tree::add_record(tx, record.seq, &record.hash)?;
        Ok(record.seq)
    }

    /// Records with `seq > after_seq`, oldest first.
    ///
    /// # Errors
    /// On store failure.
    pub fn list(tx: &Tx<'_>, after_seq: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        tx.query(
            "SELECT seq, at_ms, principal_id, role, tenant_id, action, target, outcome, detail,
                    sealed_detail, prev_hash, hash, mac
             FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![seq_param(after_seq)?, i64::from(limit)],
        )?
        .iter()
        .map(read_record)
        .collect()
    }

    /// Recomputes the chain, every MAC and the head.
    ///
    /// # Errors
    /// On store failure (tampering is reported in the [`VerifyReport`], not as an error).
    pub fn verify(&self, conn: &Tx<'_>) -> Result<VerifyReport> {
        let rows = conn.query(
            "SELECT seq, at_ms, principal_id, role, tenant_id, action, target, outcome, detail,
                    sealed_detail, prev_hash, hash, mac
             FROM audit ORDER BY seq",
            &[],
        )?;
        let mut expected_prev = GENESIS.to_owned();
        let mut n = 0u64;
        let fail = |n: u64, head: &str, problem: String| VerifyReport {
            ok: false,
            n_records: n,
            head_hash: head.to_owned(),
            problem: Some(problem),
        };
        for (expected_seq, row) in (1u64..).zip(&rows) {
            let record = read_record(row)?;
            if let Err(problem) = check_link(&record, expected_seq, &expected_prev) {
                return Ok(fail(n, &expected_prev, problem.to_string()));
            }
            if record_hash(&record) != record.hash {
                // A record past its retention may have been redacted (payload blanked, hash
                // kept) by a MAC'd redaction; anything else is a change.
                match crate::audit::retention::check_redaction(self, conn, &record)? {
                    Some(Ok(())) => {}
                    Some(Err(problem)) => return Ok(fail(n, &expected_prev, problem)),
                    None => {
                        let problem = VerifyError::RecordChanged { seq: record.seq };
                        return Ok(fail(n, &expected_prev, problem.to_string()));
                    }
                }
            }
            if self.mac("record", &record.hash) != record.mac {
                return Ok(fail(
                    n,
                    &expected_prev,
                    format!("record {} carries an invalid MAC", record.seq),
                ));
            }
            expected_prev = record.hash;
            n += 1;
        }
        if n == 0 {
            return Ok(fail(0, &expected_prev, VerifyError::EmptyTrail.to_string()));
        }
        let head: Option<(u64, String, String)> = conn
            .query_opt("SELECT seq, hash, mac FROM audit_head WHERE id = 1", &[])?
            .map(|row| Ok::<_, ServerError>((row.get("seq")?, row.get("hash")?, row.get("mac")?)))
            .transpose()?;
        match head {
            None => {
                return Ok(fail(
                    n,
                    &expected_prev,
                    "the head pointer is missing".into(),
                ));
            }
            Some((seq, hash, mac)) => {
                if mac != self.mac("head", &format!("{seq}:{hash}")) {
                    return Ok(fail(
                        n,
                        &expected_prev,
                        "the head pointer was changed".into(),
                    ));
                }
                if seq != n || hash != expected_prev {
                    return Ok(fail(
                        n,
                        &expected_prev,
                        format!(
                            "the trail ends at record {n} but the head pointer names record {seq} (records removed from the end)"
                        ),
                    ));
                }
            }
        }
        Ok(VerifyReport {
            ok: true,
            n_records: n,
            head_hash: expected_prev,
            problem: None,
        })
    }

    /// Decrypts a record's sealed error text (for the domain operator on the host).
    ///
    /// # Errors
    /// If the text does not decrypt under this domain's key.
    pub fn open_detail(&self, sealed_hex: &str) -> Result<String> {
        let sealed =
            hex::decode(sealed_hex).map_err(|_| ServerError::InvalidArgument("not hex".into()))?;
        let plain = self.seal_key.open(b"shuyu-audit-detail", &sealed)?;
        Ok(String::from_utf8_lossy(&plain).into_owned())
    }
}

fn read_record(row: &shuyu_meta::Row) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.get("seq")?,
        at_ms: row.get("at_ms")?,
        principal_id: row.get("principal_id")?,
        role: row.get("role")?,
        tenant_id: row.get("tenant_id")?,
        action: row.get("action")?,
        target: row.get("target")?,
        outcome: row.get("outcome")?,
        detail: row.get("detail")?,
        sealed_detail: row.get("sealed_detail")?,
        prev_hash: row.get("prev_hash")?,
        hash: row.get("hash")?,
        mac: row.get("mac")?,
    })
}

/// A sequence number as a parameter.
pub(crate) fn seq_param(seq: u64) -> Result<i64> {
    i64::try_from(seq)
        .map_err(|_| ServerError::InvalidArgument(format!("sequence number {seq} is out of range")))
}

/// The audit entry of something the server did by itself (a periodic task).
pub fn system_entry(action: &str, target: &str, detail: serde_json::Value) -> AuditEntry {
    AuditEntry {
        principal_id: "system".into(),
        role: "system".into(),
        tenant_id: String::new(),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
        detail,
        secret_detail: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::store::Store;
    use crate::store::testing::{self, TestStore};

    /// A store whose trail holds `n` records; its log is `store.audit_log()`.
    fn log_with(n: usize) -> TestStore {
        trail_of(testing::sqlite(), n)
    }

    fn trail_of(store: TestStore, n: usize) -> TestStore {
        for i in 0..n {
            let entry = AuditEntry {
                principal_id: format!("p{i}"),
                role: "engineer".into(),
                action: if i == 0 { GENESIS_ACTION } else { "submit_job" }.into(),
                outcome: "ok".into(),
                detail: json!({"i": i}),
                secret_detail: (i == 1).then(|| "cast of 'CANARY_VALUE' failed".to_owned()),
                ..AuditEntry::default()
            };
            store.record(&entry).unwrap();
        }
        store
    }

    fn verify(store: &Store) -> VerifyReport {
        store.read(|tx| store.audit_log().verify(tx)).unwrap()
    }

    fn tamper(store: &Store, sql: &str) {
        testing::tamper(store, |tx| Ok(tx.execute_batch(sql)?));
    }

    #[test]
    fn concurrent_appends_on_both_backends_make_one_chain() {
        for store in [testing::sqlite(), testing::postgres()] {
            let store = trail_of(store, 1);
            std::thread::scope(|scope| {
                for t in 0..4 {
                    let store = &store;
                    scope.spawn(move || {
                        for i in 0..15 {
                            store
                                .record(&AuditEntry {
                                    principal_id: format!("p{t}"),
                                    action: "submit_job".into(),
                                    outcome: "ok".into(),
                                    detail: json!({"t": t, "i": i}),
                                    ..AuditEntry::default()
                                })
                                .unwrap();
                        }
                    });
                }
            });
            let report = verify(&store);
            assert!(report.ok, "{report:?}");
            assert_eq!(report.n_records, 61);
        }
    }

    #[test]
    fn the_chain_verifies_on_both_backends() {
        for store in [testing::sqlite(), testing::postgres()] {
            let store = trail_of(store, 5);
            let report = verify(&store);
            assert!(report.ok, "{report:?}");
            assert_eq!(report.n_records, 5);
            tamper(&store, "UPDATE audit SET outcome = 'denied' WHERE seq = 3");
            let report = verify(&store);
            assert!(!report.ok);
            assert!(report.problem.unwrap().contains("record 3"));
        }
    }

    #[test]
    fn an_untouched_trail_verifies_and_an_empty_one_does_not() {
        let store = log_with(5);
        let report = verify(&store);
        assert!(report.ok, "{report:?}");
        assert_eq!(report.n_records, 5);
        let store = log_with(0);
        let report = verify(&store);
        assert!(!report.ok);
        assert!(report.problem.unwrap().contains("genesis"));
    }

    #[test]
    fn deleting_every_record_and_the_head_is_a_failure() {
        let store = log_with(4);
        tamper(&store, "DELETE FROM audit; DELETE FROM audit_head;");
        let report = verify(&store);
        assert!(!report.ok, "{report:?}");
        assert_eq!(report.n_records, 0);
    }

    #[test]
    fn a_trail_that_does_not_start_with_the_genesis_record_fails() {
        let store = log_with(3);
        // Records 2 and 3 renumbered to start the trail: the chain links, the MACs hold,
        // but the genesis is gone.
        tamper(
            &store,
            "DELETE FROM audit WHERE seq = 1; UPDATE audit SET seq = seq - 1;
             UPDATE audit SET prev_hash = '0000000000000000000000000000000000000000000000000000000000000000' WHERE seq = 1;",
        );
        let report = verify(&store);
        assert!(!report.ok);
        assert!(report.problem.unwrap().contains("record 1"));
    }

    #[test]
    fn secret_detail_is_stored_sealed() {
        let store = log_with(3);
        let log = store.audit_log();
        let records = store.read(|tx| AuditLog::list(tx, 0, 10)).unwrap();
        assert!(!format!("{records:?}").contains("CANARY_VALUE"));
        assert_eq!(
            log.open_detail(&records[1].sealed_detail).unwrap(),
            "cast of 'CANARY_VALUE' failed"
        );
        // Another domain's key cannot open it.
        let other = AuditLog::new(&SecretKey::generate());
        assert!(other.open_detail(&records[1].sealed_detail).is_err());
    }

    #[test]
    fn a_rewritten_record_with_a_recomputed_hash_fails_on_its_mac() {
        let store = log_with(4);
        // The attacker changes a record and recomputes its hash, but has no MAC key.
        let mut record = store.read(|tx| AuditLog::list(tx, 1, 1)).unwrap().remove(0);
        record.outcome = "denied".into();
        let hash = record_hash(&record);
        testing::tamper(&store, |tx| {
            Ok(tx.execute(
                "UPDATE audit SET outcome = 'denied', hash = ?1 WHERE seq = 2",
                params![hash.as_str()],
            )?)
        });
        let report = verify(&store);
        assert!(!report.ok);
        assert!(report.problem.unwrap().contains("record 2"));
    }

    #[test]
    fn a_trail_from_another_domain_does_not_verify() {
        let store = log_with(3);
        let stranger = AuditLog::new(&SecretKey::generate());
        let report = store.read(|tx| stranger.verify(tx)).unwrap();
        assert!(!report.ok);
        assert!(report.problem.unwrap().contains("MAC"));
    }

    #[test]
    fn truncation_is_caught_by_the_head_pointer() {
        let store = log_with(4);
        tamper(&store, "DELETE FROM audit WHERE seq = 4");
        let report = verify(&store);
        assert!(!report.ok);
        assert!(report.problem.unwrap().contains("head pointer"));
        tamper(&store, "DELETE FROM audit_head");
        assert!(!verify(&store).ok);
    }
}
