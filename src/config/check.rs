//! The problem collector and the small checks both stages (`validate`, `build_snapshot`) use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, Uri};
use toml::Spanned;

use super::raw::RawNameValue;
use super::{Problem, Source};
use crate::values::HumanDuration;

/// Collects problems against one source file.
pub(super) struct Check<'a> {
    pub(super) src: &'a Source,
    pub(super) problems: Vec<Problem>,
    /// Files read besides the config, for the reload watcher.
    pub(super) files: Vec<PathBuf>,
}

impl Check<'_> {
    pub(super) fn at<T>(
        &mut self,
        spanned: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems
            .push(self.src.problem(spanned.span(), field, message));
    }
    pub(super) fn file(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(self.src.problem(0..0, field, message));
        if let Some(p) = self.problems.last_mut() {
            p.line = 0;
            p.column = 0;
        }
    }
    pub(super) fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.src.base_dir().join(p)
        }
    }
}

pub(super) fn dur(v: &Option<Spanned<HumanDuration>>, default: Duration) -> Duration {
    v.as_ref().map_or(default, |d| d.get_ref().0)
}

pub(super) fn positive(
    c: &mut Check<'_>,
    v: &Option<Spanned<HumanDuration>>,
    field: &str,
    default: Duration,
) -> Duration {
    if let Some(d) = v {
        if d.get_ref().0.is_zero() {
            c.at(d, field, "must be greater than zero");
        }
    }
    dur(v, default)
}

/// Storefront and route names end up in cookies, headers and metric labels.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(super) fn name_value_header(
    c: &mut Check<'_>,
    nv: &RawNameValue,
    field: &str,
) -> Option<(HeaderName, Option<HeaderValue>)> {
    let name = match HeaderName::from_bytes(nv.name.get_ref().as_bytes()) {
        Ok(n) => n,
        Err(_) => {
            c.at(&nv.name, format!("{field}.name"), "not a valid header name");
            return None;
        }
    };
    let value = match nv.value.as_deref().map(HeaderValue::from_str) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            c.at(
                &nv.name,
                format!("{field}.value"),
                "not a valid header value",
            );
            return None;
        }
    };
    Some((name, value))
}

/// Certificate problems of an HTTPS listener become config problems (so a bad pair is rejected
/// with the rest of the reload); warnings (expiring soon) are logged.
pub(super) fn check_listener_tls(
    c: &mut Check<'_>,
    cfg: &crate::tls::ListenerTlsConfig,
    span: std::ops::Range<usize>,
    index: usize,
) {
    for p in crate::tls::check(cfg, &c.src.base_dir()) {
        if p.is_error() {
            c.problems.push(c.src.problem(
                span.clone(),
                format!("listener[{index}].tls"),
                p.to_string(),
            ));
        } else {
            tracing::warn!(listener = index, "{p}");
        }
    }
}

/// `scheme://host:port` of a storefront, or a located problem.
pub(super) fn upstream_target(
    c: &mut Check<'_>,
    upstream: &Spanned<String>,
    field: &str,
) -> Option<(Scheme, Authority)> {
    let field = format!("{field}.upstream");
    let text = upstream.get_ref();
    let uri: Uri = match text.parse() {
        Ok(u) => u,
        Err(e) => {
            c.at(upstream, &field, format!("`{text}` is not a URL: {e}"));
            return None;
        }
    };
    let scheme = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
        _ => {
            c.at(
                upstream,
                &field,
                format!("`{text}` must start with http:// or https://"),
            );
            return None;
        }
    };
    let Some(authority) = uri.authority().cloned() else {
        c.at(upstream, &field, "has no host");
        return None;
    };
    // `http::Uri` accepts `host:anything` and an empty host; the connector would then dial a
    // port nobody configured (`:99999`, `:8o8o`), so both are checked here.
    let host = authority.host();
    let after_host = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, h)| h)
        .strip_prefix(host)
        .unwrap_or("");
    let port_ok = match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some(p) => p.parse::<u16>().is_ok_and(|p| p != 0),
    };
    if host.is_empty() || !port_ok {
        c.at(
            upstream,
            &field,
            format!("`{text}` needs a host and, if a port is given, a number from 1 to 65535"),
        );
        return None;
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        c.at(
            upstream,
            &field,
            "must be scheme://host:port only; request paths are forwarded unchanged",
        );
    }
    Some((scheme, authority))
}
