//! Reading the admin listener's `/metrics`: a scrape parsed into a map for exact assertions,
//! single-series look-ups, and the config the metrics suites run (every labelled path of the
//! proxy reachable: split, rule route, a refusing storefront, a redirect table).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::StatusCode;

use super::client::HttpClient;
use super::dir::TempConfig;
use super::proxy::ConfigSpec;
use super::stores::StatusStore;
use super::upstream::refused_addr;
use super::wait::SLOW_WAIT;

/// The value of one series (`name{labels}` as printed) on a Prometheus text page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    Scrape::parse(page).get(series)
}

/// The sum of every sample of `name` carrying all of `labels` (0 when none does).
pub fn metric_sum(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    Scrape::parse(page).sum(name, labels)
}

/// Reads one series from an admin listener; `None` when the scrape fails or lacks it.
pub async fn admin_metric(client: &HttpClient, admin: SocketAddr, series: &str) -> Option<f64> {
    let page = client.try_get(admin, "/metrics", &[]).await.ok()?;
    metric(&page.body, series)
}

/// The admin listener's `/metrics` text, asserting a 200.
pub async fn scrape(admin: SocketAddr) -> String {
    let page = HttpClient::new().get(admin, "/metrics", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body
}

/// One scrape of `/metrics`: series (`name{k="v",...}` with labels sorted) -> value.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    /// Every sample.
    pub series: BTreeMap<String, f64>,
}

impl Scrape {
    /// Fetches and parses `http://ADMIN/metrics`.
    pub async fn fetch(client: &HttpClient, admin: SocketAddr) -> Scrape {
        let a = client.get(admin, "/metrics", &[]).await;
        assert_eq!(a.status, StatusCode::OK, "GET /metrics");
        Scrape::parse(&a.body)
    }

    /// Parses the Prometheus text format (what the `prometheus` crate writes).
    pub fn parse(text: &str) -> Scrape {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let close = line.rfind('}').expect("closing brace");
                    (
                        &line[..open],
                        parse_labels(&line[open + 1..close]),
                        &line[close + 1..],
                    )
                }
                None => {
                    let sp = line.find(' ').expect("value after name");
                    (&line[..sp], Vec::new(), &line[sp..])
                }
            };
            let value: f64 = match rest.trim() {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            series.insert(key(name, &labels), value);
        }
        Scrape { series }
    }

    /// The value of a series written as the exposition prints it (`name{k="v"}`, labels in any
    /// order), or `None` when absent.
    pub fn get(&self, series: &str) -> Option<f64> {
        let (name, labels) = match series.find('{') {
            Some(open) => (
                &series[..open],
                parse_labels(&series[open + 1..series.len() - 1]),
            ),
            None => (series, Vec::new()),
        };
        self.series.get(&key(name, &labels)).copied()
    }

    /// The value of the series with exactly these labels; 0 when absent is NOT assumed: panics.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let k = key(name, &labels);
        *self
            .series
            .get(&k)
            .unwrap_or_else(|| panic!("no series {k} in the scrape"))
    }

    /// Sum over every series of `name` whose labels include all of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter).map(|(_, v)| v).sum()
    }

    /// Series of `name` (exact metric name, labels included in the key) matching `filter`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a String, f64)> + 'a {
        self.series.iter().filter_map(move |(k, v)| {
            let (n, labels) = split_key(k);
            (n == name
                && filter
                    .iter()
                    .all(|(fk, fv)| labels.iter().any(|(lk, lv)| lk == fk && lv == fv)))
            .then_some((k, *v))
        })
    }

    /// Series of `name` with a value other than 0, as `label=value,...` (sorted) -> value.
    pub fn nonzero(&self, name: &str) -> BTreeMap<String, f64> {
        self.matching(name, &[])
            .filter(|(_, v)| *v != 0.0)
            .map(|(k, v)| {
                let (_, labels) = split_key(k);
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (l.join(","), v)
            })
            .collect()
    }

    /// Number of samples (lines) in the scrape.
    pub fn len(&self) -> usize {
        self.series.len()
    }
}

fn key(name: &str, labels: &[(String, String)]) -> String {
    let mut l = labels.to_vec();
    l.sort();
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn split_key(k: &str) -> (&str, Vec<(String, String)>) {
    let open = k.find('{').expect("key has braces");
    (&k[..open], parse_labels(&k[open + 1..k.len() - 1]))
}

/// `a="x",b="y\"z"` -> pairs. Handles the escapes the text format defines.
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('"'), "label value is quoted in {s:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => break,
                },
                '"' => break,
                o => value.push(o),
            }
        }
        out.push((name.trim().to_string(), value));
    }
}

/// Scrapes until `done` holds (bounded by [`SLOW_WAIT`]) and returns that scrape. Metrics are recorded
/// when a response body ends on the server side, which can be a moment after the client read it.
pub async fn scrape_until(
    client: &HttpClient,
    admin: SocketAddr,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + SLOW_WAIT;
    loop {
        let s = Scrape::fetch(client, admin).await;
        if done(&s) {
            return s;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what}: not reached within {SLOW_WAIT:?}; last scrape:\n{s:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads a file's lines ("" when it does not exist yet).
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The test config: two storefronts in a split (`old`, `new`, share `share_pct` on new), a third
/// one `gone` that refuses connections and serves `/down`, a rule route `help` (`/help` -> old),
/// a redirect table `plan` applied to every shopper (`/old-page` -> `/new-page`), override on
/// without a token, pinning off, the storefront response header on. `extra` is appended.
pub fn config(old: &StatusStore, new: &StatusStore, share_pct: f64, extra: &str) -> String {
    ConfigSpec::new(&old.url(), &new.url(), share_pct)
        .store(
            "gone",
            &format!("http://{}", refused_addr()),
            "connect_timeout = \"2s\"",
        )
        .share_text(&format!("\"{share_pct}%\""))
        .admin_on_loopback()
        .overrides("enabled = true")
        .tail(
            r#"[[route]]
name = "help"
path_prefix = "/help"
to = "old"

[[route]]
name = "down"
path_prefix = "/down"
to = "gone"

[[redirects]]
name = "plan"
file = "redirects.csv"
apply_to = "all"
query = "ignore"
"#,
        )
        .tail(extra)
        .render()
}

/// The redirect table [`config`] names.
pub const REDIRECTS_CSV: &str = "old_url,new_url,status\n/old-page,/new-page,301\n";

/// Writes [`config`] and its redirect table into a temp directory.
pub fn temp_config(
    old: &StatusStore,
    new: &StatusStore,
    share_pct: f64,
    extra: &str,
) -> TempConfig {
    let c = TempConfig::new(&config(old, new, share_pct, extra));
    std::fs::write(c.file("redirects.csv"), REDIRECTS_CSV).expect("write redirects");
    c
}

/// The start of most metrics tests: an "old" and a "new" status storefront, and [`temp_config`]
/// routing `share_pct`% of new shoppers to new, with `extra` appended.
pub struct StatusShop {
    /// The old storefront.
    pub old: StatusStore,
    /// The new storefront.
    pub new: StatusStore,
    /// The written config (and its redirect table).
    pub cfg: TempConfig,
}

impl StatusShop {
    /// Starts both storefronts and writes the config.
    pub async fn new(share_pct: f64, extra: &str) -> StatusShop {
        let old = StatusStore::start("old").await;
        let new = StatusStore::start("new").await;
        let cfg = temp_config(&old, &new, share_pct, extra);
        StatusShop { old, new, cfg }
    }
}
