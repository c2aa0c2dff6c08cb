//! The server's clock: the system clock, plus an offset only a test build can set.
//!
//! The rules that depend on the date (authorization terms and their renewal windows, lab
//! access, certificate and qualification records, retention, holds, leases) take `now` as an
//! argument; the edges read it here, through [`now_ms`], and the database's clock (leases)
//! through [`db_skew`]. TLS handshakes keep the system clock: a peer checks certificates on
//! its own.
//!
//! Builds with the `test-clock` feature — the test suite's, never a release build of the
//! binary — read the offset in milliseconds from the file named by `SHUYU_TEST_CLOCK_FILE`
//! at every reading (missing or empty: none). A test then moves time forward for every
//! server of a domain at once, instead of waiting out a term or a lease. A server that finds
//! the variable set logs it and records it in its start's audit record.

use std::path::PathBuf;

/// The environment variable naming the offset file (test builds only).
pub const TEST_CLOCK_ENV: &str = "SHUYU_TEST_CLOCK_FILE";

/// Milliseconds since the Unix epoch, on the server's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now()
        .timestamp_millis()
        .saturating_add(offset_ms())
}

/// How far this server's clock is ahead of the system's: 0 but in a test build whose test
/// moved time forward.
pub fn offset_ms() -> i64 {
    test_clock_file().map_or(0, |file| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// The offset file a test build reads, if its variable is set; `None` in other builds.
pub fn test_clock_file() -> Option<&'static PathBuf> {
    #[cfg(feature = "test-clock")]
    {
        static FILE: std::sync::LazyLock<Option<PathBuf>> =
            std::sync::LazyLock::new(|| std::env::var_os(TEST_CLOCK_ENV).map(PathBuf::from));
        FILE.as_ref()
    }
    #[cfg(not(feature = "test-clock"))]
    {
        None
    }
}

/// The same offset for the database's clock; `None` where no offset can be set.
pub(crate) fn db_skew() -> Option<shuyu_meta::ClockSkew> {
    test_clock_file().map(|_| shuyu_meta::ClockSkew::new(offset_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_offset_the_clock_is_the_system_clock() {
        if test_clock_file().is_some() {
            return; // a test process started with the variable set
        }
        let before = chrono::Utc::now().timestamp_millis();
        let now = now_ms();
        assert!(now >= before && now - before < 1_000, "{before} {now}");
        assert_eq!(offset_ms(), 0);
        assert!(db_skew().is_none());
    }
}
