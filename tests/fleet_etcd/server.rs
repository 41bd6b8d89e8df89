//! A throwaway etcd server for the fleet tests: Debian's `etcd` binary on free 127.0.0.1
//! ports with a temp data dir, stoppable and restartable on the same ports and data.
//!
//! Readiness is polled on `/health` with a deadline, never waited for with a fixed sleep. When
//! the binary is missing the tests skip with a message, except under `CI=true`, where a missing
//! etcd is a broken CI setup and fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// The suite provides `ports` at its root: `support::ports`, or the file by path without support.
use crate::ports::free_port;

/// Certificate and key for an HTTPS client port.
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct EtcdServer {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<ServerTls>,
    child: Option<Child>,
}

fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// Attempts at a first start, each on new ports, when etcd finds a port taken.
const START_ATTEMPTS: usize = 5;

impl EtcdServer {
    /// A plain-HTTP etcd, healthy; `None` (test skipped) when etcd is not installed outside CI.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// An etcd whose client port speaks HTTPS with `tls`.
    pub fn start_with(tls: Option<ServerTls>) -> Option<Self> {
        if etcd_binary().is_none() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("the etcd binary is not installed: apt-get install -y etcd-server");
            }
            eprintln!("SKIPPED: etcd is not installed (apt-get install -y etcd-server)");
            return None;
        }
        let mut server = EtcdServer {
            dir: tempfile::tempdir().unwrap(),
            client_port: 0,
            peer_port: 0,
            tls,
            child: None,
        };
        for attempt in 1..=START_ATTEMPTS {
            server.client_port = free_port();
            server.peer_port = loop {
                let port = free_port();
                if port != server.client_port {
                    break port;
                }
            };
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(log) if attempt < START_ATTEMPTS && log.contains("address already in use") => {
                    eprintln!("etcd found a port taken (attempt {attempt}); new ports");
                    // A fresh log and data dir for the next attempt.
                    server.dir = tempfile::tempdir().unwrap();
                }
                Err(log) => panic!("etcd did not start: {log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Starts the process; `Err` carries the log when it exits before it is healthy.
    fn spawn(&mut self) -> Result<(), String> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .unwrap();
        let mut cmd = Command::new(etcd_binary().unwrap());
        cmd.arg("--name=t")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=t={peer}"))
            // Fast elections for a one-member test cluster (also lowers the minimum lease TTL).
            .arg("--heartbeat-interval=20")
            .arg("--election-timeout=200")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cert-file={}", tls.cert.display()))
                .arg(format!("--key-file={}", tls.key.display()));
        }
        self.child = Some(cmd.spawn().expect("start etcd"));
        if self.tls.is_none() {
            self.wait_healthy(Duration::from_secs(20))?;
        }
        Ok(())
    }

    /// Polls `GET /health` until it says `"health":"true"`; `Err` with the log when etcd exits
    /// first, a panic with the log at the deadline.
    fn wait_healthy(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("etcd exited with {status}: {}", self.log()));
            }
            if self.health().unwrap_or(false) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20)); // poll interval, not synchronisation
        }
        panic!("etcd not healthy within {within:?}: {}", self.log());
    }

    fn health(&self) -> std::io::Result<bool> {
        let mut s = TcpStream::connect(("127.0.0.1", self.client_port))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer.contains("\"health\":\"true\""))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Kills the process (like a crash) and waits for it to exit; data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn() {
            panic!("etcd did not start again on its ports: {log}");
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for `cond` with a deadline, polling; panics with `what` when it never holds.
pub async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
