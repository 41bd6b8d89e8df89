//! The checks behind the fuzz targets (`fuzz/fuzz_targets/`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`): one function per parser of outside input, taking arbitrary bytes and
//! panicking when a property the rest of the crate relies on does not hold. Both callers use
//! these functions, so what the fuzzers explore and what CI replays cannot drift apart.
//!
//! Not an API: hidden from the docs, and free to change with the fuzz targets.
//!
//! Layer: edge. May import its own layer and control, server, request, config, snapshot, observe,
//! clients, domain, policy, wire; nothing is above it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::config::{build, warnings, CompileInput, ConfigError, Source, StateFile, Summary};
use crate::control::request::{expect_empty, parse};
use crate::control::{SplitBody, SPLIT_EXAMPLE};
use crate::metrics::Metrics;
use crate::redirects::internals::{canon_target, read_rows, split_absolute};
use crate::redirects::{
    load_bytes, LoadContext, LoadErrors, Loaded, QueryMode, RedirectTable, TableConfig,
    TrailingSlash,
};
use crate::values::parse_percent;

mod front;
pub use front::{check_fast_path, check_http1_head};

/// A check: panics when a property does not hold for the input.
pub type Check = fn(&[u8]);

/// Every fuzz target: its name (the directory under `fuzz/corpus/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("config", check_config),
    ("redirects_csv", check_redirects_csv),
    ("admin_json", check_admin_json),
    ("redirect_lookup", check_redirect_lookup),
    ("http1_head", check_http1_head),
    ("fast_path", check_fast_path),
];

/// The repository's `config/` directory: fuzzed configs compile as if they were a file there,
/// so the real `redirects.csv` a seed names is found and loaded.
const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");

/// The demo config, which state files (runtime overrides) are applied on top of.
const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// The real redirect plan, the base of the tables requests are fuzzed against.
const REDIRECTS_CSV: &str = include_str!("../config/redirects.csv");

/// Rows added to the real plan for lookups: prefix rules, splats, per-host entries, queries,
/// escapes and absolute targets, so every branch of `lookup` is reachable.
const EXTRA_ROWS: &str = "\
/fuzz/prefix/*,/new/prefix/*,301
/fuzz/flat/*,/new/flat,302
/fuzz/exact,/new/exact,308
/fuzz/gone,,410
https://shop.example.com/fuzz/host,/new/host,301
http://Other.Example.com:8080/fuzz/host/*,https://shop.example.com/new/other/*,307
/fuzz/q?id=1&x=2,/new/q?keep=1,301
/fuzz/%7Etilde,/new/caf%C3%A9#frag,301
/fuzz/abs,https://cdn.example.net/a?b=c,301
";

/// Paths a config built by the fuzzer may not name: devices, kernel files and sockets would
/// make the build stage block or read without end (it reads every secret, CA and CSV file
/// named). The validate stage reads none and runs on every input.
const UNSAFE_PATHS: &[&str] = &["/dev", "/proc", "/sys", "/run", "/fd", "fifo"];

/// Whether the compile step may run on `text`: it names no [`UNSAFE_PATHS`], and no TOML escape
/// (`\u0064`, `\x64`, a line-ending backslash) could spell one.
fn safe_to_compile(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if UNSAFE_PATHS.iter().any(|p| lower.contains(p)) {
        return false;
    }
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('"' | '\\' | 'b' | 't' | 'n' | 'f' | 'r')) {
            return false;
        }
    }
    true
}

/// Whether a `Location` value is safe to send: visible ASCII only (no header injection, no
/// spaces), and a same-site path that a browser cannot read as another host, or an absolute
/// http(s) URL (whose host was checked against the allow-list at load).
pub fn assert_safe_location(location: &str, context: &dyn std::fmt::Display) {
    assert!(
        location.bytes().all(|b| (0x21..0x7f).contains(&b)),
        "Location {location:?} has a byte a header cannot carry ({context})"
    );
    assert!(
        !location.starts_with("//") && !location.starts_with("/\\"),
        "Location {location:?} leaves the site ({context})"
    );
    let absolute = ["http://", "https://"]
        .iter()
        .any(|s| location.get(..s.len()).is_some_and(|p| p == *s));
    assert!(
        location.starts_with('/') || absolute,
        "Location {location:?} is neither a path nor an http(s) URL ({context})"
    );
    if absolute {
        let rest = location.split_once("://").map_or("", |(_, r)| r);
        assert!(
            !rest.is_empty() && !rest.starts_with(['/', '\\', '@']),
            "Location {location:?} has no host ({context})"
        );
    }
}

fn located(e: &ConfigError, source: &Source) {
    let problems = e.problems();
    assert!(!problems.is_empty(), "an error without problems: {e}");
    let lines = source.text.lines().count() + 1;
    let shown = e.to_string();
    for p in &problems {
        assert!(
            !p.file.as_os_str().is_empty(),
            "problem without a file: {p}"
        );
        assert!(
            p.line > 0 || !p.field.is_empty(),
            "problem with neither a line nor a field: {p}"
        );
        if p.file == source.path {
            assert!(p.line <= lines, "line {} of {lines}: {p}", p.line);
        }
        assert!(
            !p.message.trim().is_empty(),
            "problem without a message: {p}"
        );
        assert!(shown.contains(&p.to_string()), "{p} missing from {shown}");
    }
}

/// The TOML config: parsing never panics; a rejected config reports at least one problem and
/// every problem names a file and a line or a field (and shows up in the error text); an
/// accepted one has a summary, a split within 0..=100% and warnings that do not panic.
pub fn check_config(data: &[u8]) {
    let source = Source {
        path: Path::new(CONFIG_DIR).join("fuzz.toml"),
        text: String::from_utf8_lossy(data).into_owned(),
    };
    let raw = match source.parse() {
        Ok(raw) => raw,
        Err(e) => return located(&e, &source),
    };
    // The pure stage runs on every input: it reads no file, so no path can make it block.
    if let Err(e) = crate::config::validate(&raw, &source) {
        return located(&e, &source);
    }
    if !safe_to_compile(&source.text) {
        return;
    }
    compiled(&source, None);
}

fn compiled(source: &Source, overrides: Option<&crate::config::RuntimeOverrides>) {
    let metrics = Metrics::new();
    let input = CompileInput {
        source,
        generation: 1,
        previous: None,
        metrics: &metrics,
    };
    match build(overrides, input) {
        Ok(snap) => {
            assert!(
                snap.routing.split.share_bp <= 10_000,
                "split of {} bp",
                snap.routing.split.share_bp
            );
            let _ = Summary(&snap).to_string();
            let _ = warnings(&snap);
        }
        Err(e) => located(&e, source),
    }
}

/// Table options from one selector byte (bits: case, trailing slash, query mode, fallback).
fn table_config(flags: u8) -> TableConfig {
    let mut cfg = TableConfig::with_defaults("fuzz", "plan.csv");
    cfg.case_sensitive = flags & 1 != 0;
    if flags & 2 != 0 {
        cfg.trailing_slash = TrailingSlash::Strict;
    }
    cfg.query = match (flags >> 2) & 3 {
        1 => QueryMode::Drop,
        2 => QueryMode::Ignore,
        _ => QueryMode::Key,
    };
    cfg.query_fallback = flags & 16 == 0;
    cfg.allowed_hosts = vec!["shop.example.com".into(), "*.example.net".into()];
    cfg
}

fn load_table(cfg: &TableConfig, csv: &[u8]) -> Result<Loaded, LoadErrors> {
    load_bytes(cfg, &LoadContext::standalone(Path::new("/fuzz")), csv)
}

/// Requests no table may answer with an off-site or broken `Location`, whatever its rows.
const NASTY_REQUESTS: &[&str] = &[
    "//evil.example",
    "//evil.example/",
    "/\\evil.example",
    "/%2F%2Fevil.example",
    "/%5C%5Cevil.example",
    "/%0d%0aSet-Cookie:%20x=1",
    "/%00",
    "/?%0d%0a=1",
    "/a?b=%0a",
    "/..//evil.example",
    "/./\\/evil.example",
];

/// The redirect plan CSV. The first byte selects the table options when it is below 0x20 (a
/// control byte no real CSV starts with); otherwise defaults apply. A rejected plan reports at
/// least one error, each naming the file; a loaded one answers every exact `old_url` with its own
/// status, a 410 with no `Location`, every other with a safe `Location` that is the row's
/// canonical `new_url` unless that target is itself redirected (chains are collapsed, the
/// documented exception); prefix rules catch the paths below them; and no request, the rows'
/// own URLs with `//evil` appended included, gets an unsafe `Location`.
pub fn check_redirects_csv(data: &[u8]) {
    let (flags, csv) = match data.split_first() {
        Some((&f, rest)) if f < 0x20 && f != b'\n' && f != b'\r' && f != b'\t' => (f, rest),
        _ => (0, data),
    };
    let cfg = table_config(flags);
    let loaded = match load_table(&cfg, csv) {
        Ok(l) => l,
        Err(errs) => {
            assert!(
                !errs.is_empty() && errs.count() > 0,
                "rejected without errors"
            );
            let shown = errs.to_string();
            assert!(shown.contains("/fuzz/plan.csv"), "{shown}");
            for e in &errs.errors {
                let s = e.to_string();
                assert!(
                    s.starts_with("/fuzz/plan.csv"),
                    "error without its file: {s}"
                );
            }
            return;
        }
    };
    let t = &loaded.table;
    let mut rows = Vec::new();
    let mut errs = LoadErrors::default();
    read_rows("plan.csv", csv, &mut errs, |r| {
        rows.push((
            r.line,
            r.old_url.trim().to_string(),
            r.new_url.trim().to_string(),
            r.status.trim().to_string(),
        ))
    });
    assert!(
        errs.is_empty(),
        "loaded, but the rows do not read again: {errs}"
    );
    for (line, old, new, status) in &rows {
        let ctx = format!("line {line}: {old:?} -> {new:?} {status:?}");
        let (host, pq) = match split_absolute(old) {
            Ok(Some((host, _, rest))) => (host, if rest.is_empty() { "/" } else { rest }),
            _ => (String::new(), old.as_str()),
        };
        lookups_are_safe(t, &host, pq, true);
        // A prefix rule as the loader reads one: a path ending in `/*`, no query.
        if let Some(dir) = pq
            .strip_suffix('*')
            .filter(|d| d.ends_with('/') && !d.contains('?'))
        {
            let below = format!("{dir}fuzz-below");
            assert!(t.lookup(&host, &below).is_some(), "{ctx}: {below:?} missed");
            continue;
        }
        let hit = t
            .lookup(&host, pq)
            .unwrap_or_else(|| panic!("{ctx}: its own old_url misses"));
        let written = if status.is_empty() {
            cfg.default_status
        } else {
            status.parse().expect("loaded statuses are numbers")
        };
        assert_eq!(hit.written.as_u16(), written, "{ctx}: status");
        let Some(location) = hit.location else {
            assert_eq!(written, 410, "{ctx}: no Location");
            continue;
        };
        assert_ne!(written, 410, "{ctx}: a 410 with a Location");
        assert_safe_location(&location, &ctx);
        // The target as written, canonicalised, unless the lookup carried a query or the
        // target is redirected itself.
        if pq.contains('?') || !new.starts_with('/') || new.contains(['?', '#']) {
            continue;
        }
        let mut expected = String::new();
        if canon_target(new, &mut expected).is_err() || location == expected {
            continue;
        }
        assert!(
            t.lookup(&host, &expected).is_some(),
            "{ctx}: answered {location:?}, expected {expected:?} (not a chain)"
        );
    }
}

/// Looks up `pq` (and, with `variants`, the nasty requests built on it), asserting every
/// `Location` is safe and every answer stable.
fn lookups_are_safe(t: &RedirectTable, host: &str, pq: &str, variants: bool) {
    let probe = |pq: &str| {
        let hit = t.lookup(host, pq);
        if let Some(loc) = hit.as_ref().and_then(|h| h.location.as_deref()) {
            assert_safe_location(loc, &format!("lookup({host:?}, {pq:?})"));
        }
        assert_eq!(
            hit,
            t.lookup(host, pq),
            "lookup({host:?}, {pq:?}) not stable"
        );
    };
    probe(pq);
    if !variants {
        return;
    }
    let path = pq.split(['?', '*']).next().unwrap_or(pq);
    for nasty in NASTY_REQUESTS {
        probe(nasty);
        probe(&format!("{}{nasty}", path.trim_end_matches('/')));
        probe(&format!("{path}{nasty}"));
    }
}

/// The real plan plus [`EXTRA_ROWS`], under each combination of matching options.
fn lookup_tables() -> &'static [RedirectTable] {
    static TABLES: OnceLock<Vec<RedirectTable>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let csv = format!("{}\n{EXTRA_ROWS}", REDIRECTS_CSV.trim_end());
        [0u8, 1 | 2, 4, 8 | 16, 16]
            .iter()
            .map(|&f| {
                let cfg = table_config(f);
                let q = cfg.query;
                let text = if q == QueryMode::Key {
                    csv.clone()
                } else {
                    // Rows with a query only load in `key` mode.
                    csv.lines()
                        .filter(|l| !l.split(',').next().unwrap_or("").contains('?'))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                load_table(&cfg, text.as_bytes())
                    .unwrap_or_else(|e| panic!("lookup table (flags {f}): {e}"))
                    .table
            })
            .collect()
    })
}

/// A request as the redirect table sees it: `host\npath_and_query` (no newline: no host), bytes
/// from a client taken as UTF-8 with replacement. Lookups never panic, are stable, and never
/// answer with a `Location` that leaves the site or breaks the header, whatever the input.
pub fn check_redirect_lookup(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (host, pq) = text.split_once('\n').unwrap_or(("", &text));
    let host = host.to_ascii_lowercase();
    for t in lookup_tables() {
        for h in [host.as_str(), "", "shop.example.com", "other.example.com"] {
            lookups_are_safe(t, h, pq, false);
        }
    }
}

/// Admin API bodies and the runtime state file: `PUT /admin/split` either parses to a share
/// within 0..=100% or is refused with a 400 JSON error; the no-body endpoints accept only blank
/// or `{}`; a state file that parses round-trips through JSON, and applied to the demo config
/// either compiles to a split within 0..=100% or is refused with located problems.
pub fn check_admin_json(data: &[u8]) {
    let object = data.trim_ascii_start().first() == Some(&b'{');
    match parse::<SplitBody>(data, SPLIT_EXAMPLE) {
        Ok(b) => {
            assert!(object, "accepted a body that is not an object: {data:?}");
            if let Ok(bp) = b.new_share.0 {
                assert!(bp <= 10_000, "share of {bp} bp accepted");
            }
        }
        Err(r) => json_error(r, 400),
    }
    match expect_empty(data) {
        Ok(()) => {
            let blank = data.iter().all(u8::is_ascii_whitespace);
            let empty_object = serde_json::from_slice::<serde_json::Value>(data)
                .is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()));
            assert!(blank || empty_object, "accepted as empty: {data:?}");
        }
        Err(r) => json_error(r, 400),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(bp) = parse_percent(text) {
            assert!(bp <= 10_000, "{text:?} parsed as {bp} bp");
        }
    }
    if let Ok(state) = serde_json::from_slice::<StateFile>(data) {
        let again = serde_json::to_vec(&state).expect("a state file serialises");
        let back: StateFile = serde_json::from_slice(&again).expect("and parses back");
        assert_eq!(back, state, "state file round trip");
        let demo = Source {
            path: PathBuf::from(CONFIG_DIR).join("demo.toml"),
            text: DEMO_TOML.to_string(),
        };
        compiled(&demo, Some(&state.overrides));
    }
}

fn json_error(r: crate::admin::AdminResponse, status: u16) {
    use futures_util::FutureExt as _;
    use http_body_util::BodyExt as _;
    assert_eq!(r.status().as_u16(), status);
    let body = r
        .into_body()
        .collect()
        .now_or_never()
        .expect("a full body is ready")
        .expect("infallible")
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("error bodies are JSON");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert_eq!(v["status"].as_u64(), Some(u64::from(status)), "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds must reach the interesting branches: the real config compiles (with its real
    /// plan) and the real plan loads under the default options.
    #[test]
    fn real_inputs_reach_the_accepting_branches() {
        let demo = Source {
            path: Path::new(CONFIG_DIR).join("fuzz.toml"),
            text: DEMO_TOML.to_string(),
        };
        assert!(safe_to_compile(&demo.text));
        let metrics = Metrics::new();
        let input = CompileInput {
            source: &demo,
            generation: 1,
            previous: None,
            metrics: &metrics,
        };
        if let Err(e) = build(None, input) {
            panic!("{e}");
        }
        let loaded = load_table(&table_config(0), REDIRECTS_CSV.as_bytes());
        assert!(loaded.is_ok_and(|l| l.table.len() > 300));
        assert_eq!(lookup_tables().len(), 5);
    }

    #[test]
    fn escapes_that_could_spell_a_device_are_not_compiled() {
        assert!(!safe_to_compile("key_file = \"/dev/zero\""));
        assert!(!safe_to_compile("key_file = \"/\\u0064ev/zero\""));
        assert!(!safe_to_compile("key_file = \"\"\"/de\\\n  v/zero\"\"\""));
        assert!(safe_to_compile("name = \"a \\\"quoted\\\" \\\\ name\"\n"));
    }
}
