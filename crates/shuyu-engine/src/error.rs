//! Errors of the engine; none of their messages carries a data value.

/// Errors of ingest, sampling and result handling.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The caller's input is malformed; the message is safe to show (no data values).
    #[error("{0}")]
    InvalidInput(String),
    /// Storage failed (object store, file system).
    #[error("storage: {0}")]
    Storage(String),
    /// Encryption or key handling failed.
    #[error("encryption: {0}")]
    Crypto(String),
    /// Anything else inside the engine; the message may contain data values and must only go
    /// to the audit trail.
    #[error("internal: {0}")]
    Internal(String),
}

/// Why a job did not produce a result. Only [`JobError::public_message`] may reach the
/// engineer.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Refused by the sandbox before planning or execution (statement kind, size, EXPLAIN…).
    #[error("refused: {0}")]
    Refused(String),
    /// The SQL does not plan (syntax, unknown table or column); the text comes from the
    /// user's own SQL, never from data.
    #[error("plan: {0}")]
    Plan(String),
    /// The job hit its memory limit.
    #[error("memory limit exceeded")]
    ResourcesExhausted,
    /// The job hit its time limit.
    #[error("time limit exceeded")]
    Timeout,
    /// A failure while processing data; `detail` may contain data values and goes only to the
    /// audit trail.
    #[error("execution failed: {detail}")]
    Execution {
        /// Full text for the audit trail.
        detail: String,
    },
}

impl JobError {
    /// Text that may be shown to the engineer.
    pub fn public_message(&self) -> String {
        match self {
            JobError::Refused(msg) => format!("refused: {msg}"),
            JobError::Plan(msg) => format!("invalid query: {msg}"),
            JobError::ResourcesExhausted => "the job exceeded its memory limit".to_owned(),
            JobError::Timeout => "the job exceeded its time limit".to_owned(),
            JobError::Execution { .. } => {
                "the job failed while processing data; the details are withheld because they may contain data values".to_owned()
            }
        }
    }

    /// Whether the public message replaces a withheld detail (so an error id is needed).
    pub fn is_withheld(&self) -> bool {
        matches!(self, JobError::Execution { .. })
    }
}

impl From<shuyu_vault::VaultError> for EngineError {
    fn from(e: shuyu_vault::VaultError) -> Self {
        EngineError::Crypto(e.to_string())
    }
}
