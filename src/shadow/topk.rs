//! The most frequent URLs of a stream in bounded memory: the space-saving algorithm (Metwally,
//! Agrawal, El Abbadi 2005).
//!
//! URLs come from shoppers, so a plain map would grow with every distinct URL a crawler invents.
//! Space-saving keeps `capacity` counters: a URL already counted is incremented; a new URL takes
//! the slot of the least counted one and inherits its count (+1), remembering that inherited part
//! as `error`. Every URL hit more than `total / capacity` times is guaranteed to be in the table,
//! and `count - error` is a lower bound of its true hits. Capacities are small (tens), so a linear
//! scan beats hashing and keeps the structure trivially bounded.

use serde::Serialize;

/// The longest URL kept, in bytes; longer ones are cut at a character boundary (and marked with
/// `…`), so one absurd request cannot make the table large.
pub const MAX_URL_BYTES: usize = 2048;

/// A bounded table of the most frequent keys.
#[derive(Debug, Clone)]
pub struct TopK {
    capacity: usize,
    slots: Vec<Slot>,
}

#[derive(Debug, Clone)]
struct Slot {
    key: String,
    count: u64,
    error: u64,
}

/// One row of [`TopK::top`]: a key, its estimated hits and the possible overestimate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hits {
    /// The URL (as requested, cut to [`MAX_URL_BYTES`]).
    pub url: String,
    /// Estimated hits (never below the true number).
    pub hits: u64,
    /// How much of `hits` may belong to URLs this one replaced (0 when exact).
    pub error: u64,
}

impl TopK {
    /// A table of at most `capacity` keys (0 keeps nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            slots: Vec::new(),
        }
    }

    /// Counts one hit of `key`.
    pub fn add(&mut self, key: &str) {
        let key = truncate(key, MAX_URL_BYTES);
        if let Some(slot) = self.slots.iter_mut().find(|s| s.key == key) {
            slot.count += 1;
            return;
        }
        if self.slots.len() < self.capacity {
            self.slots.push(Slot {
                key: key.to_owned(),
                count: 1,
                error: 0,
            });
            return;
        }
        let Some(min) = self.slots.iter_mut().min_by_key(|s| s.count) else {
            return; // capacity 0
        };
        // A fresh string rather than reusing the old one's buffer: reuse would let every slot's
        // capacity creep up to the longest URL ever seen.
        min.key = key.to_owned();
        min.error = min.count;
        min.count += 1;
    }

    /// The keys by descending hits (ties by key, so output is stable).
    pub fn top(&self) -> Vec<Hits> {
        let mut rows: Vec<Hits> = self
            .slots
            .iter()
            .map(|s| Hits {
                url: s.key.clone(),
                hits: s.count,
                error: s.error,
            })
            .collect();
        rows.sort_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.url.cmp(&b.url)));
        rows
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Forgets every key (keeps the capacity).
    pub fn clear(&mut self) {
        self.slots.clear();
    }

    /// Bytes held by the keys (for sizing the report at its bound).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.slots.iter().map(|s| s.key.capacity()).sum::<usize>()
    }
}

/// `text` cut to at most `max` bytes at a character boundary; a cut text ends with `…`.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Like [`truncate`], as an owned string that shows it was cut.
pub fn truncated_owned(text: &str, max: usize) -> String {
    let cut = truncate(text, max);
    if cut.len() == text.len() {
        cut.to_owned()
    } else {
        let mut s = String::with_capacity(cut.len() + 3);
        s.push_str(cut);
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_while_under_capacity() {
        let mut t = TopK::new(3);
        for k in ["/a", "/b", "/a", "/c", "/a", "/b"] {
            t.add(k);
        }
        let top = t.top();
        assert_eq!(
            top.iter()
                .map(|h| (h.url.as_str(), h.hits, h.error))
                .collect::<Vec<_>>(),
            vec![("/a", 3, 0), ("/b", 2, 0), ("/c", 1, 0)]
        );
    }

    #[test]
    fn heavy_hitters_survive_a_stream_of_unique_urls() {
        let mut t = TopK::new(5);
        for i in 0..10_000 {
            t.add("/hot");
            if i % 2 == 0 {
                t.add("/warm");
            }
            t.add(&format!("/unique/{i}"));
        }
        assert_eq!(t.len(), 5, "bounded");
        let top = t.top();
        assert_eq!(top[0].url, "/hot");
        assert!(top[0].hits - top[0].error <= 10_000 && top[0].hits >= 10_000);
        assert!(top.iter().any(|h| h.url == "/warm"));
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut t = TopK::new(0);
        t.add("/a");
        assert!(t.is_empty());
        assert!(t.top().is_empty());
    }

    #[test]
    fn long_urls_are_cut_at_a_char_boundary() {
        let long = "é".repeat(MAX_URL_BYTES);
        let mut t = TopK::new(2);
        t.add(&long);
        t.add(&long);
        let top = t.top();
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].hits, 2);
        assert!(top[0].url.len() <= MAX_URL_BYTES);
        assert_eq!(truncated_owned("abcdef", 5), "ab…");
        assert_eq!(truncated_owned("abc", 5), "abc");
    }

    #[test]
    fn clear_forgets() {
        let mut t = TopK::new(2);
        t.add("/a");
        t.clear();
        assert!(t.is_empty());
    }
}
