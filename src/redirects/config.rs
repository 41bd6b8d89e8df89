//! Raw per-table options: one `[[redirects]]` entry of the TOML config.
//!
//! Every option here is applied identically to the table's keys at load and to each request at
//! lookup, so a row and a request that a human would call "the same URL" meet in one hash slot.

use serde::Deserialize;
use std::path::PathBuf;

/// One redirect table as configured. Unknown fields are rejected so a typo such as
/// `case_sensitve = true` fails the config instead of silently matching differently.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Name used in reports, metrics and logs.
    pub name: String,
    /// The CSV file, relative to the directory of the config file that names it.
    pub file: PathBuf,
    /// Off by default: old platforms and search engines mix cases freely, and Shopify and Vercel
    /// default to case-insensitive redirects too.
    #[serde(default)]
    pub case_sensitive: bool,
    /// Whether `/a/` and `/a` are the same key.
    #[serde(default)]
    pub trailing_slash: TrailingSlash,
    /// How the query string takes part in matching.
    #[serde(default)]
    pub query: QueryMode,
    /// In `query = "key"` mode, a request whose query matches no entry falls back to the entry
    /// for its bare path (keeping its query), so `/about?ref=x` still finds `/about`.
    #[serde(default = "yes")]
    pub query_fallback: bool,
    /// Query parameters ignored for matching and carried to the target: tracking parameters
    /// must neither break a match nor be lost for the analytics of the new store. A trailing
    /// `*` matches any suffix (`utm_*`).
    #[serde(default = "default_ignore_params")]
    pub ignore_params: Vec<String>,
    /// Hosts that absolute targets may point to (`*.example.com` allowed). Path targets stay on
    /// the host the shopper asked for; anything else is rejected at load: no open redirects.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Which shoppers the table answers.
    #[serde(default)]
    pub apply_to: ApplyTo,
    /// What a permanent status becomes while the shift to the new storefront is partial.
    #[serde(default)]
    pub during_shift: DuringShift,
    /// Status for rows whose `status` column is absent or empty.
    #[serde(default = "default_status")]
    pub default_status: u16,
}

fn yes() -> bool {
    true
}

fn default_status() -> u16 {
    301
}

/// Tracking parameters added by ad platforms and mail tools; none of them identifies a page.
pub fn default_ignore_params() -> Vec<String> {
    [
        "utm_*",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "fbclid",
        "msclkid",
        "yclid",
        "twclid",
        "ttclid",
        "li_fat_id",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl TableConfig {
    /// A table with every option at its default, e.g. for `redirects check FILE` without a config.
    pub fn with_defaults(name: impl Into<String>, file: impl Into<PathBuf>) -> Self {
        TableConfig {
            name: name.into(),
            file: file.into(),
            case_sensitive: false,
            trailing_slash: TrailingSlash::default(),
            query: QueryMode::default(),
            query_fallback: true,
            ignore_params: default_ignore_params(),
            allowed_hosts: Vec::new(),
            apply_to: ApplyTo::default(),
            during_shift: DuringShift::default(),
            default_status: 301,
        }
    }
}

/// Whether `/a/` and `/a` are the same key.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TrailingSlash {
    /// `/a/` and `/a` match the same entry.
    #[default]
    Equivalent,
    /// `/a/` and `/a` are different keys.
    Strict,
}

/// How the query string takes part in matching.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QueryMode {
    /// The query is part of the key, parameter order ignored: old platforms name pages by
    /// query (`/product.php?id=123`). Ignored parameters are carried to the target.
    #[default]
    Key,
    /// Matching looks at the path only; the request's query is appended to the target.
    Ignore,
    /// Matching looks at the path only; the request's query is discarded.
    Drop,
}

/// Which requests the table answers.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApplyTo {
    /// Only shoppers assigned to the new storefront: the old storefront still serves its own
    /// URLs to the shoppers still on it.
    #[default]
    New,
    /// Every request, whichever storefront it is assigned to.
    All,
}

/// How permanent statuses are served while the share is below 100%.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DuringShift {
    /// 301 is served as 302 and 308 as 307 until the new storefront takes 100%: browsers cache
    /// permanent redirects forever, which would strand shoppers after a rollback.
    #[default]
    Temporary,
    /// Serve the written status at any share.
    AsWritten,
}

/// Compiled `ignore_params`: exact names and `prefix*` globs, compared ASCII-case-insensitively
/// because `UTM_Source` is still a tracking parameter.
#[derive(Debug, Clone)]
pub(crate) struct ParamFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
    /// Which bytes (either case) a listed name or prefix starts with. Most parameters of a
    /// request (`id`, `route`, `page`) are not tracking ones, and this rejects them with one load
    /// instead of a compare against every listed name, on every parameter of every lookup.
    first: [bool; 256],
    /// A bare `*` ignores every parameter.
    any: bool,
}

impl Default for ParamFilter {
    fn default() -> Self {
        ParamFilter {
            exact: Vec::new(),
            prefixes: Vec::new(),
            first: [false; 256],
            any: false,
        }
    }
}

impl ParamFilter {
    pub(crate) fn new(patterns: &[String]) -> Self {
        let mut f = ParamFilter::default();
        for p in patterns {
            let p = p.trim().to_ascii_lowercase();
            let pattern = match p.strip_suffix('*') {
                Some(prefix) => {
                    f.prefixes.push(prefix.to_string());
                    prefix
                }
                None if !p.is_empty() => {
                    f.exact.push(p.clone());
                    &p
                }
                None => continue,
            };
            match pattern.bytes().next() {
                Some(b) => {
                    f.first[usize::from(b)] = true;
                    f.first[usize::from(b.to_ascii_uppercase())] = true;
                }
                None => f.any = true,
            }
        }
        f
    }

    /// `name` is the canonical (percent-normalised) parameter name.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let Some(&b) = name.as_bytes().first() else {
            return self.any;
        };
        if !self.any && !self.first[usize::from(b)] {
            return false;
        }
        self.exact.iter().any(|e| e.eq_ignore_ascii_case(name))
            || self.prefixes.iter().any(|p| {
                name.len() >= p.len()
                    && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            })
    }
}

/// Compiled `allowed_hosts`.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostAllowList {
    exact: Vec<String>,
    /// `*.example.com` stored as `.example.com`.
    suffixes: Vec<String>,
}

impl HostAllowList {
    pub(crate) fn new(hosts: &[String]) -> Self {
        let mut l = HostAllowList::default();
        for h in hosts {
            let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
            match h.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => l.suffixes.push(suffix.to_string()),
                _ if !h.is_empty() => l.exact.push(h),
                _ => {}
            }
        }
        l
    }

    /// `host` is lowercase without port.
    pub(crate) fn allows(&self, host: &str) -> bool {
        self.exact.iter().any(|e| e == host)
            || self
                .suffixes
                .iter()
                .any(|s| host.len() > s.len() && host.ends_with(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_minimal_toml() {
        let c: TableConfig = toml::from_str("name = \"main\"\nfile = \"r.csv\"").unwrap();
        assert_eq!(c, TableConfig::with_defaults("main", "r.csv"));
    }

    #[test]
    fn unknown_field_rejected() {
        let e = toml::from_str::<TableConfig>("name='a'\nfile='b'\ncase_sensitve=true");
        assert!(e.unwrap_err().to_string().contains("case_sensitve"));
    }

    #[test]
    fn all_options_parse() {
        let c: TableConfig = toml::from_str(
            "name='a'\nfile='b'\ncase_sensitive=true\ntrailing_slash='strict'\nquery='drop'\n\
             ignore_params=['ref*']\nallowed_hosts=['*.shop.example']\napply_to='all'\n\
             during_shift='as_written'\ndefault_status=302\nquery_fallback=false",
        )
        .unwrap();
        assert_eq!(c.query, QueryMode::Drop);
        assert_eq!(c.apply_to, ApplyTo::All);
        assert_eq!(c.during_shift, DuringShift::AsWritten);
        assert_eq!(c.trailing_slash, TrailingSlash::Strict);
    }

    #[test]
    fn param_filter_globs() {
        let f = ParamFilter::new(&default_ignore_params());
        assert!(f.matches("utm_source"));
        assert!(f.matches("UTM_Campaign"));
        assert!(f.matches("gclid"));
        assert!(!f.matches("id"));
        assert!(!f.matches("gclidx"));
        assert!(!f.matches(""));
        let f = ParamFilter::new(&["Ref".into(), "x_*".into()]);
        assert!(f.matches("ref") && f.matches("REF") && f.matches("X_y") && f.matches("x_"));
        assert!(!f.matches("re") && !f.matches("xy"));
        let all = ParamFilter::new(&["*".into()]);
        assert!(all.matches("anything") && all.matches("Z") && all.matches(""));
    }

    #[test]
    fn host_allow_list() {
        let l = HostAllowList::new(&["new.example".into(), "*.cdn.example".into()]);
        assert!(l.allows("new.example"));
        assert!(l.allows("img.cdn.example"));
        assert!(!l.allows("cdn.example"));
        assert!(!l.allows("evil.example"));
        assert!(!l.allows("new.example.evil"));
    }
}
