//! Symmetric key material: [`SecretKey`] (AES-256-GCM, HMAC, HKDF) and the on-disk [`MasterKey`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::VaultError;

/// Length in bytes of every [`SecretKey`].
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// HKDF salt used by [`SecretKey::derive`], for domain separation.
const HKDF_SALT: &[u8] = b"shuyu-derive:v1";

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
/// Panics if the OS random source is unavailable, which leaves no safe way to continue.
pub(crate) fn fill_random(buf: &mut [u8]) {
    SystemRandom::new()
        .fill(buf)
        .expect("operating system randomness unavailable");
}

/// 256-bit key material for AES-256-GCM, HMAC-SHA256 and HKDF. Zeroized on drop.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// Generates a fresh key from OS randomness.
    ///
    /// # Panics
    /// Panics if the OS random source is unavailable.
    pub fn generate() -> SecretKey {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut key[..]);
        SecretKey(key)
    }

    /// Builds a key from exactly 32 raw bytes.
    ///
    /// # Errors
    /// [`VaultError::Crypto`] if `bytes` is not 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<SecretKey, VaultError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(VaultError::Crypto("secret key must be exactly 32 bytes"));
        }
        key.copy_from_slice(bytes);
        Ok(SecretKey(key))
    }

    /// The raw key bytes, e.g. for handing to Parquet modular encryption. Do not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0[..]
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0[..]))
    }

    /// Encrypts with AES-256-GCM under a random 96-bit nonce; `aad` binds the context.
    /// Output is `nonce || ciphertext || tag`.
    ///
    /// # Panics
    /// Panics if OS randomness is unavailable or `plaintext` exceeds the AES-GCM limit (~64 GiB).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM plaintext too large");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts the output of [`SecretKey::seal`]. The plaintext is returned in a
    /// [`Zeroizing`] buffer (it derefs to `Vec<u8>`) so it is wiped when dropped.
    ///
    /// # Errors
    /// [`VaultError::Crypto`] if the input is truncated, the key or `aad` is wrong, or the
    /// data was tampered with.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Crypto("sealed data is truncated"));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| {
                VaultError::Crypto("decryption failed: wrong key, wrong context or tampered data")
            })
    }

    /// Wraps (seals) another key under this one.
    pub fn wrap(&self, aad: &[u8], key: &SecretKey) -> Vec<u8> {
        self.seal(aad, key.expose())
    }

    /// Unwraps a key produced by [`SecretKey::wrap`] with the same `aad`.
    ///
    /// # Errors
    /// [`VaultError::Crypto`] on wrong key, wrong `aad`, tampering or a bad key length.
    pub fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<SecretKey, VaultError> {
        SecretKey::from_bytes(&self.open(aad, wrapped)?)
    }

    /// Derives a subkey with HKDF-SHA256 (fixed salt, `info = label`). Deterministic per label.
    pub fn derive(&self, label: &str) -> SecretKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(&self.0[..]);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        prk.expand(&[label.as_bytes()], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out[..]))
            .expect("HKDF-SHA256 output of 32 bytes is always valid");
        SecretKey(out)
    }

    /// HMAC-SHA256 of `msg` keyed by this key.
    pub fn hmac_sha256(&self, msg: &[u8]) -> [u8; 32] {
        // ring's HMAC: the same function as the `hmac` crate's, fast in every build profile
        // (a product copy keys every row with it).
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0[..]);
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::hmac::sign(&key, msg).as_ref());
        out
    }

    /// A short, non-reversible identifier safe to log: the first 16 hex characters of
    /// `sha256("shuyu-key-fp" || key)`.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"shuyu-key-fp");
        h.update(&self.0[..]);
        hex::encode(&h.finalize()[..8])
    }
}

/// The root key, stored as 32 raw bytes in an owner-only (0600) file.
#[derive(Clone)]
pub struct MasterKey(SecretKey);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl MasterKey {
    /// Creates a new master key file (mode 0600, must not exist), writes 32 random bytes and
    /// fsyncs the file and its parent directory.
    ///
    /// # Errors
    /// [`VaultError::Io`] if the file already exists or cannot be written/synced.
    pub fn create_file(path: &Path) -> Result<MasterKey, VaultError> {
        let key = SecretKey::generate();
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err(path))?;
        let written = file.write_all(key.expose()).and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(io_err(path)(e));
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io_err(parent))?;
        Ok(MasterKey(key))
    }

    /// Loads a master key file.
    ///
    /// # Errors
    /// [`VaultError::Io`] if it cannot be read; [`VaultError::KeyFile`] if its permissions
    /// allow group/other access or it is not exactly 32 bytes.
    pub fn load_file(path: &Path) -> Result<MasterKey, VaultError> {
        let file = File::open(path).map_err(io_err(path))?;
        let mode = file.metadata().map_err(io_err(path))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(VaultError::KeyFile(format!(
                "{} has insecure permissions {:04o}: group/other access is not allowed (chmod 600)",
                path.display(),
                mode & 0o7777
            )));
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
        file.take(KEY_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(path))?;
        if buf.len() != KEY_LEN {
            return Err(VaultError::KeyFile(format!(
                "{} must contain exactly {KEY_LEN} bytes",
                path.display()
            )));
        }
        SecretKey::from_bytes(&buf).map(MasterKey)
    }

    /// The underlying key.
    pub fn key(&self) -> &SecretKey {
        &self.0
    }

    fn kek_aad(kek_id: &str) -> Vec<u8> {
        [b"shuyu-kek:v1:".as_slice(), kek_id.as_bytes()].concat()
    }

    /// Wraps a key-encryption key under the master key, bound to `kek_id`.
    pub fn wrap_kek(&self, kek_id: &str, kek: &SecretKey) -> Vec<u8> {
        self.0.wrap(&Self::kek_aad(kek_id), kek)
    }

    /// Unwraps a KEK produced by [`MasterKey::wrap_kek`] for the same `kek_id`.
    ///
    /// # Errors
    /// [`VaultError::Crypto`] on wrong master key, wrong id or tampering.
    pub fn unwrap_kek(&self, kek_id: &str, wrapped: &[u8]) -> Result<SecretKey, VaultError> {
        self.0.unwrap(&Self::kek_aad(kek_id), wrapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_failures() {
        let k = SecretKey::generate();
        let sealed = k.seal(b"ctx", b"hello world");
        assert_eq!(sealed.len(), NONCE_LEN + 11 + TAG_LEN);
        assert_eq!(&k.open(b"ctx", &sealed).unwrap()[..], b"hello world");
        assert!(matches!(
            k.open(b"other", &sealed),
            Err(VaultError::Crypto(_))
        ));
        for i in [0, NONCE_LEN, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(matches!(k.open(b"ctx", &bad), Err(VaultError::Crypto(_))));
        }
        assert!(k.open(b"ctx", &sealed[..20]).is_err());
        assert!(SecretKey::generate().open(b"ctx", &sealed).is_err());
        assert_ne!(
            k.seal(b"ctx", b"x"),
            k.seal(b"ctx", b"x"),
            "nonces must differ"
        );
    }

    #[test]
    fn wrap_unwrap() {
        let kek = SecretKey::generate();
        let dek = SecretKey::generate();
        let w = kek.wrap(b"a", &dek);
        assert_eq!(kek.unwrap(b"a", &w).unwrap().expose(), dek.expose());
        assert!(kek.unwrap(b"b", &w).is_err());
        assert!(SecretKey::from_bytes(&[0u8; 31]).is_err());
        let mk = MasterKey(SecretKey::generate());
        let w = mk.wrap_kek("k1", &kek);
        assert_eq!(mk.unwrap_kek("k1", &w).unwrap().expose(), kek.expose());
        assert!(mk.unwrap_kek("k2", &w).is_err());
    }

    #[test]
    fn hmac_is_hmac_sha256() {
        // RFC 4231, test case 2 has a short key; a 32-byte key of 0x0b with "Hi There":
        // computed with an independent implementation (Python's hmac module).
        let k = SecretKey::from_bytes(&[0x0b; 32]).unwrap();
        assert_eq!(
            hex::encode(k.hmac_sha256(b"Hi There")),
            "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"
        );
    }

    #[test]
    fn derive_hmac_fingerprint() {
        let k = SecretKey::generate();
        assert_eq!(k.derive("a").expose(), k.derive("a").expose());
        assert_ne!(k.derive("a").expose(), k.derive("b").expose());
        assert_ne!(k.derive("a").expose(), k.expose());
        assert_ne!(
            SecretKey::generate().derive("a").expose(),
            k.derive("a").expose()
        );
        assert_eq!(k.hmac_sha256(b"m"), k.hmac_sha256(b"m"));
        assert_ne!(k.hmac_sha256(b"m"), k.hmac_sha256(b"n"));
        let fp = k.fingerprint();
        assert_eq!(fp.len(), 16);
        assert!(!hex::encode(k.expose()).contains(&fp));
    }

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 1: key = 0x0b * 20. HMAC zero-pads short keys, so padding the key
        // to 32 bytes with zeros must give the same MAC.
        let mut raw = [0u8; 32];
        raw[..20].fill(0x0b);
        let k = SecretKey::from_bytes(&raw).unwrap();
        assert_eq!(
            hex::encode(k.hmac_sha256(b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn debug_is_redacted() {
        let k = SecretKey::generate();
        let hex_key = hex::encode(k.expose());
        let mk = MasterKey(k.clone());
        for s in [format!("{k:?}"), format!("{mk:?}"), format!("{k:#?}")] {
            assert!(!s.contains(&hex_key), "{s}");
            assert!(s.contains("<redacted>"));
        }
        assert_eq!(format!("{k:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn master_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let mk = MasterKey::create_file(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        assert!(matches!(
            MasterKey::create_file(&path),
            Err(VaultError::Io { .. })
        ));
        let loaded = MasterKey::load_file(&path).unwrap();
        assert_eq!(loaded.key().expose(), mk.key().expose());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_file(&path).unwrap_err();
        assert!(matches!(err, VaultError::KeyFile(_)));
        let msg = err.to_string();
        assert!(msg.contains("permissions") && msg.contains("0644"), "{msg}");
        assert!(!msg.contains(&hex::encode(mk.key().expose())));

        let short = dir.path().join("short.key");
        fs::write(&short, [7u8; 31]).unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            MasterKey::load_file(&short),
            Err(VaultError::KeyFile(_))
        ));
        fs::write(&short, [7u8; 33]).unwrap();
        assert!(matches!(
            MasterKey::load_file(&short),
            Err(VaultError::KeyFile(_))
        ));
        assert!(matches!(
            MasterKey::load_file(&dir.path().join("missing")),
            Err(VaultError::Io { .. })
        ));
    }
}
