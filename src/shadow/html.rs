//! The HTML signals search engines rank by, read from a body as it streams in.
//!
//! A migration keeps its rankings when the new page has the same `<title>`, the same canonical
//! (after the redirect plan), the same robots directives and hreflang alternates, and still an
//! `<h1>`. Those are all in the first kilobytes of a page, so [`HtmlExtractor`] is fed chunks as
//! they arrive and stops at a limit (default 256 KiB): the body is never held in memory, only
//! the one tag being read (bounded by [`MAX_TAG_BYTES`]) and the signals found.
//!
//! It is a tokenizer for exactly these signals, following the HTML parsing rules that matter for
//! them: comments and `<!...>` declarations are skipped; `<script>`, `<style>` and the other raw
//! text elements are skipped up to their end tag (a `<title>` inside a script string is not the
//! title); `<title>` is read as RCDATA; names are case-insensitive; attribute values may be double-,
//! single- or unquoted and may contain `>` when quoted; `<base href>` changes what relative URLs
//! resolve against. Every state survives a chunk boundary at any byte (the tests split documents at
//! every offset). Non-UTF-8 bytes are replaced, not rejected: both storefronts go through the same
//! decoding, and only equality matters.

use std::collections::BTreeMap;

use serde::Serialize;

use super::entities::{collapse_whitespace, decode};
use super::url::resolve;

/// The default number of body bytes read.
pub const DEFAULT_LIMIT: usize = 256 * 1024;
/// The longest tag kept for reading attributes; longer tags are skipped (their name still counts).
pub const MAX_TAG_BYTES: usize = 8 * 1024;
/// The longest title kept, in bytes before decoding.
pub const MAX_TITLE_BYTES: usize = 4 * 1024;
/// hreflang alternates kept (a page lists one per market; a bound keeps a broken page small).
pub const MAX_HREFLANG: usize = 64;
/// `<meta name=robots>` elements combined.
pub const MAX_ROBOTS: usize = 8;

/// What a page says to search engines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HtmlSignals {
    /// The first `<title>` outside `<svg>`: references decoded, whitespace collapsed. `Some("")`
    /// for an empty title, `None` for none.
    pub title: Option<String>,
    /// The first `<link rel=canonical href>`, resolved against the page (and `<base>`).
    pub canonical: Option<String>,
    /// The `<meta name=robots content>` directives: lowercased, deduplicated, sorted, joined by
    /// `", "` (their order means nothing to a crawler). `None` without such a meta.
    pub robots: Option<String>,
    /// `<link rel=alternate hreflang=L href=U>`: language (lowercased) -> resolved URL.
    pub hreflang: BTreeMap<String, String>,
    /// Whether the page has an `<h1>`.
    pub has_h1: bool,
    /// True when the limit cut the body: a signal after it was not seen.
    pub truncated: bool,
}

/// Whether [`HtmlExtractor::feed`] wants more of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Keep feeding.
    More,
    /// The limit is reached or every signal is known: stop reading the body.
    Enough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Text between tags (ignored).
    Data,
    /// After `<`.
    TagOpen,
    /// After `<!` and this many `-`.
    Bang(u8),
    /// Inside `<!-- ... `, with the count of `-` just seen (2 closes on `>`).
    Comment(u8),
    /// `<!DOCTYPE ...>`, `<?xml ...>`: up to the next `>`.
    Bogus,
    /// Reading a tag's bytes into `tag` up to an unquoted `>`.
    Tag,
    /// Inside a raw text element, having matched `matched` bytes of its end tag (`</script`).
    RawText { end: &'static [u8], matched: usize },
}

/// Reads [`HtmlSignals`] from body chunks (see the module documentation).
#[derive(Debug)]
pub struct HtmlExtractor {
    page_url: String,
    limit: usize,
    seen: usize,
    state: State,
    tag: Vec<u8>,
    tag_overflow: bool,
    quote: u8,
    after_eq: bool,
    svg_depth: u32,
    collecting_title: bool,
    title: Option<Vec<u8>>,
    canonical: Option<String>,
    base: Option<String>,
    robots: Vec<String>,
    hreflang: Vec<(String, String)>,
    has_h1: bool,
    head_ended: bool,
    truncated: bool,
}

impl HtmlExtractor {
    /// An extractor for the page at `page_url` (absolute: relative links resolve against it),
    /// reading at most `limit` bytes.
    pub fn new(page_url: &str, limit: usize) -> Self {
        Self {
            page_url: page_url.to_owned(),
            limit,
            seen: 0,
            state: State::Data,
            tag: Vec::new(),
            tag_overflow: false,
            quote: 0,
            after_eq: false,
            svg_depth: 0,
            collecting_title: false,
            title: None,
            canonical: None,
            base: None,
            robots: Vec::new(),
            hreflang: Vec::new(),
            has_h1: false,
            head_ended: false,
            truncated: false,
        }
    }

    /// Reads the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Feed {
        let room = self.limit - self.seen;
        if chunk.len() > room {
            self.truncated = true;
        }
        let chunk = &chunk[..chunk.len().min(room)];
        self.seen += chunk.len();
        let mut i = 0;
        while i < chunk.len() {
            if self.state == State::Data {
                // Text between tags means nothing here: jump to the next tag.
                match memchr::memchr(b'<', &chunk[i..]) {
                    Some(at) => i += at,
                    None => break,
                }
            }
            self.step(chunk[i]);
            i += 1;
        }
        if self.seen >= self.limit || self.complete() {
            Feed::Enough
        } else {
            Feed::More
        }
    }

    /// Every signal is known: the head is over (title, canonical, robots and hreflang live there)
    /// and an `<h1>` was seen.
    fn complete(&self) -> bool {
        self.head_ended && self.has_h1 && !self.collecting_title
    }

    /// The signals found.
    pub fn finish(self) -> HtmlSignals {
        let base = self
            .base
            .as_deref()
            .and_then(|b| resolve(&self.page_url, b))
            .unwrap_or_else(|| self.page_url.clone());
        let title = self
            .title
            .map(|raw| collapse_whitespace(&decode(&String::from_utf8_lossy(&raw))));
        let canonical = self.canonical.as_deref().and_then(|c| resolve(&base, c));
        let robots = (!self.robots.is_empty()).then(|| normalize_robots(&self.robots));
        let mut hreflang = BTreeMap::new();
        for (lang, href) in &self.hreflang {
            if let Some(url) = resolve(&base, href) {
                hreflang.entry(lang.clone()).or_insert(url);
            }
        }
        HtmlSignals {
            title,
            canonical,
            robots,
            hreflang,
            has_h1: self.has_h1,
            truncated: self.truncated,
        }
    }

    fn step(&mut self, b: u8) {
        loop {
            match self.state {
                State::Data => {
                    if b == b'<' {
                        self.state = State::TagOpen;
                    }
                }
                State::TagOpen => match b {
                    b'!' => self.state = State::Bang(0),
                    b'?' => self.state = State::Bogus,
                    b'/' | b'a'..=b'z' | b'A'..=b'Z' => {
                        self.begin_tag();
                        self.push_tag(b);
                    }
                    _ => {
                        // `<` followed by anything else is text: look at this byte again as text.
                        self.state = State::Data;
                        continue;
                    }
                },
                State::Bang(dashes) => {
                    if b == b'-' {
                        // `<!--` enters the comment "having seen --", so `<!-->` closes at once
                        // as in a browser.
                        self.state = if dashes == 1 {
                            State::Comment(2)
                        } else {
                            State::Bang(1)
                        };
                    } else {
                        self.state = State::Bogus;
                        continue;
                    }
                }
                State::Comment(dashes) => {
                    self.state = match b {
                        b'-' => State::Comment((dashes + 1).min(2)),
                        b'>' if dashes >= 2 => State::Data,
                        _ => State::Comment(0),
                    };
                }
                State::Bogus => {
                    if b == b'>' {
                        self.state = State::Data;
                    }
                }
                State::Tag => self.tag_byte(b),
                State::RawText { end, matched } => {
                    if matched == end.len() {
                        if matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>') {
                            // The end tag: read the rest of it as a tag.
                            self.collecting_title = false;
                            self.begin_tag();
                            self.tag.extend_from_slice(&end[1..]);
                            continue;
                        }
                        // `</scripts`: not the end tag after all; the bytes were text.
                        self.raw_text(end);
                        self.state = State::RawText { end, matched: 0 };
                        continue;
                    }
                    if b.to_ascii_lowercase() == end[matched] {
                        self.state = State::RawText {
                            end,
                            matched: matched + 1,
                        };
                    } else if matched > 0 {
                        // The end tag starts with its only `<`, so a failed match restarts at
                        // this byte.
                        self.raw_text(&end[..matched]);
                        self.state = State::RawText { end, matched: 0 };
                        continue;
                    } else {
                        self.raw_text(&[b]);
                    }
                }
            }
            return;
        }
    }

    fn begin_tag(&mut self) {
        self.tag.clear();
        self.tag_overflow = false;
        self.quote = 0;
        self.after_eq = false;
        self.state = State::Tag;
    }

    fn push_tag(&mut self, b: u8) {
        if self.tag.len() < MAX_TAG_BYTES {
            self.tag.push(b);
        } else {
            self.tag_overflow = true;
        }
    }

    fn tag_byte(&mut self, b: u8) {
        if self.quote != 0 {
            if b == self.quote {
                self.quote = 0;
            }
            self.push_tag(b);
            return;
        }
        match b {
            b'>' => self.end_of_tag(),
            b'"' | b'\'' if self.after_eq => {
                self.quote = b;
                self.after_eq = false;
                self.push_tag(b);
            }
            b'=' => {
                self.after_eq = true;
                self.push_tag(b);
            }
            b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' => self.push_tag(b),
            _ => {
                self.after_eq = false;
                self.push_tag(b);
            }
        }
    }

    fn raw_text(&mut self, bytes: &[u8]) {
        if self.collecting_title {
            if let Some(title) = self.title.as_mut() {
                let room = MAX_TITLE_BYTES.saturating_sub(title.len());
                title.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
        }
    }

    /// A whole tag is in `self.tag` (without `<` and `>`): act on it.
    fn end_of_tag(&mut self) {
        self.state = State::Data;
        let tag = std::mem::take(&mut self.tag);
        let (closing, rest) = match tag.strip_prefix(b"/") {
            Some(rest) => (true, rest),
            None => (false, &tag[..]),
        };
        let name_len = rest
            .iter()
            .position(|b| matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/'))
            .unwrap_or(rest.len());
        let mut name = [0u8; 10];
        if name_len <= name.len() {
            for (d, s) in name.iter_mut().zip(&rest[..name_len]) {
                *d = s.to_ascii_lowercase();
            }
        }
        let name = &name[..name_len.min(10)];
        if name_len > 10 {
            self.tag = tag;
            return; // no element of interest has a longer name
        }
        if closing {
            match name {
                b"head" => self.head_ended = true,
                b"svg" => self.svg_depth = self.svg_depth.saturating_sub(1),
                _ => {}
            }
        } else {
            let attrs = &rest[name_len..];
            let usable = !self.tag_overflow;
            match name {
                b"title" => {
                    if self.title.is_none() && self.svg_depth == 0 {
                        self.title = Some(Vec::new());
                        self.collecting_title = true;
                    }
                    self.raw_until(b"</title");
                }
                b"script" => self.raw_until(b"</script"),
                b"style" => self.raw_until(b"</style"),
                b"textarea" => self.raw_until(b"</textarea"),
                b"xmp" => self.raw_until(b"</xmp"),
                b"iframe" => self.raw_until(b"</iframe"),
                b"noembed" => self.raw_until(b"</noembed"),
                b"noframes" => self.raw_until(b"</noframes"),
                b"svg" => self.svg_depth += 1,
                b"body" => self.head_ended = true,
                b"h1" => self.has_h1 = true,
                b"link" if usable => self.link(attrs),
                b"meta" if usable => self.meta(attrs),
                b"base" if usable && self.base.is_none() => {
                    self.base = attribute(attrs, "href");
                }
                _ => {}
            }
        }
        self.tag = tag; // keep the buffer's capacity for the next tag
    }

    fn raw_until(&mut self, end: &'static [u8]) {
        self.state = State::RawText { end, matched: 0 };
    }

    fn link(&mut self, attrs: &[u8]) {
        let attrs = attributes(attrs);
        let get = |name: &str| {
            attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let rel = get("rel").unwrap_or("");
        let has_rel = |token: &str| {
            rel.split_ascii_whitespace()
                .any(|t| t.eq_ignore_ascii_case(token))
        };
        let Some(href) = get("href") else { return };
        if has_rel("canonical") && self.canonical.is_none() {
            self.canonical = Some(href.to_owned());
        }
        if has_rel("alternate") && self.hreflang.len() < MAX_HREFLANG {
            if let Some(lang) = get("hreflang") {
                let lang = lang.trim().to_ascii_lowercase();
                if !lang.is_empty() {
                    self.hreflang.push((lang, href.to_owned()));
                }
            }
        }
    }

    fn meta(&mut self, attrs: &[u8]) {
        let attrs = attributes(attrs);
        let is_robots = attrs
            .iter()
            .any(|(n, v)| n == "name" && v.trim().eq_ignore_ascii_case("robots"));
        if is_robots && self.robots.len() < MAX_ROBOTS {
            if let Some((_, content)) = attrs.iter().find(|(n, _)| n == "content") {
                self.robots.push(content.clone());
            }
        }
    }
}

fn normalize_robots(contents: &[String]) -> String {
    let mut tokens: Vec<String> = contents
        .iter()
        .flat_map(|c| c.split(','))
        .map(|t| collapse_whitespace(t).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    tokens.sort();
    tokens.dedup();
    tokens.join(", ")
}

fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// The value of attribute `name` (lowercase) in a tag's attribute bytes.
fn attribute(attrs: &[u8], name: &str) -> Option<String> {
    attributes(attrs)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// A tag's attributes (the bytes after its name) as (lowercased name, decoded value); the first
/// of duplicate names wins, as in a browser.
fn attributes(bytes: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    let n = bytes.len();
    loop {
        while i < n && (is_space(bytes[i]) || bytes[i] == b'/') {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        i += 1; // a name has at least one byte, even `=`
        while i < n && !is_space(bytes[i]) && !matches!(bytes[i], b'=' | b'/') {
            i += 1;
        }
        let name = String::from_utf8_lossy(&bytes[start..i]).to_ascii_lowercase();
        let mut j = i;
        while j < n && is_space(bytes[j]) {
            j += 1;
        }
        let mut value = String::new();
        if j < n && bytes[j] == b'=' {
            j += 1;
            while j < n && is_space(bytes[j]) {
                j += 1;
            }
            let (vstart, vend, next) = match bytes.get(j) {
                Some(&q @ (b'"' | b'\'')) => {
                    let end = bytes[j + 1..]
                        .iter()
                        .position(|&b| b == q)
                        .map_or(n, |p| j + 1 + p);
                    (j + 1, end, (end + 1).min(n))
                }
                _ => {
                    let end = bytes[j..]
                        .iter()
                        .position(|&b| is_space(b))
                        .map_or(n, |p| j + p);
                    (j, end, end)
                }
            };
            value = decode(&String::from_utf8_lossy(&bytes[vstart..vend]));
            i = next;
        }
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, value));
        }
    }
    out
}

#[cfg(test)]
mod tests;
