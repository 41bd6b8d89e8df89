//! Issue 5, "Reload under load" and "Change latency": a bounded client load (keep-alive and
//! new-connection, about 20,000 requests) runs against the `cutover` binary while 100 changes are
//! applied, alternating atomic-rename rewrites, in-place writes, SIGHUP and admin share changes.
//!
//! How "consistent with the configuration in force when it was routed" is checked: every request
//! carries a signed cohort cookie with a known bucket (pinning off), cutover tells the storefront
//! which config generation routed it (`x-cutover-generation`), the echo storefront returns that
//! and its own name, and `/admin/history` gives the share of every generation. A response is
//! consistent when the store that answered is `new` exactly when `bucket < share(generation)`.
//! The history's shares must also be the applied values, in order, ending with the last one.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use support::admin::*;
use support::cohort_cookie;
use support::control::*;
use support::dir::{replace_atomically, write_in_place};
use support::process::*;
use support::stores::Stores;
use support::wait::wait_for;

fn share_of(k: usize) -> u16 {
    ((k * 3_911 + 1_234) % 10_001) as u16
}

fn text(bp: u16) -> String {
    format!("{}.{:02}", bp / 100, bp % 100)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Rename,
    InPlace,
    Sighup,
    Admin,
}

const KINDS: [Kind; 4] = [Kind::Rename, Kind::InPlace, Kind::Sighup, Kind::Admin];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_nothing_and_routes_by_the_generation_in_force() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    let params = |share: &str| Params {
        share: share.into(),
        ..Params::default()
    };
    std::fs::write(&config, config_text(&stores, &params("10"))).unwrap();
    let proxy = ProxyProcess::spawn(&config);

    const TOTAL: usize = 20_000;
    let load = Load::start(proxy.addr, 6, 6, usize::MAX);
    let mut latencies: HashMap<&'static str, Vec<Duration>> = HashMap::new();
    let mut applied: Vec<u16> = Vec::new();
    let started = Instant::now();
    for k in 0..100 {
        // Spread the changes over the load: change k once ~k*190 requests were answered.
        let pace = Instant::now() + Duration::from_secs(3);
        while load.count() < k * 190 && Instant::now() < pace {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let bp = share_of(k);
        let kind = KINDS[k % 4];
        let t0 = Instant::now();
        match kind {
            Kind::Rename => replace_atomically(&config, &config_text(&stores, &params(&text(bp)))),
            Kind::InPlace => write_in_place(&config, &config_text(&stores, &params(&text(bp)))),
            Kind::Sighup => {
                write_in_place(&config, &config_text(&stores, &params(&text(bp))));
                signal(proxy.pid, "HUP");
            }
            Kind::Admin => {
                let body = format!(r#"{{"new_share": "{}%"}}"#, text(bp));
                let (s, b) =
                    admin(proxy.admin, Method::PUT, "/admin/split", None, Some(&body)).await;
                assert_eq!(s, StatusCode::OK, "{b}");
            }
        }
        let want = f64::from(bp) / 100.0;
        wait_for(
            &format!("change {k} ({kind:?}) to {want}%"),
            Duration::from_secs(10),
            || async { (share(proxy.admin).await - want).abs() < 0.001 },
        )
        .await;
        let name = match kind {
            Kind::Rename => "file, atomic rename",
            Kind::InPlace => "file, in-place write",
            Kind::Sighup => "write + SIGHUP",
            Kind::Admin => "admin API",
        };
        latencies.entry(name).or_default().push(t0.elapsed());
        applied.push(bp);
    }
    let changes_took = started.elapsed();
    wait_for(
        "the load to reach 20,000 requests",
        Duration::from_secs(180),
        || {
            let n = load.count();
            async move { n >= TOTAL }
        },
    )
    .await;
    let result = load.stop().await;

    let (s, history) = admin(proxy.admin, Method::GET, "/admin/history", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let history: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    let mut share_of_gen: HashMap<u64, u16> = HashMap::new();
    let mut sequence: Vec<u16> = Vec::new();
    for h in &history {
        if h["applied"].as_bool() == Some(true) {
            let bp = (h["new_share"].as_f64().unwrap() * 100.0).round() as u16;
            share_of_gen.insert(h["generation"].as_u64().unwrap(), bp);
            if h["trigger"] != "startup" && sequence.last() != Some(&bp) {
                sequence.push(bp);
            }
        }
    }

    eprintln!(
        "reload under load: {} requests ({} keep-alive, {} new-connection), {} failures, 100 changes in {:.1?}, {} generations",
        result.answers.len() + result.failures.len(),
        result.keep_alive,
        result.new_connection,
        result.failures.len(),
        changes_took,
        share_of_gen.len()
    );
    for (name, l) in &latencies {
        let mut l = l.clone();
        l.sort();
        eprintln!(
            "change latency ({name}): min {:?}, median {:?}, max {:?} over {}",
            l[0],
            l[l.len() / 2],
            l[l.len() - 1],
            l.len()
        );
    }
    assert!(
        result.failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        result.failures.len(),
        &result.failures[..result.failures.len().min(5)]
    );
    assert!(result.answers.len() >= TOTAL);
    assert!(result.keep_alive > 1000 && result.new_connection > 1000);

    let mut inconsistent = Vec::new();
    for a in &result.answers {
        let bp = *share_of_gen.get(&a.generation).unwrap_or_else(|| {
            panic!(
                "generation {} routed a request but is not in /admin/history",
                a.generation
            )
        });
        let want = if a.bucket < bp { "new" } else { "old" };
        if a.store != want {
            inconsistent.push((a.clone(), bp));
        }
    }
    assert!(
        inconsistent.is_empty(),
        "{} responses inconsistent with their generation's share, e.g. {:?}",
        inconsistent.len(),
        &inconsistent[..inconsistent.len().min(5)]
    );
    // The shares that went live are the values written, in order (some coalesce: a debounced
    // burst of events is one reload), and the last one is in force.
    let mut rest = applied.iter();
    for bp in &sequence {
        assert!(
            rest.any(|x| x == bp),
            "share {bp} went live out of order; applied {applied:?}, history {sequence:?}"
        );
    }
    assert_eq!(sequence.last(), applied.last());
    let generations: std::collections::BTreeSet<u64> =
        result.answers.iter().map(|a| a.generation).collect();
    assert!(
        generations.len() > 50,
        "the load saw only {} generations",
        generations.len()
    );
}

/// The README promises a file change is picked up "within about 250 ms". A time cannot be
/// asserted on a shared machine, so this checks the mechanism that makes it so and reports the
/// figure (recorded in BENCHMARKS.md): every atomic rename is seen by the directory watch and
/// applied as exactly one reload triggered by `file` (not a SIGHUP, not a catch-up on a later
/// event), with the next generation and the written share, before a shopper's request routes on
/// it. The 200 ms debounce that dominates the figure is derived from the promise itself
/// (`reload::DEBOUNCE`, four fifths of it). The 10 s wait only bounds a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_latency_is_measured() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    let params = |share: u16| Params {
        share: text(share),
        ..Params::default()
    };
    std::fs::write(&config, config_text(&stores, &params(1000))).unwrap();
    let proxy = ProxyProcess::spawn(&config);
    let history = |a| async move {
        let (_, h) = admin(a, Method::GET, "/admin/history", None, None).await;
        serde_json::from_str::<Vec<serde_json::Value>>(&h).unwrap()
    };
    let mut seen = history(proxy.admin).await;
    let mut samples = Vec::new();
    for k in 1..=10u16 {
        let bp = 1000 + k * 100;
        let t0 = Instant::now();
        replace_atomically(&config, &config_text(&stores, &params(bp)));
        let want = f64::from(bp) / 100.0;
        // A shopper's request, not only the status page, must see the change.
        let bucket = bp - 50;
        let cookie = cohort_cookie(bucket);
        wait_for(
            "the change to route requests",
            Duration::from_secs(10),
            || {
                let cookie = cookie.clone();
                let addr = proxy.addr;
                async move {
                    let r =
                        request_fresh(addr, Method::GET, "/", &[("cookie", &cookie)], None).await;
                    matches!(r, Ok((_, h, _)) if h["x-echo-storefront"] == "new")
                }
            },
        )
        .await;
        samples.push(t0.elapsed());
        let now = history(proxy.admin).await;
        let new: Vec<&serde_json::Value> = now.iter().skip(seen.len()).collect();
        assert_eq!(
            new.len(),
            1,
            "rename {k}: exactly one reload per change (an extra one is a lost debounce, none a \
             change applied some other way): {new:?}"
        );
        let r = new[0];
        assert_eq!(r["trigger"], "file", "rename {k}: seen by the watch: {r}");
        assert_eq!(r["applied"], true, "{r}");
        assert_eq!(r["new_share"].as_f64(), Some(want), "{r}");
        let before = seen.last().map_or(0, |h| h["generation"].as_u64().unwrap());
        assert_eq!(r["generation"].as_u64(), Some(before + 1), "{r}");
        seen = now;
    }
    samples.sort();
    eprintln!(
        "file change -> routing latency over {} atomic renames: min {:?}, median {:?}, max {:?} (README: about 250 ms)",
        samples.len(),
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
}
