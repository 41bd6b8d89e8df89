//! Temp configs and the proxy under test, in-process (`cutover::app::start`) or as the built
//! binary (`cutover serve`), which the memory and multi-process tests need.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use super::{KEY, WAIT};

/// A config to render: storefronts plus extra lines for each section.
#[derive(Clone, Debug)]
pub struct ConfigSpec {
    /// `(name, upstream URL, extra lines inside [storefront.NAME])`.
    pub stores: Vec<(String, String, String)>,
    /// `new_share` in percent.
    pub share: f64,
    /// Lines inside `[cohort]` (the key is always set).
    pub cohort: String,
    /// Lines inside `[limits]`.
    pub limits: String,
    /// Lines inside `[override]`.
    pub overrides: String,
    /// Lines inside `[headers]` (the storefront response header is on unless overridden here).
    pub headers: String,
    /// Appended verbatim at the end (routes).
    pub tail: String,
}

impl ConfigSpec {
    /// `old` and `new` at the given upstreams, `share` percent on `new`.
    pub fn new(old: &str, new: &str, share: f64) -> Self {
        ConfigSpec {
            stores: vec![
                ("old".into(), old.into(), String::new()),
                ("new".into(), new.into(), String::new()),
            ],
            share,
            cohort: String::new(),
            limits: String::new(),
            overrides: String::new(),
            headers: String::new(),
            tail: String::new(),
        }
    }

    /// Extra lines for one storefront's table.
    pub fn store_extra(mut self, name: &str, lines: &str) -> Self {
        let s = self
            .stores
            .iter_mut()
            .find(|s| s.0 == name)
            .unwrap_or_else(|| panic!("no storefront {name} in spec"));
        s.2.push_str(lines);
        s.2.push('\n');
        self
    }

    /// Sets the share (percent).
    pub fn share(mut self, share: f64) -> Self {
        self.share = share;
        self
    }

    /// Extra `[cohort]` lines.
    pub fn cohort(mut self, lines: &str) -> Self {
        self.cohort.push_str(lines);
        self.cohort.push('\n');
        self
    }

    /// Extra `[limits]` lines.
    pub fn limits(mut self, lines: &str) -> Self {
        self.limits.push_str(lines);
        self.limits.push('\n');
        self
    }

    /// Extra `[override]` lines.
    pub fn overrides(mut self, lines: &str) -> Self {
        self.overrides.push_str(lines);
        self.overrides.push('\n');
        self
    }

    /// Extra `[headers]` lines.
    pub fn headers(mut self, lines: &str) -> Self {
        self.headers.push_str(lines);
        self.headers.push('\n');
        self
    }

    /// Appends raw TOML (routes) at the end.
    pub fn tail(mut self, toml: &str) -> Self {
        self.tail.push_str(toml);
        self.tail.push('\n');
        self
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut s = String::from(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[admin]\naddress = \"off\"\n\n",
        );
        for (name, url, extra) in &self.stores {
            s.push_str(&format!(
                "[storefront.{name}]\nupstream = \"{url}\"\n{extra}\n"
            ));
        }
        s.push_str(&format!("[split]\nnew_share = {}\n\n", self.share));
        s.push_str(&format!("[cohort]\nkey = \"{KEY}\"\n{}\n", self.cohort));
        s.push_str(&format!("[limits]\n{}\n", self.limits));
        s.push_str(&format!("[override]\n{}\n", self.overrides));
        let headers = if self.headers.contains("storefront_response_header") {
            self.headers.clone()
        } else {
            format!("storefront_response_header = true\n{}", self.headers)
        };
        s.push_str(&format!("[headers]\n{headers}\n"));
        s.push_str(&self.tail);
        s
    }
}

/// A config file in its own temp directory.
pub struct TempConfig {
    dir: TempDir,
    path: PathBuf,
}

impl TempConfig {
    /// Writes `text` to a fresh `cutover.toml`.
    pub fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cutover.toml");
        std::fs::write(&path, text).expect("writing config");
        TempConfig { dir, path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory (for CA files and other companions).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the file atomically (write + rename), so a watcher never reads half a file.
    pub fn rewrite(&self, text: &str) {
        let tmp = self.dir.path().join(".cutover.toml.tmp");
        std::fs::write(&tmp, text).expect("writing config");
        std::fs::rename(&tmp, &self.path).expect("renaming config");
    }
}

/// The proxy running inside the test process.
pub struct InProc {
    /// The started app.
    pub app: cutover::app::App,
    /// Its first listener.
    pub addr: SocketAddr,
    /// Its config file.
    pub config: TempConfig,
}

impl InProc {
    /// Writes `spec` and starts the proxy on it.
    pub async fn start(spec: &ConfigSpec) -> Self {
        Self::start_text(&spec.render()).await
    }

    /// Starts the proxy on a literal config.
    pub async fn start_text(text: &str) -> Self {
        let config = TempConfig::new(text);
        let app = tokio::time::timeout(WAIT, cutover::app::start(config.path()))
            .await
            .expect("proxy start timed out")
            .unwrap_or_else(|e| panic!("proxy did not start: {e}\n{text}"));
        let addr = app.addresses[0];
        InProc { app, addr, config }
    }

    /// Rewrites the config and reloads it now (the same path SIGHUP and the file watcher take).
    pub async fn reload(&self, spec: &ConfigSpec) {
        self.config.rewrite(&spec.render());
        tokio::time::timeout(WAIT, self.app.reloader.reload("test"))
            .await
            .expect("reload timed out")
            .unwrap_or_else(|e| panic!("reload rejected: {e}"));
    }
}

/// The `cutover serve` binary as a child process, killed on drop.
pub struct ProcProxy {
    child: Child,
    /// Its first listener.
    pub addr: SocketAddr,
    /// Its config file.
    pub config: TempConfig,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Drop for ProcProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of the built binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_cutover")
}

impl ProcProxy {
    /// Writes `spec`, runs `cutover serve` on it and waits for its "started" log line, which
    /// names the bound addresses (the config asks for port 0).
    pub async fn start(spec: &ConfigSpec) -> Self {
        let config = TempConfig::new(&spec.render());
        let mut child = Command::new(binary())
            .args(["--log", "info", "--log-format", "json", "serve", "--config"])
            .arg(config.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning cutover");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line }));
                sink.lock().unwrap().push(v);
            }
        });
        let mut me = ProcProxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            config,
            log,
        };
        let started = me
            .wait_log(|v| v["message"] == "cutover started")
            .await
            .unwrap_or_else(|| panic!("cutover did not start; log: {:?}", me.log_lines()));
        let listeners = started["listeners"]
            .as_str()
            .expect("listeners field is a string");
        let first = listeners
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .next()
            .expect("one listener")
            .trim();
        me.addr = first.parse().expect("listener address");
        me
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// All log lines so far.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) for a log line matching `pred`, also among lines already seen, and
    /// returns it. `None` when the process exits or the bound passes.
    pub async fn wait_log(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(v) = self.log.lock().unwrap().iter().find(|v| pred(v)) {
                return Some(v.clone());
            }
            if matches!(self.child.try_wait(), Ok(Some(_)))
                || tokio::time::Instant::now() > deadline
            {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rewrites the config, sends SIGHUP and waits until a reload with `share_bp` is applied.
    pub async fn reload_with_sighup(&mut self, spec: &ConfigSpec, share_bp: u64) {
        self.log.lock().unwrap().clear();
        self.config.rewrite(&spec.render());
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -HUP failed");
        let applied = self
            .wait_log(|v| {
                v["message"] == "configuration applied" && v["share_bp"].as_u64() == Some(share_bp)
            })
            .await;
        assert!(
            applied.is_some(),
            "reload to {share_bp} bp not applied; log: {:?}",
            self.log_lines()
        );
    }

    /// `(VmHWM, VmRSS)` of the proxy in KiB, from `/proc/<pid>/status`.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading /proc/<pid>/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in /proc status"))
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

/// Runs `cutover check --config <file>`; returns (exit success, stdout, stderr).
pub fn run_check(config: &Path) -> (bool, String, String) {
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("running cutover check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
