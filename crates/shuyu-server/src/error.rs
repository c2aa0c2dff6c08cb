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
    /// Anything else. `detail` goes to the audit trail (sealed), never to the client.
    #[error("internal error (error id {id})")]
    Internal {
        /// Error id shown to the client and recorded in the audit trail.
        id: String,
        /// Full text, possibly containing data values.
        detail: String,
    },
}

impl ServerError {
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
            ServerError::Internal { .. } => "error",
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
            ServerError::Internal { .. } => Code::Internal,
        };
        Status::new(code, self.to_string())
    }
}

impl From<rusqlite::Error> for ServerError {
    fn from(e: rusqlite::Error) -> Self {
        ServerError::internal(format!("metadata store: {e}"))
    }
}

impl From<shuyu_engine::EngineError> for ServerError {
    fn from(e: shuyu_engine::EngineError) -> Self {
        match e {
            shuyu_engine::EngineError::InvalidInput(msg) => ServerError::InvalidArgument(msg),
            other => ServerError::internal(other),
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
