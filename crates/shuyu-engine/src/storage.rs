//! The domain's object store: a local file system store under the data dir by default,
//! registered in every session under the `shuyu://objects/` URL.
//!
//! Everything it holds is ciphertext: encrypted Parquet files and sealed export packages.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::EngineError;

const STORE_URL: &str = "shuyu://objects/";

/// The object store and its URL.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
    store: Arc<dyn ObjectStore>,
}

impl Storage {
    /// A local store rooted at `root` (created if missing).
    ///
    /// # Errors
    /// If the directory cannot be created or opened.
    pub fn local(root: &FsPath) -> Result<Storage, EngineError> {
        std::fs::create_dir_all(root)
            .map_err(|e| EngineError::Storage(format!("creating {}: {e}", root.display())))?;
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        Ok(Storage {
            root: root.to_path_buf(),
            store: Arc::new(store),
        })
    }

    /// The root directory (for tests and diagnostics).
    pub fn root(&self) -> &FsPath {
        &self.root
    }

    /// The underlying object store.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// Makes the store reachable from sessions of `runtime`.
    pub fn register(&self, runtime: &RuntimeEnv) {
        let url = ObjectStoreUrl::parse(STORE_URL).expect("constant URL parses");
        runtime.register_object_store(url.as_ref(), Arc::clone(&self.store));
    }

    /// The URL DataFusion uses for an object path such as `datasets/<id>/`.
    pub fn url(&self, location: &str) -> String {
        format!("{STORE_URL}{location}")
    }

    /// Stores `bytes` at `location` (atomically: temp file then rename).
    ///
    /// # Errors
    /// On storage failure.
    pub async fn put(&self, location: &str, bytes: Vec<u8>) -> Result<(), EngineError> {
        self.store
            .put(&Path::from(location), PutPayload::from(bytes))
            .await
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        Ok(())
    }

    /// Reads the object at `location`.
    ///
    /// # Errors
    /// On storage failure or if it does not exist.
    pub async fn get(&self, location: &str) -> Result<Bytes, EngineError> {
        let result = self
            .store
            .get(&Path::from(location))
            .await
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        result
            .bytes()
            .await
            .map_err(|e| EngineError::Storage(e.to_string()))
    }

    /// Object paths under a prefix.
    ///
    /// # Errors
    /// On storage failure.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, EngineError> {
        let prefix = Path::from(prefix);
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }

    /// Deletes the object at `location`; a missing object is not an error.
    ///
    /// # Errors
    /// On storage failure.
    pub async fn delete(&self, location: &str) -> Result<(), EngineError> {
        match self.store.delete(&Path::from(location)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(EngineError::Storage(e.to_string())),
        }
    }

    /// Deletes every object under `prefix` (used to clean up half-written datasets).
    ///
    /// # Errors
    /// On storage failure.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), EngineError> {
        for location in self.list(prefix).await? {
            self.store
                .delete(&Path::from(location.as_str()))
                .await
                .map_err(|e| EngineError::Storage(e.to_string()))?;
        }
        let dir = self.root.join(prefix.trim_end_matches('/'));
        if dir.is_dir() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    }
}
