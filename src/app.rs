//! Wiring for a running proxy: load the config, bind, serve, reload, drain. Shared by `serve`,
//! `demo` and the end-to-end tests so they all run the same thing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{load_file, ConfigError};
use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::server::{self, Server};

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
}

/// Loads `config`, binds its listeners and starts serving; watchers for reload start too.
pub async fn start(config: &Path) -> Result<App, StartError> {
    // SIGHUP's default action ends the process. tokio's handler, once installed, stays for the
    // life of the process, so from here on a SIGHUP during startup (systemd `reload` right after
    // `start`) is harmless; the reloader's own registration below acts on later ones.
    #[cfg(unix)]
    let _startup_hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let path = config.to_path_buf();
    let (_, snap) = tokio::task::spawn_blocking(move || load_file(&path, 1, None))
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
    tracing::info!(
        generation = snap.generation,
        listeners = ?addresses,
        storefronts = ?snap.storefronts.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        share_bp = snap.split.share_bp,
        "cutover started"
    );
    if snap.cohort.default_key {
        tracing::warn!("cohort.key is not set: cookies are signed with a public default key");
    }
    let state = Arc::new(ArcSwap::from_pointee(snap));
    let proxy = Proxy::new(Arc::clone(&state));
    let reloader = Reloader::new(config.to_path_buf(), state);
    reloader.spawn_watchers();
    let server = Server::start(Arc::clone(&proxy), listeners);
    Ok(App {
        proxy,
        reloader,
        server,
        addresses,
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
    /// Serves until SIGTERM/SIGINT, then drains.
    pub async fn run_until_signal(self) -> bool {
        shutdown_signal().await;
        self.server.drain().await
    }
}
