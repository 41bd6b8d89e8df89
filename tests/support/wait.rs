//! Bounded waiting: every suite polls for something (a reload applied, a metric moved, a
//! listener up), and one deadline loop keeps a broken proxy from hanging the run.

use std::future::Future;
use std::time::Duration;

/// The bound on any single wait in the suite (a request, a log line, a connection close).
pub const WAIT: Duration = Duration::from_secs(10);

/// The bound for steps that include TLS handshakes, scrapes or process starts, which take
/// longer on a shared two-core CI machine.
pub const SLOW_WAIT: Duration = Duration::from_secs(30);

/// What a polled check returns: `bool` for a condition, `Option<T>` for a value, so both kinds
/// of check share [`wait_for`].
pub trait Outcome {
    /// What the wait hands back once the check succeeds.
    type Out;
    /// `Some` once the check succeeded.
    fn ready(self) -> Option<Self::Out>;
}

impl Outcome for bool {
    type Out = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Out = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Polls `check` every 20 ms until it succeeds; fails the test naming `what` after `limit`.
pub async fn wait_for<R, F, Fut>(what: &str, limit: Duration, check: F) -> R::Out
where
    R: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    wait_for_every(what, limit, Duration::from_millis(20), check).await
}

/// [`wait_for`] with its own polling interval, for tests that watch a fast-changing state.
pub async fn wait_for_every<R, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> R::Out
where
    R: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await.ready() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Awaits `fut`, failing the test naming `what` if it takes longer than [`SLOW_WAIT`].
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(SLOW_WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {SLOW_WAIT:?}: {what}"))
}
