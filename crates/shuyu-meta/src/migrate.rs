//! Schema migrations, supplied by the caller and applied in order under a lock.

use crate::db::{Backend, Db, Isolation, Tx};
use crate::error::{Error, Result};
use crate::value::Value;

/// One schema step: SQL in the portable subset of [`crate::sql`] (one text for both
/// backends; `BLOB` becomes `BYTEA` on PostgreSQL). Versions run 1, 2, 3, … with no gaps;
/// a released migration never changes (its name is checked against the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Position in the list, from 1.
    pub version: u32,
    /// A short stable name, recorded beside the version.
    pub name: &'static str,
    /// The statements, `;`-separated, without parameters.
    pub sql: &'static str,
}

/// What [`Db::migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    /// The schema version found.
    pub from: u32,
    /// The schema version now.
    pub to: u32,
}

/// The lock name under which migrations run.
const MIGRATE_LOCK: &str = "shuyu-meta/migrate";

/// The crate's own tables, created by every [`Db::migrate`] before the caller's list.
const OWN_TABLES: &str = "
CREATE TABLE IF NOT EXISTS shuyu_meta_schema (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS shuyu_meta_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
";

fn check_list(migrations: &[Migration]) -> Result<u32> {
    for (idx, migration) in migrations.iter().enumerate() {
        let expected = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        if migration.version != expected {
            return Err(Error::InvalidMigrations(format!(
                "entry {idx} has version {} where {expected} belongs",
                migration.version
            )));
        }
    }
    Ok(migrations.last().map_or(0, |m| m.version))
}

impl Db {
    /// Brings the schema up to the last of `migrations`, in one transaction: under the
    /// lock `shuyu-meta/migrate` (PostgreSQL: `pg_advisory_xact_lock`, so servers starting
    /// together apply each step once; SQLite: the exclusive writer), it creates the crate's
    /// own tables (`shuyu_meta_schema`, `shuyu_meta_leases`), reads the recorded version,
    /// applies the missing steps in order and records them. Call it at start, before
    /// serving; calling it again is a no-op.
    ///
    /// # Errors
    /// [`Error::SchemaNewer`] if the database records a version past the list (written by
    /// a newer shuyu: nothing is changed, never downgraded); [`Error::MigrationMismatch`]
    /// if a recorded step has another name; [`Error::InvalidMigrations`] for a list not
    /// numbered 1, 2, 3, …; or a failing step (then nothing of this call is committed).
    pub fn migrate(&self, migrations: &[Migration]) -> Result<MigrationReport> {
        let known = check_list(migrations)?;
        self.run(Isolation::LockedWrite, |tx| {
            tx.lock_exclusive(MIGRATE_LOCK)?;
            tx.execute_batch(OWN_TABLES)?;
            let from = recorded_version(tx, migrations, known)?;
            for migration in migrations.iter().filter(|m| m.version > from) {
                match tx.backend() {
                    Backend::Sqlite => tx.execute_batch(migration.sql)?,
                    Backend::Postgres => {
                        tx.execute_batch(&crate::sql::schema_for_postgres(migration.sql))?;
                    }
                }
                tx.execute(
                    &format!(
                        "INSERT INTO shuyu_meta_schema (version, name, applied_at_ms) VALUES (?1, ?2, {})",
                        tx.now_ms_sql()
                    ),
                    &[Value::Int(migration.version.into()), migration.name.into()],
                )?;
            }
            Ok(MigrationReport {
                from,
                to: known.max(from),
            })
        })
    }

    /// The schema version the database records (0 before the first [`Db::migrate`]).
    ///
    /// # Errors
    /// A failed read.
    pub fn schema_version(&self) -> Result<u32> {
        self.read(|tx| {
            let exists = match tx.backend() {
                Backend::Sqlite => tx.query_opt(
                    "SELECT 1 AS present FROM sqlite_master WHERE type = 'table' AND name = 'shuyu_meta_schema'",
                    &[],
                )?,
                Backend::Postgres => tx.query_opt(
                    "SELECT 1 AS present FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'shuyu_meta_schema'",
                    &[],
                )?,
            };
            if exists.is_none() {
                return Ok(0);
            }
            tx.query_one(
                "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) AS version FROM shuyu_meta_schema",
                &[],
            )?
            .get("version")
        })
    }
}

fn recorded_version(tx: &Tx<'_>, migrations: &[Migration], known: u32) -> Result<u32> {
    let rows = tx.query(
        "SELECT version, name FROM shuyu_meta_schema ORDER BY version",
        &[],
    )?;
    let mut found = 0;
    for row in &rows {
        found = found.max(row.get::<u32>("version")?);
    }
    if found > known {
        return Err(Error::SchemaNewer { found, known });
    }
    for row in &rows {
        let version: u32 = row.get("version")?;
        let recorded: String = row.get("name")?;
        let expected = migrations.get(version as usize - 1).map_or("", |m| m.name);
        if recorded != expected {
            return Err(Error::MigrationMismatch {
                version,
                recorded,
                expected: expected.to_owned(),
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_must_count_from_one() {
        let m = |version| Migration {
            version,
            name: "m",
            sql: "",
        };
        assert_eq!(check_list(&[]).unwrap(), 0);
        assert_eq!(check_list(&[m(1), m(2), m(3)]).unwrap(), 3);
        for bad in [vec![m(0)], vec![m(2)], vec![m(1), m(3)], vec![m(1), m(1)]] {
            assert!(matches!(check_list(&bad), Err(Error::InvalidMigrations(_))));
        }
    }
}
