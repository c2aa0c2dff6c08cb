//! Proleptic Gregorian calendar arithmetic on day counts since 1970-01-01 (Howard Hinnant's
//! civil-date algorithms: eras of 400 years, years starting in March). The one copy that
//! authorization terms, date masking, ingest and the demo data use.

/// Whether `year` is a leap year.
#[inline]
pub fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// The number of days of `month` (1–12) in `year`; 31 for a month out of range.
#[inline]
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Whether `year`-`month`-`day` is a date (month 1–12, day within the month).
#[inline]
pub fn is_date(year: i64, month: u32, day: u32) -> bool {
    (1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day)
}

/// Days from 1970-01-01 to `year`-`month`-`day` (negative before it). Meant for real dates
/// (see [`is_date`]); other inputs give a day count, not an error.
#[inline]
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (i64::from(month) + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1–12, day 1–31) `days` days after 1970-01-01.
#[inline]
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], March-based
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        for (date, days) in [
            ((1970, 1, 1), 0),
            ((1969, 12, 31), -1),
            ((2000, 2, 29), 11_016),
            ((2000, 3, 1), 11_017),
            ((2024, 2, 29), 19_782),
            ((2026, 1, 1), 20_454),
            ((2026, 10, 1), 20_727),
            ((1900, 3, 1), -25_508),
            ((1600, 1, 1), -135_140),
            ((-1, 12, 31), -719_529),
            ((9999, 12, 31), 2_932_896),
        ] {
            let (y, m, d) = date;
            assert_eq!(days_from_civil(y, m, d), days, "{date:?}");
            assert_eq!(civil_from_days(days), date, "{days}");
        }
    }

    #[test]
    fn leap_years_and_month_lengths() {
        assert!(is_leap(2024) && is_leap(2000) && is_leap(1600) && is_leap(0));
        assert!(!is_leap(2026) && !is_leap(1900) && !is_leap(2100));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2026, 4), 30);
        assert_eq!(days_in_month(2026, 12), 31);
        assert!(is_date(2024, 2, 29) && !is_date(2026, 2, 29));
        assert!(!is_date(2026, 13, 1) && !is_date(2026, 0, 1) && !is_date(2026, 4, 31));
        assert!(!is_date(2026, 1, 0));
    }

    #[test]
    fn every_day_of_eight_centuries_round_trips_in_order() {
        let start = days_from_civil(1600, 1, 1);
        let mut previous = civil_from_days(start - 1);
        for days in start..days_from_civil(2401, 1, 1) {
            let (y, m, d) = civil_from_days(days);
            assert!(is_date(y, m, d), "{days}");
            assert_eq!(days_from_civil(y, m, d), days);
            let next_day = (previous.0, previous.1, previous.2 + 1);
            let next_month = (previous.0, previous.1 + 1, 1);
            let next_year = (previous.0 + 1, 1, 1);
            assert!(
                [next_day, next_month, next_year].contains(&(y, m, d)),
                "{days}"
            );
            previous = (y, m, d);
        }
    }
}
