//! The admin endpoints of issue 18: `GET /shadow` (the comparison report, JSON or
//! `?format=csv`), `POST /shadow/clear` (an admin change: token, empty body) and `GET /fallback`
//! (the fallback's outcomes and the URLs new still lacks).
//!
//! They read the snapshot in force; without `[shadow]` (or without any fallback route) they
//! answer 404 with the section to add, so an operator knows why the report is empty.

use std::sync::Arc;

use http::{Method, StatusCode};
use serde::Serialize;

use super::paths;
use super::request::{error, expect_empty, json};
use super::{change, Control};
use crate::admin::{body_with_type, AdminResponse, Router};
use crate::shadow::fallback::FallbackResult;
use crate::shadow::topk::Hits;
use crate::state::Snapshot;

const NO_SHADOW: &str =
    "shadowing is off: add a [shadow] section to the configuration (see config/cutover.example.toml)";
const NO_FALLBACK: &str =
    "the 404 fallback is off: set `fallback = true` on a [[route]] (and optionally add [fallback])";

/// `GET /fallback`.
#[derive(Debug, Serialize)]
pub struct FallbackAnswer {
    /// New's statuses that make cutover ask old.
    pub statuses: Vec<u16>,
    /// Routes with the fallback on.
    pub routes: Vec<String>,
    /// Outcomes so far, by `cutover_fallback_total` result.
    pub results: Vec<FallbackCount>,
    /// URLs old served because new lacked them, most frequent first.
    pub top_urls: Vec<Hits>,
}

/// One outcome's total.
#[derive(Debug, Serialize)]
pub struct FallbackCount {
    /// The result label.
    pub result: &'static str,
    /// How many requests.
    pub total: u64,
}

fn wants_csv(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "format=csv"))
}

fn shadow_report(snap: &Snapshot, csv: bool) -> AdminResponse {
    let Some(plane) = &snap.shadow else {
        return error(StatusCode::NOT_FOUND, NO_SHADOW);
    };
    let report = plane.shadow.report();
    if csv {
        body_with_type(StatusCode::OK, "text/csv; charset=utf-8", report.to_csv())
    } else {
        json(StatusCode::OK, &report)
    }
}

fn fallback(snap: &Snapshot) -> AdminResponse {
    let Some(plane) = &snap.fallback else {
        return error(StatusCode::NOT_FOUND, NO_FALLBACK);
    };
    let routes = snap
        .routing
        .routes
        .iter()
        .enumerate()
        .filter(|(id, _)| plane.on(*id))
        .map(|(_, r)| r.name.clone())
        .collect();
    let results = plane
        .counters
        .snapshot()
        .into_iter()
        .map(|(r, total)| FallbackCount {
            result: FallbackResult::as_str(r),
            total,
        })
        .collect();
    json(
        StatusCode::OK,
        &FallbackAnswer {
            statuses: plane.statuses.clone(),
            routes,
            results,
            top_urls: plane.urls.top(),
        },
    )
}

/// Registers the three endpoints.
pub fn routes(router: Router, control: &Arc<Control>) -> Router {
    let c = Arc::clone(control);
    let router = router.get(paths::SHADOW, move |req| {
        let snap = c.reloader.state().load_full();
        let answer = shadow_report(&snap, wants_csv(req.uri().query()));
        async move { answer }
    });
    let c = Arc::clone(control);
    let router = router.get(paths::FALLBACK, move |_| {
        let answer = fallback(&c.reloader.state().load());
        async move { answer }
    });
    change(
        router,
        control,
        Method::POST,
        paths::SHADOW_CLEAR,
        |c, _, body| async move {
            if let Err(r) = expect_empty(&body) {
                return r;
            }
            let snap = c.reloader.state().load_full();
            match &snap.shadow {
                None => error(StatusCode::NOT_FOUND, NO_SHADOW),
                Some(plane) => {
                    plane.shadow.clear();
                    json(StatusCode::OK, &plane.shadow.report())
                }
            }
        },
    )
}
