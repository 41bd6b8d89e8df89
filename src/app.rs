//! Wiring for a running proxy: load the config, bind, serve, reload, drain. Shared by `serve`,
//! `demo` and the end-to-end tests so they all run the same thing.
//!
//! Layer: edge. May import its own layer and control, server, request, config, snapshot, observe,
//! clients, domain, policy, wire; nothing is above it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::admin::{self, AdminState, Router};
use crate::config::ConfigError;
use crate::control::{self, Control};
use crate::handover::{self, Handover, Inherited, UpgradeCommand};
use crate::metrics::{Metrics, TlsMetrics};
use crate::proxy::Proxy;
use crate::reload::{self, Reloader};
use crate::server::{self, Bound, ListenerKind, Server};
use crate::tls::TlsListener;
use http::StatusCode;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("binding listener {address} (from {}): {source}", config.display())]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The config file that names it.
        config: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An HTTPS listener's certificates could not be loaded.
    #[error("loading certificates (from {}): {source}", config.display())]
    Tls {
        /// The config file that names them.
        config: PathBuf,
        /// What was wrong, naming each file.
        source: crate::tls::TlsError,
    },
    /// The admin listener could not be bound.
    #[error("starting the admin listener (from {}): {source}", config.display())]
    Admin {
        /// The config file that names it.
        config: PathBuf,
        /// What went wrong.
        source: admin::AdminError,
    },
    // fleet:
    /// `[fleet]` could not be started.
    #[error("starting [fleet] (from {}): {source}", config.display())]
    Fleet {
        /// The config file.
        config: PathBuf,
        /// What went wrong.
        source: Box<control::fleet::FleetStartError>,
    },
}

/// A started proxy.
pub struct App {
    /// The service (holds the snapshot handle).
    pub proxy: Arc<Proxy>,
    /// Reloads the config.
    pub reloader: Arc<Reloader>,
    /// Accepting listeners.
    pub server: Server,
    /// Where the data-plane listeners are bound (port 0 resolved).
    pub addresses: Vec<SocketAddr>,
    /// Where the admin listener is bound, if enabled.
    pub admin_address: Option<SocketAddr>,
    /// `/readyz`: true once listening, false from the start of a drain.
    pub ready: Arc<AtomicBool>,
    /// True from the start of a drain (`/admin/status`).
    pub draining: Arc<AtomicBool>,
    /// The listening sockets, kept for an upgrade to a successor process.
    pub handover: Arc<Handover>,
    // fleet:
    /// The fleet runtime, when `[fleet]` is set: left (leadership resigned) on drain.
    pub fleet: control::fleet::Slot,
    // inventory:
    /// The URL inventory's file, persister and gauges; `None` when `[inventory]` is off at start.
    pub inventory: Option<Arc<control::inventory::InventoryRuntime>>,
    /// SIGTERM/SIGINT listeners, installed before the listeners open so a signal that arrives
    /// at any moment after that is seen (not lost, and not the default kill).
    signals: Option<ShutdownSignals>,
}

/// SIGTERM and SIGINT, listened to from startup on.
struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Option<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some(ShutdownSignals { term, int }),
                _ => {
                    tracing::warn!("cannot listen for SIGTERM/SIGINT");
                    None
                }
            }
        }
        #[cfg(not(unix))]
        None
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
        #[cfg(not(unix))]
        shutdown_signal().await
    }
}

/// How to start beyond the config file.
#[derive(Default)]
pub struct StartOptions {
    /// Listening sockets from systemd or from the process this one upgrades.
    pub inherited: Inherited,
    /// How to start a successor for `POST /admin/upgrade`; `None` disables upgrades.
    pub upgrade: Option<UpgradeCommand>,
}

/// Loads `config`, binds its listeners and starts serving; watchers for reload start too.
pub async fn start(config: &Path) -> Result<App, StartError> {
    start_with(config, StartOptions::default()).await
}

/// [`start`] with inherited sockets and upgrade support (`cutover serve`).
pub async fn start_with(config: &Path, options: StartOptions) -> Result<App, StartError> {
    let StartOptions {
        mut inherited,
        upgrade,
    } = options;
    // First, so a SIGTERM at any moment from here on drains instead of killing.
    let signals = ShutdownSignals::install();
    let metrics = Metrics::new();
    let path = config.to_path_buf();
    let m = Arc::clone(&metrics);
    let startup = tokio::task::spawn_blocking(move || reload::load_startup(&path, &m))
        .await
        .expect("config loading does not panic")?;
    if let Some(note) = &startup.state_note {
        tracing::warn!("{note}");
    }
    let snap = &startup.snapshot;
    let tls_metrics =
        TlsMetrics::register(metrics.registry()).expect("TLS metric definitions are valid");
    let BoundListeners {
        listeners,
        addresses,
        mut kept,
        tls: tls_listeners,
    } = bind_listeners(config, snap, &mut inherited, &tls_metrics)?;
    let admin_at = snap.admin;
    metrics.set_build_info(env!("CARGO_PKG_VERSION"));
    reload::publish(&metrics, snap);
    let reloader = Reloader::from_startup(config.to_path_buf(), Arc::clone(&metrics), startup);
    let state = Arc::clone(reloader.state());
    // shadow: the shadow and fallback counters of the snapshot in force, at each scrape.
    register_shadow_metrics(&metrics, &state);
    // pool:
    register_pool_metrics(&metrics, &state);
    let proxy = Proxy::new(Arc::clone(&state), Arc::clone(&metrics));
    let ready = Arc::new(AtomicBool::new(false));
    let draining = Arc::new(AtomicBool::new(false));
    // inventory: file loaded (a bad one: empty + warning), persister and gauges started.
    let inventory = control::inventory::InventoryRuntime::start(&state, &metrics).await;
    let admin_listener = match admin_at {
        None => None,
        Some(addr) => Some(bind_admin(config, addr, &mut inherited, &mut kept)?),
    };
    inherited.close_unused();
    let handover = Handover::new(kept, upgrade);
    // fleet: filled once the fleet's state is applied (below), before readiness.
    let fleet_slot = control::fleet::Slot::default();
    // rollout: the driver follows `[rollout]` (idle without it), with or without an admin API.
    // fleet: in a fleet it drives only on the leader, from the fleet's state, once [fleet] started.
    let (fleet_started, started) = tokio::sync::oneshot::channel::<()>();
    let rollout = control::rollout::Rollout::spawn_in_fleet(
        Arc::clone(&reloader),
        Arc::clone(&metrics),
        Arc::clone(&fleet_slot),
        async move {
            let _ = started.await;
        },
    );
    let admin_address = match admin_listener {
        None => None,
        Some(listener) => {
            let bound = listener.local_addr().ok();
            let control = Arc::new(Control {
                reloader: Arc::clone(&reloader),
                ready: Arc::clone(&ready),
                draining: Arc::clone(&draining),
                started: SystemTime::now(),
                handover: Arc::clone(&handover),
                fleet: Arc::clone(&fleet_slot), // fleet:
                inventory: inventory.clone(),   // inventory:
            });
            // rollout: its admin routes.
            let rollout_routes =
                control::rollout::api::routes(crate::admin::Router::new(), &control, rollout);
            let state = AdminState::new(Arc::clone(&metrics), Arc::clone(&ready))
                .with_routes(admin_routes(&proxy))
                // inventory:
                .with_routes(control::inventory::routes(
                    Router::new(),
                    &control,
                    inventory.clone(),
                ))
                .with_routes(control::routes(control))
                .with_routes(rollout_routes);
            tokio::spawn(admin::serve(listener, state, std::future::pending()));
            bound
        }
    };
    reloader.set_tls(tls_listeners, tls_metrics);
    reloader.spawn_watchers();
    spawn_upgrade_on_sigusr2(&handover);
    // fleet: the fleet's operator state is applied before readiness (bounded by start_timeout).
    start_fleet(config, &reloader, &metrics, admin_address, &fleet_slot).await?;
    let _ = fleet_started.send(()); // rollout: the driver may start
    let server = Server::start(Arc::clone(&proxy), listeners);
    ready.store(true, Ordering::Release);
    {
        let snap = state.load();
        let shown: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        tracing::info!(
            generation = snap.generation,
            listeners = %shown.join(","),
            admin = %admin_address.map_or("off".to_string(), |a| a.to_string()),
            pid = std::process::id(),
            storefronts = ?snap.storefronts.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            share_bp = snap.routing.split.share_bp,
            overrides = reloader.operator_state().is_some(),
            "cutover started"
        );
        if snap.routing.cohort.default_key {
            tracing::warn!("cohort.key is not set: cookies are signed with a public default key");
        }
    }
    Ok(App {
        proxy,
        reloader,
        server,
        addresses,
        admin_address,
        ready,
        draining,
        handover,
        // inventory:
        inventory,
        signals,
        fleet: fleet_slot, // fleet:
    })
}

// fleet:
/// With `[fleet]`, reads and applies the fleet's operator state and starts the fleet watcher;
/// the gauges are registered either way so alerts can tell "no fleet" from "fleet down".
async fn start_fleet(
    config: &Path,
    reloader: &Arc<Reloader>,
    metrics: &Metrics,
    admin: Option<SocketAddr>,
    slot: &control::fleet::Slot,
) -> Result<(), StartError> {
    let gauges = crate::fleet::metrics::FleetMetrics::register(metrics.registry())
        .expect("fleet metric definitions are valid");
    let source = crate::config::Source::read(config)?;
    let Some(cfg) = source.parse()?.fleet.map(toml::Spanned::into_inner) else {
        return Ok(());
    };
    let runtime = control::fleet::FleetRuntime::start(
        Arc::clone(reloader),
        &cfg,
        &source.base_dir(),
        admin,
        gauges,
    )
    .await
    .map_err(|e| StartError::Fleet {
        config: config.to_path_buf(),
        source: Box::new(e),
    })?;
    let _ = slot.set(runtime);
    Ok(())
}

/// What binding the data-plane listeners produced.
struct BoundListeners {
    listeners: Vec<Bound>,
    addresses: Vec<SocketAddr>,
    kept: Vec<(String, std::net::TcpListener)>,
    tls: Vec<(usize, Arc<TlsListener>)>,
}

/// Binds (or takes from `inherited`) every data-plane listener, keeping a duplicate of each
/// socket for a handover; HTTPS listeners load their certificates, and a `redirect_http` port
/// gets its own plain listener.
fn bind_listeners(
    config: &Path,
    snap: &crate::state::Snapshot,
    inherited: &mut Inherited,
    tls_metrics: &TlsMetrics,
) -> Result<BoundListeners, StartError> {
    let mut out = BoundListeners {
        listeners: Vec::new(),
        addresses: Vec::new(),
        kept: Vec::new(),
        tls: Vec::new(),
    };
    let base_dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut bind =
        |name: String, address: SocketAddr, kept: &mut Vec<(String, std::net::TcpListener)>| {
            let bind_err = |source| StartError::Bind {
                address,
                config: config.to_path_buf(),
                source,
            };
            let std_listener = match inherited.take(&name, address) {
                Some(s) => s,
                None => server::bind_std(address).map_err(bind_err)?,
            };
            kept.push((name, std_listener.try_clone().map_err(bind_err)?));
            server::listen(std_listener).map_err(bind_err)
        };
    for (index, l) in snap.listeners.iter().enumerate() {
        let listener = bind(l.name.clone(), l.address, &mut out.kept)?;
        let local = listener.local_addr().unwrap_or(l.address);
        out.addresses.push(local);
        let kind = match &l.tls {
            None => ListenerKind::Plain,
            Some(cfg) => {
                let tls = Arc::new(TlsListener::load(cfg, base_dir).map_err(|source| {
                    StartError::Tls {
                        config: config.to_path_buf(),
                        source,
                    }
                })?);
                tls_metrics.set_expiries(&tls.expiries());
                out.tls.push((index, Arc::clone(&tls)));
                if let Some(plain) = cfg.redirect_http {
                    let redirect = bind(format!("{}-redirect", l.name), plain, &mut out.kept)?;
                    out.listeners.push(Bound {
                        listener: redirect,
                        index,
                        kind: ListenerKind::RedirectToHttps {
                            https_port: local.port(),
                        },
                    });
                }
                ListenerKind::Tls(tls, tls_metrics.clone())
            }
        };
        out.listeners.push(Bound {
            listener,
            index,
            kind,
        });
    }
    Ok(out)
}

/// Binds (or takes from `inherited`) the admin listener, keeping a duplicate for a handover.
fn bind_admin(
    config: &Path,
    addr: SocketAddr,
    inherited: &mut Inherited,
    kept: &mut Vec<(String, std::net::TcpListener)>,
) -> Result<tokio::net::TcpListener, StartError> {
    let err = |source| StartError::Admin {
        config: config.to_path_buf(),
        source: admin::AdminError::Bind { addr, source },
    };
    let std_listener = match inherited.take(handover::ADMIN_NAME, addr) {
        Some(s) => s,
        None => std::net::TcpListener::bind(addr).map_err(err)?,
    };
    kept.push((
        handover::ADMIN_NAME.to_string(),
        std_listener.try_clone().map_err(err)?,
    ));
    std_listener.set_nonblocking(true).map_err(err)?;
    tokio::net::TcpListener::from_std(std_listener).map_err(err)
}

// shadow:
fn register_shadow_metrics(metrics: &Metrics, state: &crate::state::SharedSnapshot) {
    let state = Arc::clone(state);
    crate::metrics::shadow::ShadowMetrics::register(metrics.registry(), move || {
        let snap = state.load();
        crate::metrics::shadow::ShadowTotals {
            shadow: snap.shadow.as_ref().map(|p| p.shadow.counters()),
            fallback: snap.fallback.as_ref().map(|f| f.counters.snapshot()),
        }
    })
    .expect("shadow metric definitions are valid");
}

// pool:
fn register_pool_metrics(metrics: &Metrics, state: &crate::state::SharedSnapshot) {
    let state = Arc::clone(state);
    crate::metrics::pool::PoolMetrics::register(metrics.registry(), move || {
        let snap = state.load();
        let pooled = snap.storefronts.iter();
        pooled
            .filter_map(|s| Some((s.name.clone(), s.upstream.pool()?.counts())))
            .collect()
    })
    .expect("pool metric definitions are valid");
}

/// Read-only routes beyond metrics and health: what a migration team needs in week one.
fn admin_routes(proxy: &Arc<Proxy>) -> Router {
    let json = Arc::clone(proxy.missed());
    let csv = Arc::clone(proxy.missed());
    Router::new()
        .get("/redirects/missed", move |_| {
            let body = json.to_json();
            async move { admin::body_with_type(StatusCode::OK, "application/json", body) }
        })
        .get("/redirects/missed.csv", move |_| {
            let body = csv.to_csv();
            async move { admin::body_with_type(StatusCode::OK, "text/csv; charset=utf-8", body) }
        })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl App {
    /// Stops accepting and drains; `/readyz` turns false first so load balancers stop sending.
    /// With `limits.drain_delay`, listeners keep accepting that long after readiness turns off
    /// (the time a load balancer needs to notice), then close.
    pub async fn drain(self) -> bool {
        // Connections learn of the drain before `/readyz` says so: whoever sees readiness off
        // (a load balancer, a test) must already get `Connection: close` answers.
        self.server.start_draining();
        self.draining.store(true, Ordering::Release);
        self.ready.store(false, Ordering::Release);
        // After a handover the successor is the service: STOPPING=1 from this process would tell
        // systemd (Type=notify, NotifyAccess=all) that the whole unit is going down.
        if !self.handover.handed_over() {
            handover::notify_stopping();
        }
        // fleet: hand the leadership over now rather than after the lease TTL.
        if let Some(fleet) = self.fleet.get() {
            fleet.leave().await;
        }
        let delay = self.proxy.state().load().limits.drain_delay;
        if !delay.is_zero() && !self.handover.handed_over() {
            tracing::info!(
                delay_secs = delay.as_secs_f64(),
                "readiness off; accepting until the drain delay is over"
            );
            tokio::time::sleep(delay).await;
        }
        // Our duplicates would keep the listening sockets open (a successor has its own).
        self.handover.release();
        let clean = self.server.drain().await;
        // The last requests' access log lines may still wait for the writer's next batch.
        let log = self.proxy.state().load().access_log.clone();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), log.flush()).await;
        // inventory: the final save, once no request can count any more.
        if let Some(inv) = &self.inventory {
            inv.drain().await;
        }
        clean
    }

    /// Serves until SIGTERM/SIGINT (or until a successor took over after `POST /admin/upgrade`
    /// or SIGUSR2), then drains. A second SIGTERM/SIGINT during the drain cuts it short.
    pub async fn run_until_signal(mut self) -> bool {
        let handover = Arc::clone(&self.handover);
        let mut signals = self.signals.take();
        tokio::select! {
            _ = next_signal(&mut signals) => {}
            _ = handover.wait_handed_over() => {}
        }
        tokio::select! {
            clean = self.drain() => clean,
            _ = next_signal(&mut signals) => {
                tracing::warn!("second signal: not waiting for the drain");
                false
            }
        }
    }

    /// Tells a parent process or systemd that this process serves (after an upgrade, the
    /// parent then drains).
    pub fn notify_ready(&self) {
        handover::notify_ready();
    }
}

async fn next_signal(signals: &mut Option<ShutdownSignals>) {
    match signals {
        Some(s) => s.recv().await,
        None => shutdown_signal().await,
    }
}

/// SIGUSR2 starts an upgrade, like nginx's binary upgrade.
fn spawn_upgrade_on_sigusr2(handover: &Arc<Handover>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handover = Arc::clone(handover);
        tokio::spawn(async move {
            let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
                return;
            };
            while usr2.recv().await.is_some() {
                tracing::info!("SIGUSR2: upgrading");
                let _ = handover.upgrade().await;
            }
        });
    }
}
