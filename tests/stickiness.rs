//! A shopper stays on one storefront: with a cohort cookie across keep-alive and fresh
//! connections, and with only a session cookie across separate proxy processes.

mod support;

use cutover::routing::cohort::CohortKeys;
use support::{get_new_conn, Backend, Client, ConfigSpec, InProc, Jar, ProxyProcess, KEY};

const REQUESTS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_cookie_holds_for_1000_requests_over_keepalive_and_new_connections() {
    let old = Backend::fast("old").await;
    let new = Backend::fast("new").await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &new.url(), 50.0)).await;
    let client = Client::new(proxy.addr);

    // One shopper on each side.
    let mut shoppers: Vec<(Jar, String)> = Vec::new();
    for side in ["new", "old"] {
        let (jar, got) = loop {
            let mut jar = Jar::new();
            let r = client.get_jar("/", &mut jar).await;
            if r.backend() == side {
                break (jar, r.backend());
            }
        };
        assert!(jar.get("cutover_cohort").is_some());
        shoppers.push((jar, got));
    }

    for (jar, side) in &shoppers {
        let cookie = jar.header().expect("cookie");
        let headers = [("cookie", cookie.as_str())];
        for i in 0..REQUESTS {
            let r = client.get_h(&format!("/p/{i}"), &headers).await;
            assert_eq!(
                &r.backend(),
                side,
                "keep-alive request {i} moved the shopper"
            );
            assert!(
                r.set_cookie("cutover_cohort").is_none(),
                "a valid cookie is not rewritten"
            );
        }
        for i in 0..REQUESTS {
            let r = get_new_conn(proxy.addr, &format!("/c/{i}"), &headers).await;
            assert_eq!(
                &r.backend(),
                side,
                "new-connection request {i} moved the shopper"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_maps_to_the_same_storefront_in_two_processes() {
    let old = Backend::fast("old").await;
    let new = Backend::fast("new").await;
    let spec =
        ConfigSpec::new(&old.url(), &new.url(), 50.0).cohort("session_cookie = \"PHPSESSID\"");
    let a = ProxyProcess::start_spec(&spec);
    let b = ProxyProcess::start_spec(&spec);
    assert_ne!(a.pid, b.pid);
    let (ca, cb) = (Client::new(a.addr), Client::new(b.addr));
    let keys = CohortKeys::derive(KEY);

    let mut sides = [0usize; 2];
    for i in 0..300 {
        let session = format!("sess-{i:04}-{}", i * 7919);
        let cookie = format!("PHPSESSID={session}");
        let headers = [("cookie", cookie.as_str())];
        let ra = ca.get_h("/", &headers).await;
        let rb = cb.get_h("/", &headers).await;
        assert_eq!(
            ra.backend(),
            rb.backend(),
            "session {session} landed differently in the two processes"
        );
        let expected = if keys.bucket_of(&session) < 5000 {
            "new"
        } else {
            "old"
        };
        assert_eq!(
            ra.backend(),
            expected,
            "session {session}: keyed bucket decides"
        );
        assert!(
            ra.set_cookie("cutover_cohort").is_none() && rb.set_cookie("cutover_cohort").is_none(),
            "a shopper known by session needs no cohort cookie"
        );
        // The same session again on a later request stays put.
        assert_eq!(cb.get_h("/again", &headers).await.backend(), expected);
        sides[usize::from(expected == "new")] += 1;
    }
    assert!(
        sides[0] > 50 && sides[1] > 50,
        "both sides exercised: {sides:?}"
    );
}
