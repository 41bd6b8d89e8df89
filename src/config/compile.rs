//! Validation and compilation: raw structs -> [`Snapshot`], every problem collected with its line.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::uri::Scheme;
use http::{HeaderName, HeaderValue};
use toml::Spanned;

use super::check::{check_listener_tls, dur, positive, upstream_target, valid_name, Check};
use super::raw::{HostHeader, RawConfig, UpstreamProtocol};
use super::routes::compile_routes;
use super::runtime::RuntimeOverrides;
use super::tables::load_redirects;
use super::{ConfigError, Source};
use crate::access_log::AccessLog;
use crate::metrics::Metrics;
use crate::routing::cohort::{CohortKeys, CohortPolicy, DEFAULT_KEY};
use crate::routing::staff_override::OverridePolicy;
use crate::routing::{self, Split};
use crate::state::{HeaderPolicy, Limits, ListenerSpec, Snapshot, Storefront};
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
        max_connections_per_client: int(
            &mut c,
            &l.max_connections_per_client,
            "limits.max_connections_per_client",
            d.max_connections_per_client,
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
    let mut routing_storefronts = Vec::new();
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
        let (pool, pool_peak_window) = super::pool_sizing::pool_sizing(&mut c, sf, &field);
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
            pool_peak_window,
            tls,
            base_dir: c.src.base_dir(),
        };
        let previous = input
            .previous
            .and_then(|p| p.storefronts.iter().find(|s| s.name == *name.get_ref()))
            .map(|s| &s.upstream);
        match Upstream::reuse_or_build(settings, previous) {
            Ok(upstream) => storefronts.push({
                routing_storefronts.push(routing::StorefrontRouting {
                    name: name.get_ref().clone(),
                    evacuated_at: sf.evacuated_at.as_ref().map(|e| *e.get_ref()),
                });
                Storefront {
                    name: name.get_ref().clone(),
                    name_header: HeaderValue::from_str(name.get_ref()).expect("validated name"),
                    upstream,
                    // Health outlives reloads: a share change must not forget the last error.
                    health: input
                        .previous
                        .and_then(|p| p.storefronts.iter().find(|s| s.name == *name.get_ref()))
                        .map_or_else(Default::default, |s| Arc::clone(&s.health)),
                }
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
    let fields = [&rc.key, &rc.key_file, &rc.key_env].map(Option::as_ref);
    let (secret, problem, file) = super::secret::read_spanned(c.src, "cohort", "key", fields);
    c.problems.extend(problem);
    c.files.extend(file);
    let secret = secret.map(super::secret::Secret::into_string);
    let cohort = CohortPolicy {
        cookie: cookie_name,
        max_age: positive(
            &mut c,
            &rc.max_age,
            "cohort.max_age",
            CohortPolicy::DEFAULT_MAX_AGE,
        ),
        session_cookie: rc.session_cookie.as_ref().map(|s| s.get_ref().clone()),
        // cohort key rotation: previous keys verify, the current one signs.
        keys: CohortKeys::derive(secret.as_deref().unwrap_or(DEFAULT_KEY))
            .with_previous(&previous_keys(&mut c, rc, secret.as_deref())),
        default_key: secret.is_none(),
        pinning: rc.pinning.unwrap_or(false),
        pin_ttl: positive(
            &mut c,
            &rc.pin_ttl,
            "cohort.pin_ttl",
            CohortPolicy::DEFAULT_PIN_TTL,
        ),
    };

    // fleet: every [fleet] problem, at the section's line.
    if let Some(f) = &raw.fleet {
        if let Err(problems) = f.get_ref().validate(&c.src.base_dir()) {
            for p in problems {
                c.at(f, format!("fleet.{}", p.field), p.message);
            }
        }
    }

    // Override.
    let ro = &raw.overrides;
    let header = ro
        .header
        .as_ref()
        .map_or(Some(OverridePolicy::DEFAULT_HEADER), |h| {
            HeaderName::from_bytes(h.get_ref().as_bytes())
                .map_err(|_| c.at(h, "override.header", "not a valid header name"))
                .ok()
        });
    let fields = [&ro.token, &ro.token_file, &ro.token_env].map(Option::as_ref);
    let (token, problem, file) = super::secret::read_spanned(c.src, "override", "token", fields);
    c.problems.extend(problem);
    c.files.extend(file);
    let token = token.map(super::secret::Secret::into_string);
    let query_param: String = ro
        .query_param
        .as_ref()
        .map_or(OverridePolicy::DEFAULT_QUERY_PARAM.into(), |q| {
            q.get_ref().clone()
        });
    let overrides = OverridePolicy {
        enabled: ro.enabled.unwrap_or(true),
        prefilter: crate::routing::staff_override::QueryPrefilter::new(&query_param),
        query_param,
        header: header.unwrap_or(OverridePolicy::DEFAULT_HEADER),
        token,
        ttl: positive(&mut c, &ro.ttl, "override.ttl", OverridePolicy::DEFAULT_TTL),
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

    let routes = compile_routes(&mut c, raw, &names);

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

    // rollout: the plan's problems, at the `[rollout]` section's line.
    let rollout = raw.rollout.as_ref().and_then(|r| {
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        match r.get_ref().validate(Some(&names)) {
            Ok(plan) => Some(Arc::new(plan)),
            Err(e) => {
                e.0.into_iter().for_each(|p| c.at(r, p.field, p.problem));
                None
            }
        }
    });
    // inventory: validated with the section's line; the instance is carried across reloads.
    let (inventory, inventory_config) = super::inventory::compile(&mut c, raw, input.previous);
    // redirect_probation: max-age on permanent redirects for a while after 100% (issue 16).
    let redirect_probation = super::probation::check(&mut c, raw);
    // shadow: validate [shadow], [fallback] and the routes' opt-ins.
    let shadow_checked = super::shadow::check(&mut c, raw, &names, &split);

    if !c.problems.is_empty() {
        c.problems.sort_by_key(|p| (p.line, p.column));
        return Err(ConfigError::Invalid(c.problems));
    }
    // shadow: start the mirror (or keep the running one) for a snapshot that will serve.
    let shadow_runtime = super::shadow::runtime(input.previous);
    let (shadow, fallback) = super::shadow::planes(
        shadow_checked,
        input.previous,
        &redirects,
        shadow_runtime.as_ref(),
    )
    .map_err(|e| ConfigError::Invalid(vec![c.src.problem(0..0, "shadow", e)]))?;
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
        limits,
        storefronts,
        routing: routing::Table {
            storefronts: routing_storefronts,
            routes,
            split,
            cohort,
            overrides,
        },
        metrics,
        headers,
        redirects,
        misses,
        redirect_probation,
        access_log_config,
        access_log,
        rollout,
        // inventory:
        inventory,
        inventory_config,
        // shadow:
        shadow,
        fallback,
        shadow_runtime,
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

// cohort key rotation:
/// `[cohort] previous_keys`, checked: each non-empty, none equal to the current key, and only
/// with a current key set (rotating away from the public default key means setting `key`).
fn previous_keys(
    c: &mut Check<'_>,
    rc: &super::raw::RawCohort,
    current: Option<&str>,
) -> Vec<String> {
    let Some(prev) = &rc.previous_keys else {
        return Vec::new();
    };
    if current.is_none() {
        c.at(
            prev,
            "cohort.previous_keys",
            "set `key` (the new key) too: previous keys only verify cookies, the current key signs them",
        );
    }
    for (i, k) in prev.get_ref().iter().enumerate() {
        if k.is_empty() {
            c.at(
                prev,
                format!("cohort.previous_keys[{i}]"),
                "must not be empty",
            );
        } else if Some(k.as_str()) == current {
            c.at(
                prev,
                format!("cohort.previous_keys[{i}]"),
                "is the current `key`: list only older keys",
            );
        }
    }
    prev.get_ref().clone()
}
