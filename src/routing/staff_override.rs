//! Staff override: `?cutover=new|old|clear` or `x-cutover-force: new|old` pins the requester to a
//! storefront so staff can test it before shoppers see it.
//!
//! When a token is configured the request must also carry it (`x-cutover-token` header or
//! `cutover_token` query parameter); otherwise the override is ignored, never an error page, so a
//! shopper who stumbles on a shared link just keeps their normal assignment.

use std::time::Duration;

use http::HeaderName;

use crate::http1::scan;
use crate::routing::request_headers::RequestHeaders;
use crate::routing::StorefrontId;

/// Header carrying the override token.
pub const TOKEN_HEADER: &str = "x-cutover-token";
/// [`TOKEN_HEADER`] as a parsed name, for the request path.
pub static TOKEN_HEADER_NAME: HeaderName = HeaderName::from_static(TOKEN_HEADER);
/// Query parameter carrying the override token.
pub const TOKEN_QUERY: &str = "cutover_token";

/// Compiled `[override]` settings.
#[derive(Debug, Clone)]
pub struct OverridePolicy {
    /// Off: override requests are ignored.
    pub enabled: bool,
    /// Query parameter, `cutover` by default.
    pub query_param: String,
    /// Request header, `x-cutover-force` by default.
    pub header: HeaderName,
    /// When set, overrides need this token.
    pub token: Option<String>,
    /// How long an override pin holds.
    pub ttl: Duration,
    /// Built from `query_param`.
    pub prefilter: QueryPrefilter,
}

impl OverridePolicy {
    /// Default query parameter.
    pub const DEFAULT_QUERY_PARAM: &'static str = "cutover";
    /// Default request header.
    pub const DEFAULT_HEADER: HeaderName = HeaderName::from_static("x-cutover-force");
    /// Default override pin lifetime: 12 hours.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(12 * 3600);
}

impl Default for OverridePolicy {
    /// Enabled, no token, `?cutover=` and `x-cutover-force`, 12 h pins.
    fn default() -> Self {
        OverridePolicy {
            enabled: true,
            query_param: Self::DEFAULT_QUERY_PARAM.to_string(),
            header: Self::DEFAULT_HEADER,
            token: None,
            ttl: Self::DEFAULT_TTL,
            prefilter: QueryPrefilter::new(Self::DEFAULT_QUERY_PARAM),
        }
    }
}

/// Tells queries that may carry the override or token parameter from those that cannot, with
/// one vectorised substring search: the common query (neither) is then not split into pairs,
/// which routing, the redirect lookup and the forwarded URI each did.
#[derive(Debug, Clone)]
pub struct QueryPrefilter {
    finders: Vec<memchr::memmem::Finder<'static>>,
}

impl QueryPrefilter {
    /// For the override parameter `query_param` and [`TOKEN_QUERY`].
    pub fn new(query_param: &str) -> Self {
        let mut finders = vec![memchr::memmem::Finder::new(query_param.as_bytes()).into_owned()];
        // `cutover_token` contains `cutover`: one search covers both.
        if !TOKEN_QUERY.contains(query_param) {
            finders.push(memchr::memmem::Finder::new(TOKEN_QUERY.as_bytes()).into_owned());
        }
        QueryPrefilter { finders }
    }

    /// `false` only when neither parameter name occurs anywhere in `query`.
    pub fn may_match(&self, query: &str) -> bool {
        self.finders
            .iter()
            .any(|f| f.find(query.as_bytes()).is_some())
    }
}

/// What the staff asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Force {
    /// Pin me to this storefront.
    To(StorefrontId),
    /// Drop my pin; the split decides again.
    Clear,
}

/// The outcome of reading a request for an override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceRequest {
    /// The request asks for nothing.
    None,
    /// Asked for and allowed.
    Granted(Force),
    /// Asked for but disabled, without the right token, or naming no storefront.
    Refused,
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    scan::split(query, b'&').find_map(|pair| {
        let (k, v) = scan::split_once(pair, b'=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Constant-time comparison so the token cannot be guessed byte by byte from response timing.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads an override from the header first, then the query.
pub fn read(
    policy: &OverridePolicy,
    headers: RequestHeaders<'_>,
    query: Option<&str>,
    storefront_id: impl Fn(&str) -> Option<StorefrontId>,
) -> ForceRequest {
    let asked = headers
        .get(&policy.header)
        .and_then(|v| std::str::from_utf8(v).ok())
        .or_else(|| {
            query
                .filter(|q| policy.prefilter.may_match(q))
                .and_then(|q| query_value(q, &policy.query_param))
        });
    let Some(asked) = asked else {
        return ForceRequest::None;
    };
    if !policy.enabled {
        return ForceRequest::Refused;
    }
    if let Some(token) = &policy.token {
        let given = headers.get(&TOKEN_HEADER_NAME).or_else(|| {
            query
                .and_then(|q| query_value(q, TOKEN_QUERY))
                .map(str::as_bytes)
        });
        if !given.is_some_and(|g| same_secret(g, token.as_bytes())) {
            return ForceRequest::Refused;
        }
    }
    let asked = asked.trim();
    if asked.eq_ignore_ascii_case("clear") {
        return ForceRequest::Granted(Force::Clear);
    }
    match storefront_id(asked) {
        Some(id) => ForceRequest::Granted(Force::To(id)),
        None => ForceRequest::Refused,
    }
}

/// The query without the override and token parameters, so storefront caches and analytics
/// never see them. `None` when nothing needed removing (the common case: no allocation).
pub fn strip_query(query: &str, policy: &OverridePolicy) -> Option<String> {
    if !policy.prefilter.may_match(query) {
        return None;
    }
    let ours = |pair: &str| {
        let k = scan::split_once(pair, b'=').map_or(pair, |(k, _)| k);
        k == policy.query_param || k == TOKEN_QUERY
    };
    if !scan::split(query, b'&').any(ours) {
        return None;
    }
    let kept: Vec<&str> = scan::split(query, b'&')
        .filter(|p| !p.is_empty() && !ours(p))
        .collect();
    Some(kept.join("&"))
}

/// `path?query` without the override and token parameters, for the redirect lookup and the
/// storefront alike (one definition, so the two can never disagree). `None` when the query has
/// none of them.
pub fn strip_path_and_query(
    path: &str,
    query: Option<&str>,
    policy: &OverridePolicy,
) -> Option<String> {
    let q = strip_query(query?, policy)?;
    Some(if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(token: Option<&str>) -> OverridePolicy {
        OverridePolicy {
            enabled: true,
            query_param: "cutover".into(),
            header: HeaderName::from_static("x-cutover-force"),
            token: token.map(Into::into),
            ttl: Duration::from_secs(3600),
            prefilter: QueryPrefilter::new("cutover"),
        }
    }
    fn ids(n: &str) -> Option<StorefrontId> {
        ["old", "new"].iter().position(|x| *x == n)
    }

    #[test]
    fn table() {
        use http::HeaderMap;
        let mut forced = HeaderMap::new();
        forced.insert("x-cutover-force", "old".parse().unwrap());
        let mut with_token = HeaderMap::new();
        with_token.insert(TOKEN_HEADER, "s3cret".parse().unwrap());
        let none = HeaderMap::new();
        let cases: &[(&OverridePolicy, &HeaderMap, Option<&str>, ForceRequest)] = &[
            (&policy(None), &none, None, ForceRequest::None),
            (&policy(None), &none, Some("a=1"), ForceRequest::None),
            (
                &policy(None),
                &none,
                Some("a=1&cutover=new"),
                ForceRequest::Granted(Force::To(1)),
            ),
            (
                &policy(None),
                &none,
                Some("cutover=clear"),
                ForceRequest::Granted(Force::Clear),
            ),
            (
                &policy(None),
                &none,
                Some("cutover=staging"),
                ForceRequest::Refused,
            ),
            (
                &policy(None),
                &forced,
                Some("cutover=new"),
                ForceRequest::Granted(Force::To(0)),
            ),
            (
                &policy(Some("s3cret")),
                &none,
                Some("cutover=new"),
                ForceRequest::Refused,
            ),
            (
                &policy(Some("s3cret")),
                &none,
                Some("cutover=new&cutover_token=nope"),
                ForceRequest::Refused,
            ),
            (
                &policy(Some("s3cret")),
                &none,
                Some("cutover=new&cutover_token=s3cret"),
                ForceRequest::Granted(Force::To(1)),
            ),
            (
                &policy(Some("s3cret")),
                &with_token,
                Some("cutover=new"),
                ForceRequest::Granted(Force::To(1)),
            ),
        ];
        for (i, (p, h, q, want)) in cases.iter().enumerate() {
            assert_eq!(read(p, (*h).into(), *q, ids), *want, "case {i}");
        }
        let mut off = policy(None);
        off.enabled = false;
        assert_eq!(
            read(&off, (&none).into(), Some("cutover=new"), ids),
            ForceRequest::Refused
        );
    }

    #[test]
    fn strips_only_our_parameters() {
        let p = policy(None);
        assert_eq!(strip_query("a=1&b=2", &p), None);
        assert_eq!(
            strip_query("a=1&cutover=new&b=2", &p).as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(
            strip_query("cutover=new&cutover_token=x", &p).as_deref(),
            Some("")
        );
        assert_eq!(strip_query("cutoverx=1", &p), None);
        assert_eq!(
            strip_path_and_query("/a", Some("x=1&cutover=new"), &p).as_deref(),
            Some("/a?x=1")
        );
        assert_eq!(
            strip_path_and_query("/a", Some("cutover=new"), &p).as_deref(),
            Some("/a")
        );
        assert_eq!(strip_path_and_query("/a", Some("x=1"), &p), None);
        assert_eq!(strip_path_and_query("/a", None, &p), None);
    }

    #[test]
    fn the_prefilter_never_hides_either_parameter() {
        // A renamed override parameter that `cutover_token` does not contain: two searches.
        let mut p = policy(None);
        p.query_param = "staff".into();
        p.prefilter = QueryPrefilter::new("staff");
        assert!(!p.prefilter.may_match("route=product&product_id=42"));
        assert!(p.prefilter.may_match("a=1&staff=new"));
        assert!(p.prefilter.may_match("cutover_token=x"));
        assert_eq!(
            strip_query("a=1&staff=new&cutover_token=t", &p).as_deref(),
            Some("a=1")
        );
        assert_eq!(
            strip_query("a=1&cutover=new", &p),
            None,
            "not ours once renamed"
        );
        let headers = http::HeaderMap::new();
        assert_eq!(
            read(&p, (&headers).into(), Some("x=1&staff=old"), ids),
            ForceRequest::Granted(Force::To(0))
        );
        assert_eq!(
            read(&p, (&headers).into(), Some("x=1&cutover=old"), ids),
            ForceRequest::None
        );
    }
}
