//! Inventory keys: URLs in the redirect table's matching form, so an inventoried URL is the
//! key the plan would look up.
//!
//! The canonical percent-encoding comes from the redirect table itself
//! (`redirects::internals::canon_target`, the function that canonicalises the plan's targets,
//! built on the same `canon` as request lookups); this file applies the rest of a table's
//! matching policy on top of it: case folding, trailing slash, query as key (sorted, tracking
//! parameters dropped) or ignored. The normaliser proper (`redirects::normalize::Normalized`)
//! is private to `redirects`; if it becomes public, [`KeyPolicy::key_into`] becomes a call to
//! `Normalized::fill` + `exact_key`. `tests` holds the two equal through `RedirectTable::lookup`.

use crate::redirects::config::ParamFilter;
use crate::redirects::internals::{canon_target, is_canonical_path};
use crate::redirects::{QueryMode, TableConfig, TrailingSlash};
use std::cell::RefCell;

/// Keys longer than this are not inventoried: bounded memory per entry (a scanner's 8 KiB
/// URLs must not fill the inventory), and no real store page has such a URL.
pub const MAX_KEY_BYTES: usize = 512;

/// How a request URL becomes an inventory key: one redirect table's matching options.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    case_sensitive: bool,
    trailing_slash: TrailingSlash,
    query: QueryMode,
    ignore: ParamFilter,
    per_host: bool,
}

impl Default for KeyPolicy {
    /// The defaults of a `[[redirects]]` table.
    fn default() -> Self {
        KeyPolicy::from_table(&TableConfig::with_defaults("inventory", "-"), false)
    }
}

/// Why a URL has no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoKey {
    /// Not a path (`*`, absolute-form was expected to be split by the caller), has a `#`,
    /// or has a `%` not followed by two hex digits: the plan cannot match it either.
    Invalid,
    /// Longer than [`MAX_KEY_BYTES`].
    TooLong,
}

/// Reused per thread so computing a key allocates nothing once the buffers have grown.
#[derive(Default)]
pub(crate) struct Scratch {
    canon: String,
    query_in: String,
    query: String,
    ranges: Vec<(usize, usize)>,
}

thread_local! {
    static SCRATCH: RefCell<(Scratch, String)> = RefCell::new(Default::default());
}

impl KeyPolicy {
    /// The matching policy of `table` (the table whose coverage matters most: with several
    /// tables of different options, the first `[[redirects]]` table). `per_host` keeps hosts
    /// apart (for plans with per-host entries); off, `www.` and the bare domain share rows.
    pub fn from_table(table: &TableConfig, per_host: bool) -> Self {
        KeyPolicy {
            case_sensitive: table.case_sensitive,
            trailing_slash: table.trailing_slash,
            query: table.query,
            ignore: ParamFilter::new(&table.ignore_params),
            per_host,
        }
    }

    /// Whether keys carry the host.
    pub fn per_host(&self) -> bool {
        self.per_host
    }

    /// The key of `path_and_query` (a request target starting with `/`), as an owned string.
    pub fn key(&self, path_and_query: &str) -> Result<String, NoKey> {
        let mut out = String::new();
        self.key_into(path_and_query, &mut Scratch::default(), &mut out)?;
        Ok(out)
    }

    /// Runs `f` with the key of `path_and_query`: the request's own bytes when they already are
    /// the key ([`KeyPolicy::borrowed_key`]), else computed in per-thread buffers (no
    /// allocation once they have grown to the longest URL seen on the thread).
    pub(crate) fn with_key<R>(
        &self,
        path_and_query: &str,
        f: impl FnOnce(Result<&str, NoKey>) -> R,
    ) -> R {
        if let Some(key) = self.borrowed_key(path_and_query) {
            return f(key);
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => {
                let (scratch, out) = &mut *s;
                match self.key_into(path_and_query, scratch, out) {
                    Ok(()) => f(Ok(out.as_str())),
                    Err(e) => f(Err(e)),
                }
            }
            // Re-entered from `f` (never in practice): fall back to fresh buffers.
            Err(_) => match self.key(path_and_query) {
                Ok(k) => f(Ok(&k)),
                Err(e) => f(Err(e)),
            },
        })
    }

    /// The key as a slice of `path_and_query`, when canonicalising would not change a byte of
    /// what the key keeps: a path of canonical bytes (lowercase unless the table is
    /// case-sensitive), no fragment, and no query unless the table ignores queries. That is most
    /// of a store's page URLs, keyed with one pass over the path and no copy. `None`: compute
    /// it ([`KeyPolicy::key_into`], which gives the same key; `tests` holds them equal).
    fn borrowed_key<'a>(&self, path_and_query: &'a str) -> Option<Result<&'a str, NoKey>> {
        if !path_and_query.starts_with('/') {
            return None;
        }
        let path = match path_and_query.find(['?', '#']) {
            None => path_and_query,
            Some(i) => {
                let (path, rest) = path_and_query.split_at(i);
                if rest.starts_with('#') || self.query == QueryMode::Key || rest.contains('#') {
                    return None;
                }
                path
            }
        };
        if !is_canonical_path(path)
            || (!self.case_sensitive && path.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return None;
        }
        let key = match self.trailing_slash {
            TrailingSlash::Equivalent => path.trim_end_matches('/'),
            TrailingSlash::Strict => path,
        };
        let key = if key.is_empty() { "/" } else { key };
        Some(if key.len() > MAX_KEY_BYTES {
            Err(NoKey::TooLong)
        } else {
            Ok(key)
        })
    }

    pub(crate) fn key_into(
        &self,
        path_and_query: &str,
        s: &mut Scratch,
        out: &mut String,
    ) -> Result<(), NoKey> {
        out.clear();
        if path_and_query.len() > MAX_KEY_BYTES * 3 {
            return Err(NoKey::TooLong);
        }
        if !path_and_query.starts_with('/') || path_and_query.contains('#') {
            return Err(NoKey::Invalid);
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        // A path without `?` or `#` is canonicalised as a path by `canon_target`.
        s.canon.clear();
        canon_target(path, &mut s.canon).map_err(|_| NoKey::Invalid)?;
        if !self.case_sensitive {
            s.canon.make_ascii_lowercase();
        }
        let p = match self.trailing_slash {
            TrailingSlash::Equivalent => s.canon.trim_end_matches('/'),
            TrailingSlash::Strict => s.canon.as_str(),
        };
        out.push_str(if p.is_empty() { "/" } else { p });
        if let (QueryMode::Key, Some(q)) = (self.query, query) {
            self.query_key(q, s).map_err(|_| NoKey::Invalid)?;
            if !s.query.is_empty() {
                out.push('?');
                out.push_str(&s.query);
            }
        }
        if out.len() > MAX_KEY_BYTES {
            out.clear();
            return Err(NoKey::TooLong);
        }
        Ok(())
    }

    /// Canonical query parameters without tracking ones, case-folded unless the table is
    /// case-sensitive, sorted, joined with `&` into `s.query`.
    fn query_key(&self, q: &str, s: &mut Scratch) -> Result<(), ()> {
        // `?` first so `canon_target` canonicalises what follows as a query (form-style).
        s.query_in.clear();
        s.query_in.push('?');
        s.query_in.push_str(q);
        s.canon.clear();
        canon_target(&s.query_in, &mut s.canon).map_err(|_| ())?;
        let canon = &mut s.canon;
        if !self.case_sensitive {
            canon.make_ascii_lowercase();
        }
        s.ranges.clear();
        let mut start = 1;
        for piece in canon[1..].split('&') {
            let end = start + piece.len();
            // `=` and `&` inside names and values stay escaped in the canonical form.
            let name = piece.split_once('=').map_or(piece, |(n, _)| n);
            if !piece.is_empty() && !self.ignore.matches(name) {
                s.ranges.push((start, end));
            }
            start = end + 1;
        }
        let canon = &s.canon;
        s.ranges
            .sort_unstable_by(|a, b| canon[a.0..a.1].cmp(&canon[b.0..b.1]));
        s.query.clear();
        for &(a, b) in &s.ranges {
            if !s.query.is_empty() {
                s.query.push('&');
            }
            s.query.push_str(&canon[a..b]);
        }
        Ok(())
    }
}

/// A request's `Host` as keys keep it: lowercase, without port, only host characters;
/// anything else becomes "no host" rather than a key a report would have to escape.
pub(crate) fn clean_host(host: &str, out: &mut String) {
    out.clear();
    let host = match host.rfind(':') {
        Some(i) if !host.ends_with(']') => &host[..i],
        _ => host,
    };
    let host = host.trim_end_matches('.');
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':');
    if host.len() <= 255 && host.bytes().all(valid) {
        out.push_str(host);
        out.make_ascii_lowercase();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redirects::{load_bytes, LoadContext};
    use std::path::Path;

    fn policy(edit: impl FnOnce(&mut TableConfig)) -> (KeyPolicy, TableConfig) {
        let mut cfg = TableConfig::with_defaults("plan", "plan.csv");
        edit(&mut cfg);
        (KeyPolicy::from_table(&cfg, false), cfg)
    }

    #[test]
    fn default_policy_folds_case_slash_and_tracking() {
        let p = KeyPolicy::default();
        assert_eq!(p.key("/Shoes/Red/").unwrap(), "/shoes/red");
        assert_eq!(p.key("/").unwrap(), "/");
        assert_eq!(p.key("//").unwrap(), "/");
        assert_eq!(
            p.key("/index.php?route=product%2Fproduct&utm_source=x&product_id=42&&gclid=1")
                .unwrap(),
            "/index.php?product_id=42&route=product/product"
        );
        assert_eq!(p.key("/a?utm_source=x").unwrap(), "/a");
        assert_eq!(p.key("/caf%c3%a9").unwrap(), "/caf%c3%a9");
        assert_eq!(p.key("/a b").unwrap(), "/a%20b");
        assert_eq!(p.key("/x?a%3Db").unwrap(), "/x?a%3db");
        assert_ne!(p.key("/x?a%3Db").unwrap(), p.key("/x?a=b").unwrap());
    }

    #[test]
    fn policy_options_apply() {
        let (strict, _) = policy(|c| {
            c.case_sensitive = true;
            c.trailing_slash = TrailingSlash::Strict;
            c.query = QueryMode::Ignore;
        });
        assert_eq!(strict.key("/Shoes/Red/?id=1").unwrap(), "/Shoes/Red/");
        let (drop, _) = policy(|c| c.query = QueryMode::Drop);
        assert_eq!(drop.key("/A?id=1").unwrap(), "/a");
    }

    #[test]
    fn invalid_and_too_long_urls_have_no_key() {
        let p = KeyPolicy::default();
        assert_eq!(p.key("*"), Err(NoKey::Invalid));
        assert_eq!(p.key("/a#frag"), Err(NoKey::Invalid));
        assert_eq!(p.key("/bad%zz"), Err(NoKey::Invalid));
        assert_eq!(p.key("/a?q=%4"), Err(NoKey::Invalid));
        let long = format!("/{}", "a".repeat(MAX_KEY_BYTES));
        assert_eq!(p.key(&long), Err(NoKey::TooLong));
        let huge = format!("/{}", "a".repeat(MAX_KEY_BYTES * 4));
        assert_eq!(p.key(&huge), Err(NoKey::TooLong));
        // Escaping can make a short URL long.
        let spaces = format!("/{}", " ".repeat(200));
        assert_eq!(p.key(&spaces), Err(NoKey::TooLong));
    }

    #[test]
    fn host_is_cleaned() {
        let mut h = String::new();
        clean_host("Shop.Example:8080", &mut h);
        assert_eq!(h, "shop.example");
        clean_host("[::1]:80", &mut h);
        assert_eq!(h, "[::1]");
        clean_host("evil\"<host>", &mut h);
        assert_eq!(h, "");
    }

    /// The key of a request finds exactly what the request itself finds in a real table, for
    /// every matching option: inventory rows line up with plan lookups.
    #[test]
    fn key_looks_up_like_the_request_in_a_real_table() {
        let csv = "old_url,new_url,status\n\
                   /Shoes/Red,/collections/red,301\n\
                   /index.php?route=product/product&product_id=42,/products/42,301\n\
                   /caf%C3%A9,/cafe,301\n\
                   /about,/pages/about,301\n\
                   /gone-page/,,410\n\
                   /blog/*,/news/*,301\n";
        let requests = [
            "/shoes/red/",
            "/SHOES/RED?utm_source=mail",
            "/index.php?product_id=42&utm_medium=x&route=product%2Fproduct",
            "/index.php?route=product/product&product_id=43",
            "/café",
            "/caf%c3%a9",
            "/about?ref=footer",
            "/gone-page",
            "/blog/2020/Post",
            "/nothing/here",
            "/a+b?x=1+2",
        ];
        let variants: [fn(&mut TableConfig); 5] = [
            |_| {},
            |c| c.case_sensitive = true,
            |c| c.trailing_slash = TrailingSlash::Strict,
            |c| c.query = QueryMode::Ignore,
            |c| {
                c.query = QueryMode::Key;
                c.query_fallback = false;
            },
        ];
        for edit in variants {
            let (p, cfg) = policy(edit);
            // A table that ignores queries refuses rows with one.
            let rows: String = csv
                .lines()
                .filter(|l| cfg.query == QueryMode::Key || !l.contains('?'))
                .map(|l| format!("{l}\n"))
                .collect();
            let loaded = load_bytes(
                &cfg,
                &LoadContext::standalone(Path::new(".")),
                rows.as_bytes(),
            )
            .expect("plan loads");
            for r in requests {
                let key = p.key(r).unwrap();
                let by_request = loaded.table.lookup("", r).map(|h| (h.written, h.line));
                let by_key = loaded.table.lookup("", &key).map(|h| (h.written, h.line));
                assert_eq!(by_request, by_key, "{r} -> {key} ({cfg:?})");
            }
        }
    }

    /// The borrowed key is exactly the computed one, for every policy, wherever it applies.
    #[test]
    fn borrowed_keys_equal_computed_keys() {
        let urls = [
            "/",
            "//",
            "/shoes/red",
            "/shoes/red/",
            "/Shoes/Red",
            "/a+b,c;d=e:f@g!$&'()*",
            "/a?x=1",
            "/a?utm_source=x",
            "/a?",
            "/a#f",
            "/a?x#f",
            "/caf%C3%A9",
            "/a b",
            "/a%2fb",
            "*",
            "shoes",
        ];
        let long = format!("/{}", "a".repeat(MAX_KEY_BYTES));
        let edits: [fn(&mut TableConfig); 5] = [
            |_| {},
            |c| c.case_sensitive = true,
            |c| c.trailing_slash = TrailingSlash::Strict,
            |c| c.query = QueryMode::Ignore,
            |c| c.query = QueryMode::Drop,
        ];
        let mut borrowed = 0;
        for edit in edits {
            let (p, cfg) = policy(edit);
            for u in urls.iter().copied().chain([long.as_str()]) {
                let computed = p.key(u);
                if let Some(b) = p.borrowed_key(u) {
                    borrowed += 1;
                    assert_eq!(b.map(str::to_owned), computed, "{u} ({cfg:?})");
                }
                assert_eq!(p.with_key(u, |k| k.map(str::to_owned)), computed, "{u}");
            }
        }
        assert!(
            borrowed > 20,
            "the fast path applies to plain paths: {borrowed}"
        );
        let p = KeyPolicy::default();
        assert!(p.borrowed_key("/Shoes").is_none());
        assert!(p.borrowed_key("/a?x=1").is_none());
        assert!(p.borrowed_key("/products/red-shoes").is_some());
    }

    #[test]
    fn with_key_reuses_thread_buffers() {
        let p = KeyPolicy::default();
        let k = p.with_key("/A/B/", |k| k.map(str::to_owned));
        assert_eq!(k.unwrap(), "/a/b");
        assert_eq!(p.with_key("/bad%", |k| k.err()), Some(NoKey::Invalid));
    }
}
