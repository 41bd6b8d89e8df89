//! Coverage: for each inventoried URL, where a shopper or crawler asking for it lands after the
//! switch. A pure function of the entries and a [`CoverageOracle`] (the plan and the routes,
//! implemented above this module), so reports, the admin API and the gauges agree.

use super::entry::{Entry, OnNew};
use serde::Serialize;
use std::io::Write;

/// What the rest of cutover knows about a URL (the inventory key, and its host when hosts are
/// kept apart). Implemented against the live snapshot's redirect tables and routes.
pub trait CoverageOracle {
    /// The plan's answer after chain collapse: target URL and written status (301/302/307/308).
    /// `None` when no entry matches or the entry is a 410.
    fn redirect_target(&self, host: &str, url: &str) -> Option<(String, u16)>;
    /// The plan marks the URL removed (410).
    fn is_gone(&self, host: &str, url: &str) -> bool;
    /// A route keeps the URL on the old storefront on purpose.
    fn kept_on_old_by_rule(&self, host: &str, url: &str) -> bool;
    /// The new storefront is known to serve the same path (a known route list, a probe result).
    fn same_path_on_new_known(&self, host: &str, url: &str) -> bool;
}

/// Where an old URL lands. Checked in this order: the plan's explicit decisions first (gone,
/// redirected), then the routes (kept on old), then the new store's own paths: what new last
/// answered shoppers for the URL ([`OnNew`]), else what the oracle knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The plan redirects it.
    Redirected,
    /// The new storefront serves the same path.
    SamePath,
    /// A route keeps it on the old storefront on purpose.
    KeptOnOld,
    /// The plan marks it removed (410).
    Gone,
    /// New answered 404 and the 404 fallback served old's page: fine for shoppers while old
    /// lives, a lost ranking once it goes. Not covered: the plan needs a row for it.
    FallbackServed,
    /// No home on the new store: a lost ranking after the switch.
    Uncovered,
}

impl Verdict {
    /// Every verdict, in report order.
    pub const ALL: [Verdict; 6] = [
        Verdict::Redirected,
        Verdict::SamePath,
        Verdict::KeptOnOld,
        Verdict::Gone,
        Verdict::FallbackServed,
        Verdict::Uncovered,
    ];

    /// The name used in CSV, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Redirected => "redirected",
            Verdict::SamePath => "same_path",
            Verdict::KeptOnOld => "kept_on_old",
            Verdict::Gone => "gone",
            Verdict::FallbackServed => "fallback_served",
            Verdict::Uncovered => "uncovered",
        }
    }

    /// Anything but uncovered or served by the fallback: the URL has an answer decided on
    /// purpose that outlives the old store.
    pub fn is_covered(self) -> bool {
        !matches!(self, Verdict::Uncovered | Verdict::FallbackServed)
    }
}

/// One URL's verdict, with what the report shows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageRow {
    /// As the plan's `old_url` column takes it (path, or `https://host/path`).
    pub old_url: String,
    /// Hits the URL certainly had (`Entry::min_hits`).
    pub hits: u64,
    /// Of those, claimed by a crawler's User-Agent.
    pub crawler_hits: u64,
    /// Where it lands.
    pub verdict: Verdict,
    /// The plan's target (redirected) or the same path (same_path); `None` otherwise.
    pub new_url: Option<String>,
    /// The plan's written status when redirected.
    pub status: Option<u16>,
    /// Listed in an imported sitemap.
    pub in_sitemap: bool,
}

/// The verdict of one entry.
pub fn verdict_of(
    e: &Entry,
    oracle: &dyn CoverageOracle,
) -> (Verdict, Option<String>, Option<u16>) {
    let (h, u) = (e.host.as_str(), e.url.as_str());
    if oracle.is_gone(h, u) {
        return (Verdict::Gone, None, Some(410));
    }
    if let Some((target, status)) = oracle.redirect_target(h, u) {
        return (Verdict::Redirected, Some(target), Some(status));
    }
    if oracle.kept_on_old_by_rule(h, u) {
        return (Verdict::KeptOnOld, None, None);
    }
    // What new answered shoppers is newer evidence than anything the oracle was told.
    match e.on_new {
        OnNew::Served => return (Verdict::SamePath, Some(e.url.clone()), None),
        OnNew::FallbackServed => return (Verdict::FallbackServed, None, None),
        OnNew::Missing => return (Verdict::Uncovered, None, None),
        OnNew::Unseen => {}
    }
    if oracle.same_path_on_new_known(h, u) {
        return (Verdict::SamePath, Some(e.url.clone()), None);
    }
    (Verdict::Uncovered, None, None)
}

/// The coverage of a whole inventory.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    /// URLs judged.
    pub urls: usize,
    /// Of those, covered.
    pub covered_urls: usize,
    /// Hits of all URLs (certain hits, see `Entry::min_hits`).
    pub hits: u64,
    /// Hits of covered URLs.
    pub covered_hits: u64,
    /// Crawler hits of all URLs.
    pub crawler_hits: u64,
    /// Crawler hits of uncovered URLs: what search engines will find broken.
    pub uncovered_crawler_hits: u64,
    /// `covered_hits / hits`; `None` without hits (no data is not zero).
    pub hits_ratio: Option<f64>,
    /// `covered_urls / urls`; `None` without URLs.
    pub urls_ratio: Option<f64>,
    /// URLs per verdict, in [`Verdict::ALL`] order.
    pub by_verdict: Vec<(Verdict, usize)>,
    /// Every URL, most hits first (then crawler hits, then URL).
    pub rows: Vec<CoverageRow>,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl CoverageReport {
    /// Judges every entry. Calls the oracle up to four times per URL; for 10^5 URLs run it off
    /// the request path (on plan reload, or on demand).
    pub fn build(entries: &[Entry], oracle: &dyn CoverageOracle) -> Self {
        let mut rows: Vec<CoverageRow> = entries
            .iter()
            .map(|e| {
                let (verdict, new_url, status) = verdict_of(e, oracle);
                CoverageRow {
                    old_url: e.old_url(),
                    hits: e.min_hits(),
                    crawler_hits: e.crawler_hits.min(e.min_hits()),
                    verdict,
                    new_url,
                    status,
                    in_sitemap: e.sources.sitemap,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.hits
                .cmp(&a.hits)
                .then(b.crawler_hits.cmp(&a.crawler_hits))
                .then_with(|| a.old_url.cmp(&b.old_url))
        });
        let sum = |f: &dyn Fn(&CoverageRow) -> bool, v: &dyn Fn(&CoverageRow) -> u64| {
            rows.iter().filter(|r| f(r)).map(v).sum::<u64>()
        };
        let hits = sum(&|_| true, &|r| r.hits);
        let covered_hits = sum(&|r| r.verdict.is_covered(), &|r| r.hits);
        let crawler_hits = sum(&|_| true, &|r| r.crawler_hits);
        let uncovered_crawler_hits = sum(&|r| !r.verdict.is_covered(), &|r| r.crawler_hits);
        let covered_urls = rows.iter().filter(|r| r.verdict.is_covered()).count();
        let by_verdict = Verdict::ALL
            .iter()
            .map(|&v| (v, rows.iter().filter(|r| r.verdict == v).count()))
            .collect();
        CoverageReport {
            urls: rows.len(),
            covered_urls,
            hits,
            covered_hits,
            crawler_hits,
            uncovered_crawler_hits,
            hits_ratio: ratio(covered_hits, hits),
            urls_ratio: ratio(covered_urls as u64, rows.len() as u64),
            by_verdict,
            rows,
        }
    }

    /// Uncovered URLs (fallback-served ones too), most hits first.
    pub fn uncovered(&self) -> impl Iterator<Item = &CoverageRow> {
        self.rows.iter().filter(|r| !r.verdict.is_covered())
    }

    /// Uncovered (and fallback-served) URLs that crawlers asked for, most crawler hits first: the search engines' view.
    pub fn uncovered_by_crawler_hits(&self) -> Vec<&CoverageRow> {
        let mut v: Vec<&CoverageRow> = self.uncovered().filter(|r| r.crawler_hits > 0).collect();
        v.sort_by(|a, b| {
            b.crawler_hits
                .cmp(&a.crawler_hits)
                .then_with(|| a.old_url.cmp(&b.old_url))
        });
        v
    }

    /// What `--probe` should request from the new storefront: each distinct redirect target and
    /// same-path URL, in row order.
    pub fn probe_urls(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.rows
            .iter()
            .filter_map(|r| r.new_url.as_deref())
            .filter(|u| seen.insert(*u))
            .map(str::to_owned)
            .collect()
    }

    /// Writes `old_url,hits,crawler_hits,verdict,new_url` (every row, or only the uncovered
    /// ones), quoted where a field needs it: pastes straight into the plan's spreadsheet.
    pub fn write_csv(&self, out: impl Write, only_uncovered: bool) -> std::io::Result<()> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(["old_url", "hits", "crawler_hits", "verdict", "new_url"])?;
        for r in self
            .rows
            .iter()
            .filter(|r| !only_uncovered || !r.verdict.is_covered())
        {
            w.write_record([
                r.old_url.as_str(),
                &r.hits.to_string(),
                &r.crawler_hits.to_string(),
                r.verdict.as_str(),
                r.new_url.as_deref().unwrap_or(""),
            ])?;
        }
        w.flush()
    }

    /// The report as JSON (the admin API's `/inventory/coverage`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
    }
}

/// Share of hits on covered URLs, without building rows: the
/// `cutover_inventory_coverage_ratio{table}` gauge, recomputed on plan reload with an oracle
/// for that table. `None` without hits.
pub fn coverage_of_hits(entries: &[Entry], oracle: &dyn CoverageOracle) -> Option<f64> {
    let (mut all, mut covered) = (0u64, 0u64);
    for e in entries {
        let h = e.min_hits();
        all += h;
        if h > 0 && verdict_of(e, oracle).0.is_covered() {
            covered += h;
        }
    }
    ratio(covered, all)
}
