//! Key hierarchy, envelope encryption and signatures for Shuyu.
//!
//! The hierarchy is: a [`MasterKey`] on disk wraps key-encryption keys (KEKs); KEKs wrap
//! per-file data keys (DEKs) via [`Envelope`]; [`SigningKey`] signs domain artefacts.
//! Secret material lives in [`zeroize::Zeroizing`] buffers and never appears in `Debug`
//! output or error messages.

mod chunked;
mod envelope;
mod error;
mod key;
mod sign;

pub use chunked::{
    CHUNK_OVERHEAD, CHUNKED_MAGIC, ChunkOpener, ChunkSealer, ChunkedHeader, ChunkedLayout,
    DEFAULT_CHUNK_BYTES,
};
pub use envelope::{Envelope, EnvelopeStats, KekProvider, KeyMetadata};
pub use error::VaultError;
pub use key::{MasterKey, SecretKey};
pub use sign::{Sha256Hasher, SigningKey, sha256, sha256_hex, verify_signature};
