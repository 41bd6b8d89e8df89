//! `cutover demo --rollout`: the demo with a short shipped rollout plan
//! (`config/demo-rollout.toml`) that ramps on evidence from the demo's own shoppers, with the
//! old store as the baseline. The new demo store is sized for about a quarter of the traffic
//! ([`NEW_CAPACITY_PER_SECOND`]): the 50% step overloads it, new's error ratio rises above
//! old's, and the rollout rolls back on its own. The demo prints each step as it happens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{ConfigError, Source};
use crate::control::rollout::RolloutView;

/// The shipped plan, added to the demo config unless it has its own `[rollout]`.
pub const PLAN: &str = include_str!("../../config/demo-rollout.toml");

/// Requests per second the new demo store serves in the rollout demo; past that it answers 503
/// (shadow copies, marked `x-cutover-shadow`, do not count: they are not shoppers).
pub const NEW_CAPACITY_PER_SECOND: u32 = 5;

/// Why the rollout demo could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DemoRolloutError {
    /// The demo config is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file could not be written or copied.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The admin API refused to start the rollout.
    #[error("starting the demo's rollout through the admin API at {admin}: {reason}")]
    Start {
        /// The admin address.
        admin: String,
        /// What it said.
        reason: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DemoRolloutError {
    let path = path.to_path_buf();
    move |source| DemoRolloutError::Io { what, path, source }
}

/// A fixed-window rate limit: at most `per_second` admitted in each wall-clock second.
#[derive(Debug)]
pub struct Capacity {
    per_second: u32,
    window: Mutex<(u64, u32)>,
}

impl Capacity {
    /// A store that serves `per_second` requests a second.
    pub fn new(per_second: u32) -> Self {
        Capacity {
            per_second,
            window: Mutex::new((0, 0)),
        }
    }

    /// Whether a request arriving at unix second `now` is served.
    pub fn admit_at(&self, now: u64) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.0 != now {
            *w = (now, 0);
        }
        w.1 += 1;
        w.1 <= self.per_second
    }

    /// [`Capacity::admit_at`] now.
    pub fn admit(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.admit_at(now)
    }
}

/// The temporary directory of a rollout demo's config copy; removed on drop.
pub struct DemoDir(PathBuf);

impl DemoDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of the demo config `path` (and the redirect files it names) in a new temporary
/// directory, with [`PLAN`] added when the config has no `[rollout]` of its own. The copy does
/// not follow later edits of `path`.
pub fn prepare(path: &Path) -> Result<(PathBuf, DemoDir), DemoRolloutError> {
    let dir = std::env::temp_dir().join(format!("cutover-demo-rollout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let guard = DemoDir(dir.clone());
    let source = Source::read(path)?;
    let raw = source.parse()?;
    for t in &raw.redirects {
        let from = source.base_dir().join(&t.file);
        let to = dir.join(&t.file);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::copy(&from, &to).map_err(io("copying", &from))?;
    }
    let text = if raw.rollout.is_some() {
        source.text.clone()
    } else {
        format!("{}\n{PLAN}", source.text)
    };
    let out = dir.join("demo.toml");
    std::fs::write(&out, text).map_err(io("writing", &out))?;
    Ok((out, guard))
}

/// Starts the rollout through the admin API at `admin`, then prints every change of its phase
/// or step until the process ends.
pub async fn begin(admin: SocketAddr) -> Result<(), DemoRolloutError> {
    let address = admin.to_string();
    crate::admin::client::call(
        &address,
        http::Method::POST,
        "/admin/rollout/start",
        None,
        None,
    )
    .await
    .map_err(|e| DemoRolloutError::Start {
        admin: address.clone(),
        reason: e.to_string(),
    })?;
    tokio::spawn(narrate(address));
    Ok(())
}

/// One line per change of the rollout's phase or step, on stdout.
async fn narrate(admin: String) {
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Ok(body) = crate::admin::client::get(&admin, "/admin/rollout").await else {
            continue;
        };
        let Ok(view) = serde_json::from_str::<RolloutView>(&body) else {
            continue;
        };
        if let Some(line) = line_for(&view) {
            if last.as_ref() != Some(&line) {
                println!("{line}");
                last = Some(line);
            }
        }
    }
}

/// What the demo prints for a rollout view (`None`: not configured yet).
pub fn line_for(view: &RolloutView) -> Option<String> {
    let s = view.state.as_ref()?;
    let mut line = format!(
        "rollout: {} at step {}/{} ({}% on new)",
        s.phase.as_str(),
        s.step + 1,
        view.steps.len(),
        view.share_now
    );
    if let Some(r) = &s.reason {
        line.push_str(": ");
        line.push_str(r);
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_admits_per_second_and_starts_again_each_second() {
        let c = Capacity::new(3);
        let admitted = (0..5).filter(|_| c.admit_at(100)).count();
        assert_eq!(admitted, 3);
        assert!(c.admit_at(101), "a new second, a new allowance");
    }

    #[test]
    fn the_shipped_plan_compiles_and_a_missing_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
        let (path, guard) = prepare(Path::new(demo)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[rollout]") && text.contains("steps = [10, 25, 50, 100]"));
        assert!(guard.path().join("redirects.csv").exists());
        let parsed = Source::read(&path).unwrap().parse().unwrap();
        assert!(parsed.rollout.is_some());
        let kept = guard.path().to_path_buf();
        drop(guard);
        assert!(!kept.exists(), "removed on drop");
        let e = prepare(&dir.path().join("absent.toml")).err().unwrap();
        assert!(e.to_string().contains("absent.toml"), "{e}");
    }
}
