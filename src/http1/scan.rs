//! Splitting request text at ASCII delimiters (`&`, `=`, `;`, `?`, `:`), on the request path.
//!
//! `str::split(char)` and friends go through the generic `CharSearcher`, whose per-call setup
//! cost more than the search itself on 20-80 byte queries and cookies: callgrind counted ~1,600
//! instructions per redirect in it, a tenth of the request. These helpers search bytes with
//! `memchr` instead. Delimiters are ASCII, so every cut lands on a char boundary and the pieces
//! stay `&str` without re-validation.

/// Position of the first `byte` in `s`.
#[inline]
pub fn find(s: &str, byte: u8) -> Option<usize> {
    debug_assert!(byte.is_ascii());
    memchr::memchr(byte, s.as_bytes())
}

/// Position of the last `byte` in `s`.
#[inline]
pub fn rfind(s: &str, byte: u8) -> Option<usize> {
    debug_assert!(byte.is_ascii());
    memchr::memrchr(byte, s.as_bytes())
}

/// `s.split_once(byte as char)`.
#[inline]
pub fn split_once(s: &str, byte: u8) -> Option<(&str, &str)> {
    find(s, byte).map(|i| (&s[..i], &s[i + 1..]))
}

/// `s.rsplit_once(byte as char)`.
#[inline]
pub fn rsplit_once(s: &str, byte: u8) -> Option<(&str, &str)> {
    rfind(s, byte).map(|i| (&s[..i], &s[i + 1..]))
}

/// `s.split(byte as char)`: the same pieces, empty ones included (`"a&&b&"` gives `a`, ``,
/// `b`, ``), and one empty piece for an empty `s`.
#[inline]
pub fn split(s: &str, byte: u8) -> Split<'_> {
    debug_assert!(byte.is_ascii());
    Split {
        text: s,
        bytes: split_bytes(s.as_bytes(), byte),
    }
}

/// Iterator of [`split`]: [`SplitBytes`], with each piece taken back as text (cut at an ASCII
/// delimiter, so on a char boundary).
#[derive(Debug, Clone)]
pub struct Split<'a> {
    text: &'a str,
    bytes: SplitBytes<'a>,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let piece = self.bytes.next()?;
        let start = piece.as_ptr() as usize - self.text.as_ptr() as usize;
        Some(&self.text[start..start + piece.len()])
    }
}

/// `n` in decimal, appended: the counterpart of [`parse_decimal`] for heads cutover writes.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let (digits, start) = decimal_digits(n);
    out.extend_from_slice(&digits[start..]);
}

/// [`push_decimal`] for text: `format!` costs hundreds of instructions per number, and this
/// runs for every response that sets a cookie.
pub fn push_decimal_str(out: &mut String, n: u64) {
    let (digits, start) = decimal_digits(n);
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// `n`'s decimal digits, right-aligned, and the index of the first.
#[inline]
fn decimal_digits(mut n: u64) -> ([u8; 20], usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    (digits, i)
}

/// `n` in hex, appended: a chunk-size line's number. Upper case, as hyper writes it both ways,
/// so the front's chunked answers are byte for byte hyper's.
pub fn push_hex(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(HEX[(n >> (i * 4) & 0xf) as usize]);
    }
}

/// `n` as sixteen lower-case hex digits, leading zeros kept (`format!("{n:016x}")`): the
/// cohort cookie's MAC, which [`parse_hex`] reads back.
pub fn push_hex16(out: &mut String, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend(
        (0..16)
            .rev()
            .map(|i| char::from(HEX[(n >> (i * 4) & 0xf) as usize])),
    );
}

/// Digits only, at most 19 of them (so no overflow), as protocol fields want them: `str::parse`
/// also takes a leading `+`.
#[inline]
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Hex digits (either case), at most 16 of them: [`parse_decimal`]'s rules in base 16, without
/// `from_str_radix`'s per-character `char::to_digit` (a cohort cookie's MAC is parsed on every
/// request).
#[inline]
pub fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        Some(n << 4 | u64::from(v))
    })
}

/// [`split`] over bytes (a header value that need not be text).
#[inline]
pub fn split_bytes(s: &[u8], byte: u8) -> SplitBytes<'_> {
    SplitBytes {
        rest: Some(s),
        byte,
    }
}

/// Iterator of [`split_bytes`].
#[derive(Debug, Clone)]
pub struct SplitBytes<'a> {
    rest: Option<&'a [u8]>,
    byte: u8,
}

impl<'a> Iterator for SplitBytes<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr(self.byte, rest) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &[&str] = &[
        "",
        "&",
        "&&",
        "a",
        "a&",
        "&a",
        "a&&b&",
        "route=product/product&product_id=42",
        "k=v=w&x",
        "é=ü&ß",
        "[::1]:8080",
        "shop.example:443",
        "a; b=c ;d=\"e\"",
    ];

    #[test]
    fn behaves_like_std() {
        for s in SAMPLES {
            for b in [b'&', b'=', b';', b':', b'?'] {
                let c = b as char;
                assert_eq!(
                    split(s, b).collect::<Vec<_>>(),
                    s.split(c).collect::<Vec<_>>(),
                    "split {s:?} at {c:?}"
                );
                assert_eq!(split_once(s, b), s.split_once(c), "{s:?} {c:?}");
                assert_eq!(rsplit_once(s, b), s.rsplit_once(c), "{s:?} {c:?}");
                assert_eq!(find(s, b), s.find(c), "{s:?} {c:?}");
                assert_eq!(rfind(s, b), s.rfind(c), "{s:?} {c:?}");
                assert_eq!(
                    split_bytes(s.as_bytes(), b).collect::<Vec<_>>(),
                    s.as_bytes().split(|&x| x == b).collect::<Vec<_>>(),
                    "split_bytes {s:?} at {c:?}"
                );
            }
        }
    }

    #[test]
    fn hex_is_parsed_as_from_str_radix_does_without_a_sign() {
        for t in ["0", "f", "F", "06bb19dc81709d40", "FFFFFFFFFFFFFFFF", "aB3"] {
            assert_eq!(
                parse_hex(t.as_bytes()),
                u64::from_str_radix(t, 16).ok(),
                "{t}"
            );
        }
        for t in ["", "+1", "-1", "g", "1 ", "10000000000000000"] {
            assert_eq!(parse_hex(t.as_bytes()), None, "{t}");
        }
    }

    #[test]
    fn numbers_are_written_as_format_writes_them() {
        let mut rng = fastrand::Rng::with_seed(7);
        let edges = [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            9999,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        for n in edges
            .into_iter()
            .chain((0..500).map(|_| rng.u64(..) >> rng.u32(0..64)))
        {
            let (mut text, mut bytes, mut hex) = (String::new(), Vec::new(), String::new());
            push_decimal_str(&mut text, n);
            push_decimal(&mut bytes, n);
            push_hex16(&mut hex, n);
            assert_eq!(text, n.to_string());
            assert_eq!(bytes, n.to_string().into_bytes());
            assert_eq!(hex, format!("{n:016x}"));
            assert_eq!(parse_hex(hex.as_bytes()), Some(n));
        }
    }
}
