//! What the request path needs of the shadow comparison and the 404 fallback (issue 18), held by
//! the [`Snapshot`](super::Snapshot) so a request reaches it without a lock.
//!
//! The mirror itself ([`Shadow`]) runs background tasks and keeps a report, so a reload keeps it
//! when `[shadow]` and the storefronts are unchanged and starts a fresh one otherwise; the
//! fallback's counters and top URLs outlive every reload (a week of "pages new lacks" must survive
//! a share change), like the missed-redirects list.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::redirects::RedirectTable;
use crate::shadow::counters::FallbackCounters;
use crate::shadow::fallback::FallbackUrls;
use crate::shadow::{MapUrl, Shadow, ShadowSettings, Targets};

/// The redirect tables of the snapshot in force, for mapping URLs found inside answers
/// (`<link rel=canonical>`, `Location`) off the request path: [`publish_plan`] stores a
/// snapshot's tables once it serves (a fresh mirror starts with those of the snapshot it is
/// built for).
pub type PlanSlot = ArcSwap<Vec<Arc<RedirectTable>>>;

/// The running mirror and what it was started from.
pub struct ShadowPlane {
    /// The mirror: `offer` on the request path, `report`/`clear` for the admin API.
    pub shadow: Arc<Shadow>,
    /// The settings it runs with (a reload with equal settings keeps it).
    pub settings: ShadowSettings,
    /// The storefront base URLs it copies to.
    pub targets: Targets,
    /// The plan `map_url` reads.
    pub plan: Arc<PlanSlot>,
}

impl std::fmt::Debug for ShadowPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowPlane")
            .field("settings", &self.settings)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

/// Points the running mirror's URL mapping at `snap`'s redirect tables; called when `snap` goes
/// live (after the swap), so copies compare against the plan in force.
pub fn publish_plan(snap: &super::Snapshot) {
    if let Some(plane) = &snap.shadow {
        let tables = snap
            .redirects
            .iter()
            .map(|r| Arc::clone(&r.table))
            .collect();
        plane.plan.store(Arc::new(tables));
    }
}

/// Maps an absolute URL through the tables in `plan` (host and path as the tables key them).
pub fn map_url(plan: Arc<PlanSlot>) -> MapUrl {
    Arc::new(move |url: &str| {
        let uri: http::Uri = url.parse().ok()?;
        let host = uri.host()?.trim_end_matches('.').to_ascii_lowercase();
        let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let tables = plan.load();
        tables
            .iter()
            .find_map(|t| t.lookup(&host, pq))
            .and_then(|hit| hit.location)
    })
}

/// The 404 fallback as configured.
#[derive(Debug)]
pub struct FallbackPlane {
    /// New's statuses that make cutover ask old.
    pub statuses: Vec<u16>,
    /// Whether each route (by `RouteId`, the implicit `default` last) has the fallback on.
    pub routes: Vec<bool>,
    /// Outcomes, for `cutover_fallback_total{result}`; carried across reloads.
    pub counters: Arc<FallbackCounters>,
    /// URLs old served because new lacked them; carried across reloads.
    pub urls: Arc<FallbackUrls>,
    /// The bound `urls` was made with (a changed bound starts a new list).
    pub top_urls: usize,
}

impl FallbackPlane {
    /// Whether requests routed by `route` fall back.
    pub fn on(&self, route: usize) -> bool {
        self.routes.get(route).copied().unwrap_or(false)
    }
}
