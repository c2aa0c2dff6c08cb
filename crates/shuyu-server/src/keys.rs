//! The domain's key hierarchy over the metadata store: master key → KEKs (the domain's, one
//! per tenant for staged results, one per tenant for pseudonyms) → per-file data keys.
//!
//! Wrapped KEKs are kept in memory after start (they are ciphertext); unwrapped ones live
//! only in the vault's envelope cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rusqlite::Connection;
use shuyu_vault::{Envelope, KekProvider, MasterKey, SecretKey, VaultError};

use crate::error::Result;
use crate::store;

/// The KEK that wraps the data keys of published datasets.
pub const DOMAIN_KEK: &str = "domain";

/// Provides KEKs by unwrapping them with the master key.
#[derive(Debug)]
pub struct KeyStore {
    master: MasterKey,
    wrapped: RwLock<HashMap<String, Vec<u8>>>,
}

impl KeyStore {
    /// Loads every wrapped KEK from the store.
    ///
    /// # Errors
    /// On store failure.
    pub fn load(master: MasterKey, conn: &Connection) -> Result<Arc<KeyStore>> {
        let wrapped = store::all_keks(conn)?.into_iter().collect();
        Ok(Arc::new(KeyStore {
            master,
            wrapped: RwLock::new(wrapped),
        }))
    }

    /// The master key.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Creates a KEK, stores it wrapped inside `conn`'s transaction, and remembers it.
    ///
    /// # Errors
    /// On store failure.
    pub fn create_kek(&self, conn: &Connection, kek_id: &str, owner: &str) -> Result<()> {
        let kek = SecretKey::generate();
        let wrapped = self.master.wrap_kek(kek_id, &kek);
        store::insert_kek(conn, kek_id, &wrapped, owner)?;
        self.wrapped
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kek_id.to_owned(), wrapped);
        Ok(())
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
        let wrapped = self
            .wrapped
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kek_id)
            .cloned()
            .ok_or_else(|| VaultError::UnknownKey(kek_id.to_owned()))?;
        self.master.unwrap_kek(kek_id, &wrapped)
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

/// An envelope that may use only the listed KEKs (what one job needs).
pub fn restricted_envelope(keys: &Arc<KeyStore>, allowed: Vec<String>) -> Arc<Envelope> {
    Arc::new(Envelope::restricted_to(
        Arc::clone(keys) as Arc<dyn KekProvider>,
        allowed,
    ))
}
