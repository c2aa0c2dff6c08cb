//! Envelope encryption: per-file data keys (DEKs) wrapped under key-encryption keys (KEKs),
//! with bounded caches for both.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{SecretKey, VaultError};

/// Maximum entries per cache; a full cache is cleared before inserting.
const CACHE_CAP: usize = 4096;
/// Current [`KeyMetadata`] version.
const METADATA_VERSION: u8 = 1;

/// Supplies unwrapped key-encryption keys by id (the server implements this over its
/// metadata store).
pub trait KekProvider: Send + Sync + fmt::Debug {
    /// Returns the KEK named `kek_id`.
    ///
    /// # Errors
    /// Implementation-defined; typically [`VaultError::UnknownKey`] or [`VaultError::Crypto`].
    fn kek(&self, kek_id: &str) -> Result<SecretKey, VaultError>;
}

/// Key metadata stored in each encrypted Parquet file's footer: identifies the KEK and carries
/// the wrapped DEK. Serialized as compact JSON `{"v":1,"kek":"<id>","dek":"<base64>"}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct KeyMetadata {
    /// Format version, currently 1.
    pub v: u8,
    /// Id of the KEK the DEK is wrapped under.
    pub kek: String,
    /// Standard base64 of the wrapped DEK (`nonce || ciphertext || tag`).
    pub dek: String,
}

impl KeyMetadata {
    /// Compact JSON encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("KeyMetadata always serializes")
    }

    /// Parses and validates the JSON encoding.
    ///
    /// # Errors
    /// [`VaultError::Format`] for invalid JSON, an unknown version, an empty KEK id or
    /// invalid base64.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeyMetadata, VaultError> {
        let md: KeyMetadata = serde_json::from_slice(bytes)
            .map_err(|e| VaultError::Format(format!("invalid key metadata: {e}")))?;
        if md.v != METADATA_VERSION {
            return Err(VaultError::Format(format!(
                "unsupported key metadata version {}",
                md.v
            )));
        }
        if md.kek.is_empty() {
            return Err(VaultError::Format(
                "key metadata has an empty KEK id".into(),
            ));
        }
        md.wrapped_dek()?;
        Ok(md)
    }

    /// The decoded wrapped DEK.
    ///
    /// # Errors
    /// [`VaultError::Format`] if `dek` is not valid base64.
    pub fn wrapped_dek(&self) -> Result<Vec<u8>, VaultError> {
        B64.decode(&self.dek)
            .map_err(|_| VaultError::Format("key metadata dek is not valid base64".into()))
    }
}

/// Counters describing an [`Envelope`]'s work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvelopeStats {
    /// KEKs fetched from the provider.
    pub kek_unwraps: u64,
    /// DEKs actually decrypted (cache misses that succeeded).
    pub dek_unwraps: u64,
    /// DEK requests answered from the cache.
    pub dek_cache_hits: u64,
}

fn dek_aad(kek_id: &str) -> Vec<u8> {
    [b"shuyu-dek:v1:".as_slice(), kek_id.as_bytes()].concat()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Caches hold no invariants a panic could break, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn insert_bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, k: K, v: V) {
    if map.len() >= CACHE_CAP {
        map.clear();
    }
    map.insert(k, v);
}

/// Envelope encryption of per-file DEKs under KEKs, with bounded KEK and DEK caches.
pub struct Envelope {
    provider: Arc<dyn KekProvider>,
    allowed: Option<HashSet<String>>,
    keks: Mutex<HashMap<String, SecretKey>>,
    /// sha256(metadata bytes) -> (kek id, DEK).
    deks: Mutex<HashMap<[u8; 32], (String, SecretKey)>>,
    /// Bumped by [`Envelope::forget`] so in-flight lookups do not re-cache forgotten keys.
    epoch: AtomicU64,
    kek_unwraps: AtomicU64,
    dek_unwraps: AtomicU64,
    dek_cache_hits: AtomicU64,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("cached_keks", &lock(&self.keks).len())
            .field("cached_deks", &lock(&self.deks).len())
            .field("allowed_keks", &self.allowed.as_ref().map(HashSet::len))
            .field("stats", &self.stats())
            .finish()
    }
}

impl Envelope {
    /// An envelope that may use any KEK the provider knows.
    pub fn new(provider: Arc<dyn KekProvider>) -> Envelope {
        Self::build(provider, None)
    }

    /// An envelope that may only use the listed KEK ids; any other id yields
    /// [`VaultError::KeyNotAllowed`].
    pub fn restricted_to(provider: Arc<dyn KekProvider>, allowed_keks: Vec<String>) -> Envelope {
        Self::build(provider, Some(allowed_keks.into_iter().collect()))
    }

    fn build(provider: Arc<dyn KekProvider>, allowed: Option<HashSet<String>>) -> Envelope {
        Envelope {
            provider,
            allowed,
            keks: Mutex::default(),
            deks: Mutex::default(),
            epoch: AtomicU64::new(0),
            kek_unwraps: AtomicU64::new(0),
            dek_unwraps: AtomicU64::new(0),
            dek_cache_hits: AtomicU64::new(0),
        }
    }

    fn check_allowed(&self, kek_id: &str) -> Result<(), VaultError> {
        match &self.allowed {
            Some(set) if !set.contains(kek_id) => Err(VaultError::KeyNotAllowed(kek_id.to_owned())),
            _ => Ok(()),
        }
    }

    fn kek(&self, kek_id: &str) -> Result<SecretKey, VaultError> {
        self.check_allowed(kek_id)?;
        if let Some(k) = lock(&self.keks).get(kek_id) {
            return Ok(k.clone());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let kek = self.provider.kek(kek_id)?;
        self.kek_unwraps.fetch_add(1, Ordering::Relaxed);
        let mut cache = lock(&self.keks);
        if self.epoch.load(Ordering::Acquire) == epoch {
            insert_bounded(&mut cache, kek_id.to_owned(), kek.clone());
        }
        Ok(kek)
    }

    /// Generates a fresh random DEK and wraps it under KEK `kek_id` with
    /// `aad = "shuyu-dek:v1:" + kek_id`. Returns the DEK and the serialized [`KeyMetadata`].
    ///
    /// # Errors
    /// [`VaultError::KeyNotAllowed`] for a forbidden id, or the provider's error.
    pub fn new_data_key(&self, kek_id: &str) -> Result<(SecretKey, Vec<u8>), VaultError> {
        let kek = self.kek(kek_id)?;
        let dek = SecretKey::generate();
        let md = KeyMetadata {
            v: METADATA_VERSION,
            kek: kek_id.to_owned(),
            dek: B64.encode(kek.wrap(&dek_aad(kek_id), &dek)),
        };
        Ok((dek, md.to_bytes()))
    }

    /// Parses `metadata` and unwraps its DEK, using the caches.
    ///
    /// # Errors
    /// [`VaultError::Format`] for unparseable metadata, [`VaultError::KeyNotAllowed`] for a
    /// forbidden KEK, [`VaultError::Crypto`] for a wrong key or tampering, or the provider's
    /// error.
    pub fn unwrap_data_key(&self, metadata: &[u8]) -> Result<SecretKey, VaultError> {
        let digest: [u8; 32] = Sha256::digest(metadata).into();
        if let Some((_, dek)) = lock(&self.deks).get(&digest) {
            self.dek_cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(dek.clone());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let md = KeyMetadata::from_bytes(metadata)?;
        let kek = self.kek(&md.kek)?;
        let dek = kek.unwrap(&dek_aad(&md.kek), &md.wrapped_dek()?)?;
        self.dek_unwraps.fetch_add(1, Ordering::Relaxed);
        let mut cache = lock(&self.deks);
        if self.epoch.load(Ordering::Acquire) == epoch {
            insert_bounded(&mut cache, digest, (md.kek, dek.clone()));
        }
        Ok(dek)
    }

    /// Drops the cached KEK `kek_id` and every cached DEK unwrapped under it, so the next use
    /// goes back to the provider (groundwork for crypto-shredding).
    pub fn forget(&self, kek_id: &str) {
        let mut keks = lock(&self.keks);
        let mut deks = lock(&self.deks);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        keks.remove(kek_id);
        deks.retain(|_, (id, _)| id != kek_id);
    }

    /// Snapshot of the counters.
    pub fn stats(&self) -> EnvelopeStats {
        EnvelopeStats {
            kek_unwraps: self.kek_unwraps.load(Ordering::Relaxed),
            dek_unwraps: self.dek_unwraps.load(Ordering::Relaxed),
            dek_cache_hits: self.dek_cache_hits.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug, Default)]
    struct CountingProvider {
        keys: HashMap<String, SecretKey>,
        calls: AtomicUsize,
    }

    impl CountingProvider {
        fn with(ids: &[&str]) -> Arc<CountingProvider> {
            let keys = ids
                .iter()
                .map(|id| ((*id).to_owned(), SecretKey::generate()))
                .collect();
            Arc::new(CountingProvider {
                keys,
                calls: AtomicUsize::new(0),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl KekProvider for CountingProvider {
        fn kek(&self, kek_id: &str) -> Result<SecretKey, VaultError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.keys
                .get(kek_id)
                .cloned()
                .ok_or_else(|| VaultError::UnknownKey(kek_id.into()))
        }
    }

    #[test]
    fn data_key_roundtrip_and_cache() {
        let p = CountingProvider::with(&["k1"]);
        let writer = Envelope::new(p.clone());
        let (dek, md) = writer.new_data_key("k1").unwrap();
        let parsed = KeyMetadata::from_bytes(&md).unwrap();
        assert_eq!((parsed.v, parsed.kek.as_str()), (1, "k1"));
        assert!(
            std::str::from_utf8(&md)
                .unwrap()
                .starts_with(r#"{"v":1,"kek":"k1","dek":""#)
        );

        let reader = Envelope::new(p.clone());
        assert_eq!(reader.unwrap_data_key(&md).unwrap().expose(), dek.expose());
        assert_eq!(reader.unwrap_data_key(&md).unwrap().expose(), dek.expose());
        let s = reader.stats();
        assert_eq!((s.kek_unwraps, s.dek_unwraps, s.dek_cache_hits), (1, 1, 1));
        assert_eq!(p.calls(), 2); // one for the writer, one for the reader

        let dbg = format!("{reader:?}");
        assert!(dbg.contains("cached_deks: 1") && !dbg.contains(&hex::encode(dek.expose())));
    }

    #[test]
    fn tampered_and_wrong_key_metadata() {
        let p = CountingProvider::with(&["k1", "k2"]);
        let env = Envelope::new(p);
        let (_, md) = env.new_data_key("k1").unwrap();
        let mut parsed = KeyMetadata::from_bytes(&md).unwrap();
        parsed.kek = "k2".into();
        assert!(matches!(
            env.unwrap_data_key(&parsed.to_bytes()),
            Err(VaultError::Crypto(_))
        ));
        let mut wrapped = KeyMetadata::from_bytes(&md).unwrap().wrapped_dek().unwrap();
        wrapped[20] ^= 0x80;
        let tampered = KeyMetadata {
            v: 1,
            kek: "k1".into(),
            dek: B64.encode(wrapped),
        };
        assert!(matches!(
            env.unwrap_data_key(&tampered.to_bytes()),
            Err(VaultError::Crypto(_))
        ));
        assert!(matches!(
            env.new_data_key("nope"),
            Err(VaultError::UnknownKey(_))
        ));
    }

    #[test]
    fn garbage_metadata_is_format_error() {
        let env = Envelope::new(CountingProvider::with(&["k1"]));
        for bad in [
            &b"not json"[..],
            br#"{"v":2,"kek":"k1","dek":"AAAA"}"#,
            br#"{"v":1,"kek":"","dek":"AAAA"}"#,
            br#"{"v":1,"kek":"k1","dek":"!!!"}"#,
            br#"{"v":1,"kek":"k1"}"#,
        ] {
            assert!(
                matches!(env.unwrap_data_key(bad), Err(VaultError::Format(_))),
                "{bad:?}"
            );
        }
        assert_eq!(env.stats(), EnvelopeStats::default());
    }

    #[test]
    fn restricted_envelope_refuses_other_keks() {
        let p = CountingProvider::with(&["k1", "k2"]);
        let (_, md2) = Envelope::new(p.clone()).new_data_key("k2").unwrap();
        let calls = p.calls();
        let env = Envelope::restricted_to(p.clone(), vec!["k1".into()]);
        assert!(env.new_data_key("k1").is_ok());
        assert!(matches!(env.new_data_key("k2"), Err(VaultError::KeyNotAllowed(id)) if id == "k2"));
        assert!(matches!(
            env.unwrap_data_key(&md2),
            Err(VaultError::KeyNotAllowed(_))
        ));
        assert_eq!(
            p.calls(),
            calls + 1,
            "provider must not be asked for a forbidden KEK"
        );
    }

    #[test]
    fn forget_drops_cached_keys() {
        let p = CountingProvider::with(&["k1", "k2"]);
        let env = Envelope::new(p.clone());
        let (_, md1) = env.new_data_key("k1").unwrap();
        let (_, md2) = env.new_data_key("k2").unwrap();
        env.unwrap_data_key(&md1).unwrap();
        env.unwrap_data_key(&md2).unwrap();
        assert_eq!(p.calls(), 2);

        env.forget("k1");
        env.unwrap_data_key(&md2).unwrap(); // still cached
        assert_eq!(p.calls(), 2);
        env.unwrap_data_key(&md1).unwrap(); // DEK and KEK both gone: provider asked again
        assert_eq!(p.calls(), 3);
        let s = env.stats();
        assert_eq!((s.kek_unwraps, s.dek_unwraps, s.dek_cache_hits), (3, 3, 1));
    }
}
