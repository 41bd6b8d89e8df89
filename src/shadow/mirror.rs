//! [`Shadow`]: copying a sample of shoppers' requests to both storefronts, off the shopper's path,
//! and comparing the answers.
//!
//! ## On the shopper's path: [`Shadow::offer`]
//! Synchronous and non-blocking: a few comparisons decide eligibility (storefront, method,
//! sample, excluded prefix) without allocating; only a sampled request is copied (its headers,
//! filtered) into a bounded queue with `try_send`. A full queue drops the copy and counts it
//! (`dropped`): the shopper never waits for shadowing and memory never grows with load.
//!
//! ## Off the path: a dispatcher and at most `concurrency` workers
//! The dispatcher takes copies from the queue as a [`Semaphore`] permit frees up; each worker asks
//! **both** storefronts itself, concurrently, and compares. The alternative, handing the worker
//! the primary's answer through a tee of the shopper's response, was rejected:
//! - cost on the shopper's path: a tee wraps every sampled response body and copies (or holds)
//!   its first KiBs while the shopper's bytes flow through it; asking again costs the shopper
//!   nothing;
//! - a fair comparison: the shopper's answer was rendered for their cookies (cart, login,
//!   personalisation) while the copy is sent without them; asking both sides the same anonymous
//!   request compares like with like;
//! - side effects: only safe methods are copied (no body is ever replayed), checkout, cart and
//!   account prefixes are excluded, cookies and Authorization stay behind, and both requests carry
//!   `x-cutover-shadow: 1` so a storefront can skip analytics. Asking the primary once more is an
//!   anonymous GET/HEAD: the price is one extra read per sampled request on the primary.
//!
//! The copy of an old URL goes to new at the URL the redirect plan maps it to (`target` of
//! [`Shadow::offer`]), so the comparison is old's page against the page it will become; URLs
//! inside the answers are mapped through the plan with the `map_url` given to [`Shadow::start`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Uri};
use tokio::sync::{mpsc, watch, Semaphore};

use super::compare::{compare, ShadowResult};
use super::config::{ShadowSettings, Storefront};
use super::counters::{ShadowCounters, ShadowCountsSnapshot};
use super::fetch::{self, CopyClient};
use super::report::{Report, ReportSnapshot};

/// The header that marks a copy, so a storefront can skip side effects and analytics.
pub const SHADOW_HEADER: &str = "x-cutover-shadow";

/// Header bytes (names and values) a copy may carry; a larger request is not copied (counted as
/// dropped), so the queue's memory is bounded by `queue * MAX_COPY_HEADER_BYTES`.
pub const MAX_COPY_HEADER_BYTES: usize = 16 * 1024;

/// Maps an absolute old URL through the redirect plan: `Some(target)` (a path or an absolute
/// URL) when the plan has an entry. Called off the shopper's path.
pub type MapUrl = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where the storefronts listen, as configured (`http://127.0.0.1:8081`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// The old storefront's base URL.
    pub old: String,
    /// The new storefront's base URL.
    pub new: String,
}

/// Why the mirror cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A storefront base URL is unusable.
    #[error("shadow: storefront {storefront} base URL `{url}`: {reason}")]
    BaseUrl {
        /// `old` or `new`.
        storefront: &'static str,
        /// As configured.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// The shopper's request, as the proxy has it when it knows where the request goes.
#[derive(Debug, Clone, Copy)]
pub struct OfferRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The request target (origin-form, or absolute for HTTP/2).
    pub uri: &'a Uri,
    /// The shopper's headers (filtered before they are copied).
    pub headers: &'a HeaderMap,
    /// The storefront that serves the shopper.
    pub served_by: Storefront,
    /// The route's name from the configuration (a report group).
    pub route: &'a str,
    /// `http` or `https`, as the shopper connected (for the page's public URL).
    pub scheme: &'static str,
}

/// What [`Shadow::offer`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Served by the storefront copies are not made from, or a method that is not copied.
    NotEligible,
    /// Not in the sample.
    NotSampled,
    /// The path is under an excluded prefix.
    Excluded,
    /// Queued for a worker.
    Queued,
    /// Sampled, but the queue was full (or the request too large to copy): counted as dropped.
    Dropped,
}

struct Job {
    method: Method,
    headers: HeaderMap,
    host: Option<HeaderValue>,
    scheme: &'static str,
    old_path: String,
    new_path: String,
    new_host: Option<HeaderValue>,
    route: String,
    url: String,
}

struct Base {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
}

struct Inner {
    settings: ShadowSettings,
    sample_threshold: u64,
    counters: ShadowCounters,
    report: Mutex<Report>,
    dropped_at_clear: AtomicU64,
    pending: AtomicUsize,
    peak_pending: AtomicUsize,
    completed: watch::Sender<u64>,
    client: CopyClient,
    old: Base,
    new: Base,
    map_url: MapUrl,
}

/// The shadow mirror (see the module documentation). Cheap to share behind an `Arc`.
pub struct Shadow {
    inner: Arc<Inner>,
    queue: mpsc::Sender<Job>,
}

fn parse_base(storefront: &'static str, url: &str) -> Result<Base, StartError> {
    let fail = |reason: &str| StartError::BaseUrl {
        storefront,
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|e| fail(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(fail("only http:// storefronts can be shadowed")),
        None => return Err(fail("needs http://host:port")),
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| fail("needs a host"))?;
    Ok(Base {
        scheme: http::uri::Scheme::HTTP,
        authority,
    })
}

fn base_uri(base: &Base, path_and_query: &str) -> Uri {
    Uri::builder()
        .scheme(base.scheme.clone())
        .authority(base.authority.clone())
        .path_and_query(path_and_query)
        .build()
        // The path came from a parsed request or the plan; if it is not a valid target, ask "/"
        // rather than fail (the comparison will show the difference).
        .unwrap_or_else(|_| Uri::from_static("/"))
}

fn starts_with_ignore_case(path: &str, prefix: &str) -> bool {
    path.len() >= prefix.len()
        && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Headers never copied: hop-by-hop, framing (a copy has no body), and cutover's own (staff
/// override tokens must not reach a storefront).
fn is_dropped_header(name: &HeaderName) -> bool {
    crate::http1::framing::HOP_BY_HOP.contains(name)
        || crate::http1::framing::BODY_FRAMING.contains(name)
        || matches!(
            *name,
            header::PROXY_AUTHORIZATION | header::EXPECT | header::ACCEPT_ENCODING | header::HOST
        )
        || name.as_str().starts_with("x-cutover-")
}

impl Shadow {
    /// Starts the dispatcher on the current tokio runtime. `map_url` maps old URLs through the
    /// redirect plan (it may read the current snapshot each time).
    pub fn start(
        settings: ShadowSettings,
        targets: &Targets,
        map_url: MapUrl,
    ) -> Result<Arc<Self>, StartError> {
        let old = parse_base("old", &targets.old)?;
        let new = parse_base("new", &targets.new)?;
        // sample * 2^32, compared with a random u32: 1.0 always, 0.0 never.
        let sample_threshold = (settings.sample.clamp(0.0, 1.0) * 4_294_967_296.0) as u64;
        let (queue, jobs) = mpsc::channel(settings.queue);
        let inner = Arc::new(Inner {
            client: fetch::client(settings.timeout, settings.concurrency),
            report: Mutex::new(Report::new(settings.report)),
            sample_threshold,
            counters: ShadowCounters::default(),
            dropped_at_clear: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            peak_pending: AtomicUsize::new(0),
            completed: watch::channel(0).0,
            old,
            new,
            map_url,
            settings,
        });
        tokio::spawn(dispatch(inner.clone(), jobs));
        Ok(Arc::new(Self { inner, queue }))
    }

    /// Offers the shopper's request for shadowing; returns at once (see the module
    /// documentation). `target` maps the request's path and query through the redirect plan
    /// (`Some(path or absolute URL)` when the plan has an entry); it is called only for a sampled
    /// request made from old.
    pub fn offer(
        &self,
        request: &OfferRequest<'_>,
        target: impl FnOnce(&str) -> Option<String>,
    ) -> Offered {
        let settings = &self.inner.settings;
        if request.served_by != settings.from || !settings.methods.contains(request.method) {
            return Offered::NotEligible;
        }
        let threshold = self.inner.sample_threshold;
        if threshold == 0
            || (threshold <= u64::from(u32::MAX) && u64::from(fastrand::u32(..)) >= threshold)
        {
            return Offered::NotSampled;
        }
        let path = request.uri.path();
        if settings
            .exclude
            .iter()
            .any(|prefix| starts_with_ignore_case(path, prefix))
        {
            return Offered::Excluded;
        }
        // Sampled: from here on, allocating is fine.
        let Some(job) = self.job(request, target) else {
            return self.dropped();
        };
        match self.queue.try_send(job) {
            Ok(()) => {
                let now = self.inner.pending.fetch_add(1, Ordering::Relaxed) + 1;
                self.inner.peak_pending.fetch_max(now, Ordering::Relaxed);
                Offered::Queued
            }
            Err(_) => self.dropped(),
        }
    }

    fn dropped(&self) -> Offered {
        self.inner.counters.result(ShadowResult::Dropped);
        Offered::Dropped
    }

    fn job(
        &self,
        request: &OfferRequest<'_>,
        target: impl FnOnce(&str) -> Option<String>,
    ) -> Option<Job> {
        let settings = &self.inner.settings;
        let mut headers = HeaderMap::with_capacity(request.headers.len() + 2);
        let mut bytes = 0;
        let connection_named = |name: &HeaderName| {
            request
                .headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
        };
        for (name, value) in request.headers {
            let skip = is_dropped_header(name)
                || (*name == header::COOKIE && !settings.forward_cookies)
                || (*name == header::AUTHORIZATION && !settings.forward_authorization)
                || connection_named(name);
            if skip {
                continue;
            }
            bytes += name.as_str().len() + value.len();
            if bytes > MAX_COPY_HEADER_BYTES {
                return None;
            }
            headers.append(name.clone(), value.clone());
        }
        headers.insert(SHADOW_HEADER, HeaderValue::from_static("1"));
        // The body is read to find HTML signals: ask for it uncompressed.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let host = request.headers.get(header::HOST).cloned().or_else(|| {
            request
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let path_and_query = request
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let (mut new_path, mut new_host) = (path_and_query.clone(), host.clone());
        if settings.from == Storefront::Old {
            if let Some(mapped) = target(&path_and_query) {
                match mapped.parse::<Uri>() {
                    Ok(uri) if uri.authority().is_some() => {
                        new_path = uri
                            .path_and_query()
                            .map_or("/", |pq| pq.as_str())
                            .to_owned();
                        new_host = HeaderValue::from_str(uri.authority()?.as_str()).ok();
                    }
                    _ => new_path = mapped,
                }
            }
        }
        Some(Job {
            method: request.method.clone(),
            headers,
            host,
            scheme: request.scheme,
            old_path: path_and_query.clone(),
            new_path,
            new_host,
            route: request.route.to_owned(),
            url: path_and_query,
        })
    }

    /// Every counter (for the metrics layer's scrape).
    pub fn counters(&self) -> ShadowCountsSnapshot {
        self.inner.counters.snapshot()
    }

    /// The report now (what `GET /shadow` serves).
    pub fn report(&self) -> ReportSnapshot {
        let dropped = self.inner.counters.get(ShadowResult::Dropped)
            - self.inner.dropped_at_clear.load(Ordering::Relaxed);
        self.lock_report().snapshot(dropped)
    }

    /// Clears the report (an admin change); the counters keep counting.
    pub fn clear(&self) {
        let mut report = self.lock_report();
        report.clear();
        self.inner.dropped_at_clear.store(
            self.inner.counters.get(ShadowResult::Dropped),
            Ordering::Relaxed,
        );
    }

    /// Approximate heap bytes of the report.
    pub fn report_heap_bytes(&self) -> usize {
        self.lock_report().heap_bytes()
    }

    /// Copies queued or in flight now.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Relaxed)
    }

    /// The most copies queued or in flight at once so far (at most `queue + concurrency + 1`:
    /// the dispatcher holds one while it waits for a free worker).
    pub fn peak_pending(&self) -> usize {
        self.inner.peak_pending.load(Ordering::Relaxed)
    }

    /// Comparisons finished so far; tests and benchmarks wait on it.
    pub fn completions(&self) -> watch::Receiver<u64> {
        self.inner.completed.subscribe()
    }

    fn lock_report(&self) -> std::sync::MutexGuard<'_, Report> {
        self.inner.report.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn dispatch(inner: Arc<Inner>, mut jobs: mpsc::Receiver<Job>) {
    let slots = Arc::new(Semaphore::new(inner.settings.concurrency));
    while let Some(job) = jobs.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return; // never closed
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            inner.run(job).await;
            drop(permit);
        });
    }
}

impl Inner {
    async fn run(&self, job: Job) {
        let s = &self.settings;
        let page_url = |host: &Option<HeaderValue>, base: &Base, path: &str| {
            let host = host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or(base.authority.as_str());
            format!("{}://{host}{path}", job.scheme)
        };
        let copy = |base: &Base, host: &Option<HeaderValue>, path: &str| fetch::Copy {
            method: &job.method,
            uri: base_uri(base, path),
            headers: &job.headers,
            host: None,
            page_url: page_url(host, base, path),
            html_limit: s.html_limit,
            timeout: s.timeout,
        };
        let mut old_copy = copy(&self.old, &job.host, &job.old_path);
        old_copy.host = job.host.as_ref();
        let mut new_copy = copy(&self.new, &job.new_host, &job.new_path);
        new_copy.host = job.new_host.as_ref();
        let (old, new) = tokio::join!(
            fetch::observe(&self.client, old_copy),
            fetch::observe(&self.client, new_copy)
        );
        let comparison = compare(&old, &new, &*self.map_url);
        self.counters.result(comparison.result);
        for m in &comparison.mismatches {
            self.counters.mismatch(m.kind);
        }
        if comparison.result != ShadowResult::Match {
            tracing::debug!(
                route = %job.route,
                url = %job.url,
                result = comparison.result.as_str(),
                kinds = ?comparison.mismatches.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>(),
                "shadow comparison"
            );
        }
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(&job.route, &job.url, &comparison);
        self.pending.fetch_sub(1, Ordering::Relaxed);
        self.completed.send_modify(|n| *n += 1);
    }
}
