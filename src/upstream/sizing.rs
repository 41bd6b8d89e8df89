//! How many idle connections a storefront's [`super::Pool`] keeps: the recent peak of requests in
//! flight to it, within a cap.
//!
//! Why adaptive: a fixed number of idle connections is wrong in both directions. Below the
//! concurrency the storefront actually sees (256 shoppers in flight against 32 kept), every
//! request beyond the 32 closes its connection when it ends and the next one opens a new one:
//! a connect (and a TLS handshake to an https storefront) per request, twice the proxy's CPU per
//! request and a storefront that sees a storm of short connections. Above it, idle sockets are
//! held for nothing. Keeping up to the peak of the last window means steady load of any size
//! reuses its connections (at concurrency N, N connections exist and all go back), while the
//! connections a burst needed are closed once the burst has been over for a window.
//!
//! The peak is a two-bucket sliding maximum: the highest in-flight count of the current
//! half-window and of the previous one, so it decays to the current level between half a window
//! and a whole window after the load drops (a slow decay: a dip between two waves of traffic
//! does not cost the next wave its connections). It is rolled over under the pool's lock at
//! each checkin and by the pool's reaper, which also closes the connections the decayed peak no
//! longer covers when no traffic arrives to do it.
//!
//! The request path pays one relaxed `fetch_add`, one `fetch_sub` and, only when a new peak is
//! reached, one `fetch_max`: no clock read beyond the one checkin already makes.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The shortest reaper tick: a window of a few milliseconds in a test must not spin.
const MIN_TICK: Duration = Duration::from_millis(10);

/// The in-flight count and its recent peak, for one pool.
#[derive(Debug)]
pub struct Sizing {
    /// Hard cap on idle connections (`pool_max_idle`, or else `pool_idle_ceiling`).
    cap: usize,
    /// Half the peak window: the length of one bucket.
    half: Duration,
    /// Requests in flight (from checkout to the connection's return or close).
    busy: AtomicUsize,
    /// The highest `busy` seen in the current bucket.
    peak: AtomicUsize,
}

/// The bucket boundary and the previous bucket's peak; kept under the pool's lock.
#[derive(Debug)]
pub struct Window {
    start: Instant,
    prev: usize,
}

impl Window {
    /// A window starting now, with no history.
    pub fn new() -> Self {
        Window {
            start: Instant::now(),
            prev: 0,
        }
    }
}

impl Default for Window {
    fn default() -> Self {
        Self::new()
    }
}

impl Sizing {
    /// At most `cap` idle connections, following the peak over `window`.
    pub fn new(cap: usize, window: Duration) -> Self {
        Sizing {
            cap,
            half: window / 2,
            busy: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// The hard cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// A request took a connection.
    pub fn begin(&self) {
        let n = self.busy.fetch_add(1, Relaxed) + 1;
        // Read first: the common case (no new peak) stays a load, not a contended write.
        if n > self.peak.load(Relaxed) {
            self.peak.fetch_max(n, Relaxed);
        }
    }

    /// A request gave its connection back (or closed it).
    pub fn end(&self) {
        self.busy.fetch_sub(1, Relaxed);
    }

    /// Requests in flight now.
    pub fn busy(&self) -> usize {
        self.busy.load(Relaxed)
    }

    /// How often the reaper rolls the window and trims the idle stack.
    pub fn tick(&self) -> Duration {
        self.half.max(MIN_TICK)
    }

    /// Idle connections to keep at `now`: the peak of the current and the previous bucket,
    /// within the cap. Rolls the buckets over when `now` has left the current one.
    pub fn target(&self, w: &mut Window, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(w.start);
        if elapsed >= self.half {
            let busy = self.busy.load(Relaxed);
            let last = self.peak.swap(busy, Relaxed);
            // A whole bucket without a roll (no traffic, no tick): its peak was what is in
            // flight now, since nothing started in it to raise it.
            w.prev = if elapsed >= self.half * 2 { busy } else { last };
            w.start = now;
        }
        w.prev.max(self.peak.load(Relaxed)).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_follows_the_peak_then_decays_within_a_window() {
        let s = Sizing::new(100, Duration::from_secs(60));
        let mut w = Window::new();
        let t0 = w.start;
        for _ in 0..40 {
            s.begin();
        }
        for _ in 0..40 {
            s.end();
        }
        assert_eq!(
            s.target(&mut w, t0),
            40,
            "the peak, though nothing is in flight"
        );
        // Next bucket: the previous one's peak still counts.
        assert_eq!(s.target(&mut w, t0 + Duration::from_secs(31)), 40);
        // One more bucket with nothing in flight: decayed.
        assert_eq!(s.target(&mut w, t0 + Duration::from_secs(62)), 0);
    }

    #[test]
    fn a_long_silence_forgets_the_peak_at_once() {
        let s = Sizing::new(100, Duration::from_secs(60));
        let mut w = Window::new();
        let t0 = w.start;
        s.begin();
        s.begin();
        s.end();
        assert_eq!(s.target(&mut w, t0), 2);
        // Two buckets passed without a roll: only what is in flight now counts.
        assert_eq!(s.target(&mut w, t0 + Duration::from_secs(120)), 1);
    }

    #[test]
    fn the_cap_bounds_the_target() {
        let s = Sizing::new(3, Duration::from_secs(60));
        let mut w = Window::new();
        for _ in 0..10 {
            s.begin();
        }
        assert_eq!(s.target(&mut w, Instant::now()), 3);
        assert_eq!(s.busy(), 10);
    }

    #[test]
    fn a_tiny_window_still_ticks_at_a_sane_rate() {
        assert_eq!(Sizing::new(1, Duration::from_millis(2)).tick(), MIN_TICK);
        assert_eq!(
            Sizing::new(1, Duration::from_secs(60)).tick(),
            Duration::from_secs(30)
        );
    }
}
