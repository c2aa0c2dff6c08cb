//! The versioned policy file (`policies/default.toml`): masking defaults, export thresholds,
//! sample sizes and job limits.
//!
//! Parsing goes through private serde structs that refuse unknown keys; every value is then
//! validated and an error names the offending key. [`Policy::to_toml_string`] writes a
//! canonical text, independent of the input's layout and comments, to hash into manifests.

use std::fmt::Write as _;

use serde::Deserialize;

use crate::{Classification, MaskingRule, PolicyError};

/// Default masking rule per classification, for columns whose steward gave no rule and for
/// derived result columns.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskingDefaults {
    /// For direct identifiers.
    pub direct_identifier: MaskingRule,
    /// For quasi-identifiers.
    pub quasi_identifier: MaskingRule,
    /// For sensitive columns.
    pub sensitive: MaskingRule,
    /// For ordinary columns.
    pub ordinary: MaskingRule,
}

impl MaskingDefaults {
    /// The default rule for a classification.
    pub fn rule_for(&self, classification: Classification) -> &MaskingRule {
        match classification {
            Classification::DirectIdentifier => &self.direct_identifier,
            Classification::QuasiIdentifier => &self.quasi_identifier,
            Classification::Sensitive => &self.sensitive,
            Classification::Ordinary => &self.ordinary,
        }
    }
}

/// The export review gate (R1, R22).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportPolicy {
    /// Allowed export formats, from `parquet` and `csv`.
    pub formats: Vec<String>,
}

/// Thresholds of the automated disclosure checks (R1).
#[derive(Debug, Clone, PartialEq)]
pub struct DisclosurePolicy {
    /// Distinct privacy units behind every aggregate cell (default 10).
    pub min_entities: u64,
    /// n of the n-k dominance rule (default 2).
    pub dominance_n: u64,
    /// k of the n-k dominance rule, in (0, 1) (default 0.90).
    pub dominance_k: f64,
    /// p of the p% rule, in (0, 1) (default 0.10).
    pub p_percent: f64,
    /// Flag zero counts and empty sums for review.
    pub flag_zero_cells: bool,
    /// Flag min, max and median over non-ordinary columns for review.
    pub flag_extremes: bool,
    /// Residual degrees of freedom of model outputs (default 10).
    pub min_residual_dof: u64,
    /// Base count cells are rounded to on export (0 or 1: none).
    pub round_counts_to: u64,
    /// k-anonymity over quasi-identifiers of row-level results (default 5).
    pub k_anonymity: u64,
    /// Refuse (rather than flag for review) cells whose population differs from another
    /// released cell's by fewer than `min_entities` privacy units.
    pub block_differencing: bool,
}

/// The human review of an export (R22).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewPolicy {
    /// Approvals needed, from reviewers outside the requesting tenant (default 2).
    pub quorum: u64,
}

/// Sizes of masked samples and previews (R16).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePolicy {
    /// Rows of a masked dataset sample (default 20, at most 200).
    pub rows: usize,
    /// Rows of a job's masked preview (default 20, at most 200).
    pub preview_rows: usize,
}

/// Limits of one job in the SQL sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct JobLimits {
    /// SQL text cap in bytes, checked before parsing (default 65536).
    pub max_sql_bytes: usize,
    /// Memory pool of a job in bytes (default 512 MiB).
    pub memory_limit_bytes: u64,
    /// Wall-clock limit in seconds (default 300).
    pub timeout_secs: u64,
    /// Result row cap (default 10 000 000).
    pub max_result_rows: u64,
}

/// The policy in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Version, recorded in export manifests.
    pub version: String,
    /// Masking defaults.
    pub masking: MaskingDefaults,
    /// Export gate.
    pub export: ExportPolicy,
    /// Disclosure checks.
    pub disclosure: DisclosurePolicy,
    /// Review quorum.
    pub review: ReviewPolicy,
    /// Samples and previews.
    pub sample: SamplePolicy,
    /// Job limits.
    pub limits: JobLimits,
}

/// The formats an export may be written in.
const EXPORT_FORMATS: [&str; 2] = ["parquet", "csv"];
/// Upper bound of `sample.rows` and `sample.preview_rows`.
const MAX_SAMPLE_ROWS: i64 = 200;
/// Bounds of `limits.max_sql_bytes`.
const MIN_SQL_BYTES: i64 = 16;
const MAX_SQL_BYTES: i64 = 1 << 20;
/// Lower bound of `limits.memory_limit_bytes`: 1 MiB.
const MIN_MEMORY_BYTES: i64 = 1 << 20;
/// Upper bound of `limits.timeout_secs`: one week.
const MAX_TIMEOUT_SECS: i64 = 7 * 24 * 3600;

// Numbers are read as `i64` (TOML's integer type) and range-checked here, so that a negative
// or zero value gets an error naming its key rather than a serde type error.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: String,
    masking: RawMasking,
    export: RawExport,
    disclosure: RawDisclosure,
    review: RawReview,
    sample: RawSample,
    limits: RawLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMasking {
    direct_identifier: String,
    quasi_identifier: String,
    sensitive: String,
    ordinary: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExport {
    formats: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisclosure {
    min_entities: i64,
    dominance_n: i64,
    dominance_k: f64,
    p_percent: f64,
    flag_zero_cells: bool,
    flag_extremes: bool,
    min_residual_dof: i64,
    round_counts_to: i64,
    k_anonymity: i64,
    block_differencing: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReview {
    quorum: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    rows: i64,
    preview_rows: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_sql_bytes: i64,
    memory_limit_bytes: i64,
    timeout_secs: i64,
    max_result_rows: i64,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> PolicyError {
    PolicyError::InvalidValue {
        key,
        reason: reason.into(),
    }
}

/// A TOML error as one line: its message and the line it points at.
fn syntax_error(text: &str, error: &toml::de::Error) -> PolicyError {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let end = span.start.min(text.len());
            let line = 1 + text.as_bytes()[..end]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            PolicyError::Syntax(format!("line {line}: {message}"))
        }
        None => PolicyError::Syntax(message.to_owned()),
    }
}

/// Parses a default rule and checks it is legal for its classification.
fn default_rule(
    key: &'static str,
    text: &str,
    classification: Classification,
) -> Result<MaskingRule, PolicyError> {
    let rule: MaskingRule = text.parse().map_err(|e| invalid(key, format!("{e}")))?;
    rule.check_allowed_for(classification)
        .map_err(|e| invalid(key, format!("{e}")))?;
    Ok(rule)
}

/// Checks `min <= value <= max`.
fn in_range(key: &'static str, value: i64, min: i64, max: i64) -> Result<u64, PolicyError> {
    if value < min || value > max {
        let expected = if max == i64::MAX {
            format!("must be at least {min}")
        } else {
            format!("must be between {min} and {max}")
        };
        return Err(invalid(key, format!("{expected}, not {value}")));
    }
    u64::try_from(value).map_err(|_| invalid(key, "must not be negative"))
}

/// Checks `0 < value < 1`.
fn fraction(key: &'static str, value: f64) -> Result<f64, PolicyError> {
    if value.is_finite() && value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(invalid(
            key,
            format!("must be between 0 and 1 (exclusive), not {value}"),
        ))
    }
}

fn to_usize(key: &'static str, value: u64) -> Result<usize, PolicyError> {
    usize::try_from(value).map_err(|_| invalid(key, "is too large for this platform"))
}

/// A TOML basic string, quoted and escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Policy {
    /// Parses and validates a policy file.
    ///
    /// # Errors
    /// [`PolicyError::Syntax`] for invalid TOML, unknown or missing keys and wrong types (with
    /// the line); [`PolicyError::InvalidValue`], naming the key, for an empty version, an
    /// unknown masking rule or one not allowed for its classification (`keep` outside
    /// `ordinary`), a `generalize_number` width below 1, disclosure thresholds or the review quorum out of range,
    /// unknown or duplicate export formats, and sample sizes or job limits out of range.
    pub fn from_toml_str(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;

        let version = raw.version.trim();
        if version.is_empty() {
            return Err(invalid("version", "must not be empty"));
        }
        if version.chars().any(char::is_control) {
            return Err(invalid("version", "must not contain control characters"));
        }

        let masking = MaskingDefaults {
            direct_identifier: default_rule(
                "masking.direct_identifier",
                &raw.masking.direct_identifier,
                Classification::DirectIdentifier,
            )?,
            quasi_identifier: default_rule(
                "masking.quasi_identifier",
                &raw.masking.quasi_identifier,
                Classification::QuasiIdentifier,
            )?,
            sensitive: default_rule(
                "masking.sensitive",
                &raw.masking.sensitive,
                Classification::Sensitive,
            )?,
            ordinary: default_rule(
                "masking.ordinary",
                &raw.masking.ordinary,
                Classification::Ordinary,
            )?,
        };

        let d = &raw.disclosure;
        let disclosure = DisclosurePolicy {
            min_entities: in_range("disclosure.min_entities", d.min_entities, 2, i64::MAX)?,
            dominance_n: in_range("disclosure.dominance_n", d.dominance_n, 1, 10)?,
            dominance_k: fraction("disclosure.dominance_k", d.dominance_k)?,
            p_percent: fraction("disclosure.p_percent", d.p_percent)?,
            flag_zero_cells: d.flag_zero_cells,
            flag_extremes: d.flag_extremes,
            min_residual_dof: in_range(
                "disclosure.min_residual_dof",
                d.min_residual_dof,
                1,
                i64::MAX,
            )?,
            round_counts_to: in_range("disclosure.round_counts_to", d.round_counts_to, 0, 1000)?,
            k_anonymity: in_range("disclosure.k_anonymity", d.k_anonymity, 2, i64::MAX)?,
            block_differencing: d.block_differencing,
        };
        let review = ReviewPolicy {
            quorum: in_range("review.quorum", raw.review.quorum, 1, 5)?,
        };
        let mut formats: Vec<String> = Vec::with_capacity(raw.export.formats.len());
        for format in &raw.export.formats {
            if !EXPORT_FORMATS.contains(&format.as_str()) {
                return Err(invalid(
                    "export.formats",
                    format!(
                        "unknown format '{}': expected parquet or csv",
                        crate::truncate(format)
                    ),
                ));
            }
            if formats.contains(format) {
                return Err(invalid(
                    "export.formats",
                    format!("format '{format}' is listed twice"),
                ));
            }
            formats.push(format.clone());
        }
        if formats.is_empty() {
            return Err(invalid("export.formats", "must list at least one format"));
        }

        let rows = in_range("sample.rows", raw.sample.rows, 1, MAX_SAMPLE_ROWS)?;
        let preview_rows = in_range(
            "sample.preview_rows",
            raw.sample.preview_rows,
            1,
            MAX_SAMPLE_ROWS,
        )?;

        let max_sql_bytes = in_range(
            "limits.max_sql_bytes",
            raw.limits.max_sql_bytes,
            MIN_SQL_BYTES,
            MAX_SQL_BYTES,
        )?;
        let memory_limit_bytes = in_range(
            "limits.memory_limit_bytes",
            raw.limits.memory_limit_bytes,
            MIN_MEMORY_BYTES,
            i64::MAX,
        )?;
        let timeout_secs = in_range(
            "limits.timeout_secs",
            raw.limits.timeout_secs,
            1,
            MAX_TIMEOUT_SECS,
        )?;
        let max_result_rows = in_range(
            "limits.max_result_rows",
            raw.limits.max_result_rows,
            1,
            i64::MAX,
        )?;

        Ok(Policy {
            version: version.to_owned(),
            masking,
            export: ExportPolicy { formats },
            disclosure,
            review,
            sample: SamplePolicy {
                rows: to_usize("sample.rows", rows)?,
                preview_rows: to_usize("sample.preview_rows", preview_rows)?,
            },
            limits: JobLimits {
                max_sql_bytes: to_usize("limits.max_sql_bytes", max_sql_bytes)?,
                memory_limit_bytes,
                timeout_secs,
                max_result_rows,
            },
        })
    }

    /// The built-in policy, `policies/default.toml`, compiled in.
    pub fn builtin() -> Policy {
        Policy::from_toml_str(include_str!("../../../policies/default.toml"))
            .expect("the built-in policy is valid (unit-tested)")
    }

    /// The canonical text of the policy: fixed key order and layout, no comments, every key
    /// written. Two policies are equal exactly when their canonical texts are, so its hash
    /// identifies the policy in export manifests. A policy that [`Policy::from_toml_str`]
    /// accepted parses back from this text to an equal value.
    pub fn to_toml_string(&self) -> String {
        let formats: Vec<String> = self.export.formats.iter().map(|f| quoted(f)).collect();
        let mut out = String::new();
        let _ = write!(
            out,
            "version = {version}\n\
             \n\
             [masking]\n\
             direct_identifier = {direct}\n\
             quasi_identifier = {quasi}\n\
             sensitive = {sensitive}\n\
             ordinary = {ordinary}\n\
             \n\
             [export]\n\
             formats = [{formats}]\n\
             \n\
             [disclosure]\n\
             min_entities = {min_entities}\n\
             dominance_n = {dominance_n}\n\
             dominance_k = {dominance_k:?}\n\
             p_percent = {p_percent:?}\n\
             flag_zero_cells = {flag_zero_cells}\n\
             flag_extremes = {flag_extremes}\n\
             min_residual_dof = {min_residual_dof}\n\
             round_counts_to = {round_counts_to}\n\
             k_anonymity = {k_anonymity}\n\
             block_differencing = {block_differencing}\n\
             \n\
             [review]\n\
             quorum = {quorum}\n\
             \n\
             [sample]\n\
             rows = {rows}\n\
             preview_rows = {preview_rows}\n\
             \n\
             [limits]\n\
             max_sql_bytes = {max_sql_bytes}\n\
             memory_limit_bytes = {memory_limit_bytes}\n\
             timeout_secs = {timeout_secs}\n\
             max_result_rows = {max_result_rows}\n",
            version = quoted(&self.version),
            direct = quoted(&self.masking.direct_identifier.to_string()),
            quasi = quoted(&self.masking.quasi_identifier.to_string()),
            sensitive = quoted(&self.masking.sensitive.to_string()),
            ordinary = quoted(&self.masking.ordinary.to_string()),
            min_entities = self.disclosure.min_entities,
            dominance_n = self.disclosure.dominance_n,
            dominance_k = self.disclosure.dominance_k,
            p_percent = self.disclosure.p_percent,
            flag_zero_cells = self.disclosure.flag_zero_cells,
            flag_extremes = self.disclosure.flag_extremes,
            min_residual_dof = self.disclosure.min_residual_dof,
            round_counts_to = self.disclosure.round_counts_to,
            k_anonymity = self.disclosure.k_anonymity,
            block_differencing = self.disclosure.block_differencing,
            quorum = self.review.quorum,
            formats = formats.join(", "),
            rows = self.sample.rows,
            preview_rows = self.sample.preview_rows,
            max_sql_bytes = self.limits.max_sql_bytes,
            memory_limit_bytes = self.limits.memory_limit_bytes,
            timeout_secs = self.limits.timeout_secs,
            max_result_rows = self.limits.max_result_rows,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DateGranularity;

    const BUILTIN: &str = include_str!("../../../policies/default.toml");

    const CANONICAL_BUILTIN: &str = r#"version = "2026.11-2"

[masking]
direct_identifier = "pseudonym"
quasi_identifier = "suppress"
sensitive = "suppress"
ordinary = "keep"

[export]
formats = ["parquet", "csv"]

[disclosure]
min_entities = 10
dominance_n = 2
dominance_k = 0.9
p_percent = 0.1
flag_zero_cells = true
flag_extremes = true
min_residual_dof = 10
round_counts_to = 0
k_anonymity = 5
block_differencing = true

[review]
quorum = 2

[sample]
rows = 20
preview_rows = 20

[limits]
max_sql_bytes = 65536
memory_limit_bytes = 536870912
timeout_secs = 300
max_result_rows = 10000000
"#;

    #[test]
    fn builtin_parses_with_k_10() {
        let policy = Policy::builtin();
        assert_eq!(policy.version, "2026.11-2");
        assert_eq!(policy.disclosure.min_entities, 10);
        assert_eq!(policy.disclosure.dominance_n, 2);
        assert_eq!(policy.disclosure.dominance_k, 0.90);
        assert_eq!(policy.disclosure.p_percent, 0.10);
        assert_eq!(policy.disclosure.k_anonymity, 5);
        assert_eq!(policy.disclosure.min_residual_dof, 10);
        assert_eq!(policy.review.quorum, 2);
        assert_eq!(policy.export.formats, ["parquet", "csv"]);
        assert_eq!(policy.sample.rows, 20);
        assert_eq!(policy.sample.preview_rows, 20);
        assert_eq!(policy.limits.max_sql_bytes, 65_536);
        assert_eq!(policy.limits.memory_limit_bytes, 512 * 1024 * 1024);
        assert_eq!(policy.limits.timeout_secs, 300);
        assert_eq!(policy.limits.max_result_rows, 10_000_000);
        let defaults = [
            (Classification::DirectIdentifier, MaskingRule::Pseudonym),
            (Classification::QuasiIdentifier, MaskingRule::Suppress),
            (Classification::Sensitive, MaskingRule::Suppress),
            (Classification::Ordinary, MaskingRule::Keep),
        ];
        for (classification, rule) in defaults {
            assert_eq!(policy.masking.rule_for(classification), &rule);
        }
    }

    #[test]
    fn canonical_text_is_fixed_and_round_trips() {
        let policy = Policy::builtin();
        assert_eq!(policy.to_toml_string(), CANONICAL_BUILTIN);
        assert_eq!(Policy::from_toml_str(CANONICAL_BUILTIN), Ok(policy));
    }

    #[test]
    fn canonical_text_round_trips_unusual_values() {
        let mut policy = Policy::builtin();
        policy.version = "v\"2\" \\ 数域 ü".to_owned();
        policy.masking.quasi_identifier = MaskingRule::GeneralizeDate(DateGranularity::Month);
        policy.masking.sensitive = MaskingRule::GeneralizeNumber { width: 1_000 };
        policy.masking.ordinary = MaskingRule::PartialName;
        policy.export.formats = vec!["csv".to_owned()];
        policy.disclosure.min_entities = 2;
        policy.disclosure.dominance_k = 0.123_456_789;
        policy.disclosure.round_counts_to = 5;
        policy.review.quorum = 1;
        policy.limits.max_result_rows = i64::MAX as u64;
        let text = policy.to_toml_string();
        assert_eq!(Policy::from_toml_str(&text), Ok(policy.clone()));
        // Layout and comments do not change the canonical text.
        let reparsed = Policy::from_toml_str(&format!("# comment\n{text}\n\n")).unwrap();
        assert_eq!(reparsed.to_toml_string(), text);
    }

    #[test]
    fn version_is_trimmed() {
        let text = BUILTIN.replacen("\"2026.11-2\"", "\"  2026.11-2 \"", 1);
        assert_eq!(Policy::from_toml_str(&text), Ok(Policy::builtin()));
    }

    /// Replaces `from` by `to` in the built-in policy and expects an error whose message
    /// contains `expected`.
    fn check(from: &str, to: &str, expected: &str) {
        let text = BUILTIN.replacen(from, to, 1);
        assert_ne!(
            text, BUILTIN,
            "the replacement of {from:?} must change the policy"
        );
        let err = Policy::from_toml_str(&text)
            .expect_err(&format!("{from:?} -> {to:?} must be refused"))
            .to_string();
        assert!(err.contains(expected), "{from:?} -> {to:?}: {err}");
        assert!(!err.contains('\n'), "one-line message: {err}");
    }

    #[test]
    fn invalid_policies_are_refused_naming_the_key() {
        let cases = [
            // Masking defaults.
            (
                "sensitive = \"suppress\"",
                "sensitive = \"keep\"",
                "'masking.sensitive': a sensitive column requires masking",
            ),
            (
                "direct_identifier = \"pseudonym\"",
                "direct_identifier = \"keep\"",
                "masking.direct_identifier",
            ),
            (
                "quasi_identifier = \"suppress\"",
                "quasi_identifier = \"KEEP\"",
                "masking.quasi_identifier",
            ),
            (
                "direct_identifier = \"pseudonym\"",
                "direct_identifier = \"hash\"",
                "'masking.direct_identifier': unknown masking rule 'hash'",
            ),
            (
                "quasi_identifier = \"suppress\"",
                "quasi_identifier = \"generalize_number:0\"",
                "'masking.quasi_identifier': masking rule generalize_number needs a bucket width",
            ),
            (
                "ordinary = \"keep\"",
                "ordinary = \"generalize_number:-5\"",
                "masking.ordinary",
            ),
            // Export gate.
            (
                "min_entities = 10",
                "min_entities = 1",
                "'disclosure.min_entities': must be at least 2, not 1",
            ),
            (
                "min_entities = 10",
                "min_entities = -3",
                "disclosure.min_entities",
            ),
            (
                "dominance_k = 0.90",
                "dominance_k = 1.0",
                "'disclosure.dominance_k': must be between 0 and 1",
            ),
            (
                "p_percent = 0.10",
                "p_percent = 0.0",
                "disclosure.p_percent",
            ),
            (
                "p_percent = 0.10",
                "p_percent = nan",
                "disclosure.p_percent",
            ),
            (
                "k_anonymity = 5",
                "k_anonymity = 1",
                "disclosure.k_anonymity",
            ),
            (
                "quorum = 2",
                "quorum = 0",
                "'review.quorum': must be between 1 and 5",
            ),
            (
                "formats = [\"parquet\", \"csv\"]",
                "formats = []",
                "export.formats",
            ),
            (
                "formats = [\"parquet\", \"csv\"]",
                "formats = [\"parquet\", \"xlsx\"]",
                "'export.formats': unknown format 'xlsx'",
            ),
            (
                "formats = [\"parquet\", \"csv\"]",
                "formats = [\"csv\", \"csv\"]",
                "'export.formats': format 'csv' is listed twice",
            ),
            // Samples.
            ("rows = 20", "rows = 0", "'sample.rows'"),
            (
                "rows = 20",
                "rows = 201",
                "'sample.rows': must be between 1 and 200",
            ),
            (
                "preview_rows = 20",
                "preview_rows = 1000",
                "sample.preview_rows",
            ),
            // Limits.
            (
                "max_sql_bytes = 65536",
                "max_sql_bytes = 0",
                "limits.max_sql_bytes",
            ),
            (
                "max_sql_bytes = 65536",
                "max_sql_bytes = 104857600",
                "limits.max_sql_bytes",
            ),
            (
                "memory_limit_bytes = 536870912",
                "memory_limit_bytes = 1024",
                "limits.memory_limit_bytes",
            ),
            (
                "timeout_secs = 300",
                "timeout_secs = 0",
                "limits.timeout_secs",
            ),
            (
                "timeout_secs = 300",
                "timeout_secs = 99999999",
                "limits.timeout_secs",
            ),
            (
                "max_result_rows = 10000000",
                "max_result_rows = -1",
                "limits.max_result_rows",
            ),
            // Version.
            ("\"2026.11-2\"", "\"  \"", "'version': must not be empty"),
            (
                "\"2026.11-2\"",
                "\"a\\u0007b\"",
                "'version': must not contain control",
            ),
            // Unknown and missing keys, wrong types, broken TOML.
            (
                "[sample]",
                "[sample]\nshow_raw = true",
                "unknown field `show_raw`",
            ),
            ("[limits]", "[limits]\nallow_udfs = true", "allow_udfs"),
            (
                "[export]",
                "[unmasked]\nall = true\n\n[export]",
                "unknown field `unmasked`",
            ),
            ("min_entities = 10", "", "missing field `min_entities`"),
            (
                "min_entities = 10",
                "min_entities = \"ten\"",
                "invalid type",
            ),
            ("min_entities = 10", "min_entities = 10.5", "invalid type"),
            ("[masking]", "[masking", "invalid policy file: line "),
        ];
        for (from, to, expected) in cases {
            check(from, to, expected);
        }
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let text = BUILTIN.replacen("[sample]", "[sample]\nshow_raw = true", 1);
        let line = 1 + text
            .lines()
            .position(|l| l.starts_with("show_raw"))
            .unwrap();
        let err = Policy::from_toml_str(&text).unwrap_err();
        assert!(err.to_string().contains(&format!("line {line}:")), "{err}");
        assert!(matches!(
            Policy::from_toml_str(""),
            Err(PolicyError::Syntax(_))
        ));
    }
}
