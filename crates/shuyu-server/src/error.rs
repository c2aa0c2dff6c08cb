//! The server's error type and its one mapping to gRPC status codes.
//!
//! Every status carries a `google.rpc.ErrorInfo` (domain `shuyu.v1`) with a stable reason:
//! the [`Refusal`]'s own for a rule's refusal, a generic one per variant otherwise. Clients
//! and tests match the reason (`shuyu_client::error_reason`), never the message.

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
    /// A rule of the domain refused the call; its reason is stable and machine-readable.
    #[error("{0}")]
    Refused(Refusal),
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

/// The kind of a refusal, which fixes its gRPC code, the prefix of its message and its
/// audit outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// The state of things forbids it now (`FAILED_PRECONDITION`).
    Precondition,
    /// This caller may not (`PERMISSION_DENIED`).
    Denied,
    /// A budget, queue or size limit is used up (`RESOURCE_EXHAUSTED`).
    Exhausted,
}

impl RefusalClass {
    /// The gRPC code.
    pub fn code(self) -> Code {
        match self {
            RefusalClass::Precondition => Code::FailedPrecondition,
            RefusalClass::Denied => Code::PermissionDenied,
            RefusalClass::Exhausted => Code::ResourceExhausted,
        }
    }

    /// The words before the message, as the untyped variants write them.
    fn prefix(self) -> &'static str {
        match self {
            RefusalClass::Precondition => "failed precondition",
            RefusalClass::Denied => "permission denied",
            RefusalClass::Exhausted => "resource exhausted",
        }
    }

    /// The outcome word recorded in the audit trail.
    fn audit_outcome(self) -> &'static str {
        match self {
            RefusalClass::Denied => "denied",
            RefusalClass::Precondition | RefusalClass::Exhausted => "invalid",
        }
    }
}

/// Declares [`Refusal`]: each variant with its stable reason and class, in one table.
macro_rules! refusals {
    ($($(#[doc = $doc:literal])* $variant:ident => $reason:literal, $class:ident;)*) => {
        /// A typed refusal of one of the domain's rules. The variant fixes the stable,
        /// machine-readable reason (sent in the status's `ErrorInfo`) and the gRPC code; the
        /// text is the message for people, which may change.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Refusal {
            $($(#[doc = $doc])* $variant(String),)*
        }

        impl Refusal {
            /// The stable reason (SCREAMING_SNAKE_CASE), in domain `shuyu.v1`.
            pub fn reason(&self) -> &'static str {
                match self {
                    $(Refusal::$variant(_) => $reason,)*
                }
            }

            /// The refusal's class (its code and audit outcome).
            pub fn class(&self) -> RefusalClass {
                match self {
                    $(Refusal::$variant(_) => RefusalClass::$class,)*
                }
            }

            /// The message for people.
            pub fn message(&self) -> &str {
                match self {
                    $(Refusal::$variant(message) => message,)*
                }
            }

            /// The message for people, taken.
            pub fn into_message(self) -> String {
                match self {
                    $(Refusal::$variant(message) => message,)*
                }
            }

            /// One of each variant (tests).
            #[cfg(test)]
            fn every_one() -> Vec<Refusal> {
                vec![$(Refusal::$variant(stringify!($variant).to_owned()),)*]
            }
        }
    };
}

refusals! {
    /// The tenant is suspended: its people are refused every call.
    TenantSuspended => "TENANT_SUSPENDED", Precondition;
    /// The tenant's work is stopped (emergency stop): everything but reads is refused.
    TenantStopped => "TENANT_STOPPED", Precondition;
    /// The tenant was terminated.
    TenantTerminated => "TENANT_TERMINATED", Precondition;
    /// The tenant is held, so its exports take no vote, download or fetch.
    ExportFrozen => "EXPORT_FROZEN", Precondition;
    /// Production submission is frozen after too many failed production jobs.
    ProductionFrozen => "PRODUCTION_FROZEN", Precondition;
    /// The tenant has no data-lab access, or it ended.
    LabClosed => "LAB_CLOSED", Precondition;
    /// The scenario is not usable now (not approved, not yet valid, expired, revoked, or it
    /// or a dataset of its data list is gone).
    ScenarioUnusable => "SCENARIO_UNUSABLE", Precondition;
    /// The scenario ends before the product's shortest life: nothing more is exported
    /// under it.
    ScenarioEnding => "SCENARIO_ENDING", Precondition;
    /// A risk stop holds the scenario's data.
    RiskStopped => "RISK_STOPPED", Precondition;
    /// No authorization is in force for the tenant.
    NoAuthorization => "NO_AUTHORIZATION", Precondition;
    /// The tenant already has an open authorization: a new term is its renewal (R25).
    AuthorizationOpen => "AUTHORIZATION_OPEN", Precondition;
    /// The authorization was revoked, expired or superseded: it no longer changes.
    AuthorizationEnded => "AUTHORIZATION_ENDED", Precondition;
    /// The authorization is already renewed.
    AlreadyRenewed => "ALREADY_RENEWED", Precondition;
    /// The authorization's renewal window (six months before its end) has not opened.
    RenewalNotOpen => "RENEWAL_NOT_OPEN", Precondition;
    /// A dataset or category is outside the scope of the tenant's authorization.
    OutsideAuthorization => "OUTSIDE_AUTHORIZATION", Precondition;
    /// The authorization in force has no emergency plan.
    NoEmergencyPlan => "NO_EMERGENCY_PLAN", Precondition;
    /// What a review bound (result, query, policy) changed since it was reviewed.
    BindingChanged => "BINDING_CHANGED", Precondition;
    /// The reviewer has already voted on this export.
    AlreadyVoted => "ALREADY_VOTED", Precondition;
    /// The export failed its automated checks.
    ChecksFailed => "CHECKS_FAILED", Precondition;
    /// The export is not in review.
    NotInReview => "NOT_IN_REVIEW", Precondition;
    /// Released together with the tenant's other releases, the result would isolate
    /// individuals.
    CombinedDisclosure => "COMBINED_DISCLOSURE", Precondition;
    /// Another call changed the same thing at the same time: try again.
    ConcurrentChange => "CONCURRENT_CHANGE", Precondition;
    /// The export was revoked.
    ExportRevoked => "EXPORT_REVOKED", Precondition;
    /// The product expired.
    ProductExpired => "PRODUCT_EXPIRED", Precondition;
    /// The export is not approved (only an approved one is delivered or revoked).
    ExportNotApproved => "EXPORT_NOT_APPROVED", Precondition;
    /// The product was approved before Flight copies existed: it is served as its package
    /// only.
    NoFlightCopy => "NO_FLIGHT_COPY", Precondition;
    /// A leaked file's row order fits several products: too few rows to tell them apart.
    TraceAmbiguous => "TRACE_AMBIGUOUS", Precondition;
    /// Only a succeeded job's result can be exported, and only a succeeded lab job promoted.
    JobNotSucceeded => "JOB_NOT_SUCCEEDED", Precondition;
    /// Only a lab job is promoted; this one is a production job already.
    NotALabJob => "NOT_A_LAB_JOB", Precondition;
    /// The job has already finished: there is nothing to cancel.
    JobFinished => "JOB_FINISHED", Precondition;
    /// A privacy budget's total cannot be set below what is already spent of it.
    BudgetBelowSpent => "BUDGET_BELOW_SPENT", Precondition;
    /// A lab job's result never leaves the lab.
    LabResultStays => "LAB_RESULT_STAYS", Precondition;
    /// The application (a scenario, an import) is already decided, or the approver has
    /// already decided on it.
    AlreadyDecided => "ALREADY_DECIDED", Precondition;
    /// The import application is not approved (pending or rejected): nothing is uploaded
    /// for it.
    ImportNotApproved => "IMPORT_NOT_APPROVED", Precondition;
    /// The import application's data was already uploaded.
    AlreadyImported => "ALREADY_IMPORTED", Precondition;
    /// A tenant's imported data is its own: it is granted to no other tenant (R17).
    ImportedData => "IMPORTED_DATA", Precondition;
    /// The data-quality ticket is already resolved or declined.
    TicketClosed => "TICKET_CLOSED", Precondition;
    /// The risk stop was already lifted.
    StopLifted => "STOP_LIFTED", Precondition;
    /// The alert was already acknowledged.
    AlreadyAcknowledged => "ALREADY_ACKNOWLEDGED", Precondition;
    /// The audit trail does not verify: no checkpoint is signed over it (an alert is raised).
    TrailBroken => "TRAIL_BROKEN", Precondition;
    /// The tenant is not suspended (nothing to resume).
    NotSuspended => "NOT_SUSPENDED", Precondition;
    /// The tenant is not stopped (nothing to release).
    NotStopped => "NOT_STOPPED", Precondition;
    /// The tenant's production job submission is not frozen (nothing to lift).
    NotFrozen => "NOT_FROZEN", Precondition;
    /// The tenant has not been terminated: it has no exit report.
    NotTerminated => "NOT_TERMINATED", Precondition;
    /// The principal the call is about was disabled: no certificate is issued to it.
    TargetDisabled => "TARGET_DISABLED", Precondition;
    /// The principal has no unrevoked certificate (of that fingerprint) to revoke.
    NoCertificate => "NO_CERTIFICATE", Precondition;
    /// One person would fill two approvals of a scenario (R12).
    OneApprovalPerPerson => "ONE_APPROVAL_PER_PERSON", Precondition;
    /// The caller's role may not take the action.
    RoleNotAllowed => "ROLE_NOT_ALLOWED", Denied;
    /// The caller belongs to no tenant.
    NoTenant => "NO_TENANT", Denied;
    /// The principal was disabled.
    PrincipalDisabled => "PRINCIPAL_DISABLED", Denied;
    /// The principal's registration, training or NDA is missing or lapsed (R8, R9).
    NotQualified => "NOT_QUALIFIED", Denied;
    /// A requester may not review their own export.
    AuthorCannotReview => "AUTHOR_CANNOT_REVIEW", Denied;
    /// Only reviewers independent of the requesting tenant may do this.
    NotIndependent => "NOT_INDEPENDENT", Denied;
    /// The caller is not a required approver of the scenario.
    NotAnApprover => "NOT_AN_APPROVER", Denied;
    /// The dataset's privacy budget cannot pay for the job.
    PrivacyBudgetExhausted => "PRIVACY_BUDGET_EXHAUSTED", Exhausted;
    /// The tenant has as many jobs queued or running as it may.
    QueueFull => "QUEUE_FULL", Exhausted;
    /// A result is larger than the server holds for one request.
    ResultTooLarge => "RESULT_TOO_LARGE", Exhausted;
    /// An upload is larger than the limit.
    UploadTooLarge => "UPLOAD_TOO_LARGE", Exhausted;
    /// An export's worker ran out of its memory and spill space.
    WorkerMemory => "WORKER_MEMORY", Exhausted;
    /// An export's worker did not finish within its time limit.
    WorkerTimeout => "WORKER_TIMEOUT", Exhausted;
}

impl Refusal {
    /// The gRPC code.
    pub fn code(&self) -> Code {
        self.class().code()
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class().prefix(), self.message())
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for ServerError {
    fn from(refusal: Refusal) -> Self {
        ServerError::Refused(refusal)
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
            ServerError::Unauthenticated(_)
            | ServerError::PermissionDenied(_)
            | ServerError::NotFound(_)
            | ServerError::InvalidArgument(_)
            | ServerError::FailedPrecondition(_)
            | ServerError::AlreadyExists(_)
            | ServerError::ResourceExhausted(_)
            | ServerError::Refused(_)
            | ServerError::Busy(_)
            | ServerError::Internal { .. } => None,
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
            ServerError::Refused(refusal) => refusal.class().audit_outcome(),
            ServerError::Busy(_) => "busy",
            ServerError::Storage(_) | ServerError::Internal { .. } => "error",
        }
    }

    /// The gRPC status sent to the client, with its stable reason in an `ErrorInfo`.
    /// Exhaustive on purpose: a new variant must choose its code and reason.
    pub fn into_status(self) -> Status {
        let (code, reason) = match &self {
            ServerError::Unauthenticated(_) => (Code::Unauthenticated, "UNAUTHENTICATED"),
            ServerError::PermissionDenied(_) => (Code::PermissionDenied, "PERMISSION_DENIED"),
            ServerError::NotFound(_) => (Code::NotFound, "NOT_FOUND"),
            ServerError::InvalidArgument(_) => (Code::InvalidArgument, "INVALID_ARGUMENT"),
            ServerError::FailedPrecondition(_) => (Code::FailedPrecondition, "FAILED_PRECONDITION"),
            ServerError::AlreadyExists(_) => (Code::AlreadyExists, "ALREADY_EXISTS"),
            ServerError::ResourceExhausted(_) => (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
            ServerError::Refused(refusal) => (refusal.code(), refusal.reason()),
            ServerError::Busy(_) => (Code::Unavailable, "BUSY"),
            ServerError::Storage(StorageFault::Full) => (Code::ResourceExhausted, "STORAGE_FULL"),
            ServerError::Storage(StorageFault::ReadOnly) => {
                (Code::Unavailable, "STORAGE_READ_ONLY")
            }
            ServerError::Internal { .. } => (Code::Internal, "INTERNAL"),
        };
        shuyu_proto::status::status_with_reason(code, self.to_string(), reason)
    }
}

impl From<shuyu_meta::Error> for ServerError {
    fn from(e: shuyu_meta::Error) -> Self {
        use shuyu_meta::Error as Meta;
        if let Some(fault) = StorageFault::of_metadata(&e) {
            return ServerError::Storage(fault);
        }
        match e {
            // Other servers kept the rows busy, or every pooled connection was taken: try
            // again later.
            Meta::RetriesExhausted { .. } | Meta::PoolTimeout(_) => {
                ServerError::Busy(format!("metadata store: {e}"))
            }
            Meta::InvalidUrl(_)
            | Meta::Password { .. }
            | Meta::Placeholder(_)
            | Meta::Sqlite(_)
            | Meta::Postgres(_)
            | Meta::Io { .. }
            | Meta::NoSuchColumn(_)
            | Meta::WrongType { .. }
            | Meta::UnsupportedColumnType { .. }
            | Meta::RowCount(_)
            | Meta::WriteInRead
            | Meta::TransactionAborted
            | Meta::SchemaNewer { .. }
            | Meta::MigrationMismatch { .. }
            | Meta::InvalidMigrations(_)
            | Meta::RuntimeStopped
            | Meta::TestPostgres(_) => ServerError::internal(metadata_text(&e)),
            // `shuyu_meta::Error` is `#[non_exhaustive]`: a variant added there lands here,
            // still internal and with its full text.
            _ => ServerError::internal(metadata_text(&e)),
        }
    }
}

/// A metadata store error's text with its source chain (the driver's own error).
fn metadata_text(e: &shuyu_meta::Error) -> String {
    let mut text = format!("metadata store: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl From<shuyu_engine::EngineError> for ServerError {
    fn from(e: shuyu_engine::EngineError) -> Self {
        use shuyu_engine::EngineError as Engine;
        match e {
            Engine::InvalidInput(msg) => ServerError::InvalidArgument(msg),
            // The engine's text (its source, "storage: …", "encryption: …") goes whole into
            // the internal error's sealed detail; a full or read-only disk is said plainly.
            Engine::Storage(_) | Engine::Crypto(_) | Engine::Internal(_) => {
                let text = e.to_string();
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
    fn every_refusal_keeps_its_code_reason_and_message_in_the_status() {
        let mut seen = std::collections::HashSet::new();
        for refusal in Refusal::every_one() {
            let (code, reason, message) = (
                refusal.code(),
                refusal.reason(),
                refusal.message().to_owned(),
            );
            assert!(seen.insert(reason), "reason {reason} is used twice");
            assert!(
                !reason.is_empty()
                    && reason
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{reason} is not SCREAMING_SNAKE_CASE"
            );
            let status = ServerError::from(refusal).into_status();
            assert_eq!(status.code(), code, "{reason}");
            assert!(status.message().ends_with(&message), "{status:?}");
            assert_eq!(shuyu_client::error_reason(&status).as_deref(), Some(reason));
            // Through the trailers, as a client reads them.
            let back = Status::from_header_map(status.clone().into_http::<()>().headers()).unwrap();
            assert_eq!(back.code(), code);
            assert_eq!(shuyu_client::error_reason(&back).as_deref(), Some(reason));
        }
    }

    #[test]
    fn a_refusal_reads_as_its_untyped_variant_did() {
        let typed = ServerError::from(Refusal::TenantSuspended("tenant suspended since x".into()));
        let untyped = ServerError::FailedPrecondition("tenant suspended since x".into());
        assert_eq!(typed.to_string(), untyped.to_string());
        assert_eq!(typed.audit_outcome(), untyped.audit_outcome());
        let typed = ServerError::from(Refusal::NotQualified("no NDA".into()));
        let untyped = ServerError::PermissionDenied("no NDA".into());
        assert_eq!(typed.to_string(), untyped.to_string());
        assert_eq!(typed.audit_outcome(), "denied");
        let typed = ServerError::from(Refusal::QueueFull("wait".into()));
        assert_eq!(
            typed.to_string(),
            ServerError::ResourceExhausted("wait".into()).to_string()
        );
    }

    #[test]
    fn every_other_error_carries_a_generic_reason() {
        let cases = [
            (ServerError::Unauthenticated("x"), "UNAUTHENTICATED"),
            (
                ServerError::PermissionDenied("x".into()),
                "PERMISSION_DENIED",
            ),
            (ServerError::NotFound("x".into()), "NOT_FOUND"),
            (ServerError::InvalidArgument("x".into()), "INVALID_ARGUMENT"),
            (
                ServerError::FailedPrecondition("x".into()),
                "FAILED_PRECONDITION",
            ),
            (ServerError::AlreadyExists("x".into()), "ALREADY_EXISTS"),
            (
                ServerError::ResourceExhausted("x".into()),
                "RESOURCE_EXHAUSTED",
            ),
            (ServerError::Busy("x".into()), "BUSY"),
            (ServerError::Storage(StorageFault::Full), "STORAGE_FULL"),
            (
                ServerError::Storage(StorageFault::ReadOnly),
                "STORAGE_READ_ONLY",
            ),
            (ServerError::internal("secret"), "INTERNAL"),
        ];
        for (e, reason) in cases {
            let status = e.into_status();
            assert_eq!(shuyu_client::error_reason(&status).as_deref(), Some(reason));
            assert!(!status.message().contains("secret"), "{status:?}");
        }
    }

    #[test]
    fn engine_and_metadata_errors_keep_their_text_in_the_sealed_detail() {
        for e in [
            shuyu_engine::EngineError::Storage("object x vanished".into()),
            shuyu_engine::EngineError::Crypto("object x vanished".into()),
            shuyu_engine::EngineError::Internal("object x vanished".into()),
        ] {
            match ServerError::from(e) {
                ServerError::Internal { detail, .. } => {
                    assert!(detail.contains("object x vanished"), "{detail}");
                }
                other => panic!("expected internal, got {other:?}"),
            }
        }
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let e = conn
            .execute("INSERT INTO nowhere VALUES (1)", [])
            .unwrap_err();
        match ServerError::from(shuyu_meta::Error::from(e)) {
            ServerError::Internal { detail, .. } => {
                assert!(detail.contains("no such table: nowhere"), "{detail}");
            }
            other => panic!("expected internal, got {other:?}"),
        }
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
