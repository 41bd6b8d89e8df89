//! The shadow report: what differs between old and new, by mismatch kind and by route, with the
//! URLs it differs for most often and one example pair of values each, in bounded memory.
//!
//! Bounds: one group per [`MismatchKind`] (a fixed set); one group per route name up to
//! `max_routes` (route names come from the configuration, the cap only guards a generated config),
//! further routes are counted under [`OTHER_ROUTE`]; each group keeps `top_urls` URLs
//! ([`TopK`]: space-saving) and one example whose values are cut to `max_value_bytes`.
//!
//! Escaping: URLs and values are stored exactly as the request and the storefronts gave them and
//! escaped only when written out: JSON by serde, CSV by quoting (and by neutralising cells a
//! spreadsheet would run as a formula). **A page that shows this report (HTML) must HTML-escape
//! every value**: a URL such as `/<script>` is a legitimate thing for a crawler to request.

use serde::Serialize;

use super::compare::{Comparison, MismatchKind, ShadowResult};
use super::topk::{truncated_owned, Hits, TopK};

/// The group that counts routes beyond `max_routes`.
pub const OTHER_ROUTE: &str = "(other)";
/// Longest route name kept.
const MAX_ROUTE_NAME: usize = 128;

/// The bounds of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLimits {
    /// URLs kept per group.
    pub top_urls: usize,
    /// Route groups kept before routes count as [`OTHER_ROUTE`].
    pub max_routes: usize,
    /// Longest example value (and example URL) kept, in bytes.
    pub max_value_bytes: usize,
}

impl Default for ReportLimits {
    fn default() -> Self {
        Self {
            top_urls: 10,
            max_routes: 64,
            max_value_bytes: 512,
        }
    }
}

/// One example of a mismatch: where, and both values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    /// The kind (set on route examples; a kind group's examples are of its own kind).
    pub kind: MismatchKind,
    /// The URL requested.
    pub url: String,
    /// Old's value.
    pub old: String,
    /// New's value.
    pub new: String,
}

#[derive(Debug, Clone)]
struct Group {
    count: u64,
    top: TopK,
    example: Option<Example>,
}

impl Group {
    fn new(limits: &ReportLimits) -> Self {
        Self {
            count: 0,
            top: TopK::new(limits.top_urls),
            example: None,
        }
    }
}

#[derive(Debug, Clone)]
struct RouteGroup {
    name: String,
    matches: u64,
    mismatches: u64,
    errors: u64,
    kinds: [u64; MismatchKind::ALL.len()],
    urls: Group,
}

/// The report (not synchronised: the owner wraps it in a lock held only while recording).
#[derive(Debug, Clone)]
pub struct Report {
    limits: ReportLimits,
    matches: u64,
    mismatches: u64,
    errors: u64,
    kinds: Vec<Group>,
    routes: Vec<RouteGroup>,
}

/// Counts of one report: the `requests` part of its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Comparisons that matched.
    pub r#match: u64,
    /// Comparisons that found a difference.
    pub mismatch: u64,
    /// Comparisons where a storefront failed or timed out.
    pub error: u64,
    /// Copies dropped at the queue or concurrency bound.
    pub dropped: u64,
}

/// One kind's group in [`ReportSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindReport {
    /// The kind.
    pub kind: MismatchKind,
    /// How many mismatches of this kind.
    pub mismatches: u64,
    /// The URLs with the most mismatches of this kind.
    pub top_urls: Vec<Hits>,
    /// The first mismatch of this kind since the report was cleared.
    pub example: Option<Example>,
}

/// One route's group in [`ReportSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteReport {
    /// The route name (from the configuration) or [`OTHER_ROUTE`].
    pub route: String,
    /// Comparisons that matched.
    pub matches: u64,
    /// Comparisons that found a difference.
    pub mismatches: u64,
    /// Comparisons that failed.
    pub errors: u64,
    /// Mismatches by kind (kinds with none left out).
    pub kinds: Vec<(MismatchKind, u64)>,
    /// The URLs with the most mismatches or errors on this route.
    pub top_urls: Vec<Hits>,
    /// The first mismatch on this route since the report was cleared.
    pub example: Option<Example>,
}

/// The report at one moment, ready for JSON ([`serde`]) or [`ReportSnapshot::to_csv`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportSnapshot {
    /// Counts by result.
    pub requests: Totals,
    /// Kinds with at least one mismatch, in label order.
    pub kinds: Vec<KindReport>,
    /// Routes with at least one comparison, in first-seen order.
    pub routes: Vec<RouteReport>,
}

impl Report {
    /// An empty report with these bounds.
    pub fn new(limits: ReportLimits) -> Self {
        Self {
            limits,
            matches: 0,
            mismatches: 0,
            errors: 0,
            kinds: MismatchKind::ALL
                .iter()
                .map(|_| Group::new(&limits))
                .collect(),
            routes: Vec::new(),
        }
    }

    /// Adds one comparison of `url` (as requested) on `route`.
    pub fn record(&mut self, route: &str, url: &str, comparison: &Comparison) {
        let max_value = self.limits.max_value_bytes;
        let example = |m: &super::compare::Mismatch| Example {
            kind: m.kind,
            url: truncated_owned(url, max_value),
            old: truncated_owned(&m.old, max_value),
            new: truncated_owned(&m.new, max_value),
        };
        for m in &comparison.mismatches {
            let group = &mut self.kinds[m.kind.index()];
            group.count += 1;
            group.top.add(url);
            if group.example.is_none() {
                group.example = Some(example(m));
            }
        }
        let limits = self.limits;
        let route = self.route(route, &limits);
        match comparison.result {
            ShadowResult::Match => route.matches += 1,
            ShadowResult::Mismatch => route.mismatches += 1,
            ShadowResult::Error | ShadowResult::Dropped => route.errors += 1,
        }
        for m in &comparison.mismatches {
            route.kinds[m.kind.index()] += 1;
        }
        if let Some(first) = comparison.mismatches.first() {
            route.urls.count += 1;
            route.urls.top.add(url);
            if route.urls.example.is_none() {
                route.urls.example = Some(example(first));
            }
        }
        match comparison.result {
            ShadowResult::Match => self.matches += 1,
            ShadowResult::Mismatch => self.mismatches += 1,
            ShadowResult::Error | ShadowResult::Dropped => self.errors += 1,
        }
    }

    fn route(&mut self, name: &str, limits: &ReportLimits) -> &mut RouteGroup {
        let name = if self.routes.iter().any(|r| r.name == name)
            || self.routes.len() < limits.max_routes
        {
            super::topk::truncate(name, MAX_ROUTE_NAME)
        } else {
            OTHER_ROUTE
        };
        let at = match self.routes.iter().position(|r| r.name == name) {
            Some(at) => at,
            None => {
                self.routes.push(RouteGroup {
                    name: name.to_owned(),
                    matches: 0,
                    mismatches: 0,
                    errors: 0,
                    kinds: [0; MismatchKind::ALL.len()],
                    urls: Group::new(limits),
                });
                self.routes.len() - 1
            }
        };
        &mut self.routes[at]
    }

    /// Forgets everything recorded (the bounds stay).
    pub fn clear(&mut self) {
        *self = Self::new(self.limits);
    }

    /// The report now; `dropped` is the number of copies dropped since the last clear (counted
    /// on the request path without touching the report).
    pub fn snapshot(&self, dropped: u64) -> ReportSnapshot {
        ReportSnapshot {
            requests: Totals {
                r#match: self.matches,
                mismatch: self.mismatches,
                error: self.errors,
                dropped,
            },
            kinds: MismatchKind::ALL
                .iter()
                .zip(&self.kinds)
                .filter(|(_, g)| g.count > 0)
                .map(|(&kind, g)| KindReport {
                    kind,
                    mismatches: g.count,
                    top_urls: g.top.top(),
                    example: g.example.clone(),
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| RouteReport {
                    route: r.name.clone(),
                    matches: r.matches,
                    mismatches: r.mismatches,
                    errors: r.errors,
                    kinds: MismatchKind::ALL
                        .iter()
                        .map(|&k| (k, r.kinds[k.index()]))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                    top_urls: r.urls.top.top(),
                    example: r.urls.example.clone(),
                })
                .collect(),
        }
    }

    /// Approximate heap bytes held (for sizing the report at its bound).
    pub fn heap_bytes(&self) -> usize {
        let example = |e: &Option<Example>| {
            e.as_ref().map_or(0, |e| {
                e.url.capacity() + e.old.capacity() + e.new.capacity()
            })
        };
        let group = |g: &Group| g.top.heap_bytes() + example(&g.example);
        self.kinds.capacity() * std::mem::size_of::<Group>()
            + self.kinds.iter().map(group).sum::<usize>()
            + self.routes.capacity() * std::mem::size_of::<RouteGroup>()
            + self
                .routes
                .iter()
                .map(|r| r.name.capacity() + group(&r.urls))
                .sum::<usize>()
    }
}

/// A cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`
/// (the OWASP advice against CSV injection); everything else is written as is.
fn cell(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

type CsvOut = csv::Writer<Vec<u8>>;

fn csv_row(w: &mut CsvOut, row: [&str; 8]) {
    // Writing into a Vec cannot fail.
    let _ = w.write_record(
        row.iter()
            .map(|c| cell(c))
            .collect::<Vec<_>>()
            .iter()
            .map(|c| c.as_bytes()),
    );
}

fn csv_group(
    w: &mut CsvOut,
    scope: &str,
    name: &str,
    count: u64,
    top: &[Hits],
    ex: Option<&Example>,
) {
    let count = count.to_string();
    let (eu, eo, en) = ex.map_or(("", "", ""), |e| (&e.url[..], &e.old[..], &e.new[..]));
    if top.is_empty() {
        csv_row(w, [scope, name, &count, "", "", eu, eo, en]);
    }
    for (i, h) in top.iter().enumerate() {
        let hits = h.hits.to_string();
        let (eu, eo, en) = if i == 0 { (eu, eo, en) } else { ("", "", "") };
        csv_row(w, [scope, name, &count, &h.url, &hits, eu, eo, en]);
    }
}

impl ReportSnapshot {
    /// The report as CSV, one row per top URL of each group (a group without URLs gets one row):
    /// `scope,name,count,url,hits,example_url,example_old,example_new`. The first rows
    /// (`scope=total`) hold the counts by result; example columns are filled on a group's first
    /// row. Route rows count mismatches and errors.
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        csv_row(
            &mut w,
            [
                "scope",
                "name",
                "count",
                "url",
                "hits",
                "example_url",
                "example_old",
                "example_new",
            ],
        );
        let t = &self.requests;
        for (name, n) in [
            ("match", t.r#match),
            ("mismatch", t.mismatch),
            ("error", t.error),
            ("dropped", t.dropped),
        ] {
            csv_row(&mut w, ["total", name, &n.to_string(), "", "", "", "", ""]);
        }
        for k in &self.kinds {
            csv_group(
                &mut w,
                "kind",
                k.kind.as_str(),
                k.mismatches,
                &k.top_urls,
                k.example.as_ref(),
            );
        }
        for r in &self.routes {
            csv_group(
                &mut w,
                "route",
                &r.route,
                r.mismatches + r.errors,
                &r.top_urls,
                r.example.as_ref(),
            );
        }
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
