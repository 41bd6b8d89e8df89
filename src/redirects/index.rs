//! The table's hash index: open-addressing slots of entry numbers, and a miss filter in front
//! of the exact slots. Keys live in the table's arena; the index only says where.

use super::recycle::reuse;

/// An open-addressing index of entry numbers; linear probing, load kept under 0.6. Each slot
/// holds the entry number, 32 more bits of its hash, and where the key is in the arena.
///
/// The key's place is copied into the slot (16 bytes instead of 8) for a big table's sake: a
/// hit then costs two dependent cache misses (slot, then entry and key together) instead of
/// three (slot, entry, key). On a 10^6-row table that is most of a lookup's time.
#[derive(Debug, Default)]
pub(super) struct Slots {
    pub(super) slots: Vec<Slot>,
    pub(super) len: usize,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// `tag(hash) | entry`, or `EMPTY`.
    tag_idx: u64,
    key: u32,
    key_len: u32,
}

const EMPTY: u64 = u64::MAX;
const EMPTY_SLOT: Slot = Slot {
    tag_idx: EMPTY,
    key: 0,
    key_len: 0,
};

fn tag(hash: u64) -> u64 {
    hash & 0xFFFF_FFFF_0000_0000
}

impl Slots {
    /// Room for `n` keys, in `buf`'s memory if it fits (`recycle::fits`; its bytes are added to
    /// `reused`).
    pub(super) fn reusing(buf: Vec<Slot>, n: usize, reused: &mut usize) -> Self {
        let cap = (n.saturating_mul(5) / 3 + 1).max(8).next_power_of_two();
        let mut slots = reuse(buf, cap, 0, reused);
        slots.resize(cap, EMPTY_SLOT);
        Slots { slots, len: 0 }
    }

    /// `eq(entry, key offset, key length)` confirms a tag match.
    pub(super) fn find(
        &self,
        hash: u64,
        mut eq: impl FnMut(u32, usize, usize) -> bool,
    ) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let s = self.slots[i];
            if s.tag_idx == EMPTY {
                return None;
            }
            if s.tag_idx & 0xFFFF_FFFF_0000_0000 == tag(hash)
                && eq(s.tag_idx as u32, s.key as usize, s.key_len as usize)
            {
                return Some(s.tag_idx as u32);
            }
            i = (i + 1) & mask;
        }
    }

    /// Inserts `idx` (known absent), growing first if needed; `rehash` recomputes the hash of
    /// an already stored entry, which keeps full hashes out of memory.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        idx: u32,
        key: u32,
        key_len: u32,
        rehash: impl Fn(u32) -> u64,
    ) {
        if (self.len + 1) * 5 > self.slots.len() * 3 {
            let doubled = vec![EMPTY_SLOT; self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, doubled);
            for s in old.into_iter().filter(|s| s.tag_idx != EMPTY) {
                self.place(rehash(s.tag_idx as u32), s);
            }
        }
        let slot = Slot {
            tag_idx: tag(hash) | u64::from(idx),
            key,
            key_len,
        };
        self.place(hash, slot);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        while self.slots[i].tag_idx != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }
}

/// One bit per key hash, 16 bits per planned entry (~6% false positives): small enough to stay
/// in cache, so the common miss (a URL with no entry, on most requests and on chain checks)
/// is answered without touching the 16 MB slot array of a million-row table.
#[derive(Debug, Default)]
pub(super) struct MissFilter {
    pub(super) bits: Vec<u64>,
    shift: u32,
}

impl MissFilter {
    /// Sized for `n` keys, in `bits`' memory if it fits (as [`Slots::reusing`]).
    pub(super) fn reusing(bits: Vec<u64>, n: usize, reused: &mut usize) -> Self {
        let nbits = (n.saturating_mul(16)).max(64).next_power_of_two();
        let mut bits = reuse(bits, nbits / 64, 0, reused);
        bits.resize(nbits / 64, 0);
        MissFilter {
            bits,
            shift: 64 - nbits.trailing_zeros(),
        }
    }

    fn bit(&self, hash: u64) -> usize {
        // Fibonacci hashing takes other bits than the slot index (low) and tag (high).
        (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    pub(super) fn set(&mut self, hash: u64) {
        let b = self.bit(hash);
        self.bits[b / 64] |= 1 << (b % 64);
    }

    pub(super) fn may_contain(&self, hash: u64) -> bool {
        let b = self.bit(hash);
        self.bits[b / 64] & (1 << (b % 64)) != 0
    }
}
