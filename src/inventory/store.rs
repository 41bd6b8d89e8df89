//! The inventory proper: a bounded heavy-hitters sketch (Space-Saving) of old-store URLs.
//!
//! Space-Saving keeps K counters; an unseen URL replaces the smallest counter `m` and starts at
//! `m + 1` with error `m`. Any URL with more than N/K of N hits is guaranteed to be kept, so a
//! scanner sending a million random URLs moves the floor up slowly while real pages, requested
//! again and again, stay. URLs from a sitemap are pinned: traffic never evicts them (import
//! refuses what would not fit).
//!
//! The counters are split into shards by a keyed hash, each behind a `std::sync::Mutex` taken
//! with a few `try_lock` attempts only: a request never waits (the lock is held for a hash
//! probe and a heap sift, never across an await); a shard still busy after them makes the hit
//! count as skipped instead ([`Stats::skipped_busy`]). A slot's
//! strings are reused when a URL replaces another, so even a flood allocates little, and a URL
//! already counted allocates nothing (`tests/inventory_alloc.rs`).

use super::crawler::CrawlerMatcher;
use super::entry::{Entry, OnNew, Sources};
use super::key::{clean_host, KeyPolicy, NoKey};
use super::shard::{Counter, Shard};
use http::{Method, StatusCode};
use std::cell::RefCell;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// The default capacity: 100,000 URLs, a few tens of MB at most.
pub const DEFAULT_CAPACITY: usize = 100_000;
const SHARDS: usize = 16;

/// What [`Inventory::record`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recorded {
    /// Counted on a URL already in the inventory.
    Counted,
    /// The URL entered the inventory (in a free slot or replacing the least counted URL).
    Added,
    /// Not a GET/HEAD answered with 2xx/3xx/410: not inventoried.
    NotEligible,
    /// No key: not a path, a `#`, a bad escape, or longer than `MAX_KEY_BYTES`.
    NoKey,
    /// Its shard was busy; the hit was dropped and counted in [`Stats::skipped_busy`].
    Busy,
    /// The URL's shard holds only sitemap URLs: nothing to replace.
    Full,
    /// New's answer about a URL the inventory does not hold: dropped (the inventory lists the
    /// old store's URLs; new's answers only add evidence to them).
    NotInventoried,
}

/// Counters of what the inventory could not keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// URLs kept now.
    pub urls: usize,
    /// Configured capacity.
    pub capacity: usize,
    /// Hits dropped because a shard was busy.
    pub skipped_busy: u64,
    /// Requests without a key (invalid or too long URL).
    pub no_key: u64,
    /// Hits on new URLs dropped because their shard held only sitemap URLs.
    pub full: u64,
}

thread_local! {
    static HOST: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The URL inventory. Share it behind an `Arc`; every method takes `&self`.
pub struct Inventory {
    capacity: usize,
    policy: KeyPolicy,
    crawlers: CrawlerMatcher,
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::quality::RandomState,
    len: AtomicUsize,
    skipped_busy: AtomicU64,
    no_key: AtomicU64,
    full: AtomicU64,
    /// Serialises sitemap imports and restores, so a capacity check stays true until applied.
    import: Mutex<()>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

/// Whether the old storefront's answer to this request makes its URL part of the inventory:
/// GET/HEAD answered 2xx, 3xx or 410 (a page that is gone on purpose is still a URL the plan
/// must answer). 404s and errors are not: a scanner's random URLs are 404s.
pub fn eligible(method: &Method, status: StatusCode) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && (status.is_success() || status.is_redirection() || status == StatusCode::GONE)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Attempts before a busy shard makes a hit count as skipped. The lock is held for a hash probe
/// and a sift (well under a microsecond), so a few spins usually find it free; never a wait.
const LOCK_ATTEMPTS: usize = 8;

fn try_lock_briefly(m: &Mutex<Shard>) -> Option<MutexGuard<'_, Shard>> {
    for _ in 0..LOCK_ATTEMPTS {
        match m.try_lock() {
            Ok(s) => return Some(s),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    None
}

/// What one request tells the inventory about its URL.
#[derive(Debug, Clone, Copy)]
enum Hit {
    /// The old storefront answered `status`: a hit; the URL comes in if it is new. `fallback`:
    /// the 404 fallback served that answer in new's place.
    Old {
        status: u16,
        crawler: bool,
        fallback: bool,
    },
    /// The new storefront answered: evidence on a URL already held, never a hit.
    New(OnNew),
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inventory {
    /// An empty inventory keeping about `capacity` URLs (at least 1), keyed with `policy`.
    pub fn new(capacity: usize, policy: KeyPolicy, crawlers: CrawlerMatcher) -> Self {
        let capacity = capacity.max(1);
        let n = SHARDS.min(capacity);
        let per = capacity.div_ceil(n);
        Inventory {
            capacity: per * n,
            policy,
            crawlers,
            shards: (0..n).map(|_| Mutex::new(Shard::new(per))).collect(),
            hasher: foldhash::quality::RandomState::default(),
            len: AtomicUsize::new(0),
            skipped_busy: AtomicU64::new(0),
            no_key: AtomicU64::new(0),
            full: AtomicU64::new(0),
            import: Mutex::new(()),
        }
    }

    /// How many URLs it keeps at most (the configured capacity rounded up to the shards).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// URLs kept now: the `cutover_inventory_urls` gauge. One atomic load.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key policy, for callers that key URLs the same way (sitemap import, reports).
    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// What could not be kept so far.
    pub fn stats(&self) -> Stats {
        Stats {
            urls: self.len(),
            capacity: self.capacity,
            skipped_busy: self.skipped_busy.load(Ordering::Relaxed),
            no_key: self.no_key.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
        }
    }

    fn shard_of(&self, hash: u64) -> &Mutex<Shard> {
        // High bits pick the shard; the map inside re-hashes the full value.
        &self.shards[((hash >> 32) as usize) % self.shards.len()]
    }

    /// Records a request the old storefront answered, on the request path: call it after the
    /// response head for requests routed to the old storefront. `host` is the request's host
    /// (used only when the policy keeps hosts apart), `path_and_query` the request target,
    /// `user_agent` the header's bytes (empty if absent). Never waits, never allocates for a
    /// URL already counted.
    pub fn record(
        &self,
        method: &Method,
        host: &str,
        path_and_query: &str,
        status: StatusCode,
        user_agent: &[u8],
    ) -> Recorded {
        self.old_answer(method, host, path_and_query, status, user_agent, false)
    }

    /// Records old's answer that the 404 fallback served in new's place: a hit like
    /// [`Inventory::record`]'s (old has the page), and the evidence that new lacks it
    /// ([`OnNew::FallbackServed`]).
    pub fn record_fallback(
        &self,
        method: &Method,
        host: &str,
        path_and_query: &str,
        status: StatusCode,
        user_agent: &[u8],
    ) -> Recorded {
        self.old_answer(method, host, path_and_query, status, user_agent, true)
    }

    /// An answer of old's, served as itself or by the fallback, counted if eligible.
    fn old_answer(
        &self,
        method: &Method,
        host: &str,
        path_and_query: &str,
        status: StatusCode,
        user_agent: &[u8],
        fallback: bool,
    ) -> Recorded {
        if !eligible(method, status) {
            return Recorded::NotEligible;
        }
        let hit = Hit::Old {
            status: status.as_u16(),
            crawler: self.crawlers.is_crawler(user_agent),
            fallback,
        };
        self.apply(host, path_and_query, hit, unix_now())
    }

    /// Notes what the new storefront answered to a GET/HEAD (on the request path, like
    /// [`Inventory::record`]): 2xx says the same path serves the page, 404/410 that it does not.
    /// Only URLs already inventoried keep it, so this never adds a URL nor allocates.
    pub fn observe_new(
        &self,
        method: &Method,
        host: &str,
        path_and_query: &str,
        status: StatusCode,
    ) -> Recorded {
        let on_new = OnNew::of_status(status.as_u16());
        match on_new {
            Some(v) if method == Method::GET || method == Method::HEAD => {
                self.apply(host, path_and_query, Hit::New(v), 0)
            }
            _ => Recorded::NotEligible,
        }
    }

    /// [`Inventory::record`] without the eligibility check, at time `now` (unix seconds).
    pub fn record_at(
        &self,
        host: &str,
        path_and_query: &str,
        status: u16,
        user_agent: &[u8],
        now: u64,
    ) -> Recorded {
        let hit = Hit::Old {
            status,
            crawler: self.crawlers.is_crawler(user_agent),
            fallback: false,
        };
        self.apply(host, path_and_query, hit, now)
    }

    /// Keys the request's URL (see [`KeyPolicy`]) and counts `hit` on it.
    fn apply(&self, host: &str, path_and_query: &str, hit: Hit, now: u64) -> Recorded {
        if !self.policy.per_host() {
            return self
                .policy
                .with_key(path_and_query, |key| self.count_key("", key, hit, now));
        }
        HOST.with(|h| {
            let mut h = match h.try_borrow_mut() {
                Ok(h) => h,
                Err(_) => return Recorded::Busy,
            };
            clean_host(host, &mut h);
            self.policy
                .with_key(path_and_query, |key| self.count_key(&h, key, hit, now))
        })
    }

    fn count_key(&self, host: &str, key: Result<&str, NoKey>, hit: Hit, now: u64) -> Recorded {
        match key {
            Ok(url) => self.count(host, url, hit, now),
            Err(NoKey::Invalid | NoKey::TooLong) => {
                self.no_key.fetch_add(1, Ordering::Relaxed);
                Recorded::NoKey
            }
        }
    }

    fn count(&self, host: &str, url: &str, hit: Hit, now: u64) -> Recorded {
        let hash = self.hasher.hash_one((host, url));
        let Some(mut shard) = try_lock_briefly(self.shard_of(hash)) else {
            self.skipped_busy.fetch_add(1, Ordering::Relaxed);
            return Recorded::Busy;
        };
        if let Some(&p) = shard.pos.get(&hash) {
            let p = p as usize;
            let c = &shard.heap[p];
            if c.url != url || c.host != host {
                // A 64-bit keyed-hash collision is not worth a slot; it is treated as busy.
                self.skipped_busy.fetch_add(1, Ordering::Relaxed);
                return Recorded::Busy;
            }
            match hit {
                Hit::Old {
                    status,
                    crawler,
                    fallback,
                } => {
                    let c = &mut shard.heap[p];
                    old_hit(c, status, crawler, now);
                    if fallback {
                        c.on_new = OnNew::FallbackServed.as_u8();
                    }
                    shard.sift_down(p);
                }
                // Evidence only: the rank (hits) does not move.
                Hit::New(v) => shard.heap[p].on_new = v.as_u8(),
            }
            return Recorded::Counted;
        }
        let Hit::Old {
            status,
            crawler,
            fallback,
        } = hit
        else {
            return Recorded::NotInventoried;
        };
        let before = shard.heap.len();
        let added = shard.insert(hash, host, url, |c, floor| {
            (c.hits, c.err, c.first) = (floor, floor, now);
            old_hit(c, status, crawler, now);
            if fallback {
                c.on_new = OnNew::FallbackServed.as_u8();
            }
        });
        if !added {
            self.full.fetch_add(1, Ordering::Relaxed);
            return Recorded::Full;
        }
        if shard.heap.len() > before {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        Recorded::Added
    }

    /// A copy of every entry, most hits first (then URL). Locks one shard at a time; allocates:
    /// for reports, persistence and the admin API, not the request path.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.len());
        for s in self.shards.iter() {
            out.extend(lock(s).heap.iter().map(Counter::to_entry));
        }
        sort_entries(&mut out);
        out
    }

    /// Marks `urls` (host, key) as listed in a sitemap, all or nothing: if the sitemap URLs
    /// would not fit next to those already pinned, nothing changes and the error says how many
    /// slots are missing. Traffic-only URLs make room (they are replaced); URLs already present
    /// keep their counts. Returns how many URLs were new to the inventory.
    pub fn import_sitemap_urls(
        &self,
        urls: &[(String, String)],
        now: u64,
    ) -> Result<usize, String> {
        let _serial = self.import.lock().unwrap_or_else(|p| p.into_inner());
        let unique: HashSet<&(String, String)> = urls.iter().collect();
        let mut per_shard: Vec<Vec<(u64, &str, &str)>> = vec![Vec::new(); self.shards.len()];
        for (host, url) in unique {
            let hash = self.hasher.hash_one((host.as_str(), url.as_str()));
            let i = ((hash >> 32) as usize) % self.shards.len();
            per_shard[i].push((hash, host, url));
        }
        // Check every shard first; only imports change the pinned counts and they are serial.
        for (i, wanted) in per_shard.iter().enumerate() {
            let s = lock(&self.shards[i]);
            let new_pins = wanted
                .iter()
                .filter(|(h, host, url)| s.find(*h, host, url).is_none_or(|p| !s.heap[p].pinned()))
                .count();
            if s.pinned + new_pins > s.cap {
                let (need, cap) = (s.pinned + new_pins, s.cap);
                drop(s);
                let total_pinned: usize = self.shards.iter().map(|s| lock(s).pinned).sum();
                return Err(format!(
                    "the inventory keeps {} URLs and {total_pinned} of them already come from \
                     sitemaps; {} sitemap URLs do not fit (one of its {} parts would need {} \
                     slots of {}): raise inventory.capacity to at least twice the sitemap URLs",
                    self.capacity,
                    urls.len(),
                    self.shards.len(),
                    need,
                    cap
                ));
            }
        }
        let mut added = 0;
        for (i, wanted) in per_shard.iter().enumerate() {
            let mut s = lock(&self.shards[i]);
            for &(hash, host, url) in wanted {
                match s.find(hash, host, url) {
                    Some(p) => {
                        if !s.heap[p].pinned() {
                            s.heap[p].sources |= Sources::SITEMAP;
                            s.pinned += 1;
                            // Its rank rose: move it down the min-heap.
                            s.sift_down(p);
                        }
                    }
                    None => {
                        let before = s.heap.len();
                        s.insert(hash, host, url, |c, _| {
                            (c.first, c.sources) = (now, Sources::SITEMAP);
                        });
                        added += 1;
                        if s.heap.len() > before {
                            self.len.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        Ok(added)
    }

    /// Puts entries read back from a file into an empty or live inventory: sitemap URLs first,
    /// then by hits, each in a free slot of its shard; what does not fit (the capacity was
    /// lowered) is dropped and counted in the result. Entries already present are replaced.
    pub fn restore(&self, mut entries: Vec<Entry>) -> usize {
        let _serial = self.import.lock().unwrap_or_else(|p| p.into_inner());
        entries.sort_by_key(|e| std::cmp::Reverse((e.sources.sitemap, e.hits)));
        let mut dropped = 0;
        for e in entries {
            let hash = self.hasher.hash_one((e.host.as_str(), e.url.as_str()));
            let mut s = lock(self.shard_of(hash));
            let fill = |c: &mut Counter| {
                (c.hits, c.err, c.crawler) = (e.hits, e.hits_error.min(e.hits), e.crawler_hits);
                (c.first, c.last, c.status) = (e.first_seen, e.last_seen, e.last_status);
                c.sources = e.sources.bits();
                c.on_new = e.on_new.as_u8();
            };
            if let Some(p) = s.find(hash, &e.host, &e.url) {
                let was = s.heap[p].pinned();
                fill(&mut s.heap[p]);
                let now_pinned = s.heap[p].pinned();
                s.pinned = s.pinned + usize::from(now_pinned) - usize::from(was);
                // Rank up: sift_down moves it; rank down: sift_up does. The other is a no-op.
                s.sift_down(p);
                s.sift_up(p);
                continue;
            }
            if s.heap.len() >= s.cap {
                dropped += 1;
                continue;
            }
            s.insert(hash, &e.host, &e.url, |c, _| fill(c));
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        dropped
    }
}

/// One more hit answered by the old storefront with `status` at `now`.
fn old_hit(c: &mut Counter, status: u16, crawler: bool, now: u64) {
    c.hits += 1;
    c.crawler += u64::from(crawler);
    c.last = now;
    c.status = status;
    c.sources |= Sources::TRAFFIC;
}

/// Most hits first, then crawler hits, then URL: a stable order for reports and files.
pub(crate) fn sort_entries(v: &mut [Entry]) {
    v.sort_by(|a, b| {
        b.hits
            .cmp(&a.hits)
            .then(b.crawler_hits.cmp(&a.crawler_hits))
            .then_with(|| a.host.cmp(&b.host))
            .then_with(|| a.url.cmp(&b.url))
    });
}
