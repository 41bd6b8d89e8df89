//! The connection cap: open connections in all and per client address, and the drain's wait
//! for the last one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts open client connections (in all, and per client address) and wakes the drain when
/// the last one closes.
///
/// The per-address count keeps one client (a scanner, a slowloris, a misbehaving bot) from taking
/// the whole `max_connections` budget: the shop's other shoppers keep getting in. It is taken once
/// per connection, in the accept loop, never per request.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
    idle: Notify,
    per_client: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>,
    /// Idle keep-alive connections given up for new ones at the cap (`reuse`).
    pub(super) reusable: Arc<super::reuse::Reusable>,
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    /// `max_connections` open in all.
    Total,
    /// This client address holds `max_connections_per_client`.
    Client,
}

impl Connections {
    /// Open client connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Lets a connection from `client` in, within `max` in all and `per_client` for that
    /// address (`per_client` 0: no per-address limit).
    pub(super) fn try_enter(
        self: &Arc<Self>,
        max: usize,
        client: std::net::IpAddr,
        per_client: usize,
    ) -> Result<ConnGuard, Full> {
        let client = (per_client > 0).then_some(client.to_canonical());
        if let Some(ip) = client {
            let mut map = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n as usize >= per_client {
                return Err(Full::Client);
            }
            *n += 1;
        }
        let mut cur = self.open.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                // An idle keep-alive connection makes room, and this one takes its place now
                // (the cap is over by one until that connection has closed).
                if self.reusable.give_up_oldest_idle() {
                    self.open.fetch_add(1, Ordering::AcqRel);
                    return Ok(ConnGuard(Arc::clone(self), client));
                }
                if let Some(ip) = client {
                    self.leave_client(ip);
                }
                return Err(Full::Total);
            }
            match self
                .open
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(ConnGuard(Arc::clone(self), client)),
                Err(now) => cur = now,
            }
        }
    }

    fn leave_client(&self, ip: std::net::IpAddr) {
        let mut map = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let std::collections::hash_map::Entry::Occupied(mut e) = map.entry(ip) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    pub(super) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub(super) struct ConnGuard(pub(super) Arc<Connections>, Option<std::net::IpAddr>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(ip) = self.1 {
            self.0.leave_client(ip);
        }
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
