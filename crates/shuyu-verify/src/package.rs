//! Export packages, verified offline: a tar holding `manifest.json`, `manifest.sig` (Ed25519
//! over the manifest bytes, hex) and the result file the manifest names. [`verify`] checks
//! the signature under the domain's public signing key and the result file's size and hash;
//! the server writes packages with the [`Manifest`] types and file names of this module.

use std::io::Read;

use serde::{Deserialize, Serialize};
use shuyu_vault::{sha256_hex, verify_signature};

use crate::VerifyError;

/// The manifest's file name in a package.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The signature's file name in a package (hex Ed25519 over the manifest's bytes).
pub const SIGNATURE_FILE: &str = "manifest.sig";

/// The manifest format written by this version: a data product for one recipient.
pub const MANIFEST_FORMAT: &str = "shuyu-export/v3";
/// The quorum-review format without a product, still verified.
pub const MANIFEST_FORMAT_V2: &str = "shuyu-export/v2";
/// The single-reviewer format of earlier versions, still verified.
pub const MANIFEST_FORMAT_V1: &str = "shuyu-export/v1";

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
/// What failed: a package that is not one (or truncated), a manifest that does not parse or
/// names another key, a signature that does not verify, a result file that is not the one
/// the manifest names, a file too many.
pub fn verify(package: &[u8], expected_key: Option<&str>) -> Result<Verified, VerifyError> {
    let mut archive = tar::Archive::new(package);
    let mut files = std::collections::BTreeMap::new();
    for entry in archive
        .entries()
        .map_err(|e| VerifyError::NotAPackage(e.to_string()))?
    {
        let mut entry = entry.map_err(|e| VerifyError::NotAPackage(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| VerifyError::BadEntryName(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let declared = entry.header().size().unwrap_or(0);
        let mut bytes = Vec::new();
        if let Err(e) = entry.read_to_end(&mut bytes) {
            return Err(VerifyError::UnreadableEntry {
                name,
                reason: e.to_string(),
            });
        }
        if (bytes.len() as u64) < declared {
            return Err(VerifyError::Truncated(name));
        }
        if files.insert(name.clone(), bytes).is_some() {
            return Err(VerifyError::DuplicateEntry(name));
        }
    }
    let manifest_bytes = files
        .get(MANIFEST_FILE)
        .ok_or_else(|| VerifyError::MissingEntry(MANIFEST_FILE.to_owned()))?;
    let signature = files
        .get(SIGNATURE_FILE)
        .ok_or_else(|| VerifyError::MissingEntry(SIGNATURE_FILE.to_owned()))?;
    let manifest = parse_manifest(manifest_bytes)?;
    let key_hex = expected_key.unwrap_or(&manifest.domain_public_key);
    if let Some(expected) = expected_key
        && !expected.eq_ignore_ascii_case(&manifest.domain_public_key)
    {
        return Err(VerifyError::UntrustedKey);
    }
    let key = hex::decode(key_hex.trim()).map_err(|_| VerifyError::KeyNotHex)?;
    let signature = hex::decode(String::from_utf8_lossy(signature).trim())
        .map_err(|_| VerifyError::SignatureNotHex)?;
    verify_signature(&key, manifest_bytes, &signature)
        .map_err(|_| VerifyError::BadManifestSignature)?;
    let result = files
        .get(&manifest.result.name)
        .ok_or_else(|| VerifyError::MissingEntry(manifest.result.name.clone()))?;
    if result.len() as u64 != manifest.result.bytes || sha256_hex(result) != manifest.result.sha256
    {
        return Err(VerifyError::ResultMismatch(manifest.result.name.clone()));
    }
    let expected: std::collections::BTreeSet<&str> =
        [MANIFEST_FILE, SIGNATURE_FILE, manifest.result.name.as_str()]
            .into_iter()
            .collect();
    if let Some(extra) = files.keys().find(|k| !expected.contains(k.as_str())) {
        return Err(VerifyError::UnexpectedEntry(extra.clone()));
    }
    Ok(Verified { manifest })
}

/// A manifest of any format this version verifies, read as the current one (before its
/// signature is checked: [`verify`] checks it).
fn parse_manifest(bytes: &[u8]) -> Result<Manifest, VerifyError> {
    let parse_error = |e: serde_json::Error| VerifyError::ManifestUnparsable(e.to_string());
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(parse_error)?;
    Ok(match value.get("format").and_then(|f| f.as_str()) {
        Some(MANIFEST_FORMAT) => {
            let manifest: Manifest = serde_json::from_value(value).map_err(parse_error)?;
            if manifest.product.is_none() {
                return Err(VerifyError::NoProduct);
            }
            manifest
        }
        Some(MANIFEST_FORMAT_V2) => serde_json::from_value(value).map_err(parse_error)?,
        Some(MANIFEST_FORMAT_V1) => serde_json::from_value::<ManifestV1>(value)
            .map_err(parse_error)?
            .into(),
        other => {
            return Err(VerifyError::UnknownFormat(
                other.unwrap_or_default().to_owned(),
            ));
        }
    })
}

/// A complete manifest for tests (of this crate, and of the server's package writer with
/// the `test-support` feature): every field set, the result described by `result`.
#[cfg(any(test, feature = "test-support"))]
pub mod testing {
    use shuyu_vault::sha256_hex;

    use super::*;

    pub fn sample_manifest(result: &[u8]) -> Manifest {
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
}

#[cfg(test)]
mod tests {
    use shuyu_vault::SigningKey;

    use super::testing::sample_manifest;
    use super::*;

    fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// A package as the server writes it: the manifest (pretty JSON), its signature by
    /// `key`, the result file.
    fn package(m: &Manifest, result: &[u8], key: &SigningKey) -> Vec<u8> {
        let bytes = serde_json::to_vec_pretty(m).unwrap();
        let signature = hex::encode(key.sign(&bytes));
        tar(&[
            (MANIFEST_FILE, &bytes),
            (SIGNATURE_FILE, signature.as_bytes()),
            (m.result.name.as_str(), result),
        ])
    }

    /// A signing key and a manifest of `result` naming it.
    fn signed(result: &[u8]) -> (SigningKey, Manifest) {
        let (key, _) = SigningKey::generate().unwrap();
        let mut m = sample_manifest(result);
        m.domain_public_key = hex::encode(key.public_key());
        (key, m)
    }

    #[test]
    fn a_package_verifies_and_a_changed_result_does_not() {
        let (key, m) = signed(b"a,b\n1,2\n");
        let good = package(&m, b"a,b\n1,2\n", &key);
        let verified = verify(&good, Some(&m.domain_public_key)).unwrap();
        assert_eq!(verified.manifest, m);
        // The trusted key in upper case is the same key.
        assert!(verify(&good, Some(&m.domain_public_key.to_uppercase())).is_ok());
        let other = package(&m, b"a,b\n1,3\n", &key);
        assert_eq!(
            verify(&other, None),
            Err(VerifyError::ResultMismatch("result.csv".into()))
        );
        assert!(
            verify(&other, None)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
    }

    #[test]
    fn a_tampered_manifest_does_not_verify() {
        let (key, m) = signed(b"n\n12\n");
        let good = package(&m, b"n\n12\n", &key);
        // Another recipient, written over the signed bytes: the signature no longer holds.
        let bytes = serde_json::to_vec_pretty(&m).unwrap();
        let signature = hex::encode(key.sign(&bytes));
        let forged_manifest = bytes.replace_first(b"p_rcp", b"p_xyz");
        let forged = tar(&[
            (MANIFEST_FILE, &forged_manifest),
            (SIGNATURE_FILE, signature.as_bytes()),
            ("result.csv", b"n\n12\n"),
        ]);
        assert_eq!(
            verify(&forged, None),
            Err(VerifyError::BadManifestSignature)
        );
        // A signature that is not hex.
        let garbled = tar(&[
            (MANIFEST_FILE, &bytes),
            (SIGNATURE_FILE, b"not hex"),
            ("result.csv", b"n\n12\n"),
        ]);
        assert_eq!(verify(&garbled, None), Err(VerifyError::SignatureNotHex));
        // Manifest and result swapped for another consistent pair, old signature kept.
        let (_, mut other) = signed(b"n\n99\n");
        other.domain_public_key = m.domain_public_key.clone();
        let other_bytes = serde_json::to_vec_pretty(&other).unwrap();
        let swapped = tar(&[
            (MANIFEST_FILE, &other_bytes),
            (SIGNATURE_FILE, signature.as_bytes()),
            ("result.csv", b"n\n99\n"),
        ]);
        assert_eq!(
            verify(&swapped, None),
            Err(VerifyError::BadManifestSignature)
        );
        assert!(verify(&good, None).is_ok());
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let (key, m) = signed(b"x\n1\n");
        let good = package(&m, b"x\n1\n", &key);
        let (stranger, _) = SigningKey::generate().unwrap();
        let stranger_hex = hex::encode(stranger.public_key());
        // The caller trusts another domain's key: refused before any signature check.
        assert_eq!(
            verify(&good, Some(&stranger_hex)),
            Err(VerifyError::UntrustedKey)
        );
        // Signed by a stranger, naming the domain's key: the signature does not verify.
        let by_stranger = package(&m, b"x\n1\n", &stranger);
        assert_eq!(
            verify(&by_stranger, Some(&m.domain_public_key)),
            Err(VerifyError::BadManifestSignature)
        );
        assert_eq!(
            verify(&by_stranger, None),
            Err(VerifyError::BadManifestSignature)
        );
        // A stranger signing and naming its own key verifies only without a trusted key.
        let mut own = m.clone();
        own.domain_public_key = stranger_hex;
        let self_signed = package(&own, b"x\n1\n", &stranger);
        assert!(verify(&self_signed, None).is_ok());
        assert_eq!(
            verify(&self_signed, Some(&m.domain_public_key)),
            Err(VerifyError::UntrustedKey)
        );
        // A trusted key that is not hex.
        let mut odd = m.clone();
        odd.domain_public_key = "zz".into();
        assert_eq!(
            verify(&package(&odd, b"x\n1\n", &key), Some("zz")),
            Err(VerifyError::KeyNotHex)
        );
    }

    #[test]
    fn a_truncated_package_does_not_verify() {
        let result: Vec<u8> = (0..5000).map(|i| (i % 251) as u8).collect();
        let (key, m) = signed(&result);
        let good = package(&m, &result, &key);
        assert!(verify(&good, None).is_ok());
        // Cut inside the result file: its bytes end early.
        let cut = good.len() - 1024 - 2048;
        assert_eq!(
            verify(&good[..cut], None),
            Err(VerifyError::Truncated("result.csv".into()))
        );
        // Cut after the signature: the result file is missing.
        let manifest_len = serde_json::to_vec_pretty(&m).unwrap().len();
        let signature_blocks = 512 + 512;
        let after_signature = 512 + manifest_len.div_ceil(512) * 512 + signature_blocks;
        assert_eq!(
            verify(&good[..after_signature], None),
            Err(VerifyError::MissingEntry("result.csv".into()))
        );
        // Every cut before the result's last byte fails, and none panics (a cut in the
        // padding or the end-of-archive blocks loses nothing).
        let data_end = good.len() - 1024 - (result.len().div_ceil(512) * 512 - result.len());
        for len in (0..data_end).step_by(97) {
            assert!(verify(&good[..len], None).is_err(), "cut at {len}");
        }
        assert!(matches!(
            verify(b"", None),
            Err(VerifyError::MissingEntry(_))
        ));
    }

    #[test]
    fn extra_and_doubled_files_are_refused() {
        let (key, m) = signed(b"r\n");
        let bytes = serde_json::to_vec_pretty(&m).unwrap();
        let signature = hex::encode(key.sign(&bytes));
        let extra = tar(&[
            (MANIFEST_FILE, &bytes),
            (SIGNATURE_FILE, signature.as_bytes()),
            ("result.csv", b"r\n"),
            ("notes.txt", b"hi"),
        ]);
        assert_eq!(
            verify(&extra, None),
            Err(VerifyError::UnexpectedEntry("notes.txt".into()))
        );
        let doubled = tar(&[
            (MANIFEST_FILE, &bytes),
            (SIGNATURE_FILE, signature.as_bytes()),
            ("result.csv", b"r\n"),
            ("result.csv", b"s\n"),
        ]);
        assert_eq!(
            verify(&doubled, None),
            Err(VerifyError::DuplicateEntry("result.csv".into()))
        );
        let unsigned = tar(&[(MANIFEST_FILE, &bytes), ("result.csv", b"r\n")]);
        assert_eq!(
            verify(&unsigned, None),
            Err(VerifyError::MissingEntry(SIGNATURE_FILE.into()))
        );
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
            (MANIFEST_FILE, &bytes),
            (SIGNATURE_FILE, signature.as_bytes()),
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
            (MANIFEST_FILE, &bytes.replace_first(b"p_r", b"p_x")),
            (SIGNATURE_FILE, signature.as_bytes()),
            ("result.csv", result),
        ]);
        assert!(
            verify(&forged, None)
                .unwrap_err()
                .to_string()
                .contains("signature")
        );
    }

    #[test]
    fn a_quorum_package_from_before_products_still_verifies() {
        let (key, mut m) = signed(b"n\n12\n");
        m.format = MANIFEST_FORMAT_V2.into();
        m.product = None;
        let v2 = package(&m, b"n\n12\n", &key);
        // Written as v2 wrote it: no product key at all.
        assert!(!String::from_utf8_lossy(&v2).contains("\"product\""));
        let verified = verify(&v2, None).unwrap().manifest;
        assert_eq!(verified.format, MANIFEST_FORMAT_V2);
        assert_eq!(verified.product, None);
        // A v3 manifest must name its product.
        m.format = MANIFEST_FORMAT.into();
        let v3 = package(&m, b"n\n12\n", &key);
        assert_eq!(verify(&v3, None), Err(VerifyError::NoProduct));
        assert!(
            verify(&v3, None)
                .unwrap_err()
                .to_string()
                .contains("names no product")
        );
    }

    #[test]
    fn an_unknown_format_or_no_manifest_is_refused() {
        let (key, _) = SigningKey::generate().unwrap();
        let mut m = sample_manifest(b"x");
        m.format = "shuyu-export/v9".into();
        let v9 = package(&m, b"x", &key);
        assert_eq!(
            verify(&v9, None),
            Err(VerifyError::UnknownFormat("shuyu-export/v9".into()))
        );
        assert!(
            verify(&v9, None)
                .unwrap_err()
                .to_string()
                .contains("unknown manifest format")
        );
        let not_json = tar(&[(MANIFEST_FILE, b"{"), (SIGNATURE_FILE, b"00")]);
        assert!(matches!(
            verify(&not_json, None),
            Err(VerifyError::ManifestUnparsable(_))
        ));
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
