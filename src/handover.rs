//! Zero-downtime restart and upgrade: the listening sockets themselves go to the new process.
//!
//! Closing a plain `SO_REUSEPORT` listener resets the connections the kernel had already queued
//! on it, so a second process binding next to the first is not enough. Instead the running
//! process starts its successor with the *same* listening sockets (the same kernel objects): both
//! accept from one queue while the new one starts, then the old one stops accepting and drains.
//! No queued connection is ever dropped, because the socket never closes.
//!
//! The protocol is systemd's socket activation (`LISTEN_FDS`, `LISTEN_FDNAMES`), so the same code
//! accepts sockets from a systemd `.socket` unit. How, without `unsafe` in this crate:
//! - parent: the sockets' close-on-exec flag is cleared (socket2's safe `set_cloexec`), so a
//!   plain `std::process::Command` spawn inherits them under their current numbers. Those are not
//!   3, 4, 5... as systemd would give them, so `LISTEN_FDS_FIRST_FD` and `LISTEN_FDS` describe the
//!   range that holds them and `LISTEN_FDNAMES` names each (empty for numbers in the range that
//!   are not ours);
//! - child: the `listenfd` crate turns the numbers into listeners (it checks each is a TCP socket;
//!   its `unsafe` is its own), and sockets are matched to the config by name, then by address;
//! - readiness: the child's stdin is one end of a Unix socket pair; once it serves, it writes
//!   `ready <pid>` there. Only then does the parent stop accepting and drain. A child that fails
//!   (bad config, crash) closes the pair: the parent keeps serving as if nothing happened.
//!
//! Under systemd the new process also reports `MAINPID=` and `READY=1` on `$NOTIFY_SOCKET`
//! (`Type=notify`, `NotifyAccess=all`), so the service follows the upgrade.
//!
//! Layer: server. May import its own layer and request, config, snapshot, observe, clients, domain,
//! policy, wire; never edge, control.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use tokio::sync::Notify;

/// Set in the child's environment: write `ready <pid>` to stdin (a socket) once serving.
pub const NOTIFY_ENV: &str = "CUTOVER_UPGRADE_NOTIFY";
/// The name of the admin listener's socket in `LISTEN_FDNAMES`.
pub const ADMIN_NAME: &str = "admin";

/// Listening sockets received from a parent process or from systemd.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<(String, TcpListener)>,
}

/// Why inherited sockets could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    /// A passed descriptor is not a listening TCP socket.
    #[error("inherited file descriptor #{index} ({name}): {source}")]
    Socket {
        /// Position in `LISTEN_FDS`.
        index: usize,
        /// Its `LISTEN_FDNAMES` entry.
        name: String,
        /// What was wrong.
        source: std::io::Error,
    },
}

impl Inherited {
    /// No inherited sockets: everything is bound fresh.
    pub fn none() -> Self {
        Inherited::default()
    }

    /// Takes the sockets described by `LISTEN_FDS` (systemd, or a `cutover` upgrading itself)
    /// and clears those variables so they do not leak into processes started later. Call it
    /// before any other thread starts: it changes the environment.
    pub fn from_env() -> Result<Self, InheritError> {
        if std::env::var_os("LISTEN_FDS").is_none() {
            return Ok(Inherited::none());
        }
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .map(|n| n.split(':').map(str::to_string).collect())
            .unwrap_or_default();
        let mut fds = listenfd::ListenFd::from_env();
        std::env::remove_var("LISTEN_FDNAMES");
        std::env::remove_var("LISTEN_FDS_FIRST_FD");
        let mut sockets = Vec::new();
        for index in 0..fds.len() {
            let name = names.get(index).cloned().unwrap_or_default();
            if names.len() == fds.len() && name.is_empty() {
                // A number inside the range that the parent did not pass.
                continue;
            }
            match fds.take_tcp_listener(index) {
                Ok(Some(l)) => sockets.push((name, l)),
                Ok(None) => {}
                Err(source) => {
                    return Err(InheritError::Socket {
                        index,
                        name,
                        source,
                    })
                }
            }
        }
        for (name, l) in &sockets {
            tracing::info!(name, address = ?l.local_addr().ok(), "inherited listening socket");
        }
        Ok(Inherited { sockets })
    }

    /// How many sockets are left.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether none are left.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The socket for the listener called `name`, else one bound to `address` (systemd units
    /// that do not name their sockets), else `None` (bind fresh).
    pub fn take(&mut self, name: &str, address: SocketAddr) -> Option<TcpListener> {
        let i = self
            .sockets
            .iter()
            .position(|(n, _)| n == name)
            .or_else(|| {
                self.sockets
                    .iter()
                    .position(|(_, l)| l.local_addr().is_ok_and(|a| a == address))
            })?;
        Some(self.sockets.remove(i).1)
    }

    /// Logs and closes sockets the config has no listener for.
    pub fn close_unused(self) {
        for (name, l) in self.sockets {
            tracing::warn!(name, address = ?l.local_addr().ok(), "inherited socket matches no listener in the config; closing it");
        }
    }
}

/// How to start the successor: the binary path and arguments this process was started with.
#[derive(Debug, Clone)]
pub struct UpgradeCommand {
    /// The binary; resolved at startup, so a package upgrade that replaced it starts the new one.
    pub program: PathBuf,
    /// Arguments (`serve --config ...`).
    pub args: Vec<OsString>,
    /// How long the successor may take to report ready.
    pub ready_timeout: Duration,
}

impl UpgradeCommand {
    /// This process's own command line.
    pub fn current() -> std::io::Result<Self> {
        let mut args = std::env::args_os();
        let argv0 = args.next().map(PathBuf::from);
        let program = match argv0 {
            // A bare name was found through PATH; current_exe resolves it.
            Some(p) if p.components().count() > 1 => std::fs::canonicalize(p)?,
            _ => std::env::current_exe()?,
        };
        Ok(UpgradeCommand {
            program,
            args: args.collect(),
            ready_timeout: Duration::from_secs(60),
        })
    }
}

/// Why an upgrade did not happen (the running process keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Upgrades need the command line of `cutover serve`.
    #[error("this process cannot start a successor (only `cutover serve` can upgrade itself)")]
    Unavailable,
    /// One is in progress or done.
    #[error("an upgrade is already in progress or done")]
    Busy,
    /// Spawning failed.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The binary.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The successor exited or never said it was ready.
    #[error("the new process (pid {pid}) did not become ready: {reason}")]
    NotReady {
        /// Its pid.
        pid: u32,
        /// What happened.
        reason: String,
    },
}

/// The sockets this process serves on, kept so they can be handed to a successor.
pub struct Handover {
    /// Duplicates of the listening sockets. They keep the sockets open, so a drain must
    /// [`Handover::release`] them or the kernel would keep queueing connections nobody accepts.
    sockets: std::sync::Mutex<Vec<(String, TcpListener)>>,
    command: Option<UpgradeCommand>,
    busy: AtomicBool,
    done: Notify,
    handed_over: AtomicBool,
}

/// A successful upgrade.
#[derive(Debug, Clone, Copy)]
pub struct Successor {
    /// The new process.
    pub pid: u32,
}

impl Handover {
    /// Keeps duplicates of `sockets` (name, listener) for a later upgrade with `command`.
    pub fn new(sockets: Vec<(String, TcpListener)>, command: Option<UpgradeCommand>) -> Arc<Self> {
        Arc::new(Handover {
            sockets: std::sync::Mutex::new(sockets),
            command,
            busy: AtomicBool::new(false),
            done: Notify::new(),
            handed_over: AtomicBool::new(false),
        })
    }

    /// Closes our duplicates of the listening sockets (draining: new connections must be
    /// refused, unless a successor holds the sockets too). Upgrades are impossible afterwards.
    pub fn release(&self) {
        let mut s = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        s.clear();
    }

    /// Whether this process can start a successor.
    pub fn available(&self) -> bool {
        self.command.is_some()
    }

    /// Whether a successor took over (this process is draining).
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }

    /// Resolves once a successor is serving: time to drain.
    pub async fn wait_handed_over(&self) {
        loop {
            let notified = self.done.notified();
            if self.handed_over() {
                return;
            }
            notified.await;
        }
    }

    /// Starts the successor with our listening sockets and waits until it serves. On success
    /// [`Handover::wait_handed_over`] resolves; on failure nothing changed.
    pub async fn upgrade(self: &Arc<Self>) -> Result<Successor, UpgradeError> {
        let command = self.command.clone().ok_or(UpgradeError::Unavailable)?;
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(UpgradeError::Busy);
        }
        let me = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || me.spawn_and_wait(&command))
            .await
            .unwrap_or_else(|e| {
                Err(UpgradeError::NotReady {
                    pid: 0,
                    reason: e.to_string(),
                })
            });
        match &result {
            Ok(s) => {
                tracing::info!(
                    new_pid = s.pid,
                    "successor is serving; draining this process"
                );
                self.handed_over.store(true, Ordering::Release);
                self.done.notify_waiters();
            }
            Err(e) => {
                tracing::error!(error = %e, "upgrade failed; this process keeps serving");
                self.busy.store(false, Ordering::Release);
            }
        }
        result
    }

    fn spawn_and_wait(&self, command: &UpgradeCommand) -> Result<Successor, UpgradeError> {
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if sockets.is_empty() {
            return Err(UpgradeError::Unavailable);
        }
        let fds: Vec<i32> = sockets.iter().map(|(_, l)| l.as_raw_fd()).collect();
        let first = fds.iter().copied().min().unwrap_or(3);
        let last = fds.iter().copied().max().unwrap_or(2);
        let names: Vec<&str> = (first..=last)
            .map(|fd| {
                sockets
                    .iter()
                    .find(|(_, l)| l.as_raw_fd() == fd)
                    .map_or("", |(n, _)| n.as_str())
            })
            .collect();
        let spawn_err = |source| UpgradeError::Spawn {
            program: command.program.display().to_string(),
            source,
        };
        let (ours, theirs) = UnixStream::pair().map_err(spawn_err)?;
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .env("LISTEN_FDS", (last - first + 1).max(0).to_string())
            .env("LISTEN_FDS_FIRST_FD", first.to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID")
            .env(NOTIFY_ENV, "1")
            .stdin(Stdio::from(OwnedFd::from(theirs)));
        // Inheritable only for the duration of the spawn.
        for (_, l) in sockets.iter() {
            SockRef::from(l).set_cloexec(false).map_err(spawn_err)?;
        }
        let spawned = cmd.spawn();
        for (_, l) in sockets.iter() {
            let _ = SockRef::from(l).set_cloexec(true);
        }
        drop(sockets);
        let mut child = spawned.map_err(spawn_err)?;
        drop(cmd);
        let pid = child.id();
        tracing::info!(pid, program = %command.program.display(), "started successor with our listening sockets");
        let not_ready = |reason: String| UpgradeError::NotReady { pid, reason };
        ours.set_read_timeout(Some(command.ready_timeout))
            .map_err(|e| not_ready(e.to_string()))?;
        let mut line = String::new();
        let read = BufReader::new(&ours).read_line(&mut line);
        match read {
            Ok(_) if line.starts_with("ready") => Ok(Successor { pid }),
            Ok(_) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(not_ready(format!("it exited ({status}); see its log")))
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(not_ready(format!(
                    "no readiness within {:?} ({e}); stopped it",
                    command.ready_timeout
                )))
            }
        }
    }
}

/// In a successor: tells the parent this process serves (it then drains), and tells systemd
/// (`READY=1`, and `MAINPID=` since the main process changes).
pub fn notify_ready() {
    if std::env::var_os(NOTIFY_ENV).is_some() {
        std::env::remove_var(NOTIFY_ENV);
        let sent = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(UnixStream::from)
            .and_then(|mut s| writeln!(s, "ready {}", std::process::id()));
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot tell the previous process that this one is ready");
        }
    }
    sd_notify(&format!("READY=1\nMAINPID={}", std::process::id()));
}

/// Tells systemd the service is stopping (drain started).
pub fn notify_stopping() {
    sd_notify("STOPPING=1");
}

/// Sends a state line to systemd's notification socket, when there is one.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        #[cfg(target_os = "linux")]
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        let _ = bytes;
        sock.send_to(state.as_bytes(), &path)?;
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}
