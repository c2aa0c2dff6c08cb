//! Signed checkpoints of the audit trail (R27, R33), as the server takes and stores them:
//! the leaves of the trail's records, the signed note, the stored checkpoints. The Merkle
//! tree's hashing, its proofs and the note's format are `shuyu_verify::checkpoint`, the one
//! implementation that outside parties verify with; the server reads roots and proofs from
//! the tree's stored nodes (`audit::tree`), in O(log n) reads.

use shuyu_meta::params;
use shuyu_vault::SigningKey;

use crate::error::{Result, ServerError};
use shuyu_meta::Tx;

// The tree's hashing and the note, for `audit::tree` and the oversight service that
// signs with them.
pub(crate) use shuyu_verify::checkpoint::{Checkpoint, Hash, leaf_hash, origin, root};

/// Stored checkpoints (taken periodically and on demand).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tree_size BIGINT PRIMARY KEY, root_hash TEXT NOT NULL, note TEXT NOT NULL,
    at_ms BIGINT NOT NULL);
";

/// The leaves of the audit tree: each record's hash, leaf-hashed.
///
/// # Errors
/// A stored hash that is not 32 bytes of hex (a damaged trail).
pub fn leaves_of(hashes: &[(u64, String)]) -> Result<Vec<Hash>> {
    hashes
        .iter()
        .map(|(seq, hash)| leaf_of(*seq, hash))
        .collect()
}

/// The leaf of record `seq` whose hash is `hash` (hex).
///
/// # Errors
/// A hash that is not 32 bytes of hex (a damaged trail).
pub fn leaf_of(seq: u64, hash: &str) -> Result<Hash> {
    hex::decode(hash)
        .ok()
        .filter(|b| b.len() == 32)
        .map(|b| leaf_hash(&b))
        .ok_or_else(|| ServerError::internal(format!("audit record {seq}: malformed hash")))
}

/// The signed checkpoint of the tree of `tree_size` records whose root is `root_hash` (read
/// from the stored tree by `audit::tree::root`).
pub fn signed(tree_size: u64, root_hash: Hash, key: &SigningKey) -> (Checkpoint, String) {
    let checkpoint = Checkpoint {
        origin: origin(&key.public_key()),
        tree_size,
        root_hash,
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
        let (checkpoint, note) = signed(5, root(&leaves), &key);
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
            assert_eq!(store.read(crate::audit::tree::size).unwrap(), 3);
            assert_eq!(store.read(last_stored).unwrap(), None);
            let (key, _) = SigningKey::generate().unwrap();
            let root_of = |n| store.read(|tx| crate::audit::tree::root(tx, n)).unwrap();
            let (small, small_note) = signed(2, root_of(2), &key);
            let (cp, note) = signed(3, root_of(3), &key);
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
