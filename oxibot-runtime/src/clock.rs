//! Unix seconds as UTC calendar text, without a date crate: `oxibotctl`
//! and the config tools print times, and pulling a time-zone library into
//! them for that would be waste.

/// (year, month, day, seconds into the day) of a Unix time.
fn civil(secs: i64) -> (i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Howard Hinnant's days → civil date.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day, rest)
}

/// `2026-11-29T20:33:10+00:00` (RFC 3339).
pub fn rfc3339_utc(secs: i64) -> String {
    let (y, m, d, rest) = civil(secs);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `2026-11-29 20:33:10Z`, for people.
pub fn utc(secs: i64) -> String {
    let (y, m, d, rest) = civil(secs);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_instants() {
        assert_eq!(super::rfc3339_utc(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(super::rfc3339_utc(1_798_617_600), "2026-12-30T08:00:00+00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(super::utc(-1), "1969-12-31 23:59:59Z");
    }
}
