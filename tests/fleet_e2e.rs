//! `[fleet]` end to end on the built binary against a real etcd (Debian's `etcd-server`, started
//! per test on free 127.0.0.1 ports): replicas share `cutover shift`, agree on every
//! shopper's storefront, keep serving through an etcd outage (where `shift` fails clearly), converge
//! when it is back, and a replica started late applies the fleet's state before it is ready.
//! Also: cohort key rotation (`previous_keys`) and `cutover check` on a broken `[fleet]`.

// Shared with tests/fleet_etcd.rs, which uses all of it.
#[allow(dead_code)]
#[path = "fleet_etcd/server.rs"]
mod server;
mod support;
use support::ports;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use server::EtcdServer;
use support::admin::{admin, share, status};
use support::control::{config_text, Params};
use support::stores::Stores;
use support::{cohort_cookie, wait_for, Client, ProxyProcess, TempConfig, KEY, SLOW_WAIT, WAIT};

/// The issue asks for replicas to apply a shift "within 2 s"; the test waits up to this and
/// reports the measured time instead of asserting wall clock on a shared machine.
const CONVERGE: Duration = Duration::from_secs(10);

fn fleet_section(etcd: &str, id: &str) -> String {
    format!(
        r#"
[fleet]
etcd = ["{etcd}"]
prefix = "/cutover/e2e"
id = "{id}"
lease_ttl = "3s"
start_timeout = "3s"
request_timeout = "1s"
"#
    )
}

fn replica(stores: &Stores, etcd: &str, id: &str) -> ProxyProcess {
    let text = config_text(
        stores,
        &Params {
            share: "10".into(),
            tail: fleet_section(etcd, id),
            ..Params::default()
        },
    );
    let config = TempConfig::new(&text);
    let mut p = ProxyProcess::spawn(config.path());
    p.config = Some(config);
    p
}

/// Runs `cutover <args> --admin <admin>` (bounded); (success, stdout, stderr).
fn cli(admin: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(support::process::binary())
        .args(args)
        .arg("--admin")
        .arg(admin.to_string())
        .env_remove("CUTOVER_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the cutover CLI");
    let deadline = Instant::now() + SLOW_WAIT;
    while child.try_wait().expect("waiting for the CLI").is_none() {
        assert!(Instant::now() < deadline, "cutover {args:?} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("CLI output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn wait_share(p: &ProxyProcess, want: f64, what: &str) {
    wait_for(what, CONVERGE, || async { share(p.admin).await == want }).await;
}

async fn fleet_connected(p: &ProxyProcess) -> bool {
    status(p.admin).await["fleet"]["connected"] == true
}

/// The storefront each of `cookies` is sent to by `p` (8 keep-alive connections at once).
async fn storefronts(p: &ProxyProcess, cookies: &[String]) -> Vec<String> {
    let client = Client::new(p.addr);
    let cookies = std::sync::Arc::new(cookies.to_vec());
    support::run_concurrently(cookies.len(), 8, move |i| {
        let client = client.clone();
        let cookies = std::sync::Arc::clone(&cookies);
        async move {
            let r = client.get_h("/", &[("cookie", cookies[i].as_str())]).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            r.text()
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_state_through_etcd_outages_and_late_joiners() {
    let Some(mut etcd) = EtcdServer::start() else {
        return;
    };
    let stores = Stores::start().await;
    let ep = etcd.endpoint();
    let r: Vec<ProxyProcess> = ["r1", "r2", "r3"]
        .iter()
        .map(|id| replica(&stores, &ep, id))
        .collect();

    // The first replica seeded the fleet with its (empty) state; everyone serves the file's 10%.
    for p in &r {
        assert_eq!(share(p.admin).await, 10.0);
        wait_for("replica connected to etcd", WAIT, || fleet_connected(p)).await;
    }

    // `cutover shift 30` against one replica is applied by all three.
    let t0 = Instant::now();
    let (ok, out, err) = cli(r[1].admin, &["shift", "30"]);
    assert!(ok, "shift failed: {out}{err}");
    assert!(out.contains("30.00%"), "{out}");
    assert!(out.contains("every replica applies it"), "{out}");
    assert_eq!(
        share(r[1].admin).await,
        30.0,
        "the replica asked answers after applying it"
    );
    for p in &r {
        wait_share(p, 30.0, "every replica applies the shift").await;
    }
    eprintln!(
        "MEASURED: `cutover shift 30` to all three replicas applying it: {:?}",
        t0.elapsed()
    );

    // Shoppers get the same storefront from each replica (bucket from their cohort cookie).
    // 10,000 shoppers, one per bucket.
    let t1 = Instant::now();
    let cookies: Vec<String> = (0..10_000u16).map(cohort_cookie).collect();
    let first = storefronts(&r[0], &cookies).await;
    let on_new = first.iter().filter(|s| *s == "new").count();
    assert_eq!(on_new, 3000, "buckets below 3000 go to new at 30%");
    for p in &r[1..] {
        assert_eq!(storefronts(p, &cookies).await, first, "replicas disagree");
    }
    eprintln!(
        "MEASURED: 3 x 10,000 shoppers compared in {:?}",
        t1.elapsed()
    );
    let cookies = &cookies[..1000];

    // Two operators at once: each write is based on what it saw; none is silently lost and the
    // replicas end on one value.
    let (a, b) = tokio::join!(
        admin(
            r[0].admin,
            Method::PUT,
            "/admin/split",
            None,
            Some(r#"{"new_share": 40}"#)
        ),
        admin(
            r[2].admin,
            Method::PUT,
            "/admin/split",
            None,
            Some(r#"{"new_share": 50}"#)
        ),
    );
    for (s, body) in [&a, &b] {
        assert!(
            *s == StatusCode::OK
                || (*s == StatusCode::CONFLICT && body.contains("another operator")),
            "{s} {body}"
        );
    }
    assert!(
        a.0 == StatusCode::OK || b.0 == StatusCode::OK,
        "one of them wins: {a:?} {b:?}"
    );
    let winner = if b.0 == StatusCode::OK { 50.0 } else { 40.0 };
    for p in &r {
        wait_share(p, winner, "replicas agree after concurrent shifts").await;
    }

    // `cutover status --fleet` lists the three, none lagging.
    let (ok, out, err) = cli(r[0].admin, &["status", "--fleet"]);
    assert!(ok, "status --fleet: {out}{err}");
    for id in ["r1", "r2", "r3"] {
        assert!(out.contains(id), "{id} missing:\n{out}");
    }
    assert!(!out.contains("LAGGING"), "{out}");

    // etcd stops: every replica keeps serving its last state, says so, and shift fails clearly.
    etcd.stop();
    for p in &r {
        wait_for("replica notices etcd is gone", CONVERGE, || async {
            !fleet_connected(p).await
        })
        .await;
        assert_eq!(share(p.admin).await, winner);
        let (s, _) = admin(p.admin, Method::GET, "/readyz", None, None).await;
        assert_eq!(s, StatusCode::OK, "readiness does not depend on etcd");
    }
    assert_eq!(storefronts(&r[2], cookies).await.len(), cookies.len());
    let (ok, out, err) = cli(r[0].admin, &["shift", "60"]);
    assert!(!ok, "shift must fail while etcd is down: {out}");
    assert!(err.contains("etcd") && err.contains("unreachable"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    for p in &r {
        assert_eq!(share(p.admin).await, winner, "no replica changed alone");
    }
    let (_, text, _) = cli(r[1].admin, &["status"]);
    assert!(text.contains("fleet store UNREACHABLE since"), "{text}");
    assert!(text.contains("until the next fleet change"), "{text}");
    // The gauges follow the connectivity every 500 ms: wait for the scrape to say so.
    let second = r[1].admin;
    wait_for(
        "the metric says the fleet store is unreachable",
        CONVERGE,
        || async move {
            let (_, metrics) = admin(second, Method::GET, "/metrics", None, None).await;
            metrics.contains("cutover_fleet_store_connected 0")
        },
    )
    .await;
    let (_, metrics) = admin(r[1].admin, Method::GET, "/metrics", None, None).await;
    assert!(metrics.contains("cutover_fleet_configured 1"));

    // etcd is back: everyone reconnects and the next shift converges.
    etcd.restart();
    for p in &r {
        wait_for("replica reconnects", CONVERGE, || fleet_connected(p)).await;
    }
    let (ok, out, err) = cli(r[2].admin, &["shift", "20"]);
    assert!(ok, "shift after etcd restart: {out}{err}");
    for p in &r {
        wait_share(p, 20.0, "convergence after the etcd restart").await;
    }

    // A fourth replica started late applies the fleet's 20% before it reports ready (the
    // "cutover started" line is logged after readiness turns on).
    let late = replica(&stores, &ep, "r4");
    assert_eq!(share(late.admin).await, 20.0, "applied before ready");
    let logs = late.log_text();
    let applied = logs
        .find("fleet state applied")
        .expect("fleet state applied logged");
    let started = logs.find("cutover started").unwrap();
    assert!(applied < started, "applied before serving:\n{logs}");
    let all = status(late.admin).await;
    assert_eq!(all["fleet"]["connected"], true);
    assert!(all["fleet"]["applied_generation"].as_u64().unwrap() >= 3);
    assert_eq!(
        storefronts(&late, cookies).await,
        storefronts(&r[0], cookies).await
    );
    let (s, body) = admin(late.admin, Method::GET, "/admin/fleet", None, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    wait_for("four replicas registered", CONVERGE, || async {
        let (_, body) = admin(late.admin, Method::GET, "/admin/fleet", None, None).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["replicas"].as_array().map_or(0, Vec::len) == 4
    })
    .await;
    assert!(answer["generation"].as_u64().unwrap() >= 3, "{answer}");
}

/// A cookie signed with the previous key keeps its bucket and pin, and comes back re-signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_signed_with_the_previous_key_keep_their_storefront() {
    use cutover::routing::cohort::{self, CohortCookie, CohortKeys, Pin, PinKind};
    let stores = Stores::start().await;
    let text = config_text(
        &stores,
        &Params {
            share: "50".into(),
            ..Params::default()
        },
    )
    .replace(
        &format!("key = \"{KEY}\""),
        &format!("key = \"rotated-key\"\npinning = true\nprevious_keys = [\"{KEY}\"]"),
    );
    let config = TempConfig::new(&text);
    let p = ProxyProcess::spawn(config.path());
    let client = Client::new(p.addr);
    // Bucket 100 would go to new at 50%, but the shopper is pinned to old by the previous key.
    let names = |id: usize| ["old", "new"][id].to_string();
    let pinned = CohortCookie {
        bucket: 100,
        pin: Some(Pin {
            storefront: 0,
            kind: PinKind::Split,
            issued: support::unix_now() - 60,
        }),
    };
    let old_value = cohort::encode(&pinned, &CohortKeys::derive(KEY), names);
    let r = client
        .get_h("/", &[("cookie", &format!("cutover_cohort={old_value}"))])
        .await;
    assert_eq!(r.text(), "old", "the pin signed by the previous key holds");
    let resigned = r
        .set_cookie("cutover_cohort")
        .expect("re-signed on this response");
    assert_ne!(resigned, old_value);
    assert_eq!(support::bucket_of_cookie(&resigned), 100);
    let current = CohortKeys::derive("rotated-key");
    let back = cohort::decode(&resigned, &current, |n| {
        ["old", "new"].iter().position(|x| *x == n)
    })
    .expect("signed with the current key");
    assert_eq!(back.cookie.pin.map(|p| p.storefront), Some(0));
    let r = client
        .get_h("/", &[("cookie", &format!("cutover_cohort={resigned}"))])
        .await;
    assert_eq!(r.text(), "old");
    assert!(
        r.set_cookie("cutover_cohort").is_none(),
        "nothing to re-sign"
    );
    // Unpinned shoppers of the previous key keep their side of the split.
    for bucket in [10u16, 4999, 5000, 9990] {
        let r = client
            .get_h("/", &[("cookie", &cohort_cookie(bucket))])
            .await;
        let want = if bucket < 5000 { "new" } else { "old" };
        assert_eq!(r.text(), want, "bucket {bucket}");
        let c = r.set_cookie("cutover_cohort").expect("re-signed");
        assert_eq!(support::bucket_of_cookie(&c), bucket);
    }
}

/// `cutover check` reports `[fleet]` and `previous_keys` problems with file:line.
#[test]
fn check_reports_fleet_and_rotation_problems_with_their_line() {
    let text = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storefront.old]\nupstream = \"http://127.0.0.1:1\"\n[storefront.new]\nupstream = \"http://127.0.0.1:2\"\n[cohort]\nkey = \"k\"\nprevious_keys = [\"k\", \"\"]\n{}",
        "[fleet]\netcd = [\"127.0.0.1:2379\"]\nprefix = \"nope/\"\nid = \"a b\"\n"
    );
    let config = TempConfig::new(&text);
    let (code, out, err) = support::process::check(config.path());
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    for field in [
        "fleet.etcd[0]",
        "fleet.prefix",
        "fleet.id",
        "cohort.previous_keys[0]",
        "cohort.previous_keys[1]",
    ] {
        assert!(all.contains(field), "{field} missing:\n{all}");
    }
    assert!(
        all.contains("cutover.toml:10:"),
        "[fleet] problems point at its line:\n{all}"
    );
}

/// A fleet state that does not compile here (or is not a state document) keeps the running
/// configuration, is not marked applied, and shows as lagging; the next good one applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_state_that_does_not_compile_is_rejected_and_shown_lagging() {
    use cutover::fleet::etcd::{EtcdClient, EtcdOptions};
    use cutover::fleet::FleetStore;
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let stores = Stores::start().await;
    let mut p = replica(&stores, &etcd.endpoint(), "solo");
    let store = FleetStore::new(
        EtcdClient::new(EtcdOptions::new(
            vec![etcd.endpoint()],
            Duration::from_secs(1),
        ))
        .unwrap(),
        "/cutover/e2e",
    );
    let seeded = store
        .read()
        .await
        .unwrap()
        .0
        .expect("seeded by the replica");
    assert_eq!(status(p.admin).await["fleet"]["applied_generation"], 1);
    for (bad, says) in [
        (
            serde_json::json!({"overrides": {"evacuated_at": {"gone": 5}}}),
            "does not compile here",
        ),
        (
            serde_json::json!({"overrides": {"share": 1}}),
            "not an operator-state document",
        ),
    ] {
        let current = store.read().await.unwrap().0.unwrap();
        store.write_state(current.revision, bad).await.unwrap();
        p.wait_log(|l| l["message"].as_str().is_some_and(|m| m.contains(says)))
            .await
            .unwrap_or_else(|| panic!("`{says}` logged:\n{}", p.log_text()));
        assert_eq!(share(p.admin).await, 10.0, "running configuration kept");
        assert_eq!(
            status(p.admin).await["fleet"]["applied_generation"],
            1,
            "not marked applied"
        );
    }
    wait_for("the replica is flagged as lagging", CONVERGE, || async {
        let (_, body) = admin(p.admin, Method::GET, "/admin/fleet", None, None).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["replicas"][0]["flagged"] == true && v["replicas"][0]["lag"] == "behind by 2"
    })
    .await;
    let (ok, out, _) = cli(p.admin, &["status", "--fleet"]);
    assert!(!ok, "status --fleet exits 1 while a replica lags");
    assert!(out.contains("LAGGING"), "{out}");
    let current = store.read().await.unwrap().0.unwrap();
    assert!(current.revision > seeded.revision);
    let good = serde_json::json!({"overrides": {"new_share_bp": 7000}, "rollout": {"step": 2}});
    store.write_state(current.revision, good).await.unwrap();
    wait_share(&p, 70.0, "the next good state applies").await;
    // An admin change keeps what this version does not know (a later version's rollout state).
    let (s, body) = admin(
        p.admin,
        Method::PUT,
        "/admin/split",
        None,
        Some(r#"{"new_share": 75}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let now = store.read().await.unwrap().0.unwrap();
    assert_eq!(
        now.record.state["rollout"]["step"], 2,
        "{:?}",
        now.record.state
    );
    assert_eq!(now.record.state["overrides"]["new_share_bp"], 7500);
    assert_eq!(now.record.state["updated_by"], "solo");
    // A config file edit reloads (locally the file wins) and the fleet's state is laid over
    // the new file again, so this replica keeps agreeing with the fleet.
    let config = p.config.as_ref().unwrap();
    let text = std::fs::read_to_string(config.path()).unwrap();
    config.rewrite(&format!("{text}\n# edited by a deploy\n"));
    p.wait_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("laying the fleet state over it again"))
    })
    .await
    .unwrap_or_else(|| panic!("re-laid after the file change:\n{}", p.log_text()));
    wait_share(&p, 75.0, "the fleet's share is back over the edited file").await;
}

/// etcd unreachable at startup: the replica serves its state file after `start_timeout`, is
/// ready, and says so; shift fails naming etcd instead of changing this replica alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_at_startup_a_replica_serves_its_state_file_and_says_so() {
    let stores = Stores::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = config_text(
        &stores,
        &Params {
            share: "10".into(),
            tail: fleet_section(&format!("http://127.0.0.1:{port}"), "lonely"),
            ..Params::default()
        },
    );
    let config = TempConfig::new(&text);
    // A state file saved for exactly this config (by an earlier run) is what it serves.
    let hash = cutover::config::content_hash(&text);
    std::fs::write(
        config.file("cutover.toml.state.json"),
        format!(
            r#"{{"format":1,"config":"x","config_hash":"{hash}","since":1,"updated_at":1,"overrides":{{"new_share_bp":2500}}}}"#
        ),
    )
    .unwrap();
    let p = ProxyProcess::spawn(config.path());
    assert_eq!(share(p.admin).await, 25.0, "the state file is in force");
    let (s, _) = admin(p.admin, Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let st = status(p.admin).await;
    assert_eq!(st["fleet"]["connected"], false);
    assert_eq!(st["fleet"]["applied_generation"], 0);
    let note = st["fleet"]["startup_note"].as_str().unwrap();
    assert!(note.contains("serving the state file"), "{note}");
    let (ok, _, err) = cli(p.admin, &["shift", "40"]);
    assert!(!ok);
    assert!(err.contains("etcd") && err.contains("unreachable"), "{err}");
    assert_eq!(share(p.admin).await, 25.0);
}

/// A draining leader resigns at once: the other replica leads well before the lease (30 s here)
/// would have expired, so a rolling restart does not leave the fleet without a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_leader_hands_the_leadership_over_without_waiting_for_its_lease() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let stores = Stores::start().await;
    let long_lease = |id: &str| {
        let text = config_text(
            &stores,
            &Params {
                tail: fleet_section(&etcd.endpoint(), id)
                    .replace("lease_ttl = \"3s\"", "lease_ttl = \"30s\""),
                ..Params::default()
            },
        );
        let config = TempConfig::new(&text);
        let mut p = ProxyProcess::spawn(config.path());
        p.config = Some(config);
        p
    };
    let mut ps = vec![long_lease("a"), long_lease("b")];
    let leader = wait_for("one replica leads", WAIT, || async {
        for (i, p) in ps.iter().enumerate() {
            if status(p.admin).await["fleet"]["leader"] == true {
                return Some(i);
            }
        }
        None
    })
    .await;
    let follower = ps.remove(1 - leader);
    let old = ps.pop().unwrap();
    old.stop().await;
    wait_for(
        "the follower leads after the leader drained",
        WAIT,
        || async { status(follower.admin).await["fleet"]["leader"] == true },
    )
    .await;
    let (_, body) = admin(follower.admin, Method::GET, "/admin/fleet", None, None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["replicas"].as_array().unwrap().len(),
        1,
        "the drained replica deregistered: {v}"
    );
}
