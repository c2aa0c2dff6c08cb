//! Pure policy decisions of Shuyu: column classifications, masking rules and the masking of
//! single values, roles and what they may do, and the versioned policy file.
//!
//! No IO, no DataFusion, no crypto: the engine and server apply these decisions.

pub mod calendar;
mod classification;
mod governance;
pub mod ids;
mod masking;
mod policy;
mod products;
mod roles;

pub use classification::Classification;
pub use governance::{
    DEFAULT_AUTHORIZATION_YEARS, MAX_AUTHORIZATION_YEARS, QualificationFacts, QualificationGap,
    RENEWAL_WINDOW_MONTHS, TermError, add_months, allowed_while_unqualified, check_max_years,
    check_term, format_date, normalize_id_number, qualification_gap, registry_mask,
    renewal_opens_at, requires_qualification,
};
pub use ids::id_number_check_char;
pub use masking::{
    DateGranularity, MaskingRule, generalize_date, generalize_float, generalize_int,
    mask_id_number, mask_mobile, mask_name, suppressed,
};
pub use policy::{
    DisclosurePolicy, ExportPolicy, JobLimits, MaskingDefaults, Policy, ReviewPolicy, SamplePolicy,
};
pub use products::{
    DEFAULT_PRODUCT_DAYS, MAX_PRODUCT_DAYS, PriceBasis, PriceRates, ScenarioCategory, product_days,
};
pub use roles::{Action, Role, is_allowed};

/// Errors of policy parsing and validation.
///
/// Messages name rules, classifications, roles and policy keys; they never carry data values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An unknown classification name.
    #[error(
        "unknown classification '{0}': expected direct_identifier, quasi_identifier, sensitive or ordinary"
    )]
    UnknownClassification(String),
    /// An unknown masking rule.
    #[error(
        "unknown masking rule '{0}': expected keep, pseudonym, partial_id, partial_mobile, partial_name, generalize_date:year, generalize_date:month, generalize_number:<width> or suppress"
    )]
    UnknownMaskingRule(String),
    /// A `generalize_number` rule whose bucket width is below 1.
    #[error("masking rule generalize_number needs a bucket width of at least 1, not {width}")]
    InvalidWidth {
        /// The width given.
        width: i64,
    },
    /// An unknown role.
    #[error(
        "unknown role '{0}': expected admin, steward, engineer, reviewer, auditor or recipient"
    )]
    UnknownRole(String),
    /// An unknown scenario category.
    #[error(
        "unknown scenario category '{0}': expected public_governance, public_welfare or commercial"
    )]
    UnknownCategory(String),
    /// More days than a product may have, or than its scenario has left.
    #[error(
        "a product may be used for at most {max} days (at most 365, and no longer than its \
         scenario's remaining validity), not {requested}"
    )]
    ProductTooLong {
        /// Days asked for.
        requested: u32,
        /// Days allowed.
        max: u32,
    },
    /// The scenario has less than a day left.
    #[error("the scenario's validity ends in less than a day: no product can be issued under it")]
    ScenarioEnding,
    /// A rule that the column's classification does not allow (`keep` on a non-ordinary column).
    #[error(
        "a {classification} column requires masking: rule '{rule}' is only allowed for ordinary columns"
    )]
    RuleNotAllowed {
        /// The column's classification.
        classification: Classification,
        /// The refused rule, in its text form.
        rule: String,
    },
    /// The policy file is not valid TOML or does not have the expected keys and types.
    #[error("invalid policy file: {0}")]
    Syntax(String),
    /// A policy key holds a value that is not allowed.
    #[error("invalid policy key '{key}': {reason}")]
    InvalidValue {
        /// The dotted key, e.g. `disclosure.min_entities`.
        key: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
}

/// Shortens user-supplied names quoted in errors.
fn truncate(s: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = s.trim().chars().take(MAX).collect();
    if s.trim().chars().count() > MAX {
        out.push('…');
    }
    out
}
