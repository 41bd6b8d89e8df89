//! Validation and compilation: raw structs -> [`Snapshot`], every problem collected with its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, Method, Uri};
use toml::Spanned;

use super::raw::{HostHeader, RawConfig, RawNameValue, UpstreamProtocol};
use super::runtime::RuntimeOverrides;
use super::values::HumanDuration;
use super::{ConfigError, Problem, Source};
use crate::access_log::AccessLog;
use crate::cohort::{CohortKeys, CohortPolicy, DEFAULT_KEY};
use crate::force::OverridePolicy;
use crate::metrics::Metrics;
use crate::redirects::{self, LoadContext};
use crate::routing::{Action, HostPattern, Matcher, RequestView, Route, Split};
use crate::state::{HeaderPolicy, Limits, ListenerSpec, RedirectSource, Snapshot, Storefront};
use crate::upstream::{Upstream, UpstreamSettings};

/// What a compile needs besides the file.
pub struct CompileInput<'a> {
    /// The parsed file.
    pub source: &'a Source,
    /// Generation number the new snapshot will carry.
    pub generation: u64,
    /// The running snapshot, whose connection pools are reused where settings are unchanged.
    pub previous: Option<&'a Snapshot>,
    /// Where the snapshot's metric handles come from.
    pub metrics: &'a Metrics,
}

/// Collects problems against one source file.
struct Check<'a> {
    src: &'a Source,
    problems: Vec<Problem>,
    /// Files read besides the config, for the reload watcher.
    files: Vec<PathBuf>,
}

impl Check<'_> {
    fn at<T>(
        &mut self,
        spanned: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems
            .push(self.src.problem(spanned.span(), field, message));
    }
    fn file(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(self.src.problem(0..0, field, message));
        if let Some(p) = self.problems.last_mut() {
            p.line = 0;
            p.column = 0;
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.src.base_dir().join(p)
        }
    }
}

fn dur(v: &Option<Spanned<HumanDuration>>, default: Duration) -> Duration {
    v.as_ref().map_or(default, |d| d.get_ref().0)
}

fn positive(
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
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn name_value_header(
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

fn read_secret(c: &mut Check<'_>, file: &Option<Spanned<String>>, field: &str) -> Option<String> {
    let f = file.as_ref()?;
    let path = c.path(f.get_ref());
    c.files.push(path.clone());
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Ok(_) => {
            c.at(f, field, format!("{} is empty", path.display()));
            None
        }
        Err(e) => {
            c.at(f, field, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// Certificate problems of an HTTPS listener become config problems (so a bad pair is rejected
/// with the rest of the reload); warnings (expiring soon) are logged. Returns the HSTS header.
fn check_listener_tls(
    c: &mut Check<'_>,
    cfg: &crate::tls::ListenerTlsConfig,
    span: std::ops::Range<usize>,
    index: usize,
) -> Option<HeaderValue> {
    let base = c.src.base_dir();
    for cert in &cfg.certificates {
        c.files.push(cert.cert_path(&base));
        c.files.push(cert.key_path(&base));
    }
    for p in crate::tls::check(cfg, &base) {
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
    cfg.hsts
        .as_ref()
        .and_then(|h| HeaderValue::from_str(&h.header_value()).ok())
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Loads every `[[redirects]]` table, reusing the previous snapshot's table when neither its
/// settings nor its file changed (a share change must not re-read a million rows).
fn load_redirects(
    c: &mut Check<'_>,
    raw: &RawConfig,
    generation: u64,
    previous: Option<&Snapshot>,
    routes: &[Route],
    old: usize,
) -> Vec<RedirectSource> {
    let base = c.src.base_dir();
    let no_headers = http::HeaderMap::new();
    let pinned_to_old = |host: Option<&str>, path: &str| {
        let view = RequestView {
            method: &Method::GET,
            host: host.unwrap_or(""),
            path,
            query: None,
            headers: &no_headers,
        };
        routes
            .iter()
            .find(|r| r.matcher.matches(&view))
            .filter(|r| r.action == Action::Storefront(old))
            .map(|r| r.name.clone())
    };
    let mut out = Vec::new();
    for (i, cfg) in raw.redirects.iter().enumerate() {
        let path = c.path(&cfg.file.to_string_lossy());
        c.files.push(path.clone());
        let now = stamp(&path);
        let reused = previous.and_then(|p| {
            p.redirects
                .iter()
                .find(|r| r.config == *cfg && r.path == path && r.stamp.is_some() && r.stamp == now)
        });
        if let Some(r) = reused {
            out.push(RedirectSource {
                config: cfg.clone(),
                path,
                stamp: now,
                generation: r.generation,
                table: Arc::clone(&r.table),
            });
            continue;
        }
        let ctx = LoadContext {
            base_dir: &base,
            pinned_to_old: &pinned_to_old,
        };
        match redirects::load(cfg, &ctx) {
            Ok(loaded) => {
                let r = &loaded.report;
                let text = r.to_string();
                let summary = text
                    .lines()
                    .find(|l| !l.starts_with("warning"))
                    .unwrap_or("");
                tracing::info!(table = %cfg.name, "{summary}");
                for w in text.lines().filter(|l| l.starts_with("warning")) {
                    tracing::warn!(table = %cfg.name, "{w}");
                }
                out.push(RedirectSource {
                    config: cfg.clone(),
                    path,
                    stamp: now,
                    generation,
                    table: Arc::new(loaded.table),
                });
            }
            Err(errors) => {
                for e in &errors.errors {
                    let text = e.to_string();
                    let prefix = format!("{}:{}: ", path.display(), e.line());
                    let message = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
                    c.problems.push(Problem {
                        file: path.clone(),
                        line: e.line() as usize,
                        column: 0,
                        field: format!("redirects[{i}] ({})", cfg.name),
                        message,
                    });
                }
                if errors.omitted > 0 {
                    c.file(
                        format!("redirects[{i}]"),
                        format!(
                            "... and {} more errors in {}",
                            errors.omitted,
                            path.display()
                        ),
                    );
                }
            }
        }
    }
    out
}

/// `scheme://host:port` of a storefront, or a located problem.
fn upstream_target(
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

/// Validates a parsed file and builds a snapshot. Reads the secret and CA files it names.
pub fn compile(raw: &RawConfig, input: CompileInput<'_>) -> Result<Snapshot, ConfigError> {
    let mut c = Check {
        src: input.source,
        problems: Vec::new(),
        files: Vec::new(),
    };

    // Listeners.
    let mut listeners = Vec::new();
    if raw.listeners.is_empty() {
        c.file(
            "listener",
            "at least one [[listener]] with an address is required",
        );
    }
    for (i, l) in raw.listeners.iter().enumerate() {
        let l = l.get_ref();
        match l.address.get_ref().parse::<SocketAddr>() {
            Ok(address) => {
                if listeners
                    .iter()
                    .any(|x: &ListenerSpec| x.address == address)
                {
                    c.at(&l.address, format!("listener[{i}].address"), "listed twice");
                }
                let tls = l.tls.as_ref().map(|t| t.get_ref().clone());
                let mut hsts = None;
                if let (Some(cfg), Some(spanned)) = (&tls, &l.tls) {
                    hsts = check_listener_tls(&mut c, cfg, spanned.span(), i);
                }
                listeners.push(ListenerSpec {
                    name: l.name.clone().unwrap_or_else(|| format!("listener{i}")),
                    address,
                    tls,
                    hsts,
                })
            }
            Err(_) => c.at(
                &l.address,
                format!("listener[{i}].address"),
                format!(
                    "`{}` is not IP:port (e.g. 0.0.0.0:8080)",
                    l.address.get_ref()
                ),
            ),
        }
    }

    let (admin_access, admin_problems, admin_files) = super::admin::resolve(c.src, &raw.admin);
    c.problems.extend(admin_problems);
    c.files.extend(admin_files);

    // Limits.
    let d = Limits::default();
    let l = &raw.limits;
    let max_header_bytes = l
        .max_header_bytes
        .as_ref()
        .map_or(d.max_header_bytes as u64, |v| {
            if v.get_ref().0 < 8192 {
                c.at(
                    v,
                    "limits.max_header_bytes",
                    "must be at least 8KiB (hyper's smallest read buffer)",
                );
            }
            v.get_ref().0
        });
    let int = |c: &mut Check<'_>, v: &Option<Spanned<u32>>, field: &str, default: usize| {
        v.as_ref().map_or(default, |v| {
            if *v.get_ref() == 0 {
                c.at(v, field, "must be greater than zero");
            }
            *v.get_ref() as usize
        })
    };
    let limits = Limits {
        header_read_timeout: positive(
            &mut c,
            &l.header_read_timeout,
            "limits.header_read_timeout",
            d.header_read_timeout,
        ),
        max_header_bytes: max_header_bytes as usize,
        max_headers: int(&mut c, &l.max_headers, "limits.max_headers", d.max_headers),
        max_uri_length: int(
            &mut c,
            &l.max_uri_length,
            "limits.max_uri_length",
            d.max_uri_length,
        ),
        body_idle_timeout: positive(
            &mut c,
            &l.body_idle_timeout,
            "limits.body_idle_timeout",
            d.body_idle_timeout,
        ),
        max_connections: int(
            &mut c,
            &l.max_connections,
            "limits.max_connections",
            d.max_connections,
        ),
        drain_timeout: dur(&l.drain_timeout, d.drain_timeout),
        drain_delay: dur(&l.drain_delay, d.drain_delay),
        h2_max_concurrent_streams: int(
            &mut c,
            &l.h2_max_concurrent_streams,
            "limits.h2_max_concurrent_streams",
            d.h2_max_concurrent_streams as usize,
        ) as u32,
    };

    // Storefronts.
    let mut storefronts = Vec::new();
    if raw.storefronts.len() < 2 {
        c.file(
            "storefront",
            "at least two storefronts are needed (e.g. [storefront.old] and [storefront.new])",
        );
    }
    // Names are known even when a storefront has errors, so references to it do not cascade.
    let mut names: Vec<String> = Vec::new();
    for (name, sf) in &raw.storefronts {
        let field = format!("storefront.{}", name.get_ref());
        if !valid_name(name.get_ref()) || name.get_ref() == "split" {
            c.at(name, &field, "storefront names use letters, digits, `_` and `-` (at most 64), and `split` is reserved");
            continue;
        }
        let sf_span = sf;
        let sf = sf.get_ref();
        names.push(name.get_ref().clone());
        let target = upstream_target(&mut c, &sf.upstream, &field);
        let protocol = sf.protocol.unwrap_or(UpstreamProtocol::Auto);
        if protocol == UpstreamProtocol::H2c
            && target.as_ref().is_some_and(|(s, _)| *s == Scheme::HTTPS)
        {
            c.at(
                &sf.upstream,
                format!("{field}.protocol"),
                "h2c is plain-text HTTP/2; use `auto` for https",
            );
        }
        let tls = sf
            .tls
            .as_ref()
            .map(|t| t.get_ref().clone())
            .unwrap_or_default();
        for f in [&tls.ca_file, &tls.client_cert, &tls.client_key]
            .into_iter()
            .flatten()
        {
            let p = c.path(&f.to_string_lossy());
            c.files.push(p);
        }
        if tls.insecure_skip_verify {
            tracing::warn!(storefront = %name.get_ref(), "storefront TLS verification is OFF (insecure_skip_verify): anyone on the path can impersonate it");
        }
        let pool = sf
            .pool_max_idle
            .as_ref()
            .map_or(32, |p| *p.get_ref() as usize);
        let connect_timeout = positive(
            &mut c,
            &sf.connect_timeout,
            &format!("{field}.connect_timeout"),
            Duration::from_secs(3),
        );
        let response_header_timeout = positive(
            &mut c,
            &sf.response_header_timeout,
            &format!("{field}.response_header_timeout"),
            Duration::from_secs(30),
        );
        let read_timeout = positive(
            &mut c,
            &sf.read_timeout,
            &format!("{field}.read_timeout"),
            Duration::from_secs(60),
        );
        let idle_timeout = positive(
            &mut c,
            &sf.idle_timeout,
            &format!("{field}.idle_timeout"),
            Duration::from_secs(90),
        );
        let Some((scheme, authority)) = target else {
            continue;
        };
        let settings = UpstreamSettings {
            scheme,
            authority,
            host_header: sf.host_header.unwrap_or(HostHeader::Client),
            protocol,
            connect_timeout,
            response_header_timeout,
            read_timeout,
            idle_timeout,
            pool_max_idle: pool,
            tls,
            base_dir: c.src.base_dir(),
        };
        let previous = input
            .previous
            .and_then(|p| p.storefronts.iter().find(|s| s.name == *name.get_ref()))
            .map(|s| &s.upstream);
        match Upstream::reuse_or_build(settings, previous) {
            Ok(upstream) => storefronts.push(Storefront {
                name: name.get_ref().clone(),
                name_header: HeaderValue::from_str(name.get_ref()).expect("validated name"),
                upstream,
                evacuated_at: sf.evacuated_at.as_ref().map(|e| *e.get_ref()),
                // Health outlives reloads: a share change must not forget the last error.
                health: input
                    .previous
                    .and_then(|p| p.storefronts.iter().find(|s| s.name == *name.get_ref()))
                    .map_or_else(Default::default, |s| Arc::clone(&s.health)),
            }),
            Err(e) => {
                let span = sf.tls.as_ref().map_or(sf_span.span(), |t| t.span());
                c.problems
                    .push(c.src.problem(span, format!("{field}.tls"), e.to_string()));
            }
        }
    }
    let id_of = |name: &str| names.iter().position(|n| n == name);

    // Split.
    let mut split = Split {
        from: 0,
        to: 0,
        share_bp: 0,
    };
    match &raw.split {
        None => c.file("split", "a [split] section with `new_share` is required"),
        Some(s) => {
            let s = s.get_ref();
            let side =
                |c: &mut Check<'_>, v: &Option<Spanned<String>>, field: &str, default: &str| {
                    let name = v.as_ref().map_or(default, |v| v.get_ref().as_str());
                    match id_of(name) {
                        Some(id) => Some(id),
                        None => {
                            let msg = format!(
                                "no storefront named `{name}` (define [storefront.{name}])"
                            );
                            match v {
                                Some(v) => c.at(v, field, msg),
                                None => c.file(field, msg),
                            }
                            None
                        }
                    }
                };
            let from = side(&mut c, &s.from, "split.from", "old");
            let to = side(&mut c, &s.to, "split.to", "new");
            if let (Some(from), Some(to)) = (from, to) {
                if from == to {
                    match &s.to {
                        Some(to) => c.at(to, "split.to", "must differ from split.from"),
                        None => c.at(&s.new_share, "split.to", "must differ from split.from"),
                    }
                }
                split.from = from;
                split.to = to;
            }
            match s.new_share.get_ref().0 {
                Ok(bp) => split.share_bp = bp,
                Err(e) => c.at(&s.new_share, "split.new_share", e.to_string()),
            }
        }
    }

    // Cohort.
    let rc = &raw.cohort;
    let cookie_name = rc
        .cookie
        .as_ref()
        .map_or("cutover_cohort".to_string(), |v| v.get_ref().clone());
    if let Some(v) = &rc.cookie {
        if !valid_name(v.get_ref()) {
            c.at(
                v,
                "cohort.cookie",
                "cookie names use letters, digits, `_` and `-`",
            );
        }
    }
    let file_key = read_secret(&mut c, &rc.key_file, "cohort.key_file");
    if let (Some(key), Some(_)) = (&rc.key, &rc.key_file) {
        c.at(key, "cohort.key", "set `key` or `key_file`, not both");
    }
    let secret = rc.key.as_ref().map(|k| k.get_ref().clone()).or(file_key);
    let cohort = CohortPolicy {
        cookie: cookie_name,
        max_age: positive(
            &mut c,
            &rc.max_age,
            "cohort.max_age",
            Duration::from_secs(30 * 86_400),
        ),
        session_cookie: rc.session_cookie.as_ref().map(|s| s.get_ref().clone()),
        keys: CohortKeys::derive(secret.as_deref().unwrap_or(DEFAULT_KEY)),
        default_key: secret.is_none(),
        pinning: rc.pinning.unwrap_or(false),
        pin_ttl: positive(
            &mut c,
            &rc.pin_ttl,
            "cohort.pin_ttl",
            Duration::from_secs(2 * 3600),
        ),
    };

    // Override.
    let ro = &raw.overrides;
    let header = ro
        .header
        .as_ref()
        .map_or(Some(HeaderName::from_static("x-cutover-force")), |h| {
            HeaderName::from_bytes(h.get_ref().as_bytes())
                .map_err(|_| c.at(h, "override.header", "not a valid header name"))
                .ok()
        });
    let mut token = ro.token.as_ref().map(|t| t.get_ref().clone());
    if let Some(t) = read_secret(&mut c, &ro.token_file, "override.token_file") {
        token = Some(t);
    }
    if let Some(var) = &ro.token_env {
        match std::env::var(var.get_ref()) {
            Ok(t) if !t.is_empty() => token = Some(t),
            _ => c.at(
                var,
                "override.token_env",
                format!("environment variable `{}` is not set", var.get_ref()),
            ),
        }
    }
    let overrides = OverridePolicy {
        enabled: ro.enabled.unwrap_or(true),
        query_param: ro
            .query_param
            .as_ref()
            .map_or("cutover".into(), |q| q.get_ref().clone()),
        header: header.unwrap_or(HeaderName::from_static("x-cutover-force")),
        token,
        ttl: positive(
            &mut c,
            &ro.ttl,
            "override.ttl",
            Duration::from_secs(12 * 3600),
        ),
    };

    // Headers.
    let rh = &raw.headers;
    let request_id =
        rh.request_id
            .as_ref()
            .map_or(Some(HeaderName::from_static("x-request-id")), |h| {
                HeaderName::from_bytes(h.get_ref().as_bytes())
                    .map_err(|_| c.at(h, "headers.request_id", "not a valid header name"))
                    .ok()
            });
    let headers = HeaderPolicy {
        storefront_response: rh.storefront_response_header.unwrap_or(false),
        decision_upstream: rh.decision_upstream_header.unwrap_or(true),
        via: rh.via.unwrap_or(false),
        trust_forwarded: rh.trust_forwarded.unwrap_or(false),
        request_id: request_id.unwrap_or(HeaderName::from_static("x-request-id")),
    };

    // Routes.
    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let r = r.get_ref();
        let name = r
            .name
            .as_ref()
            .map_or(format!("route{i}"), |n| n.get_ref().clone());
        let field = format!("route[{i}]");
        if let Some(n) = &r.name {
            if !valid_name(n.get_ref()) || n.get_ref() == "default" {
                c.at(
                    n,
                    format!("{field}.name"),
                    "route names use letters, digits, `_` and `-`; `default` is reserved",
                );
            } else if routes.iter().any(|x: &Route| x.name == *n.get_ref()) {
                c.at(n, format!("{field}.name"), "another route has this name");
            }
        }
        let action = if r.to.get_ref() == "split" {
            Action::Split
        } else {
            match id_of(r.to.get_ref()) {
                Some(id) => Action::Storefront(id),
                None => {
                    let known: Vec<&str> = names.iter().map(String::as_str).collect();
                    c.at(
                        &r.to,
                        format!("{field}.to"),
                        format!(
                            "unknown storefront `{}` (known: {}, or `split`)",
                            r.to.get_ref(),
                            known.join(", ")
                        ),
                    );
                    Action::Split
                }
            }
        };
        let mut m = Matcher::default();
        if let Some(h) = &r.host {
            let h_str = h.get_ref().to_ascii_lowercase();
            m.host = Some(match h_str.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 => {
                    HostPattern::Suffix(suffix.to_string())
                }
                Some(_) => {
                    c.at(
                        h,
                        format!("{field}.host"),
                        "wildcards are written `*.example.com`",
                    );
                    HostPattern::Exact(h_str)
                }
                None => HostPattern::Exact(h_str),
            });
        }
        for (value, key) in [(&r.path_prefix, "path_prefix"), (&r.path, "path")] {
            if let Some(p) = value {
                if !p.get_ref().starts_with('/') {
                    c.at(p, format!("{field}.{key}"), "paths start with `/`");
                }
            }
        }
        m.path_prefix = r
            .path_prefix
            .as_ref()
            .map(|p| p.get_ref().trim_end_matches('/').to_string());
        m.path = r.path.as_ref().map(|p| p.get_ref().clone());
        if let Some(methods) = &r.method {
            for name in methods.get_ref().as_slice() {
                match Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
                    Ok(method) => m.methods.push(method),
                    Err(_) => c.at(
                        methods,
                        format!("{field}.method"),
                        format!("`{name}` is not an HTTP method"),
                    ),
                }
            }
        }
        if let Some(h) = &r.header {
            m.header = name_value_header(&mut c, h, &format!("{field}.header"));
        }
        if let Some(ck) = &r.cookie {
            m.cookie = Some((ck.name.get_ref().clone(), ck.value.clone()));
        }
        routes.push(Route {
            name,
            matcher: m,
            action,
        });
    }
    routes.push(Route {
        name: "default".into(),
        matcher: Matcher::default(),
        action: Action::Split,
    });

    let redirects = if c.problems.is_empty() {
        load_redirects(
            &mut c,
            raw,
            input.generation,
            input.previous,
            &routes,
            split.from,
        )
    } else {
        Vec::new()
    };
    let misses = (
        raw.redirect_misses
            .top_k
            .as_ref()
            .map_or(1000, |k| *k.get_ref() as usize)
            .max(1),
        raw.redirect_misses.per_host.unwrap_or(false),
    );

    let mut access_log_config = raw.access_log.clone();
    // Like every other file the config names, a relative log path is relative to the config file.
    let resolved = access_log_config
        .file()
        .filter(|p| p.is_relative())
        .map(|p| c.src.base_dir().join(p));
    if resolved.is_some() {
        access_log_config.path = resolved;
    }
    let mut access_log = AccessLog::disabled();
    if let Err(e) = access_log_config.validate() {
        c.file("access_log", e.to_string());
    } else if let Some(prev) = input
        .previous
        .filter(|p| p.access_log_config == access_log_config)
    {
        access_log = prev.access_log.clone();
    } else if c.problems.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
        // Started only for a snapshot that will be used, and only inside the server's runtime
        // (`cutover check` has none and needs no writer).
        match AccessLog::start(&access_log_config, input.metrics) {
            Ok((log, _task)) => access_log = log,
            Err(e) => c.file("access_log.path", e.to_string()),
        }
    }

    if !c.problems.is_empty() {
        c.problems.sort_by_key(|p| (p.line, p.column));
        return Err(ConfigError::Invalid(c.problems));
    }
    let metrics = {
        let sf: Vec<&str> = storefronts.iter().map(|s| s.name.as_str()).collect();
        let rt: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        input.metrics.handles(&sf, &rt)
    };
    Ok(Snapshot {
        generation: input.generation,
        source: input.source.path.clone(),
        files: c.files,
        loaded_at: SystemTime::now(),
        listeners,
        admin: admin_access.address,
        admin_token: admin_access.token,
        state_file: admin_access.state_file,
        generation_header: HeaderValue::from(input.generation),
        trigger: "startup",
        runtime: None,
        limits,
        storefronts,
        routes,
        split,
        cohort,
        overrides,
        metrics,
        headers,
        redirects,
        misses,
        access_log_config,
        access_log,
    })
}

/// Parses a config text, lays runtime overrides over it, and compiles: the one path every
/// change (file, SIGHUP, admin API, restart) goes through.
pub fn build(
    overrides: Option<&RuntimeOverrides>,
    input: CompileInput<'_>,
) -> Result<Snapshot, ConfigError> {
    let mut raw = input.source.parse()?;
    if let Some(o) = overrides {
        let problems = o.apply(&mut raw, input.source);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
    }
    compile(&raw, input)
}

/// Reads, parses and compiles a config file in one go (for `check` and startup).
pub fn load_file(
    path: &Path,
    generation: u64,
    previous: Option<&Snapshot>,
    metrics: &Metrics,
) -> Result<(Source, Snapshot), ConfigError> {
    let source = Source::read(path)?;
    let raw = source.parse()?;
    let snap = compile(
        &raw,
        CompileInput {
            source: &source,
            generation,
            previous,
            metrics,
        },
    )?;
    Ok((source, snap))
}
