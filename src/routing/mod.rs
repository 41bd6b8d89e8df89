//! The routing decision: which storefront serves a request, and why.
//!
//! [`decide`] is a pure function of the snapshot, the request and the clock: no I/O, no locks, no
//! allocation beyond the returned cookie. Everything that can be computed ahead (lowercased hosts,
//! trimmed prefixes, parsed header names) was computed when the snapshot was compiled.
//!
//! How a split route picks a storefront, in order:
//! 1. a granted staff override (`?cutover=new`, `x-cutover-force`) pins the requester there;
//!    `?cutover=clear` removes any pin;
//! 2. a valid pin (not expired, issued after its storefront's last evacuation) holds the shopper;
//! 3. otherwise the bucket decides: `bucket < share_bp` -> the split's `to`, else `from`; with
//!    pinning on, that answer becomes a pin.
//!
//! Rule routes (`to = "old"`) always go where the rule says; an override seen on them still sets
//! the pin for the shopper's next split page.
//!
//! Layer: domain. May import its own layer and policy, wire; never edge, control, server, request,
//! config, snapshot, observe, clients.

use http::Method;

use self::cohort::{CohortCookie, Pin, PinKind};
use self::request_headers::RequestHeaders;
use self::staff_override::{Force, ForceRequest};

pub mod cohort;
pub mod request_headers;
pub mod shopper;
pub mod staff_override;
mod table;

pub use table::{
    prefix_matches, Action, HostPattern, Matcher, Route, Split, StorefrontRouting, Table,
};

/// Index of a storefront in [`Table::storefronts`].
pub type StorefrontId = usize;
/// Index of a route in [`Table::routes`]; the last one is the implicit default.
pub type RouteId = usize;

/// Why a request went where it went; also a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A `[[route]]` naming a storefront.
    Rule,
    /// The shopper's bucket against the share.
    Split,
    /// An earlier split assignment held by pinning.
    Pin,
    /// A staff override, now or from an earlier request.
    Override,
    /// Answered from the redirect table.
    Redirect,
    /// The 404 fallback: new answered a fallback status and old served its page instead (set
    /// after the exchange, never by [`decide`]; the shopper's assignment does not change).
    Fallback,
}

impl Reason {
    /// Every reason, in metric-index order.
    pub const ALL: [Reason; 6] = [
        Reason::Rule,
        Reason::Split,
        Reason::Pin,
        Reason::Override,
        Reason::Redirect,
        Reason::Fallback,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rule => "rule",
            Reason::Split => "split",
            Reason::Pin => "pin",
            Reason::Override => "override",
            Reason::Redirect => "redirect",
            Reason::Fallback => "fallback",
        }
    }
}

/// The parts of a request routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a Method,
    /// Host without port, as sent (compared case-insensitively).
    pub host: &'a str,
    /// Path without query.
    pub path: &'a str,
    /// Raw query, if any.
    pub query: Option<&'a str>,
    /// Headers.
    pub headers: RequestHeaders<'a>,
}

/// The outcome: where to send the request, why, and what to tell the shopper's browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Matched route.
    pub route: RouteId,
    /// Chosen storefront.
    pub storefront: StorefrontId,
    /// Why.
    pub reason: Reason,
    /// A new cohort cookie to send, if it changed.
    pub set_cookie: Option<CohortCookie>,
    /// The request asked for an override that was not allowed.
    pub override_refused: bool,
    /// A shopper seen for the first time got a bucket.
    pub newly_assigned: bool,
    /// Who was placed, for counting where shoppers are; `None` on rule routes and for shoppers
    /// who carry no cookie of ours nor a session ([`shopper`]).
    pub shopper: Option<shopper::Shopper>,
}

/// First matching route; the snapshot always ends with a catch-all default.
pub fn match_route(routes: &[Route], req: &RequestView<'_>) -> RouteId {
    routes
        .iter()
        .position(|r| r.matcher.matches(req))
        .unwrap_or(routes.len().saturating_sub(1))
}

fn pin_valid(table: &Table, pin: &Pin, now: u64) -> bool {
    let ttl = table.pin_ttl(pin.kind).as_secs();
    let alive = now < pin.issued.saturating_add(ttl);
    let not_evacuated = table.storefronts[pin.storefront]
        .evacuated_at
        .is_none_or(|t| pin.issued > t);
    alive && not_evacuated
}

/// Decides where a request goes. `now` is unix seconds; `fresh` gives a bucket to a shopper seen
/// for the first time and is only called then.
pub fn decide(
    table: &Table,
    req: &RequestView<'_>,
    now: u64,
    fresh: impl FnOnce() -> u16,
) -> Decision {
    let route = match_route(&table.routes, req);
    let id_of = |name: &str| table.storefront_id(name);
    let force = staff_override::read(&table.overrides, req.headers, req.query, id_of);
    let override_refused = force == ForceRequest::Refused;

    let decoded = cohort::find_cookie(req.headers, &table.cohort.cookie)
        .map(|v| cohort::decode(v, &table.cohort.keys, id_of));
    let cookie_present = decoded.is_some();
    let verified = decoded.flatten();
    // cohort key rotation: a cookie signed by a previous key is re-signed with the current one.
    let mut rewrite =
        cookie_present && verified.is_none_or(|d| d.stale_pin || d.signed_by_previous);

    let mut newly_assigned = false;
    // The keyed hash of the session cookie, when configured and sent: the bucket of a shopper
    // without our cookie, and who the shopper is when counting them (`shopper`).
    let session_hash = || {
        table
            .cohort
            .session_cookie
            .as_deref()
            .and_then(|name| cohort::find_cookie(req.headers, name))
            .map(|session| table.cohort.keys.session_hash(session))
    };
    let mut session = None;
    let bucket = match verified {
        Some(d) => d.cookie.bucket,
        None => {
            session = session_hash();
            match session {
                Some(hash) => cohort::bucket_of_hash(hash),
                None => {
                    newly_assigned = true;
                    fresh()
                }
            }
        }
    };

    let mut pin = verified.and_then(|d| d.cookie.pin);
    if let Some(p) = pin {
        if !pin_valid(table, &p, now) {
            pin = None;
            rewrite = true;
        }
    }
    match force {
        ForceRequest::Granted(Force::To(s)) => {
            pin = Some(Pin {
                storefront: s,
                kind: PinKind::Override,
                issued: now,
            });
            rewrite = true;
        }
        ForceRequest::Granted(Force::Clear) => {
            rewrite |= pin.is_some() || verified.is_none();
            pin = None;
        }
        ForceRequest::None | ForceRequest::Refused => {}
    }

    if let Action::Storefront(storefront) = table.routes[route].action {
        // Rules never assign a bucket by themselves (an image request should not mint a cookie),
        // but they carry an override or a repaired cookie to the browser.
        let set_cookie = rewrite.then_some(CohortCookie { bucket, pin });
        return Decision {
            route,
            storefront,
            reason: Reason::Rule,
            set_cookie,
            override_refused,
            newly_assigned: false,
            shopper: None,
        };
    }

    let (storefront, reason) = match pin {
        Some(p) => {
            let reason = match p.kind {
                PinKind::Split => Reason::Pin,
                PinKind::Override => Reason::Override,
            };
            // A returning shopper's pin slides forward once half its life is used.
            if p.kind == PinKind::Split && table.cohort.pinning {
                let half = table.cohort.pin_ttl.as_secs() / 2;
                if now.saturating_sub(p.issued) > half {
                    pin = Some(Pin { issued: now, ..p });
                    rewrite = true;
                }
            }
            (p.storefront, reason)
        }
        None => {
            let split = table.split;
            let s = if bucket < split.share_bp {
                split.to
            } else {
                split.from
            };
            if table.cohort.pinning {
                pin = Some(Pin {
                    storefront: s,
                    kind: PinKind::Split,
                    issued: now,
                });
                rewrite = true;
            }
            (s, Reason::Split)
        }
    };
    // A shopper whose bucket came from a session cookie needs no cookie of ours until pinned.
    let set_cookie =
        (rewrite || (newly_assigned && verified.is_none())).then_some(CohortCookie { bucket, pin });
    if verified.is_some() {
        session = session_hash();
    }
    let after = CohortCookie { bucket, pin };
    Decision {
        route,
        storefront,
        reason,
        set_cookie,
        override_refused,
        newly_assigned,
        shopper: shopper::identify(table, session, verified.is_some(), after, storefront),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_edges;
