//! Masking rules and the masking of single values (R15, R16).
//!
//! The engine applies these functions to Arrow arrays; pseudonyms need a key and are computed
//! there, so the policy only names them. Every function here works on `char`s (UTF-8 safe),
//! never panics, and for a non-empty input never returns a raw value unchanged: at least one
//! character is replaced by `*`. The one exception is a value that already has `*` in every
//! position the rule would star (`1****`) — it comes back as is, with nothing left to hide.

use std::fmt;
use std::str::FromStr;

use crate::{Classification, PolicyError, truncate};

/// How far a date is generalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateGranularity {
    /// `2024`.
    Year,
    /// `2024-05`.
    Month,
}

impl DateGranularity {
    /// Text form, as used after `generalize_date:`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DateGranularity::Year => "year",
            DateGranularity::Month => "month",
        }
    }
}

/// How a column is shown to people who may not see raw values.
///
/// Text form (`FromStr` / `Display`, round-trip): `keep`, `pseudonym`, `partial_id`,
/// `partial_mobile`, `partial_name`, `generalize_date:year`, `generalize_date:month`,
/// `generalize_number:<width>`, `suppress`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MaskingRule {
    /// Shown as is; only legal for ordinary columns.
    Keep,
    /// A keyed HMAC token, stable per tenant (joins still work), different across tenants. The
    /// engine computes it.
    Pseudonym,
    /// Chinese 18-character resident ID: first 3 and last character kept ([`mask_id_number`]).
    PartialIdNumber,
    /// Chinese 11-digit mobile number: `138****5678` ([`mask_mobile`]).
    PartialMobile,
    /// Chinese (or latin) name: surname kept, `张**` ([`mask_name`]).
    PartialName,
    /// Dates cut to a year or a month ([`generalize_date`]).
    GeneralizeDate(DateGranularity),
    /// Numbers replaced by their bucket `[lo,hi)` ([`generalize_int`], [`generalize_float`]).
    GeneralizeNumber {
        /// Bucket width, at least 1.
        width: i64,
    },
    /// Replaced by `*` ([`suppressed`]).
    Suppress,
}

impl MaskingRule {
    /// Whether the rule hides the raw value: everything but `Keep`.
    pub fn is_masking(&self) -> bool {
        !matches!(self, MaskingRule::Keep)
    }

    /// Whether applying `self` to a column hides at least what the column's own rule
    /// (`column_rule`) hides, so that its output may count as masked.
    ///
    /// - `keep` columns are public grade: anything covers them;
    /// - a rule covers itself; a year covers a month; a bucket width covers every width it
    ///   is a multiple of (its buckets are unions of the column's, so two outputs of
    ///   different widths never narrow a value below the column's bucket);
    /// - a pseudonym covers the partial masks of identifiers (it shows no character);
    /// - nothing covers `suppress`, and a partial mask never covers a pseudonym (it shows
    ///   characters the pseudonym hides).
    pub fn covers(&self, column_rule: &MaskingRule) -> bool {
        use MaskingRule::*;
        match (self, column_rule) {
            (_, Keep) => true,
            (_, Suppress) => false,
            (Pseudonym, Pseudonym | PartialIdNumber | PartialMobile | PartialName) => true,
            (PartialIdNumber, PartialIdNumber)
            | (PartialMobile, PartialMobile)
            | (PartialName, PartialName) => true,
            (GeneralizeDate(mine), GeneralizeDate(theirs)) => {
                mine == theirs || (*mine == DateGranularity::Year)
            }
            (GeneralizeNumber { width: mine }, GeneralizeNumber { width: theirs }) => {
                *theirs >= 1 && *mine >= *theirs && mine % theirs == 0
            }
            _ => false,
        }
    }

    /// Checks that the rule may be declared for a column of this classification.
    ///
    /// # Errors
    /// [`PolicyError::RuleNotAllowed`] for `keep` on any non-ordinary column (its
    /// classification requires masking), and [`PolicyError::InvalidWidth`] for a
    /// `generalize_number` width below 1.
    pub fn check_allowed_for(&self, classification: Classification) -> Result<(), PolicyError> {
        match self {
            MaskingRule::Keep if classification != Classification::Ordinary => {
                Err(PolicyError::RuleNotAllowed {
                    classification,
                    rule: self.to_string(),
                })
            }
            MaskingRule::GeneralizeNumber { width } if *width < 1 => {
                Err(PolicyError::InvalidWidth { width: *width })
            }
            _ => Ok(()),
        }
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
            MaskingRule::GeneralizeDate(granularity) => {
                write!(f, "generalize_date:{}", granularity.as_str())
            }
            MaskingRule::GeneralizeNumber { width } => write!(f, "generalize_number:{width}"),
            MaskingRule::Suppress => f.write_str("suppress"),
        }
    }
}

impl FromStr for MaskingRule {
    type Err = PolicyError;

    /// Parses the text form, case-insensitively.
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
            other => {
                let width = other
                    .strip_prefix("generalize_number:")
                    .ok_or_else(unknown)?;
                let width: i64 = width.trim().parse().map_err(|_| unknown())?;
                if width < 1 {
                    return Err(PolicyError::InvalidWidth { width });
                }
                MaskingRule::GeneralizeNumber { width }
            }
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

/// Keeps `head` leading and `tail` trailing characters and stars the rest. Callers make sure
/// `head + tail < chars.len()`, so at least one character is starred.
fn keep_ends(chars: &[char], head: usize, tail: usize) -> String {
    let n = chars.len();
    let head = head.min(n);
    let tail = tail.min(n - head);
    let mut out = String::with_capacity(n + 8);
    out.extend(&chars[..head]);
    out.push_str(&stars(n - head - tail));
    out.extend(&chars[n - tail..]);
    out
}

/// Masks a Chinese resident ID number.
///
/// An 18-character ID keeps its first 3 and last character (`330**************4`); any other
/// length of 4 or more keeps only the first character; shorter values are starred entirely.
/// Surrounding whitespace is dropped; empty stays empty.
pub fn mask_id_number(s: &str) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    match chars.len() {
        0 => String::new(),
        18 => keep_ends(&chars, 3, 1),
        n if n >= 4 => keep_ends(&chars, 1, 0),
        n => stars(n),
    }
}

/// Masks a Chinese mobile number.
///
/// A leading `+86` (and a separator after it) is dropped first. Eleven digits keep the first
/// 3 and last 4 (`138****5678`); any other value of 6 or more characters keeps the first 2;
/// shorter values are starred entirely. Empty stays empty.
pub fn mask_mobile(s: &str) -> String {
    let trimmed = s.trim();
    let number = match trimmed.strip_prefix("+86") {
        Some(rest) => rest.trim_start_matches([' ', '-']),
        None => trimmed,
    };
    let chars: Vec<char> = number.chars().collect();
    match chars.len() {
        0 => String::new(),
        11 if chars.iter().all(char::is_ascii_digit) => keep_ends(&chars, 3, 4),
        n if n >= 6 => keep_ends(&chars, 2, 0),
        n => stars(n),
    }
}

/// Compound (two-character) Chinese surnames kept whole by [`mask_name`].
const COMPOUND_SURNAMES: [&str; 14] = [
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "令狐", "夏侯",
];

/// Masks a personal name: the surname is kept and every other character starred (`张**`).
///
/// A compound surname (`欧阳`, `司马`, …) is kept whole when the name has at least 3
/// characters (`欧阳**`). A single-character name becomes `*`. Latin names keep their first
/// letter (`A****`). Surrounding whitespace is dropped; empty stays empty.
pub fn mask_name(s: &str) -> String {
    let chars: Vec<char> = s.trim().chars().collect();
    match chars.len() {
        0 => String::new(),
        1 => stars(1),
        n => {
            let first_two: String = chars[..2].iter().collect();
            let keep = if n >= 3 && COMPOUND_SURNAMES.contains(&first_two.as_str()) {
                2
            } else {
                1
            };
            keep_ends(&chars, keep, 0)
        }
    }
}

/// A date (days since 1970-01-01, as in Arrow `Date32`) generalised to its year (`2024`) or
/// month (`2024-05`).
pub fn generalize_date(days_since_epoch: i32, granularity: DateGranularity) -> String {
    // In i64, so no i32 input can overflow.
    let (year, month, _) = crate::calendar::civil_from_days(i64::from(days_since_epoch));
    match granularity {
        DateGranularity::Year => format!("{year:04}"),
        DateGranularity::Month => format!("{year:04}-{month:02}"),
    }
}

/// Clamps to the `i64` range.
fn saturate(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

/// An integer replaced by its bucket `[lo,hi)` of `width` (`37`, width 10 → `[30,40)`).
///
/// Buckets start at multiples of `width` (floor division, so `-1` → `[-10,0)`); bounds past the
/// `i64` range saturate at `i64::MIN` / `i64::MAX`. A width below 1 is invalid (the policy
/// refuses it) and suppresses the value.
pub fn generalize_int(v: i64, width: i64) -> String {
    if width < 1 {
        return suppressed().to_owned();
    }
    let width = i128::from(width);
    let lo = i128::from(v).div_euclid(width) * width;
    format!("[{},{})", saturate(lo), saturate(lo + width))
}

/// A float replaced by its bucket `[lo,hi)` of `width`, the same buckets as
/// [`generalize_int`] (`1234.5`, width 100 → `[1200,1300)`).
///
/// NaN, infinities and a width below 1 suppress the value.
pub fn generalize_float(v: f64, width: i64) -> String {
    if !v.is_finite() || width < 1 {
        return suppressed().to_owned();
    }
    // Widths beyond 2^53 lose precision as floats; the bucket stays a bucket.
    let width = width as f64;
    let lo = (v / width).floor() * width;
    // `-0.0 + 0.0` is `0.0`: a bucket never prints as `[-0,…)`.
    let lo = lo + 0.0;
    format!("[{lo},{})", lo + width)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Masker = fn(&str) -> String;

    const MASKERS: [(&str, Masker); 3] = [
        ("mask_id_number", mask_id_number),
        ("mask_mobile", mask_mobile),
        ("mask_name", mask_name),
    ];

    fn check(f: Masker, input: &str, expected: &str) {
        assert_eq!(f(input), expected, "input {input:?}");
    }

    #[test]
    fn masks_id_numbers() {
        let cases = [
            ("330203199001011234", "330**************4"),
            ("11010519491231002X", "110**************X"),
            (" 330203199001011234 ", "330**************4"),
            // 15-digit first-generation IDs and other lengths keep one character.
            ("330203900101123", "3**************"),
            ("12345", "1****"),
            ("1234", "1***"),
            ("123", "***"),
            ("1", "*"),
            ("", ""),
            ("   ", ""),
            // Full-width digits: lengths count characters, not bytes.
            (
                "３３０２０３１９９００１０１１２３４",
                "３３０**************４",
            ),
        ];
        for (input, expected) in cases {
            check(mask_id_number, input, expected);
        }
    }

    #[test]
    fn masks_mobiles() {
        let cases = [
            ("13812345678", "138****5678"),
            ("+8613812345678", "138****5678"),
            ("+86 13812345678", "138****5678"),
            ("+86-13812345678", "138****5678"),
            // Not eleven digits: only the first two kept.
            ("0574-87654321", "05***********"),
            ("1381234567a", "13*********"),
            ("138123", "13****"),
            ("12345", "*****"),
            ("+86", ""),
            ("", ""),
        ];
        for (input, expected) in cases {
            check(mask_mobile, input, expected);
        }
    }

    #[test]
    fn masks_names() {
        let cases = [
            ("张三丰", "张**"),
            ("张三", "张*"),
            ("欧阳娜娜", "欧阳**"),
            ("司马相如", "司马**"),
            ("诸葛亮", "诸葛*"),
            // Two characters: a compound surname alone would be the whole name.
            ("欧阳", "欧*"),
            ("李", "*"),
            ("Alice", "A****"),
            ("Alice Smith", "A**********"),
            (" 王五 ", "王*"),
            ("", ""),
        ];
        for (input, expected) in cases {
            check(mask_name, input, expected);
        }
    }

    #[test]
    fn masking_never_panics_or_returns_the_input() {
        let long_digits = "1".repeat(100_000);
        let long_cjk = "张".repeat(10_000);
        let inputs = [
            "a",
            "ab",
            "abc",
            "😀",
            "😀😀😀😀😀😀😀😀😀😀😀",
            "👨‍👩‍👧‍👦",
            "e\u{301}",
            "\u{0}\u{0}\u{0}\u{0}",
            "330203199001011234",
            "13812345678",
            "+86",
            "+8",
            "张",
            "欧",
            " 7 ",
            "\t\n",
            "مرحبا بالعالم",
            &long_digits,
            &long_cjk,
        ];
        for input in inputs {
            for (name, f) in MASKERS {
                let out = f(input);
                assert_ne!(out, input, "{name} returned {input:?} unchanged");
                if !input.trim().is_empty() {
                    assert!(out.contains('*') || out.is_empty(), "{name}({input:?})");
                }
            }
        }
    }

    #[test]
    fn already_masked_values_stay_masked() {
        check(mask_id_number, "1****", "1****");
        // Not eleven digits any more, so only the first two are kept.
        check(mask_mobile, "138****5678", "13*********");
        check(mask_name, "张**", "张**");
        check(mask_name, "*", "*");
    }

    fn check_date(days: i32, expected_year: &str, expected_month: &str) {
        assert_eq!(
            generalize_date(days, DateGranularity::Year),
            expected_year,
            "day {days}"
        );
        assert_eq!(
            generalize_date(days, DateGranularity::Month),
            expected_month,
            "day {days}"
        );
    }

    #[test]
    fn generalizes_dates() {
        let cases = [
            (0, "1970", "1970-01"),
            (-1, "1969", "1969-12"),
            (19_722, "2023", "2023-12"),
            (19_723, "2024", "2024-01"),
            (19_782, "2024", "2024-02"), // 2024-02-29
            (19_783, "2024", "2024-03"),
            (11_016, "2000", "2000-02"), // 2000-02-29: divisible by 400
            (11_017, "2000", "2000-03"),
            (-25_509, "1900", "1900-02"), // 1900-02-28: no leap day in 1900
            (-25_508, "1900", "1900-03"),
            (-7_397, "1949", "1949-10"),
            (-719_162, "0001", "0001-01"),
            (-719_163, "0000", "0000-12"),
            (2_932_896, "9999", "9999-12"),
            (i32::MAX, "5881580", "5881580-07"),
            (i32::MIN, "-5877641", "-5877641-06"),
        ];
        for (days, year, month) in cases {
            check_date(days, year, month);
        }
    }

    fn check_int(v: i64, width: i64, expected: &str) {
        assert_eq!(generalize_int(v, width), expected, "{v} width {width}");
    }

    #[test]
    fn generalizes_integers() {
        let cases = [
            (37, 10, "[30,40)"),
            (30, 10, "[30,40)"),
            (39, 10, "[30,40)"),
            (0, 10, "[0,10)"),
            (-1, 10, "[-10,0)"),
            (-10, 10, "[-10,0)"),
            (-11, 10, "[-20,-10)"),
            (5, 1, "[5,6)"),
            (12_345, 1_000, "[12000,13000)"),
            (i64::MAX, 10, "[9223372036854775800,9223372036854775807)"),
            (i64::MIN, 10, "[-9223372036854775808,-9223372036854775800)"),
            (i64::MAX, 1, "[9223372036854775807,9223372036854775807)"),
            (i64::MIN, 1, "[-9223372036854775808,-9223372036854775807)"),
            (
                i64::MAX,
                i64::MAX,
                "[9223372036854775807,9223372036854775807)",
            ),
            (-1, i64::MAX, "[-9223372036854775807,0)"),
            (
                i64::MIN,
                i64::MAX,
                "[-9223372036854775808,-9223372036854775807)",
            ),
            (37, 0, "*"),
            (37, -10, "*"),
            (37, i64::MIN, "*"),
        ];
        for (v, width, expected) in cases {
            check_int(v, width, expected);
        }
    }

    fn check_float(v: f64, width: i64, expected: &str) {
        assert_eq!(generalize_float(v, width), expected, "{v} width {width}");
    }

    #[test]
    fn generalizes_floats() {
        let cases = [
            (1234.5, 100, "[1200,1300)"),
            (37.0, 10, "[30,40)"),
            (-0.5, 10, "[-10,0)"),
            (-0.0, 10, "[0,10)"),
            (0.0, 10, "[0,10)"),
            (f64::NAN, 100, "*"),
            (f64::INFINITY, 100, "*"),
            (f64::NEG_INFINITY, 100, "*"),
            (1.5, 0, "*"),
        ];
        for (v, width, expected) in cases {
            check_float(v, width, expected);
        }
        for v in [f64::MAX, f64::MIN, f64::MIN_POSITIVE, -f64::MIN_POSITIVE] {
            assert!(generalize_float(v, i64::MAX).starts_with('['));
            assert!(generalize_float(v, 1).starts_with('['));
        }
    }

    fn all_rules() -> Vec<MaskingRule> {
        vec![
            MaskingRule::Keep,
            MaskingRule::Pseudonym,
            MaskingRule::PartialIdNumber,
            MaskingRule::PartialMobile,
            MaskingRule::PartialName,
            MaskingRule::GeneralizeDate(DateGranularity::Year),
            MaskingRule::GeneralizeDate(DateGranularity::Month),
            MaskingRule::GeneralizeNumber { width: 1 },
            MaskingRule::GeneralizeNumber { width: 100 },
            MaskingRule::GeneralizeNumber { width: i64::MAX },
            MaskingRule::Suppress,
        ]
    }

    fn check_rule(input: &str, expected: Result<MaskingRule, PolicyError>) {
        assert_eq!(input.parse::<MaskingRule>(), expected, "input {input:?}");
    }

    #[test]
    fn rule_text_round_trips() {
        for rule in all_rules() {
            check_rule(&rule.to_string(), Ok(rule.clone()));
        }
        let texts = [
            "keep",
            "pseudonym",
            "partial_id",
            "partial_mobile",
            "partial_name",
            "generalize_date:year",
            "generalize_date:month",
            "generalize_number:10",
            "suppress",
        ];
        for text in texts {
            let rule: MaskingRule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text);
        }
    }

    #[test]
    fn rule_text_is_lenient_on_case_and_strict_on_content() {
        check_rule(" Partial_ID ", Ok(MaskingRule::PartialIdNumber));
        check_rule(
            "GENERALIZE_DATE:MONTH",
            Ok(MaskingRule::GeneralizeDate(DateGranularity::Month)),
        );
        check_rule(
            "generalize_number: 5",
            Ok(MaskingRule::GeneralizeNumber { width: 5 }),
        );
        check_rule(
            "generalize_number:0",
            Err(PolicyError::InvalidWidth { width: 0 }),
        );
        check_rule(
            "generalize_number:-3",
            Err(PolicyError::InvalidWidth { width: -3 }),
        );
        for unknown in [
            "hash",
            "",
            "generalize_number",
            "generalize_number:",
            "generalize_number:ten",
            "generalize_number:99999999999999999999",
            "generalize_date",
            "generalize_date:day",
            "keep:1",
        ] {
            check_rule(
                unknown,
                Err(PolicyError::UnknownMaskingRule(unknown.trim().to_owned())),
            );
        }
    }

    #[test]
    fn keep_is_only_allowed_for_ordinary() {
        assert_eq!(
            MaskingRule::Keep.check_allowed_for(Classification::Ordinary),
            Ok(())
        );
        for c in [
            Classification::QuasiIdentifier,
            Classification::Sensitive,
            Classification::DirectIdentifier,
        ] {
            let err = MaskingRule::Keep.check_allowed_for(c).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("requires masking"), "{message}");
            assert!(message.contains(c.as_str()), "{message}");
        }
        for rule in all_rules().into_iter().filter(MaskingRule::is_masking) {
            for c in Classification::ALL {
                assert_eq!(rule.check_allowed_for(c), Ok(()), "{rule} for {c}");
            }
        }
        assert_eq!(
            MaskingRule::GeneralizeNumber { width: 0 }.check_allowed_for(Classification::Ordinary),
            Err(PolicyError::InvalidWidth { width: 0 })
        );
    }

    #[test]
    fn only_keep_is_not_masking() {
        for rule in all_rules() {
            assert_eq!(rule.is_masking(), rule != MaskingRule::Keep, "{rule}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;
        use super::MASKERS;

        /// How many characters of the input each masker may show at most.
        fn max_kept(name: &str) -> usize {
            match name {
                "mask_id_number" => 4,
                "mask_mobile" => 7,
                _ => 2,
            }
        }

        fn check_masked(input: &str) -> Result<(), TestCaseError> {
            for (name, f) in MASKERS {
                let out = f(input);
                if !input.is_empty() && !input.contains('*') {
                    prop_assert_ne!(&out, input, "{} returned its input", name);
                }
                let shown = out.chars().filter(|c| *c != '*').count();
                prop_assert!(
                    shown <= max_kept(name),
                    "{} showed {} characters",
                    name,
                    shown
                );
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn maskers_hide_any_string(input in any::<String>()) {
                check_masked(&input)?;
            }

            #[test]
            fn maskers_hide_id_like_strings(input in "(\\+86)?[0-9Xx +-]{0,24}") {
                check_masked(&input)?;
            }

            #[test]
            fn maskers_hide_chinese_names(input in "[\u{4e00}-\u{9fa5}]{0,6}") {
                check_masked(&input)?;
            }

            #[test]
            fn dates_never_panic(days in any::<i32>()) {
                let year = generalize_date(days, DateGranularity::Year);
                let month = generalize_date(days, DateGranularity::Month);
                prop_assert!(month.starts_with(&year));
            }

            #[test]
            fn integer_buckets_hold_their_value(v in any::<i64>(), width in 1..=i64::MAX) {
                let bucket = generalize_int(v, width);
                let inner = bucket.strip_prefix('[').and_then(|b| b.strip_suffix(')'));
                let (lo, hi) = inner.and_then(|b| b.split_once(',')).expect("bucket form");
                let lo: i64 = lo.parse().expect("lower bound");
                let hi: i64 = hi.parse().expect("upper bound");
                prop_assert!(lo <= v);
                prop_assert!(v < hi || hi == i64::MAX);
            }

            #[test]
            fn float_buckets_never_panic(v in any::<f64>(), width in any::<i64>()) {
                let bucket = generalize_float(v, width);
                prop_assert!(bucket == "*" || bucket.starts_with('['));
            }
        }
    }

    #[track_caller]
    fn check_covers(function: &str, column: &str, expected: bool) {
        let function: MaskingRule = function.parse().unwrap();
        let column: MaskingRule = column.parse().unwrap();
        assert_eq!(
            function.covers(&column),
            expected,
            "{function} over {column}"
        );
    }

    #[test]
    fn a_masking_function_covers_only_a_rule_at_least_as_coarse() {
        check_covers("pseudonym", "pseudonym", true);
        check_covers("pseudonym", "partial_id", true);
        check_covers("pseudonym", "partial_mobile", true);
        check_covers("pseudonym", "partial_name", true);
        check_covers("partial_id", "partial_id", true);
        check_covers("partial_id", "pseudonym", false);
        check_covers("partial_mobile", "partial_id", false);
        check_covers("partial_name", "pseudonym", false);
        check_covers("generalize_date:year", "generalize_date:month", true);
        check_covers("generalize_date:month", "generalize_date:month", true);
        check_covers("generalize_date:month", "generalize_date:year", false);
        check_covers("generalize_number:100", "generalize_number:100", true);
        check_covers("generalize_number:500", "generalize_number:100", true);
        check_covers("generalize_number:150", "generalize_number:100", false);
        check_covers("generalize_number:1", "generalize_number:100", false);
        check_covers("generalize_number:100", "generalize_date:year", false);
        check_covers("generalize_date:year", "generalize_number:100", false);
        for rule in [
            "pseudonym",
            "partial_id",
            "generalize_date:year",
            "generalize_number:1000",
        ] {
            check_covers(rule, "suppress", false);
            check_covers(rule, "keep", true);
        }
    }
}
