//! The metadata store: the transaction core. It names no area and runs on either backend of
//! `shuyu-meta` — SQLite in the data dir (embedded, the default) or a PostgreSQL shared by
//! several servers. Each area keeps its records (structs, SQL, rows read by column name) in
//! its own `records` module and its tables in a migration of the one versioned list
//! ([`crate::domain`] names it); the store's own tables are `meta` and the wrapped KEKs.
//!
//! Every change commits together with its audit record ([`Store::commit`]), so a crash at any
//! point leaves either both or neither. On PostgreSQL a write transaction is serializable and
//! may run again after a conflict with another server, so the closures given to
//! [`Store::commit`] and [`Store::read`] must be re-runnable: no effect outside the
//! transaction.

pub use shuyu_meta::Tx;
use shuyu_meta::{Backend, Db, DbOptions, MetadataUrl, Migration, params};

use crate::audit::trail::{AuditEntry, AuditLog};
use crate::error::{Result, ServerError};

/// What an SQLite data dir written before versioned migrations needs on top of the
/// migrations' `CREATE TABLE IF NOT EXISTS`: the columns added to its tables since, and the
/// moves of its older data. Run once, the first time a server of this version opens it.
#[derive(Debug, Clone, Copy)]
pub struct Legacy {
    /// Columns added after their table was first released: (table, column, declaration).
    pub added_columns: &'static [(&'static str, &'static str, &'static str)],
    /// Moves older data forward, once every table and added column exists (with the audit
    /// log's keys, for what it must seal).
    pub migrate: Option<fn(&Tx<'_>, &AuditLog) -> Result<()>>,
}

/// The store's own tables: domain metadata and the wrapped KEKs.
pub(crate) const TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keks (
    id TEXT PRIMARY KEY, wrapped BLOB NOT NULL, owner TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL, parent TEXT);
";

/// Columns the store's own tables gained before versioned migrations.
pub(crate) const LEGACY: Legacy = Legacy {
    added_columns: &[("keks", "parent", "TEXT")],
    migrate: None,
};

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Where the metadata lives.
    pub url: MetadataUrl,
    /// Pool, password source, retries.
    pub db: DbOptions,
}

impl StoreOptions {
    /// SQLite at `path`, with default options.
    pub fn sqlite(path: &std::path::Path) -> StoreOptions {
        StoreOptions {
            url: MetadataUrl::Sqlite(path.to_owned()),
            db: DbOptions::default(),
        }
    }
}

/// The metadata store.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    audit: AuditLog,
}

impl Store {
    /// Opens (or creates) the store, applies the missing `migrations` (and, for an SQLite data
    /// dir written before versioned migrations, `legacy`: its added columns before the
    /// migrations, its moves after), and installs the row bindings'
    /// triggers. A new SQLite file is created 0600 (its `-wal` and `-shm` files take the same
    /// mode). A schema newer than `migrations` is refused.
    ///
    /// # Errors
    /// If the database cannot be opened or the schema brought up to date.
    pub fn open(
        options: &StoreOptions,
        audit: AuditLog,
        migrations: &[Migration],
        legacy: &[Legacy],
    ) -> Result<Store> {
        let db = Db::open(&options.url, &options.db)?;
        let pre_versioned = db.backend() == Backend::Sqlite
            && db.schema_version()? == 0
            && db.read(|tx| {
                Ok::<_, ServerError>(
                    tx.query_opt(
                        "SELECT 1 AS present FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                        &[],
                    )?
                    .is_some(),
                )
            })?;
        if pre_versioned {
            // First the columns older tables lack, so that later migration steps (an index
            // on an added column) find them; tables the data dir lacks come whole from the
            // migrations.
            db.write(|tx| {
                for l in legacy {
                    add_columns(tx, l.added_columns)?;
                }
                Ok::<_, ServerError>(())
            })?;
        }
        db.migrate(migrations)?;
        if pre_versioned {
            db.write(|tx| {
                for migrate in legacy.iter().filter_map(|l| l.migrate) {
                    migrate(tx, &audit)?;
                }
                Ok::<_, ServerError>(())
            })?;
            // What the moves overwrote (plaintext sealed in place) stays in no copy of the log.
            db.checkpoint()?;
        }
        crate::audit::bindings::install_triggers(&db)?;
        let bind_existing = db.write(crate::audit::bindings::mark_unbound_rows)?;
        let store = Store { db, audit };
        if bind_existing {
            store.record(&crate::audit::trail::system_entry(
                crate::audit::bindings::BIND_EXISTING_ACTION,
                "meta",
                serde_json::json!({}),
            ))?;
        }
        Ok(store)
    }

    /// Opens the store read-only, for checks on the host (`shuyu audit verify`): no schema,
    /// no migration, no write to the database or its log; a missing SQLite file is an error,
    /// not a new store.
    ///
    /// # Errors
    /// If the database cannot be opened.
    pub fn open_read_only(options: &StoreOptions, audit: AuditLog) -> Result<Store> {
        let mut db_options = options.db.clone();
        db_options.read_only = true;
        let db = Db::open(&options.url, &db_options)?;
        Ok(Store { db, audit })
    }

    /// The audit trail's keys.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// Which database the store runs on.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Where the metadata lives (no password).
    pub fn url(&self) -> &MetadataUrl {
        self.db.url()
    }

    /// Runs `change` and appends `entry` in one durable transaction. The value comes back
    /// as an [`Audited`] token: the proof a handler gives [`crate::state::Calls::call`]
    /// that its success was audited with the change.
    ///
    /// # Errors
    /// If either fails; then nothing is committed.
    pub fn commit<T>(
        &self,
        entry: &AuditEntry,
        mut change: impl FnMut(&Tx<'_>) -> Result<T>,
    ) -> Result<Audited<T>> {
        self.db
            .write(|tx| {
                let value = change(tx)?;
                self.append_bound(tx, entry)?;
                Ok(value)
            })
            .map(Audited)
    }

    /// Appends `entry`, binding the rows changed in `tx` to it (see [`crate::audit::bindings`]).
    fn append_bound(&self, tx: &Tx<'_>, entry: &AuditEntry) -> Result<u64> {
        let bindings = crate::audit::bindings::take_pending(tx)?;
        if bindings.is_empty() {
            return self.audit.append(tx, entry);
        }
        let mut entry = entry.clone();
        entry.detail = crate::audit::bindings::with_bindings(&entry.detail, &bindings);
        let seq = self.audit.append(tx, &entry)?;
        crate::audit::bindings::record(tx, &bindings, seq)?;
        Ok(seq)
    }

    /// Runs `change`, which reads, decides and returns the audit entry describing what it
    /// did, in one durable transaction: read-modify-write without lost updates.
    ///
    /// # Errors
    /// If either fails; then nothing is committed.
    pub fn commit_with<T>(
        &self,
        mut change: impl FnMut(&Tx<'_>) -> Result<(T, AuditEntry)>,
    ) -> Result<Audited<T>> {
        self.db
            .write(|tx| {
                let (value, entry) = change(tx)?;
                self.append_bound(tx, &entry)?;
                Ok(value)
            })
            .map(Audited)
    }

    /// Appends an audit record on its own (denials, failures, reads). It hands out no
    /// [`Audited`] token: a record that commits no change proves no handler's work, and a
    /// success with nothing to change is audited by the call itself (`Done::Record`).
    ///
    /// # Errors
    /// On store failure.
    pub fn record(&self, entry: &AuditEntry) -> Result<()> {
        self.commit(entry, |_| Ok(())).map(Audited::into_inner)
    }

    /// Runs `change` in one durable transaction with no audit record of its own: only for
    /// steps of work whose outcome is audited when it ends (a queued job marked running).
    /// Its value is plain, never an [`Audited`] token.
    ///
    /// # Errors
    /// Whatever `change` returns, or a failure to commit.
    pub fn write_unaudited<T>(&self, change: impl FnMut(&Tx<'_>) -> Result<T>) -> Result<T> {
        self.db.write(change)
    }

    /// Runs a read in one consistent snapshot.
    ///
    /// # Errors
    /// Whatever `read` returns.
    pub fn read<T>(&self, read: impl FnMut(&Tx<'_>) -> Result<T>) -> Result<T> {
        self.db.read(read)
    }
}

/// A value that came out of a transaction which committed an audit record with its change
/// ([`Store::commit`], [`Store::commit_with`]): the proof a handler returns in
/// [`crate::state::Done::Audited`], so that no handler can claim an audit it did not write.
/// Only this module makes one; the rest of the server can only carry it on ([`Audited::map`])
/// or take its value out ([`Audited::into_inner`]).
#[derive(Debug)]
#[must_use = "an audited value is the handler's proof of its audit: return it or take its value"]
pub struct Audited<T>(T);

impl<T> Audited<T> {
    /// The value, leaving the proof behind (background work, domain set-up, tests).
    pub fn into_inner(self) -> T {
        self.0
    }

    /// The value, read in place (the proof stays).
    pub fn value(&self) -> &T {
        &self.0
    }

    /// The proof carried over to what the value becomes (a response built after the commit).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Audited<U> {
        Audited(f(self.0))
    }

    /// Like [`Audited::map`], for a step that may fail after the commit.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Result<U>) -> Result<Audited<U>> {
        f(self.0).map(Audited)
    }
}

/// A domain metadata value.
pub fn meta(tx: &Tx<'_>, key: &str) -> Result<Option<String>> {
    Ok(tx
        .query_opt("SELECT value FROM meta WHERE key = ?1", params![key])?
        .map(|r| r.get("value"))
        .transpose()?)
}

/// Sets a domain metadata value.
pub fn set_meta(tx: &Tx<'_>, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Adds the columns an older SQLite data dir lacks (to the tables it has).
fn add_columns(tx: &Tx<'_>, columns: &[(&str, &str, &str)]) -> Result<()> {
    for (table, column, declaration) in columns {
        let exists = tx
            .query_opt(
                "SELECT 1 AS present FROM sqlite_master WHERE type = 'table' AND name = ?1",
                params![*table],
            )?
            .is_some();
        if !exists {
            continue;
        }
        let present: bool = tx
            .query_one(
                &format!(
                    "SELECT count(*) > 0 AS present FROM pragma_table_info('{table}') WHERE name = ?1"
                ),
                params![*column],
            )?
            .get("present")?;
        if !present {
            tx.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
            ))?;
        }
    }
    Ok(())
}

/// Stores a KEK wrapped by `parent` (`None`: by the master key).
pub fn insert_kek(
    tx: &Tx<'_>,
    id: &str,
    wrapped: &[u8],
    owner: &str,
    parent: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO keks (id, wrapped, owner, created_at_ms, parent) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, wrapped, owner, crate::now_ms(), parent],
    )?;
    Ok(())
}

/// A stored KEK: id, wrapped key, parent KEK id (`None`: wrapped by the master key).
pub type StoredKek = (String, Vec<u8>, Option<String>);

/// Every stored KEK.
pub fn all_keks(tx: &Tx<'_>) -> Result<Vec<StoredKek>> {
    tx.query("SELECT id, wrapped, parent FROM keks", &[])?
        .iter()
        .map(|r| Ok((r.get("id")?, r.get("wrapped")?, r.get("parent")?)))
        .collect()
}

/// `value` as the JSON text of a column. A value that does not encode fails the write as an
/// internal error: the store never writes an empty or made-up text in its place.
///
/// # Errors
/// Internal, naming `what`, if serde cannot encode the value.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| ServerError::internal(format!("encoding {what} as JSON: {e}")))
}

/// Maps a unique-key refusal to `AlreadyExists` ("`what` already exists").
pub(crate) fn unique_violation(e: shuyu_meta::Error, what: &str) -> ServerError {
    if e.is_unique_violation() {
        ServerError::AlreadyExists(format!("{what} already exists"))
    } else {
        ServerError::from(e)
    }
}

/// Stores for unit tests, on either backend.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A store in a temporary folder: SQLite, or PostgreSQL (a throwaway server started for
    /// it, stopped when the returned guard drops), with every migration applied.
    pub(crate) struct TestStore {
        pub(crate) store: Store,
        _dir: tempfile::TempDir,
        _postgres: Option<shuyu_meta::testing::TestPostgres>,
    }

    impl std::ops::Deref for TestStore {
        type Target = Store;
        fn deref(&self) -> &Store {
            &self.store
        }
    }

    /// The audit keys of test stores.
    pub(crate) fn test_log() -> AuditLog {
        AuditLog::new(&shuyu_vault::SecretKey::generate())
    }

    /// An SQLite store in a temporary folder.
    pub(crate) fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::domain::open_store(
            &StoreOptions::sqlite(&dir.path().join("meta.db")),
            test_log(),
        )
        .unwrap();
        TestStore {
            store,
            _dir: dir,
            _postgres: None,
        }
    }

    /// A store on a throwaway PostgreSQL.
    pub(crate) fn postgres() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let pg = shuyu_meta::testing::TestPostgres::start().unwrap();
        let options = StoreOptions {
            url: pg.url(),
            db: DbOptions::default(),
        };
        let store = crate::domain::open_store(&options, test_log()).unwrap();
        TestStore {
            store,
            _dir: dir,
            _postgres: Some(pg),
        }
    }

    /// Runs `test` on a store of each backend.
    pub(crate) fn each_backend(mut test: impl FnMut(&Store)) {
        test(&sqlite());
        test(&postgres());
    }

    /// Runs `change` in one transaction of its own, with no audit record: what someone with
    /// access to the database could do behind the server's back.
    pub(crate) fn tamper<T>(store: &Store, change: impl FnMut(&Tx<'_>) -> Result<T>) -> T {
        store.db.write(change).unwrap()
    }

    /// Runs `change` in one transaction, with a system audit record.
    pub(crate) fn write<T>(store: &Store, change: impl FnMut(&Tx<'_>) -> Result<T>) -> T {
        store
            .commit(
                &crate::audit::trail::system_entry("test", "test", serde_json::json!({})),
                change,
            )
            .unwrap()
            .into_inner()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::audit::trail::AuditEntry;
    use crate::exports::records::*;
    use crate::jobs::records::*;
    use shuyu_engine::MaskedTable;

    /// The exports table of the single-reviewer gate.
    const LEGACY_EXPORTS: &str = "
    CREATE TABLE exports (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id), tenant_id TEXT NOT NULL,
        requester_id TEXT NOT NULL, purpose TEXT NOT NULL, format TEXT NOT NULL,
        status TEXT NOT NULL, checks_json TEXT NOT NULL, reviewer_id TEXT NOT NULL,
        comment TEXT NOT NULL, requested_at_ms INTEGER NOT NULL, decided_at_ms INTEGER NOT NULL,
        package_location TEXT NOT NULL, package_sha256 TEXT NOT NULL,
        policy_version TEXT NOT NULL);";

    fn job(id: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            tenant_id: "t_1".into(),
            author_id: "p_eng".into(),
            sql: "SELECT 1".into(),
            substrait_plan: Vec::new(),
            query_sha256: format!("query-{id}"),
            mode: JobMode::Production,
            scenario_id: "sc_1".into(),
            promoted_from: String::new(),
            status: JobStatus::Succeeded,
            error: String::new(),
            error_id: String::new(),
            n_rows: 1,
            columns: Vec::new(),
            aggregate: true,
            gate: JobGate::unknown(true),
            dp: None,
            preview: MaskedTable::default(),
            inputs: Vec::new(),
            result_file: String::new(),
            result_kek: String::new(),
            result_sha256: format!("result-{id}"),
            created_at_ms: 1,
            finished_at_ms: 2,
            usage: JobUsage::default(),
        }
    }

    /// Makes the SQLite store at `path` look as a server before versioned migrations left
    /// it: no record of the schema's version.
    fn as_pre_versioned(path: &Path) -> rusqlite::Connection {
        let offline = rusqlite::Connection::open(path).unwrap();
        offline
            .execute_batch("DROP TABLE shuyu_meta_schema; DROP TABLE shuyu_meta_leases;")
            .unwrap();
        offline
    }

    #[test]
    fn single_reviewer_exports_move_to_the_quorum_review() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let options = StoreOptions::sqlite(&path);
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        {
            let store = crate::domain::open_store(&options, audit.clone()).unwrap();
            for id in ["job_a", "job_b", "job_c"] {
                store
                    .commit(&system("job"), |tx| upsert_job(tx, &audit, &job(id)))
                    .unwrap()
                    .into_inner();
            }
        }
        {
            // The exports of the single-reviewer gate, in a data dir of that time.
            let conn = as_pre_versioned(&path);
            conn.execute_batch(
                "DROP TABLE export_events; DROP TABLE export_votes; DROP TABLE export_comments;
                 DROP TABLE exports;",
            )
            .unwrap();
            conn.execute_batch(LEGACY_EXPORTS).unwrap();
            let passed = r#"[{"name":"min_group_rows","passed":true,"detail":"d","summary":"s"}]"#;
            let failed = r#"[{"name":"min_group_rows","passed":false,"detail":"d","summary":"s"}]"#;
            for (id, job, status, checks, reviewer, comment) in [
                ("exp_a", "job_a", "pending_review", passed, "", ""),
                ("exp_b", "job_b", "approved", passed, "p_rev", "fine"),
                ("exp_c", "job_c", "refused", failed, "", ""),
            ] {
                conn.execute(
                    "INSERT INTO exports VALUES (?1, ?2, 't_1', 'p_eng', 'purpose', 'csv', ?3, ?4,
                     ?5, ?6, 10, 20, 'exports/t_1/x.pkg', 'pkgsha', '2026.11-1')",
                    rusqlite::params![id, job, status, checks, reviewer, comment],
                )
                .unwrap();
            }
        }
        let store = crate::domain::open_store(&options, audit.clone()).unwrap();
        let read = |store: &Store, id: &str| store.read(|c| export(c, id)).unwrap().unwrap();

        let pending = read(&store, "exp_a");
        assert_eq!(pending.status, ExportStatus::InReview);
        assert_eq!(pending.quorum, 1);
        assert_eq!(pending.checks[0].outcome, CheckVerdict::Pass);
        assert_eq!(read(&store, "exp_c").checks[0].outcome, CheckVerdict::Fail);
        assert_eq!(read(&store, "exp_c").status, ExportStatus::Refused);

        let approved = store.read(|c| export_history(c, "exp_b")).unwrap();
        assert_eq!(
            approved.votes,
            vec![ExportVote {
                reviewer_id: "p_rev".into(),
                decision: ExportDecision::Approve,
                shared_comment: "fine".into(),
                private_comment: String::new(),
                result_sha256: "result-job_b".into(),
                query_sha256: "query-job_b".into(),
                policy_version: "2026.11-1".into(),
                at_ms: 20,
            }]
        );
        let steps: Vec<(&str, &str)> = approved
            .events
            .iter()
            .map(|e| (e.from_status.as_str(), e.to_status.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                ("", "submitted"),
                ("submitted", "in_review"),
                ("in_review", "approved")
            ]
        );
        let refused = store.read(|c| export_history(c, "exp_c")).unwrap();
        assert!(refused.votes.is_empty());
        assert_eq!(refused.events[1].to_status, "refused");
        assert!(
            store
                .read(|c| export_history(c, "exp_a"))
                .unwrap()
                .votes
                .is_empty()
        );

        // The legacy columns are gone, and opening again changes nothing.
        drop(store);
        let store = crate::domain::open_store(&options, audit).unwrap();
        let columns: Vec<String> = store
            .read(|tx| {
                tx.query("SELECT name FROM pragma_table_info('exports')", &[])?
                    .iter()
                    .map(|r| Ok(r.get("name")?))
                    .collect()
            })
            .unwrap();
        assert!(!columns.iter().any(|c| c == "reviewer_id" || c == "comment"));
        assert_eq!(
            store
                .read(|c| export_history(c, "exp_b"))
                .unwrap()
                .events
                .len(),
            3
        );
        // A new export round-trips with its quorum and a review outcome.
        let mut fresh = read(&store, "exp_a");
        fresh.id = "exp_new".into();
        fresh.quorum = 3;
        fresh.checks[0].outcome = CheckVerdict::Review;
        store
            .commit(&system("export"), |c| upsert_export(c, &fresh))
            .unwrap()
            .into_inner();
        assert_eq!(read(&store, "exp_new"), fresh);
    }

    #[test]
    fn an_older_release_ledger_is_numbered_and_indexed_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let options = StoreOptions::sqlite(&path);
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        drop(crate::domain::open_store(&options, audit.clone()).unwrap());
        {
            // The ledger as the first gate wrote it: no population, digest, screening or
            // position; rows in release order.
            let conn = as_pre_versioned(&path);
            conn.execute_batch(
                "DROP INDEX IF EXISTS released_cells_by_seq; DROP TABLE released_cells;
                 CREATE TABLE released_cells (
                     export_id TEXT NOT NULL REFERENCES releases(export_id),
                     tenant_id TEXT NOT NULL, row INTEGER NOT NULL, units INTEGER NOT NULL,
                     sketch BLOB NOT NULL, PRIMARY KEY (export_id, row));
                 INSERT INTO releases (export_id, tenant_id, job_id, query_sha256,
                     population_json, n_cells, released_at_ms)
                     VALUES ('e1', 't', 'j', '', '{}', 3, 1);
                 INSERT INTO released_cells VALUES ('e1', 't', 0, 40, x'00');
                 INSERT INTO released_cells VALUES ('e1', 't', 1, 50, x'00');
                 INSERT INTO released_cells VALUES ('e1', 't', 2, 60, x'00');",
            )
            .unwrap();
        }
        let store = crate::domain::open_store(&options, audit).unwrap();
        let (positions, indexed): (Vec<(i64, i64, i64)>, bool) = store
            .read(|tx| {
                let positions = tx
                    .query(
                        "SELECT row, population, seq FROM released_cells ORDER BY seq",
                        &[],
                    )?
                    .iter()
                    .map(|r| Ok((r.get("row")?, r.get("population")?, r.get("seq")?)))
                    .collect::<Result<_>>()?;
                let indexed = tx
                    .query_opt(
                        "SELECT 1 AS present FROM sqlite_master
                         WHERE type = 'index' AND name = 'released_cells_by_seq'",
                        &[],
                    )?
                    .is_some();
                Ok((positions, indexed))
            })
            .unwrap();
        assert_eq!(positions, [(0, 0, 1), (1, 0, 2), (2, 0, 3)]);
        assert!(indexed, "the ledger is paged by an index");
        assert_eq!(store.read(|tx| ledger_mark(tx, "t")).unwrap(), 3);
    }

    fn files_of(dir: &Path) -> std::collections::BTreeMap<String, (Vec<u8>, u32)> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    (std::fs::read(&path).unwrap(), mode),
                )
            })
            .collect()
    }

    fn system(action: &str) -> AuditEntry {
        crate::audit::trail::system_entry(action, "t", serde_json::json!({}))
    }

    #[test]
    fn previews_are_sealed_at_rest_and_opened_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let options = StoreOptions::sqlite(&path);
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        let store = crate::domain::open_store(&options, audit.clone()).unwrap();
        store
            .commit(&system(crate::audit::trail::GENESIS_ACTION), |_| Ok(()))
            .unwrap()
            .into_inner();
        let mut j = job("job_p");
        j.preview = MaskedTable {
            columns: vec!["id_number".into()],
            rows: vec![vec![Some("CANARY_330203198807071236".into())]],
            ..MaskedTable::default()
        };
        store
            .commit(&system("x"), |tx| upsert_job(tx, &audit, &j))
            .unwrap()
            .into_inner();
        let raw: String = store
            .read(|c| {
                Ok(c.query_one("SELECT preview_json FROM jobs", &[])?
                    .get("preview_json")?)
            })
            .unwrap();
        assert!(
            raw.starts_with(SEALED_PREVIEW) && !raw.contains("CANARY"),
            "{raw}"
        );
        assert_eq!(
            store
                .read(|c| job_any_tenant(c, &audit, "job_p"))
                .unwrap()
                .unwrap()
                .preview,
            j.preview
        );
        // Moved to another job's row, it does not open.
        super::testing::tamper(&store, |c| {
            let mut other = job("job_q");
            other.preview = MaskedTable::default();
            upsert_job(c, &audit, &other)?;
            c.execute(
                "UPDATE jobs SET preview_json = ?1 WHERE id = 'job_q'",
                params![raw.as_str()],
            )?;
            Ok(())
        });
        assert!(store.read(|c| job_any_tenant(c, &audit, "job_q")).is_err());
        super::testing::tamper(&store, |c| {
            Ok(c.execute("DELETE FROM jobs WHERE id = 'job_q'", &[])?)
        });
        drop(store);
        // A preview stored in plaintext by an older server is sealed when the store opens,
        // and no copy stays in the file or its log.
        {
            let conn = as_pre_versioned(&path);
            conn.execute(
                "UPDATE jobs SET preview_json = ?1",
                [r#"{"columns":["m"],"rows":[["CANARY_13999990001"]]}"#],
            )
            .unwrap();
        }
        let store = crate::domain::open_store(&options, audit.clone()).unwrap();
        let preview = store
            .read(|c| job_any_tenant(c, &audit, "job_p"))
            .unwrap()
            .unwrap()
            .preview;
        assert_eq!(preview.rows[0][0].as_deref(), Some("CANARY_13999990001"));
        for (name, (bytes, _)) in files_of(dir.path()) {
            assert!(
                !bytes.windows(6).any(|w| w == b"CANARY"),
                "a plaintext preview in {name}"
            );
        }
    }

    #[test]
    fn the_database_and_its_log_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::domain::open_store(
            &StoreOptions::sqlite(&dir.path().join("meta.db")),
            AuditLog::new(&shuyu_vault::SecretKey::generate()),
        )
        .unwrap();
        store
            .commit(&system(crate::audit::trail::GENESIS_ACTION), |_| Ok(()))
            .unwrap()
            .into_inner();
        let files = files_of(dir.path());
        assert!(files.contains_key("meta.db-wal"), "{:?}", files.keys());
        for (name, (_, mode)) in files {
            assert_eq!(mode, 0o600, "{name} is {mode:o}");
        }
    }

    #[test]
    fn a_read_only_store_writes_nothing_to_the_database_or_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let options = StoreOptions::sqlite(&path);
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        let store = crate::domain::open_store(&options, audit.clone()).unwrap();
        for action in [crate::audit::trail::GENESIS_ACTION, "a", "b"] {
            store
                .commit(&system(action), |_| Ok(()))
                .unwrap()
                .into_inner();
        }
        let check = |expect_records: u64| {
            let before = files_of(dir.path());
            let reader = crate::domain::open_store_read_only(&options, audit.clone()).unwrap();
            let report = reader.read(|c| reader.audit_log().verify(c)).unwrap();
            assert!(report.ok, "{report:?}");
            assert_eq!(report.n_records, expect_records);
            assert!(reader.record(&system("c")).is_err());
            drop(reader);
            let after = files_of(dir.path());
            for (name, content) in &after {
                if name.ends_with("-shm") {
                    continue; // shared memory of the readers' locks, not the database
                }
                let old = before.get(name).map(|(b, m)| (b.len(), *m));
                assert_eq!(
                    before.get(name),
                    Some(content),
                    "{name} changed: {old:?} -> {:?}",
                    (content.0.len(), content.1)
                );
            }
            assert_eq!(
                before.keys().filter(|n| !n.ends_with("-shm")).count(),
                after.keys().filter(|n| !n.ends_with("-shm")).count()
            );
        };
        // While the server runs (its log holds the records) and after it stopped.
        check(3);
        drop(store);
        check(3);
        assert!(
            crate::domain::open_store_read_only(
                &StoreOptions::sqlite(&dir.path().join("none.db")),
                audit
            )
            .is_err()
        );
        assert!(!dir.path().join("none.db").exists());
    }
}
