//! Header names parsed once per worker thread, not once per request.
//!
//! A storefront answers every request with the same header names (`Server`, `Date`,
//! `Content-Type`, ... and its own `X-` headers), and browsers send the same dozen names on every
//! request (`Accept-Language`, `Sec-Fetch-Mode`, ...). Turning a raw name into a [`HeaderName`]
//! means lower-casing it through a table, matching it against the standard names and, for any
//! other name, allocating a copy. A hit here is a hash of two words, a comparison and a clone.
//! With the headers a browser and a storefront really send, that is 3.5% fewer instructions per
//! proxied request (`BROWSER_HEADERS=1 STOREFRONT_HEADERS=1 benches/callgrind.sh proxy`:
//! 48,140 -> 46,475); with h2load's four standard names it is a wash (+0.4%).
//!
//! Why per thread and not per connection: a first version kept each connection's last head's
//! names, by position. It saved more instructions (45,118), but with 256 connections in flight
//! every connection's copy had to come back from beyond the core's L2 cache: +47 misses per
//! request (simulated, `CACHE=1 C=256`), where this table adds none. One table per worker
//! serves every connection that worker runs, so it stays in cache, and its memory does not
//! grow with the connections.
//!
//! It is a cache of a pure function (`HeaderName::from_bytes` of the exact bytes, case
//! included), so a hit gives exactly what parsing gives. It is bounded: [`SETS`] x 2 names of up
//! to [`LONGEST`] bytes per thread, about 100 KB at most (24 KB of it the table itself). A name
//! it has no room for evicts the older of its set, so names sent to flood it cost what parsing
//! them cost before, plus one small copy.

use std::cell::RefCell;

use http::header::{HeaderName, InvalidHeaderName};

/// Sets of the table: a power of two. Two names per set.
pub const SETS: usize = 256;

/// Longest name kept; longer ones are parsed every time.
pub const LONGEST: usize = 64;

/// A name as it came on the wire, and what it parses to.
type Entry = Option<(Box<[u8]>, HeaderName)>;

/// One worker thread's table (see the module doc).
struct Table {
    /// `SETS` sets, each with its most recently added name first.
    sets: Box<[[Entry; 2]]>,
    /// Names parsed rather than found, for the tests.
    #[cfg(test)]
    parsed: usize,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table {
        sets: (0..SETS).map(|_| [None, None]).collect(),
        #[cfg(test)]
        parsed: 0,
    });
}

/// `HeaderName::from_bytes(raw)`, from this thread's table when `raw` was seen before.
pub fn header_name(raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    if raw.is_empty() || raw.len() > LONGEST {
        return HeaderName::from_bytes(raw);
    }
    TABLE
        .try_with(|table| match table.try_borrow_mut() {
            Ok(mut table) => table.name(raw),
            Err(_) => HeaderName::from_bytes(raw),
        })
        // The thread is ending and its table is gone.
        .unwrap_or_else(|_| HeaderName::from_bytes(raw))
}

impl Table {
    fn name(&mut self, raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        let set = &mut self.sets[set_of(raw)];
        for (seen, name) in set.iter().flatten() {
            if **seen == *raw {
                return Ok(name.clone());
            }
        }
        #[cfg(test)]
        {
            self.parsed += 1;
        }
        let name = HeaderName::from_bytes(raw)?;
        // The newer name stays first; the older of the two goes.
        set[1] = set[0].take();
        set[0] = Some((raw.into(), name.clone()));
        Ok(name)
    }
}

/// The set `raw` (1..=LONGEST bytes) belongs to: its length and its first and last eight bytes,
/// mixed. Names that share all three (`x-shop-a-stage` and `x-shop-b-stage` do not: they are
/// under 17 bytes) share a set, which costs only a comparison.
#[inline]
fn set_of(raw: &[u8]) -> usize {
    let n = raw.len();
    let (head, tail) = match (raw.first_chunk::<8>(), raw.last_chunk::<8>()) {
        (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
        // Under eight bytes: the whole name is one word.
        _ => (raw.iter().fold(0, |w, &x| w << 8 | u64::from(x)), 0),
    };
    let h = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 32) as usize & (SETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed() -> usize {
        TABLE.with(|t| t.borrow().parsed)
    }

    /// Every name handed out is what `HeaderName::from_bytes` makes of the same bytes: names
    /// repeated, in other cases, invalid, too long, and the standard and custom names of a
    /// browser's request and a storefront's answer.
    #[test]
    fn a_cached_name_is_the_name_parsing_gives() {
        let long = "x-".to_string() + &"a".repeat(LONGEST);
        let names = [
            "Server",
            "Date",
            "Content-Type",
            "Content-Length",
            "X-Shop",
            "server",
            "x-shop",
            "X-SHOP",
            "Set-Cookie",
            "Vary",
            "bad name",
            "",
            &long,
            "Sec-Fetch-Mode",
            "Sec-Fetch-Site",
            "sec-ch-ua",
            "sec-ch-ua-mobile",
            "sec-ch-ua-platform",
            "Accept-Language",
            "Accept",
            "a",
            "é",
            "x-\u{0}",
        ];
        for round in 0..3 {
            for raw in names {
                let want = HeaderName::from_bytes(raw.as_bytes());
                match (want, header_name(raw.as_bytes())) {
                    (Ok(w), Ok(g)) => assert_eq!(g, w, "round {round}: {raw:?}"),
                    (Err(_), Err(_)) => {}
                    (w, g) => panic!("round {round}: {raw:?}: {w:?} but {g:?}"),
                }
            }
        }
    }

    /// A browser's and a storefront's names are parsed once, then found, whatever order they
    /// come in; a name one byte different is parsed, not found.
    #[test]
    fn repeated_names_are_parsed_once() {
        let names = [
            "Host",
            "User-Agent",
            "Accept",
            "Accept-Language",
            "Accept-Encoding",
            "Cookie",
            "Sec-Fetch-Site",
            "Sec-Fetch-Mode",
            "Sec-Fetch-User",
            "Sec-Fetch-Dest",
            "sec-ch-ua",
            "sec-ch-ua-mobile",
            "sec-ch-ua-platform",
            "Upgrade-Insecure-Requests",
            "Server",
            "Date",
            "Content-Type",
            "Content-Length",
            "Cache-Control",
            "Vary",
            "X-Request-Id",
            "X-Shop-Id",
            "X-Cache",
            "X-Content-Type-Options",
            "Set-Cookie",
        ];
        let before = parsed();
        for raw in names {
            header_name(raw.as_bytes()).unwrap();
        }
        let first = parsed() - before;
        assert_eq!(first, names.len(), "each is parsed the first time");
        for raw in names.iter().rev().chain(&names) {
            header_name(raw.as_bytes()).unwrap();
        }
        // Two names may share a set with a third; with 25 names in 256 sets of two, none
        // should be pushed out.
        assert_eq!(parsed() - before, first, "and found from then on");
        assert_eq!(header_name(b"X-Shop-Ie").unwrap(), "x-shop-ie");
        assert_eq!(parsed() - before, first + 1);
    }

    /// Many random names, invalid and over-long ones among them, never give a wrong answer,
    /// and the table holds at most two names per set, each of at most `LONGEST` bytes.
    #[test]
    fn the_table_stays_bounded_and_exact() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"abcXYZ-_09!~ "; // a space makes an invalid name
        let mut kept = Vec::new();
        for _ in 0..20_000 {
            let len = 1 + (next() % 90) as usize;
            let raw: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let want = HeaderName::from_bytes(&raw).ok();
            assert_eq!(header_name(&raw).ok(), want);
            assert_eq!(header_name(&raw).ok(), want, "asked twice");
            if kept.len() < 64 {
                kept.push(raw);
            }
        }
        for raw in &kept {
            assert_eq!(header_name(raw).ok(), HeaderName::from_bytes(raw).ok());
        }
        TABLE.with(|t| {
            let t = t.borrow();
            assert_eq!(t.sets.len(), SETS);
            for (seen, name) in t.sets.iter().flatten().flatten() {
                assert!(seen.len() <= LONGEST);
                assert_eq!(HeaderName::from_bytes(seen).unwrap(), *name);
            }
        });
    }

    /// Names that differ in one byte are told apart, at every length and position, also where
    /// they share their length and first and last eight bytes (and so their set).
    #[test]
    fn names_alike_but_for_their_middle_are_told_apart() {
        for len in 1..=LONGEST {
            let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            for at in 0..len {
                let mut b = a.clone();
                b[at] = b'-';
                assert_eq!(header_name(&a).unwrap().as_str().as_bytes(), &a[..]);
                assert_eq!(
                    header_name(&b).unwrap().as_str().as_bytes(),
                    &b[..],
                    "{len} {at}"
                );
                assert_eq!(header_name(&a).unwrap().as_str().as_bytes(), &a[..]);
            }
        }
    }

    /// Names spread over the sets: a browser's and a storefront's 25 names land in at least
    /// 20 different sets.
    #[test]
    fn names_spread_over_the_sets() {
        let names = [
            "host",
            "user-agent",
            "accept",
            "accept-language",
            "accept-encoding",
            "cookie",
            "sec-fetch-site",
            "sec-fetch-mode",
            "sec-fetch-user",
            "sec-fetch-dest",
            "sec-ch-ua",
            "sec-ch-ua-mobile",
            "sec-ch-ua-platform",
            "upgrade-insecure-requests",
            "server",
            "date",
            "content-type",
            "content-length",
            "cache-control",
            "vary",
            "x-request-id",
            "x-shop-id",
            "x-cache",
            "x-content-type-options",
            "set-cookie",
        ];
        let mut sets: Vec<usize> = names.iter().map(|n| set_of(n.as_bytes())).collect();
        sets.sort_unstable();
        sets.dedup();
        assert!(sets.len() >= 20, "{} sets", sets.len());
    }
}
