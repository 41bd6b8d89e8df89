//! Sitemaps of the old store as a second source of URLs: `urlset` files and sitemap indexes,
//! plain or gzip (by magic bytes), local files or http(s) URLs, within the sitemaps protocol's
//! limits (50,000 URLs and 50 MB uncompressed per file). Everything is read and checked before
//! anything is imported: a malformed file anywhere imports nothing.

use super::error::SitemapError;
use super::key::{KeyPolicy, NoKey};
use super::store::{unix_now, Inventory};
use crate::redirects::internals::split_absolute;
use crate::web_client::{self, WebClient};
use quick_xml::events::Event;
use quick_xml::Reader;
use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most URLs (or sitemaps, in an index) one file may list.
pub const MAX_URLS: usize = 50_000;
/// Most bytes one file may have, uncompressed.
pub const MAX_BYTES: usize = 50 * 1024 * 1024;
/// How long fetching one sitemap may take by default.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A `<loc>` and the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// The URL as written (entities resolved, whitespace trimmed).
    pub url: String,
    /// 1-based line of the `<loc>` in the uncompressed text.
    pub line: usize,
}

/// What a file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A `<urlset>`: page URLs.
    UrlSet(Vec<Loc>),
    /// A `<sitemapindex>`: sitemap URLs.
    Index(Vec<Loc>),
}

/// Gunzips `data` if it starts with gzip's magic bytes, up to [`MAX_BYTES`].
fn uncompress<'a>(name: &str, data: &'a [u8]) -> Result<Cow<'a, [u8]>, SitemapError> {
    let too_big = || SitemapError::Limit {
        source_name: name.into(),
        reason: format!(
            "larger than {MAX_BYTES} bytes uncompressed (the sitemaps protocol's limit)"
        ),
    };
    if !data.starts_with(&GZIP_MAGIC) {
        return if data.len() > MAX_BYTES {
            Err(too_big())
        } else {
            Ok(Cow::Borrowed(data))
        };
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| SitemapError::Malformed {
            source_name: name.into(),
            line: 1,
            reason: format!("gzip data is damaged: {e}"),
        })?;
    if out.len() > MAX_BYTES {
        return Err(too_big());
    }
    Ok(Cow::Owned(out))
}

/// Line numbers of byte offsets, counted forward once.
struct Lines<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

impl Lines<'_> {
    fn of(&mut self, pos: usize) -> usize {
        let pos = pos.min(self.text.len());
        if pos < self.at {
            return 1 + self.text[..pos].iter().filter(|&&b| b == b'\n').count();
        }
        self.line += self.text[self.at..pos]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.at = pos;
        self.line
    }
}

/// Parses one sitemap or index (gzip or not). `name` names it in errors.
pub fn parse(name: &str, data: &[u8]) -> Result<Parsed, SitemapError> {
    let data = uncompress(name, data)?;
    let bad = |line: usize, reason: String| SitemapError::Malformed {
        source_name: name.into(),
        line,
        reason,
    };
    let text = std::str::from_utf8(&data).map_err(|e| {
        let line = 1 + data[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        bad(line, "not UTF-8 (sitemaps must be UTF-8)".into())
    })?;
    let mut lines = Lines {
        text: text.as_bytes(),
        at: 0,
        line: 1,
    };
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    // Element names from the root down, local names only (`image:loc` is "loc" under "image").
    let mut stack: Vec<String> = Vec::new();
    let mut index = None;
    let mut locs: Vec<Loc> = Vec::new();
    let mut current: Option<Loc> = None;
    let mut entry_has_loc = false;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            let at = reader.error_position() as usize;
            bad(lines.of(at), format!("malformed XML: {e}"))
        })?;
        match event {
            Event::Start(e) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let line = lines.of(before);
                match (stack.len(), local.as_str()) {
                    (0, "urlset") => index = Some(false),
                    (0, "sitemapindex") => index = Some(true),
                    (0, other) => {
                        return Err(bad(
                            line,
                            format!(
                                "root element <{other}> is neither <urlset> nor <sitemapindex>"
                            ),
                        ))
                    }
                    (1, _) => entry_has_loc = false,
                    (2, "loc") if is_entry(&stack, index) => {
                        if entry_has_loc {
                            return Err(bad(
                                line,
                                format!("<{}> has two <loc> elements", stack[1]),
                            ));
                        }
                        current = Some(Loc {
                            url: String::new(),
                            line,
                        });
                    }
                    _ => {}
                }
                stack.push(local);
            }
            Event::Empty(e) => {
                let local = e.local_name();
                if stack.is_empty() {
                    return Err(bad(lines.of(before), "empty root element: no URLs".into()));
                }
                if stack.len() == 2 && local.as_ref() == b"loc" && is_entry(&stack, index) {
                    return Err(bad(lines.of(before), "empty <loc/>".into()));
                }
            }
            Event::End(_) => {
                let line = lines.of(before);
                if let Some(loc) = current.take().filter(|_| stack.len() == 3) {
                    let url = loc.url.trim();
                    if url.is_empty() {
                        return Err(bad(loc.line, "empty <loc>".into()));
                    }
                    locs.push(Loc {
                        url: url.to_string(),
                        line: loc.line,
                    });
                    entry_has_loc = true;
                    if locs.len() > MAX_URLS {
                        return Err(SitemapError::Limit {
                            source_name: name.into(),
                            reason: format!(
                                "more than {MAX_URLS} entries (the sitemaps protocol's limit)"
                            ),
                        });
                    }
                }
                if stack.len() == 2 && is_entry(&stack, index) && !entry_has_loc {
                    return Err(bad(line, format!("<{}> without <loc>", stack[1])));
                }
                stack.pop();
            }
            Event::Text(t) => {
                if let Some(loc) = current.as_mut() {
                    let s = t
                        .decode()
                        .map_err(|e| bad(lines.of(before), e.to_string()))?;
                    loc.url.push_str(&s);
                } else if stack.is_empty()
                    && !AsRef::<[u8]>::as_ref(&*t)
                        .iter()
                        .all(u8::is_ascii_whitespace)
                {
                    return Err(bad(
                        lines.of(before),
                        "text outside the root element".into(),
                    ));
                }
            }
            Event::CData(t) => {
                if let Some(loc) = current.as_mut() {
                    let s = t
                        .decode()
                        .map_err(|e| bad(lines.of(before), e.to_string()))?;
                    loc.url.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(loc) = current.as_mut() {
                    let line = lines.of(before);
                    let name = r.decode().map_err(|e| bad(line, e.to_string()))?;
                    if let Some(c) = r.resolve_char_ref().map_err(|e| bad(line, e.to_string()))? {
                        loc.url.push(c);
                    } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                        loc.url.push_str(s);
                    } else {
                        return Err(bad(line, format!("unknown entity &{name};")));
                    }
                }
            }
            Event::Eof => {
                let end = lines.of(text.len());
                if let Some(open) = stack.last() {
                    return Err(bad(
                        end,
                        format!("the file ends inside <{open}> (truncated?)"),
                    ));
                }
                return match index {
                    None => Err(bad(end, "no <urlset> or <sitemapindex> element".into())),
                    Some(true) => Ok(Parsed::Index(locs)),
                    Some(false) => Ok(Parsed::UrlSet(locs)),
                };
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}

/// Whether `stack` (root, entry) is a `<url>` of a urlset or a `<sitemap>` of an index.
fn is_entry(stack: &[String], index: Option<bool>) -> bool {
    matches!(
        (index, stack.get(1).map(String::as_str)),
        (Some(false), Some("url")) | (Some(true), Some("sitemap"))
    )
}

/// Where a sitemap comes from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Url(String),
}

impl Source {
    fn parse(s: &str) -> Source {
        if is_http(s) {
            Source::Url(s.to_string())
        } else {
            Source::File(PathBuf::from(s))
        }
    }

    fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Url(u) => u.clone(),
        }
    }

    /// Where an index's `<loc>` points: http(s) URLs as they are; anything else relative to
    /// the index (its directory, or its URL).
    fn child(&self, loc: &str) -> Source {
        if is_http(loc) {
            return Source::Url(loc.to_string());
        }
        match self {
            Source::File(p) => Source::File(p.parent().unwrap_or(Path::new(".")).join(loc)),
            Source::Url(u) => {
                let base = match (loc.starts_with('/'), u.find("://")) {
                    // Absolute path: keep scheme and authority.
                    (true, Some(i)) => {
                        u[..u[i + 3..].find('/').map_or(u.len(), |j| i + 3 + j)].to_string()
                    }
                    _ => u[..u.rfind('/').map_or(u.len(), |i| i + 1)].to_string(),
                };
                Source::Url(format!("{base}{loc}"))
            }
        }
    }
}

fn is_http(s: &str) -> bool {
    let lower = |p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    lower("http://") || lower("https://")
}

struct Fetcher {
    client: Option<WebClient>,
    timeout: Duration,
}

impl Fetcher {
    async fn read(&mut self, src: &Source) -> Result<Vec<u8>, SitemapError> {
        let name = src.name();
        match src {
            Source::File(p) => std::fs::read(p).map_err(|e| SitemapError::Read {
                source_name: name,
                reason: e.to_string(),
            }),
            Source::Url(u) => {
                let fetch_err = |reason: String| SitemapError::Fetch {
                    source_name: u.clone(),
                    reason,
                };
                if self.client.is_none() {
                    self.client = Some(web_client::client().map_err(&fetch_err)?);
                }
                let client = self
                    .client
                    .as_ref()
                    .ok_or_else(|| fetch_err("no client".into()))?;
                let got = tokio::time::timeout(
                    self.timeout,
                    web_client::get_limited(client, u, "cutover-inventory-sitemap", MAX_BYTES),
                )
                .await
                .map_err(|_| fetch_err(format!("timed out after {:?}", self.timeout)))?
                .map_err(&fetch_err)?;
                match got {
                    (s, body) if s.is_success() => Ok(body.to_vec()),
                    (s, _) => Err(fetch_err(format!("answered {}", s.as_u16()))),
                }
            }
        }
    }
}

/// URLs read from a sitemap (and the sitemaps of an index), keyed, before import.
#[derive(Debug, Clone, Default)]
pub struct SitemapUrls {
    /// Every file read, in order.
    pub files: Vec<String>,
    /// (host, key) of every usable `<loc>`; host empty unless the policy keeps hosts apart.
    pub urls: Vec<(String, String)>,
    /// `<loc>`s that have no inventory key (`file:line: url: why`): a bad escape, a fragment
    /// only, or longer than `MAX_KEY_BYTES` once canonical.
    pub skipped: Vec<String>,
}

/// Reads `source` (a file path or an http(s) URL), following an index one level, and keys every
/// URL with `policy`. Fails on the first malformed file, limit or fetch error.
pub async fn read_urls(
    source: &str,
    policy: &KeyPolicy,
    fetch_timeout: Duration,
) -> Result<SitemapUrls, SitemapError> {
    let mut fetcher = Fetcher {
        client: None,
        timeout: fetch_timeout,
    };
    let root = Source::parse(source);
    let mut out = SitemapUrls::default();
    let data = fetcher.read(&root).await?;
    match parse(&root.name(), &data)? {
        Parsed::UrlSet(locs) => {
            out.files.push(root.name());
            key_locs(&root.name(), locs, policy, &mut out)?;
        }
        Parsed::Index(children) => {
            out.files.push(root.name());
            for child in children {
                let src = root.child(&child.url);
                let data = fetcher.read(&src).await?;
                match parse(&src.name(), &data)? {
                    Parsed::UrlSet(locs) => {
                        out.files.push(src.name());
                        key_locs(&src.name(), locs, policy, &mut out)?;
                    }
                    Parsed::Index(_) => {
                        return Err(SitemapError::Malformed {
                            source_name: root.name(),
                            line: child.line,
                            reason: format!(
                                "{} is itself a sitemap index; indexes may list only sitemaps",
                                src.name()
                            ),
                        })
                    }
                }
            }
        }
    }
    Ok(out)
}

fn key_locs(
    name: &str,
    locs: Vec<Loc>,
    policy: &KeyPolicy,
    out: &mut SitemapUrls,
) -> Result<(), SitemapError> {
    for loc in locs {
        let (host, rest) = match split_absolute(&loc.url) {
            Ok(Some((host, _, rest))) => (host, rest),
            Ok(None) if loc.url.starts_with('/') => (String::new(), loc.url.as_str()),
            Ok(None) => {
                return Err(SitemapError::Malformed {
                    source_name: name.into(),
                    line: loc.line,
                    reason: format!("<loc> {:?} is not an http(s) URL", loc.url),
                })
            }
            Err(why) => {
                return Err(SitemapError::Malformed {
                    source_name: name.into(),
                    line: loc.line,
                    reason: format!("<loc> {:?} {why}", loc.url),
                })
            }
        };
        // A sitemap may carry fragments; requests never do.
        let rest = rest.split('#').next().unwrap_or("");
        let pq = if rest.is_empty() { "/" } else { rest };
        match policy.key(pq) {
            Ok(key) => {
                let host = if policy.per_host() {
                    host
                } else {
                    String::new()
                };
                out.urls.push((host, key));
            }
            Err(why) => {
                let why = match why {
                    NoKey::Invalid => "not a valid path (bad % escape?)",
                    NoKey::TooLong => "too long to inventory",
                };
                out.skipped
                    .push(format!("{name}:{}: {}: {why}", loc.line, loc.url));
            }
        }
    }
    Ok(())
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// What was read.
    pub read: SitemapUrls,
    /// URLs new to the inventory.
    pub added: usize,
}

/// `cutover inventory import-sitemap FILE_OR_URL`: reads everything, then marks every URL as
/// from the sitemap in one step. Nothing is imported if any file is malformed, over a limit,
/// unreachable, or if the URLs do not fit the inventory's capacity.
pub async fn import(
    inv: &Inventory,
    source: &str,
    fetch_timeout: Duration,
) -> Result<ImportReport, SitemapError> {
    let read = read_urls(source, inv.policy(), fetch_timeout).await?;
    let added = inv
        .import_sitemap_urls(&read.urls, unix_now())
        .map_err(|reason| SitemapError::Limit {
            source_name: source.into(),
            reason,
        })?;
    Ok(ImportReport { read, added })
}

#[cfg(test)]
mod tests;
