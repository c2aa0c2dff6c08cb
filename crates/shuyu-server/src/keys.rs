//! The domain's key hierarchy over the metadata store:
//!
//! ```text
//! master key ─┬─ domain ──── dataset:<id>        (one per published dataset)
//!             ├─ tenant:<t> ─ job:<id>           (one per job result)
//!             └─ pseudonym:<t>                   (the tenant's pseudonym key)
//!                  └─ per-file data keys, wrapped by the KEK named in each file's footer
//! ```
//!
//! A child KEK is wrapped by its parent, so a worker can be handed exactly the dataset and
//! job keys it needs, and destroying a tenant's KEK makes its job keys unrecoverable.
//! Wrapped KEKs are kept in memory after start (they are ciphertext); unwrapped ones live
//! only in the vault's envelope cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use shuyu_vault::{KekProvider, MasterKey, SecretKey, VaultError};

use crate::error::Result;
use crate::store::{self, Tx};

/// The KEK that wraps the data keys of published datasets.
pub const DOMAIN_KEK: &str = "domain";

/// The KEK of a published dataset.
pub fn dataset_kek(dataset_id: &str) -> String {
    format!("dataset:{dataset_id}")
}

/// The KEK of a job's result.
pub fn job_kek(job_id: &str) -> String {
    format!("job:{job_id}")
}

/// The fingerprint of `recipient_id`'s copy of export `export_id` (R24 traceability): hex
/// HMAC-SHA256 over both ids under a key derived from the master key. It marks the copy; the
/// key never leaves the server.
pub fn product_fingerprint(master: &MasterKey, export_id: &str, recipient_id: &str) -> String {
    let key = master.key().derive("shuyu-product-fingerprint:v1");
    hex::encode(key.hmac_sha256(format!("{export_id}\u{0}{recipient_id}").as_bytes()))
}

/// The key that orders the rows of the copy marked `fingerprint`: derived from it under a
/// domain key, so that nobody outside the domain can produce (or forge) another copy's order.
pub fn product_order_key(master: &MasterKey, fingerprint: &str) -> Result<SecretKey> {
    let key = master.key().derive("shuyu-product-order:v1");
    Ok(SecretKey::from_bytes(
        &key.hmac_sha256(fingerprint.as_bytes()),
    )?)
}

/// The key under which a recipient's copies carry their pseudonyms: two recipients' copies
/// cannot be joined on them.
pub fn recipient_pseudonym_key(master: &MasterKey, recipient_id: &str) -> Result<SecretKey> {
    let key = master.key().derive("shuyu-recipient-pseudonym:v1");
    Ok(SecretKey::from_bytes(
        &key.hmac_sha256(recipient_id.as_bytes()),
    )?)
}

/// The registry's keyed hash of a normalised resident ID number (R8 real-name registration):
/// hex HMAC-SHA256 under a key derived from the master key. The number itself is never
/// stored; the same number registered twice has the same hash.
pub fn id_number_hash(master: &MasterKey, normalized_id_number: &str) -> String {
    let key = master.key().derive("shuyu-id-number:v1");
    hex::encode(key.hmac_sha256(normalized_id_number.as_bytes()))
}

/// How deep the hierarchy may nest (guards against a cycle in a corrupted store).
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone)]
struct WrappedKek {
    wrapped: Vec<u8>,
    parent: Option<String>,
    /// Seen in the store (loaded, looked up, or found there since it was made here): a key
    /// confirmed and then gone from the store was deleted, by this server or another.
    confirmed: bool,
}

fn child_aad(kek_id: &str) -> Vec<u8> {
    [b"shuyu-kek-child:v1:".as_slice(), kek_id.as_bytes()].concat()
}

/// Provides KEKs by unwrapping them with their parent, up to the master key.
///
/// It remembers the wrapped keys it loaded at start and those it made. When servers share
/// the domain ([`KeyStore::share`]), a key another server made is looked up in the store the
/// first time it is needed, and [`KeyStore::sync`] forgets keys another server deleted (a
/// tenant's termination).
#[derive(Debug)]
pub struct KeyStore {
    master: MasterKey,
    wrapped: RwLock<HashMap<String, WrappedKek>>,
    shared: std::sync::OnceLock<crate::store::Store>,
}

impl KeyStore {
    /// Loads every wrapped KEK from the store.
    ///
    /// # Errors
    /// On store failure.
    pub fn load(master: MasterKey, tx: &Tx<'_>) -> Result<Arc<KeyStore>> {
        let wrapped = store::all_keks(tx)?
            .into_iter()
            .map(|(id, wrapped, parent)| {
                (
                    id,
                    WrappedKek {
                        wrapped,
                        parent,
                        confirmed: true,
                    },
                )
            })
            .collect();
        Ok(Arc::new(KeyStore {
            master,
            wrapped: RwLock::new(wrapped),
            shared: std::sync::OnceLock::new(),
        }))
    }

    /// Shares the domain's keys with other servers through `store` (metadata in PostgreSQL):
    /// unknown keys are then looked up there. Not for SQLite, where this server is the only
    /// writer and a lookup inside its own transaction would wait on itself.
    pub fn share(&self, store: &crate::store::Store) {
        let _ = self.shared.set(store.clone());
    }

    /// Forgets the keys that were in the store and are gone from it (deleted by any server)
    /// and returns their ids (for the envelope to forget too); confirms those made here that
    /// are now stored. Nothing to do unless shared.
    ///
    /// # Errors
    /// On store failure.
    pub fn sync(&self) -> Result<Vec<String>> {
        let Some(store) = self.shared.get() else {
            return Ok(Vec::new());
        };
        let present: std::collections::HashSet<String> = store.read(|tx| {
            tx.query("SELECT id FROM keks", &[])?
                .iter()
                .map(|r| Ok(r.get("id")?))
                .collect()
        })?;
        let mut wrapped = self.wrapped.write().unwrap_or_else(|p| p.into_inner());
        let mut gone = Vec::new();
        wrapped.retain(|id, kek| {
            if present.contains(id) {
                kek.confirmed = true;
                true
            } else if kek.confirmed {
                gone.push(id.clone());
                false
            } else {
                true
            }
        });
        Ok(gone)
    }

    /// The wrapped key `kek_id` as the store holds it (shared keys only).
    fn look_up(&self, kek_id: &str) -> Option<WrappedKek> {
        let store = self.shared.get()?;
        let found = store
            .read(|tx| {
                tx.query_opt(
                    "SELECT wrapped, parent FROM keks WHERE id = ?1",
                    shuyu_meta::params![kek_id],
                )?
                .map(|r| {
                    Ok(WrappedKek {
                        wrapped: r.get("wrapped")?,
                        parent: r.get("parent")?,
                        confirmed: true,
                    })
                })
                .transpose()
            })
            .ok()??;
        self.wrapped
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kek_id.to_owned(), found.clone());
        Some(found)
    }

    /// The master key.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Creates a KEK, stores it wrapped inside `tx`, and remembers it. Run again in a
    /// transaction that reruns after a conflict, it makes a new key and remembers that one in
    /// place of the first: what is remembered is what the last run stored. If `tx` fails
    /// for good, [`KeyStore::discard`] the id.
    ///
    /// # Errors
    /// On store failure.
    pub fn create_kek(&self, tx: &Tx<'_>, kek_id: &str, owner: &str) -> Result<()> {
        let kek = SecretKey::generate();
        let wrapped = self.master.wrap_kek(kek_id, &kek);
        store::insert_kek(tx, kek_id, &wrapped, owner, None)?;
        self.remember(kek_id, wrapped, None);
        Ok(())
    }

    /// Creates a KEK wrapped by the KEK `parent`, inside `tx` (rerun like
    /// [`KeyStore::create_kek`]).
    ///
    /// # Errors
    /// If the parent is unknown or on store failure.
    pub fn create_child_kek(
        &self,
        tx: &Tx<'_>,
        kek_id: &str,
        parent: &str,
        owner: &str,
    ) -> Result<()> {
        let parent_key = self.kek(parent)?;
        let kek = SecretKey::generate();
        let wrapped = parent_key.wrap(&child_aad(kek_id), &kek);
        store::insert_kek(tx, kek_id, &wrapped, owner, Some(parent))?;
        self.remember(kek_id, wrapped, Some(parent.to_owned()));
        Ok(())
    }

    /// Creates a KEK wrapped by `parent` in memory only, for a file that must be written
    /// before its catalog record commits. Store the returned wrapped key with
    /// [`store::insert_kek`] in that record's transaction, or [`KeyStore::discard`] it.
    ///
    /// # Errors
    /// If the parent is unknown or does not unwrap.
    pub fn prepare_child_kek(&self, kek_id: &str, parent: &str) -> Result<Vec<u8>> {
        let parent_key = self.kek(parent)?;
        let kek = SecretKey::generate();
        let wrapped = parent_key.wrap(&child_aad(kek_id), &kek);
        self.remember(kek_id, wrapped.clone(), Some(parent.to_owned()));
        Ok(wrapped)
    }

    fn remember(&self, kek_id: &str, wrapped: Vec<u8>, parent: Option<String>) {
        self.wrapped
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                kek_id.to_owned(),
                WrappedKek {
                    wrapped,
                    parent,
                    confirmed: false,
                },
            );
    }

    fn unwrap_at(&self, kek_id: &str, depth: usize) -> Result<SecretKey, VaultError> {
        let cached = self
            .wrapped
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kek_id)
            .cloned();
        let entry = cached
            .or_else(|| self.look_up(kek_id))
            .ok_or_else(|| VaultError::UnknownKey(kek_id.to_owned()))?;
        match entry.parent {
            None => self.master.unwrap_kek(kek_id, &entry.wrapped),
            Some(_) if depth >= MAX_DEPTH => Err(VaultError::Format(format!(
                "the key hierarchy above {kek_id} is too deep"
            ))),
            Some(parent) => self
                .unwrap_at(&parent, depth + 1)?
                .unwrap(&child_aad(kek_id), &entry.wrapped),
        }
    }

    /// Forgets a KEK created in a transaction that then failed.
    pub fn discard(&self, kek_id: &str) {
        self.wrapped
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(kek_id);
    }
}

impl KekProvider for KeyStore {
    fn kek(&self, kek_id: &str) -> Result<SecretKey, VaultError> {
        self.unwrap_at(kek_id, 0)
    }
}

/// A tenant's pseudonym key: the KEK stored under `pseudonym_kek_id` is used directly as the
/// HMAC key, so tokens are stable per tenant and differ across tenants.
///
/// # Errors
/// If the key is missing or does not unwrap.
pub fn pseudonym_key(keys: &KeyStore, pseudonym_kek_id: &str) -> Result<SecretKey> {
    Ok(keys.kek(pseudonym_kek_id)?.derive("shuyu-pseudonym:v1"))
}
