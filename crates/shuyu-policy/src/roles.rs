//! Roles (R8, R10) and the one matrix of what each may do.

use std::fmt;
use std::str::FromStr;

use crate::{PolicyError, truncate};

/// The roles of an authorized operation domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Public-data authority: tenants, principals, certificates, grants. Sees catalog metadata
    /// and the audit trail, never samples.
    PlatformAdmin,
    /// Source agency: ingests, classifies and describes datasets.
    DataSteward,
    /// Operating-unit staff: masked samples, jobs over granted data, export requests.
    Engineer,
    /// Expert group: reviews and votes on export requests.
    Reviewer,
    /// Supervisor (R35): reads the audit trail, tenants, principals, jobs with their queries,
    /// exports and products (never result rows or previews of values); traces leaked copies.
    Auditor,
    /// Application unit receiving approved data products (R21, R23): lists, downloads and
    /// fetches the products naming it, nothing else.
    Recipient,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 6] = [
        Role::PlatformAdmin,
        Role::DataSteward,
        Role::Engineer,
        Role::Reviewer,
        Role::Auditor,
        Role::Recipient,
    ];

    /// Text form: `admin`, `steward`, `engineer`, `reviewer`, `auditor`, `recipient`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::PlatformAdmin => "admin",
            Role::DataSteward => "steward",
            Role::Engineer => "engineer",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
            Role::Recipient => "recipient",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PolicyError;

    /// Parses the text form case-insensitively; `platform_admin` and `data_steward` are
    /// accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" | "platform_admin" => Ok(Role::PlatformAdmin),
            "steward" | "data_steward" => Ok(Role::DataSteward),
            "engineer" => Ok(Role::Engineer),
            "reviewer" => Ok(Role::Reviewer),
            "auditor" => Ok(Role::Auditor),
            "recipient" => Ok(Role::Recipient),
            _ => Err(PolicyError::UnknownRole(truncate(s))),
        }
    }
}

/// Everything a call can do; each RPC checks exactly one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Show the caller's own identity and role.
    WhoAmI,
    /// Create a tenant (operating unit or source agency).
    CreateTenant,
    /// List tenants.
    ListTenants,
    /// Create a principal (a person with one role).
    CreatePrincipal,
    /// List principals.
    ListPrincipals,
    /// Issue a client certificate to a principal.
    IssueCertificate,
    /// Grant a tenant the use of a dataset.
    GrantDataset,
    /// Ingest (publish) a dataset with its column classifications.
    IngestDataset,
    /// List datasets in the catalog.
    ListDatasets,
    /// Show a dataset's schema, classifications and masking rules.
    DescribeDataset,
    /// See masked sample rows of a dataset.
    SampleDataset,
    /// Submit a SQL job.
    SubmitJob,
    /// See a job's status and masked preview.
    ViewJob,
    /// Cancel a queued or running job of the caller's tenant.
    CancelJob,
    /// See metered resource use (R6): engineers their tenant's, admins and auditors all.
    ViewUsage,
    /// Ask for a job's result to be exported.
    RequestExport,
    /// See an export request and its decision.
    ViewExport,
    /// List export requests awaiting review.
    ListReviewQueue,
    /// Inspect an export request under review.
    ReviewExport,
    /// Vote on an export in review: approve, reject or return it for changes (R22).
    VoteExport,
    /// Comment on an export: reviewers shared or private, the requesting tenant shared.
    CommentExport,
    /// Withdraw an approved export: its package can no longer be downloaded.
    RevokeExport,
    /// Download an approved, signed export: only its recipient succeeds (R23).
    DownloadExport,
    /// List data products: recipients those naming them, engineers their tenant's,
    /// reviewers those of other tenants.
    ListProducts,
    /// Fetch a product's record batches over Arrow Flight (DoGet): only its recipient.
    FetchProduct,
    /// Find which product a leaked file was copied from (R24 traceability).
    TraceExport,
    /// Read the audit trail.
    ReadAudit,
    /// Apply for a scenario with a purpose and a data list (R11).
    ApplyScenario,
    /// See scenarios: engineers their tenant's, stewards those listing their datasets,
    /// admins, reviewers and auditors all.
    ViewScenario,
    /// Approve or reject a scenario as one of its required approvers (R11, R12).
    DecideScenario,
    /// Set the extra approver a dataset's scenarios need (R12).
    SetDatasetApprover,
    /// Open, extend or end a tenant's data-lab access (R20).
    SetLabAccess,
    /// Run a lab job's query in production under a scenario.
    PromoteJob,
    /// Set a tenant's differential-privacy budget over a dataset.
    SetPrivacyBudget,
    /// Read one's notifications (auditors: all).
    ViewNotifications,
    /// Apply to import the tenant's own (social) data (R17).
    ApplyImport,
    /// Approve or reject an import application (R17).
    DecideImport,
    /// See import applications: engineers their tenant's, admins and auditors all.
    ViewImports,
    /// Upload the data of an approved import application (R17).
    UploadImport,
    /// File a data-quality ticket against a dataset (R18).
    FileQualityTicket,
    /// See data-quality tickets (engineers their tenant's, stewards their datasets').
    ViewQualityTickets,
    /// Resolve or decline a data-quality ticket as the dataset's steward (R18).
    ResolveQualityTicket,
    /// Flag a dataset or scenario as dangerous: its jobs stop at once (R19).
    RaiseRiskStop,
    /// See risk stops.
    ViewRiskStops,
    /// Lift a risk stop after review (R19).
    LiftRiskStop,
    /// Read the monitor's alerts (R30).
    ViewAlerts,
    /// Acknowledge alerts and run the monitor on demand (R30).
    ManageAlerts,
    /// Read operation reports and public disclosure summaries (R34, R36).
    ViewReports,
    /// Read signed checkpoints of the audit trail and their proofs (R27).
    ReadCheckpoint,
    /// Redact audit records past their retention (R33).
    PurgeAudit,
    /// Record a tenant's annual evaluation against its operation report (R34).
    EvaluateTenant,
    /// Suspend a tenant with a reason and a fix-by deadline, or resume it (R26).
    SuspendTenant,
    /// Terminate a tenant for good: keys destroyed, files deleted, exit report (R27, R28).
    TerminateTenant,
    /// Stop a tenant's work at once, release the stop, or run a drill of it (R32).
    EmergencyStop,
    /// See tenants' lifecycle status, exit reports and drills.
    ViewLifecycle,
    /// Create, renew, amend or revoke a tenant's authorization agreement (R25).
    ManageAuthorization,
    /// See authorizations: admins and auditors all, engineers their tenant's.
    ViewAuthorization,
    /// Record or update an authorization's emergency plan (R32).
    SetEmergencyPlan,
    /// See an authorization's emergency plan: admins and auditors, engineers their tenant's.
    ViewEmergencyPlan,
    /// Record a principal's real-name registration, training and NDA (R8, R9).
    QualifyPrincipal,
    /// See a principal's qualification (the ID number only masked) and certificates.
    ViewQualification,
    /// Revoke a principal's certificates, or disable the principal.
    RevokeCertificate,
}

impl Action {
    /// All actions.
    pub const ALL: [Action; 62] = [
        Action::WhoAmI,
        Action::CreateTenant,
        Action::ListTenants,
        Action::CreatePrincipal,
        Action::ListPrincipals,
        Action::IssueCertificate,
        Action::GrantDataset,
        Action::IngestDataset,
        Action::ListDatasets,
        Action::DescribeDataset,
        Action::SampleDataset,
        Action::SubmitJob,
        Action::ViewJob,
        Action::CancelJob,
        Action::ViewUsage,
        Action::RequestExport,
        Action::ViewExport,
        Action::ListReviewQueue,
        Action::ReviewExport,
        Action::VoteExport,
        Action::CommentExport,
        Action::RevokeExport,
        Action::DownloadExport,
        Action::ListProducts,
        Action::FetchProduct,
        Action::TraceExport,
        Action::ReadAudit,
        Action::ApplyScenario,
        Action::ViewScenario,
        Action::DecideScenario,
        Action::SetDatasetApprover,
        Action::SetLabAccess,
        Action::PromoteJob,
        Action::SetPrivacyBudget,
        Action::ViewNotifications,
        Action::ApplyImport,
        Action::DecideImport,
        Action::ViewImports,
        Action::UploadImport,
        Action::FileQualityTicket,
        Action::ViewQualityTickets,
        Action::ResolveQualityTicket,
        Action::RaiseRiskStop,
        Action::ViewRiskStops,
        Action::LiftRiskStop,
        Action::ViewAlerts,
        Action::ManageAlerts,
        Action::ViewReports,
        Action::ReadCheckpoint,
        Action::PurgeAudit,
        Action::EvaluateTenant,
        Action::SuspendTenant,
        Action::TerminateTenant,
        Action::EmergencyStop,
        Action::ViewLifecycle,
        Action::ManageAuthorization,
        Action::ViewAuthorization,
        Action::SetEmergencyPlan,
        Action::ViewEmergencyPlan,
        Action::QualifyPrincipal,
        Action::ViewQualification,
        Action::RevokeCertificate,
    ];

    /// snake_case name, as recorded in the audit trail.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::WhoAmI => "who_am_i",
            Action::CreateTenant => "create_tenant",
            Action::ListTenants => "list_tenants",
            Action::CreatePrincipal => "create_principal",
            Action::ListPrincipals => "list_principals",
            Action::IssueCertificate => "issue_certificate",
            Action::GrantDataset => "grant_dataset",
            Action::IngestDataset => "ingest_dataset",
            Action::ListDatasets => "list_datasets",
            Action::DescribeDataset => "describe_dataset",
            Action::SampleDataset => "sample_dataset",
            Action::SubmitJob => "submit_job",
            Action::ViewJob => "view_job",
            Action::CancelJob => "cancel_job",
            Action::ViewUsage => "view_usage",
            Action::RequestExport => "request_export",
            Action::ViewExport => "view_export",
            Action::ListReviewQueue => "list_review_queue",
            Action::ReviewExport => "review_export",
            Action::VoteExport => "vote_export",
            Action::CommentExport => "comment_export",
            Action::RevokeExport => "revoke_export",
            Action::DownloadExport => "download_export",
            Action::ListProducts => "list_products",
            Action::FetchProduct => "fetch_product",
            Action::TraceExport => "trace_export",
            Action::ReadAudit => "read_audit",
            Action::ApplyScenario => "apply_scenario",
            Action::ViewScenario => "view_scenario",
            Action::DecideScenario => "decide_scenario",
            Action::SetDatasetApprover => "set_dataset_approver",
            Action::SetLabAccess => "set_lab_access",
            Action::SetPrivacyBudget => "set_privacy_budget",
            Action::PromoteJob => "promote_job",
            Action::ViewNotifications => "view_notifications",
            Action::ApplyImport => "apply_import",
            Action::DecideImport => "decide_import",
            Action::ViewImports => "view_imports",
            Action::UploadImport => "upload_import",
            Action::FileQualityTicket => "file_quality_ticket",
            Action::ViewQualityTickets => "view_quality_tickets",
            Action::ResolveQualityTicket => "resolve_quality_ticket",
            Action::RaiseRiskStop => "raise_risk_stop",
            Action::ViewRiskStops => "view_risk_stops",
            Action::LiftRiskStop => "lift_risk_stop",
            Action::ViewAlerts => "view_alerts",
            Action::ManageAlerts => "manage_alerts",
            Action::ViewReports => "view_reports",
            Action::ReadCheckpoint => "read_checkpoint",
            Action::PurgeAudit => "purge_audit",
            Action::EvaluateTenant => "evaluate_tenant",
            Action::SuspendTenant => "suspend_tenant",
            Action::TerminateTenant => "terminate_tenant",
            Action::EmergencyStop => "emergency_stop",
            Action::ViewLifecycle => "view_lifecycle",
            Action::ManageAuthorization => "manage_authorization",
            Action::ViewAuthorization => "view_authorization",
            Action::SetEmergencyPlan => "set_emergency_plan",
            Action::ViewEmergencyPlan => "view_emergency_plan",
            Action::QualifyPrincipal => "qualify_principal",
            Action::ViewQualification => "view_qualification",
            Action::RevokeCertificate => "revoke_certificate",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `role` may perform `action`: the one permission matrix of the domain.
///
/// Every role is matched explicitly, so a new role cannot compile without a decision; any
/// action not listed for a role is refused.
pub fn is_allowed(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        // Catalog metadata, never samples or results; the audit trail (R35).
        Role::PlatformAdmin => matches!(
            action,
            WhoAmI
                | ViewNotifications
                | ReadAudit
                | CreateTenant
                | ListTenants
                | CreatePrincipal
                | ListPrincipals
                | IssueCertificate
                | GrantDataset
                | ListDatasets
                | DescribeDataset
                | ViewUsage
                | ViewScenario
                | DecideScenario
                | SetDatasetApprover
                | SetLabAccess
                | SetPrivacyBudget
                | RevokeExport
                | TraceExport
                | DecideImport
                | ViewImports
                | ViewQualityTickets
                | ResolveQualityTicket
                | ViewRiskStops
                | LiftRiskStop
                | ViewAlerts
                | ManageAlerts
                | ViewReports
                | ReadCheckpoint
                | PurgeAudit
                | EvaluateTenant
                | SuspendTenant
                | TerminateTenant
                | EmergencyStop
                | ViewLifecycle
                | ManageAuthorization
                | ViewAuthorization
                | SetEmergencyPlan
                | ViewEmergencyPlan
                | QualifyPrincipal
                | ViewQualification
                | RevokeCertificate
        ),
        Role::DataSteward => matches!(
            action,
            WhoAmI
                | ViewNotifications
                | IngestDataset
                | ListDatasets
                | DescribeDataset
                | SampleDataset
                | ViewScenario
                | DecideScenario
                | ViewQualityTickets
                | ResolveQualityTicket
                | RaiseRiskStop
                | ViewRiskStops
        ),
        // Masked samples only (R16); results leave only through review (R22). Download and
        // fetch are allowed so that the requester gets NotFound like anyone else who is not
        // the product's recipient (R23), not a hint that the product exists.
        Role::Engineer => matches!(
            action,
            WhoAmI
                | ViewNotifications
                | ListDatasets
                | DescribeDataset
                | SampleDataset
                | SubmitJob
                | ViewJob
                | CancelJob
                | ViewUsage
                | RequestExport
                | ViewExport
                | CommentExport
                | DownloadExport
                | FetchProduct
                | ListProducts
                | ApplyScenario
                | ViewScenario
                | PromoteJob
                | ApplyImport
                | ViewImports
                | UploadImport
                | FileQualityTicket
                | ViewQualityTickets
                | RaiseRiskStop
                | ViewRiskStops
                | ViewAuthorization
                | ViewEmergencyPlan
        ),
        Role::Reviewer => matches!(
            action,
            WhoAmI
                | ViewNotifications
                | ListReviewQueue
                | ReviewExport
                | VoteExport
                | CommentExport
                | RevokeExport
                | ViewExport
                | ViewScenario
                | ListProducts
        ),
        // Supervisors (R35): every record of data use — jobs with their queries, exports,
        // products — never a result row or a preview of values, and nothing that changes.
        Role::Auditor => matches!(
            action,
            WhoAmI
                | ViewNotifications
                | ReadAudit
                | ListTenants
                | ListPrincipals
                | ViewJob
                | ViewExport
                | ListProducts
                | ViewUsage
                | ViewScenario
                | TraceExport
                | ViewImports
                | ViewQualityTickets
                | ViewRiskStops
                | ViewAlerts
                | ViewReports
                | ReadCheckpoint
                | ViewLifecycle
                | ViewAuthorization
                | ViewEmergencyPlan
                | ViewQualification
        ),
        // Product actions only: no catalog, no jobs, no review, no audit.
        Role::Recipient => matches!(
            action,
            WhoAmI | ViewNotifications | ListProducts | DownloadExport | FetchProduct
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(role: Role, action: Action, expected: bool) {
        assert_eq!(is_allowed(role, action), expected, "{role} {action}");
    }

    #[test]
    fn matrix_spot_checks() {
        let cases = [
            (Role::Engineer, Action::VoteExport, false),
            (Role::Engineer, Action::CommentExport, true),
            (Role::Engineer, Action::RevokeExport, false),
            (Role::Engineer, Action::ReviewExport, false),
            (Role::Engineer, Action::SubmitJob, true),
            (Role::Engineer, Action::SampleDataset, true),
            (Role::Engineer, Action::DownloadExport, true),
            (Role::Engineer, Action::ReadAudit, false),
            (Role::Engineer, Action::GrantDataset, false),
            (Role::Reviewer, Action::SubmitJob, false),
            (Role::Reviewer, Action::SampleDataset, false),
            (Role::Reviewer, Action::DownloadExport, false),
            (Role::Reviewer, Action::VoteExport, true),
            (Role::Reviewer, Action::RevokeExport, true),
            (Role::PlatformAdmin, Action::SampleDataset, false),
            (Role::PlatformAdmin, Action::DescribeDataset, true),
            (Role::PlatformAdmin, Action::CreateTenant, true),
            (Role::PlatformAdmin, Action::VoteExport, false),
            (Role::PlatformAdmin, Action::RevokeExport, true),
            (Role::PlatformAdmin, Action::CommentExport, false),
            (Role::Auditor, Action::RevokeExport, false),
            (Role::PlatformAdmin, Action::ReadAudit, true),
            (Role::Auditor, Action::ViewJob, true),
            (Role::Auditor, Action::ReviewExport, false),
            (Role::Auditor, Action::DownloadExport, false),
            (Role::Auditor, Action::FetchProduct, false),
            (Role::DataSteward, Action::SubmitJob, false),
            (Role::DataSteward, Action::IngestDataset, true),
            (Role::DataSteward, Action::GrantDataset, false),
            (Role::Auditor, Action::ReadAudit, true),
            (Role::Auditor, Action::ListPrincipals, true),
            (Role::Auditor, Action::SampleDataset, false),
            (Role::Auditor, Action::DescribeDataset, false),
            (Role::Auditor, Action::TraceExport, true),
            (Role::PlatformAdmin, Action::TraceExport, true),
            (Role::Engineer, Action::TraceExport, false),
            (Role::Recipient, Action::DownloadExport, true),
            (Role::Recipient, Action::FetchProduct, true),
            (Role::Recipient, Action::ListProducts, true),
            (Role::Recipient, Action::ViewExport, false),
            (Role::Recipient, Action::ListDatasets, false),
            (Role::Recipient, Action::TraceExport, false),
            (Role::Reviewer, Action::FetchProduct, false),
        ];
        for (role, action, expected) in cases {
            check(role, action, expected);
        }
    }

    #[test]
    fn whole_matrix() {
        use Action::*;
        let allowed: [(Role, &[Action]); 6] = [
            (
                Role::PlatformAdmin,
                &[
                    WhoAmI,
                    ViewNotifications,
                    ReadAudit,
                    CreateTenant,
                    ListTenants,
                    CreatePrincipal,
                    ListPrincipals,
                    IssueCertificate,
                    GrantDataset,
                    ListDatasets,
                    DescribeDataset,
                    ViewUsage,
                    ViewScenario,
                    DecideScenario,
                    SetDatasetApprover,
                    SetLabAccess,
                    SetPrivacyBudget,
                    RevokeExport,
                    TraceExport,
                    DecideImport,
                    ViewImports,
                    ViewQualityTickets,
                    ResolveQualityTicket,
                    ViewRiskStops,
                    LiftRiskStop,
                    ViewAlerts,
                    ManageAlerts,
                    ViewReports,
                    ReadCheckpoint,
                    PurgeAudit,
                    EvaluateTenant,
                    SuspendTenant,
                    TerminateTenant,
                    EmergencyStop,
                    ViewLifecycle,
                    ManageAuthorization,
                    ViewAuthorization,
                    SetEmergencyPlan,
                    ViewEmergencyPlan,
                    QualifyPrincipal,
                    ViewQualification,
                    RevokeCertificate,
                ],
            ),
            (
                Role::DataSteward,
                &[
                    WhoAmI,
                    ViewNotifications,
                    IngestDataset,
                    ListDatasets,
                    DescribeDataset,
                    SampleDataset,
                    ViewScenario,
                    DecideScenario,
                    ViewQualityTickets,
                    ResolveQualityTicket,
                    RaiseRiskStop,
                    ViewRiskStops,
                ],
            ),
            (
                Role::Engineer,
                &[
                    WhoAmI,
                    ViewNotifications,
                    ListDatasets,
                    DescribeDataset,
                    SampleDataset,
                    SubmitJob,
                    ViewJob,
                    CancelJob,
                    ViewUsage,
                    RequestExport,
                    ViewExport,
                    CommentExport,
                    DownloadExport,
                    FetchProduct,
                    ListProducts,
                    ApplyScenario,
                    ViewScenario,
                    PromoteJob,
                    ApplyImport,
                    ViewImports,
                    UploadImport,
                    FileQualityTicket,
                    ViewQualityTickets,
                    RaiseRiskStop,
                    ViewRiskStops,
                    ViewAuthorization,
                    ViewEmergencyPlan,
                ],
            ),
            (
                Role::Reviewer,
                &[
                    WhoAmI,
                    ViewNotifications,
                    ListReviewQueue,
                    ReviewExport,
                    VoteExport,
                    CommentExport,
                    RevokeExport,
                    ViewExport,
                    ViewScenario,
                    ListProducts,
                ],
            ),
            (
                Role::Auditor,
                &[
                    WhoAmI,
                    ViewNotifications,
                    ReadAudit,
                    ListTenants,
                    ListPrincipals,
                    ViewJob,
                    ViewExport,
                    ListProducts,
                    ViewUsage,
                    ViewScenario,
                    TraceExport,
                    ViewImports,
                    ViewQualityTickets,
                    ViewRiskStops,
                    ViewAlerts,
                    ViewReports,
                    ReadCheckpoint,
                    ViewLifecycle,
                    ViewAuthorization,
                    ViewEmergencyPlan,
                    ViewQualification,
                ],
            ),
            (
                Role::Recipient,
                &[
                    WhoAmI,
                    ViewNotifications,
                    ListProducts,
                    DownloadExport,
                    FetchProduct,
                ],
            ),
        ];
        for (role, actions) in allowed {
            for action in Action::ALL {
                check(role, action, actions.contains(&action));
            }
        }
    }

    #[test]
    fn only_reviewers_vote_and_only_engineers_run_jobs() {
        for role in Role::ALL {
            check(role, Action::WhoAmI, true);
            check(role, Action::ViewNotifications, true);
            check(role, Action::VoteExport, role == Role::Reviewer);
            check(
                role,
                Action::RevokeExport,
                matches!(role, Role::Reviewer | Role::PlatformAdmin),
            );
            check(
                role,
                Action::CommentExport,
                matches!(role, Role::Reviewer | Role::Engineer),
            );
            check(role, Action::SubmitJob, role == Role::Engineer);
            check(
                role,
                Action::TraceExport,
                matches!(role, Role::PlatformAdmin | Role::Auditor),
            );
            // Products reach only their recipient; engineers are allowed to ask so that
            // they get NotFound, never a hint.
            check(
                role,
                Action::DownloadExport,
                matches!(role, Role::Recipient | Role::Engineer),
            );
            check(
                role,
                Action::ReadAudit,
                matches!(role, Role::Auditor | Role::PlatformAdmin),
            );
            // Full results only to reviewers, products' rows only to their recipients.
            check(role, Action::ReviewExport, role == Role::Reviewer);
            // Oversight (R30, R34, R35): auditors read, only admins change anything.
            for read in [
                Action::ViewAlerts,
                Action::ViewReports,
                Action::ReadCheckpoint,
            ] {
                check(
                    role,
                    read,
                    matches!(role, Role::PlatformAdmin | Role::Auditor),
                );
            }
            check(role, Action::ManageAlerts, role == Role::PlatformAdmin);
            check(role, Action::PurgeAudit, role == Role::PlatformAdmin);
            check(role, Action::EvaluateTenant, role == Role::PlatformAdmin);
            for action in [
                Action::SuspendTenant,
                Action::TerminateTenant,
                Action::EmergencyStop,
            ] {
                check(role, action, role == Role::PlatformAdmin);
            }
            check(
                role,
                Action::ViewLifecycle,
                matches!(role, Role::PlatformAdmin | Role::Auditor),
            );
            check(role, Action::ApplyScenario, role == Role::Engineer);
            for governance in [
                Action::ManageAuthorization,
                Action::SetEmergencyPlan,
                Action::QualifyPrincipal,
                Action::RevokeCertificate,
            ] {
                check(role, governance, role == Role::PlatformAdmin);
            }
            check(
                role,
                Action::DecideScenario,
                matches!(role, Role::DataSteward | Role::PlatformAdmin),
            );
        }
    }

    #[test]
    fn text_forms() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string().to_uppercase().parse::<Role>(), Ok(role));
        }
        assert_eq!("platform_admin".parse::<Role>(), Ok(Role::PlatformAdmin));
        assert_eq!(
            "root".parse::<Role>(),
            Err(PolicyError::UnknownRole("root".to_owned()))
        );
        let names: std::collections::HashSet<&str> =
            Action::ALL.iter().map(Action::as_str).collect();
        assert_eq!(names.len(), Action::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
