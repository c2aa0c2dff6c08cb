//! The crate's one error type.

use std::path::PathBuf;

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the metadata store. Messages never contain a password. A database's
/// own message may quote stored values (PostgreSQL's `DETAIL: Key (id)=(7) already
/// exists.`): treat [`Error::Sqlite`] and [`Error::Postgres`] text as internal, never as a
/// client's answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The metadata URL could not be parsed.
    #[error("invalid metadata URL: {0}")]
    InvalidUrl(String),
    /// The password could not be read from the source the caller named.
    #[error("password source {source_name}: {reason}")]
    Password {
        /// The variable's name or the file's path (never the password).
        source_name: String,
        /// Why it could not be used.
        reason: String,
    },
    /// A statement used a placeholder form this crate does not accept.
    #[error("SQL placeholders: {0}")]
    Placeholder(String),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (SQLSTATE in the message when the server sent one).
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A file beside the store could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A row has no column of that name.
    #[error("no column named {0:?} in the row")]
    NoSuchColumn(String),
    /// A column's value has another type than the one asked for.
    #[error("column {column:?}: expected {expected}, found {found}")]
    WrongType {
        /// The column.
        column: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the row holds.
        found: &'static str,
    },
    /// A PostgreSQL column type this crate does not read.
    #[error("column {column:?}: unsupported PostgreSQL type {pg_type}")]
    UnsupportedColumnType {
        /// The column.
        column: String,
        /// The type's name.
        pg_type: String,
    },
    /// `query_one` found no row, or more than one.
    #[error("expected exactly one row, found {0}")]
    RowCount(usize),
    /// A read transaction tried to write.
    #[error("a read transaction may not write")]
    WriteInRead,
    /// A statement failed earlier in this transaction, so it cannot commit (PostgreSQL aborts
    /// the transaction on any error; SQLite is held to the same rule).
    #[error("an earlier statement of this transaction failed; nothing was committed")]
    TransactionAborted,
    /// PostgreSQL kept refusing the transaction (serialization failure or deadlock) after
    /// the configured number of attempts.
    #[error("transaction not serializable after {attempts} attempts")]
    RetriesExhausted {
        /// How many times it ran.
        attempts: u32,
    },
    /// The database's schema was written by a newer shuyu than this one.
    #[error(
        "metadata schema version {found} was written by a newer shuyu (this binary knows up to {known}); refusing to open it"
    )]
    SchemaNewer {
        /// The version the database records.
        found: u32,
        /// The last version this binary knows.
        known: u32,
    },
    /// The database records a migration under a version whose name differs from this
    /// binary's list.
    #[error(
        "migration {version} is recorded as {recorded:?} but this binary calls it {expected:?}"
    )]
    MigrationMismatch {
        /// The version.
        version: u32,
        /// The name in the database.
        recorded: String,
        /// The name in the binary's list.
        expected: String,
    },
    /// A migration list is not strictly increasing from 1.
    #[error("invalid migration list: {0}")]
    InvalidMigrations(String),
    /// No pooled PostgreSQL connection came free in time.
    #[error("no PostgreSQL connection free after {0:?}")]
    PoolTimeout(std::time::Duration),
    /// The store's PostgreSQL runtime has shut down (the process is ending).
    #[error("the PostgreSQL runtime has stopped")]
    RuntimeStopped,
    /// The test PostgreSQL could not be started.
    #[error("test PostgreSQL: {0}")]
    TestPostgres(String),
}

impl Error {
    /// Whether a unique or primary-key constraint refused the statement.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            _ => self.sqlstate() == Some("23505"),
        }
    }

    /// Whether the database's disk is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            Error::Io { source, .. } => source.raw_os_error() == Some(28),
            _ => self.sqlstate() == Some("53100"),
        }
    }

    /// Whether the database refused to write because it is read-only (a read-only file or
    /// folder, a read-only transaction or server).
    pub fn is_read_only(&self) -> bool {
        match self {
            Error::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly),
            Error::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(30 | 13))
            }
            Error::WriteInRead => true,
            _ => self.sqlstate() == Some("25006"),
        }
    }

    /// The SQLSTATE of a PostgreSQL error, if the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Postgres(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }
}
