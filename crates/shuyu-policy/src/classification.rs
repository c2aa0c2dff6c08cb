//! Column classifications (R14, R15), ordered by strictness.

use std::fmt;
use std::str::FromStr;

use crate::{PolicyError, truncate};

/// How sensitive a column is. `Ord` is strictness: Ordinary < QuasiIdentifier < Sensitive <
/// DirectIdentifier.
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

    #[test]
    fn parses_and_orders() {
        for c in Classification::ALL {
            assert_eq!(c.as_str().parse::<Classification>(), Ok(c));
        }
        assert_eq!(
            "Direct".parse::<Classification>(),
            Ok(Classification::DirectIdentifier)
        );
        assert!("secret".parse::<Classification>().is_err());
        assert!(Classification::DirectIdentifier > Classification::Sensitive);
        assert!(Classification::QuasiIdentifier > Classification::Ordinary);
    }
}
