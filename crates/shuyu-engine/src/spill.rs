//! Encrypted spill files: DataFusion's `TempFileFactory` backed by files sealed with an
//! ephemeral per-job key, so an operator that spills (sort, aggregate, join) never writes a
//! plaintext Arrow IPC stream to disk.
//!
//! A file is a sequence of frames `len:u32le || nonce || ciphertext || tag`, each sealing up
//! to [`CHUNK_BYTES`] of plaintext with AES-256-GCM (a flush seals what is buffered, so a
//! reader following the writer reads every flushed byte). The associated data binds the file's
//! random id, the frame's index and whether it is the last frame, so frames cannot be
//! reordered, moved between files or dropped from the end unnoticed. The key lives only in
//! the worker's memory and dies with it; files are removed when DataFusion drops them.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::spill_file::TempFileFactory;
use datafusion::execution::spill_file::{SpillFile, SpillWriter};
use futures::Stream;
use shuyu_vault::SecretKey;

/// Plaintext bytes sealed per frame.
pub const CHUNK_BYTES: usize = 256 << 10;
/// Largest frame accepted when reading (a chunk plus nonce and tag).
const MAX_FRAME_BYTES: usize = CHUNK_BYTES + 64;

/// Creates encrypted spill files in one directory under one ephemeral key.
pub struct EncryptedSpillFactory {
    dir: PathBuf,
    key: Arc<SecretKey>,
    next: AtomicU64,
}

impl std::fmt::Debug for EncryptedSpillFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedSpillFactory")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl EncryptedSpillFactory {
    /// A factory writing into `dir` (which must exist) under a fresh random key.
    pub fn new(dir: impl Into<PathBuf>) -> EncryptedSpillFactory {
        EncryptedSpillFactory {
            dir: dir.into(),
            key: Arc::new(SecretKey::generate()),
            next: AtomicU64::new(0),
        }
    }
}

impl TempFileFactory for EncryptedSpillFactory {
    fn create_temp_file(&self, _description: &str) -> Result<Arc<dyn SpillFile>> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&uuid::Uuid::new_v4().into_bytes());
        let path = self
            .dir
            .join(format!("spill-{n}-{}.enc", hex::encode(&file_id[..4])));
        File::create(&path).map_err(DataFusionError::IoError)?;
        Ok(Arc::new(EncryptedSpillFile {
            path,
            key: Arc::clone(&self.key),
            file_id,
        }))
    }
}

/// One encrypted spill file; removed from disk when dropped.
struct EncryptedSpillFile {
    path: PathBuf,
    key: Arc<SecretKey>,
    file_id: [u8; 16],
}

fn frame_aad(file_id: &[u8; 16], index: u64, last: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(48);
    aad.extend_from_slice(b"shuyu-spill:v1:");
    aad.extend_from_slice(file_id);
    aad.extend_from_slice(&index.to_le_bytes());
    aad.push(u8::from(last));
    aad
}

fn corrupt(what: &str) -> DataFusionError {
    DataFusionError::Execution(format!("spill file is corrupt: {what}"))
}

impl SpillFile for EncryptedSpillFile {
    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn size(&self) -> Option<u64> {
        std::fs::metadata(&self.path).ok().map(|m| m.len())
    }

    fn read_stream(&self) -> Result<Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>> {
        let reader = FrameReader {
            input: BufReader::new(File::open(&self.path).map_err(DataFusionError::IoError)?),
            key: Arc::clone(&self.key),
            file_id: self.file_id,
            index: 0,
            done: false,
        };
        Ok(Box::pin(futures::stream::iter(reader)))
    }

    fn open_writer(&self) -> Result<Box<dyn SpillWriter>> {
        let file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.path)
            .map_err(DataFusionError::IoError)?;
        Ok(Box::new(FrameWriter {
            out: BufWriter::new(file),
            key: Arc::clone(&self.key),
            file_id: self.file_id,
            index: 0,
            buffer: zeroize::Zeroizing::new(Vec::with_capacity(CHUNK_BYTES)),
            finished: false,
        }))
    }
}

impl Drop for EncryptedSpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct FrameWriter {
    out: BufWriter<File>,
    key: Arc<SecretKey>,
    file_id: [u8; 16],
    index: u64,
    buffer: zeroize::Zeroizing<Vec<u8>>,
    finished: bool,
}

impl FrameWriter {
    fn seal_buffer(&mut self, last: bool) -> std::io::Result<()> {
        let sealed = self
            .key
            .seal(&frame_aad(&self.file_id, self.index, last), &self.buffer);
        self.buffer.clear();
        self.index += 1;
        let len = u32::try_from(sealed.len()).map_err(std::io::Error::other)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&sealed)
    }
}

impl Write for FrameWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.finished {
            return Err(std::io::Error::other("spill writer already finished"));
        }
        let room = CHUNK_BYTES - self.buffer.len();
        let n = data.len().min(room);
        self.buffer.extend_from_slice(&data[..n]);
        if self.buffer.len() == CHUNK_BYTES {
            self.seal_buffer(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // What was written so far becomes readable: DataFusion's spill pool (a repartition
        // short of memory) reads a file while it is written, each batch once it is flushed.
        // So a partial chunk is sealed as a frame of its own.
        if !self.finished && !self.buffer.is_empty() {
            self.seal_buffer(false)?;
        }
        self.out.flush()
    }
}

impl SpillWriter for FrameWriter {
    fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.seal_buffer(true)
            .and_then(|()| self.out.flush())
            .map_err(DataFusionError::IoError)
    }
}

struct FrameReader {
    input: BufReader<File>,
    key: Arc<SecretKey>,
    file_id: [u8; 16],
    index: u64,
    done: bool,
}

impl FrameReader {
    fn next_frame(&mut self) -> Result<Option<Bytes>> {
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(corrupt("it ends before its last frame"));
            }
            Err(e) => return Err(DataFusionError::IoError(e)),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(corrupt("a frame is too large"));
        }
        let mut sealed = vec![0u8; len];
        self.input
            .read_exact(&mut sealed)
            .map_err(|_| corrupt("a frame is truncated"))?;
        // Try "not last" first: all frames but one are.
        for last in [false, true] {
            if let Ok(plain) = self
                .key
                .open(&frame_aad(&self.file_id, self.index, last), &sealed)
            {
                self.index += 1;
                if last {
                    self.done = true;
                    let mut rest = [0u8; 1];
                    if self
                        .input
                        .read(&mut rest)
                        .map_err(DataFusionError::IoError)?
                        != 0
                    {
                        return Err(corrupt("data follows its last frame"));
                    }
                }
                return Ok(Some(Bytes::from(plain.to_vec())));
            }
        }
        Err(corrupt("a frame does not authenticate"))
    }
}

impl Iterator for FrameReader {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_frame() {
            Ok(Some(bytes)) => Some(Ok(bytes)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    const CANARY: &[u8] = b"CANARY_SPILL_330203198807071236";

    fn read_all(file: &Arc<dyn SpillFile>) -> Result<Vec<u8>> {
        futures::executor::block_on(async {
            let mut out = Vec::new();
            let mut stream = file.read_stream()?;
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk?);
            }
            Ok(out)
        })
    }

    fn written(factory: &EncryptedSpillFactory, payload: &[u8]) -> Arc<dyn SpillFile> {
        let file = factory.create_temp_file("test").unwrap();
        let mut writer = file.open_writer().unwrap();
        // Odd-sized writes, as an IPC writer does.
        for piece in payload.chunks(7_777) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap();
        file
    }

    fn payload() -> Vec<u8> {
        let mut data = Vec::new();
        while data.len() < 3 * CHUNK_BYTES + 1234 {
            data.extend_from_slice(CANARY);
            data.extend_from_slice(&(data.len() as u64).to_le_bytes());
        }
        data
    }

    #[test]
    fn round_trips_without_plaintext_on_disk_and_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let factory = EncryptedSpillFactory::new(dir.path());
        let data = payload();
        let file = written(&factory, &data);
        let path = file.path().unwrap().to_path_buf();
        let on_disk = std::fs::read(&path).unwrap();
        assert!(on_disk.len() > data.len(), "sealed frames add overhead");
        assert!(
            !on_disk.windows(CANARY.len()).any(|w| w == CANARY),
            "plaintext on disk"
        );
        assert_eq!(file.size(), Some(on_disk.len() as u64));
        assert_eq!(read_all(&file).unwrap(), data);
        // Readable more than once.
        assert_eq!(read_all(&file).unwrap(), data);
        drop(file);
        assert!(!path.exists(), "dropped spill files are removed");
        // An empty file round-trips too.
        let empty = written(&factory, b"");
        assert_eq!(read_all(&empty).unwrap(), b"");
    }

    /// As DataFusion's spill pool does: a reader follows the writer, reading each write once
    /// it is flushed, and ends only after the last frame.
    #[test]
    fn a_file_is_readable_while_written_up_to_its_last_flush() {
        let dir = tempfile::tempdir().unwrap();
        let factory = EncryptedSpillFactory::new(dir.path());
        let file = factory.create_temp_file("pool").unwrap();
        let mut writer = file.open_writer().unwrap();
        let data = payload();
        let (first, second) = data.split_at(1_000);
        writer.write_all(first).unwrap();
        writer.flush().unwrap();
        futures::executor::block_on(async {
            let mut stream = file.read_stream().unwrap();
            let chunk = stream.next().await.unwrap().unwrap();
            assert_eq!(
                &chunk[..],
                first,
                "the flushed bytes, before any more are written"
            );
            writer.write_all(second).unwrap();
            writer.flush().unwrap();
            let mut rest = Vec::new();
            while rest.len() < second.len() {
                rest.extend_from_slice(&stream.next().await.unwrap().unwrap());
            }
            assert_eq!(rest, second);
            writer.finish().unwrap();
            // The (empty) last frame, then the end.
            while let Some(chunk) = stream.next().await {
                assert!(chunk.unwrap().is_empty());
            }
        });
        let on_disk = std::fs::read(file.path().unwrap()).unwrap();
        assert!(!on_disk.windows(CANARY.len()).any(|w| w == CANARY));
        assert_eq!(read_all(&file).unwrap(), data);
    }

    #[test]
    fn tampering_truncation_and_other_keys_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let factory = EncryptedSpillFactory::new(dir.path());
        let data = payload();

        let flipped = written(&factory, &data);
        let path = flipped.path().unwrap().to_path_buf();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_all(&flipped).is_err());

        // Dropping the last frame: the stream must not end cleanly.
        let truncated = written(&factory, &data);
        let path = truncated.path().unwrap().to_path_buf();
        let bytes = std::fs::read(&path).unwrap();
        let first_len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        std::fs::write(&path, &bytes[..4 + first_len]).unwrap();
        let err = read_all(&truncated).unwrap_err();
        assert!(err.to_string().contains("last frame"), "{err}");

        // Another job's factory (another key) cannot read it.
        let file = written(&factory, &data);
        let stolen = dir.path().join("stolen.enc");
        std::fs::copy(file.path().unwrap(), &stolen).unwrap();
        let other = EncryptedSpillFactory::new(dir.path());
        let theirs = other.create_temp_file("x").unwrap();
        std::fs::copy(&stolen, theirs.path().unwrap()).unwrap();
        assert!(read_all(&theirs).is_err());
    }
}
