//! Wiring for a running proxy: load the config, bind, serve, reload, drain. Shared by `serve`,
//! `demo` and the end-to-end tests so they all run the same thing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::admin::{self, AdminState, Router};
use crate::config::{load_file, ConfigError};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::reload::{self, Reloader};
use crate::server::{self, Server};
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
    /// The admin listener could not be bound.
    #[error("starting the admin listener (from {}): {source}", config.display())]
    Admin {
        /// The config file that names it.
        config: PathBuf,
        /// What went wrong.
        source: admin::AdminError,
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
}

/// Loads `config`, binds its listeners and starts serving; watchers for reload start too.
pub async fn start(config: &Path) -> Result<App, StartError> {
    let metrics = Metrics::new();
    let path = config.to_path_buf();
    let m = Arc::clone(&metrics);
    let (_, snap) = tokio::task::spawn_blocking(move || load_file(&path, 1, None, &m))
        .await
        .expect("config loading does not panic")?;
    let mut listeners = Vec::new();
    let mut addresses = Vec::new();
    for l in &snap.listeners {
        let bound = server::bind(l.address).map_err(|source| StartError::Bind {
            address: l.address,
            config: config.to_path_buf(),
            source,
        })?;
        addresses.push(bound.local_addr().unwrap_or(l.address));
        listeners.push(bound);
    }
    let admin_at = snap.admin;
    metrics.set_build_info(env!("CARGO_PKG_VERSION"));
    reload::publish(&metrics, &snap);
    let state = Arc::new(ArcSwap::from_pointee(snap));
    let proxy = Proxy::new(Arc::clone(&state), Arc::clone(&metrics));
    let ready = Arc::new(AtomicBool::new(false));
    let admin_address = match admin_at {
        None => None,
        Some(addr) => {
            let listener = admin::bind(addr)
                .await
                .map_err(|source| StartError::Admin {
                    config: config.to_path_buf(),
                    source,
                })?;
            let bound = listener.local_addr().ok();
            let state = AdminState::new(Arc::clone(&metrics), Arc::clone(&ready))
                .with_routes(admin_routes(&proxy));
            tokio::spawn(admin::serve(listener, state, std::future::pending()));
            bound
        }
    };
    {
        let snap = state.load();
        tracing::info!(
            generation = snap.generation,
            listeners = ?addresses,
            admin = ?admin_address,
            storefronts = ?snap.storefronts.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            share_bp = snap.split.share_bp,
            "cutover started"
        );
        if snap.cohort.default_key {
            tracing::warn!("cohort.key is not set: cookies are signed with a public default key");
        }
    }
    let reloader = Reloader::new(config.to_path_buf(), state, metrics);
    reloader.spawn_watchers();
    let server = Server::start(Arc::clone(&proxy), listeners);
    ready.store(true, Ordering::Release);
    Ok(App {
        proxy,
        reloader,
        server,
        addresses,
        admin_address,
        ready,
    })
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
    pub async fn drain(self) -> bool {
        self.ready.store(false, Ordering::Release);
        let clean = self.server.drain().await;
        // The last requests' access log lines may still wait for the writer's next batch.
        let log = self.proxy.state().load().access_log.clone();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), log.flush()).await;
        clean
    }

    /// Serves until SIGTERM/SIGINT, then drains.
    pub async fn run_until_signal(self) -> bool {
        shutdown_signal().await;
        self.drain().await
    }
}
