//! Turning one CSV row into a table entry: URL syntax, status, allowed hosts, duplicates and
//! the pinned-to-old warning. Each problem becomes a [`LoadError`] with file:line; the row is
//! skipped and loading goes on, so one run reports everything.

use super::config::{HostAllowList, QueryMode};
use super::csv_load::Row;
use super::error::{LoadError, LoadErrors};
use super::normalize::{canon_target, Normalized};
use super::report::Report;
use super::table::{RedirectTable, MAX_URL};
use super::LoadContext;

/// Statuses a row may ask for.
pub(crate) const STATUSES: [u16; 5] = [301, 302, 307, 308, 410];

/// Everything a row needs besides itself.
pub(crate) struct RowSink<'a> {
    pub file: &'a str,
    pub table: &'a mut RedirectTable,
    pub allow: &'a HostAllowList,
    pub default_status: u16,
    pub ctx: &'a LoadContext<'a>,
    pub errs: &'a mut LoadErrors,
    pub report: &'a mut Report,
    /// Reused for every row: the canonical form of the current `old_url`.
    pub norm: Normalized,
}

/// An `old_url` reduced to its table key.
pub(crate) struct OldUrl {
    pub host: String,
    pub key: String,
    pub prefix: bool,
}

/// A target as stored: canonical text without the trailing `*`.
pub(crate) struct Target {
    pub text: String,
    pub splat: bool,
}

enum TargetError {
    Bad(String),
    Host(String),
}

impl RowSink<'_> {
    pub(crate) fn add(&mut self, row: Row<'_>) {
        let line = row.line;
        let bad = |column: &'static str, url: &str, reason: String| LoadError::BadUrl {
            file: self.file.into(),
            line,
            column,
            url: url.into(),
            reason,
        };
        let old = parse_old(row.old_url, self.table, &mut self.norm);
        let status = match row.status.trim() {
            "" => Ok(self.default_status),
            s => s
                .parse::<u16>()
                .ok()
                .filter(|v| STATUSES.contains(v))
                .ok_or(()),
        };
        let target = match status {
            Ok(410) => {
                if !row.new_url.trim().is_empty() {
                    let msg = format!(
                        "{:?} is gone (410): new_url {:?} is ignored",
                        row.old_url, row.new_url
                    );
                    self.report.warn(line, msg);
                }
                Ok(Target {
                    text: String::new(),
                    splat: false,
                })
            }
            // An invalid old_url already has its error; do not add a splat complaint to it.
            _ => parse_target(
                row.new_url,
                self.allow,
                !old.as_ref().is_ok_and(|o| !o.prefix),
            ),
        };
        let mut failed = false;
        let old = old.map_err(|r| self.errs.push(bad("old_url", row.old_url, r)));
        if status.is_err() {
            self.errs.push(LoadError::BadStatus {
                file: self.file.into(),
                line,
                url: row.old_url.into(),
                value: row.status.into(),
            });
            failed = true;
        }
        let target = match target {
            Ok(t) => Some(t),
            Err(TargetError::Bad(r)) => {
                self.errs.push(bad("new_url", row.new_url, r));
                None
            }
            Err(TargetError::Host(host)) => {
                self.errs.push(LoadError::HostNotAllowed {
                    file: self.file.into(),
                    line,
                    url: row.new_url.into(),
                    host,
                });
                None
            }
        };
        let (Ok(old), Ok(status), Some(target), false) = (old, status, target, failed) else {
            return;
        };
        self.insert(line, row.old_url, old, target, status);
    }

    fn insert(&mut self, line: u32, raw_old: &str, old: OldUrl, target: Target, status: u16) {
        if let Some(route) = (self.ctx.pinned_to_old)(
            Some(&old.host)
                .filter(|h| !h.is_empty())
                .map(|h| h.as_str()),
            &self.norm.path,
        ) {
            let msg = format!("{raw_old:?}: route {route:?} pins this URL to the old storefront, so shoppers it sends there never get this redirect");
            self.report.warn(line, msg);
        }
        let host = self.table.host_id(&old.host);
        match self.table.insert(
            host,
            &old.key,
            old.prefix,
            &target.text,
            target.splat,
            status,
            line,
        ) {
            Ok(_) => {}
            Err(Some(first)) => {
                let t = &*self.table;
                let same = t.status(first) == status
                    && t.target(first) == target.text
                    && t.is_splat(first) == target.splat;
                if same {
                    self.report.identical_duplicates += 1;
                    let msg = format!(
                        "{raw_old:?} repeats line {} (identical, kept once)",
                        t.line(first)
                    );
                    self.report.warn(line, msg);
                } else {
                    let star = |s: bool| if s { "*" } else { "" };
                    self.errs.push(LoadError::Conflict {
                        file: self.file.into(),
                        line,
                        url: raw_old.into(),
                        first: t.line(first),
                        this: format!("{status} {}{}", target.text, star(target.splat)),
                        other: format!(
                            "{} {}{}",
                            t.status(first),
                            t.target(first),
                            star(t.is_splat(first))
                        ),
                    });
                }
            }
            Err(None) => self.errs.push(LoadError::TooLarge {
                file: self.file.into(),
                max: u32::MAX as usize - 1,
                max_bytes: u32::MAX as usize,
            }),
        }
    }
}

/// Splits `http(s)://host[:port]` off an absolute URL: `Ok(None)` for a path, `Ok(Some((host
/// lowercase without port, authority as written lowercase, rest)))` for an absolute URL.
pub(crate) fn split_absolute(s: &str) -> Result<Option<(String, String, &str)>, String> {
    let has = |scheme: &str| {
        s.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    };
    let scheme_len = if has("http://") {
        7
    } else if has("https://") {
        8
    } else {
        return Ok(None);
    };
    let after = &s[scheme_len..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return Err("has user info before the host".into());
    }
    let authority = authority.to_ascii_lowercase();
    let host = match authority.rfind(':') {
        Some(i)
            if !authority.ends_with(']')
                && authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &authority[..i]
        }
        _ => authority.as_str(),
    };
    let host = host.trim_end_matches('.');
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':');
    if host.is_empty() || !host.bytes().all(valid) {
        return Err("has no valid host".into());
    }
    Ok(Some((
        host.to_string(),
        format!("{}{authority}", &s[..scheme_len].to_ascii_lowercase()),
        rest,
    )))
}

/// Keys an `old_url`; `n` is left holding its canonical form.
pub(crate) fn parse_old(
    raw: &str,
    table: &RedirectTable,
    n: &mut Normalized,
) -> Result<OldUrl, String> {
    let m = &table.matching;
    let s = raw.trim();
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > MAX_URL {
        return Err(format!("is longer than {MAX_URL} bytes"));
    }
    let (host, rest) = match split_absolute(s)? {
        Some((host, _, rest)) => (host, if rest.is_empty() { "/" } else { rest }),
        None => (String::new(), s),
    };
    if rest.starts_with("//") || rest.starts_with("/\\") {
        return Err("starts with //: write a host as https://host/path".into());
    }
    if !rest.starts_with('/') {
        return Err("must be a path starting with / or an http(s):// URL".into());
    }
    if rest.contains('#') {
        return Err("has a #fragment, which browsers never send".into());
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let prefix_path = path.strip_suffix('*').filter(|p| p.ends_with('/'));
    if prefix_path.is_some() && query.is_some() {
        return Err("a prefix rule (/*) cannot have a query".into());
    }
    // `/index.php?route=category&path=18_/*` reads as a prefix rule, but a prefix is a path:
    // loaded as written it would match only a literal `*` (found by the redirects_csv fuzz
    // target). A literal star in a query is written `%2A`.
    if query.is_some_and(|q| q.ends_with("/*")) {
        return Err(
            "ends with /* inside its query: a prefix rule (/*) matches paths only and cannot have a query (write a literal * as %2A)"
                .into(),
        );
    }
    if query.is_some() && m.query != QueryMode::Key {
        return Err(
            "has a query, but this table ignores queries for matching (query mode is not `key`)"
                .into(),
        );
    }
    n.fill(prefix_path.unwrap_or(path), query, m)
        .map_err(|_| "has a malformed %-escape".to_string())?;
    if n.had_control {
        return Err("contains a control character".into());
    }
    let mut key = String::with_capacity(n.folded.len() + n.query_key.len() + 1);
    match prefix_path {
        Some(_) => key.push_str(n.folded.trim_end_matches('/')),
        None => n.exact_key(true, m, &mut key),
    }
    Ok(OldUrl {
        host,
        key,
        prefix: prefix_path.is_some(),
    })
}

fn parse_target(
    raw: &str,
    allow: &HostAllowList,
    old_is_prefix: bool,
) -> Result<Target, TargetError> {
    let bad = |s: &str| Err(TargetError::Bad(s.into()));
    let s = raw.trim();
    if s.is_empty() {
        return bad("is empty (a page removed on purpose takes status 410)");
    }
    if s.len() > MAX_URL {
        return Err(TargetError::Bad(format!("is longer than {MAX_URL} bytes")));
    }
    let (origin, rest) = match split_absolute(s).map_err(TargetError::Bad)? {
        Some((host, _, _)) if !allow.allows(&host) => return Err(TargetError::Host(host)),
        Some((_, origin, rest)) => (origin, if rest.is_empty() { "/" } else { rest }),
        None => (String::new(), s),
    };
    if rest.starts_with("//") || rest.starts_with("/\\") || rest.starts_with("\\") {
        return bad("starts with // or \\, which a browser reads as another host");
    }
    if !rest.starts_with('/') {
        return bad("must be a path starting with / or an http(s):// URL on an allowed host");
    }
    let splat = rest.ends_with("/*");
    let body = if splat { &rest[..rest.len() - 1] } else { rest };
    if splat && !old_is_prefix {
        return bad("ends with * but old_url is not a prefix rule (/*)");
    }
    if splat && body.contains(['?', '#']) {
        return bad("a * must end the target, after any path and with no query");
    }
    if old_is_prefix && body.contains('*') {
        // `/q/*,/search?to=*` reads as "put the rest here", but only a trailing `/*` is
        // substituted: served as written, the `*` would reach shoppers literally.
        return bad("a * is substituted only as the target's trailing /*; a * elsewhere (here in the path or query) would be sent literally");
    }
    let mut text = origin;
    text.reserve(body.len() + 8);
    let had_control = canon_target(body, &mut text)
        .map_err(|_| TargetError::Bad("has a malformed %-escape".into()))?;
    if had_control {
        return bad("contains a control character");
    }
    // Canonical text is visible ASCII by construction; this guards the `Location` header anyway.
    if !text.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return bad("cannot be sent as a Location header");
    }
    Ok(Target { text, splat })
}
