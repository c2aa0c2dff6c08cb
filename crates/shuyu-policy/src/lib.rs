//! Pure policy decisions of Shuyu: column classifications, masking rules and the masking of
//! single values, roles and what they may do, and the versioned policy file.
//!
//! No IO, no DataFusion, no crypto: the engine and server apply these decisions.

mod classification;
mod masking;
mod policy;
mod roles;

pub use classification::Classification;
pub use masking::{
    DateGranularity, MaskingRule, generalize_date, generalize_float, generalize_int,
    mask_id_number, mask_mobile, mask_name, suppressed,
};
pub use policy::{ExportPolicy, JobLimits, MaskingDefaults, Policy, SamplePolicy};
pub use roles::{Action, Role, is_allowed};

/// Errors of policy parsing and validation. Messages name keys and rules, never data values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An unknown classification name.
    #[error(
        "unknown classification '{0}': expected direct_identifier, quasi_identifier, sensitive or ordinary"
    )]
    UnknownClassification(String),
    /// An unknown masking rule.
    #[error(
        "unknown masking rule '{0}': expected keep, pseudonym, partial_id, partial_mobile, partial_name, generalize_date:year|month, generalize_number:<width> or suppress"
    )]
    UnknownMaskingRule(String),
    /// An unknown role.
    #[error("unknown role '{0}': expected admin, steward, engineer, reviewer or auditor")]
    UnknownRole(String),
    /// A rule that the classification does not allow.
    #[error("a {classification} column must be masked; '{rule}' is not allowed")]
    RuleNotAllowed {
        /// The classification.
        classification: &'static str,
        /// The rule text.
        rule: String,
    },
    /// The policy file is invalid.
    #[error("policy: {0}")]
    Invalid(String),
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}
