//! Signed checkpoints of the audit trail (R27, R33), as the server takes and stores them:
//! the leaves read from the trail, the signed note, the stored checkpoints. The Merkle tree,
//! its proofs and the note's format are `shuyu_verify::checkpoint`, the one implementation
//! that outside parties verify with.

use shuyu_meta::params;
use shuyu_vault::SigningKey;

use crate::error::{Result, ServerError};
use crate::store::Tx;

// The tree and the note, for the oversight service that proves and signs with them.
pub(crate) use shuyu_verify::checkpoint::{
    Checkpoint, Hash, consistency_proof, inclusion_proof, leaf_hash, origin, root,
};

/// Stored checkpoints (taken periodically and on demand).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tree_size BIGINT PRIMARY KEY, root_hash TEXT NOT NULL, note TEXT NOT NULL,
    at_ms BIGINT NOT NULL);
";

/// The records' hashes (hex) in sequence order, the first `size` or all: a quick read, so
/// that the store is not held while the tree is hashed.
///
/// # Errors
/// On store failure.
pub fn audit_hashes(tx: &Tx<'_>, size: Option<u64>) -> Result<Vec<(u64, String)>> {
    let rows = match size {
        Some(size) => tx.query(
            "SELECT seq, hash FROM audit ORDER BY seq LIMIT ?1",
            params![i64::try_from(size).unwrap_or(i64::MAX)],
        )?,
        None => tx.query("SELECT seq, hash FROM audit ORDER BY seq", &[])?,
    };
    rows.iter()
        .map(|r| Ok((r.get("seq")?, r.get("hash")?)))
        .collect()
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
pub fn store(tx: &Tx<'_>, checkpoint: &Checkpoint, note: &str, at_ms: i64) -> Result<()> {
    let tree_size = i64::try_from(checkpoint.tree_size)
        .map_err(|_| ServerError::internal("a checkpoint's tree size beyond i64"))?;
    tx.execute(
        "INSERT INTO audit_checkpoints (tree_size, root_hash, note, at_ms)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tree_size) DO NOTHING",
        params![tree_size, hex::encode(checkpoint.root_hash), note, at_ms],
    )?;
    Ok(())
}

/// The largest stored checkpoint: its tree size and root hash (hex).
///
/// # Errors
/// On store failure.
pub fn last_stored(tx: &Tx<'_>) -> Result<Option<(u64, String)>> {
    tx.query_opt(
        "SELECT tree_size, root_hash FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1",
        &[],
    )?
    .map(|r| Ok((r.get("tree_size")?, r.get("root_hash")?)))
    .transpose()
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

    #[test]
    fn checkpoints_are_stored_once_per_size_and_the_largest_is_last() {
        use crate::store::testing::{self, each_backend};
        each_backend(|store| {
            for action in ["a", "b", "c"] {
                store
                    .record(&crate::audit::trail::system_entry(
                        action,
                        "t",
                        serde_json::json!({}),
                    ))
                    .unwrap();
            }
            let hashes = store.read(|tx| audit_hashes(tx, None)).unwrap();
            assert_eq!(hashes.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2, 3]);
            assert_eq!(
                store.read(|tx| audit_hashes(tx, Some(2))).unwrap(),
                hashes[..2]
            );
            assert_eq!(store.read(last_stored).unwrap(), None);
            let (key, _) = SigningKey::generate().unwrap();
            let leaves = leaves_of(&hashes).unwrap();
            let (small, small_note) = signed(&leaves[..2], &key);
            let (cp, note) = signed(&leaves, &key);
            testing::write(store, |tx| {
                super::store(tx, &cp, &note, 10)?;
                super::store(tx, &small, &small_note, 11)
            });
            // One per tree size: the first stored stays.
            testing::write(store, |tx| super::store(tx, &cp, "another note", 12));
            assert_eq!(
                store.read(last_stored).unwrap(),
                Some((3, hex::encode(cp.root_hash)))
            );
            let stored: String = store
                .read(|tx| {
                    Ok(tx
                        .query_one(
                            "SELECT note FROM audit_checkpoints WHERE tree_size = 3",
                            &[],
                        )?
                        .get("note")?)
                })
                .unwrap();
            assert_eq!(stored, note);
        });
    }
}
