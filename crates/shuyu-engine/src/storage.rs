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
use object_store::{ObjectStore, ObjectStoreExt};

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

    /// Stores `bytes` at `location` durably: a private (0600) temporary file, written and
    /// synced, renamed into place, then the folders from it up to the root synced, so that
    /// once this returns the object survives a crash (a record naming it may commit).
    ///
    /// # Errors
    /// On storage failure.
    pub async fn put(&self, location: &str, bytes: Vec<u8>) -> Result<(), EngineError> {
        let path = Path::from(location);
        let target = self.root.join(path.as_ref());
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || write_durably(&root, &target, &bytes))
            .await
            .map_err(|e| EngineError::Storage(format!("writing an object: {e}")))?
            .map_err(|e| EngineError::Storage(format!("writing {location}: {e}")))
    }

    /// Flushes every file under `prefix` (a folder such as `datasets/<id>/`, or one object)
    /// and the folders from there up to the root to disk: objects written by the engine, a
    /// worker or DataFusion reach the disk before the record that names them commits.
    ///
    /// # Errors
    /// On storage failure.
    pub async fn sync(&self, prefix: &str) -> Result<(), EngineError> {
        let target = self.root.join(prefix.trim_end_matches('/'));
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sync_tree(&root, &target))
            .await
            .map_err(|e| EngineError::Storage(format!("syncing objects: {e}")))?
            .map_err(|e| EngineError::Storage(format!("syncing {prefix}: {e}")))
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

    /// The file that holds the object at `location` (the store is the local file system).
    pub fn path_of(&self, location: &str) -> PathBuf {
        self.root.join(Path::from(location).as_ref())
    }

    /// Opens the object at `location` for reading in pieces (chunked reads of a large
    /// object, never the whole of it at once).
    ///
    /// # Errors
    /// On storage failure or if it does not exist.
    pub fn open_file(&self, location: &str) -> Result<std::fs::File, EngineError> {
        std::fs::File::open(self.path_of(location))
            .map_err(|e| EngineError::Storage(format!("opening {location}: {e}")))
    }

    /// The size of the object at `location`, in bytes.
    ///
    /// # Errors
    /// On storage failure or if it does not exist.
    pub async fn size(&self, location: &str) -> Result<u64, EngineError> {
        self.store
            .head(&Path::from(location))
            .await
            .map(|meta| meta.size)
            .map_err(|e| EngineError::Storage(e.to_string()))
    }

    /// Hex SHA-256 of the object at `location`, read in chunks of [`READ_CHUNK_BYTES`]: the
    /// memory it takes does not grow with the object.
    ///
    /// # Errors
    /// On storage failure or if it does not exist.
    pub async fn sha256(&self, location: &str) -> Result<String, EngineError> {
        let file = self.open_file(location)?;
        let what = location.to_owned();
        tokio::task::spawn_blocking(move || sha256_of(file))
            .await
            .map_err(|e| EngineError::Storage(format!("hashing an object: {e}")))?
            .map_err(|e| EngineError::Storage(format!("reading {what}: {e}")))
    }

    /// A new object at `location`, written in pieces into a private temporary file that
    /// [`DurableFile::commit`] syncs and renames into place (the folders up to the root
    /// synced too), as [`Storage::put`] does for whole objects. Dropped uncommitted, the
    /// temporary file is removed and nothing appears at `location`.
    ///
    /// # Errors
    /// If the folders or the file cannot be created.
    pub fn create_durable(&self, location: &str) -> Result<DurableFile, EngineError> {
        let target = self.path_of(location);
        DurableFile::create(&self.root, target)
            .map_err(|e| EngineError::Storage(format!("creating {location}: {e}")))
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

/// Bytes read at a time by the chunked readers of large objects.
pub const READ_CHUNK_BYTES: usize = 1 << 20;

/// The context (AES-GCM associated data) of a chunk-sealed object at `location`: a sealed
/// object moved elsewhere does not open.
pub fn object_context(location: &str) -> Vec<u8> {
    format!("shuyu-object:{location}").into_bytes()
}

/// Hex SHA-256 of everything `input` yields, read in chunks.
///
/// # Errors
/// On read failure.
pub fn sha256_of(mut input: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = shuyu_vault::Sha256Hasher::new();
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish_hex())
}

/// An object being written in pieces (see [`Storage::create_durable`]).
#[derive(Debug)]
pub struct DurableFile {
    root: PathBuf,
    target: PathBuf,
    temp: PathBuf,
    file: Option<std::fs::File>,
}

impl DurableFile {
    fn create(root: &FsPath, target: PathBuf) -> std::io::Result<DurableFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = target
            .parent()
            .ok_or_else(|| std::io::Error::other("an object path without a folder"))?;
        create_folders(dir)?;
        let temp = dir.join(format!(
            ".{}.{}.tmp",
            target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            uuid_suffix()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        Ok(DurableFile {
            root: root.to_path_buf(),
            target,
            temp,
            file: Some(file),
        })
    }

    /// Syncs the file, renames it into place and syncs its folders up to the root: once this
    /// returns, the object survives a crash.
    ///
    /// # Errors
    /// On failure, after which nothing is at the object's place.
    pub fn commit(mut self) -> std::io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("committed twice"))?;
        let done = file
            .sync_all()
            .and_then(|()| std::fs::rename(&self.temp, &self.target));
        drop(file);
        if let Err(e) = done {
            let _ = std::fs::remove_file(&self.temp);
            return Err(e);
        }
        match self.target.parent() {
            Some(dir) => sync_folders_up(&self.root, dir),
            None => Ok(()),
        }
    }
}

impl std::io::Write for DurableFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.file {
            Some(file) => file.write(buf),
            None => Err(std::io::Error::other("the object was committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for DurableFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Creates the missing folders of `dir` under `root` with mode 0700.
fn create_folders(dir: &FsPath) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Syncs `dir` and each folder above it up to and including `root`.
fn sync_folders_up(root: &FsPath, dir: &FsPath) -> std::io::Result<()> {
    let mut current = Some(dir);
    while let Some(folder) = current {
        if !folder.starts_with(root) {
            break;
        }
        std::fs::File::open(folder)?.sync_all()?;
        if folder == root {
            break;
        }
        current = folder.parent();
    }
    Ok(())
}

fn write_durably(root: &FsPath, target: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("an object path without a folder"))?;
    create_folders(dir)?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        uuid_suffix()
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, target)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_folders_up(root, dir)
}

/// A process-unique suffix for temporary names.
fn uuid_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn sync_tree(root: &FsPath, target: &FsPath) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(target) {
        Ok(meta) => meta,
        // Nothing there (an empty result folder): nothing to sync but its parents.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match target.parent() {
                Some(parent) if parent.exists() => sync_folders_up(root, parent),
                _ => Ok(()),
            };
        }
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        let mut stack = vec![target.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_file() {
                    std::fs::File::open(entry.path())?.sync_all()?;
                }
            }
            std::fs::File::open(&dir)?.sync_all()?;
        }
    } else {
        std::fs::File::open(target)?.sync_all()?;
    }
    match target.parent() {
        Some(parent) => sync_folders_up(root, parent),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn put_writes_private_files_and_folders_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        storage
            .put("exports/t/e/p.pkg", b"sealed".to_vec())
            .await
            .unwrap();
        let file = dir.path().join("exports/t/e/p.pkg");
        assert_eq!(std::fs::read(&file).unwrap(), b"sealed");
        let mode = |p: &FsPath| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("exports/t/e")), 0o700);
        assert_eq!(mode(&dir.path().join("exports")), 0o700);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("exports/t/e"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(
            storage.get("exports/t/e/p.pkg").await.unwrap().as_ref(),
            b"sealed"
        );
        // Hashed in chunks, the same as the whole.
        assert_eq!(
            storage.sha256("exports/t/e/p.pkg").await.unwrap(),
            shuyu_vault::sha256_hex(b"sealed")
        );
        assert_eq!(storage.size("exports/t/e/p.pkg").await.unwrap(), 6);
        // Written in pieces: nothing at its place until committed, nothing left if dropped.
        use std::io::Write as _;
        let mut piecewise = storage.create_durable("exports/t/e/q.pkg").unwrap();
        piecewise.write_all(b"one ").unwrap();
        piecewise.write_all(b"two").unwrap();
        assert!(!dir.path().join("exports/t/e/q.pkg").exists());
        piecewise.commit().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("exports/t/e/q.pkg")).unwrap(),
            b"one two"
        );
        assert_eq!(mode(&dir.path().join("exports/t/e/q.pkg")), 0o600);
        let mut dropped = storage.create_durable("exports/t/e/r.pkg").unwrap();
        dropped.write_all(b"never").unwrap();
        drop(dropped);
        let mut left: Vec<_> = std::fs::read_dir(dir.path().join("exports/t/e"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["p.pkg", "q.pkg"]);
        // Syncing a folder, an object or nothing at all works.
        storage.sync("exports/t/").await.unwrap();
        storage.sync("exports/t/e/p.pkg").await.unwrap();
        storage.sync("results/none/").await.unwrap();
    }
}
