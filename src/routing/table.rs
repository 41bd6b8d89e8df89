//! The routing table: everything [`super::decide`] reads, compiled once per snapshot.
//!
//! Built by `config` from the file (plus operator state) and held by the snapshot; tests build
//! one directly. Nothing here knows about connection pools, metrics or the log.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::cohort::{self, CohortPolicy};
use super::staff_override::OverridePolicy;
use super::{RequestView, RouteId, StorefrontId};

/// What routing knows of a storefront: its name and when its pins were last released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorefrontRouting {
    /// Name from the config (`old`, `new`, ...).
    pub name: String,
    /// Pins issued at or before this unix second are released (`cutover evacuate`).
    pub evacuated_at: Option<u64>,
}

/// Everything a routing decision depends on, apart from the request and the clock.
#[derive(Debug, Clone)]
pub struct Table {
    /// Storefronts by id, in config order.
    pub storefronts: Vec<StorefrontRouting>,
    /// Routes in order; the last is the implicit default (`split`).
    pub routes: Vec<Route>,
    /// The shift.
    pub split: Split,
    /// Cookie and pinning.
    pub cohort: CohortPolicy,
    /// Staff override.
    pub overrides: OverridePolicy,
}

impl Table {
    /// Storefront id by name. Linear: there are a handful of storefronts.
    pub fn storefront_id(&self, name: &str) -> Option<StorefrontId> {
        self.storefronts.iter().position(|s| s.name == name)
    }

    /// First matching route; the table always ends with a catch-all default.
    pub fn match_route(&self, req: &RequestView<'_>) -> RouteId {
        super::match_route(&self.routes, req)
    }

    /// How long a pin of this kind lives.
    pub(super) fn pin_ttl(&self, kind: cohort::PinKind) -> Duration {
        match kind {
            cohort::PinKind::Split => self.cohort.pin_ttl,
            cohort::PinKind::Override => self.overrides.ttl,
        }
    }
}

/// A host condition, precompiled to lowercase.
#[derive(Debug, Clone)]
pub enum HostPattern {
    /// `shop.example.com`
    Exact(String),
    /// `*.example.com`: stored as `.example.com`; matches one or more labels in front.
    Suffix(String),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host.as_bytes()[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        }
    }
}

/// Every condition of a route; all present ones must hold.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// Host condition.
    pub host: Option<HostPattern>,
    /// Path prefix on segment boundaries, stored without a trailing slash (`/blog`).
    pub path_prefix: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Allowed methods; empty means any.
    pub methods: Vec<Method>,
    /// Header presence or exact value.
    pub header: Option<(HeaderName, Option<HeaderValue>)>,
    /// Cookie presence or exact value.
    pub cookie: Option<(String, Option<String>)>,
}

/// `/blog` matches `/blog`, `/blog/` and `/blog/x`, never `/blogger`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

impl Matcher {
    /// Whether a request satisfies every condition.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(h) = &self.host {
            if !h.matches(req.host) {
                return false;
            }
        }
        if let Some(p) = &self.path {
            if req.path != p {
                return false;
            }
        }
        if let Some(p) = &self.path_prefix {
            if !prefix_matches(p, req.path) {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.contains(req.method) {
            return false;
        }
        if let Some((name, value)) = &self.header {
            let ok = match value {
                None => req.headers.contains(name),
                Some(v) => req.headers.get_all(name).any(|x| x == v.as_bytes()),
            };
            if !ok {
                return false;
            }
        }
        if let Some((name, value)) = &self.cookie {
            match (cohort::find_cookie(req.headers, name), value) {
                (None, _) => return false,
                (Some(got), Some(want)) if got != want => return false,
                _ => {}
            }
        }
        true
    }
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Always this storefront.
    Storefront(StorefrontId),
    /// The cohort decides.
    Split,
}

/// A compiled `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name used in metrics and logs (`route[N]` when unnamed, `default` for the fallthrough).
    pub name: String,
    /// Conditions.
    pub matcher: Matcher,
    /// Target.
    pub action: Action,
}

/// The gradual shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Where shoppers come from (`old`).
    pub from: StorefrontId,
    /// Where shoppers go (`new`).
    pub to: StorefrontId,
    /// Share on `to`, in basis points.
    pub share_bp: u16,
}
