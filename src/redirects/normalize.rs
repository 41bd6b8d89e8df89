//! One canonical form for URLs, shared by the table at load and by requests at lookup.
//!
//! Canonical means: unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other escape
//! is kept with uppercase hex (in a query, form-style, reserved characters other than `=`, `&`,
//! `+` are decoded too), and every byte that may not appear literally (space, controls,
//! `\`, `"`, non-ASCII, ...) is escaped. Reserved escapes such as `%2F` are never decoded: `%2F`
//! inside a segment is not a path separator. The canonical form contains only visible ASCII, so
//! anything copied from it into a `Location` header can neither inject a header nor smuggle a
//! backslash that a browser would read as `/`.

use super::config::{ParamFilter, QueryMode, TableConfig, TrailingSlash};
use crate::http1::scan;

/// The matching options of one table, compiled once.
#[derive(Debug, Clone)]
pub(crate) struct Matching {
    pub case_sensitive: bool,
    pub trailing_slash: TrailingSlash,
    pub query: QueryMode,
    pub query_fallback: bool,
    pub ignore: ParamFilter,
}

impl Matching {
    pub(crate) fn new(cfg: &TableConfig) -> Self {
        Matching {
            case_sensitive: cfg.case_sensitive,
            trailing_slash: cfg.trailing_slash,
            query: cfg.query,
            query_fallback: cfg.query_fallback,
            ignore: ParamFilter::new(&cfg.ignore_params),
        }
    }
}

/// A `%` not followed by two hex digits.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadEscape;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Path,
    /// A query parameter name or value: `&` never occurs (it separates parameters) and `+`
    /// means a space, as in form encoding.
    Query,
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const fn is_literal(b: u8, part: Part) -> bool {
    is_unreserved(b)
        || match part {
            Part::Path => {
                matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+')
                    || matches!(b, b',' | b';' | b'=' | b':' | b'@' | b'/')
            }
            Part::Query => {
                matches!(b, b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b',' | b';')
                    || matches!(b, b'=' | b':' | b'@' | b'/' | b'?')
            }
        }
}

/// `is_literal` as tables: canonicalising runs once per row and per request.
const fn literal_table(part: Part) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = is_literal(b as u8, part);
        b += 1;
    }
    t
}

const PATH_LITERAL: [bool; 256] = literal_table(Part::Path);
const QUERY_LITERAL: [bool; 256] = literal_table(Part::Query);

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// Whether `path` (no `?` or `#`) is already canonical: every byte one that [`canon`] copies
/// as it is. The inventory then keys a request on the path itself, without copying it.
pub(crate) fn is_canonical_path(path: &str) -> bool {
    path.bytes().all(|b| PATH_LITERAL[b as usize])
}

/// Appends the canonical form of `input` to `out`. Returns whether a control character was
/// present (escaped in the output): a table rejects those, a request just gets them escaped.
fn canon(input: &str, part: Part, out: &mut String) -> Result<bool, BadEscape> {
    let literal = match part {
        Part::Path => &PATH_LITERAL,
        Part::Query => &QUERY_LITERAL,
    };
    let bytes = input.as_bytes();
    let mut had_control = false;
    let mut i = 0;
    // Runs of literal bytes (ASCII, so slice ends are char boundaries) are copied in one go.
    let mut plain = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if literal[b as usize] {
            i += 1;
            continue;
        }
        if i > plain {
            out.push_str(&input[plain..i]);
        }
        if b == b'%' {
            let hi = bytes
                .get(i + 1)
                .copied()
                .and_then(hex_val)
                .ok_or(BadEscape)?;
            let lo = bytes
                .get(i + 2)
                .copied()
                .and_then(hex_val)
                .ok_or(BadEscape)?;
            let v = hi << 4 | lo;
            had_control |= v < 0x20 || v == 0x7f;
            let decode = match part {
                Part::Path => is_unreserved(v),
                // Form decoding treats `%2F` and `/` alike in a query; only `=` must stay
                // escaped so a name `a%3Db` never equals the pair `a=b`.
                Part::Query => literal[v as usize] && v != b'=',
            };
            if decode {
                out.push(v as char);
            } else {
                push_escaped(out, v);
            }
            i += 3;
        } else if part == Part::Query && b == b'+' {
            out.push_str("%20");
            i += 1;
        } else {
            had_control |= b < 0x20 || b == 0x7f;
            push_escaped(out, b);
            i += 1;
        }
        plain = i;
    }
    if i > plain {
        out.push_str(&input[plain..]);
    }
    Ok(had_control)
}

/// A URL (path and query) in canonical form, split the ways lookup needs it.
#[derive(Debug, Default)]
pub(crate) struct Normalized {
    /// Canonical path, original case, trailing slashes kept: splat suffixes are cut from it.
    pub path: String,
    /// `path` case-folded when the table is case-insensitive: prefix rules are matched on it.
    /// Escapes are folded too: both sides fold the same way, so `%C3%A9` and `%c3%a9` stay
    /// equal while the key stays visible ASCII.
    pub folded: String,
    /// Key-mode query: canonical, case-folded, ignored parameters removed, sorted; `a=1&b=2`.
    pub query_key: String,
    /// Ignored (tracking) parameters in request order, canonical, original case.
    pub tracking: String,
    /// Every parameter, canonical, original case: carried on path-only matches.
    pub query: String,
    /// A control character was present (a table rejects the row).
    pub had_control: bool,
    // Scratch reused across `fill` calls.
    keyed: String,
    ranges: Vec<(usize, usize)>,
    piece: String,
}

impl Normalized {
    /// `path` must start with `/` for a request; the table checks that before calling.
    #[cfg(test)]
    pub(crate) fn new(path: &str, query: Option<&str>, m: &Matching) -> Result<Self, BadEscape> {
        let mut n = Normalized::default();
        n.fill(path, query, m)?;
        Ok(n)
    }

    /// Replaces the content with the canonical form of `path` and `query`, reusing buffers:
    /// loads and lookups keep one `Normalized` around instead of allocating per URL.
    pub(crate) fn fill(
        &mut self,
        path: &str,
        query: Option<&str>,
        m: &Matching,
    ) -> Result<(), BadEscape> {
        self.path.clear();
        self.folded.clear();
        self.query_key.clear();
        self.tracking.clear();
        self.query.clear();
        let path = if path.is_empty() { "/" } else { path };
        self.had_control = canon(path, Part::Path, &mut self.path)?;
        self.folded.push_str(&self.path);
        if !m.case_sensitive {
            self.folded.make_ascii_lowercase();
        }
        if let Some(q) = query {
            self.split_query(q, m)?;
        }
        Ok(())
    }

    fn split_query(&mut self, q: &str, m: &Matching) -> Result<(), BadEscape> {
        // Keyed parameters are collected in one buffer and sorted as ranges: one allocation
        // per query instead of one per parameter.
        let mut keyed = std::mem::take(&mut self.keyed);
        let mut ranges = std::mem::take(&mut self.ranges);
        let mut piece = std::mem::take(&mut self.piece);
        keyed.clear();
        ranges.clear();
        for raw in scan::split(q, b'&').filter(|p| !p.is_empty()) {
            piece.clear();
            let (name, value) = match scan::split_once(raw, b'=') {
                Some((n, v)) => (n, Some(v)),
                None => (raw, None),
            };
            self.had_control |= canon(name, Part::Query, &mut piece)?;
            let name_len = piece.len();
            if let Some(v) = value {
                piece.push('=');
                self.had_control |= canon(v, Part::Query, &mut piece)?;
            }
            append_param(&mut self.query, &piece);
            if m.ignore.matches(&piece[..name_len]) {
                append_param(&mut self.tracking, &piece);
            } else if m.query == QueryMode::Key {
                let start = keyed.len();
                keyed.push_str(&piece);
                if !m.case_sensitive {
                    keyed[start..].make_ascii_lowercase();
                }
                ranges.push((start, keyed.len()));
            }
        }
        ranges.sort_unstable_by(|a, b| keyed[a.0..a.1].cmp(&keyed[b.0..b.1]));
        for &(a, b) in &ranges {
            append_param(&mut self.query_key, &keyed[a..b]);
        }
        (self.keyed, self.ranges, self.piece) = (keyed, ranges, piece);
        Ok(())
    }

    /// The exact-match key: folded path with trailing slashes handled, plus `?query_key` when
    /// `with_query` and there is one.
    pub(crate) fn exact_key(&self, with_query: bool, m: &Matching, out: &mut String) {
        out.clear();
        out.push_str(key_path(&self.folded, m.trailing_slash));
        if with_query && !self.query_key.is_empty() {
            out.push('?');
            out.push_str(&self.query_key);
        }
    }
}

fn append_param(out: &mut String, piece: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str(piece);
}

/// The path part of an exact key.
pub(crate) fn key_path(folded: &str, ts: TrailingSlash) -> &str {
    let p = match ts {
        TrailingSlash::Equivalent => folded.trim_end_matches('/'),
        TrailingSlash::Strict => folded,
    };
    if p.is_empty() {
        "/"
    } else {
        p
    }
}

/// Builds the `Location` of a hit from the table's target plus what the request may carry: the
/// splat suffix (canonical path, leading slashes dropped so `/*` + `//evil/x` can never become
/// `//evil/x`) and a canonical query. Returns `None` if the result would leave the site or is
/// not a valid header value; validation at load makes that unreachable, this is the last guard.
pub(crate) fn build_location(
    target: &str,
    splat: bool,
    suffix: &str,
    query: &str,
) -> Option<String> {
    let mut loc = String::with_capacity(target.len() + suffix.len() + query.len() + 2);
    let (base, fragment) = match scan::find(target, b'#') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    loc.push_str(base);
    if splat {
        loc.push_str(suffix.trim_start_matches('/'));
    }
    if !query.is_empty() {
        loc.push(if scan::find(base, b'?').is_some() {
            '&'
        } else {
            '?'
        });
        loc.push_str(query);
    }
    loc.push_str(fragment);
    let off_site = loc.starts_with("//") || loc.starts_with("/\\");
    let clean = loc.bytes().all(|b| (0x21..0x7f).contains(&b));
    (!off_site && clean && (loc.starts_with('/') || loc.starts_with("http"))).then_some(loc)
}

/// Canonical form of a target path or query as written in the table (case preserved):
/// spreadsheets hold `/café` or `/a b`, a header needs `/caf%C3%A9` and `/a%20b`.
pub(crate) fn canon_target(s: &str, out: &mut String) -> Result<bool, BadEscape> {
    let (path, rest) = match s.find(['?', '#']) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let mut ctl = canon(path, Part::Path, out)?;
    if let Some(q) = rest.strip_prefix('?') {
        let (q, frag) = match q.find('#') {
            Some(i) => q.split_at(i),
            None => (q, ""),
        };
        out.push('?');
        for (i, p) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (p, None),
            };
            ctl |= canon(name, Part::Query, out)?;
            if let Some(v) = value {
                out.push('=');
                ctl |= canon(v, Part::Query, out)?;
            }
        }
        ctl |= canon_fragment(frag, out)?;
    } else {
        ctl |= canon_fragment(rest, out)?;
    }
    Ok(ctl)
}

fn canon_fragment(frag: &str, out: &mut String) -> Result<bool, BadEscape> {
    match frag.strip_prefix('#') {
        Some(f) => {
            out.push('#');
            canon(f, Part::Path, out)
        }
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(cs: bool, ts: TrailingSlash, q: QueryMode) -> Matching {
        let mut cfg = TableConfig::with_defaults("t", "f");
        cfg.case_sensitive = cs;
        cfg.trailing_slash = ts;
        cfg.query = q;
        Matching::new(&cfg)
    }

    fn key(pq: &str, m: &Matching) -> String {
        let (p, q) = match pq.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (pq, None),
        };
        let n = Normalized::new(p, q, m).unwrap();
        let mut k = String::new();
        n.exact_key(true, m, &mut k);
        k
    }

    #[test]
    fn percent_normalisation() {
        let m = m(true, TrailingSlash::Strict, QueryMode::Key);
        assert_eq!(key("/%7euser/%41b", &m), "/~user/Ab");
        assert_eq!(key("/a%2fb", &m), "/a%2Fb", "%2F is never a separator");
        assert_eq!(key("/caf%c3%a9", &m), "/caf%C3%A9");
        assert_eq!(key("/café", &m), "/caf%C3%A9");
        assert_eq!(key("/a b\\c", &m), "/a%20b%5Cc");
        assert!(Normalized::new("/bad%zz", None, &m).is_err());
        assert!(Normalized::new("/bad%4", None, &m).is_err());
    }

    #[test]
    fn case_and_trailing_slash() {
        let insensitive = m(false, TrailingSlash::Equivalent, QueryMode::Key);
        assert_eq!(key("/Shoes/Red/", &insensitive), "/shoes/red");
        assert_eq!(key("/", &insensitive), "/");
        assert_eq!(key("//", &insensitive), "/");
        let strict = m(true, TrailingSlash::Strict, QueryMode::Key);
        assert_eq!(key("/Shoes/Red/", &strict), "/Shoes/Red/");
        assert_eq!(key("", &strict), "/");
    }

    #[test]
    fn query_key_sorted_without_tracking() {
        let m = m(false, TrailingSlash::Equivalent, QueryMode::Key);
        let a = key("/index.php?route=product/product&product_id=42", &m);
        let b = key(
            "/index.php?product_id=42&utm_source=x&route=product%2Fproduct&gclid=1",
            &m,
        );
        assert_eq!(a, b, "a query is form-decoded: %2F and / alike");
        assert_ne!(key("/x?a%3Db", &m), key("/x?a=b", &m));
        assert_eq!(a, "/index.php?product_id=42&route=product/product");
        let n = Normalized::new("/x", Some("a=1&utm_source=News+Letter&gclid=Z"), &m).unwrap();
        assert_eq!(n.tracking, "utm_source=News%20Letter&gclid=Z");
        assert_eq!(n.query, "a=1&utm_source=News%20Letter&gclid=Z");
    }

    #[test]
    fn location_never_leaves_site() {
        assert_eq!(
            build_location("/", true, "//evil.example/x", "").unwrap(),
            "/evil.example/x"
        );
        assert_eq!(
            build_location("/news/", true, "a/b", "x=1").unwrap(),
            "/news/a/b?x=1"
        );
        assert_eq!(
            build_location("/p?a=1#top", false, "", "utm=2").unwrap(),
            "/p?a=1&utm=2#top"
        );
        assert!(build_location("//evil.example", false, "", "").is_none());
        assert!(build_location("/a\r\nSet-Cookie: x", false, "", "").is_none());
    }

    #[test]
    fn canonical_form_has_no_header_breakers() {
        let m = m(true, TrailingSlash::Strict, QueryMode::Ignore);
        let n = Normalized::new("/a%0d%0aSet-Cookie:%20x/\\evil", Some("q=%0A"), &m).unwrap();
        assert!(n.had_control);
        assert_eq!(n.path, "/a%0D%0ASet-Cookie:%20x/%5Cevil");
        assert_eq!(n.query, "q=%0A");
    }

    #[test]
    fn target_canonicalised() {
        let mut out = String::new();
        assert!(!canon_target("/café?q=a b#x y", &mut out).unwrap());
        assert_eq!(out, "/caf%C3%A9?q=a%20b#x%20y");
        assert!(canon_target("/a\nb", &mut String::new()).unwrap());
    }
}
