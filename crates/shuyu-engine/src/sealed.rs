//! Chunk-sealed objects (`shuyu_vault::ChunkSealer`) read in place: any byte range of the
//! plaintext is opened chunk by chunk on demand, so a package or a product copy of any size
//! is hashed, delivered or read as Parquet (a [`ChunkReader`]) holding a few chunks at a time.

use std::io::Read;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::{ChunkReader, Length};
use shuyu_vault::{ChunkedHeader, ChunkedLayout, SecretKey, VaultError};
use zeroize::Zeroizing;

use crate::error::EngineError;

/// A chunk's plaintext, shared by the readers that need it.
type OpenChunk = Arc<Zeroizing<Vec<u8>>>;

/// A stored chunk-sealed object, opened for reading in place.
pub struct SealedFile {
    file: std::fs::File,
    key: SecretKey,
    context: Vec<u8>,
    header: ChunkedHeader,
    layout: ChunkedLayout,
    /// The last chunk opened (readers mostly move forward through one chunk at a time).
    last: Mutex<Option<(u64, OpenChunk)>>,
}

impl std::fmt::Debug for SealedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedFile")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

fn crypto(e: VaultError) -> EngineError {
    EngineError::Crypto(e.to_string())
}

impl SealedFile {
    /// Opens `file`, a chunk-sealed object bound to `context`, with the key `key_for` gives
    /// for its header's metadata.
    ///
    /// # Errors
    /// If it is not a chunk-sealed object, its length is not one such an object has, or the
    /// key cannot be had.
    pub fn open(
        file: std::fs::File,
        context: &[u8],
        key_for: impl FnOnce(&[u8]) -> Result<SecretKey, VaultError>,
    ) -> Result<SealedFile, EngineError> {
        let len = file
            .metadata()
            .map_err(|e| EngineError::Storage(e.to_string()))?
            .len();
        let mut start = &file;
        std::io::Seek::seek(&mut start, std::io::SeekFrom::Start(0))
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        let header = ChunkedHeader::read_from(&mut start).map_err(crypto)?;
        let layout = header.layout(len).map_err(crypto)?;
        let key = key_for(&header.metadata).map_err(crypto)?;
        Ok(SealedFile {
            file,
            key,
            context: context.to_vec(),
            header,
            layout,
            last: Mutex::new(None),
        })
    }

    /// Bytes of plaintext.
    pub fn plaintext_len(&self) -> u64 {
        self.layout.plaintext_len
    }

    /// The header's metadata.
    pub fn metadata(&self) -> &[u8] {
        &self.header.metadata
    }

    fn chunk(&self, index: u64) -> Result<OpenChunk, EngineError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, plain)) = last.as_ref()
            && *at == index
        {
            return Ok(Arc::clone(plain));
        }
        let (offset, len) = self.layout.chunk_range(index);
        let mut sealed = vec![0u8; len as usize];
        read_exact_at(&self.file, &mut sealed, offset)
            .map_err(|e| EngineError::Storage(format!("reading a sealed object: {e}")))?;
        let plain = Arc::new(
            self.layout
                .open_chunk(&self.key, &self.context, index, &sealed)
                .map_err(crypto)?,
        );
        *last = Some((index, Arc::clone(&plain)));
        Ok(plain)
    }

    /// Opens the first chunk (whatever the plaintext's length): whether the object decrypts.
    ///
    /// # Errors
    /// If it does not read or does not open.
    pub fn check_first_chunk(&self) -> Result<(), EngineError> {
        self.chunk(0).map(|_| ())
    }

    /// Up to `out.len()` bytes of plaintext from `offset` (fewer only at its end).
    ///
    /// # Errors
    /// If a chunk does not read or does not open.
    pub fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<usize, EngineError> {
        let end = (offset + out.len() as u64).min(self.layout.plaintext_len);
        let mut at = offset;
        while at < end {
            let index = at / self.layout.chunk_bytes;
            let chunk = self.chunk(index)?;
            let from = (at - index * self.layout.chunk_bytes) as usize;
            let n = ((end - at) as usize).min(chunk.len() - from);
            let written = (at - offset) as usize;
            out[written..written + n].copy_from_slice(&chunk[from..from + n]);
            at += n as u64;
        }
        Ok((end.saturating_sub(offset)) as usize)
    }

    /// The whole plaintext as a forward reader (a chunk at a time).
    pub fn reader(self: &Arc<Self>) -> SealedCursor {
        SealedSlice::new(Arc::clone(self), 0, self.plaintext_len()).cursor(0)
    }
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// A byte range of a sealed object's plaintext (a file inside a package, or all of it).
#[derive(Debug, Clone)]
pub struct SealedSlice {
    file: Arc<SealedFile>,
    offset: u64,
    len: u64,
}

impl SealedSlice {
    /// `len` bytes of `file`'s plaintext from `offset`.
    pub fn new(file: Arc<SealedFile>, offset: u64, len: u64) -> SealedSlice {
        SealedSlice { file, offset, len }
    }

    /// Bytes in the slice.
    pub fn byte_len(&self) -> u64 {
        self.len
    }

    /// A forward reader from `start` within the slice.
    pub fn cursor(&self, start: u64) -> SealedCursor {
        SealedCursor {
            slice: self.clone(),
            pos: start.min(self.len),
        }
    }
}

impl Length for SealedSlice {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for SealedSlice {
    type T = SealedCursor;

    fn get_read(&self, start: u64) -> parquet::errors::Result<SealedCursor> {
        Ok(self.cursor(start))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if start + length as u64 > self.len {
            return Err(parquet::errors::ParquetError::EOF(
                "a read past the end of a sealed file".into(),
            ));
        }
        let mut out = vec![0u8; length];
        let n = self
            .file
            .read_at(self.offset + start, &mut out)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
        out.truncate(n);
        Ok(Bytes::from(out))
    }
}

/// A forward reader over a [`SealedSlice`].
#[derive(Debug)]
pub struct SealedCursor {
    slice: SealedSlice,
    pos: u64,
}

impl Read for SealedCursor {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let left = self.slice.len - self.pos;
        let want = (out.len() as u64).min(left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self
            .slice
            .file
            .read_at(self.slice.offset + self.pos, &mut out[..want])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The record batches of a product copy's Parquet file in `source`, `batch_rows` at a time,
/// with the schema (and its fingerprint metadata) the copy was written with. A reader holds
/// one row group's column chunks at a time.
///
/// # Errors
/// If the file is not readable Parquet.
pub fn copy_batches<R: ChunkReader + 'static>(
    source: R,
    batch_rows: usize,
) -> Result<(SchemaRef, ParquetRecordBatchReader), EngineError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(source)
        .map_err(|e| EngineError::Internal(format!("a product copy does not read: {e}")))?;
    let schema = std::sync::Arc::clone(builder.schema());
    let reader = builder
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(|e| EngineError::Internal(format!("a product copy does not read: {e}")))?;
    Ok((schema, reader))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use shuyu_vault::ChunkSealer;

    use super::*;

    fn sealed(plain: &[u8], chunk_bytes: usize) -> (tempfile::NamedTempFile, SecretKey) {
        let key = SecretKey::generate();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let header = ChunkedHeader {
            metadata: b"meta".to_vec(),
            chunk_bytes,
        };
        let mut sealer =
            ChunkSealer::new(file.as_file_mut(), key.clone(), b"here", &header).unwrap();
        sealer.write_all(plain).unwrap();
        sealer.finish().unwrap();
        (file, key)
    }

    #[test]
    fn any_range_reads_as_the_plaintext() {
        let plain: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 253) as u8).collect();
        let (file, key) = sealed(&plain, 64);
        let opened = Arc::new(
            SealedFile::open(file.reopen().unwrap(), b"here", |md| {
                assert_eq!(md, b"meta");
                Ok(key.clone())
            })
            .unwrap(),
        );
        assert_eq!(opened.plaintext_len(), 5000);
        let mut whole = Vec::new();
        opened.reader().read_to_end(&mut whole).unwrap();
        assert_eq!(whole, plain);
        let slice = SealedSlice::new(Arc::clone(&opened), 100, 3000);
        for (start, len) in [(0u64, 1usize), (63, 2), (64, 64), (1000, 1999), (2999, 1)] {
            let got = slice.get_bytes(start, len).unwrap();
            let from = 100 + start as usize;
            assert_eq!(got.as_ref(), &plain[from..from + len]);
        }
        assert!(slice.get_bytes(2999, 2).is_err());
        let mut rest = Vec::new();
        slice
            .get_read(2990)
            .unwrap()
            .read_to_end(&mut rest)
            .unwrap();
        assert_eq!(rest, &plain[3090..3100]);
        // Under another context or key it does not open.
        let other =
            SealedFile::open(file.reopen().unwrap(), b"elsewhere", |_| Ok(key.clone())).unwrap();
        assert!(other.read_at(0, &mut [0u8; 4]).is_err());
    }
}
