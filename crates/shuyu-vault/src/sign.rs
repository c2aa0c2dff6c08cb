//! Ed25519 domain signatures and SHA-256 hashing helpers.

use std::fmt;
use std::io;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use crate::VaultError;

/// Ed25519 signing key for the domain.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &hex::encode(self.public_key()))
            .field("secret", &format_args!("<redacted>"))
            .finish()
    }
}

impl SigningKey {
    /// Generates a new key pair. Also returns its PKCS#8 v2 document so the caller can store
    /// it sealed; the buffer is wiped on drop.
    ///
    /// # Errors
    /// [`VaultError::Crypto`] if key generation fails.
    pub fn generate() -> Result<(SigningKey, Zeroizing<Vec<u8>>), VaultError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| VaultError::Crypto("Ed25519 key generation failed"))?;
        let pkcs8 = Zeroizing::new(doc.as_ref().to_vec());
        Ok((SigningKey::from_pkcs8(&pkcs8)?, pkcs8))
    }

    /// Loads a key pair from a PKCS#8 v2 document (as produced by [`SigningKey::generate`]).
    ///
    /// # Errors
    /// [`VaultError::Crypto`] if the document is not a valid Ed25519 PKCS#8 v2 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, VaultError> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(|pair| SigningKey { pair })
            .map_err(|_| VaultError::Crypto("invalid Ed25519 PKCS#8 document"))
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.pair
            .sign(msg)
            .as_ref()
            .try_into()
            .expect("Ed25519 signatures are 64 bytes")
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("Ed25519 public keys are 32 bytes")
    }
}

/// Verifies an Ed25519 `signature` over `msg` by `public_key`.
///
/// # Errors
/// [`VaultError::Signature`] if the key or signature is malformed or does not verify.
pub fn verify_signature(public_key: &[u8], msg: &[u8], signature: &[u8]) -> Result<(), VaultError> {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(msg, signature)
        .map_err(|_| VaultError::Signature)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

/// SHA-256 of `bytes` (ring's implementation: its assembly is fast in every build profile,
/// which matters for results and packages hashed in chunks).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// Streaming SHA-256; also usable as an [`io::Write`] sink (e.g. with `io::copy`).
#[derive(Clone)]
pub struct Sha256Hasher(ring::digest::Context);

impl std::fmt::Debug for Sha256Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256Hasher")
    }
}

impl Default for Sha256Hasher {
    fn default() -> Self {
        Sha256Hasher(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256Hasher {
    /// A fresh hasher.
    pub fn new() -> Sha256Hasher {
        Sha256Hasher::default()
    }

    /// Feeds more data.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Lower-case hex digest of everything fed so far.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finish().as_ref())
    }
}

impl io::Write for Sha256Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip() {
        let (key, pkcs8) = SigningKey::generate().unwrap();
        let sig = key.sign(b"manifest");
        let pk = key.public_key();
        verify_signature(&pk, b"manifest", &sig).unwrap();
        assert!(matches!(
            verify_signature(&pk, b"manifesT", &sig),
            Err(VaultError::Signature)
        ));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(verify_signature(&pk, b"manifest", &bad).is_err());
        assert!(verify_signature(&pk[..31], b"manifest", &sig).is_err());
        let (other, _) = SigningKey::generate().unwrap();
        assert!(verify_signature(&other.public_key(), b"manifest", &sig).is_err());

        let reloaded = SigningKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(reloaded.public_key(), pk);
        verify_signature(&pk, b"x", &reloaded.sign(b"x")).unwrap();
        assert!(SigningKey::from_pkcs8(b"garbage").is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let (key, pkcs8) = SigningKey::generate().unwrap();
        let dbg = format!("{key:?}");
        assert!(dbg.contains(&hex::encode(key.public_key())));
        assert!(dbg.contains("<redacted>"));
        // The private seed sits inside the PKCS#8 document; no 16-byte window of it may leak.
        assert_eq!(pkcs8[14..16], [0x04, 0x20], "seed OCTET STRING header");
        let doc_hex = hex::encode(&pkcs8[..]);
        let seed_hex = &doc_hex[32..96]; // bytes 16..48: the 32-byte seed in ring's v2 layout
        assert!(!dbg.contains(seed_hex));
    }

    #[test]
    fn sha256_helpers() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = Sha256Hasher::new();
        h.update(b"a");
        io::Write::write_all(&mut h, b"bc").unwrap();
        assert_eq!(h.finish_hex(), sha256_hex(b"abc"));
    }
}
