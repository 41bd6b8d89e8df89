use std::time::Duration;

use http::StatusCode;

use super::*;

/// Value of the sample `name{labels}` in exposition text, where `labels` is the exact label set as
/// the encoder prints it (sorted by name), or "" for an unlabelled series.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&key).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().expect("sample value is a number"))
}

fn series_count(text: &str, name: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .count()
}

fn req_labels(route: &str, reason: &str, sf: &str, class: &str) -> String {
    format!(r#"reason="{reason}",route="{route}",status_class="{class}",storefront="{sf}""#)
}

#[test]
fn record_moves_exactly_the_right_counter() {
    let m = Metrics::new();
    let h = m.handles(&["old", "new"], &["checkout", "default"]);
    h.record(
        1,
        0,
        Reason::Split,
        StatusCode::OK,
        Some(Duration::from_millis(20)),
        Duration::from_millis(30),
    );
    h.record(
        1,
        0,
        Reason::Split,
        StatusCode::OK,
        None,
        Duration::from_millis(1),
    );
    h.record(
        0,
        1,
        Reason::Redirect,
        StatusCode::MOVED_PERMANENTLY,
        None,
        Duration::from_millis(1),
    );
    h.record(
        0,
        1,
        Reason::Rule,
        StatusCode::BAD_GATEWAY,
        None,
        Duration::from_millis(2),
    );
    let t = m.encode();
    let get = |route, reason, sf, class| {
        sample(&t, REQUESTS_TOTAL, &req_labels(route, reason, sf, class))
    };
    assert_eq!(get("checkout", "split", "new", "2xx"), Some(2.0));
    assert_eq!(get("default", "redirect", "old", "3xx"), Some(1.0));
    assert_eq!(get("default", "rule", "old", "5xx"), Some(1.0));
    // Neighbours stay at zero but exist, so PromQL over them returns series before any traffic.
    assert_eq!(get("checkout", "split", "old", "2xx"), Some(0.0));
    assert_eq!(get("checkout", "pin", "new", "2xx"), Some(0.0));
    let total: f64 = t
        .lines()
        .filter(|l| l.starts_with(&format!("{REQUESTS_TOTAL}{{")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 4.0);
}

#[test]
fn histogram_count_equals_requests() {
    let m = Metrics::new();
    let h = m.handles(&["old", "new"], &["default"]);
    for i in 0..37u64 {
        let ttfb = (i % 2 == 0).then(|| Duration::from_millis(i));
        h.record(
            0,
            0,
            Reason::Split,
            StatusCode::OK,
            ttfb,
            Duration::from_millis(i * 10),
        );
    }
    let t = m.encode();
    let l = r#"route="default",storefront="old""#;
    assert_eq!(
        sample(&t, &format!("{REQUEST_DURATION_SECONDS}_count"), l),
        Some(37.0)
    );
    assert_eq!(
        sample(&t, &format!("{UPSTREAM_TTFB_SECONDS}_count"), l),
        Some(19.0)
    );
    let inf = format!(r#"{l},le="+Inf""#);
    assert_eq!(
        sample(&t, &format!("{REQUEST_DURATION_SECONDS}_bucket"), &inf),
        Some(37.0)
    );
    // 0 ms, 10 ms: the 0.01 s bucket holds exactly two observations.
    let le10 = format!(r#"{l},le="0.01""#);
    assert_eq!(
        sample(&t, &format!("{REQUEST_DURATION_SECONDS}_bucket"), &le10),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &t,
            &format!("{REQUEST_DURATION_SECONDS}_count"),
            r#"route="default",storefront="new""#
        ),
        Some(0.0)
    );
}

#[test]
fn errors_assignments_redirects_and_in_flight() {
    let m = Metrics::new();
    let h = m.handles(&["old", "new"], &["default"]);
    h.upstream_error(1, UpstreamErrorKind::Connect);
    h.upstream_error(1, UpstreamErrorKind::Connect);
    h.upstream_error(0, UpstreamErrorKind::Tls);
    h.assigned(1);
    h.redirect_served(StatusCode::PERMANENT_REDIRECT);
    h.redirect_served(StatusCode::IM_A_TEAPOT);
    h.redirect_missed();
    let g1 = h.start(1);
    let g2 = h.start(1);
    let t = m.encode();
    assert_eq!(
        sample(
            &t,
            UPSTREAM_ERRORS_TOTAL,
            r#"kind="connect",storefront="new""#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&t, UPSTREAM_ERRORS_TOTAL, r#"kind="tls",storefront="old""#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &t,
            UPSTREAM_ERRORS_TOTAL,
            r#"kind="timeout",storefront="new""#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&t, SHOPPERS_ASSIGNED_TOTAL, r#"storefront="new""#),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, REDIRECTS_SERVED_TOTAL, r#"status="308""#),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, REDIRECTS_SERVED_TOTAL, r#"status="other""#),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, REDIRECTS_SERVED_TOTAL, r#"status="301""#),
        Some(0.0)
    );
    assert_eq!(sample(&t, REDIRECT_MISSES_TOTAL, ""), Some(1.0));
    assert_eq!(
        sample(&t, REQUESTS_IN_FLIGHT, r#"storefront="new""#),
        Some(2.0)
    );
    drop((g1, g2));
    assert_eq!(
        sample(&m.encode(), REQUESTS_IN_FLIGHT, r#"storefront="new""#),
        Some(0.0)
    );
}

#[test]
fn handles_are_bounded_and_survive_reloads() {
    let m = Metrics::new();
    let sfs: Vec<String> = (0..10).map(|i| format!("sf{i}")).collect();
    let routes: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    let sfs: Vec<&str> = sfs.iter().map(String::as_str).collect();
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let h = m.handles(&sfs, &routes);
    h.record(
        9,
        19,
        Reason::Pin,
        StatusCode::OK,
        None,
        Duration::from_millis(5),
    );
    // A reload with the same names resolves the same series: counts run on, nothing new appears.
    let h2 = m.handles(&sfs, &routes);
    h2.record(
        9,
        19,
        Reason::Pin,
        StatusCode::OK,
        None,
        Duration::from_millis(5),
    );
    let t = m.encode();
    assert_eq!(
        series_count(&t, REQUESTS_TOTAL),
        10 * 20 * 5 * Reason::ALL.len()
    );
    assert_eq!(
        series_count(&t, &format!("{REQUEST_DURATION_SECONDS}_count")),
        10 * 20
    );
    assert_eq!(
        series_count(&t, UPSTREAM_ERRORS_TOTAL),
        10 * UpstreamErrorKind::ALL.len()
    );
    assert_eq!(
        sample(&t, REQUESTS_TOTAL, &req_labels("r19", "pin", "sf9", "2xx")),
        Some(2.0)
    );
}

#[test]
fn retain_drops_names_a_reload_removed() {
    let m = Metrics::new();
    let _old = m.handles(&["old", "new"], &["a", "b"]);
    let live = m.handles(&["old", "next"], &["a"]);
    m.retain(&live);
    let t = m.encode();
    assert_eq!(series_count(&t, REQUESTS_TOTAL), 2 * 5 * Reason::ALL.len());
    assert!(!t.contains(r#"storefront="new""#));
    assert!(!t.contains(r#"route="b""#));
    live.record(1, 0, Reason::Split, StatusCode::OK, None, Duration::ZERO);
    assert_eq!(
        sample(
            &m.encode(),
            REQUESTS_TOTAL,
            &req_labels("a", "split", "next", "2xx")
        ),
        Some(1.0)
    );
}

#[test]
fn reload_share_sides_and_build_info() {
    let m = Metrics::new();
    m.reload(true, 1);
    m.reload(false, 2);
    let t = m.encode();
    assert_eq!(
        sample(&t, CONFIG_RELOADS_TOTAL, r#"result="applied""#),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, CONFIG_RELOADS_TOTAL, r#"result="rejected""#),
        Some(1.0)
    );
    assert_eq!(sample(&t, CONFIG_LAST_RELOAD_SUCCESSFUL, ""), Some(0.0));
    assert_eq!(
        sample(&t, CONFIG_GENERATION, ""),
        Some(1.0),
        "a rejected load keeps the generation"
    );
    assert!(sample(&t, CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS, "").unwrap() > 1.6e9);
    m.reload(true, 3);
    assert_eq!(sample(&m.encode(), CONFIG_GENERATION, ""), Some(3.0));
    assert_eq!(
        sample(&m.encode(), CONFIG_LAST_RELOAD_SUCCESSFUL, ""),
        Some(1.0)
    );

    m.set_share_bp(2500);
    m.set_split_sides("legacy", "shopx");
    m.set_split_sides("legacy", "shopy");
    m.set_build_info("9.9.9");
    m.set_redirect_table("seo", 1200, 4);
    let t = m.encode();
    assert_eq!(sample(&t, SPLIT_NEW_SHARE_RATIO, ""), Some(0.25));
    assert_eq!(
        sample(&t, SPLIT_SIDE_INFO, r#"side="new",storefront="shopy""#),
        Some(1.0)
    );
    assert_eq!(series_count(&t, SPLIT_SIDE_INFO), 2);
    assert_eq!(sample(&t, BUILD_INFO, r#"version="9.9.9""#), Some(1.0));
    assert_eq!(series_count(&t, BUILD_INFO), 1);
    assert_eq!(
        sample(&t, REDIRECT_TABLE_ENTRIES, r#"table="seo""#),
        Some(1200.0)
    );
    assert_eq!(
        sample(&t, REDIRECT_TABLE_GENERATION, r#"table="seo""#),
        Some(4.0)
    );
}

#[test]
fn redirect_tables_follow_the_live_set() {
    let m = Metrics::new();
    m.set_redirect_tables([("seo", 1200, 4), ("blog", 30, 4)]);
    m.set_redirect_tables([("seo", 1300, 5)]);
    let t = m.encode();
    assert_eq!(
        sample(&t, REDIRECT_TABLE_ENTRIES, r#"table="seo""#),
        Some(1300.0)
    );
    assert_eq!(
        sample(&t, REDIRECT_TABLE_GENERATION, r#"table="seo""#),
        Some(5.0)
    );
    assert_eq!(series_count(&t, REDIRECT_TABLE_ENTRIES), 1);
    assert_eq!(series_count(&t, REDIRECT_TABLE_GENERATION), 1);
    m.set_redirect_tables([]);
    assert_eq!(series_count(&m.encode(), REDIRECT_TABLE_ENTRIES), 0);
}

#[test]
fn connections() {
    let m = Metrics::new();
    let g = m.client_connection();
    m.connection_rejected();
    let t = m.encode();
    assert_eq!(sample(&t, CLIENT_CONNECTIONS_OPEN, ""), Some(1.0));
    assert_eq!(sample(&t, CLIENT_CONNECTIONS_ACCEPTED_TOTAL, ""), Some(1.0));
    assert_eq!(sample(&t, CLIENT_CONNECTIONS_REJECTED_TOTAL, ""), Some(1.0));
    drop(g);
    assert_eq!(sample(&m.encode(), CLIENT_CONNECTIONS_OPEN, ""), Some(0.0));
}

#[test]
fn status_classes_clamp() {
    use super::request::status_class_index;
    let idx = |c: u16| status_class_index(StatusCode::from_u16(c).unwrap());
    assert_eq!(
        [idx(100), idx(204), idx(308), idx(404), idx(503), idx(999)],
        [0, 1, 2, 3, 4, 4]
    );
}

/// The real gate is tests/promtool/check.sh; this catches format regressions early where promtool is
/// installed.
#[test]
fn exposition_passes_promtool() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        // In CI a missing tool is a broken install step, not a reason to pass.
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not installed under CI=true (tests/run installs Debian's prometheus)"
        );
        eprintln!(
            "NOTICE: promtool not installed; skipping exposition lint (tests/run installs it)"
        );
        return;
    };
    let m = Metrics::new();
    let h = m.handles(&["old", "new"], &["home", "default"]);
    h.record(
        0,
        0,
        Reason::Split,
        StatusCode::OK,
        Some(Duration::from_millis(3)),
        Duration::from_millis(9),
    );
    m.reload(true, 1);
    m.set_split_sides("old", "new");
    m.set_redirect_table("main", 3, 1);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(m.encode().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}
