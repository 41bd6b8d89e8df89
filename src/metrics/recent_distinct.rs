//! How many distinct shoppers were seen in the last few minutes, in fixed memory, without a lock.
//!
//! Why HyperLogLog and not a set or a bitmap: the proxy cannot know how many shoppers a store has
//! (a sale can bring a hundred times the usual crowd), and anything that grows with traffic would
//! be memory an attacker controls. HyperLogLog keeps 2^12 one-byte registers per sub-window
//! whatever the traffic, and its relative standard error is 1.04/sqrt(4096) = 1.6%: stated as
//! [`ERROR_BOUND`] = 5% (three standard errors), which the unit tests check on 10,000 distinct ids.
//! Below a few hundred shoppers the small-range correction (linear counting on empty registers)
//! makes it nearly exact. A linear-counting bitmap would be exact for small counts too, but it
//! saturates: sized for a sale, it costs as much as this at every size.
//!
//! Why a ring of sub-windows: a shopper seen an hour ago is not "where shoppers are". The ring
//! holds [`SLOTS`] sketches of [`SLOT_SECONDS`] each; an insert goes into the current one (clearing
//! it first when its minute came round again), and an estimate merges, register by register, the
//! sketches still inside the window. The figure therefore covers the last 9 to 10 minutes.
//!
//! The request path does one relaxed load per insert and a `fetch_max` only when a register grows
//! (a returning shopper usually changes nothing): no allocation, no lock, no contention on the
//! common case. A clear races with concurrent inserts into the same new sub-window: inserts made
//! while the first insert of a minute clears its 4 KiB may be lost (a few requests, once a minute:
//! an undercount far inside the bound, and only of shoppers not seen again that minute).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// log2 of the number of registers per sketch.
const PRECISION: u32 = 12;
const REGISTERS: usize = 1 << PRECISION;
/// Sub-windows in the ring.
pub const SLOTS: usize = 10;
/// Length of one sub-window.
pub const SLOT_SECONDS: u64 = 60;
/// The window an estimate covers (at least `WINDOW_SECONDS - SLOT_SECONDS` of it).
pub const WINDOW_SECONDS: u64 = SLOTS as u64 * SLOT_SECONDS;
/// Relative error of an estimate, at three standard errors (1.04/sqrt(4096) = 1.6% each).
pub const ERROR_BOUND: f64 = 0.05;

struct Slot {
    /// Sub-window number + 1 the registers belong to; 0: never used.
    epoch: AtomicU64,
    registers: Box<[AtomicU8]>,
}

/// A distinct count over the last [`WINDOW_SECONDS`]; 40 KiB, allocated once.
pub struct RecentDistinct {
    slots: Box<[Slot]>,
}

impl Default for RecentDistinct {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RecentDistinct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecentDistinct(..)")
    }
}

impl RecentDistinct {
    /// Bytes held by one counter (registers only), whatever it counts.
    #[cfg(test)]
    const MEMORY_BYTES: usize = SLOTS * REGISTERS;

    /// An empty counter.
    pub fn new() -> Self {
        let slots = (0..SLOTS)
            .map(|_| Slot {
                epoch: AtomicU64::new(0),
                registers: (0..REGISTERS).map(|_| AtomicU8::new(0)).collect(),
            })
            .collect();
        RecentDistinct { slots }
    }

    /// Counts `hash` (a well-mixed 64-bit hash of the thing counted) as seen at `now_seconds`
    /// (any monotonic clock in seconds, the same one given to [`RecentDistinct::estimate`]).
    pub fn insert(&self, hash: u64, now_seconds: u64) {
        let epoch = now_seconds / SLOT_SECONDS + 1;
        let slot = &self.slots[(epoch % SLOTS as u64) as usize];
        let tag = slot.epoch.load(Ordering::Acquire);
        if tag < epoch
            && slot
                .epoch
                .compare_exchange(tag, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            for r in slot.registers.iter() {
                r.store(0, Ordering::Relaxed);
            }
        }
        let index = (hash >> (64 - PRECISION)) as usize;
        let rank = ((hash << PRECISION).leading_zeros().min(64 - PRECISION) + 1) as u8;
        let register = &slot.registers[index];
        if register.load(Ordering::Relaxed) < rank {
            register.fetch_max(rank, Ordering::Relaxed);
        }
    }

    /// Distinct hashes inserted in the window ending at `now_seconds`, within [`ERROR_BOUND`].
    /// Merges the ring (40 KiB of loads): for a status page or a scrape, never per request.
    pub fn estimate(&self, now_seconds: u64) -> u64 {
        let epoch = now_seconds / SLOT_SECONDS + 1;
        let mut merged = vec![0u8; REGISTERS];
        for slot in self.slots.iter() {
            let tag = slot.epoch.load(Ordering::Acquire);
            if tag == 0 || tag > epoch || tag + SLOTS as u64 <= epoch {
                continue;
            }
            for (m, r) in merged.iter_mut().zip(slot.registers.iter()) {
                *m = (*m).max(r.load(Ordering::Relaxed));
            }
        }
        hyperloglog(&merged)
    }
}

/// The HyperLogLog estimate of merged registers, with the small-range correction (linear counting
/// while registers are still empty). With 64-bit hashes no large-range correction is needed.
fn hyperloglog(registers: &[u8]) -> u64 {
    let m = registers.len() as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = registers.iter().map(|&r| (-f64::from(r)).exp2()).sum();
    let raw = alpha * m * m / sum;
    let empty = registers.iter().filter(|&&r| r == 0).count();
    let estimate = if raw <= 2.5 * m && empty > 0 {
        m * (m / empty as f64).ln()
    } else {
        raw
    };
    estimate.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::shopper::mix;

    fn within_bound(got: u64, want: u64) -> bool {
        (got as f64 - want as f64).abs() <= ERROR_BOUND * want as f64
    }

    #[test]
    fn ten_thousand_distinct_ids_are_counted_within_the_bound() {
        for seed in [1u64, 2, 3, 0xdead_beef] {
            let d = RecentDistinct::new();
            // Each id three times: repeats must not count.
            for round in 0..3 {
                for i in 0..10_000u64 {
                    d.insert(mix(i ^ (seed << 40)), 100 + round);
                }
            }
            let got = d.estimate(110);
            assert!(within_bound(got, 10_000), "seed {seed}: {got}");
        }
    }

    #[test]
    fn small_counts_are_nearly_exact_and_empty_is_zero() {
        let d = RecentDistinct::new();
        assert_eq!(d.estimate(0), 0);
        for n in 1..=200u64 {
            d.insert(mix(n), 5);
            let got = d.estimate(5);
            assert!(got.abs_diff(n) <= 2 + n / 25, "{n}: {got}");
        }
    }

    #[test]
    fn memory_is_fixed_whatever_the_traffic() {
        let d = RecentDistinct::new();
        let bytes = |d: &RecentDistinct| {
            d.slots
                .iter()
                .map(|s| s.registers.len() * std::mem::size_of::<AtomicU8>())
                .sum::<usize>()
        };
        let before = bytes(&d);
        assert_eq!(before, RecentDistinct::MEMORY_BYTES);
        assert_eq!(before, 40 * 1024);
        for i in 0..200_000u64 {
            d.insert(mix(i), i / 1000);
        }
        assert_eq!(bytes(&d), before);
        assert_eq!(d.slots.len(), SLOTS);
    }

    /// An injected clock: ids seen more than the window ago fall out, minute by minute.
    #[test]
    fn the_window_slides_with_the_clock() {
        let d = RecentDistinct::new();
        let t0 = 1_000 * SLOT_SECONDS;
        for i in 0..1_000u64 {
            d.insert(mix(i), t0);
        }
        for i in 1_000..1_500u64 {
            d.insert(mix(i), t0 + 5 * SLOT_SECONDS);
        }
        assert!(within_bound(d.estimate(t0 + 5 * SLOT_SECONDS), 1_500));
        // Still inside the window at its last second.
        assert!(within_bound(
            d.estimate(t0 + SLOTS as u64 * SLOT_SECONDS - 1),
            1_500
        ));
        // The first minute has left it; the later 500 remain.
        let later = d.estimate(t0 + SLOTS as u64 * SLOT_SECONDS);
        assert!(within_bound(later, 500), "{later}");
        // A shopper seen again is counted in the new minute; the slot of t0 is reused and cleared.
        for i in 0..10u64 {
            d.insert(mix(i), t0 + SLOTS as u64 * SLOT_SECONDS);
        }
        let got = d.estimate(t0 + SLOTS as u64 * SLOT_SECONDS);
        assert!(within_bound(got, 510), "{got}");
        // Long after, nothing.
        assert_eq!(d.estimate(t0 + 100 * SLOT_SECONDS), 0);
    }

    /// Request threads insert at once: no lock, no insert lost. (The minute's first insert,
    /// which clears the slot, is made before, as on a busy proxy it is long before the rest.)
    #[test]
    fn concurrent_inserts_are_all_counted() {
        let d = std::sync::Arc::new(RecentDistinct::new());
        let now = 10 * SLOT_SECONDS;
        d.insert(mix(u64::MAX), now);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let d = std::sync::Arc::clone(&d);
                std::thread::spawn(move || {
                    for i in 0..2_500u64 {
                        d.insert(mix(t * 1_000_000 + i), now);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let got = d.estimate(now);
        assert!(within_bound(got, 10_001), "{got}");
    }

    #[test]
    fn a_clock_from_before_the_window_reads_nothing_newer() {
        let d = RecentDistinct::new();
        d.insert(mix(1), 50 * SLOT_SECONDS);
        assert_eq!(
            d.estimate(10 * SLOT_SECONDS),
            0,
            "the future is not counted"
        );
    }
}
