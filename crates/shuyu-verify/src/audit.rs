//! The audit trail's hash chain, verified without the store: each record's hash covers the
//! previous record's hash and every field of the record ([`record_hash`]); the trail starts
//! with the domain's genesis record. The server checks, on top of this, each record's MAC,
//! retention redactions and the MAC'd head pointer, which need the domain's master key.

use shuyu_vault::sha256_hex;

use crate::VerifyError;

/// The previous hash of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The action of a domain's first record, written by `shuyu init`: every trail starts with it.
pub const GENESIS_ACTION: &str = "init_domain";

/// A stored audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
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
    /// JSON text: ids and hashes only.
    pub detail: String,
    /// Sealed error text, hex (empty when none).
    pub sealed_detail: String,
    /// Previous record's hash.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
    /// HMAC of the hash under the domain's audit key (checked by the server only).
    pub mac: String,
}

/// The hash a record must carry: SHA-256 (hex) of the canonical JSON array of its fields and
/// its previous hash.
pub fn record_hash(r: &AuditRecord) -> String {
    let canonical = serde_json::json!([
        r.seq,
        r.at_ms,
        r.principal_id,
        r.role,
        r.tenant_id,
        r.action,
        r.target,
        r.outcome,
        r.detail,
        r.sealed_detail,
        r.prev_hash
    ]);
    sha256_hex(canonical.to_string().as_bytes())
}

/// Checks that `record` is the one expected next: number `expected_seq`, the genesis record
/// when it is the first, linked to the previous record's hash `expected_prev`. Its own hash
/// is not recomputed here (see [`record_hash`]).
///
/// # Errors
/// [`VerifyError::RecordOutOfPlace`], [`VerifyError::NoGenesis`] or
/// [`VerifyError::BrokenLink`].
pub fn check_link(
    record: &AuditRecord,
    expected_seq: u64,
    expected_prev: &str,
) -> Result<(), VerifyError> {
    if record.seq != expected_seq {
        return Err(VerifyError::RecordOutOfPlace {
            found: record.seq,
            expected: expected_seq,
        });
    }
    if record.seq == 1 && record.action != GENESIS_ACTION {
        return Err(VerifyError::NoGenesis {
            action: record.action.clone(),
        });
    }
    if record.prev_hash != expected_prev {
        return Err(VerifyError::BrokenLink { seq: record.seq });
    }
    Ok(())
}

/// The end of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Records verified.
    pub n_records: u64,
    /// The last record's hash.
    pub head_hash: String,
}

/// Verifies a whole exported trail, from its genesis record: every record in its place,
/// linked to the one before and hashing to its stored hash. A record redacted after its
/// retention (payload blanked, hash kept) fails here as changed: only the domain, holding
/// the redaction MACs' key, tells a lawful redaction from a change.
///
/// # Errors
/// The first problem found, or [`VerifyError::EmptyTrail`].
pub fn verify_chain(records: &[AuditRecord]) -> Result<ChainHead, VerifyError> {
    let mut head = GENESIS_HASH;
    for (expected_seq, record) in (1u64..).zip(records) {
        check_link(record, expected_seq, head)?;
        if record_hash(record) != record.hash {
            return Err(VerifyError::RecordChanged { seq: record.seq });
        }
        head = &record.hash;
    }
    if records.is_empty() {
        return Err(VerifyError::EmptyTrail);
    }
    Ok(ChainHead {
        n_records: records.len() as u64,
        head_hash: head.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `n` records as the server appends them.
    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = Vec::new();
        for seq in 1..=n {
            let mut r = AuditRecord {
                seq,
                at_ms: 1_700_000_000_000 + seq as i64,
                principal_id: format!("p{seq}"),
                role: "engineer".into(),
                tenant_id: String::new(),
                action: if seq == 1 {
                    GENESIS_ACTION
                } else {
                    "submit_job"
                }
                .into(),
                target: format!("job:job_{seq}"),
                outcome: "ok".into(),
                detail: format!("{{\"i\":{seq}}}"),
                sealed_detail: String::new(),
                prev_hash: records
                    .last()
                    .map_or(GENESIS_HASH.to_owned(), |p| p.hash.clone()),
                hash: String::new(),
                mac: String::new(),
            };
            r.hash = record_hash(&r);
            records.push(r);
        }
        records
    }

    #[test]
    fn the_record_hash_is_the_canonical_json_digest() {
        let r = &chain(1)[0];
        let canonical = format!(
            "[1,1700000000001,\"p1\",\"engineer\",\"\",\"init_domain\",\"job:job_1\",\"ok\",\"{{\\\"i\\\":1}}\",\"\",\"{GENESIS_HASH}\"]"
        );
        assert_eq!(r.hash, sha256_hex(canonical.as_bytes()));
    }

    #[test]
    fn an_untouched_chain_verifies_and_an_empty_one_does_not() {
        let records = chain(5);
        assert_eq!(
            verify_chain(&records),
            Ok(ChainHead {
                n_records: 5,
                head_hash: records[4].hash.clone()
            })
        );
        assert_eq!(verify_chain(&[]), Err(VerifyError::EmptyTrail));
    }

    #[test]
    fn changes_removals_and_reorders_are_caught() {
        let records = chain(4);
        let mut changed = records.clone();
        changed[2].outcome = "denied".into();
        assert_eq!(
            verify_chain(&changed),
            Err(VerifyError::RecordChanged { seq: 3 })
        );
        // Changed and rehashed: the next record no longer links.
        changed[2].hash = record_hash(&changed[2]);
        assert_eq!(
            verify_chain(&changed),
            Err(VerifyError::BrokenLink { seq: 4 })
        );
        let mut removed = records.clone();
        removed.remove(1);
        assert_eq!(
            verify_chain(&removed),
            Err(VerifyError::RecordOutOfPlace {
                found: 3,
                expected: 2
            })
        );
        let mut swapped = records.clone();
        swapped.swap(1, 2);
        assert!(matches!(
            verify_chain(&swapped),
            Err(VerifyError::RecordOutOfPlace { .. })
        ));
        // A chain that does not start with the genesis record.
        let mut headless = chain(2);
        headless[0].action = "submit_job".into();
        headless[0].hash = record_hash(&headless[0]);
        let err = verify_chain(&headless).unwrap_err();
        assert_eq!(
            err,
            VerifyError::NoGenesis {
                action: "submit_job".into()
            }
        );
        assert!(err.to_string().contains("genesis"));
    }
}
