//! The one retry policy for cutover's background calls (the fleet store, its election and
//! membership, the rollout's webhook): exponential backoff with jitter, capped. Short at first
//! so a blip heals fast, capped so an outage costs one attempt per cap, jittered so replicas
//! that lost the same etcd do not retry in lock step.
//!
//! The storefront client's one retry (a bodyless idempotent request whose connection failed)
//! is not a backoff and lives with the client (`upstream::retry`).
//!
//! Layer: wire. May import only its own layer; never edge, control, server, request, config,
//! snapshot, observe, clients, domain, policy.

use std::time::Duration;

/// Pauses between failed attempts, doubling from `first` up to `max`, each with up to a
/// quarter more at random.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff that waits `first`, then twice that, ... up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            next: first,
            first,
            max: max.max(first),
        }
    }

    /// The next pause (without its jitter), and the one after it doubled.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Sleeps for the next pause plus jitter.
    pub async fn wait(&mut self) {
        let delay = self.next_delay();
        let quarter = u64::try_from(delay.as_millis() / 4).unwrap_or(u64::MAX);
        let jitter = Duration::from_millis(fastrand::u64(0..=quarter));
        tokio::time::sleep(delay + jitter).await;
    }

    /// Back to the first pause, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(350));
        let seen: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        assert_eq!(seen, [ms(100), ms(200), ms(350), ms(350)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(100));
        assert_eq!(Backoff::new(ms(50), ms(10)).next_delay(), ms(50));
    }
}
