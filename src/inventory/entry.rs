//! One inventoried URL as the rest of the program sees it: a copy taken from the counters.

use serde::{Deserialize, Serialize};

/// Where an inventoried URL was seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sources {
    /// Requested through cutover and answered by the old storefront with 2xx/3xx/410.
    pub traffic: bool,
    /// Listed in an imported sitemap of the old store.
    pub sitemap: bool,
}

impl Sources {
    pub(crate) const TRAFFIC: u8 = 1;
    pub(crate) const SITEMAP: u8 = 2;

    pub(crate) fn from_bits(bits: u8) -> Self {
        Sources {
            traffic: bits & Self::TRAFFIC != 0,
            sitemap: bits & Self::SITEMAP != 0,
        }
    }

    pub(crate) fn bits(self) -> u8 {
        (u8::from(self.traffic) * Self::TRAFFIC) | (u8::from(self.sitemap) * Self::SITEMAP)
    }
}

/// One inventoried URL. Counts are Space-Saving estimates: the true number of hits is between
/// `hits - hits_error` and `hits` (`hits_error` is 0 for a URL counted since it first came).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Lowercase host without port; empty unless the inventory keeps hosts apart.
    pub host: String,
    /// The key: path and query in the redirect table's matching form (see `KeyPolicy`).
    pub url: String,
    /// Hits, upper bound.
    pub hits: u64,
    /// How much of `hits` may belong to URLs this one replaced.
    pub hits_error: u64,
    /// Hits whose User-Agent claimed a search-engine crawler (exact since the URL came in).
    pub crawler_hits: u64,
    /// Unix seconds when the URL entered the inventory.
    pub first_seen: u64,
    /// Unix seconds of the last request; 0 if only known from a sitemap.
    pub last_seen: u64,
    /// Status the old storefront last answered; 0 if only known from a sitemap.
    pub last_status: u16,
    /// Where the URL was seen.
    pub sources: Sources,
}

impl Entry {
    /// Hits the URL certainly had: what reports weigh coverage by, so a flood of one-off URLs
    /// that inherited a replaced URL's count does not look like traffic.
    pub fn min_hits(&self) -> u64 {
        self.hits.saturating_sub(self.hits_error)
    }

    /// The URL as a redirect plan's `old_url` column takes it: the path, or
    /// `https://host/path` when hosts are kept apart.
    pub fn old_url(&self) -> String {
        if self.host.is_empty() {
            self.url.clone()
        } else {
            format!("https://{}{}", self.host, self.url)
        }
    }
}
