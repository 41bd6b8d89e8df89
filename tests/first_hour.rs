//! Issue 16, "The first hour": what a new operator trips over. Each test drives the built binary.

mod support;

use std::time::Duration;

use support::control::*;
use support::process::*;
use support::stores::Stores;

/// Logs into a pipe (a file, journald, `| cat`) carry no ANSI colour codes.
#[tokio::test]
async fn no_colour_codes_when_the_output_is_not_a_terminal() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let (ok, out, err) = run_cli(&["check", "--config", demo]).await;
    assert!(ok, "{err}");
    assert!(err.contains("INFO"), "the check logs its tables: {err}");
    assert!(
        !err.contains('\u{1b}') && !out.contains('\u{1b}'),
        "escape codes in piped output: {err:?}"
    );
}

/// Asking for the share already in force is answered as such and creates no generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_to_the_share_in_force_changes_nothing() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    std::fs::write(&config, config_text(&stores, &Params::default())).unwrap();
    let proxy = ProxyProcess::spawn(&config);
    let admin = proxy.admin.to_string();
    let generation = || async {
        support::admin::status(proxy.admin).await["config"]["generation"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(generation().await, 1);

    let (ok, out, err) = run_cli(&["shift", "10", "--admin", &admin]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("already 10.00%") && out.contains("nothing changed"),
        "{out}"
    );
    assert_eq!(generation().await, 1, "a no-op shift made a generation");

    let (ok, out, err) = run_cli(&["shift", "25", "--admin", &admin]).await;
    assert!(ok, "{err}");
    assert!(out.contains("10.00% -> 25.00%"), "{out}");
    assert_eq!(generation().await, 2);
    // Lowering with pinning off says what happens to shoppers above the new share.
    let (ok, out, err) = run_cli(&["shift", "5", "--admin", &admin]).await;
    assert!(ok, "{err}");
    assert!(out.contains("pinning is off"), "{out}");
}

/// `evacuate` prints when, as a time people read, not a unix epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuate_and_status_print_human_times() {
    let stores = Stores::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cutover.toml");
    std::fs::write(&config, config_text(&stores, &Params::default())).unwrap();
    let proxy = ProxyProcess::spawn(&config);
    let admin = proxy.admin.to_string();
    let (ok, out, err) = run_cli(&["evacuate", "new", "--admin", &admin]).await;
    assert!(ok, "{err}");
    let year = out.find("20").expect("a year");
    assert!(
        out[year..].contains('T') && out.contains("Z (") && out.contains("ago)")
            || out.contains("(now)"),
        "RFC 3339 and a relative time: {out}"
    );
    let st = support::admin::status(proxy.admin).await;
    let new = st["storefronts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "new")
        .unwrap()
        .clone();
    assert!(new["evacuated_at"].is_u64(), "{new}");
    assert!(
        new["evacuated_at_rfc3339"].as_str().unwrap().ends_with('Z'),
        "{new}"
    );
    let (ok, out, _) = run_cli(&["status", "--admin", &admin]).await;
    assert!(ok);
    assert!(
        !out.contains(&new["evacuated_at"].to_string()),
        "no raw epoch in status: {out}"
    );
    // Every time in the status JSON carries its RFC 3339 twin.
    let o = &st["overrides"];
    for field in ["since", "updated_at"] {
        assert_eq!(
            o[format!("{field}_rfc3339")].as_str(),
            Some(cutover::values::time::rfc3339_secs(o[field].as_u64().unwrap()).as_str()),
            "{field}: {o}"
        );
    }
    assert!(st["config"]["loaded_at_rfc3339"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let evacuated = o["evacuated_at"]["new"]
        .as_u64()
        .expect("the evacuation override");
    assert_eq!(
        o["evacuated_at_rfc3339"]["new"].as_str(),
        Some(cutover::values::time::rfc3339_secs(evacuated).as_str()),
        "{o}"
    );
    let last = &st["last_reload"];
    assert_eq!(
        last["at_rfc3339"].as_str(),
        Some(cutover::values::time::rfc3339_secs(last["at"].as_f64().unwrap() as u64).as_str()),
        "{last}"
    );
}

use support::ports::free_port;

/// The demo's standard output, line by line.
type DemoLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Starts `cutover demo <args>` in `dir` (no colour; killed when dropped) and returns it with
/// its output.
fn spawn_demo(args: &[&str], dir: &std::path::Path) -> (tokio::process::Child, DemoLines) {
    let mut demo = tokio::process::Command::new(binary())
        .arg("demo")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = demo.stdout.take().unwrap();
    let lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    (demo, lines)
}

/// Reads the demo's output (bounded) until `wanted` says so; the line it stopped at.
async fn read_until(lines: &mut DemoLines, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if wanted(&line) {
                return line;
            }
        }
        panic!("the demo ended before {what}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within 60 s"))
}

/// Waits (bounded) for the demo to serve: it prints its URLs once listening.
async fn until_running(lines: &mut DemoLines) {
    read_until(lines, "serving (are its ports free?)", |l| {
        l.contains("cutover demo is running")
    })
    .await;
}

/// `demo --tls` keeps a private key in a temporary directory: gone after Ctrl-C, and a directory
/// a killed demo left behind is removed by the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_demo_leaves_no_private_key_behind() {
    let stale = std::env::temp_dir().join("cutover-demo-tls-4194300");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("cutover-demo.key"), "left by a crash").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("demo.toml");
    let admin_port = free_port();
    std::fs::write(
        &config,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:{}\"\n[admin]\naddress = \"127.0.0.1:{admin_port}\"\n\
             [storefront.old]\nupstream = \"http://127.0.0.1:{}\"\n\
             [storefront.new]\nupstream = \"http://127.0.0.1:{}\"\n[split]\nnew_share = 10\n",
            free_port(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let (mut demo, mut lines) =
        spawn_demo(&["--tls", "--config", config.to_str().unwrap()], dir.path());
    let mine = std::env::temp_dir().join(format!("cutover-demo-tls-{}", demo.id().unwrap()));
    until_running(&mut lines).await;
    assert!(
        mine.join("cutover-demo.key").exists(),
        "the key is in {mine:?}"
    );
    assert!(
        !stale.exists(),
        "a dead demo's directory is removed at start"
    );

    // The TLS demo runs from a copy, which follows edits of the file it was given.
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    assert_eq!(support::admin::share(admin).await, 10.0);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("new_share = 10", "new_share = 30")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while support::admin::share(admin).await != 30.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the edit never reached the TLS demo"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(signal(demo.id().unwrap(), "INT"));
    let status = tokio::time::timeout(Duration::from_secs(60), demo.wait())
        .await
        .expect("the demo exits after SIGINT")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!mine.exists(), "{mine:?} survived Ctrl-C");
}

/// The demo shows each request as it is answered, one human line each, as nginx users expect
/// from a server in a terminal (`[access_log] format = "text"` in config/demo.toml).
#[tokio::test]
async fn the_demo_prints_one_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = format!("127.0.0.1:{}", free_port());
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml")).unwrap();
    let config = shipped
        .replace("127.0.0.1:8080", &proxy)
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:8082", &format!("127.0.0.1:{}", free_port()));
    std::fs::write(dir.path().join("demo.toml"), config).unwrap();
    let plan = concat!(env!("CARGO_MANIFEST_DIR"), "/config/redirects.csv");
    std::fs::copy(plan, dir.path().join("redirects.csv")).unwrap();
    let (_demo, mut lines) = spawn_demo(&["--config", "demo.toml"], dir.path());
    until_running(&mut lines).await;
    let mut conn = tokio::net::TcpStream::connect(&proxy).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut conn,
        b"GET /products/first-hour?email=a@b.c HTTP/1.0\r\nHost: shop.test\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut answer)
        .await
        .unwrap();
    let seen = read_until(&mut lines, "logging the request", |l| {
        l.contains("/products/first-hour")
    })
    .await;
    // A fresh shopper lands on either side of the 10% split.
    assert!(
        seen.contains(" GET shop.test/products/first-hour 200 ")
            && (seen.contains(" 200 old (split) ") || seen.contains(" 200 new (split) ")),
        "{seen}"
    );
    assert!(!seen.contains("email"), "no query string: {seen}");
    assert!(!seen.contains('\u{1b}'), "no colour codes: {seen}");
}

/// An installed binary has no checkout beside it: `cutover demo` then runs its built-in copy of
/// the demo config and redirect plan (embedded at build time, so editing config/demo.toml in a
/// checkout does not rebuild the binary), and removes that copy on Ctrl-C. Uses the demo's own
/// ports, like tests/readme.rs.
#[tokio::test]
async fn the_demo_runs_outside_a_checkout_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut demo, mut lines) = spawn_demo(&[], dir.path());
    let copy = std::env::temp_dir().join(format!("cutover-demo-{}", demo.id().unwrap()));
    until_running(&mut lines).await;
    assert!(
        copy.join("redirects.csv").exists(),
        "the plan is beside the config"
    );
    assert!(signal(demo.id().unwrap(), "INT"));
    let status = tokio::time::timeout(Duration::from_secs(60), demo.wait())
        .await
        .expect("the demo exits after SIGINT")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!copy.exists(), "{copy:?} survived Ctrl-C");
}
