//! Stored packages and product copies opened for delivery (DownloadExport, Flight DoGet): a
//! chunk-sealed object is first read through once, chunk by chunk, to check that it is the
//! one recorded (the package's SHA-256, the copy's) and to find the data file inside the
//! package; it is then served chunk by chunk. Packages sealed whole by earlier versions are
//! read whole, within the per-request cap.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use shuyu_engine::{SealedFile, SealedSlice, object_context};
use shuyu_vault::Sha256Hasher;

use crate::error::{Result, ServerError};
use crate::exports::package;
use crate::exports::records::{ExportRecord, StoredCopy};
use crate::exports::rpc::ExportsRpc;

/// A stored object's plaintext, ready to be read.
#[derive(Debug, Clone)]
pub(crate) enum Opened {
    /// Chunk-sealed: read in place.
    Chunked(Arc<SealedFile>),
    /// Sealed whole by an earlier version: held (within the cap).
    Whole(Bytes),
}

impl Opened {
    /// Bytes of plaintext.
    pub fn len(&self) -> u64 {
        match self {
            Opened::Chunked(file) => file.plaintext_len(),
            Opened::Whole(bytes) => bytes.len() as u64,
        }
    }

    /// A forward reader over the plaintext.
    pub fn reader(&self) -> Box<dyn Read + Send> {
        match self {
            Opened::Chunked(file) => Box::new(file.reader()),
            Opened::Whole(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
        }
    }
}

/// A byte range of an opened object (a data file inside a package, or a whole copy).
#[derive(Debug, Clone)]
pub(crate) enum Slice {
    /// Inside a chunk-sealed object.
    Sealed(SealedSlice),
    /// Inside one held whole.
    Whole(Bytes),
}

impl Opened {
    /// `len` bytes from `offset`.
    pub fn slice(&self, offset: u64, len: u64) -> Slice {
        match self {
            Opened::Chunked(file) => Slice::Sealed(SealedSlice::new(Arc::clone(file), offset, len)),
            Opened::Whole(bytes) => {
                let end = (offset + len).min(bytes.len() as u64) as usize;
                Slice::Whole(bytes.slice((offset as usize).min(end)..end))
            }
        }
    }
}

/// A file inside a package: its name and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackageEntry {
    pub name: String,
    pub offset: u64,
    pub len: u64,
}

/// An export's package, checked, with where its data file is.
#[derive(Debug, Clone)]
pub(crate) struct OpenedPackage {
    pub opened: Opened,
    /// The data file (`result.parquet`, `result.csv`).
    pub data: PackageEntry,
}

impl OpenedPackage {
    /// Bytes of the package.
    pub fn len(&self) -> u64 {
        self.opened.len()
    }

    /// A forward reader over the package.
    pub fn reader(&self) -> Box<dyn Read + Send> {
        self.opened.reader()
    }
}

/// Reads until `buf` is full or the input ends; how much was read.
pub(crate) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

struct Tally<R: Read> {
    input: R,
    hasher: Sha256Hasher,
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads a package through: its SHA-256, and each entry's name, offset and length.
fn scan_package(opened: &Opened) -> std::io::Result<(String, Vec<PackageEntry>)> {
    let mut tally = Tally {
        input: std::io::BufReader::with_capacity(shuyu_engine::READ_CHUNK_BYTES, opened.reader()),
        hasher: Sha256Hasher::new(),
    };
    let mut entries = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut tally);
        for entry in archive.entries()? {
            let entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            entries.push(PackageEntry {
                name,
                offset: entry.raw_file_position(),
                len: entry.size(),
            });
        }
    }
    std::io::copy(&mut tally, &mut std::io::sink())?;
    Ok((tally.hasher.finish_hex(), entries))
}

/// The SHA-256 of an opened object's plaintext, read through in chunks.
fn scan_copy(opened: &Opened) -> std::io::Result<String> {
    shuyu_engine::sha256_of(opened.reader())
}

impl ExportsRpc {
    /// The object at `location`: chunk-sealed (opened in place with its data key, unwrapped
    /// by the tenant's KEK), or sealed whole by an earlier version (read whole, within the
    /// per-request cap).
    async fn open_sealed(&self, location: &str) -> Result<Opened> {
        let file = self.state.storage.open_file(location)?;
        let mut magic = [0u8; 16];
        let n = read_full(&mut &file, &mut magic)
            .map_err(|e| ServerError::from_io("reading a stored package", e))?;
        if package::is_chunked(&magic[..n]) {
            let envelope = Arc::clone(&self.state.envelope);
            let sealed = SealedFile::open(file, &object_context(location), |metadata| {
                envelope.unwrap_data_key(metadata)
            })?;
            return Ok(Opened::Chunked(Arc::new(sealed)));
        }
        let size = self.state.storage.size(location).await?;
        self.state
            .results
            .check(size, "a package sealed whole by an earlier version")?;
        let stored = self.state.storage.get(location).await?;
        let plain = package::open(&self.state.envelope, location, &stored)?;
        Ok(Opened::Whole(Bytes::from(plain)))
    }

    /// Whether the sealed object at `location` still decrypts, tried as far as its first
    /// chunk (termination's proof by trying): its data key must unwrap and its first chunk
    /// open. A package sealed whole by an earlier version is opened whole when it is within
    /// the per-request cap, else its data key is unwrapped.
    pub(crate) async fn first_chunk_opens(&self, location: &str) -> bool {
        let Ok(file) = self.state.storage.open_file(location) else {
            return false;
        };
        let mut magic = [0u8; 16];
        let Ok(n) = read_full(&mut &file, &mut magic) else {
            return false;
        };
        if package::is_chunked(&magic[..n]) {
            let envelope = Arc::clone(&self.state.envelope);
            return SealedFile::open(file, &object_context(location), |metadata| {
                envelope.unwrap_data_key(metadata)
            })
            .and_then(|sealed| sealed.check_first_chunk())
            .is_ok();
        }
        let within_cap = match self.state.storage.size(location).await {
            Ok(size) => self.state.results.check(size, "a package").is_ok(),
            Err(_) => return false,
        };
        if within_cap {
            return match self.state.storage.get(location).await {
                Ok(stored) => package::open(&self.state.envelope, location, &stored).is_ok(),
                Err(_) => false,
            };
        }
        let mut header = vec![0u8; 64 << 10];
        let Ok(n) = read_full(&mut &file, &mut header) else {
            return false;
        };
        package::whole_key_unwraps(&self.state.envelope, &header[..n])
    }

    /// The package of `export`, read through once to check that it is the one recorded.
    ///
    /// # Errors
    /// Internal when it is not (or does not open).
    pub(crate) async fn open_package(&self, export: &ExportRecord) -> Result<OpenedPackage> {
        let opened = self.open_sealed(&export.package_location).await?;
        let scanned = opened.clone();
        let (sha256, entries) = tokio::task::spawn_blocking(move || scan_package(&scanned))
            .await
            .map_err(|e| ServerError::internal(format!("reading a package: {e}")))?
            .map_err(|e| ServerError::internal(format!("a stored package does not read: {e}")))?;
        if sha256 != export.package_sha256 {
            return Err(ServerError::internal(
                "a stored package does not match its recorded hash",
            ));
        }
        let data = entries
            .into_iter()
            .find(|e| e.name != "manifest.json" && e.name != "manifest.sig")
            .ok_or_else(|| ServerError::internal("a stored package holds no data file"))?;
        Ok(OpenedPackage { opened, data })
    }

    /// A product's own Flight copy, read through once to check that it is the one recorded.
    ///
    /// # Errors
    /// Internal when it is not (or does not open).
    pub(crate) async fn open_copy(&self, copy: &StoredCopy) -> Result<Opened> {
        let opened = self.open_sealed(&copy.location).await?;
        let scanned = opened.clone();
        let sha256 = tokio::task::spawn_blocking(move || scan_copy(&scanned))
            .await
            .map_err(|e| ServerError::internal(format!("reading a product copy: {e}")))?
            .map_err(|e| ServerError::internal(format!("a product copy does not read: {e}")))?;
        if sha256 != copy.sha256 || opened.len() != copy.bytes {
            return Err(ServerError::internal(
                "a product's copy does not match its recorded hash",
            ));
        }
        Ok(opened)
    }
}
