//! The adaptive upstream pool (issue 22), against real storefront servers on 127.0.0.1 that
//! count the connections they accept and see closed: it grows to the concurrency it meets and
//! then reuses (steady load never opens another connection), shrinks once the load is gone
//! (within `pool_peak_window`), never keeps more than `pool_idle_ceiling`, and its metrics
//! count exactly the connections the storefront accepted.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use support::metrics::{scrape, Scrape};
use support::upstream::{bind_local, serve_h1, spawn_raw};
use support::{wait_for, Backend, Client, ConfigSpec, InProc, WAIT};

const BURST: usize = 8;

/// A storefront that answers only once `n` requests are waiting (so a burst of `n` needs `n`
/// connections), and counts the connections that ended.
struct Gathering {
    backend: Backend,
    closed: Arc<AtomicUsize>,
}

impl Gathering {
    async fn start(n: usize) -> Gathering {
        let (listener, _) = bind_local().await;
        let barrier = Arc::new(tokio::sync::Barrier::new(n));
        let closed = Arc::new(AtomicUsize::new(0));
        let ended = Arc::clone(&closed);
        let backend = spawn_raw("new", listener, move |stream, log, _| {
            let barrier = Arc::clone(&barrier);
            let ended = Arc::clone(&ended);
            async move {
                serve_h1(stream, move |_req| {
                    let barrier = Arc::clone(&barrier);
                    let log = Arc::clone(&log);
                    async move {
                        log.requests.fetch_add(1, SeqCst);
                        let _ = tokio::time::timeout(WAIT, barrier.wait()).await;
                        Response::builder()
                            .header("x-backend", "new")
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap()
                    }
                })
                .await;
                ended.fetch_add(1, SeqCst);
            }
        });
        Gathering { backend, closed }
    }

    fn accepted(&self) -> usize {
        self.backend.connections()
    }

    fn closed(&self) -> usize {
        self.closed.load(SeqCst)
    }
}

/// The proxy with its admin listener on, every shopper sent to `new` with `extra` lines.
async fn proxy(new: &Gathering, extra: &str) -> (InProc, std::net::SocketAddr) {
    let old = Backend::counting("old").await;
    let spec = ConfigSpec::new(&old.url(), &new.backend.url(), 100.0).store_extra("new", extra);
    let text = spec.render().replace(
        "[admin]\naddress = \"off\"",
        "[admin]\naddress = \"127.0.0.1:0\"",
    );
    let p = InProc::start_text(&text).await;
    let admin = p.app.admin_address.expect("admin listener on");
    (p, admin)
}

/// `n` requests at once, all answered 200.
async fn burst(client: &Arc<Client>, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let client = Arc::clone(client);
            tokio::spawn(async move { client.get(&format!("/burst/{i}")).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.backend(), "new");
    }
}

/// One series of the `new` storefront's pool.
fn pool(s: &Scrape, name: &str) -> f64 {
    s.get(&format!("cutover_upstream_{name}{{storefront=\"new\"}}"))
        .unwrap_or_else(|| panic!("{name} for new: {s:?}"))
}

fn on(s: &Scrape, connection: &str) -> f64 {
    s.get(&format!(
        "cutover_upstream_requests_by_connection_total{{connection=\"{connection}\",storefront=\"new\"}}"
    ))
    .unwrap_or_else(|| panic!("requests on {connection} connections: {s:?}"))
}

/// Waits until the pool holds `n` idle connections.
async fn idle_is(admin: std::net::SocketAddr, n: usize) {
    wait_for(&format!("{n} idle connections"), WAIT, || async move {
        pool(&Scrape::parse(&scrape(admin).await), "idle_connections") == n as f64
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_reuses_the_connections_its_peak_opened() {
    // Above the old fixed default of 32 idle connections, which churned here.
    const BURST: usize = 40;
    // Shipped defaults: no pool setting at all.
    let new = Gathering::start(BURST).await;
    let (p, admin) = proxy(&new, "").await;
    let client = Arc::new(Client::new(p.addr));
    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        burst(&client, BURST).await;
        // Every connection back before the next round: the pool grew to the burst.
        idle_is(admin, BURST).await;
        assert_eq!(
            new.accepted(),
            BURST,
            "round {round}: load at {BURST} in flight keeps reusing {BURST} connections"
        );
    }
    assert_eq!(new.closed(), 0, "none was closed");
    let s = Scrape::parse(&scrape(admin).await);
    assert_eq!(pool(&s, "connections_opened_total"), BURST as f64);
    assert_eq!(on(&s, "new"), BURST as f64);
    assert_eq!(on(&s, "reused"), ((ROUNDS - 1) * BURST) as f64);
    assert_eq!(new.backend.requests(), ROUNDS * BURST);
    assert_eq!(pool(&s, "idle_target"), BURST as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_cap_below_the_load_churns_and_the_metrics_count_every_connection() {
    let new = Gathering::start(BURST).await;
    let (p, admin) = proxy(&new, "pool_max_idle = 2").await;
    let client = Arc::new(Client::new(p.addr));
    for _ in 0..4 {
        burst(&client, BURST).await;
    }
    // Every exchange over: each connection is idle or closed.
    wait_for("all connections back or closed", WAIT, || async {
        let s = Scrape::parse(&scrape(admin).await);
        pool(&s, "idle_connections") as usize + new.closed() == new.accepted()
    })
    .await;
    assert!(
        new.accepted() >= BURST + 3 * (BURST - 2),
        "two kept, six reopened per burst: {}",
        new.accepted()
    );
    let s = Scrape::parse(&scrape(admin).await);
    assert_eq!(
        pool(&s, "connections_opened_total"),
        new.accepted() as f64,
        "opened counts exactly what the storefront accepted"
    );
    assert_eq!(on(&s, "new"), new.accepted() as f64);
    assert_eq!(
        on(&s, "reused") + on(&s, "new"),
        new.backend.requests() as f64,
        "every response counted once"
    );
    assert_eq!(pool(&s, "idle_connections"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_shrinks_once_the_load_has_gone() {
    let new = Gathering::start(BURST).await;
    let (p, admin) = proxy(&new, "pool_peak_window = \"400ms\"").await;
    let client = Arc::new(Client::new(p.addr));
    burst(&client, BURST).await;
    assert_eq!(new.accepted(), BURST);
    // No more traffic: the reaper closes what the decayed peak no longer covers.
    wait_for(
        "the storefront to see every idle connection closed",
        WAIT,
        || async { new.closed() == BURST },
    )
    .await;
    let s = Scrape::parse(&scrape(admin).await);
    assert_eq!(pool(&s, "idle_connections"), 0.0);
    assert_eq!(pool(&s, "idle_target"), 0.0);
    // And it grows again when load returns.
    burst(&client, BURST).await;
    assert_eq!(new.accepted(), 2 * BURST);
    assert_eq!(
        pool(
            &Scrape::parse(&scrape(admin).await),
            "connections_opened_total"
        ),
        (2 * BURST) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_idle_connections_than_the_ceiling() {
    const CEILING: usize = 3;
    let new = Gathering::start(BURST).await;
    let (p, admin) = proxy(&new, &format!("pool_idle_ceiling = {CEILING}")).await;
    let client = Arc::new(Client::new(p.addr));
    // Watch the gauge the whole time.
    let stop = Arc::new(tokio::sync::Notify::new());
    let watcher = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut most = 0.0f64;
            loop {
                let s = Scrape::parse(&scrape(admin).await);
                most = most.max(pool(&s, "idle_connections"));
                tokio::select! {
                    _ = stop.notified() => return most,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                }
            }
        })
    };
    burst(&client, BURST).await;
    // The burst's other five connections are closed as they come back.
    wait_for("connections beyond the ceiling closed", WAIT, || async {
        new.closed() == BURST - CEILING
    })
    .await;
    idle_is(admin, CEILING).await;
    burst(&client, BURST).await;
    assert_eq!(
        new.accepted(),
        BURST + (BURST - CEILING),
        "the second burst reused the {CEILING} kept"
    );
    stop.notify_one();
    let most = watcher.await.unwrap();
    assert!(most <= CEILING as f64, "idle reached {most}");
    let s = Scrape::parse(&scrape(admin).await);
    assert_eq!(pool(&s, "idle_target"), CEILING as f64);
}
