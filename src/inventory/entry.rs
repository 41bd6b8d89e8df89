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

/// What the new storefront last answered when a shopper asked it for an inventoried URL:
/// evidence from real traffic for the coverage verdict, better than a guess and cheaper than a
/// probe. Kept only for URLs already inventoried (the old store's), so it costs no memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNew {
    /// No answer from new seen (or none since the URL came in).
    #[default]
    Unseen,
    /// New answered 2xx on the same path: it has the page.
    Served,
    /// New answered 404 or 410 and no fallback served old's page: it lacks the page.
    Missing,
    /// New answered a fallback status and the 404 fallback served old's page instead: shoppers
    /// are fine while old lives, the page is still missing on new.
    FallbackServed,
}

impl OnNew {
    /// Every value, in `as_u8` order.
    pub const ALL: [OnNew; 4] = [
        OnNew::Unseen,
        OnNew::Served,
        OnNew::Missing,
        OnNew::FallbackServed,
    ];

    pub(crate) fn as_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        Self::ALL.get(usize::from(v)).copied().unwrap_or_default()
    }

    /// The name in files and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            OnNew::Unseen => "unseen",
            OnNew::Served => "served",
            OnNew::Missing => "missing",
            OnNew::FallbackServed => "fallback_served",
        }
    }

    /// The evidence of new's answer `status` to a GET/HEAD on the same path; `None`: says
    /// nothing about the page (a redirect, an error, a 4xx other than 404/410).
    pub fn of_status(status: u16) -> Option<Self> {
        match status {
            200..=299 => Some(OnNew::Served),
            404 | 410 => Some(OnNew::Missing),
            _ => None,
        }
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
    /// What the new storefront last answered for it.
    #[serde(default)]
    pub on_new: OnNew,
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
