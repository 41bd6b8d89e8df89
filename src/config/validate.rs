//! Stage two of three (raw -> validate -> build): every check that needs nothing but the text.
//!
//! [`validate`] reads no file, opens no socket, starts no task and logs nothing: `cutover check`,
//! the fuzz target and the tests run it on any text. What needs the outside world (secret and
//! certificate files, the redirect plan's CSVs, storefront pools, the access-log writer, the
//! inventory and shadow instances) is [`super::build`]'s, and runs only on a [`Validated`] config.
//! Every problem of this stage is collected before any is reported, each at its file:line:column.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http::{HeaderName, HeaderValue};
use toml::Spanned;

use super::check::{dur, positive, upstream_target, valid_name, Check};
use super::raw::{HostHeader, RawCohort, RawConfig, UpstreamProtocol};
use super::routes::compile_routes;
use super::{ConfigError, Source};
use crate::access_log::AccessLogConfig;
use crate::inventory::InventoryConfig;
use crate::rollout::plan::Plan;
use crate::routing::cohort::{CohortKeys, CohortPolicy, DEFAULT_KEY};
use crate::routing::staff_override::OverridePolicy;
use crate::routing::{Route, Split};
use crate::state::{HeaderPolicy, Limits, ListenerSpec};
use crate::upstream::UpstreamSettings;

/// A config whose text is right: what [`super::build`] turns into a snapshot.
pub struct Validated {
    /// Files named by the config (certificates, CA files), for the reload watcher.
    pub(super) files: Vec<PathBuf>,
    /// Listeners, each with the span of its `tls` table (where certificate problems point).
    pub(super) listeners: Vec<(ListenerSpec, Option<Range<usize>>)>,
    pub(super) limits: Limits,
    pub(super) storefronts: Vec<CheckedStorefront>,
    pub(super) split: Split,
    /// The cohort policy with the public default key: build derives the configured one.
    pub(super) cohort: CohortPolicy,
    /// `[cohort] previous_keys`, checked.
    pub(super) previous_keys: Vec<String>,
    /// The staff override without its token: build reads it.
    pub(super) overrides: OverridePolicy,
    pub(super) headers: HeaderPolicy,
    pub(super) routes: Vec<Route>,
    /// `[redirect_misses]`: top-K size, per host.
    pub(super) misses: (usize, bool),
    /// `[redirect_probation]`: max-age on permanent redirects for a while after 100%.
    pub(super) redirect_probation: crate::redirects::probation::RedirectProbation,
    /// With a relative path made relative to the config file.
    pub(super) access_log: AccessLogConfig,
    pub(super) rollout: Option<Arc<Plan>>,
    /// `[inventory]` when present and enabled.
    pub(super) inventory: Option<InventoryConfig>,
    pub(super) shadow: super::shadow::Checked,
}

/// One `[storefront.X]`, checked; its pool is built from `settings`.
pub(super) struct CheckedStorefront {
    pub(super) name: String,
    pub(super) settings: UpstreamSettings,
    pub(super) evacuated_at: Option<u64>,
    /// Where a problem building its TLS client points: its `tls` table, or the storefront.
    pub(super) tls_span: Range<usize>,
}

/// Checks a parsed file. Pure: the same text always gives the same answer.
pub fn validate(raw: &RawConfig, source: &Source) -> Result<Validated, ConfigError> {
    let mut c = Check {
        src: source,
        problems: Vec::new(),
        files: Vec::new(),
    };
    let listeners = listeners(&mut c, raw);
    let limits = limits(&mut c, raw);
    let (names, storefronts) = storefronts(&mut c, raw);
    let split = split(&mut c, raw, &names);
    let cohort = cohort(&mut c, raw);
    let previous_keys = previous_keys(&mut c, &raw.cohort);
    // fleet: every [fleet] problem, at the section's line.
    if let Some(f) = &raw.fleet {
        if let Err(problems) = f.get_ref().validate(&c.src.base_dir()) {
            for p in problems {
                c.at(f, format!("fleet.{}", p.field), p.message);
            }
        }
    }
    let overrides = overrides(&mut c, raw);
    let headers = headers(&mut c, raw);
    let routes = compile_routes(&mut c, raw, &names);
    let misses = (
        raw.redirect_misses
            .top_k
            .as_ref()
            .map_or(1000, |k| *k.get_ref() as usize)
            .max(1),
        raw.redirect_misses.per_host.unwrap_or(false),
    );
    let redirect_probation = super::probation::check(&mut c, raw);
    let access_log = access_log(&mut c, raw);
    let rollout = rollout(&mut c, raw, &routes);
    let inventory = super::inventory::check(&mut c, raw);
    let shadow = super::shadow::check(&mut c, raw, &names, &split);
    if !c.problems.is_empty() {
        c.problems.sort_by_key(|p| (p.line, p.column));
        return Err(ConfigError::Invalid(c.problems));
    }
    Ok(Validated {
        files: c.files,
        listeners,
        limits,
        storefronts,
        split,
        cohort,
        previous_keys,
        overrides,
        headers,
        routes,
        misses,
        redirect_probation,
        access_log,
        rollout,
        inventory,
        shadow,
    })
}

fn listeners(c: &mut Check<'_>, raw: &RawConfig) -> Vec<(ListenerSpec, Option<Range<usize>>)> {
    let mut listeners: Vec<(ListenerSpec, Option<Range<usize>>)> = Vec::new();
    if raw.listeners.is_empty() {
        c.file(
            "listener",
            "at least one [[listener]] with an address is required",
        );
    }
    for (i, l) in raw.listeners.iter().enumerate() {
        let l = l.get_ref();
        let Ok(address) = l.address.get_ref().parse::<SocketAddr>() else {
            c.at(
                &l.address,
                format!("listener[{i}].address"),
                format!(
                    "`{}` is not IP:port (e.g. 0.0.0.0:8080)",
                    l.address.get_ref()
                ),
            );
            continue;
        };
        if listeners.iter().any(|(x, _)| x.address == address) {
            c.at(&l.address, format!("listener[{i}].address"), "listed twice");
        }
        let tls = l.tls.as_ref().map(|t| t.get_ref().clone());
        if let Some(cfg) = &tls {
            let base = c.src.base_dir();
            for cert in &cfg.certificates {
                c.files.push(cert.cert_path(&base));
                c.files.push(cert.key_path(&base));
            }
        }
        let hsts = tls
            .as_ref()
            .and_then(|t| t.hsts.as_ref())
            .and_then(|h| HeaderValue::from_str(&h.header_value()).ok());
        let spec = ListenerSpec {
            name: l.name.clone().unwrap_or_else(|| format!("listener{i}")),
            address,
            tls,
            hsts,
        };
        listeners.push((spec, l.tls.as_ref().map(Spanned::span)));
    }
    listeners
}

fn limits(c: &mut Check<'_>, raw: &RawConfig) -> Limits {
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
    Limits {
        header_read_timeout: positive(
            c,
            &l.header_read_timeout,
            "limits.header_read_timeout",
            d.header_read_timeout,
        ),
        max_header_bytes: max_header_bytes as usize,
        max_headers: int(c, &l.max_headers, "limits.max_headers", d.max_headers),
        max_uri_length: int(
            c,
            &l.max_uri_length,
            "limits.max_uri_length",
            d.max_uri_length,
        ),
        body_idle_timeout: positive(
            c,
            &l.body_idle_timeout,
            "limits.body_idle_timeout",
            d.body_idle_timeout,
        ),
        max_connections: int(
            c,
            &l.max_connections,
            "limits.max_connections",
            d.max_connections,
        ),
        max_connections_per_client: int(
            c,
            &l.max_connections_per_client,
            "limits.max_connections_per_client",
            d.max_connections_per_client,
        ),
        drain_timeout: dur(&l.drain_timeout, d.drain_timeout),
        drain_delay: dur(&l.drain_delay, d.drain_delay),
        h2_max_concurrent_streams: int(
            c,
            &l.h2_max_concurrent_streams,
            "limits.h2_max_concurrent_streams",
            d.h2_max_concurrent_streams as usize,
        ) as u32,
        http1_front: l
            .http1_front
            .as_ref()
            .map_or(d.http1_front, |v| *v.get_ref()),
    }
}

fn storefronts(c: &mut Check<'_>, raw: &RawConfig) -> (Vec<String>, Vec<CheckedStorefront>) {
    let mut checked = Vec::new();
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
        let sf_span = sf.span();
        let sf = sf.get_ref();
        names.push(name.get_ref().clone());
        let target = upstream_target(c, &sf.upstream, &field);
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
        let (pool, pool_peak_window) = super::pool_sizing::pool_sizing(c, sf, &field);
        let mut timeout = |v, what: &str, default| {
            positive(
                c,
                v,
                &format!("{field}.{what}"),
                Duration::from_secs(default),
            )
        };
        let connect_timeout = timeout(&sf.connect_timeout, "connect_timeout", 3);
        let response_header_timeout =
            timeout(&sf.response_header_timeout, "response_header_timeout", 30);
        let read_timeout = timeout(&sf.read_timeout, "read_timeout", 60);
        let idle_timeout = timeout(&sf.idle_timeout, "idle_timeout", 90);
        let Some((scheme, authority)) = target else {
            continue;
        };
        checked.push(CheckedStorefront {
            name: name.get_ref().clone(),
            settings: UpstreamSettings {
                scheme,
                authority,
                host_header: sf.host_header.unwrap_or(HostHeader::Client),
                protocol,
                connect_timeout,
                response_header_timeout,
                read_timeout,
                idle_timeout,
                pool_max_idle: pool,
                pool_peak_window,
                tls,
                base_dir: c.src.base_dir(),
            },
            evacuated_at: sf.evacuated_at.as_ref().map(|e| *e.get_ref()),
            tls_span: sf.tls.as_ref().map_or(sf_span, |t| t.span()),
        });
    }
    (names, checked)
}

fn split(c: &mut Check<'_>, raw: &RawConfig, names: &[String]) -> Split {
    let mut split = Split {
        from: 0,
        to: 0,
        share_bp: 0,
    };
    let Some(s) = &raw.split else {
        c.file("split", "a [split] section with `new_share` is required");
        return split;
    };
    let s = s.get_ref();
    let side = |c: &mut Check<'_>, v: &Option<Spanned<String>>, field: &str, default: &str| {
        let name = v.as_ref().map_or(default, |v| v.get_ref().as_str());
        let id = names.iter().position(|n| n == name);
        if id.is_none() {
            let msg = format!("no storefront named `{name}` (define [storefront.{name}])");
            match v {
                Some(v) => c.at(v, field, msg),
                None => c.file(field, msg),
            }
        }
        id
    };
    let from = side(c, &s.from, "split.from", "old");
    let to = side(c, &s.to, "split.to", "new");
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
    split
}

fn cohort(c: &mut Check<'_>, raw: &RawConfig) -> CohortPolicy {
    let rc = &raw.cohort;
    let cookie = rc
        .cookie
        .as_ref()
        .map_or(CohortPolicy::DEFAULT_COOKIE.to_string(), |v| {
            v.get_ref().clone()
        });
    if let Some(v) = &rc.cookie {
        if !valid_name(v.get_ref()) {
            c.at(
                v,
                "cohort.cookie",
                "cookie names use letters, digits, `_` and `-`",
            );
        }
    }
    CohortPolicy {
        cookie,
        max_age: positive(
            c,
            &rc.max_age,
            "cohort.max_age",
            CohortPolicy::DEFAULT_MAX_AGE,
        ),
        session_cookie: rc.session_cookie.as_ref().map(|s| s.get_ref().clone()),
        keys: CohortKeys::derive(DEFAULT_KEY),
        default_key: true,
        pinning: rc.pinning.unwrap_or(false),
        pin_ttl: positive(
            c,
            &rc.pin_ttl,
            "cohort.pin_ttl",
            CohortPolicy::DEFAULT_PIN_TTL,
        ),
    }
}

// cohort key rotation:
/// `[cohort] previous_keys`, checked: each non-empty, none equal to the current key when the
/// file holds it (one read from a file or the environment is compared by the build), and only
/// with a current key set (rotating away from the public default key means setting `key`).
fn previous_keys(c: &mut Check<'_>, rc: &RawCohort) -> Vec<String> {
    let Some(prev) = &rc.previous_keys else {
        return Vec::new();
    };
    if rc.key.is_none() && rc.key_file.is_none() && rc.key_env.is_none() {
        c.at(
            prev,
            "cohort.previous_keys",
            "set `key` (the new key) too: previous keys only verify cookies, the current key signs them",
        );
    }
    let written = rc.key.as_ref().map(|k| k.get_ref().trim());
    for (i, k) in prev.get_ref().iter().enumerate() {
        if k.is_empty() {
            c.at(
                prev,
                format!("cohort.previous_keys[{i}]"),
                "must not be empty",
            );
        } else if Some(k.as_str()) == written {
            c.at(
                prev,
                format!("cohort.previous_keys[{i}]"),
                "is the current `key`: list only older keys",
            );
        }
    }
    prev.get_ref().clone()
}

fn overrides(c: &mut Check<'_>, raw: &RawConfig) -> OverridePolicy {
    let ro = &raw.overrides;
    let header = ro
        .header
        .as_ref()
        .map_or(Some(OverridePolicy::DEFAULT_HEADER), |h| {
            HeaderName::from_bytes(h.get_ref().as_bytes())
                .map_err(|_| c.at(h, "override.header", "not a valid header name"))
                .ok()
        });
    let query_param: String = ro
        .query_param
        .as_ref()
        .map_or(OverridePolicy::DEFAULT_QUERY_PARAM.into(), |q| {
            q.get_ref().clone()
        });
    OverridePolicy {
        enabled: ro.enabled.unwrap_or(true),
        prefilter: crate::routing::staff_override::QueryPrefilter::new(&query_param),
        query_param,
        header: header.unwrap_or(OverridePolicy::DEFAULT_HEADER),
        token: None,
        ttl: positive(c, &ro.ttl, "override.ttl", OverridePolicy::DEFAULT_TTL),
    }
}

fn headers(c: &mut Check<'_>, raw: &RawConfig) -> HeaderPolicy {
    let rh = &raw.headers;
    let request_id =
        rh.request_id
            .as_ref()
            .map_or(Some(HeaderName::from_static("x-request-id")), |h| {
                HeaderName::from_bytes(h.get_ref().as_bytes())
                    .map_err(|_| c.at(h, "headers.request_id", "not a valid header name"))
                    .ok()
            });
    HeaderPolicy {
        storefront_response: rh.storefront_response_header.unwrap_or(false),
        decision_upstream: rh.decision_upstream_header.unwrap_or(true),
        via: rh.via.unwrap_or(false),
        trust_forwarded: rh.trust_forwarded.unwrap_or(false),
        request_id: request_id.unwrap_or(HeaderName::from_static("x-request-id")),
    }
}

fn access_log(c: &mut Check<'_>, raw: &RawConfig) -> AccessLogConfig {
    let mut config = raw.access_log.clone();
    // Like every other file the config names, a relative log path is relative to the config file.
    let resolved = config
        .file()
        .filter(|p| p.is_relative())
        .map(|p| c.src.base_dir().join(p));
    if resolved.is_some() {
        config.path = resolved;
    }
    if let Err(e) = config.validate() {
        c.file("access_log", e.to_string());
    }
    config
}

/// The plan's problems, at the `[rollout]` section's line.
fn rollout(c: &mut Check<'_>, raw: &RawConfig, routes: &[Route]) -> Option<Arc<Plan>> {
    let r = raw.rollout.as_ref()?;
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    match r.get_ref().validate(Some(&names)) {
        Ok(plan) => Some(Arc::new(plan)),
        Err(e) => {
            e.0.into_iter().for_each(|p| c.at(r, p.field, p.problem));
            None
        }
    }
}

#[cfg(test)]
mod tests;
