//! Governance rules as pure decisions: authorization terms and their renewal window (R25),
//! staff qualification (R8, R9) and the resident ID numbers of real-name registration.
//!
//! Times are milliseconds since the Unix epoch, UTC; months are calendar months.

use crate::calendar::{civil_from_days, days_from_civil, is_date};
use crate::ids::id_number_check_char;
use crate::{Action, Role};

/// Authorization term when the configuration says nothing (R25: three years).
pub const DEFAULT_AUTHORIZATION_YEARS: u32 = 3;
/// The longest term any configuration may allow (R25: five years where the local rule
/// allows it).
pub const MAX_AUTHORIZATION_YEARS: u32 = 5;
/// Renewal opens this many months before an authorization ends (R25).
pub const RENEWAL_WINDOW_MONTHS: i32 = 6;

const DAY_MS: i64 = 86_400_000;

/// Why an authorization term is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermError {
    /// The term ends before (or when) it starts.
    #[error("the term must end after it starts")]
    Empty,
    /// Longer than the configured maximum.
    #[error(
        "the term may last at most {max_years} years (until {latest} for this start), not until {until}"
    )]
    TooLong {
        /// The configured maximum.
        max_years: u32,
        /// The latest allowed end, `YYYY-MM-DD`.
        latest: String,
        /// The end asked for, `YYYY-MM-DD`.
        until: String,
    },
    /// The configured maximum itself is out of range.
    #[error("the maximum authorization term must be 1 to {MAX_AUTHORIZATION_YEARS} years, not {0}")]
    BadMaximum(u32),
}

/// Checks a configured maximum term in years.
///
/// # Errors
/// [`TermError::BadMaximum`] outside 1..=5.
pub fn check_max_years(max_years: u32) -> Result<(), TermError> {
    if (1..=MAX_AUTHORIZATION_YEARS).contains(&max_years) {
        Ok(())
    } else {
        Err(TermError::BadMaximum(max_years))
    }
}

/// Checks an authorization term `[from_ms, until_ms)` against `max_years` calendar years.
///
/// # Errors
/// [`TermError`] naming what is wrong.
pub fn check_term(from_ms: i64, until_ms: i64, max_years: u32) -> Result<(), TermError> {
    check_max_years(max_years)?;
    if until_ms <= from_ms {
        return Err(TermError::Empty);
    }
    let latest = add_months(from_ms, 12 * max_years as i32);
    if until_ms > latest {
        return Err(TermError::TooLong {
            max_years,
            latest: format_date(latest),
            until: format_date(until_ms),
        });
    }
    Ok(())
}

/// When renewal of a term ending at `until_ms` opens: six calendar months before.
pub fn renewal_opens_at(until_ms: i64) -> i64 {
    add_months(until_ms, -RENEWAL_WINDOW_MONTHS)
}

/// `ms` moved by `months` calendar months, the day clamped to the target month's length
/// (31 August − 6 months = 28 or 29 February); the time of day is kept.
pub fn add_months(ms: i64, months: i32) -> i64 {
    let days = ms.div_euclid(DAY_MS);
    let time = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let total = y * 12 + i64::from(m) - 1 + i64::from(months);
    let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
    let nd = d.min(crate::calendar::days_in_month(ny, nm));
    days_from_civil(ny, nm, nd) * DAY_MS + time
}

/// `YYYY-MM-DD` (UTC) of a time in ms.
pub fn format_date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

// ------------------------------------------------------------------ ID numbers

/// A resident ID number normalised for registration: 18 characters, 17 digits, a real
/// birth date, the right check character (`x` upper-cased).
///
/// # Errors
/// A message naming what is wrong, never the number itself.
pub fn normalize_id_number(text: &str) -> Result<String, &'static str> {
    let s = text.trim().to_ascii_uppercase();
    if s.len() != 18 || !s.is_ascii() {
        return Err("an ID number has 18 characters");
    }
    let Some(check) = id_number_check_char(&s[..17]) else {
        return Err("an ID number starts with 17 digits");
    };
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    let (y, m, d) = (i64::from(num(6..10)), num(10..12), num(12..14));
    if !is_date(y, m, d) {
        return Err("the ID number's birth date is not a date");
    }
    if !s.ends_with(check) {
        return Err("the ID number's check character is wrong");
    }
    Ok(s)
}

/// The registry's masked form of an ID number: the first 3 and last 4 characters
/// (`330***********1236`).
pub fn registry_mask(id_number: &str) -> String {
    let chars: Vec<char> = id_number.trim().chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len());
    }
    let n = chars.len();
    chars[..3]
        .iter()
        .chain(std::iter::repeat_n(&'*', n - 7))
        .chain(&chars[n - 4..])
        .collect()
}

// ------------------------------------------------------------------ qualification

/// Whether a role must be registered, trained and under an NDA to act (R8, R9). Engineers
/// process data; stewards, reviewers and admins decide on it. Auditors (read-only
/// supervision of metadata and the trail) and recipients (application units' delivery
/// endpoints) are not gated.
pub fn requires_qualification(role: Role) -> bool {
    matches!(
        role,
        Role::Engineer | Role::DataSteward | Role::Reviewer | Role::PlatformAdmin
    )
}

/// Actions an unqualified admin may still take, so that a domain whose admins' training
/// lapsed is not locked out: seeing who they are and their notifications, and recording
/// qualifications (each recorded with who recorded it, in the audit trail). Everyone else
/// who must be qualified can do nothing at all until requalified.
pub fn allowed_while_unqualified(role: Role, action: Action) -> bool {
    role == Role::PlatformAdmin
        && matches!(
            action,
            Action::WhoAmI
                | Action::ViewNotifications
                | Action::QualifyPrincipal
                | Action::ViewQualification
        )
}

/// A principal's qualification as recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QualificationFacts {
    /// Real-name registration with an ID number.
    pub registered: bool,
    /// Training passed: (date, valid until).
    pub training: Option<(i64, i64)>,
    /// Confidentiality agreement: (signed, valid until).
    pub nda: Option<(i64, i64)>,
}

/// What keeps a principal from acting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QualificationGap {
    /// No real-name registration (ID number) is recorded.
    #[error("no real-name registration (ID number) is recorded")]
    NotRegistered,
    /// No training is recorded.
    #[error("no passed training is recorded")]
    NoTraining,
    /// The training is not valid yet.
    #[error("the recorded training is valid only from {0}")]
    TrainingNotYet(String),
    /// The training expired.
    #[error("the training expired on {0}")]
    TrainingExpired(String),
    /// No confidentiality agreement is recorded.
    #[error("no confidentiality agreement (NDA) is recorded")]
    NoNda,
    /// The NDA is not in force yet.
    #[error("the confidentiality agreement (NDA) is in force only from {0}")]
    NdaNotYet(String),
    /// The NDA expired.
    #[error("the confidentiality agreement (NDA) expired on {0}")]
    NdaExpired(String),
}

/// The first missing or lapsed requirement of `facts` at `now_ms`, if any.
pub fn qualification_gap(facts: &QualificationFacts, now_ms: i64) -> Option<QualificationGap> {
    if !facts.registered {
        return Some(QualificationGap::NotRegistered);
    }
    match facts.training {
        None => return Some(QualificationGap::NoTraining),
        Some((from, _)) if now_ms < from => {
            return Some(QualificationGap::TrainingNotYet(format_date(from)));
        }
        Some((_, until)) if now_ms >= until => {
            return Some(QualificationGap::TrainingExpired(format_date(until)));
        }
        Some(_) => {}
    }
    match facts.nda {
        None => Some(QualificationGap::NoNda),
        Some((from, _)) if now_ms < from => Some(QualificationGap::NdaNotYet(format_date(from))),
        Some((_, until)) if now_ms >= until => {
            Some(QualificationGap::NdaExpired(format_date(until)))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Midnight UTC of a date.
    fn date(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d) * DAY_MS
    }

    #[test]
    fn calendar_months_clamp_to_the_month_end() {
        assert_eq!(format_date(add_months(date(2026, 8, 31), -6)), "2026-02-28");
        assert_eq!(format_date(add_months(date(2028, 8, 31), -6)), "2028-02-29");
        assert_eq!(
            format_date(add_months(date(2026, 1, 15), 12 * 3)),
            "2029-01-15"
        );
        assert_eq!(format_date(add_months(date(2026, 3, 1), -3)), "2025-12-01");
        let t = date(2026, 5, 4) + 3_600_000 + 7;
        assert_eq!(add_months(t, 1) - date(2026, 6, 4), 3_600_000 + 7);
        assert_eq!(format_date(date(1970, 1, 1)), "1970-01-01");
    }

    #[test]
    fn terms_are_limited_to_the_configured_years() {
        let from = date(2026, 1, 15);
        assert_eq!(check_term(from, date(2029, 1, 15), 3), Ok(()));
        assert!(matches!(
            check_term(from, date(2029, 1, 16), 3),
            Err(TermError::TooLong { max_years: 3, ref latest, .. }) if latest == "2029-01-15"
        ));
        assert_eq!(check_term(from, date(2031, 1, 15), 5), Ok(()));
        assert!(check_term(from, date(2031, 1, 16), 5).is_err());
        assert_eq!(check_term(from, from, 3), Err(TermError::Empty));
        assert_eq!(
            check_term(from, date(2027, 1, 1), 6),
            Err(TermError::BadMaximum(6))
        );
        assert_eq!(check_max_years(0), Err(TermError::BadMaximum(0)));
        assert_eq!(check_max_years(5), Ok(()));
    }

    #[test]
    fn renewal_opens_six_months_before_the_end() {
        assert_eq!(
            format_date(renewal_opens_at(date(2029, 1, 15))),
            "2028-07-15"
        );
        assert_eq!(
            format_date(renewal_opens_at(date(2029, 8, 31))),
            "2029-02-28"
        );
        let until = date(2027, 6, 1) + 12_345;
        assert_eq!(renewal_opens_at(until), date(2026, 12, 1) + 12_345);
    }

    #[test]
    fn id_numbers_are_checked_and_masked() {
        assert_eq!(
            normalize_id_number(" 330203198807071233 "),
            Ok("330203198807071233".into())
        );
        assert_eq!(id_number_check_char("11010519491231002"), Some('X'));
        assert_eq!(
            normalize_id_number("11010519491231002x"),
            Ok("11010519491231002X".into())
        );
        assert!(normalize_id_number("330203198807071236").is_err());
        assert!(normalize_id_number("330203198813071233").is_err());
        assert!(normalize_id_number("33020319880707123").is_err());
        assert!(normalize_id_number("33020319880707123A1").is_err());
        assert_eq!(registry_mask("330203198807071236"), "330***********1236");
        assert_eq!(registry_mask("1234567"), "*******");
        let masked = registry_mask("11010519491231002X");
        assert!(!masked.contains("19491231"));
        assert_eq!(masked.chars().count(), 18);
    }

    #[test]
    fn qualification_names_the_first_gap() {
        let now = date(2026, 11, 23);
        let ok = QualificationFacts {
            registered: true,
            training: Some((date(2026, 1, 1), date(2027, 1, 1))),
            nda: Some((date(2026, 1, 1), date(2029, 1, 1))),
        };
        assert_eq!(qualification_gap(&ok, now), None);
        let unregistered = QualificationFacts {
            registered: false,
            ..ok
        };
        assert_eq!(
            qualification_gap(&unregistered, now),
            Some(QualificationGap::NotRegistered)
        );
        let lapsed = QualificationFacts {
            training: Some((date(2025, 1, 1), date(2026, 11, 1))),
            ..ok
        };
        let gap = qualification_gap(&lapsed, now).unwrap();
        assert_eq!(gap.to_string(), "the training expired on 2026-11-01");
        let no_nda = QualificationFacts { nda: None, ..ok };
        assert_eq!(
            qualification_gap(&no_nda, now),
            Some(QualificationGap::NoNda)
        );
        let nda_lapsed = QualificationFacts {
            nda: Some((date(2020, 1, 1), now)),
            ..ok
        };
        assert_eq!(
            qualification_gap(&nda_lapsed, now),
            Some(QualificationGap::NdaExpired("2026-11-23".into()))
        );
        let future = QualificationFacts {
            training: Some((date(2027, 1, 1), date(2028, 1, 1))),
            ..ok
        };
        assert_eq!(
            qualification_gap(&future, now),
            Some(QualificationGap::TrainingNotYet("2027-01-01".into()))
        );
    }

    #[test]
    fn who_must_be_qualified() {
        for role in Role::ALL {
            assert_eq!(
                requires_qualification(role),
                !matches!(role, Role::Auditor | Role::Recipient),
                "{role}"
            );
            assert_eq!(
                allowed_while_unqualified(role, Action::WhoAmI),
                role == Role::PlatformAdmin
            );
            assert!(!allowed_while_unqualified(role, Action::SubmitJob));
            assert!(!allowed_while_unqualified(role, Action::CreateTenant));
            assert_eq!(
                allowed_while_unqualified(role, Action::QualifyPrincipal),
                role == Role::PlatformAdmin
            );
        }
    }
}
