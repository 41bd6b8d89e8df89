//! Redirect tables inside a compile: loaded, or carried over from the running snapshot when
//! neither their settings nor their file changed.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use http::Method;

use super::check::Check;
use super::raw::RawConfig;
use super::Problem;
use crate::redirects::{self, LoadContext};
use crate::routing::{Action, RequestView, Route};
use crate::state::{RedirectSource, Snapshot};

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Loads every `[[redirects]]` table, reusing the previous snapshot's table when neither its
/// settings nor its file changed (a share change must not re-read a million rows).
pub(super) fn load_redirects(
    c: &mut Check<'_>,
    raw: &RawConfig,
    generation: u64,
    previous: Option<&Snapshot>,
    routes: &[Route],
    old: usize,
) -> Vec<RedirectSource> {
    let base = c.src.base_dir();
    let no_headers = http::HeaderMap::new();
    let pinned_to_old = |host: Option<&str>, path: &str| {
        let view = RequestView {
            method: &Method::GET,
            host: host.unwrap_or(""),
            path,
            query: None,
            headers: (&no_headers).into(),
        };
        routes
            .iter()
            .find(|r| r.matcher.matches(&view))
            .filter(|r| r.action == Action::Storefront(old))
            .map(|r| r.name.clone())
    };
    let mut out = Vec::new();
    for (i, cfg) in raw.redirects.iter().enumerate() {
        let path = c.path(&cfg.file.to_string_lossy());
        c.files.push(path.clone());
        let now = stamp(&path);
        let reused = previous.and_then(|p| {
            p.redirects
                .iter()
                .find(|r| r.config == *cfg && r.path == path && r.stamp.is_some() && r.stamp == now)
        });
        if let Some(r) = reused {
            out.push(RedirectSource {
                config: cfg.clone(),
                path,
                stamp: now,
                generation: r.generation,
                table: Arc::clone(&r.table),
            });
            continue;
        }
        let ctx = LoadContext {
            base_dir: &base,
            pinned_to_old: &pinned_to_old,
        };
        match redirects::load(cfg, &ctx) {
            Ok(loaded) => {
                let r = &loaded.report;
                let text = r.to_string();
                let summary = text
                    .lines()
                    .find(|l| !l.starts_with("warning"))
                    .unwrap_or("");
                tracing::info!(
                    table = %cfg.name,
                    reused_memory_mb = r.reused_bytes >> 20,
                    "{summary}"
                );
                for w in text.lines().filter(|l| l.starts_with("warning")) {
                    tracing::warn!(table = %cfg.name, "{w}");
                }
                out.push(RedirectSource {
                    config: cfg.clone(),
                    path,
                    stamp: now,
                    generation,
                    table: Arc::new(loaded.table),
                });
            }
            Err(errors) => {
                for e in &errors.errors {
                    let text = e.to_string();
                    let prefix = format!("{}:{}: ", path.display(), e.line());
                    let message = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
                    c.problems.push(Problem {
                        file: path.clone(),
                        line: e.line() as usize,
                        column: 0,
                        field: format!("redirects[{i}] ({})", cfg.name),
                        message,
                    });
                }
                if errors.omitted > 0 {
                    c.file(
                        format!("redirects[{i}]"),
                        format!(
                            "... and {} more errors in {}",
                            errors.omitted,
                            path.display()
                        ),
                    );
                }
            }
        }
    }
    out
}
