//! Comparing what old and new answered for one URL, as a migration needs it.
//!
//! Byte-identical answers are never the goal (markup, assets and session ids always differ). What
//! matters for shoppers and search engines is: does new answer with the same status class, does a
//! redirect lead to the same place, is it the same kind of document, and does an HTML page keep
//! the signals rankings depend on. URLs on old's page (canonical, hreflang, redirect targets) are
//! first mapped through the redirect plan: the comparison is old's page against the page it will
//! become, so `canonical=/old-shoes` on old matches `canonical=/collections/shoes` on new when the
//! plan maps one to the other.

use http::header::{CONTENT_TYPE, LOCATION};
use http::HeaderMap;
use serde::Serialize;

use super::html::HtmlSignals;
use super::url::{normalize, resolve};

/// Why two answers differ. A fixed set: it labels `cutover_shadow_mismatches_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// Different status classes (2xx vs 5xx, ...), other than [`MismatchKind::MissingOnNew`].
    Status,
    /// Old answers (2xx/3xx) and new says 404 or 410: a page the new store lacks.
    MissingOnNew,
    /// Both redirect, to different places (after mapping old's target through the plan).
    Redirect,
    /// Different `<link rel=canonical>` (after mapping old's through the plan).
    Canonical,
    /// Different `<title>`.
    Title,
    /// Different `<meta name=robots>` directives.
    Robots,
    /// Different hreflang alternates (after mapping old's through the plan).
    Hreflang,
    /// One page has an `<h1>`, the other not.
    H1,
    /// Different media types (parameters such as `charset` ignored).
    ContentType,
    /// A storefront could not be asked or answered garbage.
    Error,
    /// A storefront did not answer within the shadow timeout.
    Timeout,
}

impl MismatchKind {
    /// Every kind, in label order.
    pub const ALL: [MismatchKind; 11] = [
        Self::Status,
        Self::MissingOnNew,
        Self::Redirect,
        Self::Canonical,
        Self::Title,
        Self::Robots,
        Self::Hreflang,
        Self::H1,
        Self::ContentType,
        Self::Error,
        Self::Timeout,
    ];

    /// The metric label and report name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::MissingOnNew => "missing_on_new",
            Self::Redirect => "redirect",
            Self::Canonical => "canonical",
            Self::Title => "title",
            Self::Robots => "robots",
            Self::Hreflang => "hreflang",
            Self::H1 => "h1",
            Self::ContentType => "content_type",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }

    /// Position in [`MismatchKind::ALL`] (for per-kind arrays).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What one shadow comparison came to. A fixed set: it labels
/// `cutover_shadow_requests_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowResult {
    /// Both answered the same way (for what is compared).
    Match,
    /// Both answered, differently.
    Mismatch,
    /// A storefront failed or timed out: nothing could be compared.
    Error,
    /// The copy was never sent: the queue or concurrency bound was reached.
    Dropped,
}

impl ShadowResult {
    /// Every result, in label order.
    pub const ALL: [ShadowResult; 4] = [Self::Match, Self::Mismatch, Self::Error, Self::Dropped];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Mismatch => "mismatch",
            Self::Error => "error",
            Self::Dropped => "dropped",
        }
    }
}

/// Why a storefront gave no answer to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No complete answer within the timeout.
    Timeout,
    /// Connection or protocol failure, described.
    Error(String),
}

/// The parts of an answer that are compared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// `Location`, as sent.
    pub location: Option<String>,
    /// The media type of `Content-Type`, lowercased, without parameters.
    pub content_type: Option<String>,
    /// Signals of an HTML body (read for 2xx HTML answers only).
    pub html: Option<HtmlSignals>,
}

impl Answer {
    /// The compared parts of a response head (HTML signals are added by the reader of the body).
    pub fn from_head(status: u16, headers: &HeaderMap) -> Self {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        Self {
            status,
            location: text(LOCATION).map(str::to_owned),
            content_type: text(CONTENT_TYPE).and_then(media_type),
            html: None,
        }
    }
}

/// One storefront's side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The absolute URL asked (what relative URLs in the answer resolve against).
    pub url: String,
    /// The answer, or why there is none.
    pub outcome: Result<Answer, Failure>,
}

/// One difference, with both values as the report shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// What differs.
    pub kind: MismatchKind,
    /// Old's value.
    pub old: String,
    /// New's value.
    pub new: String,
}

/// The outcome of comparing old and new for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// `Match`, `Mismatch` or `Error` (never `Dropped`).
    pub result: ShadowResult,
    /// Every difference found (empty for a match).
    pub mismatches: Vec<Mismatch>,
}

/// The media type of a `Content-Type` value: `text/html; charset=UTF-8` -> `text/html`.
pub fn media_type(value: &str) -> Option<String> {
    let media = value.split(';').next().unwrap_or("").trim();
    (!media.is_empty()).then(|| media.to_ascii_lowercase())
}

/// Whether a media type is a page whose signals are read.
pub fn is_html(media_type: Option<&str>) -> bool {
    matches!(media_type, Some("text/html" | "application/xhtml+xml"))
}

const NONE: &str = "(none)";

fn describe(outcome: &Result<Answer, Failure>) -> String {
    match outcome {
        Ok(answer) => answer.status.to_string(),
        Err(Failure::Timeout) => "timeout".into(),
        Err(Failure::Error(e)) => format!("error: {e}"),
    }
}

fn or_none(value: Option<&str>) -> String {
    value.unwrap_or(NONE).to_owned()
}

/// Compares old's and new's observations of one request. `map_url` maps an absolute old URL
/// through the redirect plan (`None`: the plan has no entry, the URL stays); its result may be a
/// path, resolved against the old URL.
pub fn compare(
    old: &Observation,
    new: &Observation,
    map_url: &dyn Fn(&str) -> Option<String>,
) -> Comparison {
    let (o, n) = match (&old.outcome, &new.outcome) {
        (Ok(o), Ok(n)) => (o, n),
        (o, n) => {
            let timed_out =
                matches!(o, Err(Failure::Timeout)) || matches!(n, Err(Failure::Timeout));
            let kind = if timed_out {
                MismatchKind::Timeout
            } else {
                MismatchKind::Error
            };
            return Comparison {
                result: ShadowResult::Error,
                mismatches: vec![Mismatch {
                    kind,
                    old: describe(o),
                    new: describe(n),
                }],
            };
        }
    };
    let mut found = Vec::new();
    let mut differ = |kind, old: String, new: String| {
        if old != new {
            found.push(Mismatch { kind, old, new });
        }
    };
    let mapped = |url: &str| -> String {
        match map_url(url) {
            Some(target) => resolve(url, &target).unwrap_or(target),
            None => normalize(url),
        }
    };
    let (old_class, new_class) = (o.status / 100, n.status / 100);
    if old_class != new_class {
        let kind = if old_class <= 3 && matches!(n.status, 404 | 410) {
            MismatchKind::MissingOnNew
        } else {
            MismatchKind::Status
        };
        differ(kind, o.status.to_string(), n.status.to_string());
    } else if old_class == 3 {
        let old_target = o
            .location
            .as_deref()
            .and_then(|l| resolve(&old.url, l))
            .map(|l| mapped(&l));
        let new_target = n.location.as_deref().and_then(|l| resolve(&new.url, l));
        differ(
            MismatchKind::Redirect,
            or_none(old_target.as_deref()),
            or_none(new_target.as_deref()),
        );
    } else if old_class == 2 {
        differ(
            MismatchKind::ContentType,
            or_none(o.content_type.as_deref()),
            or_none(n.content_type.as_deref()),
        );
        if let (Some(oh), Some(nh)) = (&o.html, &n.html) {
            differ(
                MismatchKind::Title,
                or_none(oh.title.as_deref()),
                or_none(nh.title.as_deref()),
            );
            differ(
                MismatchKind::Canonical,
                or_none(oh.canonical.as_deref().map(mapped).as_deref()),
                or_none(nh.canonical.as_deref()),
            );
            differ(
                MismatchKind::Robots,
                or_none(oh.robots.as_deref()),
                or_none(nh.robots.as_deref()),
            );
            let old_alternates: Vec<(&str, String)> = oh
                .hreflang
                .iter()
                .map(|(lang, url)| (lang.as_str(), mapped(url)))
                .collect();
            let new_alternates: Vec<(&str, String)> = nh
                .hreflang
                .iter()
                .map(|(lang, url)| (lang.as_str(), url.clone()))
                .collect();
            differ(
                MismatchKind::Hreflang,
                join_alternates(&old_alternates),
                join_alternates(&new_alternates),
            );
            let h1 = |has: bool| if has { "present" } else { "absent" }.to_owned();
            differ(MismatchKind::H1, h1(oh.has_h1), h1(nh.has_h1));
        }
    }
    let result = if found.is_empty() {
        ShadowResult::Match
    } else {
        ShadowResult::Mismatch
    };
    Comparison {
        result,
        mismatches: found,
    }
}

fn join_alternates(alternates: &[(&str, String)]) -> String {
    if alternates.is_empty() {
        return NONE.to_owned();
    }
    let parts: Vec<String> = alternates
        .iter()
        .map(|(lang, url)| format!("{lang}={url}"))
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests;
