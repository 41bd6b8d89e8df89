//! Stage three of three (raw -> validate -> build): a [`Validated`] config becomes a
//! [`Snapshot`]; and the entry points that run the stages in order ([`compile`], [`build`],
//! [`load_file`]).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderValue;
use toml::Spanned;

use super::check::{check_listener_tls, Check};
use super::raw::RawConfig;
use super::runtime::RuntimeOverrides;
use super::tables::load_redirects;
use super::validate::{validate, CheckedStorefront, Validated};
use super::{ConfigError, Source};
use crate::access_log::AccessLog;
use crate::metrics::Metrics;
use crate::routing;
use crate::routing::cohort::CohortKeys;
use crate::state::{Snapshot, Storefront};
use crate::upstream::Upstream;

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

/// Validates a parsed file and builds a snapshot: [`validate`], then [`build_snapshot`].
pub fn compile(raw: &RawConfig, input: CompileInput<'_>) -> Result<Snapshot, ConfigError> {
    build_snapshot(raw, validate(raw, input.source)?, input)
}

/// Stage three: what a [`Validated`] config needs from the outside world. Reads the secret,
/// certificate and CSV files it names, builds (or keeps) the storefront pools, starts (or keeps)
/// the access-log writer, the inventory and the shadow mirror. Every problem of this stage is
/// collected before any is reported; the redirect plan is loaded only when the rest is sound.
pub fn build_snapshot(
    raw: &RawConfig,
    v: Validated,
    input: CompileInput<'_>,
) -> Result<Snapshot, ConfigError> {
    let mut c = Check {
        src: input.source,
        problems: Vec::new(),
        files: v.files,
    };
    for (i, (spec, span)) in v.listeners.iter().enumerate() {
        if let (Some(cfg), Some(span)) = (&spec.tls, span) {
            check_listener_tls(&mut c, cfg, span.clone(), i);
        }
    }
    let listeners = v.listeners.into_iter().map(|(spec, _)| spec).collect();
    let (admin_access, admin_problems, admin_files) = super::admin::resolve(c.src, &raw.admin);
    c.problems.extend(admin_problems);
    c.files.extend(admin_files);
    let (storefronts, routing_storefronts) = storefronts(&mut c, v.storefronts, input.previous);

    let mut cohort = v.cohort;
    let rc = &raw.cohort;
    let fields = [&rc.key, &rc.key_file, &rc.key_env].map(Option::as_ref);
    if let Some(key) = secret(&mut c, "cohort", "key", fields) {
        previous_key_is_current(&mut c, rc, &key);
        cohort.keys = CohortKeys::derive(&key);
        cohort.default_key = false;
    }
    // cohort key rotation: previous keys verify, the current one signs.
    cohort.keys = cohort.keys.with_previous(&v.previous_keys);
    let mut overrides = v.overrides;
    let ro = &raw.overrides;
    let fields = [&ro.token, &ro.token_file, &ro.token_env].map(Option::as_ref);
    overrides.token = secret(&mut c, "override", "token", fields);

    let routes = v.routes;
    let redirects = if c.problems.is_empty() {
        load_redirects(
            &mut c,
            raw,
            input.generation,
            input.previous,
            &routes,
            v.split.from,
        )
    } else {
        Vec::new()
    };

    let access_log_config = v.access_log;
    let mut access_log = AccessLog::disabled();
    if let Some(prev) = input
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
    // inventory: the instance is carried across reloads.
    let (inventory, inventory_config) =
        super::inventory::instance(v.inventory, raw, input.previous);

    if !c.problems.is_empty() {
        c.problems.sort_by_key(|p| (p.line, p.column));
        return Err(ConfigError::Invalid(c.problems));
    }
    // shadow: start the mirror (or keep the running one) for a snapshot that will serve.
    let shadow_runtime = super::shadow::runtime(input.previous);
    let (shadow, fallback) = super::shadow::planes(
        v.shadow,
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
        limits: v.limits,
        storefronts,
        routing: routing::Table {
            storefronts: routing_storefronts,
            routes,
            split: v.split,
            cohort,
            overrides,
        },
        metrics,
        headers: v.headers,
        redirects,
        misses: v.misses,
        redirect_probation: v.redirect_probation,
        access_log_config,
        access_log,
        rollout: v.rollout,
        // inventory:
        inventory,
        inventory_config,
        // shadow:
        shadow,
        fallback,
        shadow_runtime,
    })
}

/// Each storefront's pool, kept from `previous` where its settings are unchanged, and its
/// health carried over (a share change must not forget the last error).
fn storefronts(
    c: &mut Check<'_>,
    checked: Vec<CheckedStorefront>,
    previous: Option<&Snapshot>,
) -> (Vec<Storefront>, Vec<routing::StorefrontRouting>) {
    let mut storefronts = Vec::new();
    let mut routing_storefronts = Vec::new();
    for sf in checked {
        if sf.settings.tls.insecure_skip_verify {
            tracing::warn!(storefront = %sf.name, "storefront TLS verification is OFF (insecure_skip_verify): anyone on the path can impersonate it");
        }
        let before = previous.and_then(|p| p.storefronts.iter().find(|s| s.name == sf.name));
        match Upstream::reuse_or_build(sf.settings, before.map(|s| &s.upstream)) {
            Ok(upstream) => {
                routing_storefronts.push(routing::StorefrontRouting {
                    name: sf.name.clone(),
                    evacuated_at: sf.evacuated_at,
                });
                storefronts.push(Storefront {
                    name_header: HeaderValue::from_str(&sf.name).expect("validated name"),
                    name: sf.name,
                    upstream,
                    health: before.map_or_else(Default::default, |s| Arc::clone(&s.health)),
                });
            }
            Err(e) => {
                let field = format!("storefront.{}.tls", sf.name);
                c.problems
                    .push(c.src.problem(sf.tls_span, field, e.to_string()));
            }
        }
    }
    (storefronts, routing_storefronts)
}

/// A `value | file | env` secret of `section`, read; its problem and watched file recorded.
fn secret(
    c: &mut Check<'_>,
    section: &str,
    field: &str,
    fields: [Option<&Spanned<String>>; 3],
) -> Option<String> {
    let (secret, problem, file) = super::secret::read_spanned(c.src, section, field, fields);
    c.problems.extend(problem);
    c.files.extend(file);
    secret.map(super::secret::Secret::into_string)
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
/// A current key read from a file or the environment is known only here: a previous key equal
/// to it is refused like one equal to a `key` written in the file (see `validate`).
fn previous_key_is_current(c: &mut Check<'_>, rc: &super::raw::RawCohort, current: &str) {
    let (Some(prev), None) = (&rc.previous_keys, &rc.key) else {
        return;
    };
    for (i, k) in prev.get_ref().iter().enumerate() {
        if k == current {
            c.at(
                prev,
                format!("cohort.previous_keys[{i}]"),
                "is the current `key`: list only older keys",
            );
        }
    }
}
