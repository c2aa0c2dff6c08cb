//! Signed checkpoints of the audit trail (R27, R33): an RFC 6962 Merkle tree over the audit
//! records (leaf data = a record's 32-byte hash), its inclusion and consistency proofs, and
//! the checkpoint as a C2SP `tlog-checkpoint` body signed as a C2SP `signed-note` with the
//! domain's Ed25519 key.
//!
//! An outside party keeps a checkpoint; later it asks for a newer one and a consistency proof
//! between the two sizes, and verifies both offline with the domain's published key: a trail
//! rewritten before the earlier size no longer proves consistent.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};
use shuyu_vault::SigningKey;

use crate::error::{Result, ServerError};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// Stored checkpoints (taken periodically and on demand).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tree_size INTEGER PRIMARY KEY, root_hash TEXT NOT NULL, note TEXT NOT NULL,
    at_ms INTEGER NOT NULL);
";

/// RFC 6962 leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The Merkle tree hash of `leaves` (already leaf-hashed).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index` in the tree of `leaves` (RFC 6962 2.1.1).
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut path = inclusion_proof(index, &leaves[..k]);
        path.push(root(&leaves[k..]));
        path
    } else {
        let mut path = inclusion_proof(index - k, &leaves[k..]);
        path.push(root(&leaves[..k]));
        path
    }
}

/// The consistency proof from the tree of the first `m` leaves to the tree of all `leaves`
/// (RFC 6962 2.1.2).
pub fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn sub(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete {
                Vec::new()
            } else {
                vec![root(leaves)]
            };
        }
        let k = split(n);
        if m <= k {
            let mut p = sub(m, &leaves[..k], complete);
            p.push(root(&leaves[k..]));
            p
        } else {
            let mut p = sub(m - k, &leaves[k..], false);
            p.push(root(&leaves[..k]));
            p
        }
    }
    if m == 0 || m > leaves.len() {
        return Vec::new();
    }
    sub(m, leaves, true)
}

/// Verifies an inclusion proof (RFC 9162 2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Verifies a consistency proof between two tree sizes and their roots (RFC 9162 2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        // Every tree extends the empty tree.
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// A checkpoint's content (C2SP tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name: `shuyu-audit/<first 16 hex digits of the signing key>`.
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: Hash,
}

/// The origin line of a domain's audit log.
pub fn origin(public_key: &[u8; 32]) -> String {
    format!("shuyu-audit/{}", &hex::encode(public_key)[..16])
}

/// C2SP signed-note key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[..4].
fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, 0x01]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl Checkpoint {
    fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            B64.encode(self.root_hash)
        )
    }

    /// The signed note: body, blank line, one signature line by `key` named by the origin.
    pub fn sign(&self, key: &SigningKey) -> String {
        let body = self.body();
        let public = key.public_key();
        let mut blob = key_id(&self.origin, &public).to_vec();
        blob.extend_from_slice(&key.sign(body.as_bytes()));
        format!("{body}\n\u{2014} {} {}\n", self.origin, B64.encode(blob))
    }

    /// Parses a signed note and checks its signature by `public_key` (the domain's published
    /// key): the key's name must be the origin and its signature must verify.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn open(note: &str, public_key: &[u8]) -> std::result::Result<Checkpoint, String> {
        let (body, signatures) = note
            .split_once("\n\n")
            .ok_or("not a signed note: no blank line before the signatures")?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let origin = lines.next().unwrap_or_default().to_owned();
        let tree_size: u64 = lines
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or("the checkpoint's second line is not a tree size")?;
        let root_hash: Hash = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or("the checkpoint's third line is not a base64 SHA-256 root hash")?;
        if origin.is_empty() || !origin.starts_with("shuyu-audit/") {
            return Err("the checkpoint's origin is not a Shuyu audit log".into());
        }
        let wanted_id = key_id(&origin, public_key);
        let mut verified = false;
        for line in signatures.lines().filter(|l| !l.is_empty()) {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or("a signature line does not start with an em dash")?;
            let (name, sig) = rest
                .split_once(' ')
                .ok_or("a signature line lacks its signature")?;
            let blob = B64
                .decode(sig)
                .map_err(|_| "a signature is not base64".to_owned())?;
            if name != origin || blob.len() != 68 || blob[..4] != wanted_id {
                continue;
            }
            if shuyu_vault::verify_signature(public_key, body.as_bytes(), &blob[4..]).is_ok() {
                verified = true;
            } else {
                return Err("the checkpoint's signature does not verify".into());
            }
        }
        if !verified {
            return Err("the checkpoint carries no signature by this domain's key".into());
        }
        Ok(Checkpoint {
            origin,
            tree_size,
            root_hash,
        })
    }
}

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

/// A consistency proof as a text file: `shuyu-consistency-proof v1`, the two sizes, then one
/// base64 hash per line.
pub fn proof_to_text(old_size: u64, new_size: u64, proof: &[Hash]) -> String {
    let mut text = format!("shuyu-consistency-proof v1\n{old_size}\n{new_size}\n");
    for h in proof {
        text.push_str(&B64.encode(h));
        text.push('\n');
    }
    text
}

/// Parses [`proof_to_text`].
///
/// # Errors
/// A message naming what is malformed.
pub fn proof_from_text(text: &str) -> std::result::Result<(u64, u64, Vec<Hash>), String> {
    let mut lines = text.lines();
    if lines.next() != Some("shuyu-consistency-proof v1") {
        return Err("not a Shuyu consistency proof".into());
    }
    let mut size = || -> std::result::Result<u64, String> {
        lines
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| "a tree size is missing".to_owned())
    };
    let (old, new) = (size()?, size()?);
    let proof = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            B64.decode(l)
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| "a proof hash is not base64 of 32 bytes".to_owned())
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((old, new, proof))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6962 test leaves of certificate-transparency's merkle_tree_test.
    fn vector_leaves() -> Vec<Hash> {
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        inputs.iter().map(|d| leaf_hash(d)).collect()
    }

    fn h(text: &str) -> Hash {
        hex::decode(text).unwrap().try_into().unwrap()
    }

    #[test]
    fn roots_match_the_rfc6962_vectors() {
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = vector_leaves();
        for (n, want) in expected.iter().enumerate() {
            assert_eq!(hex::encode(root(&leaves[..=n])), *want, "tree of {}", n + 1);
        }
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn proofs_match_the_rfc6962_vectors() {
        let leaves = vector_leaves();
        assert_eq!(
            inclusion_proof(0, &leaves),
            [
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        assert_eq!(
            consistency_proof(1, &leaves),
            [
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        assert_eq!(
            consistency_proof(6, &leaves),
            [
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ]
        );
        assert_eq!(
            consistency_proof(2, &leaves[..5]),
            [
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ]
        );
    }

    #[test]
    fn every_proof_of_every_tree_up_to_33_leaves_verifies_and_a_wrong_one_does_not() {
        let leaves: Vec<Hash> = (0u32..33).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let r = root(tree);
            for (i, leaf) in tree.iter().enumerate() {
                let p = inclusion_proof(i, tree);
                assert!(
                    verify_inclusion(i as u64, n as u64, leaf, &p, &r),
                    "{i} in {n}"
                );
                assert!(!verify_inclusion(
                    i as u64,
                    n as u64,
                    &leaf_hash(b"x"),
                    &p,
                    &r
                ));
            }
            for m in 1..=n {
                let p = consistency_proof(m, tree);
                let old = root(&tree[..m]);
                assert!(
                    verify_consistency(m as u64, n as u64, &old, &r, &p),
                    "{m} to {n}"
                );
                if m < n {
                    // A rewritten early leaf: the old root no longer matches.
                    let mut rewritten = tree.to_vec();
                    rewritten[0] = leaf_hash(b"rewritten");
                    let p = consistency_proof(m, &rewritten);
                    assert!(
                        !verify_consistency(m as u64, n as u64, &old, &root(&rewritten), &p),
                        "rewritten {m} to {n}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_signed_note_opens_with_the_domain_key_only() {
        let (key, _) = SigningKey::generate().unwrap();
        let checkpoint = Checkpoint {
            origin: origin(&key.public_key()),
            tree_size: 8,
            root_hash: root(&vector_leaves()),
        };
        let note = checkpoint.sign(&key);
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[1], "8");
        assert_eq!(lines[2], "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=");
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} shuyu-audit/"));
        assert_eq!(Checkpoint::open(&note, &key.public_key()), Ok(checkpoint));
        let (other, _) = SigningKey::generate().unwrap();
        assert!(Checkpoint::open(&note, &other.public_key()).is_err());
        let forged = note.replacen("\n8\n", "\n9\n", 1);
        assert!(Checkpoint::open(&forged, &key.public_key()).is_err());
    }

    #[test]
    fn proof_text_round_trips() {
        let leaves = vector_leaves();
        let p = consistency_proof(3, &leaves);
        assert_eq!(
            proof_from_text(&proof_to_text(3, 8, &p)),
            Ok((3, 8, p.clone()))
        );
        assert!(proof_from_text("nonsense").is_err());
    }
}
