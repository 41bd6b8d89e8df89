//! The built `cutover` binary as a child process: start it, learn its ports from its JSON
//! "cutover started" log line (configs ask for port 0), signal it, read its log, stop it.
//! Signals, exits, handovers and memory are process behaviour, which in-process tests cannot see.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::dir::TempConfig;
use super::proxy::ConfigSpec;
use super::wait::SLOW_WAIT;

/// The path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_cutover")
}

/// One `cutover started` log line.
#[derive(Debug, Clone)]
pub struct Started {
    /// Its pid.
    pub pid: u32,
    /// Data-plane addresses.
    pub listeners: Vec<SocketAddr>,
    /// Admin address; `None` when the config turns the admin listener off.
    pub admin: Option<SocketAddr>,
}

/// Parses a `cutover started` line (JSON logs): listeners are `a,b`, admin is an address or
/// `off`.
fn parse_started(line: &str) -> Option<Started> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != "cutover started" {
        return None;
    }
    let admin = v.get("admin")?.as_str()?;
    Some(Started {
        pid: v.get("pid")?.as_u64()? as u32,
        listeners: v
            .get("listeners")?
            .as_str()?
            .split(',')
            .filter_map(|a| a.trim().parse().ok())
            .collect(),
        admin: if admin == "off" {
            None
        } else {
            Some(admin.parse().ok()?)
        },
    })
}

/// `cutover serve` as a child process with its JSON log captured; it and every successor it
/// hands over to are killed on drop.
pub struct ProxyProcess {
    /// The child (the first process; a successor is not our child).
    pub child: Child,
    /// Every process started by this test (first and successors), killed on drop.
    pub pids: Arc<Mutex<Vec<u32>>>,
    /// Log lines from stderr (of the first process and its successors).
    pub logs: Arc<Mutex<Vec<String>>>,
    started: Arc<Mutex<Vec<Started>>>,
    /// Data-plane address of the first process.
    pub addr: SocketAddr,
    /// Admin address of the first process (`0.0.0.0:0`, which nothing answers, when off).
    pub admin: SocketAddr,
    /// Its pid.
    pub pid: u32,
    /// The config it was started on, when [`ProxyProcess::start_spec`] wrote it.
    pub config: Option<TempConfig>,
}

impl ProxyProcess {
    /// Starts `cutover serve --config config` and waits (bounded) until it serves.
    pub fn spawn(config: &Path) -> ProxyProcess {
        Self::spawn_with(config, &[], SLOW_WAIT)
    }

    /// Writes `spec` to a temp config and starts the binary on it.
    pub fn start_spec(spec: &ConfigSpec) -> ProxyProcess {
        let config = TempConfig::new(&spec.render());
        let mut p = Self::spawn(config.path());
        p.config = Some(config);
        p
    }

    /// [`ProxyProcess::spawn`] with extra environment variables and its own start bound (large
    /// redirect tables load slowly in a debug build).
    pub fn spawn_with(config: &Path, env: &[(&str, &str)], limit: Duration) -> ProxyProcess {
        let mut cmd = Command::new(binary());
        cmd.args(["--log-format", "json", "--log", "info", "serve", "--config"])
            .arg(config)
            .env_remove("CUTOVER_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning cutover");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Mutex::new(Vec::new()));
        let pids = Arc::new(Mutex::new(vec![child.id()]));
        {
            let logs = logs.clone();
            let started = started.clone();
            // Keeps draining stderr for the process's whole life so it never blocks on a pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(s) = parse_started(&line) {
                        started.lock().unwrap().push(s);
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let pid = child.id();
        let deadline = Instant::now() + limit;
        let first = loop {
            if let Some(s) = started
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.pid == pid)
                .cloned()
            {
                break s;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "cutover exited before serving ({status}):\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "cutover did not start within {limit:?}:\n{}",
                logs.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        ProxyProcess {
            child,
            pids,
            logs,
            started,
            addr: first.listeners[0],
            admin: first
                .admin
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            pid,
            config: None,
        }
    }

    /// The `cutover started` line of process `pid`, waiting for it (bounded).
    pub async fn started(&self, pid: u32, timeout: Duration) -> Started {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self
                .started
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.pid == pid)
                .cloned()
            {
                return s;
            }
            assert!(Instant::now() < deadline, "pid {pid} never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Records a successor so it is killed with this test.
    pub fn adopt(&self, pid: u32) {
        self.pids.lock().unwrap().push(pid);
    }

    /// Log lines so far.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Log lines so far, parsed (a line that is not JSON becomes `{"message": line}`).
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|_| serde_json::json!({ "message": l }))
            })
            .collect()
    }

    /// Waits (bounded) for a log line matching `pred`, also among lines already seen, and
    /// returns it. `None` when the process exits or the bound passes.
    pub async fn wait_log(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + super::WAIT;
        loop {
            if let Some(v) = self.log_lines().into_iter().find(|v| pred(v)) {
                return Some(v);
            }
            if matches!(self.child.try_wait(), Ok(Some(_)))
                || tokio::time::Instant::now() > deadline
            {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `sig` (`HUP`, `TERM`...) to the first process; fails the test when kill(1) fails.
    pub fn signal(&self, sig: &str) {
        assert!(signal(self.pid, sig), "kill -{sig} {}", self.pid);
    }

    /// Rewrites the config, sends SIGHUP and waits until a reload with `share_bp` is applied.
    pub async fn reload_with_sighup(&mut self, spec: &ConfigSpec, share_bp: u64) {
        self.logs.lock().unwrap().clear();
        self.config
            .as_ref()
            .expect("started from a spec")
            .rewrite(&spec.render());
        self.signal("HUP");
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

    /// Waits (bounded) for the first process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, then a bounded wait for a clean exit.
    pub async fn stop(mut self) {
        self.signal("TERM");
        let status = self
            .wait_exit(SLOW_WAIT)
            .await
            .unwrap_or_else(|| panic!("cutover did not exit on SIGTERM"));
        assert!(status.success(), "cutover exited with {status}");
    }

    /// `(VmHWM, VmRSS)` of the proxy in KiB, from `/proc/<pid>/status`.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
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

    /// User + system CPU seconds the process has used (Linux), a figure that does not depend on
    /// what else runs on the machine.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        for pid in self.pids.lock().unwrap().iter() {
            signal(*pid, "KILL");
        }
        let _ = self.child.wait();
    }
}

/// Sends a signal (`TERM`, `HUP`, `KILL`...) with kill(1); whether kill succeeded (it fails for
/// a process that is already gone, which cleanup must tolerate).
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether a process exists (a zombie does not count).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// `cutover ARGS` as every test runs the CLI: no config or admin address from the environment (a
/// command must find the proxy through its own arguments), no `NO_COLOR` (output to a pipe must be
/// plain by itself), stdin closed.
fn cutover_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_remove("CUTOVER_CONFIG")
        .env_remove("CUTOVER_ADMIN")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// (exit code, stdout, stderr) of a finished CLI run.
fn outcome(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cutover check --config <config>` (bounded); returns (exit code, stdout, stderr).
pub fn check(config: &Path) -> (i32, String, String) {
    let config = config.to_str().expect("a UTF-8 config path");
    cli(Path::new("."), &["check", "--config", config])
}

// shoppers: the CLI against a running proxy's admin listener (status, shift, evacuate).
/// Runs `cutover <args>` ([`cutover_command`]), bounded by [`SLOW_WAIT`]: (success, stdout,
/// stderr).
pub async fn run_cli(args: &[&str]) -> (bool, String, String) {
    run_cli_env(args, &[]).await
}

/// [`run_cli`] with variables set in the command's environment (`CUTOVER_CONFIG`, `NO_COLOR`,
/// `CUTOVER_TOKEN_FILE`: what an operator's shell may carry).
pub async fn run_cli_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::from(cutover_command(args));
    cmd.envs(env.iter().copied()).kill_on_drop(true);
    let out = tokio::time::timeout(SLOW_WAIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("cutover {args:?} did not finish within {SLOW_WAIT:?}"))
        .expect("running cutover");
    let (code, out, err) = outcome(out);
    (code == 0, out, err)
}

/// Runs the CLI ([`cutover_command`], bounded, blocking) from `dir`. Returns (exit code, stdout,
/// stderr).
pub fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = cutover_command(args)
        .current_dir(dir)
        .spawn()
        .expect("spawning the CLI");
    let deadline = Instant::now() + SLOW_WAIT;
    while child.try_wait().expect("waiting for the CLI").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cutover {args:?} did not finish within {SLOW_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    outcome(child.wait_with_output().expect("CLI output"))
}
