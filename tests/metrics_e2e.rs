//! Issue 4, "Tests": the metrics, through the real proxy (`cutover::app::start`) with real upstream
//! servers, scraped from the real admin listener and compared exactly.
// The `no-metrics` benchmark baseline records nothing per request.
#![cfg(not(feature = "no-metrics"))]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use http::StatusCode;
use support::metrics::*;
use support::process::ProxyProcess;
use support::wait::{bounded, wait_for, SLOW_WAIT};
use support::{cohort_cookie, HttpClient};

const REQUESTS: &str = "cutover_requests_total";

/// `storefront,route,status_class,reason` -> count, in the label order of [`Scrape::nonzero`].
fn requests(rows: &[(&str, &str, &str, &str, f64)]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for (sf, route, class, reason, n) in rows {
        *m.entry(format!(
            "reason={reason},route={route},status_class={class},storefront={sf}"
        ))
        .or_insert(0.0) += n;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_exactly_as_requests_are_served() {
    let StatusShop { old, new, cfg } = StatusShop::new(50.0, "").await;
    let app = cutover::app::start(cfg.path()).await.expect("proxy starts");
    let (proxy, admin) = (app.addresses[0], app.admin_address.expect("admin on"));
    let c = HttpClient::new();
    let on_new = cohort_cookie(0);
    let on_old = cohort_cookie(9999);

    let before = Scrape::fetch(&c, admin).await;
    assert!(
        before.nonzero(REQUESTS).is_empty(),
        "nothing served yet: {:?}",
        before.nonzero(REQUESTS)
    );

    // Split by bucket: 0 is below any share > 0, 9999 above any share < 100%.
    for _ in 0..3 {
        let a = c.get(proxy, "/products/1", &[("cookie", &on_new)]).await;
        assert_eq!((a.status, a.storefront()), (StatusCode::OK, "new"));
        assert_eq!(a.header("x-seen-reason"), "split");
    }
    for _ in 0..2 {
        let a = c.get(proxy, "/products/2", &[("cookie", &on_old)]).await;
        assert_eq!((a.status, a.storefront()), (StatusCode::OK, "old"));
    }
    // A rule beats the bucket.
    let a = c.get(proxy, "/help/shipping", &[("cookie", &on_new)]).await;
    assert_eq!((a.status, a.storefront()), (StatusCode::OK, "old"));
    assert_eq!(a.header("x-seen-reason"), "rule");
    // The override beats the bucket, by query and by header.
    for _ in 0..2 {
        let a = c.get(proxy, "/?cutover=new", &[("cookie", &on_old)]).await;
        assert_eq!((a.status, a.storefront()), (StatusCode::OK, "new"));
        assert_eq!(a.header("x-seen-reason"), "override");
    }
    let a = c
        .get(
            proxy,
            "/cart",
            &[("cookie", &on_new), ("x-cutover-force", "old")],
        )
        .await;
    assert_eq!((a.status, a.storefront()), (StatusCode::OK, "old"));
    // Redirects (temporary while the shift is partial), for a shopper on each side.
    for (cookie, sf) in [(&on_new, "new"), (&on_old, "old")] {
        let a = c.get(proxy, "/old-page", &[("cookie", cookie)]).await;
        assert_eq!(a.status, StatusCode::FOUND);
        assert_eq!((a.header("location"), a.storefront()), ("/new-page", sf));
    }
    // A storefront that refuses connections: 502, counted as a connect error.
    let a = c.get(proxy, "/down/now", &[]).await;
    assert_eq!(
        (a.status, a.storefront()),
        (StatusCode::BAD_GATEWAY, "gone")
    );
    // StatusStore statuses are counted by class; a 404 on new is a redirect miss, on old it is not.
    let a = c.get(proxy, "/status/404", &[("cookie", &on_new)]).await;
    assert_eq!((a.status, a.storefront()), (StatusCode::NOT_FOUND, "new"));
    let a = c.get(proxy, "/status/404", &[("cookie", &on_old)]).await;
    assert_eq!((a.status, a.storefront()), (StatusCode::NOT_FOUND, "old"));
    let a = c.get(proxy, "/status/503", &[("cookie", &on_new)]).await;
    assert_eq!(
        (a.status, a.storefront()),
        (StatusCode::SERVICE_UNAVAILABLE, "new")
    );
    // New shoppers get a bucket: counted as assigned where the split sent them.
    let mut fresh: BTreeMap<String, f64> = BTreeMap::new();
    for _ in 0..4 {
        let a = c.get(proxy, "/fresh", &[]).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.header("set-cookie").starts_with("cutover_cohort="));
        *fresh.entry(a.storefront().to_string()).or_default() += 1.0;
    }
    let fresh_on = |sf: &str| fresh.get(sf).copied().unwrap_or(0.0);

    let expected = requests(&[
        ("new", "default", "2xx", "split", 3.0 + fresh_on("new")),
        ("old", "default", "2xx", "split", 2.0 + fresh_on("old")),
        ("old", "help", "2xx", "rule", 1.0),
        ("new", "default", "2xx", "override", 2.0),
        ("old", "default", "2xx", "override", 1.0),
        ("new", "default", "3xx", "redirect", 1.0),
        ("old", "default", "3xx", "redirect", 1.0),
        ("gone", "down", "5xx", "rule", 1.0),
        ("new", "default", "4xx", "split", 1.0),
        ("old", "default", "4xx", "split", 1.0),
        ("new", "default", "5xx", "split", 1.0),
    ]);
    let total: f64 = expected.values().sum();
    assert_eq!(total, 19.0);
    // A request is counted, then leaves the in-flight gauge: wait for both.
    let s = scrape_until(&c, admin, "every request recorded", |s| {
        s.sum(REQUESTS, &[]) >= total && s.sum("cutover_requests_in_flight", &[]) == 0.0
    })
    .await;
    assert_eq!(s.nonzero(REQUESTS), expected);

    // Histogram counts equal request counts, per storefront and route; time to first byte only for
    // requests a storefront answered (not the redirects, not the 502).
    for (sf, route) in [
        ("new", "default"),
        ("old", "default"),
        ("old", "help"),
        ("gone", "down"),
        ("new", "help"),
        ("gone", "default"),
    ] {
        let l = [("storefront", sf), ("route", route)];
        let served = s.sum(REQUESTS, &l);
        let redirected = s.sum(REQUESTS, &[l[0], l[1], ("reason", "redirect")]);
        let failed = s.sum(
            "cutover_upstream_errors_total",
            &[("storefront", sf), ("kind", "connect")],
        );
        let duration_count = s.value("cutover_request_duration_seconds_count", &l);
        assert_eq!(duration_count, served, "duration count {sf}/{route}");
        let inf = [l[0], l[1], ("le", "+Inf")];
        assert_eq!(
            s.value("cutover_request_duration_seconds_bucket", &inf),
            served
        );
        let ttfb_expected = if route == "down" {
            served - failed
        } else {
            served - redirected
        };
        assert_eq!(
            s.value("cutover_upstream_time_to_first_byte_seconds_count", &l),
            ttfb_expected,
            "ttfb count {sf}/{route}"
        );
    }
    assert_eq!(
        s.sum("cutover_request_duration_seconds_count", &[]),
        total,
        "one observation per request"
    );

    // StatusStore errors, redirects, misses, assignments, in flight.
    assert_eq!(
        s.nonzero("cutover_upstream_errors_total"),
        BTreeMap::from([("kind=connect,storefront=gone".to_string(), 1.0)])
    );
    assert_eq!(
        s.nonzero("cutover_redirects_served_total"),
        BTreeMap::from([("status=302".to_string(), 2.0)])
    );
    assert_eq!(s.value("cutover_redirect_misses_total", &[]), 1.0);
    let assigned: BTreeMap<String, f64> = fresh
        .iter()
        .map(|(sf, n)| (format!("storefront={sf}"), *n))
        .collect();
    assert_eq!(s.nonzero("cutover_shoppers_assigned_total"), assigned);
    assert_eq!(s.sum("cutover_requests_in_flight", &[]), 0.0);
    assert_eq!(s.value("cutover_split_new_share_ratio", &[]), 0.5);
    assert_eq!(
        s.nonzero("cutover_split_side_info"),
        BTreeMap::from([
            ("side=new,storefront=new".to_string(), 1.0),
            ("side=old,storefront=old".to_string(), 1.0),
        ])
    );
    assert_eq!(
        s.value("cutover_redirect_table_entries", &[("table", "plan")]),
        1.0
    );

    // What the storefronts saw agrees: everything but redirects and the refused storefront.
    let old_expected = expected
        .iter()
        .filter(|(k, _)| k.ends_with("storefront=old") && !k.contains("redirect"))
        .map(|(_, v)| v)
        .sum::<f64>();
    let new_expected = expected
        .iter()
        .filter(|(k, _)| k.ends_with("storefront=new") && !k.contains("redirect"))
        .map(|(_, v)| v)
        .sum::<f64>();
    assert_eq!(old.hits.load(Ordering::Relaxed) as f64, old_expected);
    assert_eq!(new.hits.load(Ordering::Relaxed) as f64, new_expected);

    // HttpClient connections: the keep-alive client's connections count as open until it hangs up.
    assert!(s.value("cutover_client_connections_accepted_total", &[]) >= 1.0);
    assert!(s.value("cutover_client_connections_open", &[]) >= 1.0);
    drop(c);
    let probe = HttpClient::new();
    scrape_until(&probe, admin, "client connections closed", |s| {
        // The probe's own admin connection is not a client connection.
        s.value("cutover_client_connections_open", &[]) == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_while_running_and_503_once_draining() {
    let StatusShop {
        old: _old,
        new: _new,
        cfg,
    } = StatusShop::new(10.0, "").await;
    let app = cutover::app::start(cfg.path()).await.expect("proxy starts");
    let admin = app.admin_address.expect("admin on");
    let c = HttpClient::new();
    let a = c.get(admin, "/readyz", &[]).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ready\n"));
    let a = c.get(admin, "/healthz", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = c.get(admin, "/metrics", &[]).await;
    assert!(a.header("content-type").starts_with("text/plain"));
    assert_eq!(
        Scrape::parse(&a.body).value(
            "cutover_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // No client connections are open, so the drain is immediate; the admin listener stays up.
    assert!(bounded("drain", app.drain()).await, "clean drain");
    let a = c.get(admin, "/readyz", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let a = c.get(admin, "/healthz", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_cardinality_stays_fixed_under_10000_distinct_paths() {
    let StatusShop {
        old: _old,
        new: _new,
        cfg,
    } = StatusShop::new(50.0, "").await;
    let app = cutover::app::start(cfg.path()).await.expect("proxy starts");
    let (proxy, admin) = (app.addresses[0], app.admin_address.expect("admin on"));
    let c = HttpClient::new();

    let before = Scrape::fetch(&c, admin).await;
    const N: usize = 10_000;
    const TASKS: usize = 8;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let cookies = [cohort_cookie(0), cohort_cookie(9999)];
            for i in (t..N).step_by(TASKS) {
                // Distinct paths, queries, hosts, request ids and methods' worth of client input,
                // across every reason and several statuses.
                let path = match i % 5 {
                    0 => format!("/p/{i}/x%20{i}?q={i}&utm_source={i}"),
                    1 => format!("/help/{i}"),
                    2 => format!("/status/404/{i}"),
                    3 => format!("/?cutover=new&n={i}"),
                    _ => format!("/old-page?v={i}"),
                };
                let host = format!("h{i}.shop.test");
                let rid = format!("rid-{i}");
                let cookie = &cookies[i % 2];
                let a = c
                    .get(
                        proxy,
                        &path,
                        &[("host", &host), ("x-request-id", &rid), ("cookie", cookie)],
                    )
                    .await;
                assert!(a.status.as_u16() < 500, "{path}: {}", a.status);
            }
        }));
    }
    for t in tasks {
        bounded("10,000 requests", t)
            .await
            .expect("load task panicked");
    }
    let after = scrape_until(&c, admin, "10,000 requests recorded", |s| {
        s.sum(REQUESTS, &[]) >= N as f64
    })
    .await;

    let names = |s: &Scrape| s.series.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        after.len(),
        before.len(),
        "series appeared or vanished under distinct client input"
    );
    assert_eq!(names(&after), names(&before));
    assert_eq!(after.sum(REQUESTS, &[]), N as f64);
    assert_eq!(
        after.sum("cutover_request_duration_seconds_count", &[]),
        N as f64
    );
    // Every reason was exercised, under labels the config defines.
    for reason in ["split", "rule", "override", "redirect"] {
        assert!(after.sum(REQUESTS, &[("reason", reason)]) > 0.0, "{reason}");
    }
    assert!(after.value("cutover_redirect_misses_total", &[]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_line_matches_the_response() {
    // A relative path: next to the config file, like every other file a config names.
    let StatusShop {
        old: _old,
        new,
        cfg,
    } = StatusShop::new(
        50.0,
        "[access_log]\nenabled = true\npath = \"access.log\"\n",
    )
    .await;
    let log = cfg.file("access.log");
    let app = cutover::app::start(cfg.path()).await.expect("proxy starts");
    let proxy = app.addresses[0];
    let c = HttpClient::new();
    let (on_new, on_old) = (cohort_cookie(0), cohort_cookie(9999));

    // (request id or None, path+query, cookie) -> the answer, kept for comparison.
    let mut answers = Vec::new();
    for (rid, pq, cookie) in [
        (Some("e2e-split"), "/products/7?email=a%40b.test", &on_new),
        (Some("e2e-redirect"), "/old-page", &on_old),
        (Some("e2e-refused"), "/down/x", &on_new),
        (Some("e2e-404"), "/status/404/gone", &on_new),
        (None, "/help/shipping", &on_old),
    ] {
        let mut h = vec![("cookie", cookie.as_str()), ("host", "shop.test:8080")];
        if let Some(rid) = rid {
            h.push(("x-request-id", rid));
        }
        let a = c.get(proxy, pq, &h).await;
        // The id cutover used: the client's, or the one it generated and sent upstream.
        let id = rid.map_or_else(|| a.header("x-seen-request-id").to_string(), String::from);
        assert!(!id.is_empty(), "{pq}: request id");
        answers.push((id, pq, a));
    }
    let lines = bounded("access log lines", async {
        loop {
            let l = read_lines(&log);
            if l.len() >= answers.len() {
                break l;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(lines.len(), answers.len(), "one line per request");
    let by_id: BTreeMap<String, serde_json::Value> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
            (v["request_id"].as_str().expect("request id").to_string(), v)
        })
        .collect();

    for (id, pq, a) in &answers {
        let line = by_id
            .get(id)
            .unwrap_or_else(|| panic!("no line for {id}: {lines:#?}"));
        let path = pq.split('?').next().unwrap();
        let reason = match a.status {
            StatusCode::FOUND => "redirect".to_string(),
            StatusCode::BAD_GATEWAY => "rule".to_string(),
            _ => a.header("x-seen-reason").to_string(),
        };
        let route = match path {
            p if p.starts_with("/help") => "help",
            p if p.starts_with("/down") => "down",
            _ => "default",
        };
        assert_eq!(line["status"], a.status.as_u16(), "{id}");
        assert_eq!(line["storefront"], a.storefront(), "{id}");
        assert_eq!(line["route"], route, "{id}");
        assert_eq!(line["reason"], reason.as_str(), "{id}");
        assert_eq!(line["bytes_sent"], a.body.len(), "{id}");
        assert_eq!(line["method"], "GET", "{id}");
        assert_eq!(line["host"], "shop.test:8080", "{id}");
        // Only the path: query strings carry emails and tokens.
        assert_eq!(line["path"], path, "{id}");
        assert_eq!(line["client_ip"], "127.0.0.1", "{id}");
        assert!(line["total_ms"].as_f64().is_some(), "{id}");
        let answered_upstream = !matches!(a.status, StatusCode::FOUND | StatusCode::BAD_GATEWAY);
        assert_eq!(line["upstream_ms"].is_number(), answered_upstream, "{id}");
        assert_eq!(line["time"].as_str().map(str::len), Some(24), "{id}");
    }
    assert!(!lines.iter().any(|l| l.contains("a%40b")), "query logged");

    // `time` is when the request arrived: a request held at the storefront while another one
    // comes and goes is logged with the earlier time.
    let seen = new.hits.load(Ordering::Relaxed);
    let held = tokio::spawn({
        let c = c.clone();
        let cookie = on_new.clone();
        async move {
            c.get(
                proxy,
                "/hold/1",
                &[("cookie", &cookie), ("x-request-id", "e2e-held")],
            )
            .await
        }
    });
    wait_for("held request reaches the storefront", SLOW_WAIT, || {
        std::future::ready((new.hits.load(Ordering::Relaxed) > seen).then_some(()))
    })
    .await;
    let a = c
        .get(
            proxy,
            "/products/9",
            &[("cookie", &on_new), ("x-request-id", "e2e-later")],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    // Let the clock move past the later request's millisecond before the held one ends, so a
    // log that stamped end times could not pass by coincidence.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    new.release.add_permits(1);
    let a = bounded("held request", held).await.expect("held task");
    assert_eq!(a.status, StatusCode::OK);
    let times = bounded("held lines", async {
        loop {
            let found: BTreeMap<String, String> = read_lines(&log)
                .iter()
                .filter_map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).ok()?;
                    let id = v["request_id"].as_str()?.to_string();
                    Some((id, v["time"].as_str()?.to_string()))
                })
                .collect();
            if found.contains_key("e2e-held") && found.contains_key("e2e-later") {
                break found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        times["e2e-held"] <= times["e2e-later"],
        "held request logged at its end: {times:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_keeps_the_last_line_when_the_binary_is_stopped() {
    let StatusShop { old, new, cfg } = StatusShop::new(
        50.0,
        "[access_log]\nenabled = true\npath = \"access.log\"\n",
    )
    .await;
    let mut proc = ProxyProcess::spawn(cfg.path());
    let (proxy, admin) = (proc.addr, proc.admin);
    let c = HttpClient::new();
    for i in 0..3 {
        let a = c
            .get(
                proxy,
                &format!("/p/{i}"),
                &[("x-request-id", &format!("early-{i}"))],
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    // A request still at the storefront when SIGTERM arrives: the drain waits for it, and its
    // line is written in the last moments before the process exits.
    let hits = old.hits.load(Ordering::Relaxed) + new.hits.load(Ordering::Relaxed);
    let held = tokio::spawn({
        let c = c.clone();
        async move {
            c.get(proxy, "/hold/last", &[("x-request-id", "last")])
                .await
        }
    });
    wait_for("held request reaches a storefront", SLOW_WAIT, || {
        std::future::ready(
            (old.hits.load(Ordering::Relaxed) + new.hits.load(Ordering::Relaxed) > hits)
                .then_some(()),
        )
    })
    .await;
    proc.signal("TERM");
    scrape_until_status(&c, admin, "/readyz", StatusCode::SERVICE_UNAVAILABLE).await;
    old.release.add_permits(1);
    new.release.add_permits(1);
    let a = bounded("held request", held).await.expect("held task");
    assert_eq!(a.status, StatusCode::OK);
    drop(c); // hang up, so the drain ends right after the held request
    let status = bounded("exit after SIGTERM", async {
        loop {
            if let Some(st) = proc.child.try_wait().expect("wait") {
                break st;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(status.success(), "exit status {status}");
    let ids: Vec<String> = read_lines(&cfg.file("access.log"))
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["request_id"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(ids, ["early-0", "early-1", "early-2", "last"]);
}

/// Polls an admin path until it answers `want` (bounded).
async fn scrape_until_status(
    c: &HttpClient,
    admin: std::net::SocketAddr,
    path: &str,
    want: StatusCode,
) {
    bounded(&format!("{path} -> {want}"), async {
        while c.get(admin, path, &[]).await.status != want {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
