//! The audit trail's Merkle tree, stored: the hash of every complete (perfect) subtree of
//! the RFC 6962 tree over the records, so that a checkpoint's root and the inclusion and
//! consistency proofs cost O(log n) reads instead of reading the whole trail.
//!
//! Node `(level, idx)` is the tree hash of leaves `[idx·2^level, (idx+1)·2^level)`; level 0
//! holds the leaf hashes (`leaf_hash` of each record's 32-byte hash, leaf `seq - 1`).
//! [`add_record`] runs in the transaction that appends a record and writes its leaf and
//! every parent the leaf completes (on average two rows and one read per record). A
//! record's hash never changes once appended (retention redacts the payload and keeps the
//! hash), so a stored node stays true. The hashing is `shuyu_verify::checkpoint`'s, which
//! outside parties verify with: the stored tree gives the same roots and proofs as
//! recomputing them from every leaf.
//!
//! Costs, for a tree of `n` records: [`root`] reads the ≤ log2(n)+1 perfect subtrees of
//! `n`'s binary decomposition; [`inclusion_proof`] and [`consistency_proof`] read about
//! 2·log2(n) nodes (each proof hash is a perfect subtree, or the one right-hand subtree
//! that is not, folded from its own decomposition). A node missing from the table (a tree
//! that lags the trail) is recomputed from the records it covers, so answers stay right,
//! only slower; [`backfill_step`], run when the store opens, fills what an older version left
//! out.

use shuyu_meta::{Value, params};

use crate::audit::checkpoint::{Hash, leaf_of, leaves_of, root as root_of_leaves};
use crate::error::{Result, ServerError};
use shuyu_meta::Tx;

/// The stored nodes.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_tree (
    level BIGINT NOT NULL, idx BIGINT NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, idx));
";

/// Records whose nodes [`backfill_step`] writes per transaction.
const BACKFILL_CHUNK: u64 = 4096;

/// Nodes per `INSERT` statement in [`backfill_step`].
const ROWS_PER_INSERT: usize = 256;

/// RFC 6962 interior node: SHA-256(0x01 || left || right), which is the tree hash of the
/// two leaves `left` and `right` (so it is `shuyu_verify`'s own hashing).
fn node_hash(left: &Hash, right: &Hash) -> Hash {
    root_of_leaves(&[*left, *right])
}

/// Largest power of two smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

fn int(x: u64) -> Result<i64> {
    i64::try_from(x).map_err(|_| ServerError::internal("an audit tree index beyond i64"))
}

/// Writes nodes (an upsert: a node rewritten after the trail was cut down and appended
/// again takes the new records' hash).
fn put(tx: &Tx<'_>, nodes: &[(u32, u64, Hash)]) -> Result<()> {
    for batch in nodes.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from("INSERT INTO audit_tree (level, idx, hash) VALUES ");
        let mut values = Vec::with_capacity(batch.len() * 3);
        for (i, (level, idx, hash)) in batch.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(?{}, ?{}, ?{})", 3 * i + 1, 3 * i + 2, 3 * i + 3));
            values.push(Value::from(*level));
            values.push(Value::Int(int(*idx)?));
            values.push(Value::Bytes(hash.to_vec()));
        }
        sql.push_str(" ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash");
        tx.execute(&sql, &values)?;
    }
    Ok(())
}

/// A stored node, if present.
fn get(tx: &Tx<'_>, level: u32, idx: u64) -> Result<Option<Hash>> {
    tx.query_opt(
        "SELECT hash FROM audit_tree WHERE level = ?1 AND idx = ?2",
        params![level, int(idx)?],
    )?
    .map(|row| {
        let bytes: Vec<u8> = row.get("hash")?;
        Hash::try_from(bytes).map_err(|_| {
            ServerError::internal(format!("audit tree node ({level}, {idx}): not 32 bytes"))
        })
    })
    .transpose()
}

/// The records' hashes (hex), `count` of them from sequence number `first_seq`, in order.
fn record_hashes(tx: &Tx<'_>, first_seq: u64, count: u64) -> Result<Vec<(u64, String)>> {
    tx.query(
        "SELECT seq, hash FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
        params![int(first_seq)?, int(count)?],
    )?
    .iter()
    .map(|r| Ok((r.get("seq")?, r.get("hash")?)))
    .collect()
}

/// Adds record `seq`'s leaf and every parent it completes, inside the transaction that
/// appends the record ([`crate::audit::trail::AuditLog::append`]). Where a left sibling is
/// missing (a tree that lags the trail), it stops: [`backfill_step`] writes the rest.
///
/// # Errors
/// A hash that is not 32 bytes of hex, or on store failure.
pub(crate) fn add_record(tx: &Tx<'_>, seq: u64, hash_hex: &str) -> Result<()> {
    let mut idx = seq
        .checked_sub(1)
        .ok_or_else(|| ServerError::internal("audit record 0"))?;
    let mut hash = leaf_of(seq, hash_hex)?;
    let mut level = 0u32;
    put(tx, &[(level, idx, hash)])?;
    while idx & 1 == 1 {
        let Some(left) = get(tx, level, idx - 1)? else {
            break;
        };
        hash = node_hash(&left, &hash);
        level += 1;
        idx >>= 1;
        put(tx, &[(level, idx, hash)])?;
    }
    Ok(())
}

/// The tree's size: the number of records (the last sequence number).
///
/// # Errors
/// On store failure.
pub(crate) fn size(tx: &Tx<'_>) -> Result<u64> {
    Ok(tx
        .query_one("SELECT COALESCE(MAX(seq), 0) AS n FROM audit", &[])?
        .get("n")?)
}

/// The hash of the perfect subtree `(level, idx)`: stored, or else recomputed from the
/// records it covers.
fn node(tx: &Tx<'_>, level: u32, idx: u64) -> Result<Hash> {
    if let Some(hash) = get(tx, level, idx)? {
        return Ok(hash);
    }
    let count = 1u64 << level;
    let first = idx << level;
    let hashes = record_hashes(tx, first + 1, count)?;
    let contiguous = hashes.len() as u64 == count
        && hashes
            .iter()
            .zip(first + 1..)
            .all(|((seq, _), want)| *seq == want);
    if !contiguous {
        return Err(ServerError::internal(format!(
            "the audit tree's node over records {}..={} lies beyond the trail",
            first + 1,
            first + count
        )));
    }
    tracing::warn!(
        level,
        idx,
        "an audit tree node is missing: recomputed from the records"
    );
    Ok(root_of_leaves(&leaves_of(&hashes)?))
}

/// The tree hash of leaves `[lo, hi)`, a subtree of the RFC 6962 recursion (so `lo` is a
/// multiple of the largest power of two ≤ `hi - lo` and a power-of-two range is one node):
/// one read per set bit of `hi - lo`.
fn subtree(tx: &Tx<'_>, lo: u64, hi: u64) -> Result<Hash> {
    let n = hi - lo;
    if n.is_power_of_two() {
        let level = n.trailing_zeros();
        return node(tx, level, lo >> level);
    }
    let k = split(n);
    Ok(node_hash(
        &subtree(tx, lo, lo + k)?,
        &subtree(tx, lo + k, hi)?,
    ))
}

/// The root of the tree of the first `n` records (the same as
/// `shuyu_verify::checkpoint::root` of their leaves), from ≤ log2(n)+1 stored nodes.
///
/// # Errors
/// On store failure, or `n` beyond the trail.
pub(crate) fn root(tx: &Tx<'_>, n: u64) -> Result<Hash> {
    if n == 0 {
        return Ok(root_of_leaves(&[]));
    }
    subtree(tx, 0, n)
}

/// The audit path of leaf `index` in the tree of the first `n` records (the same as
/// `shuyu_verify::checkpoint::inclusion_proof`; empty when `index >= n`), from about
/// 2·log2(n) stored nodes.
///
/// # Errors
/// On store failure, or `n` beyond the trail.
pub(crate) fn inclusion_proof(tx: &Tx<'_>, index: u64, n: u64) -> Result<Vec<Hash>> {
    fn path(tx: &Tx<'_>, index: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Result<()> {
        let n = hi - lo;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if index < k {
            path(tx, index, lo, lo + k, out)?;
            out.push(subtree(tx, lo + k, hi)?);
        } else {
            path(tx, index - k, lo + k, hi, out)?;
            out.push(subtree(tx, lo, lo + k)?);
        }
        Ok(())
    }
    let mut out = Vec::new();
    if index < n {
        path(tx, index, 0, n, &mut out)?;
    }
    Ok(out)
}

/// The consistency proof from the tree of the first `m` records to that of the first `n`
/// (the same as `shuyu_verify::checkpoint::consistency_proof`; empty when `m` is 0 or
/// beyond `n`), from about 2·log2(n) stored nodes.
///
/// # Errors
/// On store failure, or `n` beyond the trail.
pub(crate) fn consistency_proof(tx: &Tx<'_>, m: u64, n: u64) -> Result<Vec<Hash>> {
    fn sub(
        tx: &Tx<'_>,
        m: u64,
        lo: u64,
        hi: u64,
        complete: bool,
        out: &mut Vec<Hash>,
    ) -> Result<()> {
        let n = hi - lo;
        if m == n {
            if !complete {
                out.push(subtree(tx, lo, hi)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            sub(tx, m, lo, lo + k, complete, out)?;
            out.push(subtree(tx, lo + k, hi)?);
        } else {
            sub(tx, m - k, lo + k, hi, false, out)?;
            out.push(subtree(tx, lo, lo + k)?);
        }
        Ok(())
    }
    let mut out = Vec::new();
    if m > 0 && m <= n {
        sub(tx, m, 0, n, true, &mut out)?;
    }
    Ok(out)
}

/// The leaf of record `seq` as stored (`None` when the tree lacks it).
///
/// # Errors
/// On store failure.
pub(crate) fn stored_leaf(tx: &Tx<'_>, seq: u64) -> Result<Option<Hash>> {
    match seq.checked_sub(1) {
        Some(idx) => get(tx, 0, idx),
        None => Ok(None),
    }
}

/// Record `seq`'s hash (the 32 bytes whose leaf hash is its leaf).
///
/// # Errors
/// `NotFound` for a record the trail lacks; a malformed hash; on store failure.
pub(crate) fn record_hash(tx: &Tx<'_>, seq: u64) -> Result<Vec<u8>> {
    let row = tx
        .query_opt("SELECT hash FROM audit WHERE seq = ?1", params![int(seq)?])?
        .ok_or_else(|| ServerError::NotFound(format!("audit record {seq}")))?;
    let hash: String = row.get("hash")?;
    hex::decode(&hash)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| ServerError::internal(format!("audit record {seq}: malformed hash")))
}

/// The longest prefix of at most `n` leaves for which the tree is complete, and its perfect
/// subtrees, largest first, as `(level, hash)`: from the top level down, each aligned
/// subtree that still fits in `n` is taken when it is stored. Nodes are only ever written
/// together with everything below them (by [`add_record`] and [`backfill_step`]), so a stored
/// node means its leaves and their nodes are stored too. At most log2(n)+1 reads.
fn complete_prefix(tx: &Tx<'_>, n: u64) -> Result<(Vec<(u32, Hash)>, u64)> {
    let mut stack = Vec::new();
    let mut lo = 0u64;
    for level in (0..64u32).rev() {
        let width = 1u64 << level;
        if n - lo < width {
            continue;
        }
        if let Some(hash) = get(tx, level, lo >> level)? {
            stack.push((level, hash));
            lo += width;
        }
    }
    Ok((stack, lo))
}

/// Writes the nodes of records `done + 1 ..= done + count`, the tree being complete for the
/// first `done`: returns how many records it added.
fn extend(tx: &Tx<'_>, done: u64, count: u64) -> Result<u64> {
    let (mut stack, covered) = complete_prefix(tx, done)?;
    if covered != done {
        return Err(ServerError::internal(
            "the audit tree lost nodes while it was being filled",
        ));
    }
    let hashes = record_hashes(tx, done + 1, count)?;
    let mut nodes = Vec::with_capacity(hashes.len() * 2);
    for ((seq, hash_hex), idx) in hashes.iter().zip(done..) {
        if *seq != idx + 1 {
            return Err(ServerError::internal(format!(
                "the audit trail skips from record {idx} to record {seq}"
            )));
        }
        let mut hash = leaf_of(*seq, hash_hex)?;
        let (mut level, mut at) = (0u32, idx);
        nodes.push((level, at, hash));
        while at & 1 == 1 {
            let (_, left) = stack
                .pop()
                .ok_or_else(|| ServerError::internal("the audit tree's stack ran out"))?;
            hash = node_hash(&left, &hash);
            level += 1;
            at >>= 1;
            nodes.push((level, at, hash));
        }
        stack.push((level, hash));
    }
    put(tx, &nodes)?;
    Ok(hashes.len() as u64)
}

/// One step of filling in the tree's nodes that records appended before the tree was stored
/// lack (at most a few thousand records, in the caller's transaction): the records already
/// covered and how many this step added (0: complete). Run it in transactions of their own
/// until it adds none ([`crate::domain::open_store`] does, at start).
///
/// # Errors
/// On store failure.
pub fn backfill_step(tx: &Tx<'_>) -> Result<(u64, u64)> {
    let n = size(tx)?;
    let (_, done) = complete_prefix(tx, n)?;
    if done >= n {
        return Ok((done, 0));
    }
    Ok((done, extend(tx, done, BACKFILL_CHUNK.min(n - done))?))
}

/// Recomputes every node of the stored tree from the records' hashes and compares: `None`
/// when the table holds exactly the tree of the trail's records, else the first difference.
/// O(n): for `shuyu audit verify`, which checks the whole trail anyway; checkpoints and
/// proofs trust the stored nodes, and this is what catches a tree patched to hide
/// rewritten records.
///
/// # Errors
/// On store failure, or a malformed record hash.
pub fn verify_stored(tx: &Tx<'_>) -> Result<Option<String>> {
    let hashes: Vec<(u64, String)> = tx
        .query("SELECT seq, hash FROM audit ORDER BY seq", &[])?
        .iter()
        .map(|r| Ok((r.get("seq")?, r.get("hash")?)))
        .collect::<Result<_>>()?;
    let mut level_nodes = leaves_of(&hashes)?;
    let mut expected: std::collections::BTreeMap<(u32, u64), Hash> = Default::default();
    let mut level = 0u32;
    while !level_nodes.is_empty() {
        for (idx, hash) in level_nodes.iter().enumerate() {
            expected.insert((level, idx as u64), *hash);
        }
        level_nodes = level_nodes
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
        level += 1;
    }
    let mut stored: std::collections::BTreeMap<(u32, u64), Hash> = Default::default();
    for row in tx.query("SELECT level, idx, hash FROM audit_tree", &[])? {
        let level: u32 = row.get("level")?;
        let idx: u64 = row.get("idx")?;
        let bytes: Vec<u8> = row.get("hash")?;
        let Ok(hash) = Hash::try_from(bytes) else {
            return Ok(Some(format!(
                "audit tree node ({level}, {idx}) is not 32 bytes"
            )));
        };
        stored.insert((level, idx), hash);
    }
    for (key, hash) in &stored {
        match expected.get(key) {
            Some(h) if h == hash => {}
            Some(_) => {
                return Ok(Some(format!(
                    "the stored Merkle tree's node {key:?} is not the hash of the records under \
                     it: the tree or the trail was rewritten"
                )));
            }
            None => {
                return Ok(Some(format!(
                    "the stored Merkle tree has a node {key:?} beyond the trail's records"
                )));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use shuyu_verify::checkpoint as verify;

    use super::*;
    use crate::store::Store;
    use crate::store::testing::{each_backend, tamper};

    fn append(store: &Store, count: u64) {
        let log = store.audit_log().clone();
        // Appended as the store appends, in one transaction for speed.
        tamper(store, |tx| {
            for i in 0..count {
                let entry = crate::audit::trail::system_entry(
                    "test",
                    "tree",
                    serde_json::json!({ "i": i }),
                );
                log.append(tx, &entry)?;
            }
            Ok(())
        });
    }

    fn all_leaves(store: &Store) -> Vec<Hash> {
        let hashes = store
            .read(|tx| record_hashes(tx, 1, i64::MAX as u64))
            .unwrap();
        leaves_of(&hashes).unwrap()
    }

    fn all_nodes(store: &Store) -> Vec<(i64, i64, Vec<u8>)> {
        store
            .read(|tx| {
                tx.query(
                    "SELECT level, idx, hash FROM audit_tree ORDER BY level, idx",
                    &[],
                )?
                .iter()
                .map(|r| Ok((r.get("level")?, r.get("idx")?, r.get("hash")?)))
                .collect()
            })
            .unwrap()
    }

    /// Every root and proof of every size up to the trail's, against the functions that
    /// recompute them from all leaves, and the verifiers.
    fn check_sizes(store: &Store, sizes: impl IntoIterator<Item = u64>) {
        let leaves = all_leaves(store);
        for n in sizes {
            let nu = n as usize;
            let expected_root = verify::root(&leaves[..nu]);
            let (got_root, proofs) = store
                .read(|tx| {
                    let r = root(tx, n)?;
                    let mut proofs = Vec::new();
                    for i in 0..n {
                        proofs.push((inclusion_proof(tx, i, n)?, consistency_proof(tx, i, n)?));
                    }
                    Ok((r, proofs))
                })
                .unwrap();
            assert_eq!(got_root, expected_root, "root of {n}");
            for (i, (inclusion, consistency)) in (0..n).zip(proofs) {
                let iu = i as usize;
                assert_eq!(
                    inclusion,
                    verify::inclusion_proof(iu, &leaves[..nu]),
                    "inclusion of {i} in {n}"
                );
                assert!(verify::verify_inclusion(
                    i,
                    n,
                    &leaves[iu],
                    &inclusion,
                    &expected_root
                ));
                assert_eq!(
                    consistency,
                    verify::consistency_proof(iu, &leaves[..nu]),
                    "consistency of {i} with {n}"
                );
                if i > 0 {
                    assert!(verify::verify_consistency(
                        i,
                        n,
                        &verify::root(&leaves[..iu]),
                        &expected_root,
                        &consistency
                    ));
                }
            }
        }
    }

    #[test]
    fn stored_roots_and_proofs_equal_those_of_all_leaves() {
        each_backend(|store| {
            // Opening a store may append records (the genesis of bindings); count from there.
            let start = store.read(size).unwrap();
            append(store, 70 - start);
            assert_eq!(store.read(size).unwrap(), 70);
            check_sizes(store, 1..=70);
            // Every stored node is a perfect subtree: 2n - popcount(n) of them.
            assert_eq!(all_nodes(store).len(), 2 * 70 - 70u64.count_ones() as usize);
            // Nothing missing, nothing to fill.
            assert_eq!(crate::domain::backfill_audit_tree(store).unwrap(), 0);
            // Out of range: no proof; the empty tree's root.
            store
                .read(|tx| {
                    assert!(inclusion_proof(tx, 70, 70)?.is_empty());
                    assert!(consistency_proof(tx, 0, 70)?.is_empty());
                    assert!(consistency_proof(tx, 71, 70)?.is_empty());
                    assert_eq!(root(tx, 0)?, verify::root(&[]));
                    assert!(root(tx, 71).is_err());
                    Ok(())
                })
                .unwrap();
        });
    }

    #[test]
    fn larger_trees_agree_too() {
        let store = crate::store::testing::sqlite();
        let start = store.read(size).unwrap();
        append(&store, 1100 - start);
        let leaves = all_leaves(&store);
        for n in [127u64, 128, 129, 511, 512, 1000, 1024, 1025, 1100] {
            let nu = n as usize;
            let want = verify::root(&leaves[..nu]);
            store
                .read(|tx| {
                    assert_eq!(root(tx, n)?, want, "root of {n}");
                    for i in [0, 1, n / 3, n / 2, n - 2, n - 1] {
                        let iu = i as usize;
                        let proof = inclusion_proof(tx, i, n)?;
                        assert_eq!(proof, verify::inclusion_proof(iu, &leaves[..nu]));
                        assert!(verify::verify_inclusion(i, n, &leaves[iu], &proof, &want));
                        let proof = consistency_proof(tx, i + 1, n)?;
                        assert_eq!(proof, verify::consistency_proof(iu + 1, &leaves[..nu]));
                        assert!(verify::verify_consistency(
                            i + 1,
                            n,
                            &verify::root(&leaves[..=iu]),
                            &want,
                            &proof
                        ));
                    }
                    Ok(())
                })
                .unwrap();
        }
    }

    #[test]
    fn a_trail_appended_without_the_tree_is_filled_in_with_the_same_nodes() {
        each_backend(|store| {
            let start = store.read(size).unwrap();
            append(store, 45 - start);
            let whole = all_nodes(store);
            // A trail written by a version without the tree: no node at all.
            tamper(store, |tx| Ok(tx.execute("DELETE FROM audit_tree", &[])?));
            // Still right, from the records (only slower).
            check_sizes(store, [1, 2, 3, 17, 32, 45]);
            // An append before the fill writes its leaf and stops at a missing sibling.
            append(store, 2);
            assert_eq!(all_nodes(store).len(), 2);
            assert_eq!(crate::domain::backfill_audit_tree(store).unwrap(), 47);
            append(store, 1);
            let filled = all_nodes(store);
            // The nodes of the first 45 records are those written while appending them.
            let within = |nodes: &[(i64, i64, Vec<u8>)]| -> Vec<(i64, i64, Vec<u8>)> {
                nodes
                    .iter()
                    .filter(|(level, idx, _)| ((idx + 1) << level) <= 45)
                    .cloned()
                    .collect()
            };
            assert_eq!(within(&filled), whole);
            assert_eq!(filled.len(), 2 * 48 - 48u64.count_ones() as usize);
            check_sizes(store, 1..=48);
            assert_eq!(crate::domain::backfill_audit_tree(store).unwrap(), 0);
        });
    }

    #[test]
    fn a_partial_tree_is_filled_from_its_first_missing_node_across_chunks() {
        let store = crate::store::testing::sqlite();
        let start = store.read(size).unwrap();
        let n = 2 * BACKFILL_CHUNK + 37;
        append(&store, n - start);
        let whole = all_nodes(&store);
        // Lose the nodes after the first 1024 records.
        tamper(&store, |tx| {
            Ok(tx.execute(
                "DELETE FROM audit_tree WHERE (idx + 1) * (1 << level) > 1024",
                &[],
            )?)
        });
        assert_eq!(
            crate::domain::backfill_audit_tree(&store).unwrap(),
            n - 1024
        );
        assert_eq!(all_nodes(&store), whole);
    }

    #[test]
    fn the_stored_tree_verifies_and_a_patched_node_does_not() {
        crate::store::testing::each_backend(|store| {
            for i in 0..11 {
                store
                    .record(&crate::audit::trail::system_entry(
                        if i == 0 {
                            crate::audit::trail::GENESIS_ACTION
                        } else {
                            "x"
                        },
                        "t",
                        serde_json::json!({"i": i}),
                    ))
                    .unwrap();
            }
            assert_eq!(store.read(verify_stored).unwrap(), None);
            crate::store::testing::tamper(store, |tx| {
                Ok(tx.execute(
                    "UPDATE audit_tree SET hash = ?1 WHERE level = 1 AND idx = 2",
                    params![vec![7u8; 32]],
                )?)
            });
            let found = store.read(verify_stored).unwrap().expect("a patched node");
            assert!(found.contains("(1, 2)"), "{found}");
        });
    }
}
