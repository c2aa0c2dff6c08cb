//! Masking rules and the masking of single values (R15, R16). The engine applies these to
//! Arrow arrays; pseudonyms need a key and are computed there.

use std::fmt;
use std::str::FromStr;

use crate::{Classification, PolicyError, truncate};

/// Date generalisation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateGranularity {
    /// `2024`.
    Year,
    /// `2024-05`.
    Month,
}

/// How a column is shown to people who may not see raw values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MaskingRule {
    /// Shown as is; only for ordinary columns.
    Keep,
    /// A keyed HMAC token, stable per tenant (joins still work), different across tenants.
    Pseudonym,
    /// Chinese 18-digit resident ID: first 3 and last character kept.
    PartialIdNumber,
    /// Chinese mobile number: `138****5678`.
    PartialMobile,
    /// Chinese name: surname kept, `张**`.
    PartialName,
    /// Dates cut to a year or month.
    GeneralizeDate(DateGranularity),
    /// Numbers replaced by their bucket `[lo,hi)`.
    GeneralizeNumber {
        /// Bucket width, at least 1.
        width: i64,
    },
    /// Replaced by `*`.
    Suppress,
}

impl MaskingRule {
    /// Everything but `Keep` masks.
    pub fn is_masking(&self) -> bool {
        !matches!(self, MaskingRule::Keep)
    }

    /// Checks that the rule may be declared for a column of this classification.
    ///
    /// # Errors
    /// `Keep` on any non-ordinary column.
    pub fn check_allowed_for(&self, classification: Classification) -> Result<(), PolicyError> {
        if !self.is_masking() && classification != Classification::Ordinary {
            return Err(PolicyError::RuleNotAllowed {
                classification: classification.as_str(),
                rule: self.to_string(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for MaskingRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskingRule::Keep => f.write_str("keep"),
            MaskingRule::Pseudonym => f.write_str("pseudonym"),
            MaskingRule::PartialIdNumber => f.write_str("partial_id"),
            MaskingRule::PartialMobile => f.write_str("partial_mobile"),
            MaskingRule::PartialName => f.write_str("partial_name"),
            MaskingRule::GeneralizeDate(DateGranularity::Year) => {
                f.write_str("generalize_date:year")
            }
            MaskingRule::GeneralizeDate(DateGranularity::Month) => {
                f.write_str("generalize_date:month")
            }
            MaskingRule::GeneralizeNumber { width } => write!(f, "generalize_number:{width}"),
            MaskingRule::Suppress => f.write_str("suppress"),
        }
    }
}

impl FromStr for MaskingRule {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim().to_ascii_lowercase();
        let unknown = || PolicyError::UnknownMaskingRule(truncate(s));
        Ok(match text.as_str() {
            "keep" => MaskingRule::Keep,
            "pseudonym" => MaskingRule::Pseudonym,
            "partial_id" => MaskingRule::PartialIdNumber,
            "partial_mobile" => MaskingRule::PartialMobile,
            "partial_name" => MaskingRule::PartialName,
            "generalize_date:year" => MaskingRule::GeneralizeDate(DateGranularity::Year),
            "generalize_date:month" => MaskingRule::GeneralizeDate(DateGranularity::Month),
            "suppress" => MaskingRule::Suppress,
            other => match other.strip_prefix("generalize_number:") {
                Some(width) => {
                    let width: i64 = width.parse().map_err(|_| unknown())?;
                    if width < 1 {
                        return Err(unknown());
                    }
                    MaskingRule::GeneralizeNumber { width }
                }
                None => return Err(unknown()),
            },
        })
    }
}

/// The text that replaces a suppressed value.
pub fn suppressed() -> &'static str {
    "*"
}

fn stars(n: usize) -> String {
    "*".repeat(n)
}

/// Masks a Chinese resident ID number: `330**************4`.
pub fn mask_id_number(s: &str) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    match chars.len() {
        0 => String::new(),
        18 => format!(
            "{}{}{}",
            chars[..3].iter().collect::<String>(),
            stars(14),
            chars[17]
        ),
        n if n >= 4 => format!("{}{}", chars[0], stars(n - 1)),
        n => stars(n),
    }
}

/// Masks a Chinese mobile number: `138****5678`.
pub fn mask_mobile(s: &str) -> String {
    let trimmed = s.trim();
    let number = trimmed.strip_prefix("+86").unwrap_or(trimmed).trim();
    let chars: Vec<char> = number.chars().collect();
    match chars.len() {
        0 => String::new(),
        11 => format!(
            "{}****{}",
            chars[..3].iter().collect::<String>(),
            chars[7..].iter().collect::<String>()
        ),
        n if n >= 6 => format!("{}{}", chars[..2].iter().collect::<String>(), stars(n - 2)),
        n => stars(n),
    }
}

const COMPOUND_SURNAMES: [&str; 14] = [
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "令狐", "夏侯",
];

/// Masks a name: the surname kept, every other character starred (`张**`, `欧阳**`).
pub fn mask_name(s: &str) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    match chars.len() {
        0 => String::new(),
        1 => stars(1),
        n => {
            let two: String = chars[..2].iter().collect();
            let keep = if n >= 3 && COMPOUND_SURNAMES.contains(&two.as_str()) {
                2
            } else {
                1
            };
            format!(
                "{}{}",
                chars[..keep].iter().collect::<String>(),
                stars(n - keep)
            )
        }
    }
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i32) -> (i64, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// A date generalised to its year (`2024`) or month (`2024-05`).
pub fn generalize_date(days_since_epoch: i32, granularity: DateGranularity) -> String {
    let (year, month) = civil_from_days(days_since_epoch);
    match granularity {
        DateGranularity::Year => format!("{year:04}"),
        DateGranularity::Month => format!("{year:04}-{month:02}"),
    }
}

/// An integer replaced by its bucket `[lo,hi)` of `width` (floor division; saturating).
pub fn generalize_int(v: i64, width: i64) -> String {
    let width = width.max(1);
    let lo = v.div_euclid(width).saturating_mul(width);
    let hi = lo.saturating_add(width);
    format!("[{lo},{hi})")
}

/// A float replaced by its bucket `[lo,hi)` of `width`; NaN and infinities are suppressed.
pub fn generalize_float(v: f64, width: i64) -> String {
    if !v.is_finite() {
        return suppressed().to_owned();
    }
    let width = width.max(1) as f64;
    let lo = (v / width).floor() * width;
    format!("[{lo},{})", lo + width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: fn(&str) -> String, input: &str, expected: &str) {
        assert_eq!(f(input), expected, "input {input:?}");
    }

    #[test]
    fn masks_chinese_identifiers() {
        check(mask_id_number, "330203199001011234", "330**************4");
        check(mask_id_number, "11010519491231002X", "110**************X");
        check(mask_id_number, "12345", "1****");
        check(mask_id_number, "", "");
        check(mask_mobile, "13812345678", "138****5678");
        check(mask_mobile, "+8613812345678", "138****5678");
        check(mask_mobile, "0574-8765", "05*******");
        check(mask_name, "张三丰", "张**");
        check(mask_name, "欧阳娜娜", "欧阳**");
        check(mask_name, "欧阳", "欧*");
        check(mask_name, "李", "*");
        check(mask_name, "Alice", "A****");
    }

    #[test]
    fn masking_never_returns_nonempty_input_or_panics() {
        let inputs = [
            "a",
            "ab",
            "abc",
            "😀😀😀",
            "330203199001011234",
            "13812345678",
            &"x".repeat(10_000),
            "张",
            " 7 ",
        ];
        for input in inputs {
            for f in [mask_id_number, mask_mobile, mask_name] {
                let out = f(input);
                assert_ne!(out, input.trim(), "{input:?} came back unchanged");
            }
        }
    }

    #[test]
    fn generalizes_dates() {
        assert_eq!(generalize_date(0, DateGranularity::Month), "1970-01");
        assert_eq!(generalize_date(-1, DateGranularity::Month), "1969-12");
        // 2024-02-29 is day 19782.
        assert_eq!(generalize_date(19_782, DateGranularity::Month), "2024-02");
        assert_eq!(generalize_date(19_783, DateGranularity::Month), "2024-03");
        assert_eq!(generalize_date(19_782, DateGranularity::Year), "2024");
    }

    #[test]
    fn generalizes_numbers() {
        assert_eq!(generalize_int(37, 10), "[30,40)");
        assert_eq!(generalize_int(-1, 10), "[-10,0)");
        assert_eq!(generalize_int(0, 10), "[0,10)");
        assert!(generalize_int(i64::MAX, 10).starts_with('['));
        assert!(generalize_int(i64::MIN, 10).starts_with('['));
        assert_eq!(generalize_float(1234.5, 100), "[1200,1300)");
        assert_eq!(generalize_float(f64::NAN, 100), "*");
    }

    #[test]
    fn rule_text_round_trips() {
        let rules = [
            MaskingRule::Keep,
            MaskingRule::Pseudonym,
            MaskingRule::PartialIdNumber,
            MaskingRule::PartialMobile,
            MaskingRule::PartialName,
            MaskingRule::GeneralizeDate(DateGranularity::Year),
            MaskingRule::GeneralizeDate(DateGranularity::Month),
            MaskingRule::GeneralizeNumber { width: 100 },
            MaskingRule::Suppress,
        ];
        for rule in rules {
            assert_eq!(rule.to_string().parse::<MaskingRule>(), Ok(rule.clone()));
        }
        assert!("generalize_number:0".parse::<MaskingRule>().is_err());
        assert!("hash".parse::<MaskingRule>().is_err());
    }

    #[test]
    fn keep_only_for_ordinary() {
        assert!(
            MaskingRule::Keep
                .check_allowed_for(Classification::Ordinary)
                .is_ok()
        );
        for c in [
            Classification::QuasiIdentifier,
            Classification::Sensitive,
            Classification::DirectIdentifier,
        ] {
            let err = MaskingRule::Keep.check_allowed_for(c).unwrap_err();
            assert!(err.to_string().contains("must be masked"), "{err}");
            assert!(MaskingRule::Suppress.check_allowed_for(c).is_ok());
        }
    }
}
