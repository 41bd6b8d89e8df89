//! The percentage split through the real proxy: accuracy over fresh shoppers, and a rising share
//! only ever moving shoppers old -> new.

mod support;

use support::{raw, run_concurrently, Backend, Client, ConfigSpec, InProc, Jar, ProxyProcess};

const SHOPPERS: usize = 20_000;

/// Sends `SHOPPERS` cookieless requests (keep-alive, pipelined); returns how many landed on `new`
/// (by the backend that answered) and how many got a cohort cookie.
async fn fresh_shoppers(addr: std::net::SocketAddr) -> (usize, usize) {
    let request = b"GET / HTTP/1.1\r\nhost: shop.test\r\n\r\n";
    let results = raw::pipelined(addr, request, SHOPPERS, 16).await;
    assert_eq!(results.len(), SHOPPERS);
    let on_new = results
        .iter()
        .filter(|r| r.header("x-backend") == Some("new"))
        .count();
    let cookies = results
        .iter()
        .filter(|r| {
            r.header("set-cookie")
                .is_some_and(|c| c.starts_with("cutover_cohort="))
        })
        .count();
    (on_new, cookies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_accuracy_for_20000_fresh_shoppers() {
    let old = Backend::fast("old").await;
    let new = Backend::fast("new").await;
    let spec = ConfigSpec::new(&old.url(), &new.url(), 1.0);
    let proxy = InProc::start(&spec).await;
    for share in [1.0, 10.0, 50.0, 90.0] {
        proxy.reload(&spec.clone().share(share)).await;
        let before_new = new.requests();
        let (on_new, cookies) = fresh_shoppers(proxy.addr).await;
        let pct = on_new as f64 * 100.0 / SHOPPERS as f64;
        println!("share {share}%: {on_new}/{SHOPPERS} on new = {pct:.2}%");
        assert!(
            (pct - share).abs() <= 1.0,
            "share {share}%: {pct:.2}% of fresh shoppers on new"
        );
        assert_eq!(
            new.requests() - before_new,
            on_new,
            "the new backend received exactly the requests attributed to it"
        );
        assert_eq!(
            cookies, SHOPPERS,
            "every fresh shopper gets a cohort cookie"
        );
    }
}

/// The storefront each shopper lands on now, carrying (and updating) their jar.
async fn visit_all(client: &Client, jars: Vec<Jar>) -> Vec<(Jar, String)> {
    let c = client.clone();
    let jars = std::sync::Arc::new(std::sync::Mutex::new(
        jars.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    let n = jars.lock().unwrap().len();
    let j = std::sync::Arc::clone(&jars);
    run_concurrently(n, 16, move |i| {
        let c = c.clone();
        let mut jar = j.lock().unwrap()[i].take().expect("jar");
        async move {
            let r = c.get_jar("/", &mut jar).await;
            let b = r.backend();
            (jar, b)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_share_never_moves_a_new_shopper_to_old() {
    let old = Backend::counting("old").await;
    let new = Backend::counting("new").await;
    let spec = ConfigSpec::new(&old.url(), &new.url(), 10.0);
    let mut proxy = ProxyProcess::start_spec(&spec);
    let client = Client::new(proxy.addr);

    let shoppers = 2_000;
    let mut state = visit_all(&client, vec![Jar::new(); shoppers]).await;
    for (jar, _) in &state {
        assert!(jar.get("cutover_cohort").is_some(), "cohort cookie issued");
    }
    for (share, bp) in [(20.0, 2000), (50.0, 5000)] {
        proxy
            .reload_with_sighup(&spec.clone().share(share), bp)
            .await;
        let before: Vec<String> = state.iter().map(|(_, s)| s.clone()).collect();
        let jars = state.into_iter().map(|(j, _)| j).collect();
        state = visit_all(&client, jars).await;
        let mut moved_up = 0;
        for (i, (_, now)) in state.iter().enumerate() {
            assert!(
                !(before[i] == "new" && now == "old"),
                "shopper {i} moved new -> old when the share rose to {share}%"
            );
            if before[i] == "old" && now == "new" {
                moved_up += 1;
            }
        }
        let on_new = state.iter().filter(|(_, s)| s == "new").count();
        println!("share {share}%: {on_new}/{shoppers} on new, {moved_up} moved old -> new");
        assert!(moved_up > 0, "raising the share moved some shoppers to new");
        let pct = on_new as f64 * 100.0 / shoppers as f64;
        assert!(
            (pct - share).abs() <= 3.0,
            "share {share}%: {pct:.1}% of the cohort on new"
        );
    }
}
