//! The crate-wide error type; no variant ever carries key material.

use std::path::PathBuf;

/// Errors produced by the vault. Messages are safe to log: they never contain key bytes.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// An I/O operation on a key file or its directory failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file is malformed or has unsafe permissions.
    #[error("key file error: {0}")]
    KeyFile(String),
    /// A cryptographic operation failed (wrong key, tampered data, bad length).
    #[error("crypto error: {0}")]
    Crypto(&'static str),
    /// A signature did not verify.
    #[error("signature verification failed")]
    Signature,
    /// Serialized key metadata could not be parsed.
    #[error("format error: {0}")]
    Format(String),
    /// The envelope is not permitted to use this KEK id.
    #[error("key-encryption key {0:?} is not allowed here")]
    KeyNotAllowed(String),
    /// A key provider does not know this KEK id.
    #[error("unknown key-encryption key {0:?}")]
    UnknownKey(String),
}
