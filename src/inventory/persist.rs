//! The inventory on disk: written atomically (temp file, fsync, rename, fsync of the directory)
//! and checked on load, so a crash mid-write leaves the previous file, and a file that is
//! half-written or altered anyway is detected instead of loaded as a smaller inventory.
//!
//! Format (text, one entry per line, fields separated by tabs, shown as `→` here; keys are
//! canonical visible ASCII):
//!
//! ```text
//! cutover-inventory 1 entries=2
//! 120→0→40→1767225600→1767312000→200→traffic→-→/shoes/red
//! 0→0→0→1767225600→0→0→sitemap→-→/pages/about
//! end crc32=1c291ca3
//! ```
//!
//! Columns: hits, hits_error, crawler_hits, first_seen, last_seen, last_status, sources
//! (`traffic`, `sitemap`, `traffic+sitemap`, then what new last answered when known:
//! `+new_served`, `+new_missing`, `+fallback_served`), host (`-` for none), url. The CRC-32
//! covers every byte before the `end` line. A file without the new-store tokens (written
//! before they existed) reads as "unseen".

use super::entry::{Entry, OnNew, Sources};
use super::error::PersistError;
use super::store::Inventory;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &str = "cutover-inventory";
const VERSION: u32 = 1;
const FIELDS: usize = 9;
/// The sources column's suffix for what new last answered (none: unseen).
const ON_NEW_TOKENS: [(&str, OnNew); 3] = [
    ("+new_served", OnNew::Served),
    ("+new_missing", OnNew::Missing),
    ("+fallback_served", OnNew::FallbackServed),
];

/// Serialises entries in the file format.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut s = String::with_capacity(64 + entries.len() * 96);
    let _ = writeln!(s, "{MAGIC} {VERSION} entries={}", entries.len());
    for e in entries {
        let sources = match (e.sources.traffic, e.sources.sitemap) {
            (true, true) => "traffic+sitemap",
            (false, true) => "sitemap",
            _ => "traffic",
        };
        let on_new = ON_NEW_TOKENS
            .iter()
            .find(|(_, v)| *v == e.on_new)
            .map_or("", |(token, _)| token);
        let host = if e.host.is_empty() { "-" } else { &e.host };
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{}\t{}\t{}\t{sources}{on_new}\t{host}\t{}",
            e.hits, e.hits_error, e.crawler_hits, e.first_seen, e.last_seen, e.last_status, e.url
        );
    }
    let crc = crc32fast::hash(s.as_bytes());
    let _ = writeln!(s, "end crc32={crc:08x}");
    s.into_bytes()
}

/// Parses a whole file; `file` only names it in errors.
pub fn decode(file: &str, data: &[u8]) -> Result<Vec<Entry>, PersistError> {
    let bad = |line: usize, reason: String| PersistError::Corrupt {
        file: file.to_string(),
        line,
        reason,
    };
    let text = std::str::from_utf8(data).map_err(|e| {
        let line = 1 + data[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        bad(
            line,
            "not UTF-8 text: not an inventory file, or damaged".into(),
        )
    })?;
    let Some(header_end) = text.find('\n') else {
        return Err(bad(
            1,
            format!(
                "no header line: expected `{MAGIC} {VERSION} entries=N` (empty or truncated file)"
            ),
        ));
    };
    let header = &text[..header_end];
    let promised = parse_header(header).map_err(|r| bad(1, r))?;
    // The trailer: the last line, complete with its newline.
    let body_end = text[..text.len().saturating_sub(1)]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let last_line_no = text.lines().count();
    let trailer = &text[body_end..];
    if !text.ends_with('\n') || !trailer.starts_with("end crc32=") || body_end <= header_end {
        return Err(bad(
            last_line_no,
            format!(
                "no `end crc32=...` line at the end: the file is incomplete (half-written?); \
                 its header promised {promised} entries"
            ),
        ));
    }
    let want = u32::from_str_radix(trailer["end crc32=".len()..].trim_end(), 16).map_err(|_| {
        bad(
            last_line_no,
            format!("unreadable checksum in {:?}", trailer.trim_end()),
        )
    })?;
    let got = crc32fast::hash(&data[..body_end]);
    if want != got {
        return Err(bad(
            last_line_no,
            format!("checksum mismatch (file says {want:08x}, content is {got:08x}): the file was altered or damaged"),
        ));
    }
    let mut entries = Vec::with_capacity(promised.min(1 << 20));
    for (i, line) in text[header_end + 1..body_end].lines().enumerate() {
        entries.push(parse_entry(line).map_err(|r| bad(i + 2, r))?);
    }
    if entries.len() != promised {
        return Err(bad(
            last_line_no,
            format!(
                "header promised {promised} entries, found {}",
                entries.len()
            ),
        ));
    }
    Ok(entries)
}

fn parse_header(line: &str) -> Result<usize, String> {
    let mut parts = line.split(' ');
    if parts.next() != Some(MAGIC) {
        return Err(format!(
            "not an inventory file: the first line should start with `{MAGIC}`"
        ));
    }
    let version = parts.next().unwrap_or("");
    if version != VERSION.to_string() {
        return Err(format!(
            "format version {version:?} is not supported (this cutover reads {VERSION})"
        ));
    }
    parts
        .next()
        .and_then(|p| p.strip_prefix("entries="))
        .and_then(|n| n.parse().ok())
        .filter(|_| parts.next().is_none())
        .ok_or_else(|| format!("bad header {line:?}: expected `{MAGIC} {VERSION} entries=N`"))
}

fn parse_entry(line: &str) -> Result<Entry, String> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() != FIELDS {
        return Err(format!(
            "expected {FIELDS} tab-separated fields, found {}",
            f.len()
        ));
    }
    let num = |i: usize, name: &str| -> Result<u64, String> {
        f[i].parse()
            .map_err(|_| format!("{name} {:?} is not a number", f[i]))
    };
    let (sources, on_new) = ON_NEW_TOKENS
        .iter()
        .find_map(|(token, v)| f[6].strip_suffix(token).map(|s| (s, *v)))
        .unwrap_or((f[6], OnNew::Unseen));
    let sources = match sources {
        "traffic" => Sources {
            traffic: true,
            sitemap: false,
        },
        "sitemap" => Sources {
            traffic: false,
            sitemap: true,
        },
        "traffic+sitemap" => Sources {
            traffic: true,
            sitemap: true,
        },
        other => {
            return Err(format!(
                "sources {other:?}: expected traffic, sitemap or traffic+sitemap, then \
                 optionally +new_served, +new_missing or +fallback_served"
            ))
        }
    };
    let url = f[8];
    if !url.starts_with('/') || !url.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(format!("url {url:?} is not a canonical path"));
    }
    let host = if f[7] == "-" { "" } else { f[7] };
    let status = u16::try_from(num(5, "last_status")?)
        .map_err(|_| format!("last_status {:?} out of range", f[5]))?;
    let (hits, hits_error) = (num(0, "hits")?, num(1, "hits_error")?);
    if hits_error > hits {
        return Err(format!("hits_error {hits_error} exceeds hits {hits}"));
    }
    Ok(Entry {
        host: host.to_string(),
        url: url.to_string(),
        hits,
        hits_error,
        crawler_hits: num(2, "crawler_hits")?,
        first_seen: num(3, "first_seen")?,
        last_seen: num(4, "last_seen")?,
        last_status: status,
        sources,
        on_new,
    })
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `entries` to `path` atomically: a temp file beside it, fsync, rename over the old
/// file, fsync of the directory. Blocking: call from `spawn_blocking` in async code.
pub fn save_entries(entries: &[Entry], path: &Path) -> Result<(), PersistError> {
    let file = path.display().to_string();
    let io = |action: &'static str| {
        let file = file.clone();
        move |e: std::io::Error| PersistError::Io {
            file,
            action,
            reason: e.to_string(),
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "inventory".into(), |n| n.to_string_lossy().into_owned());
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{seq}", std::process::id()));
    let data = encode(entries);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io("creating the temp file"))?;
        f.write_all(&data).map_err(io("writing the temp file"))?;
        f.sync_all().map_err(io("syncing the temp file"))?;
        std::fs::rename(&tmp, path).map_err(io("renaming the temp file into place"))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // The rename itself must survive a crash too.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the directory"))
}

/// Saves the inventory's current entries; returns how many were written.
pub fn save(inv: &Inventory, path: &Path) -> Result<usize, PersistError> {
    let entries = inv.entries();
    save_entries(&entries, path)?;
    Ok(entries.len())
}

/// Reads and checks a file. `Ok(None)` if it does not exist (a first start).
pub fn load_entries(path: &Path) -> Result<Option<Vec<Entry>>, PersistError> {
    let file = path.display().to_string();
    match std::fs::read(path) {
        Ok(data) => decode(&file, &data).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PersistError::Io {
            file,
            action: "reading",
            reason: e.to_string(),
        }),
    }
}

/// What [`load_or_start_empty`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No file yet: the inventory starts empty.
    NoFile,
    /// Entries restored; `dropped` did not fit (capacity lowered since the file was written).
    Restored {
        /// Entries put back.
        entries: usize,
        /// Entries that did not fit.
        dropped: usize,
    },
    /// The file was unusable: the inventory starts empty, and this is the warning to log (it
    /// names the file, the line and the reason, and where the bad file was moved).
    StartedEmpty(String),
}

/// Loads `path` into `inv` at start. A bad file never stops the proxy: it is moved aside to
/// `<file>.bad` (so the next save cannot overwrite the evidence) and the inventory starts empty
/// with a warning, returned and logged.
pub fn load_or_start_empty(inv: &Inventory, path: &Path) -> Loaded {
    match load_entries(path) {
        Ok(None) => Loaded::NoFile,
        Ok(Some(entries)) => {
            let n = entries.len();
            let dropped = inv.restore(entries);
            Loaded::Restored {
                entries: n - dropped,
                dropped,
            }
        }
        Err(e) => {
            let mut aside = path.as_os_str().to_owned();
            aside.push(".bad");
            let aside = PathBuf::from(aside);
            let moved = match std::fs::rename(path, &aside) {
                Ok(()) => format!("the file was moved to {}", aside.display()),
                Err(r) => format!(
                    "moving it to {} failed ({r}); the next save replaces it",
                    aside.display()
                ),
            };
            let warning = format!("{e}; starting with an empty inventory ({moved})");
            tracing::warn!(file = %path.display(), "{warning}");
            Loaded::StartedEmpty(warning)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, hits: u64, sitemap: bool) -> Entry {
        Entry {
            host: String::new(),
            url: url.into(),
            hits,
            hits_error: hits / 4,
            crawler_hits: hits / 2,
            first_seen: 1_767_225_600,
            last_seen: if hits > 0 { 1_767_312_000 } else { 0 },
            last_status: if hits > 0 { 200 } else { 0 },
            sources: Sources {
                traffic: hits > 0,
                sitemap,
            },
            on_new: Default::default(),
        }
    }

    fn sample() -> Vec<Entry> {
        let mut host = entry("/x?a=1", 3, true);
        host.host = "shop.example".into();
        vec![
            entry("/shoes/red", 120, false),
            entry("/pages/about", 0, true),
            host,
        ]
    }

    #[test]
    fn round_trip() {
        let data = encode(&sample());
        assert!(String::from_utf8_lossy(&data).starts_with("cutover-inventory 1 entries=3\n"));
        assert_eq!(decode("f", &data).unwrap(), sample());
        assert_eq!(decode("f", &encode(&[])).unwrap(), vec![]);
    }

    fn err(data: &[u8]) -> (usize, String) {
        match decode("inv.txt", data).unwrap_err() {
            PersistError::Corrupt { file, line, reason } => {
                assert_eq!(file, "inv.txt");
                (line, reason)
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn truncated_file_is_rejected_at_every_cut() {
        let data = encode(&sample());
        for cut in 0..data.len() {
            let (line, reason) = err(&data[..cut]);
            assert!(line >= 1, "cut {cut}");
            assert!(
                reason.contains("incomplete")
                    || reason.contains("header")
                    || reason.contains("checksum"),
                "cut {cut}: {reason}"
            );
        }
    }

    #[test]
    fn altered_byte_is_detected() {
        let data = encode(&sample());
        let text = String::from_utf8(data.clone()).unwrap();
        let at = text.find("120").unwrap();
        let mut bad = data.clone();
        bad[at] = b'9';
        let (line, reason) = err(&bad);
        assert_eq!(line, 5);
        assert!(reason.contains("checksum mismatch"), "{reason}");
    }

    #[test]
    fn header_problems_name_line_one() {
        assert!(err(b"").1.contains("no header line"));
        assert!(err(b"hello\n").1.contains("not an inventory file"));
        assert!(err(b"cutover-inventory 2 entries=0\nend crc32=0\n")
            .1
            .contains("version \"2\""));
        assert!(err(b"cutover-inventory 1 entries=x\nend crc32=0\n")
            .1
            .contains("bad header"));
        assert_eq!(err(&[0xff, b'\n']).0, 1);
    }

    /// A file with a valid checksum but bad content (written by hand, or another program):
    /// the line of the bad entry is named.
    fn with_body(body: &str, promised: usize) -> Vec<u8> {
        let mut s = format!("cutover-inventory 1 entries={promised}\n{body}");
        let crc = crc32fast::hash(s.as_bytes());
        s.push_str(&format!("end crc32={crc:08x}\n"));
        s.into_bytes()
    }

    #[test]
    fn bad_entries_name_their_line() {
        let ok = "1\t0\t0\t1\t1\t200\ttraffic\t-\t/a\n";
        let cases = [
            ("1\t0\t0\t1\t1\t200\ttraffic\t-\n", "expected 9"),
            ("x\t0\t0\t1\t1\t200\ttraffic\t-\t/b\n", "hits \"x\""),
            ("1\t0\t0\t1\t1\t70000\ttraffic\t-\t/b\n", "last_status"),
            ("1\t0\t0\t1\t1\t200\tother\t-\t/b\n", "sources"),
            ("1\t0\t0\t1\t1\t200\ttraffic\t-\tb\n", "canonical path"),
            ("1\t2\t0\t1\t1\t200\ttraffic\t-\t/b\n", "exceeds hits"),
        ];
        for (line, want) in cases {
            let (n, reason) = err(&with_body(&format!("{ok}{line}"), 2));
            assert_eq!(n, 3, "{reason}");
            assert!(reason.contains(want), "{reason}");
        }
        let (n, reason) = err(&with_body(ok, 2));
        assert_eq!(n, 3);
        assert!(reason.contains("promised 2 entries, found 1"), "{reason}");
        assert!(err(b"cutover-inventory 1 entries=0\nend crc32=zz\n")
            .1
            .contains("unreadable checksum"));
    }
}
