//! Certificates change under a running proxy (issue 6): a renewal is picked up with no failed
//! handshake, a bad pair is refused while the old certificate keeps serving, and `cutover check`
//! names every certificate problem with its file.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use support::conn::*;
use support::dir::{replace_atomically, write_config};
use support::metrics::{metric_sum, scrape};
use support::process::{check, ProxyProcess};
use support::proxy::{start_in, storefronts, tls_listener};
use support::stores::{recording_store, RecordingStore};
use support::tls::*;
use support::upstream::free_port;
use support::wait::{bounded, wait_for, SLOW_WAIT};

const HOST: &str = "www.shop.example";

fn config(old: &RecordingStore, new: &RecordingStore, listen: &str, admin: &str) -> String {
    format!(
        "{}\n[admin]\naddress = \"{admin}\"\n\n{}\n[split]\nnew_share = 0\n",
        tls_listener(&[("www", "www", None)], "").replace("127.0.0.1:0", listen),
        storefronts(old, new),
    )
}

/// The real binary under a bounded load of fresh handshakes: the cert and key files are
/// replaced by atomic renames and SIGHUP is sent. No handshake or request fails, every
/// handshake that starts after the first one presenting the new certificate presents it too,
/// and a connection opened before the renewal keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotated_under_load_without_failed_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("rotation CA");
    let before = ca.leaf(&[HOST]);
    let after = ca.leaf(&[HOST]);
    before.write(dir.path(), "www");
    let (old, new) = (recording_store("old").await, recording_store("new").await);
    let (port, admin_port) = (free_port(), free_port());
    let path = write_config(
        dir.path(),
        &config(
            &old,
            &new,
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{admin_port}"),
        ),
    );
    let proc = ProxyProcess::spawn(&path);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let roots = || ca.roots();
    let cfg = client(roots(), &[b"http/1.1"]);
    let first = wait_for("the proxy accepts TLS", SLOW_WAIT, || {
        let cfg = cfg.clone();
        async move { connect(addr, HOST, cfg).await.ok() }
    })
    .await;
    assert!(presented(&first) == before.der, "{}", proc.log_text());
    drop(first);

    // A long-lived h2 connection from before the renewal.
    let early = bounded("early", connect(addr, HOST, client(roots(), &[b"h2"])))
        .await
        .unwrap();
    assert!(presented(&early) == before.der);
    let mut early = Conn::negotiated(early).await;
    assert_eq!(early.get(HOST, "/early", &[]).await.status, StatusCode::OK);

    let done = Arc::new(AtomicUsize::new(0));
    let new_seen = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let after_der = after.der.clone();
    let mut workers = Vec::new();
    for w in 0..3 {
        let (done, new_seen, stop, failures) = (
            done.clone(),
            new_seen.clone(),
            stop.clone(),
            failures.clone(),
        );
        let cfg = cfg.clone();
        let after_der = after_der.clone();
        workers.push(tokio::spawn(async move {
            // Bounded in count; the test stops it much earlier.
            for i in 0..3000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let started_after_new = new_seen.load(Ordering::SeqCst);
                let tls = match bounded("handshake", connect(addr, HOST, cfg.clone())).await {
                    Ok(t) => t,
                    Err(e) => {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("worker {w} #{i}: handshake: {e}"));
                        continue;
                    }
                };
                let is_new = presented(&tls) == after_der;
                if is_new {
                    new_seen.store(true, Ordering::SeqCst);
                } else if started_after_new {
                    failures.lock().unwrap().push(format!(
                        "worker {w} #{i}: old certificate after the new one was served"
                    ));
                }
                let got = Conn::negotiated(tls).await.get(HOST, "/", &[]).await;
                if got.status != StatusCode::OK {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("worker {w} #{i}: status {}", got.status));
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    let count = |n| {
        let done = done.clone();
        async move { (done.load(Ordering::SeqCst) >= n).then_some(()) }
    };
    wait_for("load before the renewal", SLOW_WAIT, || count(20)).await;
    after.rotate_into(dir.path(), "www");
    proc.signal("HUP");
    wait_for(
        "a handshake presents the new certificate",
        SLOW_WAIT,
        || {
            let seen = new_seen.load(Ordering::SeqCst);
            async move { seen.then_some(()) }
        },
    )
    .await;
    let at = done.load(Ordering::SeqCst);
    wait_for("load after the renewal", SLOW_WAIT, || count(at + 30)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        bounded("worker", w).await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}\n{}", proc.log_text());

    // A fresh handshake: the new certificate. The early connection: still up, old certificate.
    let fresh = bounded("fresh", connect(addr, HOST, cfg.clone()))
        .await
        .unwrap();
    assert!(presented(&fresh) == after.der);
    assert_eq!(early.get(HOST, "/late", &[]).await.status, StatusCode::OK);

    let text = scrape(admin).await;
    assert_eq!(
        metric_sum(&text, "cutover_tls_handshake_errors_total", &[]),
        0.0,
        "{text}"
    );
    assert!(metric_sum(&text, "cutover_tls_reloads_total", &[("result", "applied")]) >= 1.0);
    let expiry = metric_sum(
        &text,
        "cutover_tls_certificate_expiry_seconds",
        &[("certificate", "www")],
    );
    assert!(expiry > 300.0 * 86_400.0, "expiry gauge: {expiry}");
}

/// A key that does not match and a garbage certificate file, each picked up by the file
/// watcher: refused (config reload and certificate reload counted as rejected, the reason
/// naming the file), the old certificate still served; a good pair afterwards goes live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_key_or_garbage_file_is_refused_and_the_old_certificate_serves() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("reject CA");
    let good = ca.leaf(&[HOST]);
    let other = ca.leaf(&[HOST]);
    let renewed = ca.leaf(&[HOST]);
    good.write(dir.path(), "www");
    let (old, new) = (recording_store("old").await, recording_store("new").await);
    let app = start_in(
        dir.path(),
        &config(&old, &new, "127.0.0.1:0", "127.0.0.1:0"),
    )
    .await;
    let (addr, admin) = (app.addresses[0], app.admin_address.unwrap());
    let cfg = client(ca.roots(), &[b"h2", b"http/1.1"]);
    let serves = |want: &Leaf| {
        let cfg = cfg.clone();
        let want = want.der.clone();
        async move {
            let tls = bounded("handshake", connect(addr, HOST, cfg))
                .await
                .unwrap();
            let same = presented(&tls) == want;
            let got = Conn::negotiated(tls).await.get(HOST, "/", &[]).await;
            assert_eq!(got.status, StatusCode::OK);
            same
        }
    };
    assert!(serves(&good).await);
    let counter = move |name: &'static str, result: &'static str| async move {
        metric_sum(&scrape(admin).await, name, &[("result", result)])
    };
    let reloads_reach = move |name: &'static str, result: &'static str, n: f64| async move {
        wait_for(
            &format!("{name}{{result={result}}} >= {n}"),
            SLOW_WAIT,
            || async move { (counter(name, result).await >= n).then_some(()) },
        )
        .await
    };
    let config_rejected = counter("cutover_config_reloads_total", "rejected").await;
    let tls_rejected = counter("cutover_tls_reloads_total", "rejected").await;
    let applied = counter("cutover_config_reloads_total", "applied").await;

    // 1. A key from another certificate (a renewal that replaced the key only).
    replace_atomically(&dir.path().join("www.key"), other.key_pem.as_bytes());
    reloads_reach(
        "cutover_config_reloads_total",
        "rejected",
        config_rejected + 1.0,
    )
    .await;
    let last = app.reloader.last().unwrap();
    let why = last.error.expect("the reload was rejected");
    assert!(
        why.contains("www.key") && why.contains("does not match"),
        "{why}"
    );
    assert!(serves(&good).await, "the old certificate still serves");
    assert!(
        counter("cutover_tls_reloads_total", "rejected").await > tls_rejected,
        "a refused certificate counts as a rejected certificate reload"
    );

    // Back to the matching key: applied again.
    replace_atomically(&dir.path().join("www.key"), good.key_pem.as_bytes());
    reloads_reach("cutover_config_reloads_total", "applied", applied + 1.0).await;
    assert!(serves(&good).await);

    // 2. Garbage where the certificate should be.
    replace_atomically(
        &dir.path().join("www.crt"),
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    );
    reloads_reach(
        "cutover_config_reloads_total",
        "rejected",
        config_rejected + 2.0,
    )
    .await;
    let why = app.reloader.last().unwrap().error.unwrap();
    assert!(why.contains("www.crt"), "{why}");
    assert!(serves(&good).await, "the old certificate still serves");
    // 2b. A file with no PEM at all.
    replace_atomically(&dir.path().join("www.crt"), b"\x00\x01garbage\xff");
    reloads_reach(
        "cutover_config_reloads_total",
        "rejected",
        config_rejected + 3.0,
    )
    .await;
    assert!(serves(&good).await, "the old certificate still serves");
    assert!(counter("cutover_tls_reloads_total", "rejected").await >= tls_rejected + 3.0);

    // 3. A good renewal afterwards goes live: the watcher survived the refusals.
    renewed.rotate_into(dir.path(), "www");
    let cfg2 = cfg.clone();
    let want = renewed.der.clone();
    wait_for("the renewed certificate is served", SLOW_WAIT, || {
        let cfg = cfg2.clone();
        let want = want.clone();
        async move {
            let tls = connect(addr, HOST, cfg).await.ok()?;
            (presented(&tls) == want).then_some(())
        }
    })
    .await;
    let text = scrape(admin).await;
    assert_eq!(
        metric_sum(&text, "cutover_tls_handshake_errors_total", &[]),
        0.0
    );
    assert_eq!(
        metric_sum(&text, "cutover_config_last_reload_successful", &[]),
        1.0
    );
}

/// `cutover check` names the file for each certificate problem; errors exit 1, a certificate
/// expiring within 14 days is a warning (exit 0) printed with the other warnings.
#[test]
fn check_reports_certificate_problems_naming_the_file() {
    let ca = Ca::new("check CA");
    let listener = |names: Option<&[&str]>| tls_listener(&[("www", "www", names)], "");
    let rest =
        "[storefront.old]\nupstream = \"http://127.0.0.1:1\"\n[storefront.new]\nupstream = \"http://127.0.0.1:2\"\n[split]\nnew_share = 0\n";

    struct Case {
        name: &'static str,
        exit: i32,
        /// File that must be named, and words that must appear, on the same line.
        file: &'static str,
        words: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "ok",
            exit: 0,
            file: "",
            words: &[],
        },
        Case {
            name: "missing",
            exit: 1,
            file: "www.crt",
            words: &["not found"],
        },
        Case {
            name: "mismatch",
            exit: 1,
            file: "www.key",
            words: &["does not match"],
        },
        Case {
            name: "expired",
            exit: 1,
            file: "www.crt",
            words: &["expired"],
        },
        Case {
            name: "expiring",
            exit: 0,
            file: "www.crt",
            words: &["warning", "expires"],
        },
        Case {
            name: "not-covered",
            exit: 1,
            file: "www.crt",
            words: &["not.covered.example", "not covered"],
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut names = None;
        match case.name {
            "ok" => {
                ca.leaf(&[HOST]).write(d, "www");
            }
            "missing" => {
                std::fs::write(d.join("www.key"), ca.leaf(&[HOST]).key_pem).unwrap();
            }
            "mismatch" => {
                ca.leaf(&[HOST]).write(d, "www");
                std::fs::write(d.join("www.key"), ca.leaf(&[HOST]).key_pem).unwrap();
            }
            "expired" => {
                ca.leaf_valid(&[HOST], Validity::Expired).write(d, "www");
            }
            "expiring" => {
                ca.leaf_valid(&[HOST], Validity::ExpiresInDays(5))
                    .write(d, "www");
            }
            "not-covered" => {
                ca.leaf(&[HOST]).write(d, "www");
                names = Some(&[HOST, "not.covered.example"][..]);
            }
            _ => unreachable!(),
        }
        let path = write_config(d, &format!("{}\n{rest}", listener(names)));
        let (code, out, err) = check(&path);
        let all = format!("{out}\n{err}");
        assert_eq!(code, case.exit, "{}: exit code\n{all}", case.name);
        if case.exit == 0 {
            assert!(out.contains("configuration ok"), "{}: {all}", case.name);
        } else {
            assert!(
                err.contains("configuration invalid"),
                "{}: {all}",
                case.name
            );
        }
        if case.file.is_empty() {
            assert!(
                !all.lines()
                    .any(|l| l.contains("www.crt") || l.contains("www.key")),
                "{}: {all}",
                case.name
            );
            continue;
        }
        let file = d.join(case.file).display().to_string();
        // Errors go to stderr, warnings to stdout with the summary; both name the file.
        let report = if case.exit == 0 { &out } else { &err };
        let line = report
            .lines()
            .find(|l| l.contains(&file) && case.words.iter().all(|w| l.contains(w)));
        assert!(
            line.is_some(),
            "{}: no line names {file} with {:?}:\n{all}",
            case.name,
            case.words
        );
    }
}
