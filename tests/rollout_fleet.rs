//! The rollout in a fleet, on the built binary against a real etcd (Debian's `etcd-server`,
//! started by the test on free 127.0.0.1 ports): three replicas, exactly one (the fleet's
//! leader) drives the rollout, its progress lives in the fleet's document, and when the leader
//! is killed with SIGKILL mid-step another replica takes the lease and continues from the same
//! step with the same hold start. Shares are watched on every replica the whole time: they never
//! go down except by the rollback at the end, and all replicas agree.

#[allow(dead_code)]
#[path = "fleet_etcd/server.rs"]
mod server;
mod support;
use support::ports;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::Value;
use server::EtcdServer;
use support::admin::{admin, request_fresh, try_status};
use support::rollout::{config, FlakyStore, Shoppers};
use support::{wait_for, ProxyProcess, TempConfig, SLOW_WAIT};

const PREFIX: &str = "/cutover/ramp";

/// Steps every 4 s at the earliest, 1 s evaluations over 3 s windows.
const PLAN: &str = "steps = [10, 20, 30, 40, 50, 60, 70, 80, 90]\nmin_hold = \"4s\"\n\
    interval = \"1s\"\nwindow = \"3s\"\nmin_requests = 5\nfailure_limit = 2\n\
    inconclusive_timeout = \"30s\"\n\
    [rollout.gates.error_ratio]\nmax_vs_old = 2.0\nmax_delta = 0.05\n";

fn replica(old: &FlakyStore, new: &FlakyStore, etcd: &str, id: &str) -> ProxyProcess {
    replica_with(old, new, etcd, id, PLAN)
}

fn replica_with(
    old: &FlakyStore,
    new: &FlakyStore,
    etcd: &str,
    id: &str,
    plan: &str,
) -> ProxyProcess {
    let text = config(old, new, 0.0, plan)
        + &format!(
            "\n[fleet]\netcd = [\"{etcd}\"]\nprefix = \"{PREFIX}\"\nid = \"{id}\"\n\
             lease_ttl = \"3s\"\nstart_timeout = \"3s\"\nrequest_timeout = \"1s\"\n"
        );
    let cfg = TempConfig::new(&text);
    let mut p = ProxyProcess::spawn(cfg.path());
    p.config = Some(cfg);
    p
}

/// `GET /admin/rollout`, or `None` when the replica does not answer (killed).
async fn rollout(addr: SocketAddr) -> Option<Value> {
    let (s, _, b) = request_fresh(addr, Method::GET, "/admin/rollout", &[], None)
        .await
        .ok()?;
    (s == StatusCode::OK).then(|| serde_json::from_slice(&b).ok())?
}

fn step(v: &Value) -> u64 {
    v["state"]["step"].as_u64().unwrap_or(0)
}

fn phase(v: &Value) -> &str {
    v["state"]["phase"].as_str().unwrap_or("none")
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Every share each replica reported, in order, until stopped.
struct ShareWatch {
    seen: Arc<Mutex<Vec<Vec<f64>>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ShareWatch {
    fn start(admins: Vec<SocketAddr>) -> ShareWatch {
        let seen = Arc::new(Mutex::new(vec![Vec::new(); admins.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                for (i, a) in admins.iter().enumerate() {
                    if let Some(v) = try_status(*a).await {
                        let share = v["split"]["new_share"].as_f64().unwrap();
                        s.lock().unwrap()[i].push(share);
                    }
                }
                // Polling pace of the observer, not synchronisation.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        });
        ShareWatch { seen, stop, task }
    }

    async fn finish(self) -> Vec<Vec<f64>> {
        self.stop.store(true, Ordering::Relaxed);
        support::wait::bounded("the share watcher to stop", self.task)
            .await
            .unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

/// Only the leader's log has the rollout's step events (`advanced`).
fn advanced_events(p: &ProxyProcess) -> usize {
    p.log_lines()
        .iter()
        .filter(|l| l["fields"]["event"] == "advanced" || l["event"] == "advanced")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_mid_step_another_replica_continues_the_same_step() {
    use cutover::control::fleet::document::FleetDocument;
    use cutover::fleet::etcd::{EtcdClient, EtcdOptions};
    use cutover::fleet::FleetStore;
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let ep = etcd.endpoint();
    let ids = ["r1", "r2", "r3"];
    let mut r: Vec<Option<ProxyProcess>> = ids
        .iter()
        .map(|id| Some(replica(&old, &new, &ep, id)))
        .collect();
    let admins: Vec<SocketAddr> = r.iter().flatten().map(|p| p.admin).collect();
    let addrs: Vec<SocketAddr> = r.iter().flatten().map(|p| p.addr).collect();
    let _shoppers = Shoppers::start_paced(&addrs, &["/products/1"], Duration::from_millis(5));

    // Every replica knows the leader and has loaded the plan; exactly one drives.
    let leader = wait_for("one leader known to every replica", SLOW_WAIT, || async {
        let mut leaders = Vec::new();
        for a in &admins {
            let v = rollout(*a).await?;
            if v["configured"] != true {
                return None;
            }
            leaders.push(v["fleet"]["leader"].as_str()?.to_string());
        }
        leaders.dedup();
        (leaders.len() == 1).then(|| leaders.remove(0))
    })
    .await;
    let li = ids.iter().position(|id| *id == leader).unwrap();
    let follower = admins[(li + 1) % 3];

    // Started through a follower: the command is written to the fleet's document.
    let watch = ShareWatch::start(admins.clone());
    let (s, body) = admin(follower, Method::POST, "/admin/rollout/start", None, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for a in &admins {
        wait_for(
            "every replica applies step one's 10%",
            SLOW_WAIT,
            || async { support::admin::share(*a).await == 10.0 },
        )
        .await;
    }
    // The leader advances on evidence; every replica reports the leader's rollout.
    for a in &admins {
        wait_for("every replica reports step two", SLOW_WAIT, || async {
            rollout(*a).await.is_some_and(|v| step(&v) >= 1)
        })
        .await;
    }
    // Every replica exports the fleet's step, its start (annotations) and the gate values.
    for a in &admins {
        wait_for(
            "the metrics follow the fleet's rollout",
            SLOW_WAIT,
            || async {
                let v = rollout(*a).await.unwrap();
                let (_, m) = admin(*a, Method::GET, "/metrics", None, None).await;
                let value = |name: &str| {
                    m.lines()
                        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                };
                let since = v["state"]["step_since_ms"].as_u64().unwrap() as f64 / 1000.0;
                value("cutover_rollout_step_started_timestamp_seconds") == Some(since)
                    && value("cutover_rollout_step") == Some((step(&v) + 1) as f64)
                    && m.contains("cutover_rollout_gate_value{gate=\"error_ratio\",side=\"limit\"}")
            },
        )
        .await;
    }
    for (i, a) in admins.iter().enumerate() {
        let v = rollout(*a).await.unwrap();
        assert_eq!(v["fleet"]["driving"], i == li, "{v:#}");
        assert_eq!(v["fleet"]["leader"], leader, "{v:#}");
    }
    for (i, p) in r.iter().flatten().enumerate() {
        let n = advanced_events(p);
        assert_eq!(n > 0, i == li, "replica {} logged {n} step events", ids[i]);
    }
    let (_, status_text) = admin(follower, Method::GET, "/admin/status", None, None).await;
    let st: Value = serde_json::from_str(&status_text).unwrap();
    assert_eq!(st["fleet"]["leader_id"], leader, "{st:#}");

    // `cutover status --fleet` and `cutover status` name the replica that drives the rollout.
    let out = std::process::Command::new(support::process::binary())
        .args(["status", "--fleet", "--admin", &follower.to_string()])
        .env_remove("CUTOVER_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("leader {leader} (drives the rollout)")),
        "{text}"
    );
    assert!(text.contains("rollout: running at step"), "{text}");
    let out = std::process::Command::new(support::process::binary())
        .args(["status", "--admin", &follower.to_string()])
        .env_remove("CUTOVER_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("rollout driven by {leader}")),
        "{text}"
    );
    let out = std::process::Command::new(support::process::binary())
        .args(["rollout", "status", "--admin", &follower.to_string()])
        .env_remove("CUTOVER_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("driven by: {leader}; this replica")),
        "{text}"
    );

    // Mid-step (min_hold 4 s): kill -9 the leader.
    let kill_ms = unix_ms();
    let killed_at = Instant::now();
    let dead = r[li].take().unwrap();
    assert!(support::process::signal(dead.pid, "KILL"));
    let store = FleetStore::new(
        EtcdClient::new(EtcdOptions::new(vec![ep.clone()], Duration::from_secs(1))).unwrap(),
        PREFIX,
    );
    let doc = store.read().await.unwrap().0.expect("the fleet's document");
    let doc = FleetDocument::from_value(&doc.record.state, doc.record.generation).unwrap();
    let at_kill = &doc.other["rollout"]["state"];
    let (k, since) = (
        at_kill["step"].as_u64().unwrap(),
        at_kill["step_since_ms"].as_u64().unwrap(),
    );
    assert_eq!(doc.other["rollout"]["written_by"], leader, "{at_kill:#}");
    assert!(k >= 1, "the rollout was past step one: {at_kill:#}");

    // Another replica takes the lease and evaluates from the same step and hold start.
    let survivors: Vec<(usize, SocketAddr)> = (0..3)
        .filter(|i| *i != li)
        .map(|i| (i, admins[i]))
        .collect();
    let first = wait_for("a survivor's first evaluation", SLOW_WAIT, || async {
        for (_, a) in &survivors {
            let v = rollout(*a).await?;
            let evaluated = v["state"]["last_evaluation_ms"].as_u64().unwrap_or(0);
            if evaluated > kill_ms && v["fleet"]["leader"] != leader {
                return Some(v);
            }
        }
        None
    })
    .await;
    let took_ms = first["state"]["last_evaluation_ms"].as_u64().unwrap() - kill_ms;
    eprintln!(
        "MEASURED: kill -9 of the leader to the new leader's first evaluation: {took_ms} ms \
         (lease_ttl 3s; observed by the test after {:?})",
        killed_at.elapsed()
    );
    let new_leader = first["fleet"]["leader"].as_str().unwrap().to_string();
    assert!(ids.contains(&new_leader.as_str()) && new_leader != leader);
    let s1 = step(&first);
    assert!(
        s1 == k || s1 == k + 1,
        "continued at step {} after {}: {first:#}",
        s1 + 1,
        k + 1
    );
    if s1 == k {
        assert_eq!(
            first["state"]["step_since_ms"].as_u64(),
            Some(since),
            "the hold start is kept: {first:#}"
        );
    }
    assert_eq!(phase(&first), "running", "{first:#}");

    // The new leader keeps driving: the next step comes.
    for (_, a) in &survivors {
        wait_for("the new leader advances", SLOW_WAIT, || async {
            rollout(*a).await.is_some_and(|v| step(&v) > s1)
        })
        .await;
    }

    // New starts failing: the new leader rolls back and every replica applies share 0.
    new.fail(500);
    for (_, a) in &survivors {
        wait_for("every survivor rolled back", SLOW_WAIT, || async {
            rollout(*a)
                .await
                .is_some_and(|v| phase(&v) == "rolled_back")
        })
        .await;
        wait_for("share 0 after the rollback", SLOW_WAIT, || async {
            support::admin::share(*a).await == 0.0
        })
        .await;
    }
    let views: Vec<Value> = {
        let mut out = Vec::new();
        for (_, a) in &survivors {
            out.push(rollout(*a).await.unwrap());
        }
        out
    };
    for v in &views[1..] {
        assert_eq!(v["state"], views[0]["state"], "the survivors agree");
        assert_eq!(v["fleet"]["leader"], views[0]["fleet"]["leader"]);
    }

    // Shares only went up, except the rollback to 0 at the end, on every replica.
    let seen = watch.finish().await;
    for (i, shares) in seen.iter().enumerate() {
        assert!(shares.len() > 10, "replica {} observed: {shares:?}", ids[i]);
        // Before the start 0, then the ramp, then (after the rollback) 0 again.
        let up = shares.iter().position(|s| *s > 0.0).unwrap_or(shares.len());
        let end = shares[up..]
            .iter()
            .position(|s| *s == 0.0)
            .map_or(shares.len(), |p| p + up);
        let (ramp, after) = (&shares[up..end], &shares[end..]);
        assert!(
            ramp.windows(2).all(|w| w[0] <= w[1]),
            "replica {}: share went down before the rollback: {shares:?}",
            ids[i]
        );
        assert!(
            after.iter().all(|s| *s == 0.0),
            "replica {}: {shares:?}",
            ids[i]
        );
    }
    drop(dead);
}

/// etcd down mid-rollout: no replica moves the share alone, a command fails clearly (503,
/// nothing changed), and once etcd is back the rollout goes on from the same step. A rollout
/// value in the document that is not a rollout state is reported, not guessed at, and a new
/// `start` replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_rollout_holds_through_an_etcd_outage_and_reports_a_garbled_state() {
    use cutover::fleet::etcd::{EtcdClient, EtcdOptions};
    use cutover::fleet::FleetStore;
    let Some(mut etcd) = EtcdServer::start() else {
        return;
    };
    let (old, new) = (
        FlakyStore::start("old").await,
        FlakyStore::start("new").await,
    );
    let ep = etcd.endpoint();
    // A long hold: the step does not change during the test unless an operator acts.
    let plan = PLAN.replace("min_hold = \"4s\"", "min_hold = \"1h\"");
    assert_ne!(plan, PLAN);
    let r: Vec<ProxyProcess> = ["a", "b"]
        .iter()
        .map(|id| replica_with(&old, &new, &ep, id, &plan))
        .collect();
    let admins: Vec<SocketAddr> = r.iter().map(|p| p.admin).collect();
    for a in &admins {
        wait_for(
            "the plan in force and a leader known",
            SLOW_WAIT,
            || async {
                rollout(*a)
                    .await
                    .is_some_and(|v| v["configured"] == true && v["fleet"]["leader"].is_string())
            },
        )
        .await;
    }
    let fingerprints: Vec<Value> = {
        let mut out = Vec::new();
        for a in &admins {
            out.push(rollout(*a).await.unwrap()["plan_fingerprint"].clone());
        }
        out
    };
    assert_eq!(fingerprints[0], fingerprints[1], "one plan in the fleet");
    let (s, body) = admin(admins[1], Method::POST, "/admin/rollout/start", None, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let started = rollout(admins[1]).await.unwrap();
    let since = started["state"]["step_since_ms"].clone();
    for a in &admins {
        wait_for("10% everywhere", SLOW_WAIT, || async {
            support::admin::share(*a).await == 10.0
        })
        .await;
    }

    etcd.stop();
    for a in &admins {
        wait_for("etcd seen unreachable", SLOW_WAIT, || async {
            try_status(*a)
                .await
                .is_some_and(|v| v["fleet"]["connected"] == false)
        })
        .await;
    }
    for a in &admins {
        let (s, body) = admin(*a, Method::POST, "/admin/rollout/pause", None, None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body.contains("unreachable") && body.contains("nothing was changed"),
            "{body}"
        );
        assert_eq!(
            support::admin::share(*a).await,
            10.0,
            "no replica moved alone"
        );
        let v = rollout(*a).await.unwrap();
        assert_eq!(phase(&v), "running", "{v:#}");
        assert_eq!(step(&v), 0, "{v:#}");
    }

    etcd.restart();
    wait_for("a leader again after etcd's restart", SLOW_WAIT, || async {
        for a in &admins {
            if try_status(*a)
                .await
                .is_some_and(|v| v["fleet"]["leader"] == true)
            {
                return true;
            }
        }
        false
    })
    .await;
    for a in &admins {
        wait_for("etcd seen again", SLOW_WAIT, || async {
            try_status(*a)
                .await
                .is_some_and(|v| v["fleet"]["connected"] == true)
        })
        .await;
    }
    // Two operators pause at once on different replicas: one pause is written, the other is
    // told the rollout is paused already (never two writes of which one is lost).
    let pause = |a: SocketAddr| async move {
        wait_for(
            "a pause that is not refused for etcd",
            SLOW_WAIT,
            || async {
                let (s, body) = admin(a, Method::POST, "/admin/rollout/pause", None, None).await;
                (s != StatusCode::SERVICE_UNAVAILABLE).then_some((s, body))
            },
        )
        .await
    };
    let (first, second) = tokio::join!(pause(admins[0]), pause(admins[1]));
    let ok = [&first, &second]
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "exactly one pause is written: {first:?} {second:?}");
    for (s, body) in [&first, &second] {
        assert!(
            *s == StatusCode::OK
                || (*s == StatusCode::CONFLICT
                    && (body.contains("it is paused") || body.contains("changed on another"))),
            "{s} {body}"
        );
    }
    for a in &admins {
        wait_for("both replicas report the pause", SLOW_WAIT, || async {
            rollout(*a).await.is_some_and(|v| {
                phase(&v) == "paused" && step(&v) == 0 && v["state"]["step_since_ms"] == since
            })
        })
        .await;
    }

    // Someone writes a rollout value that is not a rollout state.
    let store = FleetStore::new(
        EtcdClient::new(EtcdOptions::new(vec![ep.clone()], Duration::from_secs(1))).unwrap(),
        PREFIX,
    );
    let current = store.read().await.unwrap().0.unwrap();
    let mut state = current.record.state.clone();
    state["rollout"] = serde_json::json!({"step": "three"});
    store.write_state(current.revision, state).await.unwrap();
    for a in &admins {
        wait_for("the garbled state reported", SLOW_WAIT, || async {
            rollout(*a).await.is_some_and(|v| {
                v["dropped"]
                    .as_str()
                    .is_some_and(|d| d.contains("unreadable"))
                    && phase(&v) == "idle"
            })
        })
        .await;
        assert_eq!(support::admin::share(*a).await, 10.0, "nothing guessed");
    }
    let (s, body) = admin(admins[1], Method::POST, "/admin/rollout/start", None, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for a in &admins {
        wait_for("a fresh start replaces it", SLOW_WAIT, || async {
            rollout(*a).await.is_some_and(|v| phase(&v) == "running")
        })
        .await;
    }
}
