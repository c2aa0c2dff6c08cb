//! Data products (R21, R23, R24): scenario categories, what a product costs and on what
//! basis, and how long a recipient may use it.

use std::fmt;
use std::str::FromStr;

use crate::{PolicyError, truncate};

/// What a scenario serves (R24): products for public governance and public welfare are
/// free, industry (commercial) products are priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScenarioCategory {
    /// 公共治理: government use.
    PublicGovernance,
    /// 公益事业: public-welfare use.
    PublicWelfare,
    /// 产业发展 / commercial use: charged on the domain's price basis.
    Commercial,
}

impl ScenarioCategory {
    /// All categories.
    pub const ALL: [ScenarioCategory; 3] = [
        ScenarioCategory::PublicGovernance,
        ScenarioCategory::PublicWelfare,
        ScenarioCategory::Commercial,
    ];

    /// Text form: `public_governance`, `public_welfare`, `commercial`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ScenarioCategory::PublicGovernance => "public_governance",
            ScenarioCategory::PublicWelfare => "public_welfare",
            ScenarioCategory::Commercial => "commercial",
        }
    }

    /// Whether products under this category are free of charge.
    pub fn is_free(&self) -> bool {
        match self {
            ScenarioCategory::PublicGovernance | ScenarioCategory::PublicWelfare => true,
            ScenarioCategory::Commercial => false,
        }
    }
}

impl fmt::Display for ScenarioCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScenarioCategory {
    type Err = PolicyError;

    /// Parses the text form case-insensitively; `-` may stand for `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "public_governance" => Ok(ScenarioCategory::PublicGovernance),
            "public_welfare" => Ok(ScenarioCategory::PublicWelfare),
            "commercial" => Ok(ScenarioCategory::Commercial),
            _ => Err(PolicyError::UnknownCategory(truncate(s))),
        }
    }
}

/// Rates of a priced product, in fen (分, 1/100 yuan), as configured for the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PriceRates {
    /// Per started 10,000 rows of the product.
    pub per_10k_rows_fen: u64,
    /// Per download (package or Flight fetch).
    pub per_download_fen: u64,
}

/// The price basis filed with a product (R24): free, or the rates it is charged at and the
/// size it is charged for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceBasis {
    /// The scenario's category.
    pub category: ScenarioCategory,
    /// Rates; all zero for a free product.
    pub rates: PriceRates,
    /// Rows of the product.
    pub rows: u64,
}

impl PriceBasis {
    /// The basis of a product of `rows` rows under `category` at the domain's `rates`.
    pub fn new(category: ScenarioCategory, rates: PriceRates, rows: u64) -> PriceBasis {
        let rates = if category.is_free() {
            PriceRates::default()
        } else {
            rates
        };
        PriceBasis {
            category,
            rates,
            rows,
        }
    }

    /// Whether the product is free.
    pub fn is_free(&self) -> bool {
        self.category.is_free()
    }

    /// The charge for the rows, fen: every started 10,000 rows.
    pub fn rows_charge_fen(&self) -> u64 {
        self.rows
            .div_ceil(10_000)
            .saturating_mul(self.rates.per_10k_rows_fen)
    }

    /// The charge after `downloads` downloads, fen.
    pub fn charge_fen(&self, downloads: u64) -> u64 {
        self.rows_charge_fen()
            .saturating_add(downloads.saturating_mul(self.rates.per_download_fen))
    }
}

/// Days a product is usable when the request names none.
pub const DEFAULT_PRODUCT_DAYS: u32 = 90;
/// Longest a product is usable, days.
pub const MAX_PRODUCT_DAYS: u32 = 365;

/// Days a product is usable: `requested` (0: the default of [`DEFAULT_PRODUCT_DAYS`], cut to
/// what the scenario has left), at most [`MAX_PRODUCT_DAYS`] and at most the
/// `scenario_days_left` (whole days).
///
/// # Errors
/// If more days are asked for than allowed, or the scenario has no whole day left.
pub fn product_days(requested: u32, scenario_days_left: u64) -> Result<u32, PolicyError> {
    if scenario_days_left == 0 {
        return Err(PolicyError::ScenarioEnding);
    }
    let max = scenario_days_left.min(u64::from(MAX_PRODUCT_DAYS)) as u32;
    match requested {
        0 => Ok(DEFAULT_PRODUCT_DAYS.min(max)),
        days if days <= max => Ok(days),
        days => Err(PolicyError::ProductTooLong {
            requested: days,
            max,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_round_trip_and_only_commercial_is_priced() {
        for category in ScenarioCategory::ALL {
            assert_eq!(category.as_str().parse::<ScenarioCategory>(), Ok(category));
            assert_eq!(category.is_free(), category != ScenarioCategory::Commercial);
        }
        assert_eq!(
            "Public-Welfare".parse::<ScenarioCategory>(),
            Ok(ScenarioCategory::PublicWelfare)
        );
        assert!("industry".parse::<ScenarioCategory>().is_err());
    }

    #[test]
    fn charges_follow_the_basis() {
        let rates = PriceRates {
            per_10k_rows_fen: 5_000,
            per_download_fen: 200,
        };
        let priced = PriceBasis::new(ScenarioCategory::Commercial, rates, 10_001);
        assert_eq!(priced.rows_charge_fen(), 10_000);
        assert_eq!(priced.charge_fen(3), 10_600);
        let one_row = PriceBasis::new(ScenarioCategory::Commercial, rates, 1);
        assert_eq!(one_row.charge_fen(0), 5_000);
        for free in [
            ScenarioCategory::PublicGovernance,
            ScenarioCategory::PublicWelfare,
        ] {
            let basis = PriceBasis::new(free, rates, 1_000_000);
            assert!(basis.is_free());
            assert_eq!(basis.rates, PriceRates::default());
            assert_eq!(basis.charge_fen(100), 0);
        }
    }

    #[test]
    fn validity_is_bounded_by_the_scenario_and_a_year() {
        assert_eq!(product_days(0, 1000), Ok(90));
        assert_eq!(product_days(0, 30), Ok(30));
        assert_eq!(product_days(365, 1000), Ok(365));
        assert_eq!(
            product_days(366, 1000),
            Err(PolicyError::ProductTooLong {
                requested: 366,
                max: 365
            })
        );
        assert_eq!(
            product_days(31, 30),
            Err(PolicyError::ProductTooLong {
                requested: 31,
                max: 30
            })
        );
        assert_eq!(product_days(1, 0), Err(PolicyError::ScenarioEnding));
    }
}
