//! Export packages: a tar holding `manifest.json`, `manifest.sig` (Ed25519 over the manifest
//! bytes, hex) and the result file. `verify` checks the signature and every hash offline.
//! At rest a package is sealed with a fresh data key wrapped by the tenant's KEK.

use std::io::Read;

use serde::{Deserialize, Serialize};
use shuyu_vault::{Envelope, SecretKey, SigningKey, sha256_hex, verify_signature};

use crate::error::{Result, ServerError};

/// The signed manifest of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `shuyu-export/v1`.
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
    pub reviewer_id: String,
    pub review_comment: String,
    pub requested_at_ms: i64,
    pub approved_at_ms: i64,
    pub result: ManifestFile,
    /// Hex Ed25519 public key of the signing domain.
    pub domain_public_key: String,
}

/// An input dataset and the hash of the bytes it was ingested from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestDataset {
    pub id: String,
    pub name: String,
    pub source_sha256: String,
}

/// A check and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestCheck {
    pub name: String,
    pub passed: bool,
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

fn append(builder: &mut tar::Builder<Vec<u8>>, name: &str, bytes: &[u8], mtime: u64) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_cksum();
    builder
        .append_data(&mut header, name, bytes)
        .map_err(|e| ServerError::internal(format!("building the package: {e}")))
}

/// Builds and signs a package; returns its bytes.
///
/// # Errors
/// On serialisation failure.
pub fn build(manifest: &Manifest, result: &[u8], signing: &SigningKey) -> Result<Vec<u8>> {
    let manifest_bytes = serde_json::to_vec_pretty(manifest).map_err(ServerError::internal)?;
    let signature = hex::encode(signing.sign(&manifest_bytes));
    let mtime = (manifest.approved_at_ms / 1000).max(0) as u64;
    let mut builder = tar::Builder::new(Vec::new());
    append(&mut builder, MANIFEST, &manifest_bytes, mtime)?;
    append(&mut builder, SIGNATURE, signature.as_bytes(), mtime)?;
    append(&mut builder, &manifest.result.name, result, mtime)?;
    builder
        .into_inner()
        .map_err(|e| ServerError::internal(format!("building the package: {e}")))
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
}

/// Verifies a package offline: the manifest's signature under `expected_key` (hex; the key in
/// the manifest when `None`), and the result file's size and hash.
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
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| format!("the manifest does not parse: {e}"))?;
    if manifest.format != "shuyu-export/v1" {
        return Err(format!("unknown manifest format '{}'", manifest.format));
    }
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

/// Seals a package for storage.
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

/// Opens a sealed package.
///
/// # Errors
/// If it is malformed or does not decrypt.
pub fn open(envelope: &Envelope, location: &str, stored: &[u8]) -> Result<Vec<u8>> {
    let bad = || ServerError::internal("a stored package is malformed");
    let rest = stored.strip_prefix(MAGIC).ok_or_else(bad)?;
    let (len, rest) = rest.split_at_checked(4).ok_or_else(bad)?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| bad())?) as usize;
    let (metadata, sealed) = rest.split_at_checked(len).ok_or_else(bad)?;
    let key: SecretKey = envelope.unwrap_data_key(metadata)?;
    Ok(key
        .open(format!("shuyu-package:{location}").as_bytes(), sealed)?
        .to_vec())
}
