//! The rollout webhook against real HTTP servers on 127.0.0.1: delivery, retries on 5xx, no retry
//! on 4xx, a refused connection, and a server that never answers (timeouts and retries counted,
//! the rollout never held up: a full channel drops and counts).

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use cutover::rollout::engine::{Action, Engine, Event, EventKind};
use cutover::rollout::measure::{PairFigures, Reading, SideFigures, WindowFigures};
use cutover::rollout::plan::{RolloutConfig, Webhook};
use cutover::rollout::webhook::{payload, Notifier, WebhookCounts};

const DEADLINE: Duration = Duration::from_secs(30);

/// What the recording server saw.
#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<(String, Bytes)>>,
}

/// A webhook receiver answering `statuses` in turn (then 200), recording content type and body.
async fn receiver(statuses: Vec<u16>) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/rollout", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let next = Arc::new(AtomicUsize::new(0));
    let (seen2, statuses) = (seen.clone(), Arc::new(statuses));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, next, statuses) = (seen2.clone(), next.clone(), statuses.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (seen, next, statuses) = (seen.clone(), next.clone(), statuses.clone());
                    async move {
                        let ct = req
                            .headers()
                            .get("content-type")
                            .map(|v| v.to_str().unwrap_or("").to_string())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        seen.bodies.lock().unwrap().push((ct, body));
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let status = statuses.get(i).copied().unwrap_or(200);
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(StatusCode::from_u16(status).unwrap())
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

/// A server that accepts connections, reads, and never answers. Counts connections.
async fn hanging() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/hang", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (url, accepted)
}

fn webhook(url: &str, timeout: Duration, retries: u32) -> Webhook {
    Webhook {
        url: url.parse().unwrap(),
        timeout,
        retries,
    }
}

fn event(kind: EventKind, message: &str) -> Event {
    Event {
        kind,
        step: 2,
        steps: 5,
        share_bp: 500,
        advise: false,
        message: message.to_string(),
        verdicts: Vec::new(),
    }
}

async fn wait_counts(
    n: &Notifier,
    what: &str,
    ok: impl Fn(WebhookCounts) -> bool,
) -> WebhookCounts {
    // Bounded by DEADLINE against a hang, never a timing assertion.
    let counts = tokio::time::timeout(DEADLINE, async {
        loop {
            let c = n.stats();
            if ok(c) {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    counts.unwrap_or_else(|_| panic!("waiting for {what}: {:?}", n.stats()))
}

#[tokio::test]
async fn delivers_a_chat_style_json_body() {
    let (url, seen) = receiver(vec![]).await;
    let (n, _task) = Notifier::spawn(webhook(&url, Duration::from_secs(5), 3), 8).unwrap();
    assert!(n.notify(event(
        EventKind::Advanced,
        "rollout advanced to step 2/5 (5%)"
    )));
    let c = wait_counts(&n, "delivery", |c| c.sent == 1).await;
    assert_eq!(
        c,
        WebhookCounts {
            sent: 1,
            ..Default::default()
        }
    );
    let bodies = seen.bodies.lock().unwrap();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].0, "application/json");
    let json: serde_json::Value = serde_json::from_slice(&bodies[0].1).unwrap();
    assert_eq!(
        json["text"],
        "cutover rollout: rollout advanced to step 2/5 (5%) [share on new 5%]"
    );
    assert_eq!(json["event"], "advanced");
    assert_eq!(json["step"], 2);
    assert_eq!(json["share_percent"], 5.0);
}

#[tokio::test]
async fn retries_server_errors_then_delivers() {
    let (url, seen) = receiver(vec![500, 503]).await;
    let (n, _task) = Notifier::spawn(webhook(&url, Duration::from_secs(5), 3), 8).unwrap();
    n.notify(event(EventKind::RolledBack, "rolled back"));
    let c = wait_counts(&n, "delivery after retries", |c| c.sent == 1).await;
    assert_eq!(c.retries, 2);
    assert_eq!(c.failed, 0);
    assert_eq!(seen.bodies.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let (url, seen) = receiver(vec![400]).await;
    let (n, _task) = Notifier::spawn(webhook(&url, Duration::from_secs(5), 3), 8).unwrap();
    n.notify(event(EventKind::Paused, "paused"));
    let c = wait_counts(&n, "a failure", |c| c.failed == 1).await;
    assert_eq!(c.retries, 0);
    assert_eq!(c.sent, 0);
    assert_eq!(seen.bodies.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_given_up() {
    // Bind, note the port, close: nothing listens there any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/hook");
    let (n, _task) = Notifier::spawn(webhook(&url, Duration::from_secs(5), 2), 8).unwrap();
    n.notify(event(EventKind::Completed, "done"));
    let c = wait_counts(&n, "giving up", |c| c.failed == 1).await;
    assert_eq!(c.retries, 2);
    assert_eq!(c.sent, 0);
}

fn figures() -> Reading {
    let side = SideFigures {
        requests: Some(1000.0),
        errors: Some(1.0),
        not_found: Some(0.0),
        latency: None,
    };
    Reading::Figures(WindowFigures {
        overall: PairFigures {
            old: side.clone(),
            new: side,
        },
        routes: Default::default(),
    })
}

#[tokio::test]
async fn a_hanging_webhook_times_out_retries_and_never_holds_the_rollout() {
    let (url, accepted) = hanging().await;
    let (n, _task) = Notifier::spawn(webhook(&url, Duration::from_millis(200), 2), 1).unwrap();

    // A whole rollout runs (fake clock) while the webhook hangs; every event goes to the notifier.
    let cfg: RolloutConfig = toml::from_str(
        r#"
        steps = [1, 5, 25, 50, 100]
        min_hold = "1m"
        interval = "1m"
        window = "5m"
        min_requests = 10
        failure_limit = 2
        inconclusive_timeout = "10m"
        [gates.error_ratio]
        max_vs_old = 2.0
        max_delta = 0.01
        "#,
    )
    .unwrap();
    let mut engine = Engine::new(cfg.validate(None).unwrap());
    let t0 = 1_700_000_000_000u64;
    let mut queued = 0u64;
    let mut events = 0;
    let mut forward = |actions: Vec<Action>| {
        for a in actions {
            if let Action::Notify(ev) = a {
                events += 1;
                if n.notify(ev) {
                    queued += 1;
                }
            }
        }
    };
    forward(engine.start(t0).unwrap());
    let mut now = t0;
    for _ in 0..20 {
        now += 60_000;
        forward(engine.tick(now, &figures()));
    }
    assert_eq!(engine.state().phase.as_str(), "completed");
    assert_eq!(events, 6, "started, 4 advances, completed");
    // Room for one queued event (plus the one the task may already hold): the rest were dropped.
    assert!(queued <= 2, "queued {queued}");
    let c = wait_counts(&n, "drops counted", |c| c.dropped >= 4).await;
    assert_eq!(c.dropped + queued, 6);

    // Each queued event: three attempts (one + two retries), each cut by the timeout.
    let c = wait_counts(&n, "the queued events given up", |c| c.failed == queued).await;
    assert_eq!(c.retries, 2 * queued);
    assert_eq!(c.sent, 0);
    assert_eq!(accepted.load(Ordering::SeqCst) as u64, 3 * queued);
}

#[test]
fn payload_says_advise_only() {
    let mut e = event(
        EventKind::WouldAdvance,
        "rollout would advance to step 3/5 (25%)",
    );
    e.advise = true;
    e.share_bp = 2500;
    let p = payload(&e);
    assert_eq!(
        p.text,
        "cutover rollout (advise only): rollout would advance to step 3/5 (25%) [share on new 25%]"
    );
    assert_eq!(p.event, "would_advance");
}
