//! Header names remembered from the last head a connection carried, by position.
//!
//! A storefront answers every request on a keep-alive connection with the same header names in
//! the same order (`Server`, `Date`, `Content-Type`, ... and its own `X-` headers), and a
//! shopper's browser sends the same names on every request of a connection. Turning each raw
//! name into an [`HeaderName`] means lower-casing it through a table, matching it against the
//! standard names and, for any other name, allocating a copy: ~250 instructions per header, a
//! few percent of a proxied request. Comparing the raw bytes with the name that stood at the
//! same position in the last head, and cloning that, costs a tenth of it.
//!
//! The memo is a cache of a pure function (`HeaderName::from_bytes` of the exact bytes), so a
//! hit gives exactly what parsing would: names are compared byte for byte, case included.
//! It is bounded: the first [`POSITIONS`] headers, names up to [`LONGEST`] bytes.

use http::header::{HeaderName, InvalidHeaderName};

/// Positions remembered: a head's first headers are the ones every response repeats.
pub const POSITIONS: usize = 32;

/// Longest name remembered; longer ones are parsed every time.
pub const LONGEST: usize = 64;

/// The names of the last head, by position (see the module doc).
#[derive(Debug, Default)]
pub struct NameMemo {
    /// The raw names, back to back.
    text: Vec<u8>,
    /// Each position's end in `text`, and its parsed name.
    names: Vec<(usize, HeaderName)>,
    /// Names parsed rather than recalled, for the tests.
    #[cfg(test)]
    parsed: usize,
}

impl NameMemo {
    /// The names of a new head, asked in order.
    pub fn head(&mut self) -> HeadNames<'_> {
        HeadNames { memo: self, at: 0 }
    }

    /// The name at `position` of a head (counted over the names asked), whose raw bytes are
    /// `raw`.
    fn name(&mut self, position: usize, raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        if let Some((end, name)) = self.names.get(position) {
            let start = self.start(position);
            if &self.text[start..*end] == raw {
                return Ok(name.clone());
            }
        }
        #[cfg(test)]
        {
            self.parsed += 1;
        }
        let name = HeaderName::from_bytes(raw)?;
        if position <= self.names.len() && position < POSITIONS && raw.len() <= LONGEST {
            // What followed this position was remembered after a different name: a head that
            // differs here likely differs after it too, so the rest is learned again.
            let start = self.start(position);
            self.names.truncate(position);
            self.text.truncate(start);
            self.text.extend_from_slice(raw);
            self.names.push((self.text.len(), name.clone()));
        }
        Ok(name)
    }

    /// Where `position`'s raw name starts in `text`.
    fn start(&self, position: usize) -> usize {
        match position {
            0 => 0,
            p => self
                .names
                .get(p - 1)
                .map_or(self.text.len(), |(end, _)| *end),
        }
    }
}

/// One head's names, asked in the order they stand: a header the caller skips (and never
/// asks about) takes no position, so the names after it are still recalled.
#[derive(Debug)]
pub struct HeadNames<'a> {
    memo: &'a mut NameMemo,
    at: usize,
}

impl HeadNames<'_> {
    /// The next name of the head, whose raw bytes are `raw`: what `HeaderName::from_bytes`
    /// gives for them.
    pub fn name(&mut self, raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        let position = self.at;
        self.at += 1;
        self.memo.name(position, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name handed out is what `HeaderName::from_bytes` makes of the same bytes, over
    /// heads that repeat, change case, grow, shrink, reorder and carry invalid or long names.
    #[test]
    fn a_remembered_name_is_the_name_parsing_gives() {
        let long = "x-".to_string() + &"a".repeat(LONGEST);
        let heads: Vec<Vec<&str>> = vec![
            vec!["Server", "Date", "Content-Type", "Content-Length", "X-Shop"],
            vec!["Server", "Date", "Content-Type", "Content-Length", "X-Shop"],
            vec!["server", "Date", "content-type", "Content-Length", "x-shop"],
            vec!["Server", "Date"],
            vec![
                "Server",
                "Date",
                "Set-Cookie",
                "Set-Cookie",
                "X-Shop",
                "Vary",
            ],
            vec![
                "Date",
                "Server",
                "Set-Cookie",
                "Set-Cookie",
                "X-Shop",
                "Vary",
            ],
            vec!["Date", "bad name", "Set-Cookie", &long, "X-Shop", "Vary"],
            vec!["Date", "Server", "Set-Cookie", &long, "X-Shop", "Vary"],
            vec![],
            vec!["Server", "Date", "Content-Type", "Content-Length", "X-Shop"],
        ];
        let mut memo = NameMemo::default();
        for (h, head) in heads.iter().enumerate() {
            let mut names = memo.head();
            for (i, raw) in head.iter().enumerate() {
                let want = HeaderName::from_bytes(raw.as_bytes());
                let got = names.name(raw.as_bytes());
                match (want, got) {
                    (Ok(w), Ok(g)) => assert_eq!(g, w, "head {h}, position {i}: {raw}"),
                    (Err(_), Err(_)) => {}
                    (w, g) => panic!("head {h}, position {i}: {raw}: {w:?} but {g:?}"),
                }
            }
        }
    }

    /// A storefront's heads repeat their names; after the first head none is parsed again,
    /// also past a header the caller skips (`Connection`, which the client drops) and past a
    /// head that differs.
    #[test]
    fn a_repeated_head_parses_no_name_again() {
        let head = [
            "Server",
            "Date",
            "Connection",
            "Content-Type",
            "X-Cache",
            "Set-Cookie",
        ];
        let ask = |memo: &mut NameMemo, head: &[&str]| {
            let mut names = memo.head();
            for raw in head.iter().filter(|n| **n != "Connection") {
                names.name(raw.as_bytes()).unwrap();
            }
        };
        let mut memo = NameMemo::default();
        ask(&mut memo, &head);
        assert_eq!(memo.parsed, 5, "the first head's names are parsed");
        for _ in 0..3 {
            ask(&mut memo, &head);
        }
        assert_eq!(memo.parsed, 5, "and recalled from then on");
        ask(&mut memo, &["Server", "Date", "Location"]);
        assert_eq!(memo.parsed, 6, "a different name is parsed");
        ask(&mut memo, &head);
        assert_eq!(memo.parsed, 9, "and what follows it is learned again");
        ask(&mut memo, &head);
        assert_eq!(memo.parsed, 9);
    }

    /// Many positions, long names and random bytes never grow the memo past its bounds, and a
    /// hit needs the same bytes: a name one byte different is parsed, not recalled.
    #[test]
    fn the_memo_stays_bounded_and_exact() {
        let mut memo = NameMemo::default();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"abcXYZ-_09!~ "; // a space makes an invalid name
        for _ in 0..2_000 {
            let count = (next() % 80) as usize;
            for i in 0..count {
                let len = 1 + (next() % 90) as usize;
                let raw: Vec<u8> = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                let want = HeaderName::from_bytes(&raw).ok();
                assert_eq!(memo.name(i, &raw).ok(), want);
                assert_eq!(memo.name(i, &raw).ok(), want, "asked twice");
            }
            assert!(memo.names.len() <= POSITIONS);
            assert!(memo.text.len() <= POSITIONS * LONGEST);
        }
        memo.name(0, b"x-one").unwrap();
        assert_eq!(memo.name(0, b"x-onf").unwrap(), "x-onf");
        assert_eq!(memo.name(0, b"X-onf").unwrap(), "x-onf");
    }
}
