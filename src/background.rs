//! Work that must never compete with requests: compiling a reload, freeing a retired snapshot.
//!
//! Loading a 10^6-row redirect table costs about a second of CPU, freeing one ~10-100 ms. On a
//! saturated core, a loader at the workers' own priority takes that second from them one
//! scheduler slice at a time, and requests that arrive meanwhile wait a slice (3-4 ms at p99).
//! These jobs therefore run on a thread of their own at the lowest priority (nice 19, like a
//! `nice`d batch job): the scheduler lets a waking request worker preempt them at once, and they
//! use the CPU time requests leave idle. A reload then takes longer on a busy core, never the
//! requests.
//!
//! Layer: wire. May import only its own layer; never edge, control, server, request, config,
//! snapshot, observe, clients, domain, policy.

use tokio::sync::oneshot;

/// Nice value of background threads: the lowest priority a normal (CFS) thread can have.
pub const NICE: i32 = 19;

/// Why a background job produced no result.
#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    /// The OS refused a new thread (thread or memory limits).
    #[error("cannot start a background thread for {job}: {source}")]
    Spawn {
        /// What the thread was for.
        job: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The job panicked (a bug; the panic message is in the log).
    #[error("the background job {job} panicked")]
    Panicked {
        /// What the thread was for.
        job: &'static str,
    },
}

/// Runs `f` on a new low-priority thread named `cutover-<job>` and waits for its result without
/// blocking the runtime.
///
/// A thread per job (rather than tokio's blocking pool) keeps the lowered priority from leaking
/// into unrelated blocking work that reuses pool threads. Jobs are rare (a reload, a retired
/// snapshot), so the thread start (~20 us) is noise beside the work.
pub async fn run<T, F>(job: &'static str, f: F) -> Result<T, BackgroundError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("cutover-{job}"))
        .spawn(move || {
            lower_priority(job);
            let _ = tx.send(f());
        })
        .map_err(|source| BackgroundError::Spawn { job, source })?;
    rx.await.map_err(|_| BackgroundError::Panicked { job })
}

/// Lowers the calling thread (only it: Linux applies `setpriority(PRIO_PROCESS, tid)` to one
/// thread) to [`NICE`]. Failing to is harmless: the job then runs at normal priority, as it
/// would anywhere else.
pub(crate) fn lower_priority(job: &'static str) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
        tracing::debug!(job, error = %e, "cannot lower the background thread's priority");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = job;
}

/// The nice value of the calling thread (for tests and diagnostics).
#[cfg(target_os = "linux")]
pub fn current_nice() -> std::io::Result<i32> {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).map_err(Into::into)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_at_the_lowest_priority_and_leave_the_caller_alone() {
        let before = current_nice().unwrap();
        let (nice, name) = run("test", || {
            (
                current_nice().unwrap(),
                std::thread::current().name().map(str::to_owned),
            )
        })
        .await
        .unwrap();
        assert_eq!(nice, NICE);
        assert_eq!(name.as_deref(), Some("cutover-test"));
        assert_eq!(
            current_nice().unwrap(),
            before,
            "only the job's thread is lowered"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_hang() {
        let err = run("boom", || -> u8 { panic!("deliberate") })
            .await
            .unwrap_err();
        assert!(
            matches!(err, BackgroundError::Panicked { job: "boom" }),
            "{err}"
        );
    }
}
