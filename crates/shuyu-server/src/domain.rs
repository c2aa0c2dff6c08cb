//! A domain's data directory: creating it (`shuyu init`) and opening it (`shuyu serve`).
//!
//! Layout: `master.key` (the only plaintext secret), `meta.db` (metadata store and audit
//! trail), `objects/` (encrypted Parquet, sealed packages), `tls/` (CA certificate, public),
//! `serve.lock` (held by the serving process). The CA key, the server key and the domain's
//! signing key are stored sealed under a key derived from the master key. Every file is 0600
//! and every folder 0700, whatever the umask: created so, and tightened when a server opens
//! the directory.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use shuyu_policy::Role;
use shuyu_vault::{MasterKey, SecretKey, SigningKey};
use zeroize::Zeroizing;

use crate::admin::records::Principal;
use crate::audit::trail::{AuditEntry, AuditLog};
use crate::error::{Result, ServerError, StorageFault};
use crate::keys::{DOMAIN_KEK, KeyStore};
use crate::store::{self, Legacy, Store, StoreOptions, Tx};
use crate::tls::{self, CaMaterial};
use shuyu_meta::{DbOptions, MetadataUrl, Migration, PasswordSource};

/// The metadata schema, one versioned list for both backends: each step is an area's tables
/// (`CREATE TABLE IF NOT EXISTS`, so that SQLite data dirs written before versioned
/// migrations take it as it is). A released step never changes: a later change of an area's
/// tables is a new step at the end (`ALTER TABLE … ADD COLUMN …`, in that area's records).
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "store",
        sql: store::TABLES,
    },
    Migration {
        version: 2,
        name: "admin",
        sql: crate::admin::records::TABLES,
    },
    Migration {
        version: 3,
        name: "catalog",
        sql: crate::catalog::records::TABLES,
    },
    Migration {
        version: 4,
        name: "jobs",
        sql: crate::jobs::records::TABLES,
    },
    Migration {
        version: 5,
        name: "exports",
        sql: crate::exports::records::TABLES,
    },
    Migration {
        version: 6,
        name: "scenarios",
        sql: crate::scenarios::records::TABLES,
    },
    Migration {
        version: 7,
        name: "audit",
        sql: crate::audit::trail::SCHEMA,
    },
    Migration {
        version: 8,
        name: "notices",
        sql: crate::notify::SCHEMA,
    },
    Migration {
        version: 9,
        name: "stewardship",
        sql: crate::stewardship::records::SCHEMA,
    },
    Migration {
        version: 10,
        name: "alerts",
        sql: crate::oversight::alerts::SCHEMA,
    },
    Migration {
        version: 11,
        name: "checkpoints",
        sql: crate::audit::checkpoint::SCHEMA,
    },
    Migration {
        version: 12,
        name: "retention",
        sql: crate::audit::retention::SCHEMA,
    },
    Migration {
        version: 13,
        name: "evaluations",
        sql: crate::oversight::reports::EVALUATION_SCHEMA,
    },
    Migration {
        version: 14,
        name: "lifecycle",
        sql: crate::lifecycle::records::SCHEMA,
    },
    Migration {
        version: 15,
        name: "governance",
        sql: crate::governance::records::SCHEMA,
    },
    Migration {
        version: 16,
        name: "plan_texts",
        sql: crate::jobs::plan_texts::SCHEMA,
    },
    Migration {
        version: 17,
        name: "bindings",
        sql: crate::audit::bindings::SCHEMA,
    },
    Migration {
        version: 18,
        name: "production_failures",
        sql: crate::jobs::oracle::SCHEMA,
    },
    Migration {
        version: 19,
        name: "job_servers",
        sql: crate::jobs::records::SERVERS_TABLE,
    },
    Migration {
        version: 20,
        name: "audit_tree",
        sql: crate::audit::tree::SCHEMA,
    },
    Migration {
        version: 21,
        name: "ledger_index",
        sql: crate::exports::records::LEDGER_INDEX,
    },
];

/// What SQLite data dirs written before versioned migrations need beyond [`MIGRATIONS`].
const LEGACY: &[Legacy] = &[
    store::LEGACY,
    crate::admin::records::LEGACY,
    crate::catalog::records::LEGACY,
    crate::jobs::records::LEGACY,
    crate::exports::records::LEGACY,
    crate::scenarios::records::LEGACY,
];

/// Opens (or creates) the metadata store with every area's tables, and stores the audit
/// Merkle tree's nodes that records appended before the tree was stored lack.
///
/// # Errors
/// If the database cannot be opened, the schema brought up to date or the tree filled in.
pub fn open_store(options: &StoreOptions, audit: AuditLog) -> Result<Store> {
    let store = Store::open(options, audit, MIGRATIONS, LEGACY)?;
    // Records appended by a version that stored no Merkle tree get their nodes once.
    backfill_audit_tree(&store)?;
    Ok(store)
}

/// Fills in the audit tree's nodes that records appended before the tree was stored lack,
/// a few thousand records per transaction; returns how many records it covered anew.
///
/// # Errors
/// On store failure, or a tree that does not grow when filled in.
pub(crate) fn backfill_audit_tree(store: &Store) -> Result<u64> {
    let mut added = 0;
    let mut last_done = None;
    loop {
        let (done, step) = store.write_unaudited(crate::audit::tree::backfill_step)?;
        if step == 0 {
            if added > 0 {
                tracing::info!(records = added, "audit tree filled in");
            }
            return Ok(added);
        }
        if last_done == Some(done) {
            return Err(ServerError::internal(format!(
                "the audit tree does not grow past record {done} when filled in"
            )));
        }
        last_done = Some(done);
        added += step;
    }
}

/// Opens the metadata store read-only, for checks on the host (`shuyu audit verify`): no
/// schema, no migration, no write.
///
/// # Errors
/// If the database cannot be opened.
pub fn open_store_read_only(options: &StoreOptions, audit: AuditLog) -> Result<Store> {
    Store::open_read_only(options, audit)
}

/// Where a domain keeps its metadata. `shuyu init --metadata-url` records it in the data dir
/// (`metadata.toml`, 0600), so that `shuyu serve` and `shuyu audit verify` given only the data
/// dir find it; a password is never recorded: it comes from the environment variable or file
/// named here, or from `SHUYU_METADATA_PASSWORD` when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// `postgresql://user@host:port/dbname` (or `postgresql:///dbname?host=/socket/dir`);
    /// none: SQLite, `meta.db` in the data dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The environment variable that holds the PostgreSQL password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// The file (not readable by group or others) that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// The environment variable read for a PostgreSQL password when no source is named.
pub const PASSWORD_ENV: &str = "SHUYU_METADATA_PASSWORD";

impl MetadataConfig {
    /// Metadata on the PostgreSQL at `url`.
    pub fn postgres(url: &str) -> MetadataConfig {
        MetadataConfig {
            url: Some(url.to_owned()),
            ..MetadataConfig::default()
        }
    }

    /// The URL, checked: parsed, and without a password (which belongs in the environment
    /// or a file, not in a recorded URL or a config file).
    ///
    /// # Errors
    /// `InvalidArgument` for an unparsable URL or one that carries a password.
    pub fn parsed_url(&self) -> Result<Option<MetadataUrl>> {
        let Some(text) = self.url.as_deref() else {
            return Ok(None);
        };
        let url = MetadataUrl::parse(text)
            .map_err(|e| ServerError::InvalidArgument(format!("metadata URL: {e}")))?;
        if url.has_password() {
            return Err(ServerError::InvalidArgument(format!(
                "the metadata URL {} carries a password: give it in {PASSWORD_ENV} or a file \
                 (password_file) instead",
                url.without_password()
            )));
        }
        Ok(Some(url))
    }

    /// How to open the store of the domain in `dir`.
    ///
    /// # Errors
    /// A bad URL, or both password sources named.
    pub fn store_options(&self, dir: &DataDir) -> Result<StoreOptions> {
        let url = self
            .parsed_url()?
            .unwrap_or_else(|| MetadataUrl::Sqlite(dir.meta_db()));
        let password = match (&self.password_env, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(ServerError::InvalidArgument(
                    "name one password source for the metadata database, not two".into(),
                ));
            }
            (Some(var), None) => PasswordSource::EnvVar(var.clone()),
            (None, Some(file)) => PasswordSource::File(file.clone()),
            (None, None) if std::env::var_os(PASSWORD_ENV).is_some() => {
                PasswordSource::EnvVar(PASSWORD_ENV.to_owned())
            }
            (None, None) => PasswordSource::None,
        };
        Ok(StoreOptions {
            url,
            db: DbOptions {
                password,
                clock_skew: crate::clock::db_skew(),
                ..DbOptions::default()
            },
        })
    }

    /// What the data dir `dir` records (the default, SQLite in the data dir, when it records
    /// nothing).
    ///
    /// # Errors
    /// An unreadable or malformed record.
    pub fn recorded(dir: &DataDir) -> Result<MetadataConfig> {
        let path = dir.metadata_record();
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| ServerError::FailedPrecondition(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MetadataConfig::default()),
            Err(e) => Err(ServerError::from_io(&path.display().to_string(), e)),
        }
    }

    /// What a server started with this configuration uses for the domain in `dir`: the data
    /// dir's record, with the password source given here, if any. A URL given here must be the
    /// recorded one: a data dir's keys and its metadata belong together.
    ///
    /// # Errors
    /// An unreadable record, or a URL other than the recorded one.
    pub fn for_data_dir(&self, dir: &DataDir) -> Result<MetadataConfig> {
        let recorded = MetadataConfig::recorded(dir)?;
        let given = self.parsed_url()?.map(|u| u.without_password());
        let known = recorded.parsed_url()?.map(|u| u.without_password());
        if given.is_some() && given != known {
            return Err(ServerError::FailedPrecondition(format!(
                "{} keeps its metadata in {}, not {}",
                dir.root().display(),
                known.map_or_else(|| "meta.db".to_owned(), |u| u.to_string()),
                given.map(|u| u.to_string()).unwrap_or_default()
            )));
        }
        let mut config = recorded;
        if self.password_env.is_some() || self.password_file.is_some() {
            config.password_env.clone_from(&self.password_env);
            config.password_file.clone_from(&self.password_file);
        }
        Ok(config)
    }

    /// Records this configuration in `dir` (0600), when it names a database.
    fn record(&self, dir: &DataDir) -> Result<()> {
        if self.url.is_none() {
            return Ok(());
        }
        let text = toml::to_string(self).map_err(ServerError::internal)?;
        write_private_file(&dir.metadata_record(), text.as_bytes())
    }
}

/// Paths inside a data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout rooted at `root`.
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
        }
    }
    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The master key file.
    pub fn master_key(&self) -> PathBuf {
        self.root.join("master.key")
    }
    /// The metadata store, when it is SQLite in the data dir.
    pub fn meta_db(&self) -> PathBuf {
        self.root.join("meta.db")
    }
    /// Where the metadata lives, when elsewhere ([`MetadataConfig`]).
    pub fn metadata_record(&self) -> PathBuf {
        self.root.join("metadata.toml")
    }
    /// The object store root.
    pub fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }
    /// The CA certificate (public).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("tls").join("ca.pem")
    }
    /// The domain's public signing key, hex (public).
    pub fn signing_public_key(&self) -> PathBuf {
        self.root.join("domain-signing.pub")
    }
    /// The lock file held by the serving process.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("serve.lock")
    }
}

/// Files of a data dir: owner only.
pub const FILE_MODE: u32 = 0o600;
/// Folders of a data dir: owner only.
pub const DIR_MODE: u32 = 0o700;

/// Sets the process's umask to 0077, so that every file and folder this process and its
/// workers create (SQLite, the object store, DataFusion) is private to its owner. Process
/// wide: called by `init` and `serve`.
pub fn set_private_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// Creates `path` and its missing parents as folders of mode 0700 (exactly: set after
/// creation, whatever the umask).
///
/// # Errors
/// On IO failure ([`ServerError::Storage`] for a full or read-only disk).
pub fn create_private_dir(path: &Path) -> Result<()> {
    let what = path.display().to_string();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(|e| ServerError::from_io(&what, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| ServerError::from_io(&what, e))
}

/// Writes `bytes` to a new or replaced file of mode 0600 and syncs it to disk.
///
/// # Errors
/// On IO failure.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let what = path.display().to_string();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| ServerError::from_io(&what, e))?;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all())
        .map_err(|e| ServerError::from_io(&what, e))
}

/// Makes every folder of `root` (itself included) 0700 and every file 0600; symbolic links
/// are neither followed nor changed. Returns how many entries were tightened.
///
/// # Errors
/// An entry whose mode cannot be changed (another owner's): the data dir is refused.
pub fn secure_tree(root: &Path) -> Result<usize> {
    let mut tightened = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let what = path.display().to_string();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| ServerError::from_io(&what, e))?;
        let wanted = if meta.is_dir() {
            DIR_MODE
        } else if meta.is_file() {
            FILE_MODE
        } else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & !wanted != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & wanted))
                .map_err(|e| {
                    ServerError::FailedPrecondition(format!(
                        "{what} is readable by others (mode {mode:o}) and cannot be made \
                         private ({e}): refusing to serve this data dir"
                    ))
                })?;
            tightened += 1;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| ServerError::from_io(&what, e))? {
                stack.push(entry.map_err(|e| ServerError::from_io(&what, e))?.path());
            }
        }
    }
    Ok(tightened)
}

/// The lock on a data dir that its serving processes hold (an advisory `flock` on
/// `serve.lock`, released by the kernel when the process ends, however it ends): exclusive
/// when the metadata is SQLite in the data dir, shared by the servers of a domain whose
/// metadata is in PostgreSQL.
#[derive(Debug)]
pub struct ServeLock {
    _file: std::fs::File,
    /// No other server held the data dir when this one took it: every other server's
    /// lease in the metadata is a leftover of a server that died.
    pub alone: bool,
}

/// Takes the data dir's lock, first thing, before anything in it is changed: a second server
/// on a data dir with SQLite metadata is refused here, naming the first one's process;
/// `shared` (PostgreSQL metadata) lets servers share it, and refuses none of them.
///
/// # Errors
/// [`ServerError::FailedPrecondition`] when another process holds it or the directory holds
/// no domain; [`ServerError::Storage`] on a read-only or full disk.
pub fn lock(data_dir: &Path, shared: bool) -> Result<ServeLock> {
    let dir = DataDir::new(data_dir);
    if !dir.master_key().exists() {
        return Err(ServerError::FailedPrecondition(format!(
            "{} holds no domain: run `shuyu init --data-dir {}` first",
            data_dir.display(),
            data_dir.display()
        )));
    }
    let path = dir.lock_file();
    let what = path.display().to_string();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(|e| match StorageFault::of_io(&e) {
            Some(fault) => ServerError::FailedPrecondition(format!(
                "cannot serve {}: {fault}",
                data_dir.display()
            )),
            None => ServerError::internal(format!("{what}: {e}")),
        })?;
    if shared {
        // Servers of one domain share its data dir: the first to come finds the lock free
        // (and so knows every other server of the domain is gone), then shares it.
        let alone = file.try_lock().is_ok();
        let shared = if alone {
            file.lock_shared()
        } else {
            file.try_lock_shared().map_err(|e| match e {
                std::fs::TryLockError::Error(e) => e,
                std::fs::TryLockError::WouldBlock => std::io::Error::other("held exclusively"),
            })
        };
        shared.map_err(|e| ServerError::internal(format!("locking {what}: {e}")))?;
        return Ok(ServeLock { _file: file, alone });
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(ServerError::FailedPrecondition(format!(
                "{} is already served by another `shuyu serve`{}: stop it first (nothing was \
                 touched)",
                data_dir.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                }
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(ServerError::internal(format!("locking {what}: {e}")));
        }
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.write_all(pid.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(|e| ServerError::from_io(&what, e))?;
    Ok(ServeLock {
        _file: file,
        alone: true,
    })
}

/// Credentials of one principal, written for the CLI: `ca.pem`, `cert.pem`, `key.pem` (0600).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Principal id.
    pub principal_id: String,
    /// Directory holding the files.
    pub dir: PathBuf,
}

fn secrets_key(master: &MasterKey) -> SecretKey {
    master.key().derive("shuyu-domain-secrets:v1")
}

fn seal_secret(master: &MasterKey, name: &str, secret: &[u8]) -> String {
    hex::encode(secrets_key(master).seal(name.as_bytes(), secret))
}

fn open_secret(master: &MasterKey, conn: &Tx<'_>, name: &str) -> Result<Zeroizing<Vec<u8>>> {
    let sealed = store::meta(conn, name)?
        .ok_or_else(|| ServerError::internal(format!("the domain has no {name}")))?;
    let sealed = hex::decode(sealed).map_err(ServerError::internal)?;
    Ok(secrets_key(master).open(name.as_bytes(), &sealed)?)
}

/// What `init` created.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    /// The first admin's credentials.
    pub admin: Credentials,
    /// The domain's signing public key, hex.
    pub signing_public_key: String,
}

/// The first admin's qualification, recorded by `init` (R8, R9): the operator who creates
/// the domain vouches for it.
#[derive(Debug, Clone)]
pub struct AdminQualification {
    /// The admin's resident ID number (stored only as a keyed hash and a masked form).
    pub id_number: String,
    /// Training passed today, valid this many days.
    pub training_days: u32,
    /// Confidentiality agreement signed today, in force this many days.
    pub nda_days: u32,
}

/// Creates a new domain in `data_dir` and the first admin's credentials in `admin_dir`.
///
/// # Errors
/// If the directory already holds a domain, the ID number is invalid, or on IO / key
/// failures.
pub fn init(
    data_dir: &Path,
    metadata: &MetadataConfig,
    admin_name: &str,
    admin_organisation: &str,
    admin_qualification: &AdminQualification,
    admin_dir: &Path,
) -> Result<InitOutcome> {
    let id_number = Zeroizing::new(
        shuyu_policy::normalize_id_number(&admin_qualification.id_number)
            .map_err(|e| ServerError::InvalidArgument(format!("the admin's ID number: {e}")))?,
    );
    if admin_qualification.training_days == 0 || admin_qualification.nda_days == 0 {
        return Err(ServerError::InvalidArgument(
            "the admin's training and NDA must be valid for at least a day".into(),
        ));
    }
    let dir = DataDir::new(data_dir);
    if dir.master_key().exists() {
        return Err(ServerError::FailedPrecondition(format!(
            "{} already holds a domain",
            data_dir.display()
        )));
    }
    let store_options = metadata.store_options(&dir)?;
    set_private_umask();
    create_private_dir(&dir.root().join("tls"))?;
    create_private_dir(&dir.objects())?;
    create_private_dir(dir.root())?;
    let master = MasterKey::create_file(&dir.master_key())?;
    metadata.record(&dir)?;
    let store = open_store(&store_options, AuditLog::new(master.key()))?;
    let taken = store.read(|tx| {
        Ok(tx
            .query_opt("SELECT 1 AS found FROM audit LIMIT 1", &[])?
            .is_some())
    })?;
    if taken {
        // Another domain's metadata: leave it alone, and leave no half-made domain here.
        let _ = std::fs::remove_file(dir.master_key());
        let _ = std::fs::remove_file(dir.metadata_record());
        return Err(ServerError::FailedPrecondition(format!(
            "the metadata database {} already holds a domain",
            store.url()
        )));
    }
    let keys = store.read(|conn| KeyStore::load(master.clone(), conn))?;

    let ca = tls::create_ca(&data_dir.display().to_string())?;
    let (server_cert, server_key) = tls::issue_server(&ca, &[])?;
    let (signing, signing_pkcs8) = SigningKey::generate()?;
    let signing_public = hex::encode(signing.public_key());

    let admin = Principal {
        id: crate::new_id("p"),
        real_name: admin_name.to_owned(),
        organisation: admin_organisation.to_owned(),
        role: Role::PlatformAdmin,
        tenant_id: None,
        created_at_ms: crate::now_ms(),
    };
    let (admin_key, admin_csr) =
        shuyu_client::new_key_and_csr(&admin.id).map_err(ServerError::internal)?;
    let issued = tls::issue_client_from_csr(&ca, &admin_csr, &admin.id, tls::DEFAULT_CLIENT_DAYS)?;

    let entry = AuditEntry {
        principal_id: "-".into(),
        role: "system".into(),
        action: crate::audit::trail::GENESIS_ACTION.into(),
        target: format!("principal:{}", admin.id),
        outcome: "ok".into(),
        detail: json!({"signing_public_key": signing_public, "admin_certificate": issued.fingerprint}),
        ..AuditEntry::default()
    };
    store
        .commit(&entry, |tx| {
            keys.create_kek(tx, DOMAIN_KEK, "domain")?;
            store::set_meta(
                tx,
                "ca_key",
                &seal_secret(&master, "ca_key", ca.key_pem.as_bytes()),
            )?;
            store::set_meta(tx, "ca_cert", &ca.cert_pem)?;
            store::set_meta(
                tx,
                "server_key",
                &seal_secret(&master, "server_key", server_key.as_bytes()),
            )?;
            store::set_meta(tx, "server_cert", &server_cert)?;
            store::set_meta(
                tx,
                "signing_key",
                &seal_secret(&master, "signing_key", &signing_pkcs8),
            )?;
            store::set_meta(tx, "signing_public_key", &signing_public)?;
            crate::admin::records::insert_principal(tx, &admin)?;
            crate::admin::records::insert_certificate(
                tx,
                &issued.fingerprint,
                &admin.id,
                issued.not_after_ms,
            )?;
            let now = crate::now_ms();
            let day_ms = 86_400_000;
            crate::governance::records::upsert_qualification(
                tx,
                &crate::governance::records::QualificationRecord {
                    principal_id: admin.id.clone(),
                    id_hash: Some(crate::keys::id_number_hash(&master, &id_number)),
                    id_masked: shuyu_policy::registry_mask(&id_number),
                    registered_at_ms: now,
                    training_passed_ms: now,
                    training_until_ms: now + i64::from(admin_qualification.training_days) * day_ms,
                    nda_signed_ms: now,
                    nda_until_ms: now + i64::from(admin_qualification.nda_days) * day_ms,
                    updated_at_ms: now,
                    updated_by: "-".into(),
                },
            )?;
            Ok(())
        })?
        .into_inner();
    write_private_file(&dir.ca_cert(), ca.cert_pem.as_bytes())?;
    write_private_file(
        &dir.signing_public_key(),
        format!("{signing_public}\n").as_bytes(),
    )?;
    shuyu_client::write_credentials(admin_dir, &ca.cert_pem, &issued.cert_pem, &admin_key)
        .map_err(ServerError::internal)?;
    Ok(InitOutcome {
        admin: Credentials {
            principal_id: admin.id,
            dir: admin_dir.to_path_buf(),
        },
        signing_public_key: signing_public,
    })
}

/// An opened domain: store, keys and secrets, ready to serve.
#[derive(Debug)]
pub struct OpenDomain {
    /// Layout.
    pub dir: DataDir,
    /// Metadata store.
    pub store: Store,
    /// Key hierarchy.
    pub keys: Arc<KeyStore>,
    /// The CA (signs principals' certificates).
    pub ca: CaMaterial,
    /// Server certificate, PEM.
    pub server_cert_pem: String,
    /// Server key, PEM.
    pub server_key_pem: Zeroizing<String>,
    /// Export signing key.
    pub signing: SigningKey,
}

impl OpenDomain {
    /// An envelope over the domain's key hierarchy, for reading its encrypted files
    /// (datasets, staged results, packages) in process, as the server does.
    pub fn envelope(&self) -> Arc<shuyu_vault::Envelope> {
        Arc::new(shuyu_vault::Envelope::new(
            Arc::clone(&self.keys) as Arc<dyn shuyu_vault::KekProvider>
        ))
    }
}

/// Opens a data dir's metadata read-only, wherever the data dir records it (SQLite in it,
/// or a PostgreSQL): the operator's offline commands write nothing, not even a log.
fn open_read_only(data_dir: &Path) -> Result<Store> {
    let dir = DataDir::new(data_dir);
    if !dir.master_key().exists() {
        return Err(ServerError::FailedPrecondition(format!(
            "{} holds no domain",
            data_dir.display()
        )));
    }
    let options = MetadataConfig::recorded(&dir)?.store_options(&dir)?;
    let master = MasterKey::load_file(&dir.master_key())?;
    open_store_read_only(&options, AuditLog::new(master.key()))
}

/// `shuyu audit verify`: the audit chain, then the rows bound to its records, then the
/// stored Merkle tree (which checkpoints and proofs read) against the records.
///
/// # Errors
/// If the data dir holds no domain or its metadata cannot be read; a broken trail is a
/// report with `ok == false`, not an error.
pub fn verify_audit(data_dir: &Path) -> Result<crate::audit::VerifyReport> {
    let store = open_read_only(data_dir)?;
    let log = store.audit_log().clone();
    let mut report = store.read(|c| log.verify(c))?;
    if report.ok
        && let Some(problem) = store.read(crate::audit::bindings::verify)?
    {
        report.ok = false;
        report.problem = Some(problem);
    }
    if report.ok
        && let Some(problem) = store.read(crate::audit::verify_tree)?
    {
        report.ok = false;
        report.problem = Some(problem);
    }
    Ok(report)
}

/// The withheld text of an error shown to a client by its id, decrypted from the audit
/// record that sealed it (`shuyu audit show-error`, for the domain operator on the host).
#[derive(Debug, Clone)]
pub struct WithheldError {
    /// The audit record's sequence number.
    pub seq: u64,
    /// The action that failed.
    pub action: String,
    /// Who called it.
    pub principal_id: String,
    /// The full text (it may hold data values).
    pub detail: String,
}

/// Finds and decrypts the error with id `error_id`; `None` when no record carries it.
///
/// # Errors
/// If the data dir holds no domain, its metadata cannot be read or the detail does not
/// decrypt.
pub fn withheld_error(data_dir: &Path, error_id: &str) -> Result<Option<WithheldError>> {
    let store = open_read_only(data_dir)?;
    let log = store.audit_log().clone();
    let found = store.read(|c| {
        let mut after = 0;
        loop {
            let page = AuditLog::list(c, after, 1000)?;
            let Some(last) = page.last() else {
                return Ok(None);
            };
            after = last.seq;
            if let Some(found) = page
                .into_iter()
                .find(|r| r.detail.contains(error_id) && !r.sealed_detail.is_empty())
            {
                return Ok(Some(found));
            }
        }
    })?;
    found
        .map(|record| {
            Ok(WithheldError {
                seq: record.seq,
                action: record.action.clone(),
                principal_id: record.principal_id.clone(),
                detail: log.open_detail(&record.sealed_detail)?,
            })
        })
        .transpose()
}

/// Opens an initialised domain.
///
/// # Errors
/// If the directory holds no domain, the master key is unreadable or too open, or the store
/// fails.
pub fn open(data_dir: &Path, metadata: &MetadataConfig) -> Result<OpenDomain> {
    let dir = DataDir::new(data_dir);
    if !dir.master_key().exists() {
        return Err(ServerError::FailedPrecondition(format!(
            "{} holds no domain: run `shuyu init --data-dir {}` first",
            data_dir.display(),
            data_dir.display()
        )));
    }
    let store_options = metadata.for_data_dir(&dir)?.store_options(&dir)?;
    let master = MasterKey::load_file(&dir.master_key())?;
    let store = open_store(&store_options, AuditLog::new(master.key()))?;
    let (keys, ca, server_cert_pem, server_key_pem, signing) = store.read(|conn| {
        let keys = KeyStore::load(master.clone(), conn)?;
        let ca_key = open_secret(&master, conn, "ca_key")?;
        let ca = CaMaterial {
            cert_pem: store::meta(conn, "ca_cert")?.unwrap_or_default(),
            key_pem: Zeroizing::new(String::from_utf8_lossy(&ca_key).into_owned()),
        };
        let server_key = open_secret(&master, conn, "server_key")?;
        let server_cert = store::meta(conn, "server_cert")?.unwrap_or_default();
        let signing = SigningKey::from_pkcs8(&open_secret(&master, conn, "signing_key")?)?;
        Ok((
            keys,
            ca,
            server_cert,
            Zeroizing::new(String::from_utf8_lossy(&server_key).into_owned()),
            signing,
        ))
    })?;
    Ok(OpenDomain {
        dir,
        store,
        keys,
        ca,
        server_cert_pem,
        server_key_pem,
        signing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_metadata_location_is_recorded_without_a_password_and_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        // Nothing recorded: SQLite in the data dir.
        let options = MetadataConfig::default().store_options(&data).unwrap();
        assert_eq!(options.url, MetadataUrl::Sqlite(data.meta_db()));
        // A password in the URL is refused, and not echoed.
        let e = MetadataConfig::postgres("postgresql://u:s3cret@db:5432/d")
            .parsed_url()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("carries a password") && !e.contains("s3cret"),
            "{e}"
        );
        // Recorded, it is found again; another URL is refused; a password source may differ.
        let pg = MetadataConfig::postgres("postgresql://u@db:5432/d");
        pg.record(&data).unwrap();
        assert_eq!(mode(&data.metadata_record()), FILE_MODE);
        let found = MetadataConfig::default().for_data_dir(&data).unwrap();
        assert_eq!(found.url, pg.url);
        let other = MetadataConfig::postgres("postgresql://u@db:5432/other");
        assert!(other.for_data_dir(&data).is_err());
        let with_file = MetadataConfig {
            password_file: Some("/etc/pw".into()),
            ..pg.clone()
        };
        let options = with_file
            .for_data_dir(&data)
            .unwrap()
            .store_options(&data)
            .unwrap();
        assert_eq!(options.db.password, PasswordSource::File("/etc/pw".into()));
        let both = MetadataConfig {
            password_env: Some("X".into()),
            ..with_file
        };
        assert!(both.store_options(&data).is_err());
    }

    #[test]
    fn a_second_server_on_a_data_dir_is_refused_before_it_touches_anything() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("master.key"), b"x").unwrap();
        let first = lock(dir.path(), false).unwrap();
        assert_eq!(mode(&dir.path().join("serve.lock")), FILE_MODE);
        let e = lock(dir.path(), false).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("already served") && text.contains(&std::process::id().to_string()),
            "{text}"
        );
        drop(first);
        lock(dir.path(), false).expect("free again once the first server is gone");
        // No domain, no lock (and no lock file).
        let empty = tempfile::tempdir().unwrap();
        assert!(lock(empty.path(), false).is_err());
        assert!(!empty.path().join("serve.lock").exists());
    }

    #[test]
    fn open_files_and_folders_of_a_data_dir_are_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("d");
        std::fs::create_dir_all(root.join("objects/datasets")).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("objects"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        std::fs::write(root.join("meta.db"), b"").unwrap();
        std::fs::set_permissions(root.join("meta.db"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::write(root.join("objects/datasets/p"), b"").unwrap();
        std::fs::set_permissions(
            root.join("objects/datasets/p"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        assert!(secure_tree(&root).unwrap() >= 4);
        assert_eq!(mode(&root), DIR_MODE);
        assert_eq!(mode(&root.join("objects")), DIR_MODE);
        assert_eq!(mode(&root.join("objects/datasets")), DIR_MODE);
        assert_eq!(mode(&root.join("meta.db")), FILE_MODE);
        assert_eq!(mode(&root.join("objects/datasets/p")), FILE_MODE);
        assert_eq!(secure_tree(&root).unwrap(), 0);
    }

    #[test]
    fn write_private_file_and_create_private_dir_ignore_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("a/b");
        create_private_dir(&folder).unwrap();
        assert_eq!(mode(&folder), DIR_MODE);
        write_private_file(&folder.join("f"), b"x").unwrap();
        assert_eq!(mode(&folder.join("f")), FILE_MODE);
    }
}
