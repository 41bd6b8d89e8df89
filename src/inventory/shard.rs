//! One shard of the inventory's Space-Saving sketch: its counters in a min-heap on rank, and
//! the map from a URL's hash to its heap position.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::entry::{Entry, OnNew, Sources};

pub(super) struct Counter {
    pub(super) hash: u64,
    pub(super) host: String,
    pub(super) url: String,
    pub(super) hits: u64,
    pub(super) err: u64,
    pub(super) crawler: u64,
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) status: u16,
    pub(super) sources: u8,
    /// [`OnNew`] as a byte.
    pub(super) on_new: u8,
}

impl Counter {
    pub(super) fn pinned(&self) -> bool {
        self.sources & Sources::SITEMAP != 0
    }

    /// Heap order: traffic-only URLs below sitemap ones, then by hits.
    pub(super) fn rank(&self) -> (bool, u64) {
        (self.pinned(), self.hits)
    }

    pub(super) fn to_entry(&self) -> Entry {
        Entry {
            host: self.host.clone(),
            url: self.url.clone(),
            hits: self.hits,
            hits_error: self.err,
            crawler_hits: self.crawler,
            first_seen: self.first,
            last_seen: self.last,
            last_status: self.status,
            sources: Sources::from_bits(self.sources),
            on_new: OnNew::from_u8(self.on_new),
        }
    }
}

/// The URL's hash is computed once per request (keyed, well mixed: foldhash's quality
/// variant, seeded per process); the position map keys on it as it is instead of hashing it
/// a second time.
#[derive(Default)]
pub(super) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; anything else still gets a usable value.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// One shard: a min-heap on rank plus hash -> heap position.
pub(super) struct Shard {
    pub(super) cap: usize,
    pub(super) heap: Vec<Counter>,
    pub(super) pos: HashMap<u64, u32, BuildHasherDefault<PreHashed>>,
    pub(super) pinned: usize,
}

impl Shard {
    pub(super) fn new(cap: usize) -> Self {
        Shard {
            cap,
            heap: Vec::new(),
            pos: HashMap::default(),
            pinned: 0,
        }
    }

    pub(super) fn find(&self, hash: u64, host: &str, url: &str) -> Option<usize> {
        let p = *self.pos.get(&hash)? as usize;
        let c = &self.heap[p];
        // A 64-bit keyed-hash collision is not worth a slot; it is treated as busy.
        (c.url == url && c.host == host).then_some(p)
    }

    /// Puts a counter in: a free slot, or in place of the least ranked traffic URL.
    /// Returns false if every slot holds a sitemap URL.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        host: &str,
        url: &str,
        fill: impl FnOnce(&mut Counter, u64),
    ) -> bool {
        if self.heap.len() < self.cap {
            let mut c = Counter {
                hash,
                host: host.to_owned(),
                url: url.to_owned(),
                hits: 0,
                err: 0,
                crawler: 0,
                first: 0,
                last: 0,
                status: 0,
                sources: 0,
                on_new: 0,
            };
            fill(&mut c, 0);
            let at = self.heap.len();
            self.pinned += usize::from(c.pinned());
            self.heap.push(c);
            self.pos.insert(hash, at as u32);
            self.sift_up(at);
            return true;
        }
        if self.heap.first().is_none_or(Counter::pinned) {
            return false;
        }
        let min = &mut self.heap[0];
        self.pos.remove(&min.hash);
        let floor = min.hits;
        // Reuse the strings' memory: a flood of new URLs mostly allocates nothing.
        min.hash = hash;
        min.host.clear();
        min.host.push_str(host);
        min.url.clear();
        min.url.push_str(url);
        (
            min.hits,
            min.err,
            min.crawler,
            min.first,
            min.last,
            min.status,
            min.sources,
            min.on_new,
        ) = (0, 0, 0, 0, 0, 0, 0, 0);
        fill(min, floor);
        self.pinned += usize::from(min.pinned());
        self.pos.insert(hash, 0);
        self.sift_down(0);
        true
    }

    pub(super) fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        // Both keys are present, so their positions are updated in place. Not `insert`:
        // hashbrown reserves room for one more entry before it looks for the key, so on a full
        // table an `insert` of a key already there grows the table (the 152-byte allocation that
        // made `inventory_alloc` fail now and then, when the process's hash seed put exactly
        // three URLs in one shard).
        for i in [a, b] {
            if let Some(p) = self.pos.get_mut(&self.heap[i].hash) {
                *p = i as u32;
            }
        }
    }

    pub(super) fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent].rank() <= self.heap[i].rank() {
                break;
            }
            self.swap(parent, i);
            i = parent;
        }
    }

    pub(super) fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < self.heap.len() && self.heap[l].rank() < self.heap[least].rank() {
                least = l;
            }
            if r < self.heap.len() && self.heap[r].rank() < self.heap[least].rank() {
                least = r;
            }
            if least == i {
                return;
            }
            self.swap(i, least);
            i = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Swapping two counters never grows the position map, even when it is full: a hit on a
    /// known URL must not allocate (`tests/inventory_alloc.rs`).
    #[test]
    fn swapping_positions_never_grows_a_full_map() {
        let mut shard = Shard::new(16);
        for (i, url) in ["/a", "/b", "/c"].into_iter().enumerate() {
            assert!(shard.insert(i as u64 + 1, "", url, |c, _| c.hits = 10 - i as u64));
        }
        // Three entries fill the smallest table (four buckets, room for three).
        let capacity = shard.pos.capacity();
        assert_eq!(capacity, shard.pos.len(), "the map is full");
        for _ in 0..100 {
            shard.swap(0, 2);
            shard.swap(1, 2);
        }
        assert_eq!(shard.pos.capacity(), capacity);
        for (i, c) in shard.heap.iter().enumerate() {
            assert_eq!(shard.pos[&c.hash] as usize, i, "positions follow the heap");
        }
    }
}
