//! The shadow comparison and the 404 fallback (issue 18) end to end, on the built binary: two
//! real storefronts (scripted hyper servers on 127.0.0.1), the proxy as a child process, the
//! admin API and `/metrics` read over real sockets.
//!
//! Every wait is on an event (a request a storefront received, a count in the report) with a
//! generous bound; nothing asserts a duration.

mod shadow_support;
mod support;

use std::collections::HashMap;

use http::{Method, StatusCode};
use serde_json::Value;

use shadow_support::{html, Page, Store};
use support::admin::{admin, request_fresh};
use support::metrics::{metric, read_lines, scrape, Scrape};
use support::process::check;
use support::{wait_for, ConfigSpec, ProxyProcess, TempConfig, SLOW_WAIT};

const TOKEN: &str = "shadow-e2e-token";

/// The spec's text with the admin listener on (with a token), then `extra` (sections, routes).
fn config(old: &str, new: &str, share: f64, extra: &str) -> String {
    let text = ConfigSpec::new(old, new, share).render().replace(
        "[admin]\naddress = \"off\"\n",
        &format!("[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n"),
    );
    assert!(text.contains(TOKEN), "the admin section moved: {text}");
    format!("{text}\n{extra}\n")
}

fn start(text: &str) -> (ProxyProcess, TempConfig) {
    let file = TempConfig::new(text);
    (ProxyProcess::spawn(file.path()), file)
}

async fn get(
    p: &ProxyProcess,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let (s, h, b) = request_fresh(p.addr, Method::GET, path, headers, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (s, h, String::from_utf8_lossy(&b).into_owned())
}

async fn report(p: &ProxyProcess) -> Value {
    let (s, body) = admin(p.admin, Method::GET, "/shadow", None, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn wait_report(p: &ProxyProcess, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, SLOW_WAIT, || async {
        let r = report(p).await;
        done(&r).then_some(r)
    })
    .await
}

fn requests(r: &Value, result: &str) -> u64 {
    r["requests"][result].as_u64().unwrap()
}

async fn stores(
    old: HashMap<&'static str, Page>,
    new: HashMap<&'static str, Page>,
) -> (Store, Store) {
    (
        shadow_support::start(old, false).await,
        shadow_support::start(new, false).await,
    )
}

const SHADOW_ALL: &str = "[shadow]\nsample = 1.0\ntimeout = \"5s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatch_seen_through_the_proxy_shows_in_the_report_the_metrics_and_the_cli() {
    let (old, new) = stores(
        HashMap::from([("/p/1", html("<title>Red shoe</title><h1>Shoe</h1>"))]),
        HashMap::from([("/p/1", html("<title>Blue shoe</title><h1>Shoe</h1>"))]),
    )
    .await;
    let (p, _file) = start(&config(&old.base, &new.base, 0.0, SHADOW_ALL));

    let (s, _, body) = get(&p, "/p/1", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains("Red shoe"),
        "the shopper gets old's page: {body}"
    );

    let r = wait_report(&p, "the mismatch in GET /shadow", |r| {
        requests(r, "mismatch") >= 1
    })
    .await;
    let kinds = r["kinds"].as_array().unwrap();
    let title = kinds
        .iter()
        .find(|k| k["kind"] == "title")
        .unwrap_or_else(|| panic!("no title mismatch: {r}"));
    assert_eq!(title["top_urls"][0]["url"], "/p/1", "{r}");
    assert_eq!(title["example"]["old"], "Red shoe", "{r}");
    assert_eq!(title["example"]["new"], "Blue shoe", "{r}");
    assert_eq!(r["routes"][0]["route"], "default", "{r}");

    let page = scrape(p.admin).await;
    assert!(
        metric(&page, "cutover_shadow_requests_total{result=\"mismatch\"}") >= Some(1.0),
        "{page}"
    );
    assert!(
        metric(&page, "cutover_shadow_mismatches_total{kind=\"title\"}") >= Some(1.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "cutover_shadow_requests_total{result=\"dropped\"}"),
        Some(0.0)
    );

    let (s, csv) = admin(p.admin, Method::GET, "/shadow?format=csv", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(csv.contains("title") && csv.contains("/p/1"), "{csv}");

    // The CLI against the running proxy: the human table, then JSON.
    let token_file = TempConfig::new(TOKEN);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(support::process::binary())
            .args(["shadow"])
            .args(args)
            .args(["--admin", &p.admin.to_string(), "--token-file"])
            .arg(token_file.path())
            .env_remove("CUTOVER_CONFIG")
            .output()
            .expect("running cutover shadow");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let table = cli(&["report"]);
    assert!(
        table.contains("mismatch") && table.contains("title"),
        "{table}"
    );
    assert!(
        table.contains("Red shoe") && table.contains("/p/1"),
        "{table}"
    );
    let json: Value = serde_json::from_str(&cli(&["report", "--json"])).unwrap();
    assert!(requests(&json, "mismatch") >= 1, "{json}");

    // Clearing is an admin change: refused without the token, then done with it.
    let (s, body) = admin(p.admin, Method::POST, "/shadow/clear", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(requests(&report(&p).await, "mismatch") >= 1);
    let (s, body) = admin(p.admin, Method::GET, "/shadow/clear", Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert!(cli(&["clear"]).contains("cleared"));
    let r = report(&p).await;
    assert_eq!(requests(&r, "mismatch"), 0, "{r}");
    assert!(r["kinds"].as_array().unwrap().is_empty(), "{r}");
    // The counters keep counting.
    let page = scrape(p.admin).await;
    assert!(metric(&page, "cutover_shadow_mismatches_total{kind=\"title\"}") >= Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_paths_are_never_mirrored_and_cookies_stay_behind() {
    let (old, new) = stores(HashMap::new(), HashMap::new()).await;
    let (p, _file) = start(&config(&old.base, &new.base, 0.0, SHADOW_ALL));

    for path in ["/checkout/pay", "/cart", "/Account/orders"] {
        let (s, _, _) = get(&p, path, &[]).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    // A copy offered after them: once new has it, an earlier copy would have been queued first.
    let (s, _, _) = get(&p, "/p/after", &[("cookie", "session=secret")]).await;
    assert_eq!(s, StatusCode::OK);
    wait_report(&p, "the copy of /p/after compared", |r| {
        requests(r, "match") + requests(r, "mismatch") + requests(r, "error") >= 1
    })
    .await;

    let new_paths = new.paths();
    assert_eq!(
        new_paths,
        ["/p/after"],
        "only the eligible copy reaches new"
    );
    for path in ["/checkout/pay", "/cart", "/Account/orders"] {
        assert_eq!(
            old.seen(path).len(),
            1,
            "old saw only the shopper's own {path}"
        );
    }
    let copy = &new.seen("/p/after")[0];
    assert_eq!(copy.headers.get("x-cutover-shadow").unwrap(), "1");
    assert!(copy.headers.get("cookie").is_none(), "{:?}", copy.headers);
    let shopper_and_copy = old.seen("/p/after");
    assert_eq!(
        shopper_and_copy.len(),
        2,
        "the shopper's request and the copy's old side"
    );
    assert!(shopper_and_copy
        .iter()
        .any(|s| s.headers.get("x-cutover-shadow").is_none() && s.headers.get("cookie").is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_shadow_target_does_not_hold_the_shoppers_answer() {
    let (old, new) = stores(
        HashMap::from([("/slow", html("<title>Old</title>"))]),
        HashMap::from([("/slow", Page::Hang)]),
    )
    .await;
    let (p, _file) = start(&config(&old.base, &new.base, 0.0, SHADOW_ALL));

    let (s, _, body) = get(&p, "/slow", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("Old"), "{body}");
    // The shopper has the answer; the copy to new is still unresolved (it resolves only by the
    // 5 s timeout, which the shopper's answer did not wait for).
    let r = report(&p).await;
    assert_eq!(
        requests(&r, "error") + requests(&r, "match") + requests(&r, "mismatch"),
        0,
        "the comparison must still be pending when the shopper has the page: {r}"
    );
    // Then the copy times out and is counted.
    let r = wait_report(&p, "the timed-out copy counted", |r| {
        requests(r, "error") >= 1
    })
    .await;
    assert!(
        r["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kind"] == "timeout"),
        "{r}"
    );
    assert_eq!(new.seen("/slow").len(), 1, "new got the copy");
    let page = scrape(p.admin).await;
    assert_eq!(
        metric(&page, "cutover_shadow_requests_total{result=\"error\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&page, "cutover_shadow_mismatches_total{kind=\"timeout\"}"),
        Some(1.0)
    );
}

const FALLBACK_ROUTE: &str = "[fallback]\nstatuses = [404]\n\n[[route]]\nname = \"catalog\"\npath_prefix = \"/\"\nto = \"split\"\nfallback = true\n";

fn not_found(body: &str) -> Page {
    Page::Answer(
        404,
        vec![("content-type", "text/plain".into())],
        body.into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_serves_olds_page_for_a_404_on_new_but_never_for_a_post() {
    let (old, new) = stores(
        HashMap::from([
            ("/only-old", html("<title>Old only</title>")),
            ("/nowhere", not_found("old 404")),
        ]),
        HashMap::from([
            ("/only-old", not_found("new 404")),
            ("/nowhere", not_found("new 404")),
        ]),
    )
    .await;
    let (p, file) = start(&config(
        &old.base,
        &new.base,
        100.0,
        &format!("{ACCESS_LOG}{FALLBACK_ROUTE}"),
    ));

    let (s, h, body) = get(&p, "/only-old", &[]).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains("Old only"), "{body}");
    assert_eq!(h.get("x-cutover-storefront").unwrap(), "old");
    assert_eq!(h.get("x-cutover-reason").unwrap(), "fallback");
    let asked = old.seen("/only-old");
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].headers.get("x-cutover-reason").unwrap(),
        "fallback"
    );
    // The shopper's assignment did not change: the cohort cookie names no pin on old.
    assert!(
        h.get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().contains("old")),
        "{h:?}"
    );

    let (s, _, b) = request_fresh(p.addr, Method::POST, "/only-old", &[], Some("x=1".into()))
        .await
        .unwrap();
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(String::from_utf8_lossy(&b), "new 404");
    let (s, _, b) = request_fresh(p.addr, Method::GET, "/only-old", &[], Some("x=1".into()))
        .await
        .unwrap();
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "a GET with a body is never replayed"
    );
    assert_eq!(String::from_utf8_lossy(&b), "new 404");
    assert_eq!(
        old.seen("/only-old").len(),
        1,
        "neither was replayed to old"
    );
    // Staff forcing new see new's own answer.
    let (s, _, body) = get(&p, "/only-old?cutover=new", &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body, "new 404");
    assert_eq!(
        old.seen("/only-old").len(),
        1,
        "no fallback under a staff override"
    );

    let (s, _, body) = get(&p, "/nowhere", &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body, "new 404", "old lacks it too: new's original answer");

    let (s, body) = admin(p.admin, Method::GET, "/fallback", None, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let f: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(f["routes"], serde_json::json!(["catalog"]), "{f}");
    assert_eq!(f["top_urls"][0]["url"], "/only-old", "{f}");
    assert_eq!(f["top_urls"][0]["hits"], 1, "{f}");
    assert_eq!(f["top_urls"].as_array().unwrap().len(), 1, "{f}");
    let page = scrape(p.admin).await;
    for (result, n) in [
        ("served", 1.0),
        ("not_eligible", 2.0),
        ("still_404", 1.0),
        ("old_error", 0.0),
    ] {
        assert_eq!(
            metric(
                &page,
                &format!("cutover_fallback_total{{result=\"{result}\"}}")
            ),
            Some(n),
            "{result}: {page}"
        );
    }
    // The request metrics and the access log say what the headers say: old, because of the
    // fallback; new's answers that stood stay new's.
    let scraped = Scrape::parse(&page);
    let requests = |sf: &str, class: &str, reason: &str| {
        scraped.sum(
            "cutover_requests_total",
            &[
                ("storefront", sf),
                ("route", "catalog"),
                ("status_class", class),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(requests("old", "2xx", "fallback"), 1.0, "{page}");
    assert_eq!(requests("new", "2xx", "split"), 0.0, "{page}");
    assert_eq!(requests("new", "4xx", "split"), 3.0, "{page}");
    assert_eq!(requests("new", "4xx", "override"), 1.0, "{page}");
    let lines = access_lines(&file, 5).await;
    let fell_back: Vec<&Value> = lines.iter().filter(|l| l["reason"] == "fallback").collect();
    assert_eq!(fell_back.len(), 1, "{lines:?}");
    assert_eq!(fell_back[0]["path"], "/only-old");
    assert_eq!(fell_back[0]["storefront"], "old");
    assert_eq!(fell_back[0]["route"], "catalog");
    assert_eq!(fell_back[0]["status"], 200);

    // No [shadow]: the report says how to turn it on.
    let (s, body) = admin(p.admin, Method::GET, "/shadow", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("[shadow]"), "{body}");
}

/// The access log, JSON, next to the config.
const ACCESS_LOG: &str = "[access_log]\nenabled = true\npath = \"access.log\"\n\n";

/// The first `n` lines of the access log next to `file`'s config (waits for them, bounded).
async fn access_lines(file: &TempConfig, n: usize) -> Vec<Value> {
    let path = file.file("access.log");
    let lines = wait_for("access log lines", SLOW_WAIT, || async {
        let l = read_lines(&path);
        (l.len() >= n).then_some(l)
    })
    .await;
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_answer_reads_old_fallback_in_the_text_access_log() {
    let (old, new) = stores(
        HashMap::from([("/only-old", html("<title>Old only</title>"))]),
        HashMap::from([
            ("/only-old", not_found("new 404")),
            ("/on-new", html("<title>New</title>")),
        ]),
    )
    .await;
    let text_log = ACCESS_LOG.replace("enabled = true", "enabled = true\nformat = \"text\"");
    let (p, file) = start(&config(
        &old.base,
        &new.base,
        100.0,
        &format!("{text_log}{FALLBACK_ROUTE}"),
    ));
    assert_eq!(get(&p, "/only-old", &[]).await.0, StatusCode::OK);
    assert_eq!(get(&p, "/on-new", &[]).await.0, StatusCode::OK);
    let path = file.file("access.log");
    let lines = wait_for("two text lines", SLOW_WAIT, || async {
        let l = read_lines(&path);
        (l.len() >= 2).then_some(l)
    })
    .await;
    let line = |path: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("{path} ")))
            .unwrap_or_else(|| panic!("no line for {path}: {lines:?}"))
            .clone()
    };
    assert!(
        line("/only-old").contains(" 200 old (fallback) "),
        "{lines:?}"
    );
    assert!(line("/on-new").contains(" 200 new (split) "), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_to_an_old_store_that_is_down_gives_the_original_404() {
    let new =
        shadow_support::start(HashMap::from([("/only-old", not_found("new 404"))]), false).await;
    let old = format!("http://{}", support::upstream::refused_addr());
    let (p, _file) = start(&config(&old, &new.base, 100.0, FALLBACK_ROUTE));

    let (s, h, body) = get(&p, "/only-old", &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body, "new 404");
    assert_eq!(h.get("x-cutover-storefront").unwrap(), "new");
    let page = scrape(p.admin).await;
    assert_eq!(
        metric(&page, "cutover_fallback_total{result=\"old_error\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&page, "cutover_fallback_total{result=\"served\"}"),
        Some(0.0)
    );
}

#[test]
fn check_reports_bad_shadow_and_fallback_settings_with_their_lines() {
    let text = config(
        "http://127.0.0.1:1",
        "https://127.0.0.1:2",
        0.0,
        "[shadow]\nsample = 1.5\nmethods = [\"POST\"]\n\n[fallback]\nstatuses = [503]\n\n\
         [[route]]\nname = \"blog\"\npath_prefix = \"/blog\"\nto = \"old\"\nfallback = true\n",
    );
    let line_of = |needle: &str| text.lines().position(|l| l == needle).unwrap() + 1;
    let file = TempConfig::new(&text);
    let (code, out, err) = check(file.path());
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    let shadow_at = format!("{}:{}", file.path().display(), line_of("[shadow]"));
    let fallback_at = format!("{}:{}", file.path().display(), line_of("[fallback]"));
    let route_at = format!("{}:{}", file.path().display(), line_of("fallback = true"));
    for (at, what) in [
        (&shadow_at, "shadow.sample"),
        (&shadow_at, "shadow.methods[0]"),
        (&shadow_at, "not http://"),
        (&fallback_at, "fallback.statuses[0]"),
        (&route_at, "route[0].fallback"),
    ] {
        assert!(
            all.lines()
                .any(|l| l.contains(at.as_str()) && l.contains(what)),
            "{what} at {at}:\n{all}"
        );
    }
}

async fn generation(p: &ProxyProcess) -> u64 {
    support::admin::status(p.admin).await["config"]["generation"]
        .as_u64()
        .unwrap()
}

async fn reload(p: &ProxyProcess, file: &TempConfig, text: &str) {
    let before = generation(p).await;
    file.rewrite(text);
    p.signal("HUP");
    wait_for("the reload applied", SLOW_WAIT, || async {
        generation(p).await > before
    })
    .await;
}

async fn wait_seen(store: &Store, path: &str, n: usize) {
    wait_for(
        &format!("{path} received {n} time(s)"),
        SLOW_WAIT,
        || async { store.seen(path).len() >= n },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_follow_the_plan_in_force_and_the_mirror_survives_a_reload_with_equal_settings() {
    let (old, new) = stores(
        HashMap::from([
            ("/p/1", html("<title>Red shoe</title>")),
            (
                "/old-shoe",
                html("<title>Shoe</title><link rel=canonical href=\"/old-shoe\"><h1>Shoe</h1>"),
            ),
        ]),
        HashMap::from([
            ("/p/1", html("<title>Blue shoe</title>")),
            (
                "/new-shoe",
                html("<title>Shoe</title><link rel=canonical href=\"/new-shoe\"><h1>Shoe</h1>"),
            ),
            (
                "/newer-shoe",
                html("<title>Shoe</title><link rel=canonical href=\"/newer-shoe\"><h1>Shoe</h1>"),
            ),
        ]),
    )
    .await;
    let with = |shadow: &str| {
        config(
            &old.base,
            &new.base,
            0.0,
            &format!("{shadow}\n[[redirects]]\nname = \"plan\"\nfile = \"plan.csv\"\n"),
        )
    };
    let file_text = with(SHADOW_ALL);
    let file = TempConfig::new(&file_text);
    let plan = file.file("plan.csv");
    std::fs::write(&plan, "old_url,new_url\n/old-shoe,/new-shoe\n").unwrap();
    let p = ProxyProcess::spawn(file.path());

    // The shopper is on old, which serves its own URL; the copy goes to new at the mapped URL.
    let (s, _, _) = get(&p, "/old-shoe", &[]).await;
    assert_eq!(s, StatusCode::OK);
    wait_seen(&new, "/new-shoe", 1).await;
    assert!(new.seen("/old-shoe").is_empty());
    // Old's canonical, mapped through the plan, is new's: a match.
    let r = wait_report(&p, "the mapped copy compared", |r| {
        requests(r, "match") + requests(r, "mismatch") >= 1
    })
    .await;
    assert_eq!(
        (requests(&r, "match"), requests(&r, "mismatch")),
        (1, 0),
        "{r}"
    );
    let (s, _, _) = get(&p, "/p/1", &[]).await;
    assert_eq!(s, StatusCode::OK);
    wait_report(&p, "the mismatch", |r| requests(r, "mismatch") >= 1).await;

    // A reload that changes the plan but not [shadow]: the same mirror (the report stays), and
    // the next copy follows the new plan.
    std::fs::write(&plan, "old_url,new_url\n/old-shoe,/newer-shoe\n").unwrap();
    reload(&p, &file, &format!("{file_text}\n# plan changed\n")).await;
    assert!(
        requests(&report(&p).await, "mismatch") >= 1,
        "the report was kept"
    );
    let (s, _, _) = get(&p, "/old-shoe", &[]).await;
    assert_eq!(s, StatusCode::OK);
    wait_seen(&new, "/newer-shoe", 1).await;
    // Old's canonical now maps to /newer-shoe: the mirror reads the plan in force.
    let r = wait_report(&p, "the copy under the new plan compared", |r| {
        requests(r, "match") >= 2
    })
    .await;
    assert_eq!(requests(&r, "mismatch"), 1, "only /p/1 differs: {r}");

    // Changed [shadow] settings: a fresh mirror, so a fresh report.
    reload(
        &p,
        &file,
        &with("[shadow]\nsample = 1.0\ntimeout = \"4s\"\n"),
    )
    .await;
    let r = report(&p).await;
    assert_eq!(requests(&r, "mismatch") + requests(&r, "match"), 0, "{r}");
    let (s, _, _) = get(&p, "/p/1", &[]).await;
    assert_eq!(s, StatusCode::OK);
    wait_report(&p, "the new mirror compares", |r| {
        requests(r, "mismatch") >= 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_beyond_the_bounds_are_dropped_and_counted_while_shoppers_are_served() {
    let old = shadow_support::start(HashMap::new(), false).await;
    let new = shadow_support::start(HashMap::new(), true).await; // every copy hangs
    let shadow = "[shadow]\nsample = 1.0\nconcurrency = 1\nqueue = 1\ntimeout = \"60s\"\n";
    let (p, _file) = start(&config(&old.base, &new.base, 0.0, shadow));

    for i in 0..10 {
        let (s, _, _) = get(&p, &format!("/p/{i}"), &[]).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "shopper {i} is served whatever the mirror does"
        );
    }
    // At most queue + concurrency + 1 copies are held (one in a worker, one queued, one with
    // the dispatcher); the rest were dropped at the offer.
    let r = report(&p).await;
    assert!(requests(&r, "dropped") >= 7, "{r}");
    let page = scrape(p.admin).await;
    assert!(
        metric(&page, "cutover_shadow_requests_total{result=\"dropped\"}") >= Some(7.0),
        "{page}"
    );
}
