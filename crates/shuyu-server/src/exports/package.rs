//! Export packages: a tar holding `manifest.json`, `manifest.sig` (Ed25519 over the manifest
//! bytes, hex) and the result file. `verify` checks the signature and every hash offline.
//! At rest a package is sealed with a fresh data key wrapped by the tenant's KEK: chunk by
//! chunk (`shuyu_vault::ChunkSealer`), so that it is written ([`write`], [`sealer`]), hashed
//! and delivered as a stream; packages sealed whole by earlier versions still open
//! ([`open`]).

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use shuyu_vault::{
    CHUNKED_MAGIC, ChunkOpener, ChunkSealer, ChunkedHeader, DEFAULT_CHUNK_BYTES, Envelope,
    SecretKey, Sha256Hasher, SigningKey, sha256_hex, verify_signature,
};

use crate::error::{Result, ServerError};

/// The manifest format written by this version: a data product for one recipient.
pub const MANIFEST_FORMAT: &str = "shuyu-export/v3";
/// The quorum-review format without a product, still verified.
const MANIFEST_FORMAT_V2: &str = "shuyu-export/v2";
/// The single-reviewer format of earlier versions, still verified.
const MANIFEST_FORMAT_V1: &str = "shuyu-export/v1";

/// The signed manifest of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    pub export_id: String,
    pub job_id: String,
    pub tenant_id: String,
    /// Hex SHA-256 of the query as submitted (SQL text or Substrait plan bytes).
    pub query_sha256: String,
    /// "sql" or "substrait".
    pub query_kind: String,
    /// The scenario the job ran under (R11).
    pub scenario_id: String,
    pub input_datasets: Vec<ManifestDataset>,
    pub policy_version: String,
    pub checks: Vec<ManifestCheck>,
    pub purpose: String,
    pub requester_id: String,
    /// Approvals the policy required.
    pub quorum: u64,
    /// The approvals that reached the quorum, each with what it was cast on.
    pub approvals: Vec<ManifestApproval>,
    pub requested_at_ms: i64,
    pub approved_at_ms: i64,
    pub result: ManifestFile,
    /// Hex Ed25519 public key of the signing domain.
    pub domain_public_key: String,
    /// The registered product (from `shuyu-export/v3`): whom it is for, what for, until
    /// when, on what price basis, and how the recipient's copy is marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<ManifestProduct>,
}

/// What an export is as a data product (R21, R23, R24).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestProduct {
    pub recipient_id: String,
    pub recipient_organisation: String,
    /// What the recipient may use it for; nothing else, and no passing on (R23).
    pub permitted_use: String,
    pub expires_at_ms: i64,
    pub scenario_id: String,
    /// `public_governance`, `public_welfare` or `commercial`.
    pub scenario_category: String,
    pub price_basis: ManifestPrice,
    /// Hex HMAC-SHA256 over (export id, recipient id) under a domain key; also in the result
    /// file's metadata (Parquet) and, through a key derived from it, in its row order.
    pub fingerprint: String,
    /// How the rows are ordered: `keyed-by-fingerprint/v1`.
    pub row_order: String,
    /// Count cells were rounded to the nearest multiple of this (0: not rounded).
    pub round_counts_to: u64,
    /// Columns whose pseudonyms are keyed for this recipient.
    pub rekeyed_columns: Vec<String>,
}

/// The price basis filed with a product (amounts in fen, 1/100 yuan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestPrice {
    pub free: bool,
    pub currency: String,
    pub per_10k_rows_fen: u64,
    pub per_download_fen: u64,
    pub rows: u64,
    pub rows_charge_fen: u64,
}

/// An input dataset and the hash of the bytes it was ingested from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestDataset {
    pub id: String,
    pub name: String,
    pub source_sha256: String,
}

/// A check and its outcome: `pass` or `review` (a refused export has no package).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestCheck {
    pub name: String,
    pub outcome: String,
}

/// One reviewer's approval and what it bound to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestApproval {
    pub reviewer_id: String,
    /// The reviewer's shared comment (private notes never leave the domain).
    pub comment: String,
    pub approved_at_ms: i64,
    pub result_sha256: String,
    pub query_sha256: String,
    pub policy_version: String,
}

/// The manifest of a single-reviewer package (`shuyu-export/v1`).
#[derive(Debug, Clone, Deserialize)]
struct ManifestV1 {
    export_id: String,
    job_id: String,
    tenant_id: String,
    query_sha256: String,
    query_kind: String,
    scenario_id: String,
    input_datasets: Vec<ManifestDataset>,
    policy_version: String,
    checks: Vec<ManifestCheckV1>,
    purpose: String,
    requester_id: String,
    reviewer_id: String,
    review_comment: String,
    requested_at_ms: i64,
    approved_at_ms: i64,
    result: ManifestFile,
    domain_public_key: String,
}

#[derive(Debug, Clone, Deserialize)]
struct ManifestCheckV1 {
    name: String,
    passed: bool,
}

impl From<ManifestV1> for Manifest {
    /// The one reviewer becomes the one approval of a quorum of one; it bound to what the
    /// manifest itself names.
    fn from(m: ManifestV1) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT_V1.to_owned(),
            approvals: vec![ManifestApproval {
                reviewer_id: m.reviewer_id,
                comment: m.review_comment,
                approved_at_ms: m.approved_at_ms,
                result_sha256: String::new(),
                query_sha256: m.query_sha256.clone(),
                policy_version: m.policy_version.clone(),
            }],
            quorum: 1,
            export_id: m.export_id,
            job_id: m.job_id,
            tenant_id: m.tenant_id,
            query_sha256: m.query_sha256,
            query_kind: m.query_kind,
            scenario_id: m.scenario_id,
            input_datasets: m.input_datasets,
            policy_version: m.policy_version,
            checks: m
                .checks
                .into_iter()
                .map(|c| ManifestCheck {
                    name: c.name,
                    outcome: if c.passed { "pass" } else { "fail" }.to_owned(),
                })
                .collect(),
            purpose: m.purpose,
            requester_id: m.requester_id,
            requested_at_ms: m.requested_at_ms,
            approved_at_ms: m.approved_at_ms,
            result: m.result,
            domain_public_key: m.domain_public_key,
            product: None,
        }
    }
}

/// The result file in the package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: u64,
}

const MANIFEST: &str = "manifest.json";
const SIGNATURE: &str = "manifest.sig";
const MAGIC: &[u8] = b"SHUYUPKG1\n";

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
    mtime: u64,
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_cksum();
    builder
        .append_data(&mut header, name, data)
        .map_err(|e| ServerError::internal(format!("building the package: {e}")))
}

/// A package written: the SHA-256 and length of its bytes (the tar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Hex SHA-256.
    pub sha256: String,
    /// Bytes.
    pub bytes: u64,
}

/// A writer that hashes and counts what it passes on.
struct Tee<W: Write> {
    out: W,
    hasher: Sha256Hasher,
    bytes: u64,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A reader that hashes and counts what it yields.
struct Tally<R: Read> {
    input: R,
    hasher: Sha256Hasher,
    bytes: u64,
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Signs `manifest` and writes the package into `out` as a stream: the manifest, its
/// signature, then the result file read from `data`, which must be exactly the
/// `manifest.result.bytes` bytes whose SHA-256 is `manifest.result.sha256` (checked as they
/// pass; on a mismatch the caller must discard what was written).
///
/// # Errors
/// On serialisation or write failure, or when `data` is not the file the manifest names.
pub fn write<W: Write>(
    manifest: &Manifest,
    data: impl Read,
    signing: &SigningKey,
    out: W,
) -> Result<(W, Written)> {
    let manifest_bytes = serde_json::to_vec_pretty(manifest).map_err(ServerError::internal)?;
    let signature = hex::encode(signing.sign(&manifest_bytes));
    let mtime = (manifest.approved_at_ms / 1000).max(0) as u64;
    let mut builder = tar::Builder::new(Tee {
        out,
        hasher: Sha256Hasher::new(),
        bytes: 0,
    });
    append(
        &mut builder,
        MANIFEST,
        manifest_bytes.len() as u64,
        manifest_bytes.as_slice(),
        mtime,
    )?;
    append(
        &mut builder,
        SIGNATURE,
        signature.len() as u64,
        signature.as_bytes(),
        mtime,
    )?;
    let mut data = Tally {
        input: data.take(manifest.result.bytes),
        hasher: Sha256Hasher::new(),
        bytes: 0,
    };
    append(
        &mut builder,
        &manifest.result.name,
        manifest.result.bytes,
        &mut data,
        mtime,
    )?;
    if data.bytes != manifest.result.bytes || data.hasher.finish_hex() != manifest.result.sha256 {
        return Err(ServerError::internal(
            "the result file read for the package is not the one its manifest names",
        ));
    }
    let tee = builder
        .into_inner()
        .map_err(|e| ServerError::internal(format!("building the package: {e}")))?;
    let written = Written {
        sha256: tee.hasher.finish_hex(),
        bytes: tee.bytes,
    };
    Ok((tee.out, written))
}

/// Builds and signs a package in memory; returns its bytes (for small packages and tests;
/// the server streams with [`write`]).
///
/// # Errors
/// On serialisation failure.
pub fn build(manifest: &Manifest, result: &[u8], signing: &SigningKey) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let manifest_bytes = serde_json::to_vec_pretty(manifest).map_err(ServerError::internal)?;
    let signature = hex::encode(signing.sign(&manifest_bytes));
    let mtime = (manifest.approved_at_ms / 1000).max(0) as u64;
    let mut builder = tar::Builder::new(&mut out);
    for (name, bytes) in [
        (MANIFEST, manifest_bytes.as_slice()),
        (SIGNATURE, signature.as_bytes()),
        (manifest.result.name.as_str(), result),
    ] {
        append(&mut builder, name, bytes.len() as u64, bytes, mtime)?;
    }
    builder
        .finish()
        .map_err(|e| ServerError::internal(format!("building the package: {e}")))?;
    drop(builder);
    Ok(out)
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
}

/// Verifies a package offline: the manifest's signature under `expected_key` (hex; the key in
/// the manifest when `None`), and the result file's size and hash. Packages of the
/// single-reviewer format (`shuyu-export/v1`) verify too, read as a quorum of one, and so do
/// packages of the quorum review from before products (`shuyu-export/v2`, no product).
///
/// # Errors
/// A message saying what failed.
pub fn verify(package: &[u8], expected_key: Option<&str>) -> std::result::Result<Verified, String> {
    let mut archive = tar::Archive::new(package);
    let mut files = std::collections::BTreeMap::new();
    for entry in archive
        .entries()
        .map_err(|e| format!("not a Shuyu export package: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("not a Shuyu export package: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| format!("bad entry name: {e}"))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading {name}: {e}"))?;
        if files.insert(name.clone(), bytes).is_some() {
            return Err(format!("the package holds {name} twice"));
        }
    }
    let manifest_bytes = files
        .get(MANIFEST)
        .ok_or("the package has no manifest.json")?;
    let signature = files
        .get(SIGNATURE)
        .ok_or("the package has no manifest.sig")?;
    let parse_error = |e: serde_json::Error| format!("the manifest does not parse: {e}");
    let value: serde_json::Value = serde_json::from_slice(manifest_bytes).map_err(parse_error)?;
    let manifest: Manifest = match value.get("format").and_then(|f| f.as_str()) {
        Some(MANIFEST_FORMAT) => {
            let manifest: Manifest = serde_json::from_value(value).map_err(parse_error)?;
            if manifest.product.is_none() {
                return Err(format!("a {MANIFEST_FORMAT} manifest names no product"));
            }
            manifest
        }
        Some(MANIFEST_FORMAT_V2) => serde_json::from_value(value).map_err(parse_error)?,
        Some(MANIFEST_FORMAT_V1) => serde_json::from_value::<ManifestV1>(value)
            .map_err(parse_error)?
            .into(),
        other => {
            return Err(format!(
                "unknown manifest format '{}'",
                other.unwrap_or_default()
            ));
        }
    };
    let key_hex = expected_key.unwrap_or(&manifest.domain_public_key);
    if let Some(expected) = expected_key
        && !expected.eq_ignore_ascii_case(&manifest.domain_public_key)
    {
        return Err("the manifest names a different signing key than the trusted one".into());
    }
    let key = hex::decode(key_hex.trim()).map_err(|_| "the signing key is not hex".to_owned())?;
    let signature = hex::decode(String::from_utf8_lossy(signature).trim())
        .map_err(|_| "the signature is not hex".to_owned())?;
    verify_signature(&key, manifest_bytes, &signature)
        .map_err(|_| "the manifest signature does not verify".to_owned())?;
    let result = files
        .get(&manifest.result.name)
        .ok_or_else(|| format!("the package has no {}", manifest.result.name))?;
    if result.len() as u64 != manifest.result.bytes || sha256_hex(result) != manifest.result.sha256
    {
        return Err(format!(
            "{} does not match the hash in the manifest",
            manifest.result.name
        ));
    }
    let expected: std::collections::BTreeSet<&str> =
        [MANIFEST, SIGNATURE, manifest.result.name.as_str()]
            .into_iter()
            .collect();
    if let Some(extra) = files.keys().find(|k| !expected.contains(k.as_str())) {
        return Err(format!("the package holds an unexpected file {extra}"));
    }
    Ok(Verified { manifest })
}

/// A chunk sealer for the object stored at `location` (a package or a product's Flight copy),
/// under a fresh data key wrapped by KEK `kek_id`, writing into `out`.
///
/// # Errors
/// If the KEK is unavailable or the header cannot be written.
pub fn sealer<W: Write>(
    envelope: &Envelope,
    kek_id: &str,
    location: &str,
    out: W,
) -> Result<ChunkSealer<W>> {
    let (key, metadata) = envelope.new_data_key(kek_id)?;
    let header = ChunkedHeader {
        metadata,
        chunk_bytes: DEFAULT_CHUNK_BYTES,
    };
    ChunkSealer::new(out, key, &shuyu_engine::object_context(location), &header)
        .map_err(|e| ServerError::from_io("sealing an object", e))
}

/// Whether `stored` (the first bytes of an object suffice) is chunk-sealed, rather than
/// sealed whole by an earlier version.
pub fn is_chunked(stored: &[u8]) -> bool {
    stored.starts_with(CHUNKED_MAGIC)
}

/// Seals a package whole, as versions before chunked sealing did (for tests of the packages
/// they left).
///
/// # Errors
/// If the KEK is unavailable.
pub fn seal(envelope: &Envelope, kek_id: &str, location: &str, package: &[u8]) -> Result<Vec<u8>> {
    let (key, metadata) = envelope.new_data_key(kek_id)?;
    let sealed = key.seal(format!("shuyu-package:{location}").as_bytes(), package);
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + metadata.len() + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(metadata.len() as u32).to_be_bytes());
    out.extend_from_slice(&metadata);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Whether the data key of a package sealed whole (its first bytes in `start`) unwraps.
pub fn whole_key_unwraps(envelope: &Envelope, start: &[u8]) -> bool {
    let Some(rest) = start.strip_prefix(MAGIC) else {
        return false;
    };
    let Some((len, rest)) = rest.split_at_checked(4) else {
        return false;
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    match rest.split_at_checked(len) {
        Some((metadata, _)) => envelope.unwrap_data_key(metadata).is_ok(),
        None => false,
    }
}

/// Opens a sealed package (or Flight copy) held in memory, chunk-sealed or sealed whole.
///
/// # Errors
/// If it is malformed or does not decrypt.
pub fn open(envelope: &Envelope, location: &str, stored: &[u8]) -> Result<Vec<u8>> {
    let bad = || ServerError::internal("a stored package is malformed");
    if is_chunked(stored) {
        let mut input = stored;
        let header = ChunkedHeader::read_from(&mut input)?;
        let key = envelope.unwrap_data_key(&header.metadata)?;
        let mut plain = Vec::new();
        ChunkOpener::new(input, key, &shuyu_engine::object_context(location), &header)
            .read_to_end(&mut plain)
            .map_err(|e| ServerError::internal(format!("a stored package does not open: {e}")))?;
        return Ok(plain);
    }
    let rest = stored.strip_prefix(MAGIC).ok_or_else(bad)?;
    let (len, rest) = rest.split_at_checked(4).ok_or_else(bad)?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| bad())?) as usize;
    let (metadata, sealed) = rest.split_at_checked(len).ok_or_else(bad)?;
    let key: SecretKey = envelope.unwrap_data_key(metadata)?;
    Ok(key
        .open(format!("shuyu-package:{location}").as_bytes(), sealed)?
        .to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(result: &[u8]) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            export_id: "exp_1".into(),
            job_id: "job_1".into(),
            tenant_id: "t_1".into(),
            query_sha256: "q".repeat(64),
            query_kind: "sql".into(),
            scenario_id: "sc_1".into(),
            input_datasets: Vec::new(),
            policy_version: "p1".into(),
            checks: vec![ManifestCheck {
                name: "min_group_rows".into(),
                outcome: "review".into(),
            }],
            purpose: "test".into(),
            requester_id: "p_eng".into(),
            quorum: 2,
            approvals: ["p_a", "p_b"]
                .map(|id| ManifestApproval {
                    reviewer_id: id.into(),
                    comment: "ok".into(),
                    approved_at_ms: 1,
                    result_sha256: "r".repeat(64),
                    query_sha256: "q".repeat(64),
                    policy_version: "p1".into(),
                })
                .to_vec(),
            requested_at_ms: 1,
            approved_at_ms: 2,
            result: ManifestFile {
                name: "result.csv".into(),
                sha256: sha256_hex(result),
                bytes: result.len() as u64,
                rows: 1,
            },
            domain_public_key: String::new(),
            product: Some(ManifestProduct {
                recipient_id: "p_rcp".into(),
                recipient_organisation: "某市卫健委".into(),
                permitted_use: "区县卫生规划".into(),
                expires_at_ms: 3,
                scenario_id: "sc_1".into(),
                scenario_category: "public_welfare".into(),
                price_basis: ManifestPrice {
                    free: true,
                    currency: "CNY".into(),
                    per_10k_rows_fen: 0,
                    per_download_fen: 0,
                    rows: 1,
                    rows_charge_fen: 0,
                },
                fingerprint: "ab".repeat(32),
                row_order: "keyed-by-fingerprint/v1".into(),
                round_counts_to: 5,
                rekeyed_columns: Vec::new(),
            }),
        }
    }

    fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in files {
            append(&mut builder, name, bytes.len() as u64, *bytes, 0).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_streamed_package_is_the_built_one_and_refuses_another_file() {
        let (key, _) = SigningKey::generate().unwrap();
        let result = vec![7u8; 3000];
        let mut m = manifest(&result);
        m.domain_public_key = hex::encode(key.public_key());
        let built = build(&m, &result, &key).unwrap();
        let (streamed, written) = write(&m, result.as_slice(), &key, Vec::new()).unwrap();
        assert_eq!(streamed, built);
        assert_eq!(written.sha256, sha256_hex(&built));
        assert_eq!(written.bytes, built.len() as u64);
        assert!(verify(&streamed, None).is_ok());
        // A data file other than the manifest's (same length) is refused.
        let other = vec![8u8; 3000];
        assert!(write(&m, other.as_slice(), &key, Vec::new()).is_err());
        // So is a shorter one.
        assert!(write(&m, &result[..2000], &key, Vec::new()).is_err());
    }

    #[test]
    fn packages_sealed_in_chunks_and_whole_both_open() {
        #[derive(Debug)]
        struct OneKek(SecretKey);
        impl shuyu_vault::KekProvider for OneKek {
            fn kek(&self, _: &str) -> std::result::Result<SecretKey, shuyu_vault::VaultError> {
                Ok(self.0.clone())
            }
        }
        let envelope = Envelope::new(std::sync::Arc::new(OneKek(SecretKey::generate())));
        let package: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
        let mut sealer = sealer(&envelope, "tenant:t", "exports/t/e/p.pkg", Vec::new()).unwrap();
        sealer.write_all(&package).unwrap();
        let (chunked, _) = sealer.finish().unwrap();
        assert!(is_chunked(&chunked));
        assert_eq!(
            open(&envelope, "exports/t/e/p.pkg", &chunked).unwrap(),
            package
        );
        // Moved elsewhere, it does not open.
        assert!(open(&envelope, "exports/t/e/q.pkg", &chunked).is_err());
        let whole = seal(&envelope, "tenant:t", "exports/t/e/p.pkg", &package).unwrap();
        assert!(!is_chunked(&whole));
        assert_eq!(
            open(&envelope, "exports/t/e/p.pkg", &whole).unwrap(),
            package
        );
    }

    #[test]
    fn a_package_verifies_and_a_changed_result_does_not() {
        let (key, _) = SigningKey::generate().unwrap();
        let mut m = manifest(b"a,b\n1,2\n");
        m.domain_public_key = hex::encode(key.public_key());
        let package = build(&m, b"a,b\n1,2\n", &key).unwrap();
        let verified = verify(&package, Some(&m.domain_public_key)).unwrap();
        assert_eq!(verified.manifest, m);
        let other = build(&m, b"a,b\n1,3\n", &key).unwrap();
        assert!(verify(&other, None).unwrap_err().contains("does not match"));
    }

    #[test]
    fn a_single_reviewer_package_still_verifies_as_a_quorum_of_one() {
        let (key, _) = SigningKey::generate().unwrap();
        let result = b"n\n12\n";
        let v1 = serde_json::json!({
            "format": "shuyu-export/v1", "export_id": "exp_0", "job_id": "job_0",
            "tenant_id": "t_0", "query_sha256": "ab", "query_kind": "sql", "scenario_id": "sc_0",
            "input_datasets": [], "policy_version": "2026.11-1",
            "checks": [{"name": "min_group_rows", "passed": true}],
            "purpose": "p", "requester_id": "p_e", "reviewer_id": "p_r",
            "review_comment": "fine", "requested_at_ms": 1, "approved_at_ms": 2,
            "result": {"name": "result.csv", "sha256": sha256_hex(result), "bytes": result.len(),
                       "rows": 1},
            "domain_public_key": hex::encode(key.public_key()),
        });
        let bytes = serde_json::to_vec_pretty(&v1).unwrap();
        let signature = hex::encode(key.sign(&bytes));
        let package = tar(&[
            (MANIFEST, &bytes),
            (SIGNATURE, signature.as_bytes()),
            ("result.csv", result),
        ]);
        let verified = verify(&package, None).unwrap().manifest;
        assert_eq!(verified.format, "shuyu-export/v1");
        assert_eq!(verified.quorum, 1);
        assert_eq!(verified.approvals.len(), 1);
        assert_eq!(verified.approvals[0].reviewer_id, "p_r");
        assert_eq!(verified.checks[0].outcome, "pass");
        // Its signature still counts: a changed manifest does not verify.
        let forged = tar(&[
            (MANIFEST, &bytes.replace_first(b"p_r", b"p_x")),
            (SIGNATURE, signature.as_bytes()),
            ("result.csv", result),
        ]);
        assert!(verify(&forged, None).unwrap_err().contains("signature"));
    }

    #[test]
    fn a_quorum_package_from_before_products_still_verifies() {
        let (key, _) = SigningKey::generate().unwrap();
        let mut m = manifest(b"n\n12\n");
        m.format = MANIFEST_FORMAT_V2.into();
        m.product = None;
        m.domain_public_key = hex::encode(key.public_key());
        let package = build(&m, b"n\n12\n", &key).unwrap();
        // Written as v2 wrote it: no product key at all.
        assert!(!String::from_utf8_lossy(&package).contains("\"product\""));
        let verified = verify(&package, None).unwrap().manifest;
        assert_eq!(verified.format, MANIFEST_FORMAT_V2);
        assert_eq!(verified.product, None);
        // A v3 manifest must name its product.
        m.format = MANIFEST_FORMAT.into();
        let package = build(&m, b"n\n12\n", &key).unwrap();
        assert!(
            verify(&package, None)
                .unwrap_err()
                .contains("names no product")
        );
    }

    #[test]
    fn an_unknown_format_is_refused() {
        let (key, _) = SigningKey::generate().unwrap();
        let mut m = manifest(b"x");
        m.format = "shuyu-export/v9".into();
        let package = build(&m, b"x", &key).unwrap();
        assert!(
            verify(&package, None)
                .unwrap_err()
                .contains("unknown manifest format")
        );
    }

    trait ReplaceFirst {
        fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }

    impl ReplaceFirst for Vec<u8> {
        fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
            let at = self
                .windows(from.len())
                .position(|w| w == from)
                .expect("present");
            [&self[..at], to, &self[at + from.len()..]].concat()
        }
    }
}
