//! `[shadow]`, `[fallback]` and the routes' `fallback = true`: validated with the file's lines,
//! then turned into the snapshot's [`ShadowPlane`] and [`FallbackPlane`].
//!
//! The mirror is started only for a snapshot that will serve (inside the server's runtime, with
//! no problem found); `cutover check` validates without starting anything.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::runtime::Handle;
use toml::Spanned;

use super::check::Check;
use super::raw::RawConfig;
use crate::routing::Split;
use crate::shadow::counters::FallbackCounters;
use crate::shadow::fallback::FallbackUrls;
use crate::shadow::{FallbackConfig, Shadow, ShadowSettings, Targets};
use crate::state::shadow::{map_url, FallbackPlane, ShadowPlane};
use crate::state::{RedirectSource, Snapshot};

/// The sections, validated; what [`planes`] builds from.
pub(super) struct Checked {
    shadow: Option<(ShadowSettings, Targets)>,
    fallback: Option<(FallbackConfig, Vec<bool>)>,
}

fn report<T>(c: &mut Check<'_>, at: &Spanned<T>, problems: crate::shadow::config::ConfigProblems) {
    for p in problems.0 {
        c.at(at, p.field, p.message);
    }
}

/// Validates the sections; every problem is located at its section (or route) in the file.
/// `names` are the storefront names by id, `split` the split's sides.
pub(super) fn check(
    c: &mut Check<'_>,
    raw: &RawConfig,
    names: &[String],
    split: &Split,
) -> Checked {
    let mut checked = Checked {
        shadow: None,
        fallback: None,
    };
    let upstream = |id: usize| {
        let name = names.get(id)?;
        raw.storefronts
            .iter()
            .find(|(n, _)| n.get_ref() == name)
            .map(|(_, sf)| sf.get_ref().upstream.get_ref().clone())
    };
    if let Some(section) = &raw.shadow {
        let built = section.get_ref().build();
        let targets = match (upstream(split.from), upstream(split.to)) {
            (Some(old), Some(new)) => {
                for (side, url) in [("old", &old), ("new", &new)] {
                    if !url.starts_with("http://") {
                        c.at(
                            section,
                            "shadow",
                            format!(
                                "the {side} storefront `{url}` is not http://: only plain-HTTP \
                                 storefronts can be shadowed"
                            ),
                        );
                    }
                }
                Some(Targets { old, new })
            }
            // The split's own problem is already reported.
            _ => None,
        };
        match built {
            Ok(settings) => checked.shadow = targets.map(|t| (settings, t)),
            Err(problems) => report(c, section, problems),
        }
    }
    let mut routes: Vec<bool> = Vec::with_capacity(raw.routes.len() + 1);
    let new_name = names.get(split.to).map(String::as_str);
    for (i, r) in raw.routes.iter().enumerate() {
        let r = r.get_ref();
        let on = r.fallback.as_ref().filter(|f| *f.get_ref());
        if let Some(flag) = on {
            // Only new's answers fall back: a route pinned to another storefront never would.
            let to = r.to.get_ref().as_str();
            if to != "split" && Some(to) != new_name {
                c.at(
                    flag,
                    format!("route[{i}].fallback"),
                    format!(
                        "this route sends requests to `{to}`; the fallback replaces answers of the \
                         split's new storefront ({}) only",
                        new_name.unwrap_or("new")
                    ),
                );
            }
        }
        routes.push(on.is_some());
    }
    routes.push(false); // the implicit `default` route
    let any_route = routes.iter().any(|&on| on);
    let config = match &raw.fallback {
        Some(section) => {
            if let Err(problems) = section.get_ref().validate() {
                report(c, section, problems);
            }
            Some(section.get_ref().clone())
        }
        None => any_route.then(FallbackConfig::default),
    };
    checked.fallback = config.map(|f| (f, routes));
    checked
}

/// The server's runtime: the current one (startup compiles inside it), else the one the running
/// snapshot carries (reloads compile on background threads outside it).
pub(super) fn runtime(previous: Option<&Snapshot>) -> Option<Handle> {
    Handle::try_current()
        .ok()
        .or_else(|| previous.and_then(|p| p.shadow_runtime.clone()))
}

/// Builds the planes for a snapshot that will serve: the mirror is kept from `previous` when its
/// settings and storefronts are unchanged (its report and counters go on), started otherwise.
/// Without the server's runtime (`cutover check`) nothing is started.
pub(super) fn planes(
    checked: Checked,
    previous: Option<&Snapshot>,
    redirects: &[RedirectSource],
    runtime: Option<&Handle>,
) -> Result<(Option<Arc<ShadowPlane>>, Option<FallbackPlane>), String> {
    let shadow = match checked.shadow {
        None => None,
        Some((settings, targets)) => {
            let kept = previous
                .and_then(|p| p.shadow.as_ref())
                .filter(|p| p.settings == settings && p.targets == targets);
            match kept {
                // Its plan moves to this snapshot's tables once this snapshot is in force
                // (`state::shadow::publish_plan`).
                Some(plane) => Some(Arc::clone(plane)),
                None if runtime.is_some() => {
                    let tables: Vec<_> = redirects.iter().map(|r| Arc::clone(&r.table)).collect();
                    let plan = Arc::new(ArcSwap::from_pointee(tables));
                    let _in = runtime.map(Handle::enter);
                    let shadow = Shadow::start(settings.clone(), &targets, map_url(plan.clone()))
                        .map_err(|e| e.to_string())?;
                    Some(Arc::new(ShadowPlane {
                        shadow,
                        settings,
                        targets,
                        plan,
                    }))
                }
                None => None,
            }
        }
    };
    let fallback = checked.fallback.map(|(config, routes)| {
        let before = previous.and_then(|p| p.fallback.as_ref());
        let counters = before.map_or_else(
            || Arc::new(FallbackCounters::default()),
            |b| Arc::clone(&b.counters),
        );
        let urls = before
            .filter(|b| b.top_urls == config.top_urls)
            .map_or_else(
                || Arc::new(FallbackUrls::new(config.top_urls)),
                |b| Arc::clone(&b.urls),
            );
        FallbackPlane {
            statuses: config.statuses,
            routes,
            counters,
            urls,
            top_urls: config.top_urls,
        }
    });
    Ok((shadow, fallback))
}
