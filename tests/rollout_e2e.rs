//! The `[rollout]` plan driving the real binary: two storefronts started by the test whose error
//! rate the test sets, shoppers sent through the proxy, and the rollout driven and read through
//! the admin API and the `cutover rollout` CLI.
//!
//! Plans use 1 s intervals and windows of a few seconds so the whole file runs in well under a
//! minute; every wait is bounded and waits on the state, never on a sleep.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use support::admin::{admin, share};
use support::process::{binary, check};
use support::rollout::{config, FlakyStore};
use support::upstream::{bind_local, serve_auto, spawn_accept};
use support::{wait_for, Client, ConfigSpec, ProxyProcess, TempConfig, SLOW_WAIT};

/// 1 s evaluations over 3 s windows; new may have twice old's error ratio or 5 points more.
fn plan(steps: &str, min_hold: &str, extra: &str) -> String {
    format!(
        "steps = {steps}\nmin_hold = \"{min_hold}\"\ninterval = \"1s\"\nwindow = \"3s\"\n\
         min_requests = 10\nfailure_limit = 2\ninconclusive_timeout = \"30s\"\n{extra}\n\
         [rollout.gates.error_ratio]\nmax_vs_old = 2.0\nmax_delta = 0.05\n"
    )
}

async fn rollout(p: &ProxyProcess) -> Value {
    let (s, b) = admin(p.admin, Method::GET, "/admin/rollout", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    serde_json::from_str(&b).unwrap()
}

/// The rollout once the driver has read the plan (it does right after start).
async fn rollout_loaded(p: &ProxyProcess) -> Value {
    wait_for("the rollout driver to load the plan", SLOW_WAIT, || async {
        let v = rollout(p).await;
        (v["configured"] == true).then_some(v)
    })
    .await
}

async fn command(p: &ProxyProcess, cmd: &str) -> (StatusCode, Value) {
    let path = format!("/admin/rollout/{cmd}");
    let (s, b) = admin(p.admin, Method::POST, &path, None, None).await;
    (s, serde_json::from_str(&b).unwrap_or(Value::String(b)))
}

fn phase(v: &Value) -> &str {
    v["state"]["phase"].as_str().unwrap_or("none")
}

fn step(v: &Value) -> u64 {
    v["state"]["step"].as_u64().unwrap_or(0)
}

/// `cutover rollout ACTION` against the process; (success, stdout, stderr).
fn cli(p: &ProxyProcess, action: &str) -> (bool, String, String) {
    let cfg = p.config.as_ref().map(|c| c.path().to_path_buf());
    let mut cmd = Command::new(binary());
    cmd.args(["rollout", action, "--admin", &p.admin.to_string()])
        .env_remove("CUTOVER_CONFIG")
        .env_remove("CUTOVER_ADMIN");
    if let Some(cfg) = cfg {
        cmd.arg("--config").arg(cfg);
    }
    let out = cmd.output().expect("run cutover rollout");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spawn(text: &str) -> ProxyProcess {
    let cfg = TempConfig::new(text);
    let mut p = ProxyProcess::spawn(cfg.path());
    p.config = Some(cfg);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_advance_while_new_is_as_good_as_old_and_a_rise_in_errors_rolls_back() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let p = spawn(&config(
        &old,
        &new,
        0.0,
        &plan("[20, 40, 60, 80]", "1s", ""),
    ));
    let _shoppers = support::rollout::Shoppers::start(&[p.addr]);
    let (s, a) = command(&p, "start").await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(share(p.admin).await, 20.0, "start sets step one's share");

    let v = wait_for("the rollout to pass step one", SLOW_WAIT, || async {
        let v = rollout(&p).await;
        (step(&v) >= 1).then_some(v)
    })
    .await;
    assert_eq!(phase(&v), "running", "{v:#}");
    let verdict = &v["state"]["last_verdicts"][0];
    assert_eq!(verdict["gate"], "error_ratio", "{v:#}");
    assert_eq!(verdict["result"], "pass", "{v:#}");
    assert_eq!(verdict["new"].as_f64(), Some(0.0), "{v:#}");
    assert_eq!(verdict["old"].as_f64(), Some(0.0), "{v:#}");
    assert!(share(p.admin).await >= 40.0);

    // New starts failing half its requests: failure_limit (2) evaluations later, share 0.
    new.fail(500);
    let flipped_ms = unix_ms();
    let v = wait_for("the rollout to roll back", SLOW_WAIT, || async {
        let v = rollout(&p).await;
        (phase(&v) == "rolled_back").then_some(v)
    })
    .await;
    assert_eq!(share(p.admin).await, 0.0, "a rollback puts the share to 0");
    let reason = v["state"]["reason"].as_str().unwrap();
    assert!(reason.contains("error_ratio"), "{reason}");
    let failed = &v["state"]["last_verdicts"][0];
    assert_eq!(failed["result"], "fail", "{v:#}");
    assert!(failed["new"].as_f64().unwrap() > 0.2, "{v:#}");
    // Judged by the engine's own clock: the deciding evaluation came at most interval x
    // failure_limit + one interval after the errors began (plus one poll of the driver, which
    // wakes every second, and the window's overlap with healthy traffic: one more interval).
    let decided = v["state"]["last_evaluation_ms"].as_u64().unwrap();
    let bound = 1000 * 2 + 1000 + 1000 + 1000;
    assert!(
        decided.saturating_sub(flipped_ms) <= bound,
        "rolled back {} ms after the errors began (bound {bound} ms)",
        decided - flipped_ms
    );

    let page = support::metrics::scrape(p.admin).await;
    assert_eq!(
        support::metrics::metric(&page, "cutover_rollout_state{state=\"rolled_back\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        support::metrics::metric(&page, "cutover_rollout_step"),
        Some(0.0)
    );
    assert!(
        support::metrics::metric(
            &page,
            "cutover_rollout_verdicts_total{gate=\"error_ratio\",result=\"fail\"}"
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        support::metrics::metric(
            &page,
            "cutover_rollout_gate_value{gate=\"error_ratio\",side=\"new\"}"
        )
        .unwrap()
            > 0.2
    );
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advise_mode_reports_what_it_would_do_and_changes_nothing() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let p = spawn(&config(
        &old,
        &new,
        30.0,
        &plan("[10, 50, 100]", "1s", "mode = \"advise\""),
    ));
    let _shoppers = support::rollout::Shoppers::start(&[p.addr]);
    new.fail(600);
    let (s, a) = command(&p, "start").await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["rollout"]["state"]["phase"], "advising", "{a:#}");
    let v = wait_for("an advised rollback", SLOW_WAIT, || async {
        let v = rollout(&p).await;
        let failed = v["state"]["last_verdicts"][0]["result"] == "fail";
        (failed && v["state"]["consecutive_failures"] == 0).then_some(v)
    })
    .await;
    assert_eq!(phase(&v), "advising", "advise mode never rolls back: {v:#}");
    assert_eq!(
        share(p.admin).await,
        30.0,
        "advise mode never moves the share"
    );
    assert!(
        p.log_text().contains("would act:"),
        "the log says what it would have done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_promote_and_abort_through_the_cli() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let p = spawn(&config(&old, &new, 0.0, &plan("[10, 50, 100]", "1h", "")));

    let (ok, out, err) = cli(&p, "pause");
    assert!(!ok, "pausing an idle rollout is refused: {out}");
    assert!(
        err.contains("cannot pause the rollout: it is idle"),
        "{err}"
    );

    let (ok, out, err) = cli(&p, "start");
    assert!(ok, "{err}");
    assert!(out.contains("rollout started at step 1/3 (10%)"), "{out}");
    assert_eq!(share(p.admin).await, 10.0);

    let (ok, out, err) = cli(&p, "pause");
    assert!(ok, "{err}");
    assert!(out.contains("rollout: paused"), "{out}");
    assert_eq!(phase(&rollout(&p).await), "paused");

    let (ok, out, err) = cli(&p, "resume");
    assert!(ok, "{err}");
    assert!(out.contains("rollout resumed at step 1/3"), "{out}");

    let (ok, out, err) = cli(&p, "promote");
    assert!(ok, "{err}");
    assert!(out.contains("promoted to step 2/3 (50%)"), "{out}");
    assert_eq!(share(p.admin).await, 50.0);

    let (ok, out, err) = cli(&p, "status");
    assert!(ok, "{err}");
    assert!(
        out.contains("rollout: running (enforce mode), step 2/3 (50%)"),
        "{out}"
    );
    assert!(out.contains("next evaluation: in"), "{out}");

    let (ok, out, err) = cli(&p, "abort");
    assert!(ok, "{err}");
    assert!(out.contains("aborted by an operator at step 2/3"), "{out}");
    assert_eq!(share(p.admin).await, 0.0, "abort puts the share to 0");
    assert_eq!(phase(&rollout(&p).await), "rolled_back");

    // A mutation is a change like any other: a GET on it is refused.
    let (s, _) = admin(p.admin, Method::GET, "/admin/rollout/start", None, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_rollout_resumes_the_same_step_and_a_plan_edit_drops_it() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let text = config(&old, &new, 0.0, &plan("[10, 50, 100]", "1h", ""));
    let cfg = TempConfig::new(&text);
    let p = ProxyProcess::spawn(cfg.path());
    assert_eq!(command(&p, "start").await.0, StatusCode::OK);
    assert_eq!(command(&p, "promote").await.0, StatusCode::OK);
    let before = rollout(&p).await;
    assert_eq!(step(&before), 1);
    let since = before["state"]["step_since_ms"].as_u64().unwrap();
    // The state is saved by the driver after the command: wait for the file.
    let saved = cfg.file("cutover.toml.state.json.rollout");
    wait_for("the rollout state file", SLOW_WAIT, || async {
        std::fs::read_to_string(&saved).is_ok_and(|t| t.contains("\"step\": 1"))
    })
    .await;
    p.stop().await;

    let p = ProxyProcess::spawn(cfg.path());
    let after = rollout_loaded(&p).await;
    assert_eq!(phase(&after), "running", "{after:#}");
    assert_eq!(
        step(&after),
        1,
        "the same step, never step one again: {after:#}"
    );
    assert_eq!(after["state"]["step_since_ms"].as_u64(), Some(since));
    assert_eq!(share(p.admin).await, 50.0);
    p.stop().await;

    // The plan changes while the process is down: the state is dropped with a message.
    cfg.rewrite(&text.replace("[10, 50, 100]", "[10, 60, 100]"));
    let p = ProxyProcess::spawn(cfg.path());
    let v = rollout_loaded(&p).await;
    assert_eq!(phase(&v), "idle", "{v:#}");
    let dropped = v["dropped"].as_str().unwrap_or_default();
    assert!(
        dropped.contains("the [rollout] plan changed since it was saved"),
        "{v:#}"
    );
    assert!(p.log_text().contains("rollout state dropped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rise_in_404s_pauses_with_action_pause_and_the_share_stays() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let gate =
        "action = \"pause\"\n[rollout.gates.not_found_ratio]\nmax_vs_old = 2.0\nmax_delta = 0.05\n";
    let p = spawn(&config(&old, &new, 0.0, &plan("[30, 60, 100]", "1h", gate)));
    let _shoppers = support::rollout::Shoppers::start(&[p.addr]);
    new.not_found(400);
    assert_eq!(command(&p, "start").await.0, StatusCode::OK);
    let v = wait_for("the rollout to pause", SLOW_WAIT, || async {
        let v = rollout(&p).await;
        (phase(&v) == "paused").then_some(v)
    })
    .await;
    assert_eq!(share(p.admin).await, 30.0, "a pause keeps the step's share");
    let reason = v["state"]["reason"].as_str().unwrap();
    assert!(reason.contains("not_found_ratio"), "{reason}");
    let page = support::metrics::scrape(p.admin).await;
    let new_404 =
        support::metrics::metric_sum(&page, "cutover_not_found_total", &[("storefront", "new")]);
    assert!(new_404 > 0.0, "404s are counted per storefront: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rise_in_new_p99_rolls_back() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let gate = "[rollout.gates.p99]\nmax_vs_old = 2.0\nmax_delta = 0.1\n";
    let p = spawn(&config(&old, &new, 0.0, &plan("[40, 80, 100]", "1h", gate)));
    let _shoppers = support::rollout::Shoppers::start(&[p.addr]);
    assert_eq!(command(&p, "start").await.0, StatusCode::OK);
    wait_for("a passing p99 verdict", SLOW_WAIT, || async {
        let v = rollout(&p).await;
        let p99 = v["state"]["last_verdicts"]
            .as_array()
            .and_then(|a| a.iter().find(|g| g["gate"] == "p99").cloned());
        p99.is_some_and(|g| g["result"] == "pass")
    })
    .await;
    // New answers 400 ms late: far past twice old's p99 (a few ms) plus 100 ms.
    new.delay(400);
    let v = wait_for("the rollout to roll back", SLOW_WAIT, || async {
        let v = rollout(&p).await;
        (phase(&v) == "rolled_back").then_some(v)
    })
    .await;
    let reason = v["state"]["reason"].as_str().unwrap();
    assert!(reason.contains("p99 new"), "{reason}");
    let p99 = v["state"]["last_verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "p99")
        .unwrap();
    assert!(p99["new"].as_f64().unwrap() >= 0.3, "{v:#}");
    assert!(p99["old"].as_f64().unwrap() < 0.1, "{v:#}");
    assert_eq!(share(p.admin).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_route_gate_rolls_back_what_the_overall_gate_lets_pass() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let route = "[[route]]\nname = \"checkout\"\npath_prefix = \"/checkout\"\nto = \"split\"\n";
    // All traffic may have 50 points more errors on new; checkout not one point more.
    let plan = "steps = [50, 100]\nmin_hold = \"1h\"\ninterval = \"1s\"\nwindow = \"3s\"\n\
                min_requests = 10\nfailure_limit = 2\ninconclusive_timeout = \"30s\"\n\
                [rollout.gates.error_ratio]\nmax_delta = 0.5\n\
                [rollout.gates.error_ratio.routes.checkout]\nmax_delta = 0.01\n";
    let text = ConfigSpec::new(&old.url(), &new.url(), 0.0)
        .tail(route)
        .render()
        .replace(
            "[admin]\naddress = \"off\"",
            "[admin]\naddress = \"127.0.0.1:0\"",
        )
        + "\n[rollout]\n"
        + plan;
    let p = spawn(&text);
    let _shoppers =
        support::rollout::Shoppers::start_paths(&[p.addr], &["/products/1", "/checkout/1"]);
    new.fail(200);
    assert_eq!(command(&p, "start").await.0, StatusCode::OK);
    let v = wait_for("the rollout to roll back", SLOW_WAIT, || async {
        let v = rollout(&p).await;
        (phase(&v) == "rolled_back").then_some(v)
    })
    .await;
    let verdicts = v["state"]["last_verdicts"].as_array().unwrap();
    let by_gate = |g: &str| verdicts.iter().find(|v| v["gate"] == g).cloned().unwrap();
    assert_eq!(by_gate("error_ratio")["result"], "pass", "{v:#}");
    assert_eq!(by_gate("error_ratio/checkout")["result"], "fail", "{v:#}");
    let reason = v["state"]["reason"].as_str().unwrap();
    assert!(reason.contains("error_ratio/checkout"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_requests_hold_the_step() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    // No shoppers at all: every verdict is `insufficient`, the step neither advances nor fails.
    let p = spawn(&config(&old, &new, 0.0, &plan("[10, 50, 100]", "0s", "")));
    assert_eq!(command(&p, "start").await.0, StatusCode::OK);
    let v = wait_for("three evaluations", SLOW_WAIT, || async {
        let v = rollout(&p).await;
        let evaluated = v["state"]["last_verdicts"][0]["result"] == "insufficient";
        let since = v["state"]["step_since_ms"].as_u64().unwrap_or(u64::MAX);
        let last = v["state"]["last_evaluation_ms"].as_u64().unwrap_or(0);
        (evaluated && last >= since + 3000).then_some(v)
    })
    .await;
    assert_eq!(step(&v), 0, "{v:#}");
    assert_eq!(phase(&v), "running");
    assert_eq!(v["state"]["consecutive_failures"], 0);
    assert_eq!(share(p.admin).await, 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_need_a_plan_and_the_token() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let without = ConfigSpec::new(&old.url(), &new.url(), 0.0)
        .render()
        .replace(
            "[admin]\naddress = \"off\"",
            "[admin]\naddress = \"127.0.0.1:0\"",
        );
    let p = spawn(&without);
    let (s, v) = command(&p, "start").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no [rollout] section"),
        "{v}"
    );
    assert_eq!(rollout(&p).await["configured"], false);
    let (ok, _, err) = cli(&p, "status");
    assert!(ok, "{err}");
    p.stop().await;

    let with_token = config(&old, &new, 0.0, &plan("[10, 100]", "1h", "")).replace(
        "[admin]\naddress = \"127.0.0.1:0\"",
        "[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"s3cret-token-for-rollout\"",
    );
    let p = spawn(&with_token);
    let (s, _) = command(&p, "start").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a rollout command is a change: token required"
    );
    assert_eq!(share(p.admin).await, 0.0);
    let (s, b) = admin(
        p.admin,
        Method::POST,
        "/admin/rollout/start",
        Some("s3cret-token-for-rollout"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(share(p.admin).await, 10.0);
}

/// A chat webhook stand-in: keeps every JSON body it is posted.
async fn webhook_receiver() -> (
    String,
    Arc<std::sync::Mutex<Vec<Value>>>,
    tokio::task::JoinHandle<()>,
) {
    use http_body_util::BodyExt as _;
    let (listener, addr) = bind_local().await;
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    let task = spawn_accept(listener, move |stream| {
        let g = Arc::clone(&g);
        serve_auto(stream, move |req: http::Request<hyper::body::Incoming>| {
            let g = Arc::clone(&g);
            async move {
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                if let Ok(v) = serde_json::from_slice::<Value>(&body.unwrap_or_default()) {
                    g.lock().unwrap().push(v);
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        })
    });
    (format!("http://{addr}/hook"), got, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_hears_every_step_and_the_rollback() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let (url, got, _task) = webhook_receiver().await;
    let hook = format!("evacuate_new = true\n[rollout.webhook]\nurl = \"{url}\"\n");
    let p = spawn(&config(
        &old,
        &new,
        0.0,
        &plan("[10, 50, 100]", "1h", &hook),
    ));
    assert_eq!(command(&p, "start").await.0, StatusCode::OK);
    assert_eq!(command(&p, "promote").await.0, StatusCode::OK);
    assert_eq!(command(&p, "abort").await.0, StatusCode::OK);
    let events = wait_for("three webhook posts", SLOW_WAIT, || async {
        let g = got.lock().unwrap().clone();
        (g.len() >= 3).then_some(g)
    })
    .await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["started", "promoted", "aborted"], "{events:#?}");
    assert!(
        events[1]["text"].as_str().unwrap().contains("step 2/3"),
        "{events:#?}"
    );
    // The abort rolled back with evacuate_new: pins to new issued until now are released.
    let status = support::admin::status(p.admin).await;
    assert!(
        status["overrides"]["evacuated_at"]["new"]
            .as_u64()
            .is_some(),
        "{status:#}"
    );
    assert_eq!(share(p.admin).await, 0.0);
}

/// Every shopper makes one request with its cookies; returns who answered each.
async fn round(addr: SocketAddr, jars: &mut Vec<support::client::Jar>) -> Vec<String> {
    let chunks: Vec<Vec<support::client::Jar>> = std::mem::take(jars)
        .chunks(125)
        .map(<[_]>::to_vec)
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|mut chunk| {
            tokio::spawn(async move {
                let client = Client::new(addr);
                let mut seen = Vec::new();
                for jar in &mut chunk {
                    let r = client.get_jar("/products/1", jar).await;
                    seen.push(r.text());
                }
                (chunk, seen)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        let (chunk, seen) = t.await.unwrap();
        jars.extend(chunk);
        out.extend(seen);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_shoppers_never_move_from_new_to_old_during_a_rollout() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let p = spawn(&config(&old, &new, 0.0, &plan("[10, 50, 100]", "1h", "")));
    let mut jars: Vec<support::client::Jar> =
        (0..1000).map(|_| support::client::Jar::new()).collect();
    let mut on_new = vec![false; 1000];
    for (i, cmd) in ["start", "promote", "promote"].into_iter().enumerate() {
        assert_eq!(command(&p, cmd).await.0, StatusCode::OK);
        let answered = round(p.addr, &mut jars).await;
        let mut count = 0;
        for (n, who) in answered.iter().enumerate() {
            assert!(who == "old" || who == "new", "{who}");
            if on_new[n] {
                assert_eq!(who, "new", "shopper {n} moved new -> old at step {}", i + 1);
            }
            on_new[n] = who == "new";
            count += usize::from(on_new[n]);
        }
        let expected = [100, 500, 1000][i];
        assert!(
            count.abs_diff(expected) <= 60,
            "step {}: {count} of 1000 on new, expected about {expected}",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_rollout_unless_the_plan_changed() {
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let text = config(&old, &new, 0.0, &plan("[10, 50, 100]", "1h", ""));
    let p = spawn(&text);
    assert_eq!(command(&p, "start").await.0, StatusCode::OK);
    assert_eq!(command(&p, "promote").await.0, StatusCode::OK);
    let cfg = p.config.as_ref().unwrap();

    // An edit outside [rollout]: the rollout stays at its step.
    cfg.rewrite(&format!("# an operator's comment\n{text}"));
    let (s, b) = admin(p.admin, Method::POST, "/admin/reload", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v = rollout(&p).await;
    assert_eq!((phase(&v), step(&v)), ("running", 1), "{v:#}");
    assert!(v["dropped"].is_null(), "{v:#}");
    // The edit dropped the share override (the file wins); the rollout puts its step back.
    wait_for("the step's share back", SLOW_WAIT, || async {
        share(p.admin).await == 50.0
    })
    .await;

    // The plan itself changes: the state is dropped with a message, the rollout is idle.
    cfg.rewrite(&text.replace("[10, 50, 100]", "[10, 25, 100]"));
    let (s, b) = admin(p.admin, Method::POST, "/admin/reload", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v = wait_for("the driver to follow the new plan", SLOW_WAIT, || async {
        let v = rollout(&p).await;
        (phase(&v) == "idle").then_some(v)
    })
    .await;
    let dropped = v["dropped"].as_str().unwrap_or_default();
    assert!(
        dropped.contains("the rollout was running at step 2"),
        "{v:#}"
    );
    assert_eq!(v["steps"], serde_json::json!([10.0, 25.0, 100.0]));
}

#[test]
fn check_reports_plan_problems_with_their_line_and_shows_the_queries() {
    let base = "[[listener]]\naddress = \"127.0.0.1:0\"\n[storefront.old]\nupstream = \"http://127.0.0.1:1\"\n\
                [storefront.new]\nupstream = \"http://127.0.0.1:2\"\n[split]\nnew_share = 0\n";
    let bad = TempConfig::new(&format!(
        "{base}[rollout]\nsteps = [50, 10]\nmin_hold = \"1m\"\ninterval = \"0s\"\nwindow = \"1m\"\n\
         min_requests = 1\nfailure_limit = 1\ninconclusive_timeout = \"1m\"\n\
         [rollout.gates.p99]\nmax_vs_old = 1.5\n"
    ));
    let (code, _out, err) = check(bad.path());
    assert_ne!(code, 0);
    assert!(
        err.contains("cutover.toml:9:1: rollout.steps[1]"),
        "the [rollout] section's line: {err}"
    );
    assert!(err.contains("rollout.steps[1]"), "{err}");
    assert!(err.contains("rollout.interval"), "{err}");

    let good = TempConfig::new(&format!(
        "{base}[rollout]\nsteps = [5, 100]\nmin_hold = \"1m\"\ninterval = \"1m\"\nwindow = \"5m\"\n\
         min_requests = 1\nfailure_limit = 1\ninconclusive_timeout = \"1m\"\n\
         [rollout.gates.p99]\nmax_vs_old = 1.5\n[rollout.source]\nkind = \"prometheus\"\n\
         url = \"http://127.0.0.1:9090\"\n"
    ));
    let (code, out, err) = check(good.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rollout: steps 5% -> 100%"), "{out}");
    assert!(
        out.contains("rollout query latency_buckets: sum by (storefront, route, le) (increase(cutover_request_duration_seconds_bucket{storefront=~\"old|new\"}"),
        "{out}"
    );
}
