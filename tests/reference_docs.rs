//! The reference pages held to the code (issue 23): a metric, an admin endpoint or a CLI command
//! without its entry fails here, and so does an entry for something that no longer exists.
//!
//! - docs/metrics.md: every `"cutover_..."` name in the library's source (outside tests) that
//!   the registry exports, against the page's table rows; and the label names of every series a
//!   live demo exports, against the labels the row lists.
//! - docs/admin-api.md: every path of src/control/paths.rs (with the method its doc comment
//!   states) and every route registered with a literal path, against the page's
//!   `### METHOD /path` headings; and, on a live demo, every documented path answers another
//!   method with 405 and `Allow` naming the documented one: the route table has it.
//! - docs/cli.md: clap's command tree, walked with the built binary's `help`, against the
//!   page's `### cutover ...` headings; every option a command's help lists is named in its
//!   section.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use support::docs::{repo, Demo};

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The library's source without its tests: `tests*.rs` files and everything from a file's
/// `#[cfg(test)]` on (test modules sit at the end of a file).
fn library_source() -> Vec<(String, String)> {
    let mut files = Vec::new();
    sources(&repo().join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with("tests") && !name.ends_with("_tests.rs") && name != "testkit.rs"
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let text = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            (p.display().to_string(), text)
        })
        .collect()
}

/// Names in `"cutover_..."` string literals that are not metrics: cookie and parameter names.
const NOT_METRICS: &[&str] = &["cutover_cohort", "cutover_token"];

/// Metric names the source defines: `"cutover_<name>"` literals, histogram series reduced to
/// their metric (`_bucket`, `_sum`, `_count` appear in PromQL queries).
fn metric_names_in_source() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, text) in library_source() {
        for (i, _) in text.match_indices("\"cutover_") {
            let name: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if text[i + 1 + name.len()..].starts_with('"') && !NOT_METRICS.contains(&&*name) {
                out.insert(name);
            }
        }
    }
    out
}

/// The metrics.md rows: name -> labels.
fn documented_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for line in read("docs/metrics.md").lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 {
            continue;
        }
        let Some(name) = cells[1].strip_prefix("`cutover_") else {
            continue;
        };
        let name = format!("cutover_{}", name.trim_end_matches('`'));
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty())
            .collect();
        assert!(
            out.insert(name.clone(), labels).is_none(),
            "docs/metrics.md lists {name} twice"
        );
    }
    out
}

#[test]
fn every_metric_has_its_row_in_metrics_md() {
    let defined = metric_names_in_source();
    let documented = documented_metrics();
    assert!(
        defined.len() >= 40,
        "only {} metric names found",
        defined.len()
    );
    let base = |n: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| n.strip_suffix(s).filter(|b| documented.contains_key(*b)))
            .unwrap_or(n)
            .to_string()
    };
    let missing: Vec<String> = defined
        .iter()
        .map(|n| base(n))
        .filter(|n| !documented.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics without a row in docs/metrics.md: {missing:?}"
    );
    let defined_base: BTreeSet<String> = defined.iter().map(|n| base(n)).collect();
    let stale: Vec<&String> = documented
        .keys()
        .filter(|n| !defined_base.contains(*n))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/metrics.md lists metrics the source does not define: {stale:?}"
    );
}

/// `(METHOD, /path)` headings of admin-api.md.
fn documented_endpoints() -> BTreeSet<(String, String)> {
    read("docs/admin-api.md")
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .filter_map(|h| {
            let (method, path) = h.split_once(' ')?;
            path.starts_with('/')
                .then(|| (method.to_string(), path.trim().to_string()))
        })
        .collect()
}

/// What the code registers: paths.rs constants with the method their doc comment starts
/// with, and `.get("/...")` routes with a literal path.
fn endpoints_in_source() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let paths = read("src/control/paths.rs");
    let mut method = None;
    for line in paths.lines() {
        let line = line.trim();
        if let Some(doc) = line.strip_prefix("/// `") {
            method = doc.split('`').next().map(str::to_string);
        }
        if let Some(rest) = line.strip_prefix("pub const ") {
            let path = rest.split('"').nth(1).expect("a path literal");
            let m = method.take().unwrap_or_else(|| {
                panic!("src/control/paths.rs: {rest}: the doc comment must start with `METHOD`")
            });
            out.insert((m, path.to_string()));
        }
    }
    for (file, text) in library_source() {
        for (i, _) in text.match_indices(".get(\"/") {
            let path = text[i + 6..].split('"').next().unwrap();
            // Reads of a header map or a query are not routes; routes are registered on a
            // router.
            if !file.ends_with("paths.rs") {
                out.insert(("GET".to_string(), path.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_admin_endpoint_has_its_section_in_admin_api_md() {
    let code = endpoints_in_source();
    let doc = documented_endpoints();
    assert!(
        code.len() >= 20,
        "only {} endpoints found: {code:?}",
        code.len()
    );
    let missing: Vec<_> = code.difference(&doc).collect();
    assert!(
        missing.is_empty(),
        "endpoints without a `### METHOD /path` section in docs/admin-api.md: {missing:?}"
    );
    let stale: Vec<_> = doc.difference(&code).collect();
    assert!(
        stale.is_empty(),
        "docs/admin-api.md documents endpoints the code does not register: {stale:?}"
    );
}

/// `cutover <args> --help`, stdout.
fn help(args: &[&str]) -> String {
    let out = Command::new(support::process::binary())
        .args(args)
        .arg("--help")
        .env_remove("CUTOVER_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "cutover {args:?} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subcommands a help text lists under `Commands:` (without clap's `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line == "Commands:" {
            inside = true;
        } else if inside && line.is_empty() {
            break;
        } else if inside && line.starts_with("  ") && !line.starts_with("   ") {
            let name = line.split_whitespace().next().unwrap().to_string();
            if name != "help" {
                out.push(name);
            }
        }
    }
    out
}

/// The long options a help text lists, without the global and clap's own.
fn options(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-c, ")
                .or(l.strip_prefix("-h, "))
                .unwrap_or(l);
            let l = l.strip_prefix("-V, ").unwrap_or(l);
            let opt = l.strip_prefix("--")?;
            let name: String = opt
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            (!["log", "log-format", "help", "version"].contains(&name.as_str()))
                .then(|| format!("--{name}"))
        })
        .collect()
}

/// cli.md's sections: `### cutover ...` heading -> its text.
fn cli_sections() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in read("docs/cli.md").lines() {
        if let Some(h) = line.strip_prefix("### ") {
            current = Some(h.trim().to_string());
            out.insert(h.trim().to_string(), String::new());
        } else if line.starts_with("## ") {
            current = None;
        } else if let Some(c) = &current {
            let s = out.get_mut(c).unwrap();
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

#[test]
fn every_cli_command_has_its_section_in_cli_md() {
    let sections = cli_sections();
    // Leaves of the command tree: `serve`, `redirects check`, ...
    let mut leaves = Vec::new();
    for top in subcommands(&help(&[])) {
        let subs = subcommands(&help(&[&top]));
        if subs.is_empty() {
            leaves.push(vec![top]);
        } else {
            leaves.extend(subs.into_iter().map(|s| vec![top.clone(), s]));
        }
    }
    assert!(leaves.len() >= 15, "{leaves:?}");
    let mut problems = Vec::new();
    for leaf in &leaves {
        let heading = format!("cutover {}", leaf.join(" "));
        let Some(text) = sections.get(&heading) else {
            problems.push(format!("no `### {heading}` section"));
            continue;
        };
        if !text.contains("```sh\ncutover ") && !text.contains(&format!("\n{heading}")) {
            problems.push(format!("`### {heading}` has no example"));
        }
        let args: Vec<&str> = leaf.iter().map(String::as_str).collect();
        for opt in options(&help(&args)) {
            if !text.contains(&format!("`{opt}")) {
                problems.push(format!("`### {heading}` does not name its option `{opt}`"));
            }
        }
    }
    let known: BTreeSet<String> = leaves
        .iter()
        .map(|l| format!("cutover {}", l.join(" ")))
        .collect();
    for heading in sections.keys() {
        if !known.contains(heading) {
            problems.push(format!(
                "`### {heading}` documents no command of `cutover --help`"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/cli.md:\n  {}",
        problems.join("\n  ")
    );
}

/// A raw HTTP/1.1 request to the demo's admin listener; the status and the `Allow` header.
fn admin_request(method: &str, path: &str) -> (u16, Option<String>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect("127.0.0.1:9901").unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let allow = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("allow: ")
                .map(str::to_string)
        })
        .map(|v| v.to_ascii_uppercase());
    (status, allow)
}

/// The series a demo exports after some traffic: metric name -> label names.
fn scraped_labels() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect("127.0.0.1:9901").unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    for line in body.lines().filter(|l| l.starts_with("cutover_")) {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..line.rfind('}').unwrap()]),
            None => (line.split_whitespace().next().unwrap(), ""),
        };
        let labels = out.entry(name.to_string()).or_default();
        for pair in rest.split("\",").filter(|p| !p.is_empty()) {
            let label = pair.split('=').next().unwrap().trim();
            if label != "le" {
                labels.insert(label.to_string());
            }
        }
    }
    out
}

/// On a live demo: the route table has every documented endpoint with its method, and every
/// series carries exactly the labels its row lists.
#[test]
fn a_running_demo_matches_the_admin_and_metrics_references() {
    let demo = Demo::start(&read("config/demo.toml"));
    // Traffic, so the labelled series exist.
    for path in ["/", "/catalog/gift-cards", "/nope"] {
        let _ = admin_request_to(8080, "GET", path);
    }
    let mut problems = Vec::new();
    for (method, path) in documented_endpoints() {
        let concrete = path.replace("{storefront}", "new");
        let (status, allow) = admin_request("DELETE", &concrete);
        let allowed = allow.unwrap_or_default();
        if status != 405 || !allowed.split(", ").any(|m| m == method) {
            problems.push(format!(
                "DELETE {concrete}: {status}, Allow {allowed:?}: expected 405 allowing {method}"
            ));
        }
    }
    let documented = documented_metrics();
    let scraped = scraped_labels();
    assert!(scraped.len() >= 30, "{scraped:?}");
    for (name, labels) in &scraped {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| documented.contains_key(*b)))
            .unwrap_or(name);
        match documented.get(base) {
            None => problems.push(format!(
                "{name} is exported but has no row in docs/metrics.md"
            )),
            Some(doc) if doc != labels => problems.push(format!(
                "{base}: exported with labels {labels:?}, docs/metrics.md lists {doc:?}"
            )),
            Some(_) => {}
        }
    }
    drop(demo);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn admin_request_to(port: u16, method: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-cutover-force: old\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
