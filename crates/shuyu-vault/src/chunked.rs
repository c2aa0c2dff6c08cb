//! Chunked sealing: a byte stream of any length sealed as a sequence of AES-256-GCM chunks, so
//! that it is written, read and served in bounded memory, and any chunk can be opened on its
//! own (random access, e.g. a Parquet file read from inside a sealed package).
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! "SHUYUCHUNK1\n"  u32 metadata length  metadata (opaque: a wrapped data key, or empty)
//! u32 chunk size   chunk 0  chunk 1  …  chunk n-1
//! chunk i = nonce (12) ‖ ciphertext ‖ tag (16)   of exactly `chunk size` plaintext bytes,
//!           but the last one, which holds 1 to `chunk size` bytes (0 for an empty stream)
//! AAD of chunk i = context ‖ 0x00 ‖ i (u64) ‖ final (1 for the last chunk, else 0)
//! ```
//!
//! The context binds the stream to where it belongs (an object path); the index binds each
//! chunk to its place, and the final flag makes a stream cut at a chunk boundary fail to open
//! rather than read as a shorter one.

use std::io::{self, Read, Write};

use crate::{SecretKey, VaultError};

/// The first bytes of a chunk-sealed stream.
pub const CHUNKED_MAGIC: &[u8] = b"SHUYUCHUNK1\n";
/// The chunk size streams are written with unless a caller chooses another.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// Bytes a chunk adds to its plaintext: nonce and tag.
pub const CHUNK_OVERHEAD: usize = 12 + 16;
/// Smallest and largest chunk sizes accepted.
const MIN_CHUNK_BYTES: usize = 16;
const MAX_CHUNK_BYTES: usize = 16 << 20;
/// Largest metadata accepted in a header.
const MAX_METADATA_BYTES: usize = 64 << 10;

fn aad(context: &[u8], index: u64, last: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(context.len() + 10);
    aad.extend_from_slice(context);
    aad.push(0);
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad
}

fn malformed(what: &'static str) -> VaultError {
    VaultError::Crypto(what)
}

fn io_error(e: VaultError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The header of a chunk-sealed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedHeader {
    /// Opaque metadata (a wrapped data key, or empty).
    pub metadata: Vec<u8>,
    /// Plaintext bytes per chunk.
    pub chunk_bytes: usize,
}

impl ChunkedHeader {
    /// The header's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHUNKED_MAGIC.len() + 8 + self.metadata.len());
        out.extend_from_slice(CHUNKED_MAGIC);
        out.extend_from_slice(&(self.metadata.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.metadata);
        out.extend_from_slice(&(self.chunk_bytes as u32).to_be_bytes());
        out
    }

    /// Bytes the header takes.
    pub fn len(&self) -> usize {
        CHUNKED_MAGIC.len() + 8 + self.metadata.len()
    }

    /// Never: a header has at least its magic.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Reads a header from the start of `input`.
    ///
    /// # Errors
    /// If the bytes are not a chunk-sealed stream's header.
    pub fn read_from(input: &mut impl Read) -> Result<ChunkedHeader, VaultError> {
        let mut magic = [0u8; CHUNKED_MAGIC.len()];
        read_exact(input, &mut magic)?;
        if magic != CHUNKED_MAGIC {
            return Err(malformed("not a chunk-sealed stream"));
        }
        let mut len = [0u8; 4];
        read_exact(input, &mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_METADATA_BYTES {
            return Err(malformed("a chunk-sealed stream's metadata is too long"));
        }
        let mut metadata = vec![0u8; len];
        read_exact(input, &mut metadata)?;
        let mut size = [0u8; 4];
        read_exact(input, &mut size)?;
        let chunk_bytes = u32::from_be_bytes(size) as usize;
        if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&chunk_bytes) {
            return Err(malformed(
                "a chunk-sealed stream's chunk size is out of range",
            ));
        }
        Ok(ChunkedHeader {
            metadata,
            chunk_bytes,
        })
    }

    /// Where the chunks of a stream of `sealed_len` bytes (header included) are.
    ///
    /// # Errors
    /// If no stream written with this header has that length.
    pub fn layout(&self, sealed_len: u64) -> Result<ChunkedLayout, VaultError> {
        let body = sealed_len
            .checked_sub(self.len() as u64)
            .ok_or_else(|| malformed("a chunk-sealed stream is truncated"))?;
        let full = (self.chunk_bytes + CHUNK_OVERHEAD) as u64;
        let (whole, rest) = (body / full, body % full);
        let (n_chunks, last_plain) = match rest {
            0 if whole > 0 => (whole, self.chunk_bytes as u64),
            r if r >= CHUNK_OVERHEAD as u64 => (whole + 1, r - CHUNK_OVERHEAD as u64),
            _ => return Err(malformed("a chunk-sealed stream is truncated")),
        };
        Ok(ChunkedLayout {
            header_len: self.len() as u64,
            chunk_bytes: self.chunk_bytes as u64,
            n_chunks,
            plaintext_len: (n_chunks - 1) * self.chunk_bytes as u64 + last_plain,
        })
    }
}

/// Where each chunk of a stored chunk-sealed stream is (for random access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLayout {
    /// Bytes before chunk 0.
    pub header_len: u64,
    /// Plaintext bytes per chunk (the last may hold fewer).
    pub chunk_bytes: u64,
    /// Chunks (at least one).
    pub n_chunks: u64,
    /// Bytes of plaintext in all.
    pub plaintext_len: u64,
}

impl ChunkedLayout {
    /// The sealed bytes of chunk `index`: offset from the stream's start, and length.
    pub fn chunk_range(&self, index: u64) -> (u64, u64) {
        let full = self.chunk_bytes + CHUNK_OVERHEAD as u64;
        let plain = if index + 1 == self.n_chunks {
            self.plaintext_len - index * self.chunk_bytes
        } else {
            self.chunk_bytes
        };
        (
            self.header_len + index * full,
            plain + CHUNK_OVERHEAD as u64,
        )
    }

    /// Opens chunk `index` from its sealed bytes.
    ///
    /// # Errors
    /// If it does not decrypt under `key` and `context` at this place.
    pub fn open_chunk(
        &self,
        key: &SecretKey,
        context: &[u8],
        index: u64,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, VaultError> {
        key.open(&aad(context, index, index + 1 == self.n_chunks), sealed)
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<(), VaultError> {
    input
        .read_exact(buf)
        .map_err(|_| malformed("a chunk-sealed stream is truncated"))
}

/// Seals what is written to it into `out` as a chunk-sealed stream (header first). Holds at
/// most one chunk of plaintext. Call [`ChunkSealer::finish`]: a stream that is dropped
/// unfinished has no final chunk and does not open.
pub struct ChunkSealer<W: Write> {
    out: W,
    key: SecretKey,
    context: Vec<u8>,
    chunk_bytes: usize,
    buf: Vec<u8>,
    index: u64,
    plaintext_len: u64,
}

impl<W: Write> std::fmt::Debug for ChunkSealer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSealer")
            .field("chunks", &self.index)
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ChunkSealer<W> {
    /// Starts a stream under `key`, bound to `context`, writing `header` first.
    ///
    /// # Errors
    /// If the header cannot be written, or its chunk size is out of range.
    pub fn new(
        mut out: W,
        key: SecretKey,
        context: &[u8],
        header: &ChunkedHeader,
    ) -> io::Result<ChunkSealer<W>> {
        if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&header.chunk_bytes)
            || header.metadata.len() > MAX_METADATA_BYTES
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "chunk size or metadata out of range",
            ));
        }
        out.write_all(&header.to_bytes())?;
        Ok(ChunkSealer {
            out,
            key,
            context: context.to_vec(),
            chunk_bytes: header.chunk_bytes,
            buf: Vec::with_capacity(header.chunk_bytes),
            index: 0,
            plaintext_len: 0,
        })
    }

    fn seal_buffer(&mut self, last: bool) -> io::Result<()> {
        let sealed = self
            .key
            .seal(&aad(&self.context, self.index, last), &self.buf);
        self.out.write_all(&sealed)?;
        zeroize::Zeroize::zeroize(&mut self.buf);
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Seals the last chunk and flushes; returns the writer and the plaintext's length.
    ///
    /// # Errors
    /// If writing fails.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.seal_buffer(true)?;
        self.out.flush()?;
        let ChunkSealer {
            out, plaintext_len, ..
        } = self;
        Ok((out, plaintext_len))
    }
}

impl<W: Write> Write for ChunkSealer<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            // A full buffer is sealed only once more data arrives: it is not the last chunk.
            if self.buf.len() == self.chunk_bytes {
                self.seal_buffer(false)?;
            }
            let take = (self.chunk_bytes - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        self.plaintext_len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads the plaintext of a chunk-sealed stream (after its header) from `input`, one chunk at
/// a time; a chunk that does not open, or a stream that ends without its final chunk, is an
/// error ([`io::ErrorKind::InvalidData`]).
pub struct ChunkOpener<R: Read> {
    input: R,
    key: SecretKey,
    context: Vec<u8>,
    chunk_bytes: usize,
    /// Sealed bytes read ahead of the current chunk.
    ahead: Vec<u8>,
    plain: zeroize::Zeroizing<Vec<u8>>,
    pos: usize,
    index: u64,
    done: bool,
}

impl<R: Read> std::fmt::Debug for ChunkOpener<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkOpener")
            .field("chunk", &self.index)
            .finish_non_exhaustive()
    }
}

impl<R: Read> ChunkOpener<R> {
    /// Opens the stream in `input`, positioned just after `header`.
    pub fn new(input: R, key: SecretKey, context: &[u8], header: &ChunkedHeader) -> Self {
        ChunkOpener {
            input,
            key,
            context: context.to_vec(),
            chunk_bytes: header.chunk_bytes,
            ahead: Vec::new(),
            plain: zeroize::Zeroizing::new(Vec::new()),
            pos: 0,
            index: 0,
            done: false,
        }
    }

    /// Reads the next chunk; `false` once the final one was read.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        // One byte past a full chunk tells whether another follows.
        let want = self.chunk_bytes + CHUNK_OVERHEAD + 1;
        while self.ahead.len() < want {
            let start = self.ahead.len();
            self.ahead.resize(want, 0);
            let n = loop {
                match self.input.read(&mut self.ahead[start..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    self.ahead.truncate(start);
                    return Err(e);
                }
            };
            self.ahead.truncate(start + n);
            if n == 0 {
                break;
            }
        }
        let last = self.ahead.len() < want;
        let len = if last { self.ahead.len() } else { want - 1 };
        if len < CHUNK_OVERHEAD {
            return Err(io_error(malformed("a chunk-sealed stream is truncated")));
        }
        let plain = self
            .key
            .open(&aad(&self.context, self.index, last), &self.ahead[..len])
            .map_err(io_error)?;
        self.ahead.drain(..len);
        self.plain = plain;
        self.pos = 0;
        self.index += 1;
        self.done = last;
        Ok(true)
    }
}

impl<R: Read> Read for ChunkOpener<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = (self.plain.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(plain: &[u8], chunk_bytes: usize, key: &SecretKey) -> Vec<u8> {
        let header = ChunkedHeader {
            metadata: b"md".to_vec(),
            chunk_bytes,
        };
        let mut sealer = ChunkSealer::new(Vec::new(), key.clone(), b"ctx", &header).unwrap();
        // Written in uneven pieces.
        for piece in plain.chunks(7) {
            sealer.write_all(piece).unwrap();
        }
        let (out, n) = sealer.finish().unwrap();
        assert_eq!(n, plain.len() as u64);
        out
    }

    fn open(sealed: &[u8], key: &SecretKey, context: &[u8]) -> io::Result<Vec<u8>> {
        let mut input = sealed;
        let header = ChunkedHeader::read_from(&mut input).map_err(io_error)?;
        let mut plain = Vec::new();
        ChunkOpener::new(input, key.clone(), context, &header).read_to_end(&mut plain)?;
        Ok(plain)
    }

    #[test]
    fn streams_of_every_length_round_trip_and_open_chunk_by_chunk() {
        let key = SecretKey::generate();
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 100, 160] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = seal(&plain, 16, &key);
            assert_eq!(open(&sealed, &key, b"ctx").unwrap(), plain, "length {len}");
            // Random access gives the same bytes.
            let mut input = sealed.as_slice();
            let header = ChunkedHeader::read_from(&mut input).unwrap();
            let layout = header.layout(sealed.len() as u64).unwrap();
            assert_eq!(layout.plaintext_len, len as u64);
            let mut joined = Vec::new();
            for i in 0..layout.n_chunks {
                let (at, n) = layout.chunk_range(i);
                let chunk = &sealed[at as usize..(at + n) as usize];
                joined.extend_from_slice(&layout.open_chunk(&key, b"ctx", i, chunk).unwrap());
            }
            assert_eq!(joined, plain);
        }
    }

    #[test]
    fn a_cut_reordered_altered_or_moved_stream_does_not_open() {
        let key = SecretKey::generate();
        let plain: Vec<u8> = (0..100u8).collect();
        let sealed = seal(&plain, 16, &key);
        let header_len = ChunkedHeader {
            metadata: b"md".to_vec(),
            chunk_bytes: 16,
        }
        .len();
        let full = 16 + CHUNK_OVERHEAD;
        // Cut at a chunk boundary: the last chunk left was not sealed as final.
        let cut = &sealed[..header_len + 2 * full];
        assert!(open(cut, &key, b"ctx").is_err());
        // Cut inside a chunk.
        assert!(open(&sealed[..sealed.len() - 3], &key, b"ctx").is_err());
        // Two chunks swapped.
        let mut swapped = sealed.clone();
        let (a, b) = (header_len, header_len + full);
        let first = sealed[a..a + full].to_vec();
        swapped[a..a + full].copy_from_slice(&sealed[b..b + full]);
        swapped[b..b + full].copy_from_slice(&first);
        assert!(open(&swapped, &key, b"ctx").is_err());
        // A flipped bit.
        let mut flipped = sealed.clone();
        flipped[header_len + 20] ^= 1;
        assert!(open(&flipped, &key, b"ctx").is_err());
        // Another context (a stream moved to another place) or key.
        assert!(open(&sealed, &key, b"other").is_err());
        assert!(open(&sealed, &SecretKey::generate(), b"ctx").is_err());
        // Something appended.
        let mut longer = sealed.clone();
        longer.extend_from_slice(&[0u8; 40]);
        assert!(open(&longer, &key, b"ctx").is_err());
        // A length that no stream has.
        let mut input = sealed.as_slice();
        let header = ChunkedHeader::read_from(&mut input).unwrap();
        assert!(header.layout(header_len as u64 + 5).is_err());
    }

    #[test]
    fn a_header_out_of_range_is_refused() {
        let mut bad = ChunkedHeader {
            metadata: Vec::new(),
            chunk_bytes: 1,
        }
        .to_bytes();
        assert!(ChunkedHeader::read_from(&mut bad.as_slice()).is_err());
        bad[0] = b'X';
        assert!(ChunkedHeader::read_from(&mut bad.as_slice()).is_err());
    }
}
