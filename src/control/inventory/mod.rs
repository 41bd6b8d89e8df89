//! The URL inventory on the admin listener, and its wiring into a running process.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/inventory` | size, what could not be kept, the file, and the top URLs (`?limit=N`, default 1000); `?format=csv` every URL |
//! | GET | `/inventory/coverage` | one verdict per URL against the snapshot in force (JSON; `?format=csv`: `old_url,hits,crawler_hits,verdict,new_url`) |
//! | POST | `/inventory/import-sitemap` | `{"source": "/path/sitemap.xml" or "https://..."}`: import into the running inventory (token, like every change) |
//!
//! Without `[inventory]` on at start, each answers 404 with a message saying how to turn it on.

mod oracle;
mod runtime;
mod summary;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::paths;
use super::request::{error, json, parse};
use super::Control;
use crate::admin::{body_with_type, AdminResponse, Router};
use crate::inventory::{sitemap, CoverageReport, Entry, Stats};

pub use oracle::SnapshotOracle;
pub use runtime::{refresh, FileStatus, InventoryRuntime};
pub use summary::InventorySummary;

/// Entries `GET /inventory` lists by default.
const DEFAULT_LIMIT: usize = 1000;
/// How long one sitemap fetch may take from the admin API.
const SITEMAP_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET /inventory`.
#[derive(Debug, Serialize)]
pub struct InventoryAnswer {
    /// Counts and what could not be kept.
    pub stats: Stats,
    /// The file.
    pub persistence: FileStatus,
    /// Entries listed below (at most `limit`), most hits first.
    pub listed: usize,
    /// The top URLs.
    pub entries: Vec<Entry>,
}

/// `GET /inventory/coverage`: the report plus where `--probe` should ask.
#[derive(Debug, Serialize)]
pub struct CoverageAnswer<'a> {
    /// Generation of the snapshot the verdicts come from.
    pub generation: u64,
    /// The split's `to` storefront, `scheme://authority`, for `cutover inventory coverage --probe`.
    pub new_storefront: String,
    /// The report.
    #[serde(flatten)]
    pub report: &'a CoverageReport,
}

/// `POST /inventory/import-sitemap` body.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// A sitemap or sitemap index: a path on the proxy's host, or an http(s) URL.
    pub source: String,
}

/// Answer to an import.
#[derive(Debug, Deserialize, Serialize)]
pub struct ImportAnswer {
    /// URLs read (after keying).
    pub urls: usize,
    /// Of those, new to the inventory.
    pub added: usize,
    /// URLs in the inventory now.
    pub inventory_urls: usize,
}

const IMPORT_EXAMPLE: &str =
    r#"{"source": "/srv/old/sitemap.xml"} or {"source": "https://old.example/sitemap.xml"}"#;

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn off() -> AdminResponse {
    error(
        StatusCode::NOT_FOUND,
        "the URL inventory is off: add `[inventory]` with `enabled = true` to the config and restart",
    )
}

/// The coverage of the running inventory against the snapshot in force.
pub fn coverage(rt: &InventoryRuntime, snap: &crate::state::Snapshot) -> CoverageReport {
    let none = HashSet::new();
    CoverageReport::build(
        &rt.inventory.entries(),
        &SnapshotOracle::whole_plan(snap, &none),
    )
}

/// Registers the inventory's admin routes; `rt` is `None` when the inventory is off.
pub fn routes(
    mut router: Router,
    control: &Arc<Control>,
    rt: Option<Arc<InventoryRuntime>>,
) -> Router {
    let r = rt.clone();
    router = router.get(paths::INVENTORY, move |req| {
        let r = r.clone();
        let csv = query_param(req.uri().query(), "format") == Some("csv");
        let limit = query_param(req.uri().query(), "limit").and_then(|l| l.parse().ok());
        async move {
            let Some(rt) = r else { return off() };
            tokio::task::spawn_blocking(move || {
                let entries = rt.inventory.entries();
                if csv {
                    return entries_csv(&entries);
                }
                let entries: Vec<Entry> = entries
                    .into_iter()
                    .take(limit.unwrap_or(DEFAULT_LIMIT))
                    .collect();
                json(
                    StatusCode::OK,
                    &InventoryAnswer {
                        stats: rt.inventory.stats(),
                        persistence: rt.file_status(),
                        listed: entries.len(),
                        entries,
                    },
                )
            })
            .await
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
    });
    let (r, c) = (rt.clone(), Arc::clone(control));
    router = router.get(paths::INVENTORY_COVERAGE, move |req| {
        let (r, state) = (r.clone(), Arc::clone(c.reloader.state()));
        let csv = query_param(req.uri().query(), "format") == Some("csv");
        async move {
            let Some(rt) = r else { return off() };
            tokio::task::spawn_blocking(move || {
                let snap = state.load_full();
                let report = coverage(&rt, &snap);
                if csv {
                    let mut out = Vec::new();
                    return match report.write_csv(&mut out, false) {
                        Ok(()) => body_with_type(StatusCode::OK, "text/csv; charset=utf-8", out),
                        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    };
                }
                let to = &snap.storefronts[snap.routing.split.to].upstream.settings;
                json(
                    StatusCode::OK,
                    &CoverageAnswer {
                        generation: snap.generation,
                        new_storefront: format!("{}://{}", to.scheme, to.authority),
                        report: &report,
                    },
                )
            })
            .await
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
    });
    super::change(
        router,
        control,
        Method::POST,
        paths::INVENTORY_IMPORT_SITEMAP,
        move |_, _, body| {
            let r = rt.clone();
            async move {
                let Some(rt) = r else { return off() };
                let b: ImportBody = match parse(&body, IMPORT_EXAMPLE) {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                match sitemap::import(&rt.inventory, &b.source, SITEMAP_TIMEOUT).await {
                    Ok(report) => json(
                        StatusCode::OK,
                        &ImportAnswer {
                            urls: report.read.urls.len(),
                            added: report.added,
                            inventory_urls: rt.inventory.len(),
                        },
                    ),
                    Err(e) => error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("nothing imported: {e}"),
                    ),
                }
            }
        },
    )
}

/// Every entry as CSV (`host,url,hits,hits_error,crawler_hits,first_seen,last_seen,last_status,sources`).
fn entries_csv(entries: &[Entry]) -> AdminResponse {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "old_url",
        "hits",
        "hits_error",
        "crawler_hits",
        "first_seen",
        "last_seen",
        "last_status",
        "in_sitemap",
    ]);
    for e in entries {
        let _ = w.write_record([
            e.old_url(),
            e.hits.to_string(),
            e.hits_error.to_string(),
            e.crawler_hits.to_string(),
            e.first_seen.to_string(),
            e.last_seen.to_string(),
            e.last_status.to_string(),
            e.sources.sitemap.to_string(),
        ]);
    }
    match w.into_inner() {
        Ok(out) => body_with_type(StatusCode::OK, "text/csv; charset=utf-8", out),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
