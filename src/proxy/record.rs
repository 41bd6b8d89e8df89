//! Record: what the one place that counts and logs a forwarded request
//! ([`Finish`](crate::response::Finish)) needs, gathered as the request goes and handed over
//! exactly once, on whichever path answers the shopper.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, StatusCode};

use super::ConnInfo;
use crate::metrics::InFlightGuard;
use crate::response::{AccessFields, Finish, InventoryFields};
use crate::routing::Decision;
use crate::state::Snapshot;

/// A forwarded request's record, waiting for its status. Consumed by [`Record::finish`], so no
/// path can count a request twice or forget it.
pub(super) struct Record {
    pub(super) started: Instant,
    pub(super) snap: Arc<Snapshot>,
    pub(super) decision: Decision,
    /// The shopper's connection (the cohort cookie's `Secure`, HSTS).
    pub(super) conn: ConnInfo,
    pub(super) request_id: HeaderValue,
    pub(super) method: Method,
    /// Holds the storefront's in-flight gauge up from the moment the storefront is chosen.
    pub(super) in_flight: InFlightGuard,
    pub(super) access: Option<AccessFields>,
    pub(super) inventory: Option<InventoryFields>,
}

impl Record {
    /// The finished record for a response with `status`; `ttfb` when a storefront answered.
    pub(super) fn finish(self, status: StatusCode, ttfb: Option<Duration>) -> Finish {
        Finish {
            started: self.started,
            snap: self.snap,
            storefront: self.decision.storefront,
            route: self.decision.route,
            reason: self.decision.reason,
            status,
            upstream_ttfb: ttfb,
            request_id: Some(self.request_id),
            method: self.method,
            bytes: 0,
            complete: false,
            in_flight: Some(self.in_flight),
            access: self.access,
            inventory: self.inventory,
        }
    }
}
