//! Times for people and for logs: RFC 3339 UTC timestamps (with milliseconds, formatted on the
//! stack, for the access log) and "in 11h 58m" for CLI output and status pages.
//!
//! The access log writes one per line; pulling in a calendar crate for a single fixed format is not
//! worth the dependency, and this never allocates.

use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`
pub const LEN: usize = 24;

/// Formats `t` (clamped to the Unix epoch and year 9999) into `buf` and returns it as text.
pub fn format(t: SystemTime, buf: &mut [u8; LEN]) -> &str {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    // 253402300799 = 9999-12-31T23:59:59Z: keeps the year four digits.
    let secs = d.as_secs().min(253_402_300_799);
    let millis = d.subsec_millis();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days);
    let fields: [(u64, usize); 7] = [
        (y, 4),
        (u64::from(m), 2),
        (u64::from(dd), 2),
        (rem / 3600, 2),
        (rem / 60 % 60, 2),
        (rem % 60, 2),
        (u64::from(millis), 3),
    ];
    let seps = [b'-', b'-', b'T', b':', b':', b'.', b'Z'];
    let mut at = 0;
    for ((mut v, width), sep) in fields.into_iter().zip(seps) {
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        buf[at + width] = sep;
        at += width + 1;
    }
    debug_assert_eq!(at, LEN);
    // Only ASCII digits and separators were written.
    std::str::from_utf8(buf).unwrap_or("1970-01-01T00:00:00.000Z")
}

/// Proleptic Gregorian date of a day count since 1970-01-01. Works in 400-year eras (146,097 days
/// each) with years starting in March, so the leap day falls at the end of the shifted year.
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, millis: u64) -> String {
        let mut buf = [0; LEN];
        format(
            UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis),
            &mut buf,
        )
        .to_string()
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_735_689_599, 999), "2024-12-31T23:59:59.999Z");
        assert_eq!(at(1_709_164_800 + 3_723, 42), "2024-02-29T01:02:03.042Z");
    }

    #[test]
    fn every_day_round_trips() {
        // Walk 1970..2100 day by day and check the calendar never skips or repeats a day.
        let (mut y, mut m, mut d) = (1970u64, 1u32, 1u32);
        for days in 0..47_482u64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}

/// `epoch` (unix seconds) as RFC 3339 UTC to the second: `2026-12-04T18:00:00Z`.
pub fn rfc3339_secs(epoch: u64) -> String {
    let mut buf = [0u8; LEN];
    let t = UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    let s = format(t, &mut buf);
    format!("{}Z", &s[..19])
}

/// How far `epoch` is from `now` (both unix seconds), the way people say it: `in 11h 58m`,
/// `3m 5s ago`, `now`. Two units at most: the first is what matters at 3 a.m.
pub fn relative(epoch: u64, now: u64) -> String {
    let (d, future) = if epoch >= now {
        (epoch - now, true)
    } else {
        (now - epoch, false)
    };
    if d == 0 {
        return "now".into();
    }
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = d;
    for (size, name) in units {
        if rest >= size && parts.len() < 2 {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            break;
        }
    }
    let span = parts.join(" ");
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// `2026-12-04T18:00:00Z (in 11h 58m)`.
pub fn when(epoch: u64, now: u64) -> String {
    format!("{} ({})", rfc3339_secs(epoch), relative(epoch, now))
}

#[cfg(test)]
mod human_tests {
    use super::*;

    #[test]
    fn rfc3339_to_the_second() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(1_796_403_206), "2026-12-04T16:53:26Z");
    }

    #[test]
    fn relative_says_two_units_at_most() {
        let now = 1_000_000;
        assert_eq!(relative(now, now), "now");
        assert_eq!(relative(now + 11 * 3600 + 58 * 60 + 7, now), "in 11h 58m");
        assert_eq!(relative(now - 185, now), "3m 5s ago");
        assert_eq!(relative(now + 2 * 86_400 + 5, now), "in 2d");
        assert_eq!(relative(now + 86_400 + 3600, now), "in 1d 1h");
        assert_eq!(when(0, 60), "1970-01-01T00:00:00Z (1m ago)");
    }
}
