//! `GET /admin/status`: what is in force and how it is doing, as JSON for scripts and as text
//! for `cutover status`. The same struct is built by the server and parsed by the CLI.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::reload::ReloadOutcome;
use crate::state::Snapshot;

// redirect_probation: its block of the status (issue 16).
mod probation;
pub use probation::ProbationInfo;

/// The whole status document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Crate version.
    pub version: String,
    /// Process id (changes on an upgrade).
    pub pid: u32,
    /// Seconds since this process started.
    pub uptime_seconds: u64,
    /// `/readyz`.
    pub ready: bool,
    /// Draining (SIGTERM or handed over to a successor).
    pub draining: bool,
    /// The configuration in force.
    pub config: ConfigInfo,
    /// The split.
    pub split: SplitInfo,
    /// Cohort pins and staff overrides.
    pub pins: PinsInfo,
    /// Each storefront and how it is doing.
    pub storefronts: Vec<StorefrontInfo>,
    /// Redirect tables.
    pub redirects: Vec<RedirectInfo>,
    /// The redirect probation after 100% (absent from servers before it existed).
    #[serde(default)]
    pub redirect_probation: ProbationInfo,
    /// The last reload attempt (any trigger).
    pub last_reload: Option<ReloadOutcome>,
    /// Admin API overrides of the file, if any.
    pub overrides: Option<OverridesInfo>,
    /// A problem with the state file (unwritable, stale, unreadable).
    pub state_file_error: Option<String>,
    // fleet:
    /// `[fleet]`: the fleet store's connectivity and what this replica applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<super::fleet::answer::FleetSummary>,
    // inventory:
    /// `[inventory]`: its size, and a file rejected at start or failing to save.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<super::inventory::InventorySummary>,
}

/// Where the configuration came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigInfo {
    /// The config file.
    pub path: String,
    /// Generation in force (1 at start, +1 per applied change).
    pub generation: u64,
    /// What produced it: `startup`, `file`, `signal`, `admin`, `admin-split`, `admin-evacuate`.
    pub source: String,
    /// Unix seconds when it went live.
    pub loaded_at: u64,
    /// [`Self::loaded_at`] as RFC 3339 UTC.
    #[serde(default)]
    pub loaded_at_rfc3339: String,
    /// The state file that keeps admin overrides.
    pub state_file: String,
}

/// The split in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitInfo {
    /// Storefront shoppers leave.
    pub from: String,
    /// Storefront shoppers move to.
    pub to: String,
    /// Percent of shoppers on `to`.
    pub new_share: f64,
    /// `file` or `override`.
    pub new_share_source: String,
}

/// How shoppers are held on a side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinsInfo {
    /// Cohort cookie name.
    pub cookie: String,
    /// Split pins on.
    pub pinning: bool,
    /// Split pin lifetime, seconds.
    pub pin_ttl_seconds: u64,
    /// Staff overrides honoured.
    pub override_enabled: bool,
    /// Staff override pin lifetime, seconds.
    pub override_ttl_seconds: u64,
    /// Cohort cookies signed with the public default key.
    pub default_key: bool,
}

/// One storefront.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorefrontInfo {
    /// Name.
    pub name: String,
    /// `scheme://host:port`.
    pub upstream: String,
    /// Pins issued at or before this unix second are released.
    pub evacuated_at: Option<u64>,
    /// [`Self::evacuated_at`] as RFC 3339 UTC, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evacuated_at_rfc3339: Option<String>,
    /// `file` or `override`, when evacuated.
    pub evacuated_at_source: Option<String>,
    /// Responses answered for it since start.
    pub responses: u64,
    /// Of which 5xx.
    pub responses_5xx: u64,
    /// Failed exchanges since start.
    pub upstream_errors: u64,
    /// Failures by kind (`connect`, `timeout`...), non-zero only.
    pub upstream_errors_by_kind: Vec<(String, u64)>,
    /// Requests in flight.
    pub in_flight: i64,
    /// Unix second of the last response head received.
    pub last_success_at: Option<u64>,
    /// [`Self::last_success_at`] as RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at_rfc3339: Option<String>,
    /// Unix second of the last failure.
    pub last_error_at: Option<u64>,
    /// [`Self::last_error_at`] as RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at_rfc3339: Option<String>,
    /// Kind of the last failure.
    pub last_error_kind: Option<String>,
    // shoppers:
    /// Distinct shoppers the split sent here in the last `window_seconds`, and how many a pin
    /// holds (estimates of what this replica saw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_shoppers: Option<crate::metrics::shoppers::RecentShoppers>,
}

/// One redirect table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedirectInfo {
    /// Table name.
    pub name: String,
    /// CSV file.
    pub file: String,
    /// Entries.
    pub entries: usize,
    /// Generation that loaded it.
    pub loaded_generation: u64,
}

/// Admin overrides in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverridesInfo {
    /// Share override, percent.
    pub new_share: Option<f64>,
    /// The file's own share, percent, for comparison.
    pub file_new_share: Option<f64>,
    /// Evacuations by storefront, unix seconds.
    pub evacuated_at: std::collections::BTreeMap<String, u64>,
    /// [`Self::evacuated_at`] as RFC 3339 UTC.
    #[serde(default)]
    pub evacuated_at_rfc3339: std::collections::BTreeMap<String, String>,
    /// Unix second of the first override since the file last changed.
    pub since: u64,
    /// [`Self::since`] as RFC 3339 UTC.
    #[serde(default)]
    pub since_rfc3339: String,
    /// Unix second of the latest override.
    pub updated_at: u64,
    /// [`Self::updated_at`] as RFC 3339 UTC.
    #[serde(default)]
    pub updated_at_rfc3339: String,
    /// When they end.
    pub until: String,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Share in percent from basis points.
pub fn percent(bp: u16) -> f64 {
    f64::from(bp) / 100.0
}

/// What the status page needs besides the snapshot.
pub struct Context {
    /// Process start.
    pub started: SystemTime,
    /// `/readyz`.
    pub ready: bool,
    /// Draining.
    pub draining: bool,
    /// Last reload.
    pub last_reload: Option<ReloadOutcome>,
    /// State file problem.
    pub state_file_error: Option<String>,
    /// The file's own share (without overrides), when known.
    pub file_share_bp: Option<u16>,
    /// Operator state laid over the file in the snapshot in force.
    pub operator_state: Option<std::sync::Arc<crate::config::StateFile>>,
}

/// Builds the status of `snap`.
pub fn build(snap: &Snapshot, ctx: Context) -> Status {
    let runtime = ctx.operator_state.as_deref();
    let overridden_share = runtime.is_some_and(|r| r.overrides.new_share_bp.is_some());
    let storefronts = snap
        .storefronts
        .iter()
        .enumerate()
        .map(|(id, sf)| {
            let t = snap.metrics.storefront_totals(id);
            let err = sf.health.last_error();
            let ev_override = runtime.and_then(|r| r.overrides.evacuated_at.get(&sf.name));
            StorefrontInfo {
                name: sf.name.clone(),
                upstream: format!(
                    "{}://{}",
                    sf.upstream.settings.scheme, sf.upstream.settings.authority
                ),
                evacuated_at: snap.routing.storefronts[id].evacuated_at,
                evacuated_at_rfc3339: snap.routing.storefronts[id]
                    .evacuated_at
                    .map(crate::values::time::rfc3339_secs),
                evacuated_at_source: snap.routing.storefronts[id].evacuated_at.map(|at| {
                    if ev_override == Some(&at) {
                        "override".into()
                    } else {
                        "file".into()
                    }
                }),
                responses: t.responses,
                responses_5xx: t.responses_5xx,
                upstream_errors: t.upstream_errors,
                upstream_errors_by_kind: t
                    .upstream_errors_by_kind
                    .iter()
                    .map(|(k, n)| (k.to_string(), *n))
                    .collect(),
                in_flight: t.in_flight,
                last_success_at: sf.health.last_success(),
                last_success_at_rfc3339: sf
                    .health
                    .last_success()
                    .map(crate::values::time::rfc3339_secs),
                last_error_at: err.map(|e| e.0),
                last_error_at_rfc3339: err.map(|e| crate::values::time::rfc3339_secs(e.0)),
                last_error_kind: err.map(|e| e.1.as_str().to_string()),
                recent_shoppers: Some(snap.metrics.recent_shoppers(id)),
            }
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        uptime_seconds: SystemTime::now()
            .duration_since(ctx.started)
            .map_or(0, |d| d.as_secs()),
        ready: ctx.ready,
        draining: ctx.draining,
        config: ConfigInfo {
            path: snap.source.display().to_string(),
            generation: snap.generation,
            source: snap.trigger.to_string(),
            loaded_at: unix(snap.loaded_at),
            loaded_at_rfc3339: crate::values::time::rfc3339_secs(unix(snap.loaded_at)),
            state_file: snap.state_file.display().to_string(),
        },
        split: SplitInfo {
            from: snap.storefronts[snap.routing.split.from].name.clone(),
            to: snap.storefronts[snap.routing.split.to].name.clone(),
            new_share: percent(snap.routing.split.share_bp),
            new_share_source: if overridden_share { "override" } else { "file" }.into(),
        },
        pins: PinsInfo {
            cookie: snap.routing.cohort.cookie.clone(),
            pinning: snap.routing.cohort.pinning,
            pin_ttl_seconds: snap.routing.cohort.pin_ttl.as_secs(),
            override_enabled: snap.routing.overrides.enabled,
            override_ttl_seconds: snap.routing.overrides.ttl.as_secs(),
            default_key: snap.routing.cohort.default_key,
        },
        storefronts,
        redirects: snap
            .redirects
            .iter()
            .map(|r| RedirectInfo {
                name: r.config.name.clone(),
                file: r.path.display().to_string(),
                entries: r.table.len(),
                loaded_generation: r.generation,
            })
            .collect(),
        redirect_probation: ProbationInfo::new(&snap.redirect_probation, unix(SystemTime::now())),
        last_reload: ctx.last_reload,
        overrides: runtime.map(|r| OverridesInfo {
            new_share: r.overrides.new_share_bp.map(percent),
            file_new_share: ctx.file_share_bp.map(percent),
            evacuated_at: r.overrides.evacuated_at.clone(),
            evacuated_at_rfc3339: r
                .overrides
                .evacuated_at
                .iter()
                .map(|(sf, at)| (sf.clone(), crate::values::time::rfc3339_secs(*at)))
                .collect(),
            since: r.since,
            since_rfc3339: crate::values::time::rfc3339_secs(r.since),
            updated_at: r.updated_at,
            updated_at_rfc3339: crate::values::time::rfc3339_secs(r.updated_at),
            until: format!("{} changes (the file wins)", snap.source.display()),
        }),
        state_file_error: ctx.state_file_error,
        fleet: None,     // fleet: filled in by the admin handler
        inventory: None, // inventory: filled in by the admin handler
    }
}

/// `1h02m`, `35s`.
pub fn ago(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn since(at: u64) -> String {
    let now = unix(SystemTime::now());
    format!("{} ago", ago(now.saturating_sub(at)))
}

fn share(p: f64) -> String {
    format!("{p:.2}%")
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.ready, self.draining) {
            (_, true) => "DRAINING",
            (true, _) => "ready",
            _ => "NOT READY",
        };
        writeln!(
            f,
            "cutover {} (pid {}), up {}, {state}",
            self.version,
            self.pid,
            ago(self.uptime_seconds)
        )?;
        let c = &self.config;
        writeln!(
            f,
            "config      {} generation {} ({}, {})",
            c.path,
            c.generation,
            c.source,
            since(c.loaded_at)
        )?;
        let s = &self.split;
        write!(
            f,
            "split       {} -> {}: {} of shoppers on {}",
            s.from,
            s.to,
            share(s.new_share),
            s.to
        )?;
        match &self.overrides {
            Some(o) if o.new_share.is_some() => writeln!(
                f,
                "  [admin override; the file says {}]",
                o.file_new_share.map_or("?".into(), share)
            )?,
            _ => writeln!(f)?,
        }
        // fleet:
        if let Some(fleet) = &self.fleet {
            write!(f, "{fleet}")?;
        }
        let p = &self.pins;
        writeln!(
            f,
            "pins        cookie {}; split pins {}; staff override {}{}",
            p.cookie,
            if p.pinning {
                format!("on ({})", ago(p.pin_ttl_seconds))
            } else {
                "off".into()
            },
            if p.override_enabled {
                format!("on ({})", ago(p.override_ttl_seconds))
            } else {
                "off".into()
            },
            if p.default_key {
                "; WARNING: default cohort key"
            } else {
                ""
            }
        )?;
        writeln!(f, "storefronts")?;
        for sf in &self.storefronts {
            write!(
                f,
                "  {:<10} {:<28} {} responses ({} 5xx), {} upstream errors",
                sf.name, sf.upstream, sf.responses, sf.responses_5xx, sf.upstream_errors
            )?;
            if let (Some(at), Some(kind)) = (sf.last_error_at, &sf.last_error_kind) {
                write!(f, ", last error {kind} {}", since(at))?;
            }
            if let Some(at) = sf.last_success_at {
                write!(f, ", last answer {}", since(at))?;
            }
            if let Some(at) = sf.evacuated_at {
                write!(
                    f,
                    ", evacuated {} ({})",
                    since(at),
                    sf.evacuated_at_source.as_deref().unwrap_or("file")
                )?;
            }
            writeln!(f)?;
        }
        super::shoppers::write_status_line(f, &self.storefronts)?;
        if self.redirects.is_empty() {
            writeln!(f, "redirects   none")?;
        }
        for r in &self.redirects {
            writeln!(
                f,
                "redirects   {}: {} entries from {} (generation {})",
                r.name, r.entries, r.file, r.loaded_generation
            )?;
        }
        if !self.redirects.is_empty() {
            let now = unix(SystemTime::now());
            writeln!(f, "{}", self.redirect_probation.line(now))?;
        }
        if let Some(l) = &self.last_reload {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let when = ago((now - l.at).max(0.0) as u64);
            match &l.error {
                None => writeln!(
                    f,
                    "last reload applied ({}, {when} ago){}",
                    l.trigger,
                    if l.overrides_cleared {
                        "; the file changed, so admin overrides were dropped"
                    } else {
                        ""
                    }
                )?,
                Some(e) => {
                    writeln!(
                        f,
                        "last reload REJECTED ({}, {when} ago); still serving generation {}:",
                        l.trigger, l.generation
                    )?;
                    for line in e.lines() {
                        writeln!(f, "    {line}")?;
                    }
                }
            }
        }
        match &self.overrides {
            None => writeln!(f, "overrides   none (the file is in force)")?,
            Some(o) => {
                let mut parts = Vec::new();
                if let Some(s) = o.new_share {
                    parts.push(format!("share {}", share(s)));
                }
                for (sf, at) in &o.evacuated_at {
                    parts.push(format!(
                        "evacuate {sf} at {}",
                        crate::values::time::rfc3339_secs(*at)
                    ));
                }
                writeln!(
                    f,
                    "overrides   {} (since {}, until {}; kept in {})",
                    parts.join(", "),
                    since(o.since),
                    o.until,
                    self.config.state_file
                )?;
            }
        }
        if let Some(e) = &self.state_file_error {
            writeln!(f, "WARNING     {e}")?;
        }
        // inventory:
        if let Some(inv) = &self.inventory {
            write!(f, "{inv}")?;
        }
        Ok(())
    }
}
