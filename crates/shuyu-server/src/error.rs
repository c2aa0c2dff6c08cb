//! The server's error type and its one mapping to gRPC status codes.

use tonic::{Code, Status};

/// Everything a service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No usable client certificate, or one not bound to an active principal.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// The caller's role may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Missing, or belonging to another tenant (indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(String),
    /// Malformed request or input; the message is safe to show.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request conflicts with the current state (e.g. approving a failed export).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A unique name is taken.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A size limit was exceeded.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The server is handling as many such requests as it may at once: try again later.
    #[error("unavailable: {0}")]
    Busy(String),
    /// The data directory cannot take the write: its disk is full or it is read-only.
    #[error("{0}")]
    Storage(StorageFault),
    /// Anything else. `detail` goes to the audit trail (sealed), never to the client.
    #[error("internal error (error id {id})")]
    Internal {
        /// Error id shown to the client and recorded in the audit trail.
        id: String,
        /// Full text, possibly containing data values.
        detail: String,
    },
}

/// Why the data directory refused a write. Its message is plain and holds no path or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StorageFault {
    /// No space left (or a quota reached).
    #[error("the server's disk is full: nothing was changed; an operator must free space")]
    Full,
    /// A read-only file system, or a data directory the server may not write.
    #[error("the server's data directory is read-only: nothing was changed")]
    ReadOnly,
}

impl StorageFault {
    /// The fault behind an IO error, if it is one.
    pub fn of_io(e: &std::io::Error) -> Option<StorageFault> {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Some(StorageFault::Full),
            ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
                Some(StorageFault::ReadOnly)
            }
            _ => None,
        }
    }

    /// The fault named in an error's text (errors of the object store and the engine keep
    /// the OS error only as text: "… (os error 28)").
    pub fn in_text(text: &str) -> Option<StorageFault> {
        const FULL: [&str; 2] = ["(os error 28)", "(os error 122)"];
        const READ_ONLY: [&str; 2] = ["(os error 30)", "(os error 13)"];
        if FULL.iter().any(|code| text.contains(code)) {
            Some(StorageFault::Full)
        } else if READ_ONLY.iter().any(|code| text.contains(code)) {
            Some(StorageFault::ReadOnly)
        } else {
            None
        }
    }

    /// The fault behind a metadata store error, if it is one.
    pub fn of_metadata(e: &shuyu_meta::Error) -> Option<StorageFault> {
        if e.is_disk_full() {
            Some(StorageFault::Full)
        } else if e.is_read_only() {
            Some(StorageFault::ReadOnly)
        } else {
            None
        }
    }
}

impl ServerError {
    /// An IO error on `what`: a [`StorageFault`] when it is one, else internal.
    pub fn from_io(what: &str, e: std::io::Error) -> ServerError {
        match StorageFault::of_io(&e) {
            Some(fault) => ServerError::Storage(fault),
            None => ServerError::internal(format!("{what}: {e}")),
        }
    }

    /// The storage fault this error is, if any.
    pub fn storage_fault(&self) -> Option<StorageFault> {
        match self {
            ServerError::Storage(fault) => Some(*fault),
            _ => None,
        }
    }

    /// An internal error with a fresh id.
    pub fn internal(detail: impl std::fmt::Display) -> ServerError {
        ServerError::Internal {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            detail: detail.to_string(),
        }
    }

    /// The outcome word recorded in the audit trail.
    pub fn audit_outcome(&self) -> &'static str {
        match self {
            ServerError::Unauthenticated(_) | ServerError::PermissionDenied(_) => "denied",
            ServerError::NotFound(_) => "not_found",
            ServerError::InvalidArgument(_)
            | ServerError::FailedPrecondition(_)
            | ServerError::AlreadyExists(_)
            | ServerError::ResourceExhausted(_) => "invalid",
            ServerError::Busy(_) => "busy",
            ServerError::Storage(_) | ServerError::Internal { .. } => "error",
        }
    }

    /// The gRPC status sent to the client. Exhaustive on purpose: a new variant must choose.
    pub fn into_status(self) -> Status {
        let code = match &self {
            ServerError::Unauthenticated(_) => Code::Unauthenticated,
            ServerError::PermissionDenied(_) => Code::PermissionDenied,
            ServerError::NotFound(_) => Code::NotFound,
            ServerError::InvalidArgument(_) => Code::InvalidArgument,
            ServerError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServerError::AlreadyExists(_) => Code::AlreadyExists,
            ServerError::ResourceExhausted(_) => Code::ResourceExhausted,
            ServerError::Busy(_) => Code::Unavailable,
            ServerError::Storage(StorageFault::Full) => Code::ResourceExhausted,
            ServerError::Storage(StorageFault::ReadOnly) => Code::Unavailable,
            ServerError::Internal { .. } => Code::Internal,
        };
        Status::new(code, self.to_string())
    }
}

impl From<shuyu_meta::Error> for ServerError {
    fn from(e: shuyu_meta::Error) -> Self {
        if let Some(fault) = StorageFault::of_metadata(&e) {
            return ServerError::Storage(fault);
        }
        match e {
            // Other servers kept the rows busy, or every pooled connection was taken: try
            // again later.
            shuyu_meta::Error::RetriesExhausted { .. } | shuyu_meta::Error::PoolTimeout(_) => {
                ServerError::Busy(format!("metadata store: {e}"))
            }
            other => ServerError::internal(format!("metadata store: {other}")),
        }
    }
}

impl From<shuyu_engine::EngineError> for ServerError {
    fn from(e: shuyu_engine::EngineError) -> Self {
        match e {
            shuyu_engine::EngineError::InvalidInput(msg) => ServerError::InvalidArgument(msg),
            other => {
                let text = other.to_string();
                match StorageFault::in_text(&text) {
                    Some(fault) => ServerError::Storage(fault),
                    None => ServerError::internal(text),
                }
            }
        }
    }
}

impl From<shuyu_vault::VaultError> for ServerError {
    fn from(e: shuyu_vault::VaultError) -> Self {
        ServerError::internal(format!("vault: {e}"))
    }
}

/// Result alias for the server.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_or_read_only_disk_is_a_plain_status_not_internal() {
        let full = ServerError::from_io("x", std::io::Error::from_raw_os_error(28));
        let status = full.into_status();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("disk is full"), "{status:?}");
        let read_only = ServerError::from_io("x", std::io::Error::from_raw_os_error(30));
        let status = read_only.into_status();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("read-only"), "{status:?}");
        // Engine and object-store errors carry the OS error as text.
        let engine = shuyu_engine::EngineError::Storage(
            "Unable to write /d/objects/x: No space left on device (os error 28)".into(),
        );
        assert_eq!(
            ServerError::from(engine).storage_fault(),
            Some(StorageFault::Full)
        );
        assert!(
            ServerError::from_io("x", std::io::Error::other("boom"))
                .storage_fault()
                .is_none()
        );
    }

    #[test]
    fn sqlite_reports_a_full_database_as_a_full_disk() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
        let e = conn
            .execute("INSERT INTO t VALUES (zeroblob(100000))", [])
            .unwrap_err();
        let e = ServerError::from(shuyu_meta::Error::from(e));
        assert_eq!(e.storage_fault(), Some(StorageFault::Full));
        assert_eq!(e.into_status().code(), Code::ResourceExhausted);
    }
}
