//! Column classifications (R14, R15), ordered by strictness.

use std::fmt;
use std::str::FromStr;

use crate::{PolicyError, truncate};

/// How sensitive a column is.
///
/// `Ord` is strictness: `Ordinary < QuasiIdentifier < Sensitive < DirectIdentifier`, so the
/// classification of a value derived from several columns is the maximum of theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Classification {
    /// Public-grade attributes.
    Ordinary,
    /// Attributes that identify in combination (birth date, district, gender…).
    QuasiIdentifier,
    /// Sensitive attributes (diagnosis, income, credit score…).
    Sensitive,
    /// Identifies a person or organisation alone (name, ID number, mobile, credit code).
    DirectIdentifier,
}

impl Classification {
    /// All classifications, least strict first.
    pub const ALL: [Classification; 4] = [
        Classification::Ordinary,
        Classification::QuasiIdentifier,
        Classification::Sensitive,
        Classification::DirectIdentifier,
    ];

    /// The canonical text form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Classification::Ordinary => "ordinary",
            Classification::QuasiIdentifier => "quasi_identifier",
            Classification::Sensitive => "sensitive",
            Classification::DirectIdentifier => "direct_identifier",
        }
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Classification {
    type Err = PolicyError;

    /// Accepts the canonical names case-insensitively, and `direct` / `quasi` for short.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ordinary" => Ok(Classification::Ordinary),
            "quasi_identifier" | "quasi" => Ok(Classification::QuasiIdentifier),
            "sensitive" => Ok(Classification::Sensitive),
            "direct_identifier" | "direct" => Ok(Classification::DirectIdentifier),
            _ => Err(PolicyError::UnknownClassification(truncate(s))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<Classification>) {
        assert_eq!(
            input.parse::<Classification>().ok(),
            expected,
            "input {input:?}"
        );
    }

    #[test]
    fn parses_text_forms() {
        use Classification::*;
        check("ordinary", Some(Ordinary));
        check("quasi_identifier", Some(QuasiIdentifier));
        check("quasi", Some(QuasiIdentifier));
        check("sensitive", Some(Sensitive));
        check("direct_identifier", Some(DirectIdentifier));
        check("Direct", Some(DirectIdentifier));
        check(" SENSITIVE ", Some(Sensitive));
        check("secret", None);
        check("", None);
        check("direct identifier", None);
    }

    #[test]
    fn round_trips_and_orders_by_strictness() {
        for c in Classification::ALL {
            check(c.as_str(), Some(c));
            check(&c.to_string(), Some(c));
        }
        assert!(Classification::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            Classification::ALL.iter().max(),
            Some(&Classification::DirectIdentifier)
        );
    }

    #[test]
    fn unknown_names_are_quoted_but_shortened() {
        let err = "x".repeat(500).parse::<Classification>().unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("unknown classification 'xxx"),
            "{message}"
        );
        assert!(message.len() < 250, "{message}");
    }
}
