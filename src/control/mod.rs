//! The admin API: status, and the changes an operator makes during a cutover.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/admin/status` | generation and source, split, pins, storefront health, redirect tables, last reload, overrides, uptime |
//! | GET | `/admin/history` | the last 256 reload attempts (generation, trigger, share, error) |
//! | PUT | `/admin/split` | `{"new_share": 12.5}` or `{"new_share": "12.5%"}` |
//! | POST | `/admin/evacuate/{storefront}` | release pins to it issued until now |
//! | POST | `/admin/reload` | reload the config file now (like SIGHUP) |
//! | POST | `/admin/upgrade` | start a successor process with our sockets, then drain |
//! | GET | `/`, `/console.js`, `/console.css` | the console page ([`console`]) |
//! | GET | `/admin/timeseries` | per-storefront requests/s, error and 404 ratios, p95, last 10 min |
//!
//! Reads are GET; mutations are PUT/POST only (a GET on them is 405), need the bearer token
//! (401) or, without one configured, a loopback peer (403), take JSON bodies of at most 64 KiB
//! (413) that must parse (400). Changes go through [`Reloader::change`]: the same compile as a
//! file change, then one snapshot swap; the data plane only ever loads snapshots, so nothing
//! here can block it. Compiles run on blocking threads, one at a time.
//!
//! Layer: control. May import its own layer and server, request, config, snapshot, observe,
//! clients, domain, policy, wire; never edge.

// console: the web page on the admin listener and its time series.
pub mod console;
// fleet: operator state shared through etcd.
pub mod fleet;
pub mod paths;
pub mod request;
// shoppers: where shoppers are, in `cutover status` and the warnings of `cutover shift`.
pub mod shoppers;
// rollout: the driver, its admin routes and its state file.
pub mod rollout;
// shadow: GET /shadow, POST /shadow/clear, GET /fallback.
pub mod shadow;
pub mod status;
// inventory: admin routes and the running inventory's file, persister and gauges.
pub mod inventory;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::admin::{AdminResponse, Router};
use crate::handover::{Handover, UpgradeError};
use crate::reload::{Change, ChangeError, Reloader};
use crate::values::Share;
use request::{authorize, error, expect_empty, json, parse, read_body};

/// What the admin handlers act on.
pub struct Control {
    /// Reloads and changes.
    pub reloader: Arc<Reloader>,
    /// `/readyz`.
    pub ready: Arc<AtomicBool>,
    /// Set when draining starts.
    pub draining: Arc<AtomicBool>,
    /// Process start.
    pub started: SystemTime,
    /// Upgrades.
    pub handover: Arc<Handover>,
    // fleet:
    /// The fleet runtime once started (`[fleet]`); empty: changes are local.
    pub fleet: fleet::Slot,
    // inventory:
    /// The URL inventory, for its lines in the status (`None`: off).
    pub inventory: Option<Arc<inventory::InventoryRuntime>>,
}

/// `PUT /admin/split` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SplitBody {
    pub(crate) new_share: Share,
}

/// The example [`Control::split`] shows when a body does not parse.
pub(crate) const SPLIT_EXAMPLE: &str = r#"{"new_share": 12.5} or {"new_share": "12.5%"}"#;

/// Answer to a change.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeAnswer {
    /// Generation now in force.
    pub generation: u64,
    /// Share on the split's `to` side now, percent.
    pub new_share: f64,
    /// Share before, percent.
    pub previous_share: f64,
    /// Evacuated storefront, for evacuations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storefront: Option<String>,
    /// Evacuation time, for evacuations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evacuated_at: Option<u64>,
    /// Whether the change was saved in the state file (survives a restart).
    pub persisted: bool,
    /// False when the request asked for what was already in force (no new generation).
    #[serde(default = "yes")]
    pub changed: bool,
    /// Anything the operator should know.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the change will not do, or will do unasked (pins that keep shoppers where they are,
    /// shoppers moved back without pins), with the estimated shoppers concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Answer to `POST /admin/reload`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReloadAnswer {
    /// Generation now in force.
    pub generation: u64,
    /// Whether the file went live.
    pub applied: bool,
    /// Share now, percent.
    pub new_share: f64,
    /// Whether admin overrides are still in force.
    pub overrides: bool,
}

/// Answer to `POST /admin/upgrade`.
#[derive(Debug, Serialize, Deserialize)]
pub struct UpgradeAnswer {
    /// This (draining) process.
    pub old_pid: u32,
    /// The successor now serving.
    pub new_pid: u32,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Control {
    fn token(&self) -> Option<String> {
        self.reloader.state().load().admin_token.clone()
    }

    async fn status(&self) -> AdminResponse {
        let snap = self.reloader.state().load_full();
        let ctx = status::Context {
            started: self.started,
            ready: self.ready.load(Ordering::Acquire),
            draining: self.draining.load(Ordering::Acquire) || self.handover.handed_over(),
            last_reload: self.reloader.last(),
            state_file_error: self.reloader.state_error(),
            file_share_bp: self.reloader.file_share_bp(),
            operator_state: self.reloader.operator_state(),
        };
        let mut status = status::build(&snap, ctx);
        // fleet: fleet store connected / unreachable since when.
        status.fleet = self.fleet.get().map(|f| f.summary());
        status.inventory = self.inventory.as_ref().map(|i| i.summary()); // inventory:
        if let (Some(_), Some(o)) = (&status.fleet, status.overrides.as_mut()) {
            o.until =
                "the next fleet change (shared by every replica; a file edit keeps it)".into();
        }
        json(StatusCode::OK, &status)
    }

    async fn split(&self, body: &[u8]) -> AdminResponse {
        let b: SplitBody = match parse(body, SPLIT_EXAMPLE) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let bp = match b.new_share.0 {
            Ok(bp) => bp,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("new_share: {e}")),
        };
        let snap = self.reloader.state().load_full();
        let current = snap.routing.split.share_bp;
        if bp == current {
            // Nothing to change: no new generation, no state-file write, and the answer says so.
            return json(
                StatusCode::OK,
                &ChangeAnswer {
                    generation: snap.generation,
                    new_share: status::percent(bp),
                    previous_share: status::percent(bp),
                    storefront: None,
                    evacuated_at: None,
                    persisted: true,
                    changed: false,
                    notes: vec![format!(
                        "the share on new is already {:.2}%: nothing changed",
                        status::percent(bp)
                    )],
                    warnings: Vec::new(),
                },
            );
        }
        let warnings = shoppers::shift_warnings(&snap, current, bp);
        self.change(Change::Share(bp), None, Vec::new(), warnings)
            .await
    }

    async fn evacuate(&self, name: &str, body: &[u8]) -> AdminResponse {
        if let Err(r) = expect_empty(body) {
            return r;
        }
        let released = shoppers::evacuate_notes(&self.reloader.state().load(), name);
        self.change(
            Change::Evacuate(name.to_string(), unix_now()),
            Some(name),
            released,
            Vec::new(),
        )
        .await
    }

    async fn change(
        &self,
        change: Change,
        storefront: Option<&str>,
        mut notes: Vec<String>,
        warnings: Vec<String>,
    ) -> AdminResponse {
        let before = self.reloader.state().load().routing.split.share_bp;
        // fleet: with [fleet] the change goes to etcd and comes back through the fleet watcher.
        let result = match self.fleet.get() {
            Some(f) => match f.change(change).await {
                Ok(r) => r,
                Err(answer) => return answer,
            },
            None => self.reloader.change(change).await,
        };
        match result {
            Ok(applied) => {
                let snap = self.reloader.state().load_full();
                // fleet:
                if self.fleet.get().is_some() {
                    notes.push("written to the fleet store: every replica applies it, and it stays until the next fleet change".into());
                }
                if let Some(e) = &applied.persist_error {
                    notes.push(format!(
                        "applied, but NOT saved ({e}): it will be lost on restart"
                    ));
                }
                let sf = storefront.and_then(|n| snap.storefront_id(n));
                if let Some(id) = sf {
                    if id == snap.routing.split.to && snap.routing.split.share_bp > 0 {
                        notes.push(format!(
                            "{} still gets {:.2}% of shoppers through the split; `cutover shift 0` moves them",
                            snap.storefronts[id].name,
                            status::percent(snap.routing.split.share_bp)
                        ));
                    }
                    if id == snap.routing.split.from && snap.routing.split.share_bp < 10_000 {
                        notes.push(format!(
                            "{} still gets {:.2}% of shoppers through the split; `cutover shift 100` moves them",
                            snap.storefronts[id].name,
                            100.0 - status::percent(snap.routing.split.share_bp)
                        ));
                    }
                    if !snap.routing.cohort.pinning {
                        notes.push(
                            "split pinning is off: only staff override pins were held".into(),
                        );
                    }
                }
                json(
                    StatusCode::OK,
                    &ChangeAnswer {
                        generation: applied.generation,
                        new_share: status::percent(snap.routing.split.share_bp),
                        previous_share: status::percent(before),
                        storefront: sf.map(|id| snap.storefronts[id].name.clone()),
                        evacuated_at: sf.and_then(|id| snap.routing.storefronts[id].evacuated_at),
                        persisted: applied.persist_error.is_none(),
                        changed: true,
                        notes,
                        warnings,
                    },
                )
            }
            Err(ChangeError::UnknownStorefront(name)) => {
                let snap = self.reloader.state().load();
                let known: Vec<&str> = snap.storefronts.iter().map(|s| s.name.as_str()).collect();
                error(
                    StatusCode::NOT_FOUND,
                    format!("no storefront named `{name}` (known: {})", known.join(", ")),
                )
            }
            Err(ChangeError::Invalid(e)) => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the change does not validate; nothing changed:\n{e}"),
            ),
        }
    }

    async fn reload(&self, body: &[u8]) -> AdminResponse {
        if let Err(r) = expect_empty(body) {
            return r;
        }
        match self.reloader.reload("admin").await {
            Ok(generation) => {
                let snap = self.reloader.state().load();
                json(
                    StatusCode::OK,
                    &ReloadAnswer {
                        generation,
                        applied: true,
                        new_share: status::percent(snap.routing.split.share_bp),
                        overrides: self.reloader.operator_state().is_some(),
                    },
                )
            }
            Err(e) => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "configuration rejected; still serving generation {}:\n{e}",
                    self.reloader.state().load().generation
                ),
            ),
        }
    }

    async fn upgrade(&self, body: &[u8]) -> AdminResponse {
        if let Err(r) = expect_empty(body) {
            return r;
        }
        if self.draining.load(Ordering::Acquire) {
            return error(StatusCode::CONFLICT, "this process is already draining");
        }
        match self.handover.upgrade().await {
            Ok(s) => json(
                StatusCode::OK,
                &UpgradeAnswer {
                    old_pid: std::process::id(),
                    new_pid: s.pid,
                },
            ),
            Err(e @ (UpgradeError::Unavailable | UpgradeError::Busy)) => {
                error(StatusCode::CONFLICT, e.to_string())
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

/// The admin API's routes: every endpoint once, with its method, its auth rule and its handler.
/// Adding an endpoint is a line here (or in a feature's own `control/<feature>.rs`) plus its path
/// in [`paths`] and the CLI command that calls it.
pub fn routes(control: Arc<Control>) -> Router {
    let mut router = Router::new();
    let c = Arc::clone(&control);
    router = router.get(paths::STATUS, move |_| {
        let c = Arc::clone(&c);
        async move { c.status().await }
    });
    let c = Arc::clone(&control);
    router = router.get(paths::HISTORY, move |_| {
        let history = c.reloader.history();
        async move { json(StatusCode::OK, &history) }
    });
    router = change(
        router,
        &control,
        Method::PUT,
        paths::SPLIT,
        |c, _, body| async move { c.split(&body).await },
    );
    router = change(
        router,
        &control,
        Method::POST,
        paths::EVACUATE,
        |c, path, body| async move {
            let name = path.rsplit('/').next().unwrap_or_default();
            c.evacuate(name, &body).await
        },
    );
    router = change(
        router,
        &control,
        Method::POST,
        paths::RELOAD,
        |c, _, body| async move { c.reload(&body).await },
    );
    // fleet: `cutover status --fleet`.
    let c = Arc::clone(&control);
    router = router.get(paths::FLEET, move |_| {
        let c = Arc::clone(&c);
        async move { fleet::replicas(&c.fleet).await }
    });
    router = change(
        router,
        &control,
        Method::POST,
        paths::UPGRADE,
        |c, _, body| async move { c.upgrade(&body).await },
    );
    // shadow:
    router = shadow::routes(router, &control);
    // console:
    router = console::routes(router, &control);
    router
}

/// Registers an operator change: the caller must pass [`authorize`] (the admin token, or a
/// loopback peer when none is configured), the body is read within [`read_body`]'s bounds, then
/// `handler` gets the control plane, the request path (for `{segment}` values) and the body.
pub fn change<F, Fut>(
    router: Router,
    control: &Arc<Control>,
    method: Method,
    path: &'static str,
    handler: F,
) -> Router
where
    F: Fn(Arc<Control>, String, Bytes) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = AdminResponse> + Send + 'static,
{
    let c = Arc::clone(control);
    let handler = Arc::new(handler);
    router.route(method, path, move |req| {
        let c = Arc::clone(&c);
        let handler = Arc::clone(&handler);
        async move {
            if let Err(r) = authorize(&req, c.token().as_deref()) {
                return r;
            }
            let path = req.uri().path().to_string();
            match read_body(req).await {
                Ok(body) => handler(c, path, body).await,
                Err(r) => r,
            }
        }
    })
}
