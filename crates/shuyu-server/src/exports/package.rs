//! Export packages: a tar holding `manifest.json`, `manifest.sig` (Ed25519 over the manifest
//! bytes, hex) and the result file, written here; `shuyu_verify::package` holds the manifest
//! types and checks the signature and every hash offline.
//! At rest a package is sealed with a fresh data key wrapped by the tenant's KEK: chunk by
//! chunk (`shuyu_vault::ChunkSealer`), so that it is written ([`write`], [`sealer`]), hashed
//! and delivered as a stream; packages sealed whole by earlier versions still open
//! ([`open`]).

use std::io::{Read, Write};

use shuyu_vault::{
    CHUNKED_MAGIC, ChunkOpener, ChunkSealer, ChunkedHeader, DEFAULT_CHUNK_BYTES, Envelope,
    SecretKey, Sha256Hasher, SigningKey,
};

use crate::error::{Result, ServerError};

// The manifest types, for the export service that fills them in.
use shuyu_verify::package::{MANIFEST_FILE as MANIFEST, SIGNATURE_FILE as SIGNATURE};
pub(crate) use shuyu_verify::package::{
    MANIFEST_FORMAT, Manifest, ManifestApproval, ManifestCheck, ManifestDataset, ManifestFile,
    ManifestPrice, ManifestProduct,
};

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
    use shuyu_vault::sha256_hex;
    use shuyu_verify::package::testing::sample_manifest;
    use shuyu_verify::package::verify;

    use super::*;

    #[test]
    fn a_streamed_package_is_the_built_one_and_refuses_another_file() {
        let (key, _) = SigningKey::generate().unwrap();
        let result = vec![7u8; 3000];
        let mut m = sample_manifest(&result);
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
}
