//! Time as the collateral writes it: Unix seconds in, RFC 3339 UTC (`2025-06-19T10:56:11Z`,
//! Intel's form in TCB info and QE identity) or `time::OffsetDateTime` (for rcgen) out.

use time::OffsetDateTime;

use crate::SimError;

/// Seconds since the Unix epoch, now. A clock before 1970 reads as 0.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix seconds as a date-time rcgen can encode (years 1970..=9999).
pub(crate) fn datetime(unix: u64, what: &'static str) -> Result<OffsetDateTime, SimError> {
    let dt = i64::try_from(unix)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .filter(|dt| dt.year() <= 9999)
        .ok_or_else(|| SimError::InvalidOption {
            what,
            detail: format!("{unix} is not a Unix time before year 10000"),
        })?;
    Ok(dt)
}

/// Unix seconds as RFC 3339 in UTC with a `Z` suffix and no fraction.
pub(crate) fn rfc3339(unix: u64, what: &'static str) -> Result<String, SimError> {
    let dt = datetime(unix, what)?;
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_intels_form() {
        // The dcap-qvl sample's TCB info issueDate.
        assert_eq!(rfc3339(1_750_330_571, "t").unwrap(), "2025-06-19T10:56:11Z");
        assert_eq!(rfc3339(0, "t").unwrap(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn times_past_year_9999_are_rejected() {
        assert!(rfc3339(253_402_300_800, "t").is_err());
        assert!(rfc3339(u64::MAX, "t").is_err());
    }
}
