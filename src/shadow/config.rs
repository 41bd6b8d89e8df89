//! The `[shadow]` and `[fallback]` configuration sections, and their validation.
//!
//! ```toml
//! [shadow]
//! sample = 0.1                 # share of eligible requests copied, 0..1
//! from = "old"                 # copies are made of requests this storefront serves
//! concurrency = 16             # copies in flight at most
//! queue = 256                  # copies waiting at most; beyond, copies are dropped and counted
//! timeout = "5s"               # per storefront answer (head and the part of the body read)
//! exclude = ["/checkout", "/cart", "/account", "/login", "/logout"]
//! methods = ["GET", "HEAD"]
//! forward_cookies = false
//! forward_authorization = false
//! html_limit = "256KiB"
//! top_urls = 10
//! max_routes = 64
//!
//! [fallback]
//! statuses = [404]
//! top_urls = 100
//! ```
//!
//! A route opts into the fallback with `fallback = true` (a `#[serde(default)] fallback: bool` on
//! the route's raw struct). [`ShadowConfig::build`] checks every field and returns every problem
//! at once, each naming its field.

use std::time::Duration;

use http::Method;
use serde::Deserialize;

use crate::values::{ByteSize, HumanDuration};

use super::report::ReportLimits;

/// A storefront of the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Storefront {
    /// The platform being left.
    Old,
    /// The platform being moved to.
    New,
}

impl Storefront {
    /// The other one.
    pub fn other(self) -> Self {
        match self {
            Self::Old => Self::New,
            Self::New => Self::Old,
        }
    }

    /// `old` or `new`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Old => "old",
            Self::New => "new",
        }
    }
}

/// The `[shadow]` section as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    /// Share of eligible requests copied, 0..=1.
    pub sample: f64,
    /// Copies are made of requests this storefront served (`old` or `new`).
    pub from: String,
    /// Copies in flight at most.
    pub concurrency: usize,
    /// Copies waiting for a free slot at most.
    pub queue: usize,
    /// How long a storefront may take to answer a copy (head and the body read).
    pub timeout: HumanDuration,
    /// Path prefixes never copied (plain, case-insensitive prefixes: `/checkout` also covers
    /// `/checkouts/...`, safer than segment matching for pages with side effects).
    pub exclude: Vec<String>,
    /// Methods copied: safe methods only (copies carry no body).
    pub methods: Vec<String>,
    /// Send the shopper's `Cookie` with the copy.
    pub forward_cookies: bool,
    /// Send the shopper's `Authorization` with the copy.
    pub forward_authorization: bool,
    /// Body bytes of an HTML answer read for signals.
    pub html_limit: ByteSize,
    /// URLs kept per report group.
    pub top_urls: usize,
    /// Route groups in the report before routes count as `(other)`.
    pub max_routes: usize,
}

/// The default excluded prefixes: pages where even a GET may change state or show private data.
pub const DEFAULT_EXCLUDE: [&str; 5] = ["/checkout", "/cart", "/account", "/login", "/logout"];

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            sample: 0.1,
            from: "old".into(),
            concurrency: 16,
            queue: 256,
            timeout: HumanDuration(Duration::from_secs(5)),
            exclude: DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect(),
            methods: vec!["GET".into(), "HEAD".into()],
            forward_cookies: false,
            forward_authorization: false,
            html_limit: ByteSize(super::html::DEFAULT_LIMIT as u64),
            top_urls: 10,
            max_routes: 64,
        }
    }
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field, as written in the file (`shadow.sample`).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem of a section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in the configuration: {}", .0.len(), join(.0))]
pub struct ConfigProblems(pub Vec<Problem>);

fn join(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

/// A validated `[shadow]` section, in the types the mirror uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowSettings {
    /// Share of eligible requests copied, 0..=1.
    pub sample: f64,
    /// Copies are made of requests this storefront served.
    pub from: Storefront,
    /// Copies in flight at most.
    pub concurrency: usize,
    /// Copies waiting at most.
    pub queue: usize,
    /// Per storefront answer.
    pub timeout: Duration,
    /// Excluded path prefixes.
    pub exclude: Vec<String>,
    /// Methods copied.
    pub methods: Vec<Method>,
    /// Send `Cookie`.
    pub forward_cookies: bool,
    /// Send `Authorization`.
    pub forward_authorization: bool,
    /// HTML bytes read.
    pub html_limit: usize,
    /// Report bounds.
    pub report: ReportLimits,
}

impl ShadowConfig {
    /// Checks every field; the settings, or every problem found.
    pub fn build(&self) -> Result<ShadowSettings, ConfigProblems> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, message: String| {
            problems.push(Problem {
                field: format!("shadow.{field}"),
                message,
            })
        };
        if !(self.sample.is_finite() && (0.0..=1.0).contains(&self.sample)) {
            bad(
                "sample",
                format!("{} must be between 0 and 1 (0.1 copies 10%)", self.sample),
            );
        }
        let from = match self.from.as_str() {
            "old" => Some(Storefront::Old),
            "new" => Some(Storefront::New),
            other => {
                bad(
                    "from",
                    format!("unknown storefront `{other}` (known: old, new)"),
                );
                None
            }
        };
        if !(1..=10_000).contains(&self.concurrency) {
            bad(
                "concurrency",
                format!("{} must be between 1 and 10000", self.concurrency),
            );
        }
        if !(1..=100_000).contains(&self.queue) {
            bad(
                "queue",
                format!("{} must be between 1 and 100000", self.queue),
            );
        }
        let timeout = self.timeout.0;
        if timeout.is_zero() || timeout > Duration::from_secs(300) {
            bad(
                "timeout",
                format!("{timeout:?} must be greater than zero and at most 5m"),
            );
        }
        for (i, prefix) in self.exclude.iter().enumerate() {
            if !prefix.starts_with('/') {
                bad(
                    &format!("exclude[{i}]"),
                    format!("`{prefix}`: path prefixes start with `/`"),
                );
            }
        }
        let mut methods = Vec::new();
        for (i, m) in self.methods.iter().enumerate() {
            match m.to_ascii_uppercase().as_str() {
                "GET" => methods.push(Method::GET),
                "HEAD" => methods.push(Method::HEAD),
                "OPTIONS" => methods.push(Method::OPTIONS),
                _ => bad(
                    &format!("methods[{i}]"),
                    format!(
                        "`{m}` cannot be copied: copies carry no body and must not repeat side \
                         effects (allowed: GET, HEAD, OPTIONS)"
                    ),
                ),
            }
        }
        let html_limit = self.html_limit.0;
        if !(1024..=16 * 1024 * 1024).contains(&html_limit) {
            bad(
                "html_limit",
                format!("{html_limit} bytes must be between 1KiB and 16MiB"),
            );
        }
        if !(1..=1000).contains(&self.top_urls) {
            bad(
                "top_urls",
                format!("{} must be between 1 and 1000", self.top_urls),
            );
        }
        if !(1..=1000).contains(&self.max_routes) {
            bad(
                "max_routes",
                format!("{} must be between 1 and 1000", self.max_routes),
            );
        }
        match from {
            Some(from) if problems.is_empty() => Ok(ShadowSettings {
                sample: self.sample,
                from,
                concurrency: self.concurrency,
                queue: self.queue,
                timeout,
                exclude: self.exclude.clone(),
                methods,
                forward_cookies: self.forward_cookies,
                forward_authorization: self.forward_authorization,
                html_limit: html_limit as usize,
                report: ReportLimits {
                    top_urls: self.top_urls,
                    max_routes: self.max_routes,
                    ..ReportLimits::default()
                },
            }),
            _ => Err(ConfigProblems(problems)),
        }
    }
}

/// The `[fallback]` section as written (routes opt in with `fallback = true`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FallbackConfig {
    /// New's statuses that make cutover ask old.
    pub statuses: Vec<u16>,
    /// URLs that fell back kept for the report.
    pub top_urls: usize,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            statuses: super::fallback::DEFAULT_STATUSES.to_vec(),
            top_urls: 100,
        }
    }
}

impl FallbackConfig {
    /// Checks every field; every problem found.
    pub fn validate(&self) -> Result<(), ConfigProblems> {
        let mut problems = Vec::new();
        if self.statuses.is_empty() {
            problems.push(Problem {
                field: "fallback.statuses".into(),
                message: "list at least one status (usually 404)".into(),
            });
        }
        for (i, &s) in self.statuses.iter().enumerate() {
            if !(400..=499).contains(&s) {
                problems.push(Problem {
                    field: format!("fallback.statuses[{i}]"),
                    message: format!(
                        "{s}: only client errors (400-499) mean new lacks the page; a 5xx is an \
                         outage, not a missing page"
                    ),
                });
            } else if self.statuses[..i].contains(&s) {
                problems.push(Problem {
                    field: format!("fallback.statuses[{i}]"),
                    message: format!("{s} is listed twice"),
                });
            }
        }
        if !(1..=100_000).contains(&self.top_urls) {
            problems.push(Problem {
                field: "fallback.top_urls".into(),
                message: format!("{} must be between 1 and 100000", self.top_urls),
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigProblems(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        shadow: ShadowConfig,
        #[serde(default)]
        fallback: FallbackConfig,
    }

    #[test]
    fn an_empty_section_gives_the_documented_defaults() {
        let file: File = toml::from_str("[shadow]\n[fallback]\n").unwrap();
        let s = file.shadow.build().unwrap();
        assert_eq!(s.sample, 0.1);
        assert_eq!(s.from, Storefront::Old);
        assert_eq!((s.concurrency, s.queue), (16, 256));
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.exclude, DEFAULT_EXCLUDE);
        assert_eq!(s.methods, [Method::GET, Method::HEAD]);
        assert!(!s.forward_cookies && !s.forward_authorization);
        assert_eq!(s.html_limit, 256 * 1024);
        assert_eq!(file.fallback.statuses, [404]);
        file.fallback.validate().unwrap();
    }

    #[test]
    fn written_values_are_read() {
        let file: File = toml::from_str(
            "[shadow]\nsample = 1\nfrom = \"new\"\ntimeout = \"250ms\"\nhtml_limit = \"64KiB\"\n\
             methods = [\"get\"]\nexclude = []\nforward_cookies = true\n\
             [fallback]\nstatuses = [404, 410]\n",
        )
        .unwrap();
        let s = file.shadow.build().unwrap();
        assert_eq!(s.sample, 1.0);
        assert_eq!(s.from, Storefront::New);
        assert_eq!(s.timeout, Duration::from_millis(250));
        assert_eq!(s.html_limit, 64 * 1024);
        assert_eq!(s.methods, [Method::GET]);
        assert!(s.exclude.is_empty() && s.forward_cookies);
        file.fallback.validate().unwrap();
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_field() {
        let file: File = toml::from_str(
            "[shadow]\nsample = 1.5\nfrom = \"legacy\"\nconcurrency = 0\nqueue = 0\n\
             timeout = \"0s\"\nexclude = [\"cart\"]\nmethods = [\"GET\", \"POST\"]\n\
             html_limit = 10\ntop_urls = 0\nmax_routes = 0\n",
        )
        .unwrap();
        let err = file.shadow.build().unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "shadow.sample",
                "shadow.from",
                "shadow.concurrency",
                "shadow.queue",
                "shadow.timeout",
                "shadow.exclude[0]",
                "shadow.methods[1]",
                "shadow.html_limit",
                "shadow.top_urls",
                "shadow.max_routes"
            ]
        );
        let text = err.to_string();
        assert!(text.starts_with("10 problem(s)"), "{text}");
        assert!(text.contains("`POST` cannot be copied"), "{text}");
        assert!(text.contains("unknown storefront `legacy`"), "{text}");
    }

    #[test]
    fn nan_sample_and_unknown_fields_are_rejected() {
        let c = ShadowConfig {
            sample: f64::NAN,
            ..ShadowConfig::default()
        };
        assert_eq!(c.build().unwrap_err().0[0].field, "shadow.sample");
        let err = toml::from_str::<File>("[shadow]\nsampel = 0.5\n")
            .err()
            .unwrap();
        assert!(err.to_string().contains("sampel"), "{err}");
    }

    #[test]
    fn fallback_problems() {
        let c = FallbackConfig {
            statuses: vec![404, 503, 404],
            top_urls: 0,
        };
        let err = c.validate().unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "fallback.statuses[1]",
                "fallback.statuses[2]",
                "fallback.top_urls"
            ]
        );
        let empty = FallbackConfig {
            statuses: vec![],
            top_urls: 1,
        };
        assert_eq!(
            empty.validate().unwrap_err().0[0].field,
            "fallback.statuses"
        );
    }
}
