//! The versioned policy file (`policies/default.toml`): masking defaults, export thresholds,
//! sample sizes and job limits.

use serde::Deserialize;

use crate::{Classification, MaskingRule, PolicyError};

/// Default masking rule per classification.
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
    /// The default for a classification.
    pub fn rule_for(&self, classification: Classification) -> &MaskingRule {
        match classification {
            Classification::DirectIdentifier => &self.direct_identifier,
            Classification::QuasiIdentifier => &self.quasi_identifier,
            Classification::Sensitive => &self.sensitive,
            Classification::Ordinary => &self.ordinary,
        }
    }
}

/// Export gate thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportPolicy {
    /// k: minimum source rows behind every aggregate group.
    pub min_group_rows: u64,
    /// Allowed export formats.
    pub formats: Vec<String>,
}

/// Sample and preview sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePolicy {
    /// Rows of a masked sample.
    pub rows: usize,
    /// Rows of a job's masked preview.
    pub preview_rows: usize,
}

/// Limits of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobLimits {
    /// SQL text cap, checked before parsing.
    pub max_sql_bytes: usize,
    /// Memory pool of a job.
    pub memory_limit_bytes: u64,
    /// Wall-clock limit.
    pub timeout_secs: u64,
    /// Result row cap.
    pub max_result_rows: u64,
}

/// The policy in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Version, signed into export manifests.
    pub version: String,
    /// Masking defaults.
    pub masking: MaskingDefaults,
    /// Export gate.
    pub export: ExportPolicy,
    /// Samples.
    pub sample: SamplePolicy,
    /// Job limits.
    pub limits: JobLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: String,
    masking: RawMasking,
    export: RawExport,
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
    min_group_rows: u64,
    formats: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    rows: usize,
    preview_rows: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_sql_bytes: usize,
    memory_limit_bytes: u64,
    timeout_secs: u64,
    max_result_rows: u64,
}

fn invalid(msg: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(msg.into())
}

fn rule(key: &str, text: &str, classification: Classification) -> Result<MaskingRule, PolicyError> {
    let rule: MaskingRule = text
        .parse()
        .map_err(|e| invalid(format!("masking.{key}: {e}")))?;
    rule.check_allowed_for(classification)
        .map_err(|e| invalid(format!("masking.{key}: {e}")))?;
    Ok(rule)
}

impl Policy {
    /// Parses and validates a policy.
    ///
    /// # Errors
    /// Unknown keys, unknown rules, rules not allowed for their classification, or values out
    /// of range; the message names the key.
    pub fn from_toml_str(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.version.trim().is_empty() {
            return Err(invalid("version must not be empty"));
        }
        let masking = MaskingDefaults {
            direct_identifier: rule(
                "direct_identifier",
                &raw.masking.direct_identifier,
                Classification::DirectIdentifier,
            )?,
            quasi_identifier: rule(
                "quasi_identifier",
                &raw.masking.quasi_identifier,
                Classification::QuasiIdentifier,
            )?,
            sensitive: rule(
                "sensitive",
                &raw.masking.sensitive,
                Classification::Sensitive,
            )?,
            ordinary: rule("ordinary", &raw.masking.ordinary, Classification::Ordinary)?,
        };
        if raw.export.min_group_rows < 1 {
            return Err(invalid("export.min_group_rows must be at least 1"));
        }
        if raw.export.formats.is_empty()
            || raw
                .export
                .formats
                .iter()
                .any(|f| f != "parquet" && f != "csv")
        {
            return Err(invalid("export.formats must list parquet and/or csv"));
        }
        if !(1..=200).contains(&raw.sample.rows) || !(1..=200).contains(&raw.sample.preview_rows) {
            return Err(invalid(
                "sample.rows and sample.preview_rows must be between 1 and 200",
            ));
        }
        if raw.limits.max_sql_bytes < 16 || raw.limits.max_sql_bytes > 1 << 20 {
            return Err(invalid(
                "limits.max_sql_bytes must be between 16 and 1048576",
            ));
        }
        if raw.limits.memory_limit_bytes < 1 << 20 {
            return Err(invalid("limits.memory_limit_bytes must be at least 1 MiB"));
        }
        if raw.limits.timeout_secs < 1 || raw.limits.max_result_rows < 1 {
            return Err(invalid(
                "limits.timeout_secs and limits.max_result_rows must be at least 1",
            ));
        }
        Ok(Policy {
            version: raw.version,
            masking,
            export: ExportPolicy {
                min_group_rows: raw.export.min_group_rows,
                formats: raw.export.formats,
            },
            sample: SamplePolicy {
                rows: raw.sample.rows,
                preview_rows: raw.sample.preview_rows,
            },
            limits: JobLimits {
                max_sql_bytes: raw.limits.max_sql_bytes,
                memory_limit_bytes: raw.limits.memory_limit_bytes,
                timeout_secs: raw.limits.timeout_secs,
                max_result_rows: raw.limits.max_result_rows,
            },
        })
    }

    /// The built-in policy (`policies/default.toml`).
    pub fn builtin() -> Policy {
        Policy::from_toml_str(include_str!("../../../policies/default.toml"))
            .expect("the built-in policy is valid (tested)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILTIN: &str = include_str!("../../../policies/default.toml");

    #[test]
    fn builtin_parses_with_k_10() {
        let policy = Policy::builtin();
        assert_eq!(policy.export.min_group_rows, 10);
        assert_eq!(
            policy.masking.rule_for(Classification::DirectIdentifier),
            &MaskingRule::Pseudonym
        );
        assert_eq!(
            policy.masking.rule_for(Classification::Ordinary),
            &MaskingRule::Keep
        );
    }

    fn check_refused(from: &str, to: &str, expected_in_message: &str) {
        let text = BUILTIN.replacen(from, to, 1);
        assert_ne!(text, BUILTIN, "the replacement must change the policy");
        let err = Policy::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains(expected_in_message), "{err}");
    }

    #[test]
    fn invalid_policies_are_refused_with_the_key() {
        check_refused(
            "min_group_rows = 10",
            "min_group_rows = 0",
            "export.min_group_rows",
        );
        check_refused(
            "sensitive = \"suppress\"",
            "sensitive = \"keep\"",
            "masking.sensitive",
        );
        check_refused("[sample]", "[sample]\nshow_raw = true", "show_raw");
        check_refused(
            "direct_identifier = \"pseudonym\"",
            "direct_identifier = \"hash\"",
            "masking.direct_identifier",
        );
    }
}
