//! The documentation's examples, run: the README and every page of `docs/` show console sessions
//! (```` ```console ```` blocks: `$ command` lines, each followed by the output it prints) and
//! TOML snippets. `tests/readme.rs` and `tests/docs_snippets.rs` run them with this one mechanism.
//!
//! Rules the pages follow (docs/README.md says them for writers):
//! - a `console` block is run; its output must match line by line, blank lines aside. A line
//!   that is exactly `...` matches whatever follows; a line ending in `...` matches any line that
//!   starts with what comes before; cohort cookies are masked on both sides; a progress meter
//!   redrawn with `\r` counts as its last state. `sh` blocks are shown, never run.
//! - a `toml` block is a whole config checked by `cutover check`, unless the line before it is
//!   `<!-- fragment: merged into config/demo.toml -->`: then it is merged into the demo's config
//!   (tables merged key by key, arrays of tables appended) and the result is checked. The
//!   console blocks of a page run against `cutover demo` started on config/demo.toml with every
//!   fragment of that page merged in.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// One `$ command` with the output the page shows for it.
#[derive(Debug)]
pub struct Example {
    /// The command, continuation lines included.
    pub command: String,
    /// The lines shown after it (blank lines dropped).
    pub output: Vec<String>,
    /// 1-based line of the command in the page.
    pub line: usize,
}

/// Every `$ command` of the page's `console` blocks, in order.
pub fn examples(page: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut in_console = false;
    let mut current: Option<Example> = None;
    let mut continued = false;
    for (i, line) in page.lines().enumerate() {
        if line.starts_with("```console") {
            in_console = true;
            continue;
        }
        if in_console && line.starts_with("```") {
            in_console = false;
            out.extend(current.take());
            continue;
        }
        if !in_console {
            continue;
        }
        if continued {
            let ex = current.as_mut().expect("a command");
            ex.command.push('\n');
            ex.command.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(cmd) = line.strip_prefix("$ ") {
            out.extend(current.take());
            current = Some(Example {
                command: cmd.to_string(),
                output: Vec::new(),
                line: i + 1,
            });
            continued = cmd.ends_with('\\');
        } else if let Some(ex) = current.as_mut() {
            if !line.is_empty() {
                ex.output.push(line.to_string());
            }
        }
    }
    out
}

/// One ```` ```toml ```` block.
#[derive(Debug)]
pub struct Snippet {
    /// 1-based line of its first TOML line.
    pub line: usize,
    /// The TOML.
    pub text: String,
    /// Marked as a fragment of config/demo.toml.
    pub fragment: bool,
}

/// The marker a fragment carries on the line before its block.
pub const FRAGMENT: &str = "<!-- fragment: merged into config/demo.toml -->";

/// Every `toml` block of the page.
pub fn toml_snippets(page: &str) -> Vec<Snippet> {
    let lines: Vec<&str> = page.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() == "```toml" {
            let fragment = i > 0 && lines[i - 1].trim() == FRAGMENT;
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && !lines[end].starts_with("```") {
                end += 1;
            }
            out.push(Snippet {
                line: start + 1,
                text: lines[start..end].join("\n") + "\n",
                fragment,
            });
            i = end;
        }
        i += 1;
    }
    out
}

/// Merges `fragment` into `base`: tables key by key, arrays (of tables) appended, other values
/// replaced.
pub fn merge(base: &mut toml::Table, fragment: toml::Table) {
    for (k, v) in fragment {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(f)) => merge(b, f),
            (Some(toml::Value::Array(b)), toml::Value::Array(f)) => b.extend(f),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Masks what differs from run to run: the cohort cookie's bucket, pin and signature.
pub fn mask(line: &str) -> String {
    let mut s = line.to_string();
    if let Some(i) = s.find("cutover_cohort=v1.") {
        let end = s[i..].find(';').map_or(s.len(), |e| i + e);
        s.replace_range(i..end, "cutover_cohort=<cookie>");
    }
    s
}

/// Whether `got` is what the page shows (`want`), or why not.
/// A line `<line>   # or: <other line> (why)` accepts either answer.
/// A progress meter redrawn with `\r` counts as what a terminal ends up showing: the text after
/// the last `\r`.
pub fn matches(want: &[String], got: &str) -> Result<(), String> {
    let got: Vec<&str> = got
        .lines()
        .map(|l| l.rsplit('\r').next().unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect();
    for (i, w) in want.iter().enumerate() {
        if w == "..." {
            return Ok(());
        }
        let g = got.get(i).copied().unwrap_or("<missing>");
        // `<line>   # or: <other line> (why)`: output that legitimately varies between runs
        // (a fresh shopper lands on either side of the split) names both answers.
        let (w, alt) = match w.split_once("   # or: ") {
            Some((main, alt)) => (main.trim_end(), alt.split(" (").next().map(str::trim)),
            None => (w.as_str(), None),
        };
        let ok = match w.strip_suffix("...") {
            Some(prefix) => mask(g).starts_with(&mask(prefix)),
            None => mask(w) == mask(g) || alt.is_some_and(|a| mask(a) == mask(g)),
        };
        if !ok {
            return Err(format!("line {}: want {w:?}\n           got  {g:?}", i + 1));
        }
    }
    if got.len() > want.len() {
        return Err(format!("extra output: {:?}", &got[want.len()..]));
    }
    Ok(())
}

/// The repository.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command` with bash, the built binary first on PATH, in `dir`; stdout then stderr.
pub fn run(command: &str, dir: &Path) -> String {
    let bin_dir = Path::new(super::process::binary()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("CUTOVER_CONFIG")
        .env_remove("CUTOVER_ADMIN")
        .env_remove("CUTOVER_LOG")
        .output()
        .expect("bash");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// The demo listens on fixed ports (8080, 8081, 8082, 9901): one at a time per test binary.
static DEMO: Mutex<()> = Mutex::new(());

/// `cutover demo` on a copy of config/demo.toml (so the state file it writes stays out of the
/// checkout), killed on drop.
pub struct Demo {
    child: Child,
    /// Holds the config copy, its redirect plan and state file.
    pub dir: tempfile::TempDir,
    _lock: MutexGuard<'static, ()>,
}

impl Demo {
    /// Starts the demo on `config` (a demo config, e.g. config/demo.toml with fragments) and
    /// waits, bounded, until it says it is running.
    pub fn start(config: &str) -> Demo {
        let lock = DEMO.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("demo.toml"), config).unwrap();
        std::fs::copy(
            repo().join("config/redirects.csv"),
            dir.path().join("redirects.csv"),
        )
        .unwrap();
        let mut child = Command::new(super::process::binary())
            .args(["demo", "--config"])
            .arg(dir.path().join("demo.toml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cutover demo");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("cutover demo is running") {
                    let _ = tx.send(true);
                }
            }
            // The demo ended (a port in use, a bad config): say so instead of waiting.
            let _ = tx.send(false);
        });
        if rx.recv_timeout(Duration::from_secs(60)) != Ok(true) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo did not start (ports 8080-8082 and 9901 must be free)");
        }
        Demo {
            child,
            dir,
            _lock: lock,
        }
    }

    /// A directory to run a page's commands in: empty but for `config`, a link to the
    /// repository's (commands name `config/redirects.csv`, the CLI finds `config/demo.toml`,
    /// whose admin address is the demo's).
    pub fn scratch() -> tempfile::TempDir {
        let scratch = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(repo().join("config"), scratch.path().join("config")).unwrap();
        scratch
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs every example of `page` (named `name` in failures) in order, in `dir`; the failures.
pub fn run_examples(name: &str, page: &str, dir: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    for ex in examples(page) {
        let got = run(&ex.command, dir);
        if let Err(e) = matches(&ex.output, &got) {
            failures.push(format!(
                "{name}:{}: `{}`\n{e}\nfull output:\n{got}",
                ex.line, ex.command
            ));
        }
    }
    failures
}
