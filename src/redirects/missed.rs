//! Missed redirects: the old URLs shoppers and crawlers still ask for that have no entry and
//! that the new storefront answers with 404. A bounded heavy-hitters sketch (Space-Saving) keeps
//! the top K with counts, so week one of a migration has a to-do list ready to paste into the
//! plan, in constant memory whatever the traffic.
//!
//! Space-Saving keeps K counters; an unseen key replaces the smallest counter `m` and starts at
//! `m + 1` with error bound `m`. Any key seen more than N/K times is guaranteed to be present,
//! and `count - error_bound <= true count <= count`. The counters are split into shards by key
//! hash, each behind its own mutex taken with `try_lock`: a request never waits, a busy shard
//! makes the record count as skipped instead.

use super::config::{default_ignore_params, ParamFilter};
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};

/// Keys are cut at this many bytes: a scanner's 8 KiB URLs must not fill memory.
pub const MAX_KEY_BYTES: usize = 512;
const SHARDS: usize = 8;

/// One missed URL with its estimated count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissedEntry {
    /// Empty unless the sketch keeps hosts apart ([`MissedRedirects::per_host`]).
    pub host: String,
    /// Path and query, tracking parameters removed, at most `MAX_KEY_BYTES`.
    pub path: String,
    /// Upper bound of the true count.
    pub count: u64,
    /// `count - error_bound` is a lower bound of the true count.
    pub error_bound: u64,
}

struct Counter {
    hash: u64,
    host: Box<str>,
    path: Box<str>,
    count: u64,
    err: u64,
}

/// One shard: a min-heap on `count` plus hash -> heap position.
#[derive(Default)]
struct Summary {
    cap: usize,
    heap: Vec<Counter>,
    pos: HashMap<u64, usize>,
}

impl Summary {
    fn offer(&mut self, hash: u64, host: &str, path: String) {
        if let Some(&p) = self.pos.get(&hash) {
            self.heap[p].count += 1;
            self.sift_down(p);
            return;
        }
        let (host, path) = (host.into(), path.into_boxed_str());
        if self.heap.len() < self.cap {
            self.heap.push(Counter {
                hash,
                host,
                path,
                count: 1,
                err: 0,
            });
            let last = self.heap.len() - 1;
            self.pos.insert(hash, last);
            self.sift_up(last);
            return;
        }
        let min = self.heap[0].count;
        self.pos.remove(&self.heap[0].hash);
        self.heap[0] = Counter {
            hash,
            host,
            path,
            count: min + 1,
            err: min,
        };
        self.pos.insert(hash, 0);
        self.sift_down(0);
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos.insert(self.heap[a].hash, a);
        self.pos.insert(self.heap[b].hash, b);
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent].count <= self.heap[i].count {
                break;
            }
            self.swap(parent, i);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < self.heap.len() && self.heap[l].count < self.heap[least].count {
                least = l;
            }
            if r < self.heap.len() && self.heap[r].count < self.heap[least].count {
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

/// The bounded top-K of missed URLs. Cheap to share (`Arc`), safe to call from every request.
pub struct MissedRedirects {
    k: usize,
    per_host: bool,
    shards: Box<[Mutex<Summary>]>,
    skipped: AtomicU64,
    hasher: RandomState,
    ignore: ParamFilter,
}

impl MissedRedirects {
    /// Keeps about `k` URLs (at least 1), keyed by path and query only: a store behind
    /// `www.` and the bare domain wants one row per page.
    pub fn new(k: usize) -> Self {
        let k = k.max(1);
        let n = SHARDS.min(k);
        let cap = k.div_ceil(n);
        let shards = (0..n)
            .map(|_| {
                Mutex::new(Summary {
                    cap,
                    ..Summary::default()
                })
            })
            .collect();
        MissedRedirects {
            k,
            per_host: false,
            shards,
            skipped: AtomicU64::new(0),
            hasher: RandomState::new(),
            ignore: ParamFilter::new(&default_ignore_params()),
        }
    }

    /// Keeps hosts apart (the CSV then writes full URLs, i.e. per-host entries).
    pub fn per_host(mut self, yes: bool) -> Self {
        self.per_host = yes;
        self
    }

    /// Counts one miss. Never blocks: if the shard is busy the miss is counted in
    /// [`MissedRedirects::skipped`] instead.
    pub fn record(&self, host: &str, path_and_query: &str) {
        let host = if self.per_host { host } else { "" };
        let path = self.key(path_and_query);
        let hash = self.hasher.hash_one((host, path.as_str()));
        let shard = &self.shards[(hash >> 32) as usize % self.shards.len()];
        match shard.try_lock() {
            Ok(mut s) => s.offer(hash, host, path),
            Err(TryLockError::Poisoned(p)) => p.into_inner().offer(hash, host, path),
            Err(TryLockError::WouldBlock) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Tracking parameters removed (they would split one page into thousands of rows), then
    /// cut at [`MAX_KEY_BYTES`] on a character boundary.
    fn key(&self, pq: &str) -> String {
        let mut out = String::with_capacity(pq.len().min(MAX_KEY_BYTES));
        match pq.split_once('?') {
            None => out.push_str(pq),
            Some((path, query)) => {
                out.push_str(path);
                let mut sep = '?';
                for p in query.split('&').filter(|p| !p.is_empty()) {
                    let name = p.split('=').next().unwrap_or(p);
                    if !self.ignore.matches(name) {
                        out.push(sep);
                        out.push_str(p);
                        sep = '&';
                    }
                }
            }
        }
        if out.len() > MAX_KEY_BYTES {
            let mut cut = MAX_KEY_BYTES;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }

    /// Misses not counted because their shard was busy.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Forgets everything, e.g. after the plan was updated.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            s.heap.clear();
            s.pos.clear();
        }
    }

    /// The top K, highest count first.
    pub fn top(&self) -> Vec<MissedEntry> {
        let mut all: Vec<MissedEntry> = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            all.extend(s.heap.iter().map(|c| MissedEntry {
                host: c.host.to_string(),
                path: c.path.to_string(),
                count: c.count,
                error_bound: c.err,
            }));
        }
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.path.cmp(&b.path)));
        all.truncate(self.k);
        all
    }

    /// `{"tracked_urls_at_most":..,"skipped":..,"entries":[{"host","path","count",
    /// "count_at_least","count_error_at_most"}..]}`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Entry {
            host: String,
            path: String,
            count: u64,
            count_at_least: u64,
            count_error_at_most: u64,
        }
        #[derive(Serialize)]
        struct Doc {
            tracked_urls_at_most: usize,
            skipped: u64,
            entries: Vec<Entry>,
        }
        let doc = Doc {
            tracked_urls_at_most: self.k,
            skipped: self.skipped(),
            entries: self
                .top()
                .into_iter()
                .map(|e| Entry {
                    count_at_least: e.count - e.error_bound.min(e.count),
                    count_error_at_most: e.error_bound,
                    host: e.host,
                    path: e.path,
                    count: e.count,
                })
                .collect(),
        };
        serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into())
    }

    /// CSV ready to paste into the plan: `old_url,new_url,status,count` with `new_url` and
    /// `status` left for the team to fill; `count` is an extra column the loader ignores.
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut rows = vec![[
            "old_url".to_string(),
            "new_url".into(),
            "status".into(),
            "count".into(),
        ]];
        for e in self.top() {
            let old = if e.host.is_empty() {
                e.path
            } else {
                format!("https://{}{}", e.host, e.path)
            };
            rows.push([old, String::new(), String::new(), e.count.to_string()]);
        }
        for r in rows {
            // Writing to a Vec cannot fail.
            let _ = w.write_record(&r);
        }
        w.into_inner()
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for MissedRedirects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MissedRedirects")
            .field("k", &self.k)
            .field("skipped", &self.skipped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn heavy_hitters_found_under_noise() {
        let m = MissedRedirects::new(100);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut truth: HashMap<String, u64> = HashMap::new();
        for i in 0..200_000u32 {
            let path = if i % 10 < 3 {
                // 30% of traffic on 5 heavy URLs, skewed.
                format!("/heavy/{}", rng.u32(0..5) * rng.u32(0..2))
            } else {
                format!("/noise/{}", rng.u32(0..1_000_000))
            };
            *truth.entry(path.clone()).or_default() += 1;
            m.record("old.example", &path);
        }
        let top = m.top();
        assert!(top.len() <= 100, "bounded: {}", top.len());
        for h in ["/heavy/0", "/heavy/1", "/heavy/2", "/heavy/3", "/heavy/4"] {
            let e = top
                .iter()
                .find(|e| e.path == h)
                .unwrap_or_else(|| panic!("{h} missing"));
            let t = truth[h];
            assert!(
                e.count >= t && e.count - e.error_bound <= t,
                "{h}: {e:?} true {t}"
            );
        }
        assert_eq!(top[0].path, "/heavy/0", "the heaviest first");
    }

    #[test]
    fn bounded_keys_and_tracking_removed() {
        let m = MissedRedirects::new(10);
        m.record("h", &format!("/{}", "é".repeat(1000)));
        m.record("h", "/p?id=1&utm_source=x&gclid=2");
        m.record("h", "/p?utm_medium=y&id=1");
        let top = m.top();
        assert!(top.iter().all(|e| e.path.len() <= MAX_KEY_BYTES));
        let p = top.iter().find(|e| e.path.starts_with("/p")).unwrap();
        assert_eq!((p.path.as_str(), p.count), ("/p?id=1", 2));
        assert_eq!(p.host, "", "host ignored unless per_host");
    }

    #[test]
    fn csv_and_json_ready_to_paste() {
        let m = MissedRedirects::new(10).per_host(true);
        m.record("old.example", "/a,b");
        m.record("", "/c");
        m.record("", "/c");
        let csv = m.to_csv();
        assert_eq!(
            csv,
            "old_url,new_url,status,count\n/c,,,2\n\"https://old.example/a,b\",,,1\n"
        );
        let j: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(j["entries"][0]["path"], "/c");
        assert_eq!(j["entries"][0]["count"], 2);
        m.clear();
        assert!(m.top().is_empty());
    }

    #[test]
    fn concurrent_records_never_block_and_are_accounted() {
        let m = Arc::new(MissedRedirects::new(50));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        m.record("", &format!("/t{}/{}", t, i % 7));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let counted: u64 = m.top().iter().map(|e| e.count).sum();
        assert_eq!(
            counted + m.skipped(),
            80_000,
            "each record is counted or skipped"
        );
    }
}
