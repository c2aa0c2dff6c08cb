//! The embedded metadata store (SQLite, WAL, `synchronous=FULL`): the transaction core.
//! It names no area: each area hands it a [`Schema`] (its tables, the columns added since,
//! its migrations, the SQL functions its queries call), and keeps its records (structs, SQL,
//! rows read by column name) in its own `records` module. The store's own tables are `meta`
//! and the wrapped KEKs.
//!
//! Every change commits together with its audit record ([`Store::commit`]), so a crash at any
//! point leaves either both or neither.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::audit::trail::{AuditEntry, AuditLog};
use crate::error::{Result, ServerError};

/// What an area gives the store. On open, every schema's tables are created, then every
/// schema's added columns are added to older data dirs, then every migration runs, in the
/// order of the list.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// `CREATE TABLE IF NOT EXISTS` (and index) statements.
    pub tables: &'static str,
    /// Columns added after their table was first released: (table, column, declaration).
    pub added_columns: &'static [(&'static str, &'static str, &'static str)],
    /// Moves older data forward, once every table and added column exists.
    pub migrate: Option<fn(&Connection) -> Result<()>>,
    /// Registers, on each connection (read-only ones too), SQL functions its queries call.
    pub functions: Option<fn(&Connection, &AuditLog) -> Result<()>>,
}

impl Schema {
    /// A schema of tables only.
    pub const fn tables(tables: &'static str) -> Schema {
        Schema {
            tables,
            added_columns: &[],
            migrate: None,
            functions: None,
        }
    }
}

/// The store's own tables: domain metadata and the wrapped KEKs.
pub(crate) const SCHEMA: Schema = Schema {
    tables: "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keks (
    id TEXT PRIMARY KEY, wrapped BLOB NOT NULL, owner TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
    parent TEXT);
",
    added_columns: &[("keks", "parent", "TEXT")],
    migrate: None,
    functions: None,
};

/// The metadata store.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    audit: AuditLog,
}

impl Store {
    /// Opens (or creates) the store at `path`. A new file is created 0600 (its `-wal` and
    /// `-shm` files take the same mode).
    ///
    /// # Errors
    /// If the file cannot be opened or the schema created.
    pub fn open(path: &Path, audit: AuditLog, schemas: &[Schema]) -> Result<Store> {
        create_private_file(path)?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted and overwritten content (a preview sealed in place) is zeroed, not left in
        // free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        for functions in schemas.iter().filter_map(|s| s.functions) {
            functions(&conn, &audit)?;
        }
        for schema in schemas {
            conn.execute_batch(schema.tables)?;
        }
        for schema in schemas {
            add_columns(&conn, schema.added_columns)?;
        }
        for migrate in schemas.iter().filter_map(|s| s.migrate) {
            migrate(&conn)?;
        }
        crate::audit::bindings::install_triggers(&conn)?;
        let bind_existing = crate::audit::bindings::mark_unbound_rows(&conn)?;
        let store = Store {
            conn: Mutex::new(conn),
            audit,
        };
        if bind_existing {
            store.record(&crate::audit::trail::system_entry(
                crate::audit::bindings::BIND_EXISTING_ACTION,
                "meta",
                serde_json::json!({}),
            ))?;
        }
        Ok(store)
    }

    /// Opens the store at `path` read-only, for checks on the host (`shuyu audit verify`):
    /// no schema, no migration, no write to the database or its log; a missing file is an
    /// error, not a new store.
    ///
    /// # Errors
    /// If the file cannot be opened.
    pub fn open_read_only(path: &Path, audit: AuditLog, schemas: &[Schema]) -> Result<Store> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        let conn = if path.exists() && !wal.exists() {
            // No log: no server has the file open, and everything is in the file. Opened
            // immutable, SQLite creates no `-wal` or `-shm` beside it.
            let text = path.to_string_lossy();
            let escaped = text
                .replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23");
            Connection::open_with_flags(
                format!("file:{escaped}?immutable=1"),
                flags | OpenFlags::SQLITE_OPEN_URI,
            )?
        } else {
            Connection::open_with_flags(path, flags)?
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "query_only", true)?;
        for functions in schemas.iter().filter_map(|s| s.functions) {
            functions(&conn, &audit)?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
            audit,
        })
    }

    /// The audit trail's keys.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction (SQLite rolls
        // it back), so a poisoned lock is safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` and appends `entry` in one durable transaction.
    ///
    /// # Errors
    /// If either fails; then nothing is committed.
    pub fn commit<T>(
        &self,
        entry: &AuditEntry,
        change: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let value = change(&tx)?;
        self.append_bound(&tx, entry)?;
        tx.commit()?;
        Ok(value)
    }

    /// Appends `entry`, binding the rows changed in `tx` to it (see [`crate::audit::bindings`]).
    fn append_bound(&self, tx: &Transaction<'_>, entry: &AuditEntry) -> Result<u64> {
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
        change: impl FnOnce(&Transaction<'_>) -> Result<(T, AuditEntry)>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let (value, entry) = change(&tx)?;
        self.append_bound(&tx, &entry)?;
        tx.commit()?;
        Ok(value)
    }

    /// Appends an audit record on its own (denials, failures, reads).
    ///
    /// # Errors
    /// On store failure.
    pub fn record(&self, entry: &AuditEntry) -> Result<()> {
        self.commit(entry, |_| Ok(()))
    }

    /// Runs a read.
    ///
    /// # Errors
    /// Whatever `read` returns.
    pub fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        read(&conn)
    }
}

/// Creates `path` empty with mode 0600 unless it exists (whatever the umask), so that SQLite,
/// which gives its `-wal` and `-shm` files the database's mode, never makes a readable file.
fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ServerError::from_io(&path.display().to_string(), e)),
    }
}

/// A domain metadata value.
pub fn meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Sets a domain metadata value.
pub fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Adds the columns an older data dir lacks.
fn add_columns(conn: &Connection, columns: &[(&str, &str, &str)]) -> Result<()> {
    for (table, column, declaration) in columns {
        let present: bool = conn.query_row(
            &format!("SELECT count(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            [column],
            |r| r.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
            ))?;
        }
    }
    Ok(())
}

/// Stores a KEK wrapped by `parent` (`None`: by the master key).
pub fn insert_kek(
    conn: &Connection,
    id: &str,
    wrapped: &[u8],
    owner: &str,
    parent: Option<&str>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO keks (id, wrapped, owner, created_at_ms, parent) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, wrapped, owner, crate::now_ms(), parent],
    )?;
    Ok(())
}

/// A stored KEK: id, wrapped key, parent KEK id (`None`: wrapped by the master key).
pub type StoredKek = (String, Vec<u8>, Option<String>);

/// Every stored KEK.
pub fn all_keks(conn: &Connection) -> Result<Vec<StoredKek>> {
    let mut stmt = conn.prepare("SELECT id, wrapped, parent FROM keks")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn unique_violation(e: rusqlite::Error, what: &str) -> ServerError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            ServerError::AlreadyExists(format!("{what} already exists"))
        }
        _ => ServerError::from(e),
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn single_reviewer_exports_move_to_the_quorum_review() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        {
            let conn = Connection::open(&path).unwrap();
            register_preview_seal(&conn, &audit).unwrap();
            // The tables this store held before the areas kept their own records.
            let schemas = [
                super::SCHEMA,
                crate::admin::records::SCHEMA,
                crate::catalog::records::SCHEMA,
                crate::jobs::records::SCHEMA,
                crate::exports::records::SCHEMA,
                crate::scenarios::records::SCHEMA,
            ];
            for schema in &schemas {
                let old_schema = schema
                    .tables
                    .split("CREATE TABLE IF NOT EXISTS ")
                    .filter(|t| !t.starts_with("exports") && !t.starts_with("export_"))
                    .collect::<Vec<_>>()
                    .join("CREATE TABLE IF NOT EXISTS ");
                conn.execute_batch(&old_schema).unwrap();
            }
            conn.execute_batch(LEGACY_EXPORTS).unwrap();
            for (table, column, declaration) in schemas.iter().flat_map(|s| s.added_columns) {
                let present: bool = conn
                    .query_row(
                        &format!(
                            "SELECT count(*) > 0 FROM pragma_table_info('{table}') \
                             WHERE name = ?1"
                        ),
                        [column],
                        |r| r.get(0),
                    )
                    .unwrap();
                if *table != "exports" && !present {
                    conn.execute_batch(&format!(
                        "ALTER TABLE {table} ADD COLUMN {column} {declaration}"
                    ))
                    .unwrap();
                }
            }
            for id in ["job_a", "job_b", "job_c"] {
                upsert_job(&conn, &job(id)).unwrap();
            }
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
                    params![id, job, status, checks, reviewer, comment],
                )
                .unwrap();
            }
        }
        let store = crate::domain::open_store(&path, audit.clone()).unwrap();
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
        let store = crate::domain::open_store(&path, audit).unwrap();
        let columns: Vec<String> = store
            .read(|c| {
                let mut stmt = c.prepare("SELECT name FROM pragma_table_info('exports')")?;
                let names = stmt.query_map([], |r| r.get(0))?;
                Ok(names.collect::<rusqlite::Result<_>>()?)
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
        store.read(|c| upsert_export(c, &fresh)).unwrap();
        assert_eq!(read(&store, "exp_new"), fresh);
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
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        let store = crate::domain::open_store(&path, audit.clone()).unwrap();
        store
            .commit(&system(crate::audit::trail::GENESIS_ACTION), |_| Ok(()))
            .unwrap();
        let mut j = job("job_p");
        j.preview = MaskedTable {
            columns: vec!["id_number".into()],
            rows: vec![vec![Some("CANARY_330203198807071236".into())]],
            ..MaskedTable::default()
        };
        store.commit(&system("x"), |tx| upsert_job(tx, &j)).unwrap();
        let raw: String = store
            .read(|c| Ok(c.query_row("SELECT preview_json FROM jobs", [], |r| r.get(0))?))
            .unwrap();
        assert!(
            raw.starts_with(SEALED_PREVIEW) && !raw.contains("CANARY"),
            "{raw}"
        );
        assert_eq!(
            store
                .read(|c| job_any_tenant(c, "job_p"))
                .unwrap()
                .unwrap()
                .preview,
            j.preview
        );
        // Moved to another job's row, it does not open.
        store
            .read(|c| {
                let mut other = job("job_q");
                other.preview = MaskedTable::default();
                upsert_job(c, &other)?;
                c.execute(
                    "UPDATE jobs SET preview_json = ?1 WHERE id = 'job_q'",
                    [&raw],
                )?;
                Ok(())
            })
            .unwrap();
        assert!(store.read(|c| job_any_tenant(c, "job_q")).is_err());
        store
            .read(|c| Ok(c.execute("DELETE FROM jobs WHERE id = 'job_q'", [])?))
            .unwrap();
        // A preview stored in plaintext by an older server is sealed when the store opens,
        // and no copy stays in the file or its log.
        store
            .read(|c| {
                Ok(c.execute(
                    "UPDATE jobs SET preview_json = ?1",
                    [r#"{"columns":["m"],"rows":[["CANARY_13999990001"]]}"#],
                )?)
            })
            .unwrap();
        drop(store);
        let store = crate::domain::open_store(&path, audit).unwrap();
        let preview = store
            .read(|c| job_any_tenant(c, "job_p"))
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
            &dir.path().join("meta.db"),
            AuditLog::new(&shuyu_vault::SecretKey::generate()),
        )
        .unwrap();
        store
            .commit(&system(crate::audit::trail::GENESIS_ACTION), |_| Ok(()))
            .unwrap();
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
        let audit = AuditLog::new(&shuyu_vault::SecretKey::generate());
        let store = crate::domain::open_store(&path, audit.clone()).unwrap();
        for action in [crate::audit::trail::GENESIS_ACTION, "a", "b"] {
            store.commit(&system(action), |_| Ok(())).unwrap();
        }
        let check = |expect_records: u64| {
            let before = files_of(dir.path());
            let reader = crate::domain::open_store_read_only(&path, audit.clone()).unwrap();
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
        assert!(crate::domain::open_store_read_only(&dir.path().join("none.db"), audit).is_err());
        assert!(!dir.path().join("none.db").exists());
    }
}
