//! Value types that read the way operators write them: `"10s"`, `"64KiB"`, `"12.5%"`.
//!
//! Layer: wire. May import only its own layer; never edge, control, server, request, config,
//! snapshot, observe, clients, domain, policy.

pub mod time;

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration written as `"250ms"`, `"10s"`, `"5m"`, `"2h"`, `"30d"`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// Parses `"250ms"`, `"1m30s"`, `"2h"`; every part needs a unit so `"5"` in a string is not ambiguous.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            "" => return Err(format!("`{text}` needs a unit (ms, s, m, h, d)")),
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m, h, d)"
                ))
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"250ms\", \"10s\", \"2h\" or a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(|s| HumanDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes: a number, or `"64KiB"`, `"1MiB"`, `"16kB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let number: u64 = t[..split]
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as \"64KiB\""))?;
    let factor = match t[split..].trim() {
        "" | "B" => 1,
        "k" | "kB" | "KB" => 1000,
        "KiB" | "K" => 1024,
        "MB" => 1_000_000,
        "MiB" | "M" => 1024 * 1024,
        unit => return Err(format!("`{text}`: unknown unit `{unit}` (use B, KiB, MiB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 65536 or \"64KiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A share of shoppers in basis points (0..=10000), written in percent: `10`, `12.5`, `"0.25%"`.
///
/// Parsing keeps the written text exact (no float rounding) so `"0.01%"` is exactly 1 bp; range
/// and precision are checked in `compile` so the error carries the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share(pub Result<u16, ShareError>);

/// Why a written share is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareError {
    /// Not a number.
    Malformed,
    /// Below 0 or above 100.
    OutOfRange,
    /// Finer than 0.01%.
    TooPrecise,
}

impl fmt::Display for ShareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShareError::Malformed => "not a percentage (write e.g. 10 or \"12.5%\")",
            ShareError::OutOfRange => "must be between 0 and 100 percent",
            ShareError::TooPrecise => "granularity is 0.01 percent (one basis point)",
        })
    }
}

/// Parses a percentage into basis points without going through floating point.
pub fn parse_percent(text: &str) -> Result<u16, ShareError> {
    let t = text.trim().trim_end_matches('%').trim();
    if t.starts_with('-') {
        return Err(ShareError::OutOfRange);
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(ShareError::Malformed);
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ShareError::Malformed);
    }
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > 2 {
        return Err(ShareError::TooPrecise);
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| ShareError::OutOfRange)?
    };
    let mut hundredths: u64 = 0;
    for (i, b) in frac_trimmed.bytes().enumerate() {
        hundredths += u64::from(b - b'0') * if i == 0 { 10 } else { 1 };
    }
    let bp = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(hundredths))
        .ok_or(ShareError::OutOfRange)?;
    if bp > 10_000 {
        return Err(ShareError::OutOfRange);
    }
    Ok(bp as u16)
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Share;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a percentage such as 10, 12.5 or \"12.5%\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Share(parse_percent(&v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                // JSON (the admin API) gives unsigned integers.
                Ok(Share(parse_percent(&v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // Shortest round-trip formatting gives back what was written (12.5 -> "12.5").
                Ok(Share(parse_percent(&v.to_string())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Share(parse_percent(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or a list of them: `method = "GET"` or `method = ["GET", "HEAD"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values as a slice, whichever way they were written.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("10").unwrap_err().contains("unit"));
        assert!(parse_duration("10 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12 furlongs").is_err());
    }

    #[test]
    fn percentages_are_exact_basis_points() {
        let cases = [
            ("0", Ok(0)),
            ("0.01", Ok(1)),
            ("0.01%", Ok(1)),
            ("12.5", Ok(1250)),
            ("12.50%", Ok(1250)),
            ("100", Ok(10_000)),
            ("100.01", Err(ShareError::OutOfRange)),
            ("-1", Err(ShareError::OutOfRange)),
            ("0.001", Err(ShareError::TooPrecise)),
            ("ten", Err(ShareError::Malformed)),
            ("", Err(ShareError::Malformed)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_percent(text), want, "{text}");
        }
    }
}
