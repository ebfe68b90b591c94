//! Transcript timestamps (RFC 3339, UTC, usually with milliseconds) as Unix
//! milliseconds, with a fast path for the exact shape Claude Code writes.

/// Unix milliseconds of an RFC 3339 timestamp, or `None` if it is not one.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    fast_path(text.as_bytes()).or_else(|| {
        text.parse::<jiff::Timestamp>()
            .ok()
            .map(|ts| ts.as_millisecond())
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` exactly.
fn fast_path(b: &[u8]) -> Option<i64> {
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + milli)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_agrees_with_jiff() {
        for text in [
            "2026-02-12T16:02:25.284Z",
            "1970-01-01T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
            "2000-03-01T00:00:00.001Z",
        ] {
            let jiff: jiff::Timestamp = text.parse().expect("jiff");
            assert_eq!(
                parse_timestamp_ms(text),
                Some(jiff.as_millisecond()),
                "{text}"
            );
        }
    }

    #[test]
    fn other_shapes_fall_back_or_fail() {
        assert_eq!(
            parse_timestamp_ms("2025-06-14T11:00:00Z"),
            Some(1_749_898_800_000)
        );
        assert_eq!(
            parse_timestamp_ms("2025-06-14T13:00:00+02:00"),
            Some(1_749_898_800_000)
        );
        assert_eq!(parse_timestamp_ms("yesterday"), None);
        assert_eq!(parse_timestamp_ms("2025-13-14T11:00:00.000Z"), None);
    }
}
