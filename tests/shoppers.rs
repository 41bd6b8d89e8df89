//! Issue 16, "where shoppers are": on the built binary with real storefronts and real shoppers
//! (one HTTP client cookie jar each), the status JSON, the `cutover_shoppers_*_10m` gauges and
//! `cutover status` count the returning shoppers on each side, pinned and held against the share;
//! `cutover shift` warns when pins will keep shoppers where they are, and only then.

mod support;

use serde_json::Value;

use support::admin::status;
use support::control::{config_text, Params};
use support::metrics::{scrape, Scrape};
use support::process::{run_cli, ProxyProcess};
use support::stores::Stores;
use support::{Client, Jar};

fn config(stores: &Stores, share: &str, pinning: bool) -> String {
    config_text(
        stores,
        &Params {
            share: share.into(),
            ..Params::default()
        },
    )
    .replace("[cohort]\n", &format!("[cohort]\npinning = {pinning}\n"))
}

/// One page view by the shopper owning `jar`: the storefront that answered.
async fn visit(client: &Client, jar: &mut Jar) -> String {
    let r = client.get_jar("/", jar).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("x-echo-storefront")
        .expect("a storefront answered")
}

/// `n` new shoppers, each seen twice (a first visit is not counted: it carries no cookie yet).
async fn arrive(client: &Client, n: usize, on: &str) -> Vec<Jar> {
    let mut jars = Vec::new();
    for _ in 0..n {
        let mut jar = Jar::new();
        assert_eq!(visit(client, &mut jar).await, on);
        assert_eq!(visit(client, &mut jar).await, on, "the pin holds");
        jars.push(jar);
    }
    jars
}

fn recent(status: &Value, storefront: &str) -> Value {
    status["storefronts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == storefront)
        .unwrap_or_else(|| panic!("no {storefront} in {status}"))["recent_shoppers"]
        .clone()
}

fn estimate(recent: &Value, field: &str) -> u64 {
    recent[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {recent}"))
}

/// Within the estimator's stated bound (5%, at least 1 for these small counts).
fn close(got: u64, want: u64) -> bool {
    got.abs_diff(want) <= (want / 20).max(1)
}

/// The `~N` after `marker` in `text`.
fn tilde_number(text: &str, marker: &str) -> u64 {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("`{marker}` in {text}"));
    text[at + marker.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("a number after `{marker}` in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metrics_and_shift_say_where_pinned_shoppers_are() {
    const ON_OLD: usize = 40;
    const ON_NEW: usize = 25;
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cutover.toml");
    std::fs::write(&path, config(&stores, "0", true)).unwrap();
    let proxy = ProxyProcess::spawn(&path);
    let admin = proxy.admin.to_string();
    let client = Client::new(proxy.addr);

    // No shopper pinned anywhere yet: moving the share either way warns about nothing.
    for share in ["5", "0"] {
        let (ok, out, err) = run_cli(&["shift", share, "--admin", &admin]).await;
        assert!(ok, "{err}");
        assert!(!out.contains("WARNING"), "shift {share}: {out}");
    }

    // At 0%, shoppers are pinned to old; clients that keep no cookie (crawlers) are not shoppers.
    let mut on_old = arrive(&client, ON_OLD, "old").await;
    for _ in 0..20 {
        assert_eq!(client.get("/").await.status, 200);
    }
    let (ok, out, err) = run_cli(&["shift", "100", "--admin", &admin]).await;
    assert!(ok, "{err}");
    assert!(out.contains("0.00% -> 100.00%"), "{out}");
    let warning = out
        .lines()
        .find(|l| l.starts_with("WARNING: pinning is on"))
        .unwrap_or_else(|| panic!("no pin warning: {out}"));
    assert!(
        close(tilde_number(warning, "~"), ON_OLD as u64),
        "{warning}"
    );
    assert!(
        warning.contains("the shoppers seen pinned to old in the last 10 min (~")
            && warning.contains("raising the share does not move them")
            && warning.contains("`cutover evacuate old`"),
        "{warning}"
    );

    // At 100% the pinned shoppers stay on old, now against the share; newcomers land on new.
    for jar in &mut on_old {
        assert_eq!(visit(&client, jar).await, "old");
    }
    let _on_new = arrive(&client, ON_NEW, "new").await;

    let st = status(proxy.admin).await;
    let (old, new) = (recent(&st, "old"), recent(&st, "new"));
    assert_eq!(old["window_seconds"], 600, "{old}");
    assert_eq!(old["estimate_relative_error"], 0.05, "{old}");
    for (r, field, want) in [
        (&old, "seen_estimate", ON_OLD),
        (&old, "pinned_estimate", ON_OLD),
        (&old, "pinned_against_share_estimate", ON_OLD),
        (&new, "seen_estimate", ON_NEW),
        (&new, "pinned_estimate", ON_NEW),
        (&new, "pinned_against_share_estimate", 0),
    ] {
        let got = estimate(r, field);
        assert!(
            if want == 0 {
                got == 0
            } else {
                close(got, want as u64)
            },
            "{field}: {got}, want ~{want}: {r}"
        );
    }

    // The gauges carry the same estimates.
    let page = Scrape::parse(&scrape(proxy.admin).await);
    for (sf, r) in [("old", &old), ("new", &new)] {
        for (metric, field) in [
            ("cutover_shoppers_seen_10m", "seen_estimate"),
            ("cutover_shoppers_pinned_10m", "pinned_estimate"),
            (
                "cutover_shoppers_pinned_against_share_10m",
                "pinned_against_share_estimate",
            ),
        ] {
            assert_eq!(
                page.value(metric, &[("storefront", sf)]) as u64,
                estimate(r, field),
                "{metric}{{storefront={sf}}}"
            );
        }
    }

    // `cutover status` says it in a line.
    let (ok, out, err) = run_cli(&["status", "--admin", &admin]).await;
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("shoppers"))
        .unwrap_or_else(|| panic!("no shoppers line: {out}"));
    let want_old = format!(
        "old ~{} (pinned ~{}, ~{} against the share)",
        estimate(&old, "seen_estimate"),
        estimate(&old, "pinned_estimate"),
        estimate(&old, "pinned_against_share_estimate")
    );
    let want_new = format!(
        "new ~{} (pinned ~{})",
        estimate(&new, "seen_estimate"),
        estimate(&new, "pinned_estimate")
    );
    assert!(
        line.contains("seen in the last 10 min: ")
            && line.contains(&want_old)
            && line.contains(&want_new)
            && line.ends_with("; estimates within 5%"),
        "{line}"
    );

    // Doing what the warning says moves them.
    let (ok, out, err) = run_cli(&["evacuate", "old", "--admin", &admin]).await;
    assert!(ok, "{err}{out}");
    assert!(
        out.contains(&format!(
            "note: the shoppers seen pinned to old in the last 10 min (~{}) are released",
            estimate(&old, "pinned_estimate")
        )),
        "{out}"
    );
    for jar in &mut on_old {
        assert_eq!(visit(&client, jar).await, "new");
    }
}

/// Without pinning, lowering the share moves shoppers back to old: `shift` says so, with how
/// many of the shoppers seen on new that is about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_share_without_pins_warns_that_shoppers_move_back() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cutover.toml");
    std::fs::write(&path, config(&stores, "50", false)).unwrap();
    let proxy = ProxyProcess::spawn(&path);
    let admin = proxy.admin.to_string();
    let client = Client::new(proxy.addr);
    let mut on_new = 0;
    for _ in 0..40 {
        let mut jar = Jar::new();
        let first = visit(&client, &mut jar).await;
        assert_eq!(
            visit(&client, &mut jar).await,
            first,
            "a bucket keeps its side"
        );
        on_new += usize::from(first == "new");
    }
    assert!(on_new > 0, "40 shoppers at 50%, none on new");
    let seen = estimate(&recent(&status(proxy.admin).await, "new"), "seen_estimate");
    assert!(close(seen, on_new as u64), "{seen} vs {on_new}");

    // Raising moves nobody back: no warning.
    let (ok, out, err) = run_cli(&["shift", "60", "--admin", &admin]).await;
    assert!(ok, "{err}");
    assert!(!out.contains("WARNING"), "{out}");
    let (ok, out, err) = run_cli(&["shift", "30", "--admin", &admin]).await;
    assert!(ok, "{err}");
    let warning = out
        .lines()
        .find(|l| l.starts_with("WARNING: pinning is off"))
        .unwrap_or_else(|| panic!("no warning: {out}"));
    assert!(
        warning.contains("move back from new to old on their next page")
            && warning.contains(&format!(
                "(about {} of the ~{seen} shoppers seen on new in the last 10 min)",
                seen * (6000 - 3000) / 6000
            )),
        "{warning}"
    );
}
