//! The lookup table: compact enough for 10^6 rows, exact hits in O(1), prefix rules in
//! O(path segments).
//!
//! Every key and target lives in one arena `String`; an [`Entry`] is 24 bytes of offsets, and
//! the two hash indexes are open-addressing arrays of 16-byte slots (entry number, hash tag, and
//! where the key is in the arena) compared against the arena. No per-entry allocation: a million
//! rows cost a handful of allocations, load fast and free fast.

use super::config::{ApplyTo, DuringShift, QueryMode, TableConfig};
use super::index::{MissFilter, Slot, Slots};
use super::normalize::{build_location, Matching, Normalized};
use super::recycle::{fits, reuse};
use super::Hit;
use crate::http1::scan;
use http::StatusCode;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Keys are hashed with foldhash's seeded fast hash, not SipHash: a lookup hashes the request's
/// URL once or twice, and at ~60 bytes SipHash was a tenth of a redirect's user-space CPU.
/// The table's keys come from the operator's plan, not from clients, so a client cannot build
/// collision chains; the per-table random seed keeps probe clusters unpredictable anyway.
type RandomState = foldhash::fast::RandomState;

/// Entry flag: the entry is a prefix (`/*`) rule.
const PREFIX: u8 = 1;
/// Entry flag: the target ends in `*`; the request's remaining path is appended.
const SPLAT: u8 = 2;
/// Host id of host-less entries.
pub(crate) const ANY_HOST: u32 = 0;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    key: u32,
    target: u32,
    line: u32,
    host: u32,
    key_len: u16,
    target_len: u16,
    status: u16,
    flags: u8,
}

/// A loaded, validated redirect table. Immutable once built; share it behind an `Arc`.
#[derive(Debug)]
pub struct RedirectTable {
    name: Box<str>,
    apply_to: ApplyTo,
    during_shift: DuringShift,
    pub(crate) matching: Matching,
    arena: String,
    entries: Vec<Entry>,
    exact: Slots,
    exact_filter: MissFilter,
    prefix: Slots,
    /// Lowercase host -> id; id 0 is "any host".
    hosts: HashMap<Box<str>, u32>,
    host_names: Vec<Box<str>>,
    /// Keyed SipHash: table keys come from a trusted file, but a fixed hash would let request
    /// keys be chosen to walk the longest probe runs.
    hasher: RandomState,
}

/// What a lookup found, before it becomes a public [`Hit`].
pub(crate) struct Found {
    pub idx: u32,
    pub location: Option<String>,
}

thread_local! {
    /// Per-thread buffers for lookups, so a request allocates only its `Location`. They grow
    /// to the longest URL seen on the thread (bounded by the server's URI limit).
    static SCRATCH: RefCell<(Normalized, String)> = RefCell::new(Default::default());
}

/// Longest URL accepted in a table, to keep offsets in `u16`.
pub(crate) const MAX_URL: usize = 8192;

/// A table's big allocations without their contents: what a retired table leaves for the next
/// load (see `recycle`).
#[derive(Default)]
pub(crate) struct Buffers {
    arena: String,
    entries: Vec<Entry>,
    exact: Vec<Slot>,
    prefix: Vec<Slot>,
    filter: Vec<u64>,
}

impl Buffers {
    /// Buffers with an arena of `cap` bytes and nothing else.
    #[cfg(test)]
    pub(crate) fn with_arena(cap: usize) -> Self {
        Buffers {
            arena: String::with_capacity(cap),
            ..Buffers::default()
        }
    }

    pub(crate) fn arena_capacity(&self) -> usize {
        self.arena.capacity()
    }

    /// Heap bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.arena.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + (self.exact.capacity() + self.prefix.capacity()) * std::mem::size_of::<Slot>()
            + self.filter.capacity() * 8
    }
}

impl RedirectTable {
    /// An empty table sized for `rows` rows and `url_bytes` of URL text, in `mem`: a retired
    /// table's memory (`recycle`), so a reload writes to pages the process already has, or none.
    /// Also returns how many bytes of `mem` it kept (buffers that do not fit are freed).
    pub(crate) fn with_capacity(
        cfg: &TableConfig,
        rows: usize,
        url_bytes: usize,
        mem: Buffers,
    ) -> (Self, usize) {
        let (b, mut reused) = (mem, 0);
        let arena = reuse(b.arena.into_bytes(), url_bytes, url_bytes / 8, &mut reused);
        let table = RedirectTable {
            name: cfg.name.as_str().into(),
            apply_to: cfg.apply_to,
            during_shift: cfg.during_shift,
            matching: Matching::new(cfg),
            // Empty, so valid UTF-8.
            arena: String::from_utf8(arena).unwrap_or_default(),
            entries: reuse(b.entries, rows, rows / 8, &mut reused),
            exact: Slots::reusing(b.exact, rows, &mut reused),
            exact_filter: MissFilter::reusing(b.filter, rows, &mut reused),
            prefix: Slots::reusing(b.prefix, 0, &mut reused),
            hosts: HashMap::new(),
            host_names: vec!["".into()],
            hasher: RandomState::default(),
        };
        (table, reused)
    }

    /// Where the arena and the exact slots live, to tell whether a table reused memory.
    #[cfg(test)]
    pub(crate) fn memory(&self) -> (usize, usize) {
        (
            self.arena.as_ptr() as usize,
            self.exact.slots.as_ptr() as usize,
        )
    }

    /// The table's big allocations, for another table to be built in.
    pub(crate) fn into_buffers(self) -> Buffers {
        Buffers {
            arena: self.arena,
            entries: self.entries,
            exact: self.exact.slots,
            prefix: self.prefix.slots,
            filter: self.exact_filter.bits,
        }
    }

    /// Gives the table's memory to the next load (`recycle`); the rest of it is dropped.
    pub(crate) fn recycle(self) {
        super::recycle::keep_table(self.into_buffers());
    }

    /// The table's name from the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which requests the table answers.
    pub fn applies_to(&self) -> ApplyTo {
        self.apply_to
    }

    /// Status policy while the share is below 100%.
    pub fn during_shift(&self) -> DuringShift {
        self.during_shift
    }

    /// Number of entries, exact and prefix.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finds the answer for a request. `host` is lowercase without port (may be empty);
    /// `path_and_query` is the raw request target. Per-host entries are searched first, then
    /// host-less ones; within each, the exact URL with its query, the bare path, then the
    /// longest prefix rule. The `Location` is built only from the table's target plus the
    /// request's re-encoded splat suffix and carried query.
    pub fn lookup(&self, host: &str, path_and_query: &str) -> Option<Hit> {
        let found = self.find(host, path_and_query, false)?;
        let e = self.entries[found.idx as usize];
        Some(Hit {
            written: StatusCode::from_u16(e.status).ok()?,
            location: found.location,
            line: e.line,
            during_shift: self.during_shift,
        })
    }

    /// `prefix_only` restricts the search to prefix rules (chain resolution of a splat source).
    pub(crate) fn find(&self, host: &str, pq: &str, prefix_only: bool) -> Option<Found> {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => {
                let (n, key) = &mut *s;
                self.find_with(n, key, host, pq, prefix_only)
            }
            Err(_) => self.find_with(
                &mut Normalized::default(),
                &mut String::new(),
                host,
                pq,
                prefix_only,
            ),
        })
    }

    fn find_with(
        &self,
        n: &mut Normalized,
        key: &mut String,
        host: &str,
        pq: &str,
        prefix_only: bool,
    ) -> Option<Found> {
        let (path, query) = match scan::split_once(pq, b'?') {
            Some((p, q)) => (p, Some(q)),
            None => (pq, None),
        };
        if !path.starts_with('/') {
            return None;
        }
        let m = &self.matching;
        n.fill(path, query, m).ok()?;
        let host_id = if host.is_empty() {
            None
        } else {
            self.hosts.get(host).copied()
        };
        for h in [host_id, Some(ANY_HOST)].into_iter().flatten() {
            // Path-only matches carry the whole query (or none when dropping it).
            let carry_all = if m.query == QueryMode::Drop {
                ""
            } else {
                n.query.as_str()
            };
            if !prefix_only {
                let has_qkey = m.query == QueryMode::Key && !n.query_key.is_empty();
                if has_qkey {
                    n.exact_key(true, m, key);
                    if let Some(i) = self.find_in(false, h, key) {
                        return Some(self.found(i, "", &n.tracking));
                    }
                }
                if !has_qkey || m.query_fallback {
                    n.exact_key(false, m, key);
                    if let Some(i) = self.find_in(false, h, key) {
                        return Some(self.found(i, "", carry_all));
                    }
                }
            }
            if self.prefix.len > 0 {
                if let Some((i, cut)) = self.longest_prefix(h, &n.folded) {
                    return Some(self.found(i, &n.path[cut..], carry_all));
                }
            }
        }
        None
    }

    /// Tries `folded` itself, then each prefix ending before a `/`, longest first: one hash
    /// probe per segment. Returns the entry and where the suffix starts.
    fn longest_prefix(&self, h: u32, folded: &str) -> Option<(u32, usize)> {
        if !folded.ends_with('/') {
            if let Some(i) = self.find_in(true, h, folded) {
                return Some((i, folded.len()));
            }
        }
        let bytes = folded.as_bytes();
        (0..bytes.len())
            .rev()
            .filter(|&i| bytes[i] == b'/')
            .find_map(|cut| self.find_in(true, h, &folded[..cut]).map(|i| (i, cut)))
    }

    fn found(&self, idx: u32, suffix: &str, query: &str) -> Found {
        let e = self.entries[idx as usize];
        let location = if e.status == 410 {
            None
        } else {
            build_location(self.target(idx), e.flags & SPLAT != 0, suffix, query)
        };
        Found { idx, location }
    }

    fn hash(&self, host: u32, key: &str) -> u64 {
        self.hasher.hash_one((host, key))
    }

    fn find_in(&self, prefix: bool, host: u32, key: &str) -> Option<u32> {
        self.find_hashed(prefix, host, key, self.hash(host, key))
    }

    fn find_hashed(&self, prefix: bool, host: u32, key: &str, hash: u64) -> Option<u32> {
        if !prefix && !self.exact_filter.may_contain(hash) {
            return None;
        }
        let slots = if prefix { &self.prefix } else { &self.exact };
        let flag = if prefix { PREFIX } else { 0 };
        // The key and the entry are both addressed by the slot, so their loads overlap.
        slots.find(hash, |i, k, len| {
            let e = &self.entries[i as usize];
            self.arena.as_bytes().get(k..k + len) == Some(key.as_bytes())
                && e.host == host
                && e.flags & PREFIX == flag
        })
    }

    // ---- building (crate-internal) ----

    pub(crate) fn host_id(&mut self, host: &str) -> u32 {
        if host.is_empty() {
            return ANY_HOST;
        }
        if let Some(&id) = self.hosts.get(host) {
            return id;
        }
        let id = self.host_names.len() as u32;
        self.host_names.push(host.into());
        self.hosts.insert(host.into(), id);
        id
    }

    /// Adds an entry unless its key is taken; `Err` carries the existing entry, or `None` if the
    /// arena or the entry count outgrew `u32`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        host: u32,
        key: &str,
        prefix: bool,
        target: &str,
        splat: bool,
        status: u16,
        line: u32,
    ) -> Result<u32, Option<u32>> {
        let hash = self.hash(host, key);
        if let Some(existing) = self.find_hashed(prefix, host, key, hash) {
            return Err(Some(existing));
        }
        let idx = u32::try_from(self.entries.len())
            .ok()
            .filter(|&i| i < u32::MAX)
            .ok_or(None)?;
        let key_off = self.push_arena(key).ok_or(None)?;
        let target_off = self.push_arena(target).ok_or(None)?;
        let flags = if prefix { PREFIX } else { 0 } | if splat { SPLAT } else { 0 };
        self.entries.push(Entry {
            key: key_off,
            target: target_off,
            line,
            host,
            key_len: key.len() as u16,
            target_len: target.len() as u16,
            status,
            flags,
        });
        let (entries, arena, hasher) = (&self.entries, &self.arena, &self.hasher);
        let rehash = |i: u32| {
            let e = &entries[i as usize];
            hasher.hash_one((e.host, &arena[e.key as usize..][..e.key_len as usize]))
        };
        if prefix {
            &mut self.prefix
        } else {
            self.exact_filter.set(hash);
            &mut self.exact
        }
        .insert(hash, idx, key_off, key.len() as u32, rehash);
        Ok(idx)
    }

    fn push_arena(&mut self, s: &str) -> Option<u32> {
        let off = u32::try_from(self.arena.len()).ok()?;
        u32::try_from(self.arena.len() + s.len()).ok()?;
        self.arena.push_str(s);
        Some(off)
    }

    /// Replaces a target after chain collapse.
    pub(crate) fn set_target(&mut self, idx: u32, target: &str, splat: bool) -> Option<()> {
        let off = self.push_arena(target)?;
        let len = u16::try_from(target.len()).ok()?;
        let e = &mut self.entries[idx as usize];
        e.target = off;
        e.target_len = len;
        e.flags = (e.flags & !SPLAT) | if splat { SPLAT } else { 0 };
        Some(())
    }

    /// Releases capacity the table would otherwise hold beyond twice its contents (rows sized
    /// by the file's newlines, URL text by its bytes: a CSV with wide note columns overestimates
    /// both). Anything closer stays, for the next reload to build in.
    pub(crate) fn finish(&mut self) {
        if !fits(self.arena.capacity(), self.arena.len()) {
            self.arena.shrink_to_fit();
        }
        if !fits(self.entries.capacity(), self.entries.len()) {
            self.entries.shrink_to_fit();
        }
    }

    pub(crate) fn key(&self, i: u32) -> &str {
        let e = &self.entries[i as usize];
        &self.arena[e.key as usize..][..e.key_len as usize]
    }

    pub(crate) fn target(&self, i: u32) -> &str {
        let e = &self.entries[i as usize];
        &self.arena[e.target as usize..][..e.target_len as usize]
    }

    pub(crate) fn status(&self, i: u32) -> u16 {
        self.entries[i as usize].status
    }

    pub(crate) fn line(&self, i: u32) -> u32 {
        self.entries[i as usize].line
    }

    pub(crate) fn is_prefix(&self, i: u32) -> bool {
        self.entries[i as usize].flags & PREFIX != 0
    }

    pub(crate) fn is_splat(&self, i: u32) -> bool {
        self.entries[i as usize].flags & SPLAT != 0
    }

    pub(crate) fn host_of(&self, i: u32) -> &str {
        &self.host_names[self.entries[i as usize].host as usize]
    }

    /// The entry as a human would write it, for messages.
    pub(crate) fn describe(&self, i: u32) -> String {
        let host = self.host_of(i);
        let star = if self.is_prefix(i) { "/*" } else { "" };
        let origin = if host.is_empty() {
            String::new()
        } else {
            format!("https://{host}")
        };
        format!("{origin}{}{star}", self.key(i))
    }

    /// Bytes of URL text kept.
    pub fn url_bytes(&self) -> usize {
        self.arena.len()
    }

    /// Heap bytes beyond the URL text: entries, hash slots, host names, spare capacity.
    pub fn overhead_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + (self.exact.slots.capacity() + self.prefix.slots.capacity())
                * std::mem::size_of::<Slot>()
            + self.exact_filter.bits.capacity() * 8
            + (self.arena.capacity() - self.arena.len())
            + self
                .host_names
                .iter()
                .map(|h| h.len() * 2 + 48)
                .sum::<usize>()
    }
}
