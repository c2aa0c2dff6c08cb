//! `[oversight]` of the server configuration: the monitor's thresholds and odd hours, the
//! intervals of the periodic tasks, and the audit retention (never below R33's minimums).

use serde::Deserialize;

use crate::audit::retention::{MIN_NETWORK_LOG_DAYS, MIN_OPERATING_RECORD_DAYS, RetentionDays};
use crate::error::{Result, ServerError};

/// `[oversight]` of the server configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OversightConfig {
    /// Seconds between monitor runs (0: only on demand, `shuyu alerts scan`).
    pub monitor_interval_secs: u64,
    /// The domain's time zone for odd hours: an IANA name of a zone without daylight saving
    /// (`Asia/Shanghai`, `Asia/Urumqi`, `UTC`…) or a fixed offset such as `+08:00`.
    pub timezone: String,
    /// Odd hours, local: from this hour (inclusive)…
    pub odd_hours_start: u32,
    /// …to this hour (exclusive); start > end wraps past midnight; start = end: none.
    pub odd_hours_end: u32,
    /// Window of the streak rules, minutes.
    pub window_minutes: u64,
    /// Denied calls by one principal within the window that raise an alert.
    pub denied_calls_threshold: u64,
    /// Consecutive refused (failed checks) or rejected exports of one tenant.
    pub rejected_exports_streak: u64,
    /// Jobs of one tenant failing with a withheld (value-dependent) error within the window.
    pub job_errors_threshold: u64,
    /// A day's volume above this many times the tenant's own daily average is unusual…
    pub volume_factor: f64,
    /// …over this many preceding days…
    pub volume_baseline_days: u32,
    /// …and only above these floors (a quiet tenant's first busy day is not an anomaly).
    pub volume_min_jobs: u64,
    pub volume_min_bytes: u64,
    pub volume_min_rows: u64,
    pub volume_min_downloads: u64,
    /// Seconds between stored checkpoints (0: only on demand).
    pub checkpoint_interval_secs: u64,
    /// Seconds between retention purges (0: only on demand, `shuyu audit purge`).
    pub purge_interval_secs: u64,
    /// Retention of network and access logs (reads, denials), days; at least 183.
    pub network_log_days: u32,
    /// Retention of operating records (changes, approvals, exports), days; at least 7305.
    pub operating_record_days: u32,
}

impl Default for OversightConfig {
    fn default() -> Self {
        OversightConfig {
            monitor_interval_secs: 300,
            timezone: "Asia/Shanghai".into(),
            odd_hours_start: 22,
            odd_hours_end: 6,
            window_minutes: 60,
            denied_calls_threshold: 5,
            rejected_exports_streak: 3,
            job_errors_threshold: 3,
            volume_factor: 10.0,
            volume_baseline_days: 30,
            volume_min_jobs: 50,
            volume_min_bytes: 10 << 30,
            volume_min_rows: 100_000_000,
            volume_min_downloads: 50,
            checkpoint_interval_secs: 3600,
            purge_interval_secs: 86_400,
            network_log_days: MIN_NETWORK_LOG_DAYS,
            operating_record_days: MIN_OPERATING_RECORD_DAYS,
        }
    }
}

impl OversightConfig {
    /// How long each audit record class is kept.
    pub fn retention(&self) -> RetentionDays {
        RetentionDays {
            network_log_days: self.network_log_days,
            operating_record_days: self.operating_record_days,
        }
    }

    /// Checks value ranges; retention below the legal minimums is refused.
    ///
    /// # Errors
    /// Names the offending key.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| {
            Err(ServerError::InvalidArgument(format!(
                "configuration: {msg}"
            )))
        };
        self.utc_offset_secs()?;
        if self.odd_hours_start > 23 || self.odd_hours_end > 24 {
            return bad("oversight.odd_hours_start must be 0–23 and odd_hours_end 0–24".into());
        }
        if self.network_log_days < MIN_NETWORK_LOG_DAYS {
            return bad(format!(
                "oversight.network_log_days must be at least {MIN_NETWORK_LOG_DAYS} (six months)"
            ));
        }
        if self.operating_record_days < MIN_OPERATING_RECORD_DAYS {
            return bad(format!(
                "oversight.operating_record_days must be at least {MIN_OPERATING_RECORD_DAYS} \
                 (twenty years)"
            ));
        }
        if !(self.volume_factor.is_finite() && self.volume_factor >= 1.0) {
            return bad("oversight.volume_factor must be at least 1".into());
        }
        for (key, value) in [
            ("window_minutes", self.window_minutes),
            ("denied_calls_threshold", self.denied_calls_threshold),
            ("rejected_exports_streak", self.rejected_exports_streak),
            ("job_errors_threshold", self.job_errors_threshold),
            ("volume_baseline_days", u64::from(self.volume_baseline_days)),
        ] {
            if value == 0 {
                return bad(format!("oversight.{key} must be at least 1"));
            }
        }
        Ok(())
    }

    /// The time zone's offset from UTC, seconds.
    ///
    /// # Errors
    /// An unknown zone name or malformed offset.
    pub fn utc_offset_secs(&self) -> Result<i32> {
        let tz = self.timezone.trim();
        let fixed = match tz {
            "UTC" | "Etc/UTC" | "GMT" => Some(0),
            "Asia/Shanghai" | "Asia/Chongqing" | "Asia/Harbin" | "Asia/Hong_Kong"
            | "Asia/Macau" | "Asia/Taipei" | "PRC" => Some(8 * 3600),
            "Asia/Urumqi" | "Asia/Kashgar" => Some(6 * 3600),
            _ => None,
        };
        if let Some(offset) = fixed {
            return Ok(offset);
        }
        let parsed = (|| {
            let (sign, rest) = match tz.as_bytes().first()? {
                b'+' => (1, &tz[1..]),
                b'-' => (-1, &tz[1..]),
                _ => return None,
            };
            let (h, m) = rest.split_once(':')?;
            let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
            ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
        })();
        parsed.ok_or_else(|| {
            ServerError::InvalidArgument(format!(
                "configuration: oversight.timezone '{tz}' is not a known zone without daylight \
                 saving nor an offset like +08:00"
            ))
        })
    }

    /// Whether `at_ms` falls in the odd hours, local time.
    pub fn is_odd_hour(&self, at_ms: i64, offset_secs: i32) -> bool {
        let local_secs = at_ms.div_euclid(1000) + i64::from(offset_secs);
        let hour = u32::try_from(local_secs.rem_euclid(86_400) / 3600).unwrap_or(0);
        let (start, end) = (self.odd_hours_start, self.odd_hours_end);
        match start.cmp(&end) {
            std::cmp::Ordering::Less => (start..end).contains(&hour),
            std::cmp::Ordering::Greater => hour >= start || hour < end,
            std::cmp::Ordering::Equal => false,
        }
    }
}
