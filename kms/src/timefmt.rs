//! UTC times for RFC 3339 audit timestamps and certificate validity dates, on the `time`
//! crate (proleptic Gregorian calendar). Years past 9999, which neither RFC 3339 nor X.509
//! dates can hold, read as the last instant of 9999.

use std::time::{SystemTime, UNIX_EPOCH};

use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Seconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A Unix time as a UTC date-time, clamped to the end of year 9999.
fn utc(secs: u64) -> OffsetDateTime {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .filter(|dt| dt.year() <= 9999)
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc())
}

/// A UTC date: (year, month 1–12, day 1–31). Only the host tools' certificates use it.
#[cfg(any(test, feature = "host-tools"))]
pub fn civil_from_unix(secs: u64) -> (i64, u8, u8) {
    let dt = utc(secs);
    (i64::from(dt.year()), u8::from(dt.month()), dt.day())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for `now`.
pub fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix time.
pub fn rfc3339(secs: u64, millis: u32) -> String {
    let dt = utc(secs)
        .replace_millisecond(u16::try_from(millis.min(999)).unwrap_or(999))
        .unwrap_or_else(|_| utc(secs));
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    // Every component of a year-0..=9999 date-time has a field in this format.
    dt.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_format_exactly() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn certificate_dates_are_utc_days() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1));
        assert_eq!(civil_from_unix(951_868_799), (2000, 2, 29));
        assert_eq!(civil_from_unix(1_700_000_000), (2023, 11, 14));
        assert_eq!(civil_from_unix(u64::MAX), (9999, 12, 31));
    }
}
