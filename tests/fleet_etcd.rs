//! The fleet store against a real etcd server (Debian's `etcd-server`), started per test on
//! free 127.0.0.1 ports: KV and CAS, watches that resume after an etcd restart, leader
//! election, member registration, outage reporting, failover, auth and TLS.

#[path = "support/ports.rs"]
mod ports;
#[path = "fleet_etcd/server.rs"]
mod server;

use std::sync::Arc;
use std::time::Duration;

use cutover::fleet::election::current_leader;
use cutover::fleet::etcd::{
    Credentials, EtcdClient, EtcdError, EtcdOptions, EventKind, TxnOutcome,
};
use cutover::fleet::members::{flag_lagging, list_members, Lag};
use cutover::fleet::store::ReadError;
use cutover::fleet::{Election, FleetStore, MemberInfo, Registration, WriteError};
use serde_json::json;
use server::{eventually, EtcdServer, ServerTls};

const PREFIX: &str = "/cutover/test";
const TIMEOUT: Duration = Duration::from_secs(1);
/// Generous bound for anything the fleet code does on its own (watch, campaign, reconnect).
const SOON: Duration = Duration::from_secs(10);

fn client(etcd: &EtcdServer) -> EtcdClient {
    EtcdClient::new(EtcdOptions::new(vec![etcd.endpoint()], TIMEOUT)).unwrap()
}

fn store(etcd: &EtcdServer) -> Arc<FleetStore> {
    Arc::new(FleetStore::new(client(etcd), PREFIX))
}

#[tokio::test]
async fn put_get_prefix_delete_and_create_if_absent() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let c = client(&etcd);
    let (missing, _) = c.get(b"/t/a").await.unwrap();
    assert!(missing.is_none());
    let r1 = c.put(b"/t/a", b"one", None).await.unwrap();
    c.put(b"/t/b", b"two", None).await.unwrap();
    c.put(b"/u/c", b"other prefix", None).await.unwrap();
    let (a, _) = c.get(b"/t/a").await.unwrap();
    let a = a.unwrap();
    assert_eq!((a.value.as_slice(), a.mod_revision), (&b"one"[..], r1));
    let (under, rev) = c.get_prefix(b"/t/").await.unwrap();
    let keys: Vec<&[u8]> = under.iter().map(|k| k.key.as_slice()).collect();
    assert_eq!(keys, [&b"/t/a"[..], &b"/t/b"[..]]);
    assert!(rev > r1);
    // Create-if-absent: the second attempt sees the first's value.
    assert!(matches!(
        c.put_if(b"/t/new", b"x", 0, None).await.unwrap(),
        TxnOutcome::Written { .. }
    ));
    match c.put_if(b"/t/new", b"y", 0, None).await.unwrap() {
        TxnOutcome::Conflict { current, .. } => assert_eq!(current.unwrap().value, b"x"),
        other => panic!("create-if-absent overwrote: {other:?}"),
    }
    assert_eq!(c.delete(b"/t/a").await.unwrap(), 1);
    assert_eq!(c.delete(b"/t/a").await.unwrap(), 0);
    assert!(c.connectivity().status().connected);
}

#[tokio::test]
async fn two_writers_cannot_silently_overwrite_each_other() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let (a, b) = (store(&etcd), store(&etcd));
    let first = a.write_state(0, json!({"share": 10})).await.unwrap();
    assert_eq!(first.record.generation, 1);
    // Both operators start from what they read.
    let seen_by_a = a.read_current(SOON).await.unwrap().unwrap();
    let seen_by_b = b.read_current(SOON).await.unwrap().unwrap();
    assert_eq!(seen_by_a.revision, seen_by_b.revision);
    let won = a
        .write_state(seen_by_a.revision, json!({"share": 25}))
        .await
        .unwrap();
    assert_eq!(won.record.generation, 2);
    let lost = b
        .write_state(seen_by_b.revision, json!({"share": 30}))
        .await
        .unwrap_err();
    let text = lost.to_string();
    match lost {
        WriteError::Conflict {
            current, expected, ..
        } => {
            assert_eq!(expected, seen_by_b.revision);
            assert_eq!(
                current.unwrap(),
                won,
                "the conflict shows what is there now"
            );
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert!(
        text.contains("/cutover/test/state") && text.contains("re-read"),
        "{text}"
    );
    // The loser's value was not written; retrying on the current revision works.
    assert_eq!(
        b.read_current(SOON).await.unwrap().unwrap().record.state,
        json!({"share": 25})
    );
    let retried = b
        .write_state(won.revision, json!({"share": 30}))
        .await
        .unwrap();
    assert_eq!(retried.record.generation, 3);
    // A create-if-absent on an existing state is a conflict too.
    assert!(matches!(
        b.write_state(0, json!({})).await,
        Err(WriteError::Conflict { .. })
    ));
}

#[tokio::test]
async fn watch_resumes_after_an_etcd_restart_without_missing_a_change() {
    let Some(mut etcd) = EtcdServer::start() else {
        return;
    };
    let c = client(&etcd);
    let start = c.put(b"/w/k", b"v1", None).await.unwrap();
    let mut watch = c.watch_prefix(b"/w/", start);
    let events = tokio::time::timeout(SOON, watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(events[0].kv.value, b"v1");
    etcd.stop();
    let broken = tokio::time::timeout(SOON, watch.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(broken.is_unreachable(), "{broken}");
    etcd.restart();
    // Two changes before the watch reconnects: both must arrive, in order.
    let other = client(&etcd);
    other.put(b"/w/k", b"v2", None).await.unwrap();
    other.delete(b"/w/k").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(SOON, watch.next())
            .await
            .expect("watch resumed")
        {
            Ok(events) => seen.extend(events),
            Err(e) => assert!(e.is_unreachable(), "{e}"),
        }
    }
    assert_eq!(
        (seen[0].kind, seen[0].kv.value.as_slice()),
        (EventKind::Put, &b"v2"[..])
    );
    assert_eq!(seen[1].kind, EventKind::Delete);
}

#[tokio::test]
async fn store_watcher_delivers_every_change_across_a_restart_and_status_follows() {
    let Some(mut etcd) = EtcdServer::start() else {
        return;
    };
    let (replica, operator) = (store(&etcd), store(&etcd));
    let watcher = replica.watch();
    let mut rx = watcher.subscribe();
    let v1 = operator.write_state(0, json!({"share": 10})).await.unwrap();
    let wait_for = |rx: &mut tokio::sync::watch::Receiver<_>, revision: i64| {
        let mut rx = rx.clone();
        async move {
            tokio::time::timeout(
                SOON,
                rx.wait_for(|v: &Option<cutover::fleet::Versioned>| {
                    v.as_ref().is_some_and(|v| v.revision >= revision)
                }),
            )
            .await
            .expect("change delivered")
            .unwrap()
            .clone()
        }
    };
    assert_eq!(wait_for(&mut rx, v1.revision).await.unwrap(), v1);
    etcd.stop();
    eventually("the replica reports etcd unreachable", SOON, || {
        !replica.connectivity().connected
    })
    .await;
    let status = replica.connectivity();
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains(&etcd.endpoint()),
        "{status:?}"
    );
    etcd.restart();
    let v2 = operator
        .write_state(v1.revision, json!({"share": 30}))
        .await
        .unwrap();
    assert_eq!(wait_for(&mut rx, v2.revision).await.unwrap(), v2);
    assert_eq!(v2.record.generation, 2);
    eventually("the replica reports etcd connected", SOON, || {
        replica.connectivity().connected
    })
    .await;
    rx.borrow_and_update();
}

#[tokio::test]
async fn an_unreachable_etcd_fails_fast_with_a_clear_error_then_converges() {
    let Some(mut etcd) = EtcdServer::start() else {
        return;
    };
    let s = store(&etcd);
    let v1 = s.write_state(0, json!({"share": 5})).await.unwrap();
    etcd.stop();
    let err = tokio::time::timeout(SOON, s.write_state(v1.revision, json!({"share": 6})))
        .await
        .expect("bounded by the request timeout")
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&etcd.endpoint()) && text.contains("/cutover/test/state"),
        "{text}"
    );
    assert!(
        matches!(&err, WriteError::Etcd(e) if e.is_unreachable()),
        "{text}"
    );
    let status = s.connectivity();
    assert!(!status.connected && status.since_unix_ms > 0, "{status:?}");
    // The startup read gives up at its bound and says why; the caller serves from the file.
    match s.read_current(Duration::from_millis(300)).await {
        Err(ReadError::Timeout { last_error, .. }) => {
            assert!(last_error.contains(&etcd.endpoint()), "{last_error}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    etcd.restart();
    let current = s.read_current(SOON).await.unwrap().unwrap();
    assert_eq!(current, v1, "nothing was written while etcd was down");
    assert!(s.connectivity().connected);
}

#[tokio::test]
async fn a_state_key_that_is_not_a_record_is_refused_and_the_watcher_keeps_the_last_one() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let s = store(&etcd);
    let good = s.write_state(0, json!({"share": 1})).await.unwrap();
    let watcher = s.watch();
    let mut rx = watcher.subscribe();
    tokio::time::timeout(SOON, rx.wait_for(|v| v.is_some()))
        .await
        .unwrap()
        .unwrap();
    let bad_rev = s
        .client()
        .put(b"/cutover/test/state", b"not json", None)
        .await
        .unwrap();
    let err = s.read().await.unwrap_err().to_string();
    assert!(
        err.contains("/cutover/test/state") && err.contains(&bad_rev.to_string()),
        "{err}"
    );
    // A good write after the bad one is delivered; the bad one never was.
    let fixed = s
        .client()
        .put(
            b"/cutover/test/state",
            br#"{"generation":9,"state":{"share":2}}"#,
            None,
        )
        .await
        .unwrap();
    let seen = tokio::time::timeout(
        SOON,
        rx.wait_for(|v| v.as_ref().is_some_and(|v| v.revision == fixed)),
    )
    .await
    .unwrap()
    .unwrap()
    .clone()
    .unwrap();
    assert_eq!(seen.record.generation, 9);
    assert!(seen.revision > good.revision);
}

#[tokio::test]
async fn a_compacted_watch_says_so() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let c = client(&etcd);
    let first = c.put(b"/c/k", b"1", None).await.unwrap();
    let last = c.put(b"/c/k", b"2", None).await.unwrap();
    c.call(
        "compact",
        b"",
        "/kv/compaction",
        &json!({"revision": last.to_string(), "physical": true}),
    )
    .await
    .unwrap();
    let err = c.watch_key(b"/c/k", first).next().await.unwrap_err();
    assert!(
        matches!(err, EtcdError::Compacted { compact_revision, .. } if compact_revision == last),
        "{err}"
    );
}

#[tokio::test]
async fn one_leader_and_the_other_takes_over_when_its_lease_ends() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let a = Election::spawn(client(&etcd), PREFIX, "a", ttl);
    let b = Election::spawn(client(&etcd), PREFIX, "b", ttl);
    eventually("one of two candidates leads", SOON, || {
        a.is_leader() || b.is_leader()
    })
    .await;
    let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };
    assert!(!follower.is_leader(), "never two leaders");
    let observer = client(&etcd);
    let name = current_leader(&observer, PREFIX).await.unwrap().unwrap();
    // Both know who leads without asking etcd (for status): the follower from its campaign.
    assert_eq!(leader.leader().as_deref(), Some(name.as_str()));
    eventually("the follower knows the leader", SOON, || {
        follower.leader().as_deref() == Some(name.as_str())
    })
    .await;
    // Kill the leader's lease from outside: it steps down, the follower takes over.
    observer.lease_revoke(leader.lease_id()).await.unwrap();
    eventually(
        "the follower leads after the lease was revoked",
        SOON,
        || follower.is_leader(),
    )
    .await;
    eventually("the old leader steps down", SOON, || !leader.is_leader()).await;
    let new_name = current_leader(&observer, PREFIX).await.unwrap().unwrap();
    assert_ne!(name, new_name);
    assert_eq!(follower.leader().as_deref(), Some(new_name.as_str()));
    eventually("the old leader learns the new one", SOON, || {
        leader.leader().as_deref() == Some(new_name.as_str())
    })
    .await;
    // The new leader dies without resigning (dropped): its lease expires, the other leads again.
    let mut changes = leader.subscribe();
    drop(follower);
    tokio::time::timeout(SOON, changes.wait_for(|leading| *leading))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        current_leader(&observer, PREFIX).await.unwrap().unwrap(),
        name
    );
    // Resigning hands over at once and leaves no leader key behind.
    leader.resign().await.unwrap();
    assert_eq!(current_leader(&observer, PREFIX).await.unwrap(), None);
}

fn member(id: &str, generation: u64) -> MemberInfo {
    MemberInfo {
        id: id.into(),
        address: format!("127.0.0.1:90{}", id.len()),
        version: env!("CARGO_PKG_VERSION").into(),
        generation,
        last_seen_unix_ms: 0,
    }
}

#[tokio::test]
async fn members_register_under_a_lease_and_laggards_are_flagged() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let a = Registration::spawn(client(&etcd), PREFIX, member("a", 3), ttl);
    let b = Registration::spawn(client(&etcd), PREFIX, member("b", 1), ttl);
    let crashed = Registration::spawn(client(&etcd), PREFIX, member("crashed", 3), ttl);
    let observer = client(&etcd);
    let list = |c: EtcdClient| async move { list_members(&c, PREFIX).await.unwrap() };
    let deadline = tokio::time::Instant::now() + SOON;
    while list(observer.clone()).await.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "three members registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flagged = flag_lagging(list(observer.clone()).await, 3);
    let lag: Vec<(&str, Lag)> = flagged
        .iter()
        .map(|m| (m.info.id.as_str(), m.lag))
        .collect();
    assert_eq!(
        lag,
        [
            ("a", Lag::UpToDate),
            ("b", Lag::Behind { by: 2 }),
            ("crashed", Lag::UpToDate)
        ]
    );
    assert!(flagged.iter().all(|m| m.info.last_seen_unix_ms > 0));
    b.set_applied(3);
    drop(crashed); // no deregistration: gone when its lease expires
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let now = flag_lagging(list(observer.clone()).await, 3);
        if now.len() == 2 && now.iter().all(|m| !m.is_flagged()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b caught up and the crashed replica expired: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.deregister().await.unwrap();
    let left: Vec<String> = list(observer.clone())
        .await
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, ["b"]);
}

#[tokio::test]
async fn failover_to_the_next_endpoint_and_all_attempts_named_when_none_answers() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let opts = EtcdOptions::new(vec![dead.clone(), etcd.endpoint()], TIMEOUT);
    let c = EtcdClient::new(opts).unwrap();
    c.put(b"/f/k", b"v", None).await.unwrap();
    assert_eq!(c.get(b"/f/k").await.unwrap().0.unwrap().value, b"v");
    let only_dead = EtcdClient::new(EtcdOptions::new(
        vec![dead.clone(), dead.clone() + "/"],
        TIMEOUT,
    ))
    .unwrap();
    let err = only_dead.get(b"/f/k").await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, EtcdError::Unreachable { ref attempts, .. } if attempts.len() == 2),
        "{text}"
    );
    assert!(
        text.contains(&dead) && text.contains("/f/k") && text.contains("range"),
        "{text}"
    );
}

#[tokio::test]
async fn auth_token_from_user_and_password() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let admin = client(&etcd);
    for (path, body) in [
        (
            "/auth/user/add",
            json!({"name": "root", "password": "rootpw"}),
        ),
        ("/auth/user/grant", json!({"user": "root", "role": "root"})),
        ("/auth/enable", json!({})),
    ] {
        admin.call("auth setup", b"", path, &body).await.unwrap();
    }
    let with = |password: &str| {
        let mut o = EtcdOptions::new(vec![etcd.endpoint()], TIMEOUT);
        o.auth = Some(Credentials {
            user: "root".into(),
            password: password.into(),
        });
        EtcdClient::new(o).unwrap()
    };
    with("rootpw").put(b"/a/k", b"v", None).await.unwrap();
    assert_eq!(
        with("rootpw").get(b"/a/k").await.unwrap().0.unwrap().value,
        b"v"
    );
    let wrong = with("nope").get(b"/a/k").await.unwrap_err().to_string();
    assert!(
        wrong.contains("authentication failed") && wrong.contains(&etcd.endpoint()),
        "{wrong}"
    );
    let anonymous = client(&etcd).get(b"/a/k").await.unwrap_err().to_string();
    assert!(
        anonymous.contains("/a/k") && anonymous.contains("refused"),
        "{anonymous}"
    );
}

#[tokio::test]
async fn tls_endpoint_verified_with_the_configured_ca() {
    use cutover::tls::testkit::TestCa;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("fleet test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (cert, key) = ca
        .leaf(&["127.0.0.1", "localhost"])
        .write(dir.path(), "etcd");
    let Some(etcd) = EtcdServer::start_with(Some(ServerTls { cert, key })) else {
        return;
    };
    let mut opts = EtcdOptions::new(vec![etcd.endpoint()], TIMEOUT);
    opts.tls.ca_file = Some(ca_file);
    let c = EtcdClient::new(opts).unwrap();
    let deadline = tokio::time::Instant::now() + SOON;
    while let Err(e) = c.put(b"/tls/k", b"v", None).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "TLS etcd never answered: {e}\n{}",
            etcd.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.get(b"/tls/k").await.unwrap().0.unwrap().value, b"v");
    // Without the CA the server is not trusted, and the error says it is about the certificate.
    let untrusted = EtcdClient::new(EtcdOptions::new(vec![etcd.endpoint()], TIMEOUT)).unwrap();
    let text = untrusted.get(b"/tls/k").await.unwrap_err().to_string();
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

/// A pooled keep-alive connection to the old process is retried once, not reported as an outage.
#[tokio::test]
async fn the_first_call_after_an_etcd_restart_succeeds_on_pooled_connections() {
    let Some(mut etcd) = EtcdServer::start() else {
        return;
    };
    let s = store(&etcd);
    let v1 = s.write_state(0, json!({"share": 1})).await.unwrap();
    for round in 0..3 {
        etcd.restart();
        let current = s
            .read()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(current.0.unwrap().revision, v1.revision);
    }
    let v2 = s.write_state(v1.revision, json!({"share": 2})).await;
    assert_eq!(v2.unwrap().record.generation, 2);
}

/// A leader that cannot reach etcd cannot prove its lease: it steps down within the TTL, and
/// campaigns again once etcd is back.
#[tokio::test]
async fn a_leader_cut_off_from_etcd_steps_down_and_returns() {
    let Some(mut etcd) = EtcdServer::start() else {
        return;
    };
    let alone = Election::spawn(client(&etcd), PREFIX, "alone", Duration::from_secs(3));
    eventually("the only candidate leads", SOON, || alone.is_leader()).await;
    etcd.stop();
    eventually("it steps down without etcd", SOON, || !alone.is_leader()).await;
    etcd.restart();
    eventually("it leads again after etcd is back", SOON, || {
        alone.is_leader()
    })
    .await;
}

/// A registration whose lease was lost (etcd unreachable longer than the TTL, here revoked)
/// registers again under a new lease.
#[tokio::test]
async fn a_member_whose_lease_is_lost_registers_again() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let me = Registration::spawn(
        client(&etcd),
        PREFIX,
        member("me", 1),
        Duration::from_secs(2),
    );
    let observer = client(&etcd);
    eventually("registered", SOON, || me.lease_id() != 0).await;
    let first = me.lease_id();
    let deadline = tokio::time::Instant::now() + SOON;
    while list_members(&observer, PREFIX).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first registration visible"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    observer.lease_revoke(first).await.unwrap();
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let listed = list_members(&observer, PREFIX).await.unwrap();
        if me.lease_id() != first && listed.len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "registered again: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
