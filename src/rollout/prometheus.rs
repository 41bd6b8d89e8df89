//! Window figures from a Prometheus server's HTTP API, so every replica of a fleet judges a step by
//! the same fleet-wide figures.
//!
//! Four instant queries (`/api/v1/query`) run concurrently, each grouped by `storefront` and `route`
//! (and `le` for the latency buckets). An empty result is "no data", never zero; an HTTP error, a
//! query error, a timeout or an unreadable answer makes the whole reading inconclusive (neither pass
//! nor fail), naming the query and URL.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;

use super::http_client::{client, encode_component, read_body, HttpClient};
use super::measure::{Histogram, PairFigures, Reading, SideFigures, WindowFigures};
use super::plan::{Plan, QueryOverrides, Source};

/// Largest Prometheus answer read (a few series per route and storefront fit easily).
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Proposed counter of 404 answers by `storefront` and `route`: `cutover_requests_total` only has
/// the status class, and a 404 ratio needs the code. The lead adds it to `metrics::names`.
pub const NOT_FOUND_TOTAL: &str = "cutover_not_found_total";

/// Default queries. `$storefronts` is a regex of the two storefront names, `$window` the window.
/// 5xx already include upstream failures before the response head (answered 502/504), so
/// `cutover_upstream_errors_total` is not added: it would count them twice.
pub const DEFAULT_REQUESTS: &str = "sum by (storefront, route) (increase(cutover_requests_total{storefront=~\"$storefronts\"}[$window]))";
/// See [`DEFAULT_REQUESTS`].
pub const DEFAULT_ERRORS: &str = "sum by (storefront, route) (increase(cutover_requests_total{storefront=~\"$storefronts\",status_class=\"5xx\"}[$window]))";
/// See [`DEFAULT_REQUESTS`] and [`NOT_FOUND_TOTAL`].
pub const DEFAULT_NOT_FOUND: &str =
    "sum by (storefront, route) (increase(cutover_not_found_total{storefront=~\"$storefronts\"}[$window]))";
/// See [`DEFAULT_REQUESTS`]; quantiles are computed from these buckets like `histogram_quantile`.
pub const DEFAULT_LATENCY_BUCKETS: &str = "sum by (storefront, route, le) (increase(cutover_request_duration_seconds_bucket{storefront=~\"$storefronts\"}[$window]))";

/// The effective queries, placeholders filled in (what `cutover check` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    /// Requests per storefront and route.
    pub requests: String,
    /// Errors per storefront and route.
    pub errors: String,
    /// 404s per storefront and route.
    pub not_found: String,
    /// Duration bucket increases per storefront, route and `le`.
    pub latency_buckets: String,
}

impl Queries {
    /// The defaults, with any overrides, for the two storefront names and the window.
    pub fn effective(overrides: &QueryOverrides, old: &str, new: &str, window_ms: u64) -> Self {
        let storefronts = format!(
            "{}|{}",
            promql_string(&regex_escape(old)),
            promql_string(&regex_escape(new))
        );
        let window = promql_duration(window_ms);
        let fill = |o: &Option<String>, d: &str| {
            o.as_deref()
                .unwrap_or(d)
                .replace("$storefronts", &storefronts)
                .replace("$window", &window)
        };
        Queries {
            requests: fill(&overrides.requests, DEFAULT_REQUESTS),
            errors: fill(&overrides.errors, DEFAULT_ERRORS),
            not_found: fill(&overrides.not_found, DEFAULT_NOT_FOUND),
            latency_buckets: fill(&overrides.latency_buckets, DEFAULT_LATENCY_BUCKETS),
        }
    }

    /// `(name, query)` pairs in a fixed order, for display.
    pub fn list(&self) -> [(&'static str, &str); 4] {
        [
            ("requests", &self.requests),
            ("errors", &self.errors),
            ("not_found", &self.not_found),
            ("latency_buckets", &self.latency_buckets),
        ]
    }
}

/// `300000` -> `300s`, `1500` -> `1500ms`.
fn promql_duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Escapes RE2 metacharacters so a storefront name matches literally.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes text for a double-quoted PromQL string.
fn promql_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Reads figures from Prometheus.
#[derive(Clone)]
pub struct PrometheusSource {
    client: HttpClient,
    base: String,
    timeout: Duration,
    old: String,
    new: String,
    queries: Queries,
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("base", &self.base)
            .field("queries", &self.queries)
            .finish()
    }
}

/// Building the source failed.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// The plan's source is not Prometheus.
    #[error("the [rollout] source is not prometheus")]
    NotPrometheus,
    /// The TLS client could not be built.
    #[error("building the HTTP client for Prometheus at {url}: {source}")]
    Client {
        /// Prometheus URL.
        url: String,
        /// What rustls said.
        source: rustls::Error,
    },
}

impl PrometheusSource {
    /// A source for `plan` (whose source must be Prometheus), comparing storefront `new` with `old`.
    pub fn from_plan(plan: &Plan, old: &str, new: &str) -> Result<Self, PrometheusError> {
        let Source::Prometheus {
            url,
            timeout_ms,
            queries,
        } = &plan.source
        else {
            return Err(PrometheusError::NotPrometheus);
        };
        let queries = Queries::effective(queries, old, new, plan.window_ms);
        Self::new(url, Duration::from_millis(*timeout_ms), queries, old, new)
    }

    /// A source querying `base_url` (`http://host:9090`) with the given queries.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        queries: Queries,
        old: &str,
        new: &str,
    ) -> Result<Self, PrometheusError> {
        let client = client().map_err(|source| PrometheusError::Client {
            url: base_url.to_string(),
            source,
        })?;
        Ok(PrometheusSource {
            client,
            base: base_url.trim_end_matches('/').to_string(),
            timeout,
            old: old.to_string(),
            new: new.to_string(),
            queries,
        })
    }

    /// The effective queries.
    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// Runs the four queries concurrently and assembles the figures; any failure is inconclusive.
    pub async fn read(&self) -> Reading {
        let q = &self.queries;
        let (requests, errors, not_found, latency) = tokio::join!(
            self.query("requests", &q.requests),
            self.query("errors", &q.errors),
            self.query("not_found", &q.not_found),
            self.query("latency_buckets", &q.latency_buckets),
        );
        let result = (|| {
            let mut f = Assembly::default();
            for s in requests? {
                if let Some((i, route)) = self.locate(&s.labels)? {
                    f.each(i, route, |t| *t.requests.get_or_insert(0.0) += s.value);
                }
            }
            for s in errors? {
                if let Some((i, route)) = self.locate(&s.labels)? {
                    f.each(i, route, |t| *t.errors.get_or_insert(0.0) += s.value);
                }
            }
            for s in not_found? {
                if let Some((i, route)) = self.locate(&s.labels)? {
                    f.each(i, route, |t| *t.not_found.get_or_insert(0.0) += s.value);
                }
            }
            for s in latency? {
                let Some((i, route)) = self.locate(&s.labels)? else {
                    continue;
                };
                let le = s.labels.get("le").ok_or_else(|| {
                    "query latency_buckets returned a series without an `le` label".to_string()
                })?;
                let le = parse_float(le).ok_or_else(|| {
                    format!("query latency_buckets returned le=\"{le}\", not a number")
                })?;
                f.each(i, route, |t| t.latency.push((le, s.value)));
            }
            Ok::<_, String>(f.finish())
        })();
        match result {
            Ok(figures) => Reading::Figures(figures),
            Err(e) => Reading::Inconclusive(format!("Prometheus at {}: {e}", self.base)),
        }
    }

    /// Which side (0 old, 1 new) and route a series belongs to; `None` for other storefronts.
    fn locate<'l>(
        &self,
        labels: &'l BTreeMap<String, String>,
    ) -> Result<Option<(usize, Option<&'l str>)>, String> {
        let sf = labels
            .get("storefront")
            .ok_or_else(|| "a query returned a series without a `storefront` label".to_string())?;
        let side = if *sf == self.new {
            1
        } else if *sf == self.old {
            0
        } else {
            return Ok(None);
        };
        Ok(Some((side, labels.get("route").map(String::as_str))))
    }

    async fn query(&self, name: &'static str, promql: &str) -> Result<Vec<Series>, String> {
        let url = format!(
            "{}/api/v1/query?query={}",
            self.base,
            encode_component(promql)
        );
        let run = async {
            let uri: http::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
            let req = http::Request::get(uri)
                .header(http::header::ACCEPT, "application/json")
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("request failed: {}", crate::error_text::chain(&e)))?;
            let status = resp.status();
            let body = read_body(resp.into_body(), MAX_ANSWER).await?;
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| {
                format!(
                    "query {name} timed out after {}ms",
                    self.timeout.as_millis()
                )
            })?
            .map_err(|e| format!("query {name}: {e}"))?;
        parse_answer(&body).map_err(|e| {
            format!(
                "query {name} (HTTP {}): {e}; query: {promql}",
                status.as_u16()
            )
        })
    }
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<AnswerData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct AnswerData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Prometheus floats: `"1.5"`, `"NaN"`, `"+Inf"`, `"-Inf"`.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Parses an `/api/v1/query` answer into series; NaN values (an `increase` over too few points)
/// are left out, so they count as no data.
fn parse_answer(body: &[u8]) -> Result<Vec<Series>, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("not a Prometheus API answer ({e}): {head:?}")
    })?;
    if answer.status != "success" {
        return Err(format!(
            "{}: {}",
            answer.error_type.unwrap_or_else(|| "error".into()),
            answer.error.unwrap_or_default()
        ));
    }
    let data = answer
        .data
        .ok_or_else(|| "a successful answer without data".to_string())?;
    if data.result_type != "vector" {
        return Err(format!(
            "expected an instant vector, got a {}",
            data.result_type
        ));
    }
    let samples: Vec<VectorSample> =
        serde_json::from_value(data.result).map_err(|e| format!("unreadable vector: {e}"))?;
    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        let value = parse_float(&s.value.1)
            .ok_or_else(|| format!("value {:?} is not a number", s.value.1))?;
        if value.is_nan() {
            continue;
        }
        out.push(Series {
            labels: s.metric,
            value,
        });
    }
    Ok(out)
}

/// Partial sums per side; `Option` fields stay `None` until a series arrives (no data != zero).
#[derive(Default)]
struct SideSums {
    requests: Option<f64>,
    errors: Option<f64>,
    not_found: Option<f64>,
    latency: Vec<(f64, f64)>,
}

#[derive(Default)]
struct Assembly {
    overall: [SideSums; 2],
    routes: BTreeMap<String, [SideSums; 2]>,
}

impl Assembly {
    /// Applies `op` to side `i` overall and, when the series has a route, on that route.
    fn each(&mut self, i: usize, route: Option<&str>, mut op: impl FnMut(&mut SideSums)) {
        op(&mut self.overall[i]);
        if let Some(route) = route {
            op(&mut self.routes.entry(route.to_string()).or_default()[i]);
        }
    }

    fn finish(self) -> WindowFigures {
        WindowFigures {
            overall: pair(self.overall),
            routes: self.routes.into_iter().map(|(k, v)| (k, pair(v))).collect(),
        }
    }
}

fn pair([old, new]: [SideSums; 2]) -> PairFigures {
    PairFigures {
        old: side(old),
        new: side(new),
    }
}

/// Sums the bucket series per `le` (several routes add up) into one cumulative histogram.
fn side(s: SideSums) -> SideFigures {
    let latency = if s.latency.is_empty() {
        None
    } else {
        let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (le, v) in s.latency {
            // Order floats by their bits: positive bounds sort like their values.
            let e = by_le.entry(le.to_bits()).or_insert((le, 0.0));
            e.1 += v;
        }
        let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(Histogram { buckets })
    };
    SideFigures {
        requests: s.requests,
        errors: s.errors,
        not_found: s.not_found,
        latency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_queries_fill_placeholders_and_escape_names() {
        let q = Queries::effective(&QueryOverrides::default(), "old.shop", "new\"x", 300_000);
        assert_eq!(
            q.requests,
            "sum by (storefront, route) (increase(cutover_requests_total{storefront=~\"old\\\\.shop|new\\\"x\"}[300s]))"
        );
        assert!(q.latency_buckets.contains("[300s]"));
        let over = QueryOverrides {
            errors: Some(
                "sum by (storefront) (rate(x{storefront=~\"$storefronts\"}[$window]))".into(),
            ),
            ..Default::default()
        };
        let q = Queries::effective(&over, "a", "b", 1500);
        assert_eq!(
            q.errors,
            "sum by (storefront) (rate(x{storefront=~\"a|b\"}[1500ms]))"
        );
        assert_eq!(q.list()[1], ("errors", q.errors.as_str()));
    }

    #[test]
    fn answers_parse_and_errors_are_named() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"storefront":"a","le":"+Inf"},"value":[1.0,"12.5"]},
            {"metric":{"storefront":"b"},"value":[1.0,"NaN"]}]}}"#;
        let s = parse_answer(ok).unwrap();
        assert_eq!(s.len(), 1, "NaN is no data");
        assert_eq!(s[0].value, 12.5);
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert_eq!(
            parse_answer(err).unwrap_err(),
            "bad_data: parse error at char 3"
        );
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
        assert!(parse_answer(scalar).unwrap_err().contains("got a scalar"));
        assert!(parse_answer(b"<html>")
            .unwrap_err()
            .contains("not a Prometheus API answer"));
    }
}
