//! Roles (R8, R10) and the one matrix of what each may do.

use std::fmt;
use std::str::FromStr;

use crate::{PolicyError, truncate};

/// The roles of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Public-data authority: tenants, principals, grants.
    PlatformAdmin,
    /// Source agency: publishes and classifies datasets.
    DataSteward,
    /// Operating unit staff: jobs over granted data, exports.
    Engineer,
    /// Expert group: reviews exports.
    Reviewer,
    /// Supervisors: read-only audit.
    Auditor,
}

impl Role {
    /// Text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::PlatformAdmin => "admin",
            Role::DataSteward => "steward",
            Role::Engineer => "engineer",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
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

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(Role::PlatformAdmin),
            "steward" => Ok(Role::DataSteward),
            "engineer" => Ok(Role::Engineer),
            "reviewer" => Ok(Role::Reviewer),
            "auditor" => Ok(Role::Auditor),
            _ => Err(PolicyError::UnknownRole(truncate(s))),
        }
    }
}

/// Everything a call can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names say it
pub enum Action {
    WhoAmI,
    CreateTenant,
    ListTenants,
    CreatePrincipal,
    ListPrincipals,
    IssueCertificate,
    GrantDataset,
    IngestDataset,
    ListDatasets,
    DescribeDataset,
    SampleDataset,
    SubmitJob,
    ViewJob,
    RequestExport,
    ViewExport,
    ListReviewQueue,
    ReviewExport,
    DecideExport,
    DownloadExport,
    ReadAudit,
}

impl Action {
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
            Action::RequestExport => "request_export",
            Action::ViewExport => "view_export",
            Action::ListReviewQueue => "list_review_queue",
            Action::ReviewExport => "review_export",
            Action::DecideExport => "decide_export",
            Action::DownloadExport => "download_export",
            Action::ReadAudit => "read_audit",
        }
    }
}

/// Whether `role` may perform `action`. Every role is matched explicitly.
pub fn is_allowed(role: Role, action: Action) -> bool {
    use Action::*;
    if action == WhoAmI {
        return true;
    }
    match role {
        Role::PlatformAdmin => matches!(
            action,
            CreateTenant
                | ListTenants
                | CreatePrincipal
                | ListPrincipals
                | IssueCertificate
                | GrantDataset
                | ListDatasets
                | DescribeDataset
        ),
        Role::DataSteward => matches!(
            action,
            IngestDataset | ListDatasets | DescribeDataset | SampleDataset
        ),
        Role::Engineer => matches!(
            action,
            ListDatasets
                | DescribeDataset
                | SampleDataset
                | SubmitJob
                | ViewJob
                | RequestExport
                | ViewExport
                | DownloadExport
        ),
        Role::Reviewer => matches!(
            action,
            ListReviewQueue | ReviewExport | DecideExport | ViewExport
        ),
        Role::Auditor => matches!(action, ReadAudit | ListTenants | ListPrincipals),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_spot_checks() {
        let cases = [
            (Role::Engineer, Action::DecideExport, false),
            (Role::Engineer, Action::SubmitJob, true),
            (Role::Reviewer, Action::SubmitJob, false),
            (Role::Reviewer, Action::DecideExport, true),
            (Role::PlatformAdmin, Action::SampleDataset, false),
            (Role::PlatformAdmin, Action::CreateTenant, true),
            (Role::DataSteward, Action::SubmitJob, false),
            (Role::Auditor, Action::ReadAudit, true),
            (Role::Auditor, Action::SampleDataset, false),
            (Role::Engineer, Action::ReadAudit, false),
        ];
        for (role, action, expected) in cases {
            assert_eq!(
                is_allowed(role, action),
                expected,
                "{role} {}",
                action.as_str()
            );
        }
        for role in ["admin", "steward", "engineer", "reviewer", "auditor"] {
            let role: Role = role.parse().unwrap();
            assert!(is_allowed(role, Action::WhoAmI));
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
    }
}
