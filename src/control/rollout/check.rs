//! What `cutover check` shows about `[rollout]`.

use crate::rollout::plan::{Mode, Source};
use crate::rollout::prometheus::Queries;
use crate::state::Snapshot;

/// The effective Prometheus queries of a snapshot's plan, for `cutover check` and status.
pub fn effective_queries(snap: &Snapshot) -> Option<Queries> {
    let plan = snap.rollout.as_ref()?;
    let Source::Prometheus { queries, .. } = &plan.source else {
        return None;
    };
    let split = &snap.routing.split;
    Some(Queries::effective(
        queries,
        &snap.storefronts[split.from].name,
        &snap.storefronts[split.to].name,
        plan.window_ms,
    ))
}

/// What `cutover check` prints about `[rollout]`: the steps, and the queries when they come from
/// Prometheus. Empty without a `[rollout]` section.
pub fn check_summary(snap: &Snapshot) -> String {
    use std::fmt::Write as _;
    let Some(plan) = &snap.rollout else {
        return String::new();
    };
    let mut out = String::new();
    let steps: Vec<String> = plan
        .steps_bp
        .iter()
        .map(|bp| crate::rollout::plan::percent(*bp))
        .collect();
    let _ = writeln!(
        out,
        "rollout: steps {} every {}s at least {}s each, window {}s, {} mode, source {}",
        steps.join(" -> "),
        plan.interval_ms / 1000,
        plan.min_hold_ms / 1000,
        plan.window_ms / 1000,
        if plan.mode == Mode::Advise {
            "advise"
        } else {
            "enforce"
        },
        match &plan.source {
            Source::Local => "local counters".to_string(),
            Source::Prometheus { url, .. } => format!("prometheus {url}"),
        }
    );
    if let Some(q) = effective_queries(snap) {
        for (name, query) in q.list() {
            let _ = writeln!(out, "rollout query {name}: {query}");
        }
    }
    out
}
