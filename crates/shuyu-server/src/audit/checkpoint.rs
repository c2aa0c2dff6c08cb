//! Signed checkpoints of the audit trail (R27, R33), as the server takes and stores them:
//! the leaves read from the trail, the signed note, the stored checkpoints. The Merkle tree,
//! its proofs and the note's format are `shuyu_verify::checkpoint`, the one implementation
//! that outside parties verify with.

use rusqlite::{Connection, params};
use shuyu_vault::SigningKey;

use crate::error::{Result, ServerError};

// The tree and the note, for the oversight service that proves and signs with them.
pub(crate) use shuyu_verify::checkpoint::{
    Checkpoint, Hash, consistency_proof, inclusion_proof, leaf_hash, origin, root,
};

/// Stored checkpoints (taken periodically and on demand).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tree_size INTEGER PRIMARY KEY, root_hash TEXT NOT NULL, note TEXT NOT NULL,
    at_ms INTEGER NOT NULL);
";

/// The records' hashes (hex) in sequence order, the first `size` or all: a quick read, so
/// that the store is not held while the tree is hashed.
///
/// # Errors
/// On store failure.
pub fn audit_hashes(conn: &Connection, size: Option<u64>) -> Result<Vec<(u64, String)>> {
    let mut stmt = conn.prepare("SELECT seq, hash FROM audit ORDER BY seq LIMIT ?1")?;
    let limit = size.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
    let rows = stmt.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The leaves of the audit tree: each record's hash, leaf-hashed.
///
/// # Errors
/// A stored hash that is not 32 bytes of hex (a damaged trail).
pub fn leaves_of(hashes: &[(u64, String)]) -> Result<Vec<Hash>> {
    hashes
        .iter()
        .map(|(seq, hash)| {
            hex::decode(hash)
                .ok()
                .filter(|b| b.len() == 32)
                .map(|b| leaf_hash(&b))
                .ok_or_else(|| ServerError::internal(format!("audit record {seq}: malformed hash")))
        })
        .collect()
}

/// The signed checkpoint of the tree of `leaves`.
pub fn signed(leaves: &[Hash], key: &SigningKey) -> (Checkpoint, String) {
    let checkpoint = Checkpoint {
        origin: origin(&key.public_key()),
        tree_size: leaves.len() as u64,
        root_hash: root(leaves),
    };
    let note = checkpoint.sign(key);
    (checkpoint, note)
}

/// Stores a checkpoint (one per tree size).
///
/// # Errors
/// On store failure.
pub fn store(conn: &Connection, checkpoint: &Checkpoint, note: &str, at_ms: i64) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO audit_checkpoints (tree_size, root_hash, note, at_ms)
         VALUES (?1, ?2, ?3, ?4)",
        params![
            checkpoint.tree_size,
            hex::encode(checkpoint.root_hash),
            note,
            at_ms
        ],
    )?;
    Ok(())
}

/// The largest stored checkpoint: its tree size and root hash (hex).
///
/// # Errors
/// On store failure.
pub fn last_stored(conn: &Connection) -> Result<Option<(u64, String)>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT tree_size, root_hash FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_of_the_trail_opens_with_the_verifier() {
        let (key, _) = SigningKey::generate().unwrap();
        let hashes: Vec<(u64, String)> = (1u64..=5)
            .map(|seq| (seq, shuyu_vault::sha256_hex(&seq.to_be_bytes())))
            .collect();
        let leaves = leaves_of(&hashes).unwrap();
        let (checkpoint, note) = signed(&leaves, &key);
        assert_eq!(checkpoint.tree_size, 5);
        assert_eq!(Checkpoint::open(&note, &key.public_key()), Ok(checkpoint));
        assert!(leaves_of(&[(1, "not hex".into())]).is_err());
    }
}
