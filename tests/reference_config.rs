//! `config/cutover.example.toml` is the configuration reference; these tests hold it to the config
//! structs so it cannot drift (issue 23):
//!
//! 1. it passes `cutover check` as written (the built binary);
//! 2. uncommented (every `# key = value` and `# [table]` line made live), it still parses into
//!    the raw config, whose structs all use `deny_unknown_fields`: no option it shows is unknown;
//! 3. every option the structs accept appears in it. The field lists come from serde itself: a
//!    probe key is inserted into each table of the uncommented file and the derived
//!    `Deserialize` answers "unknown field `probe`, expected one of ...", naming every field of
//!    that struct (renames applied). A struct whose table is missing entirely is caught one level
//!    up, where its key is missing from the parent's list;
//! 4. a line whose comment starts with `default` states the real default: blanking that line
//!    (spaces of the same length, so every other span stays put) leaves the parsed raw config
//!    identical (serde defaults), or, for an option whose default is applied when compiling,
//!    leaves the compiled snapshot identical.

use std::path::{Path, PathBuf};

use cutover::config::raw::RawConfig;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example() -> String {
    std::fs::read_to_string(repo().join("config/cutover.example.toml")).unwrap()
}

/// The text of a commented-out option or table header (`# key = value`, `# [table]`), if the
/// line is one; prose comments are not.
fn commented_option(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("# ")?;
    let first = rest.chars().next()?;
    if first == '[' {
        let end = rest.find(']')?;
        let name = rest[1..end].trim_start_matches('[');
        return name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
            .then_some(rest);
    }
    if !first.is_ascii_lowercase() {
        return None;
    }
    let key_end =
        rest.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))?;
    rest[key_end..]
        .trim_start()
        .starts_with('=')
        .then_some(rest)
}

/// Every commented option made live, line for line (same line numbers, same lengths but two).
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|l| match commented_option(l) {
            Some(rest) => format!("{rest}  "),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lines (index, text) whose option states its default: `key = value  # default...`.
fn default_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            !l.starts_with('#')
                && l.contains(" = ")
                && l.split_once(" # ")
                    .is_some_and(|(_, c)| c.trim_end() == "default" || c.starts_with("default;"))
        })
        .map(|(i, l)| (i, l.to_string()))
        .collect()
}

fn blank_line(text: &str, index: usize) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            if i == index {
                " ".repeat(l.len())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_passes_check_as_written() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["check", "--config", "config/cutover.example.toml"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_option_the_example_shows_is_one_cutover_accepts() {
    let text = uncomment(&example());
    if let Err(e) = toml::from_str::<RawConfig>(&text) {
        panic!("config/cutover.example.toml, uncommented: {e}");
    }
}

/// The fields serde expects, from its "unknown field" error (`expected one of `a`, `b``,
/// `expected `a` or `b``, `expected `a``); `None` when the table is not a struct (a map).
fn expected_fields(message: &str) -> Option<Vec<String>> {
    let at = message.find("unknown field `zz_probe`")?;
    let rest = &message[at..];
    let list = &rest[rest.find("expected")?..];
    let list = list.lines().next().unwrap_or(list);
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Every table of `value` with its path (array elements share their array's path).
fn tables<'a>(value: &'a toml::Value, path: &str, out: &mut Vec<(String, &'a toml::Table)>) {
    match value {
        toml::Value::Table(t) => {
            out.push((path.to_string(), t));
            for (k, v) in t {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                tables(v, &p, out);
            }
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                tables(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Replaces the table at `path` (as [`tables`] names it) in `root` with itself plus a probe key.
fn with_probe(root: &toml::Value, target: &str) -> toml::Value {
    fn walk(v: &mut toml::Value, path: &str, target: &str) {
        match v {
            toml::Value::Table(t) => {
                if path == target {
                    t.insert("zz_probe".into(), toml::Value::Boolean(true));
                    return;
                }
                for (k, child) in t.iter_mut() {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(child, &p, target);
                }
            }
            toml::Value::Array(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    walk(child, &format!("{path}[{i}]"), target);
                }
            }
            _ => {}
        }
    }
    let mut copy = root.clone();
    walk(&mut copy, "", target);
    copy
}

#[test]
fn every_option_cutover_accepts_is_in_the_example() {
    let text = uncomment(&example());
    let root: toml::Value = toml::from_str(&text).unwrap();
    let mut all = Vec::new();
    tables(&root, "", &mut all);
    // Structs (by their field list) -> the keys the example gives them, over every instance
    // (every [[route]], both storefronts...).
    let mut structs: std::collections::BTreeMap<Vec<String>, (Vec<String>, Vec<String>)> =
        Default::default();
    let mut maps = Vec::new();
    for (path, table) in &all {
        let probed = toml::to_string(&with_probe(&root, path)).unwrap();
        let err = match toml::from_str::<RawConfig>(&probed) {
            Ok(_) => {
                panic!("{path}: a probe key was accepted: the struct lacks deny_unknown_fields")
            }
            Err(e) => e.to_string(),
        };
        match expected_fields(&err) {
            Some(mut fields) => {
                fields.sort();
                let entry = structs.entry(fields).or_default();
                entry.0.push(path.clone());
                entry.1.extend(table.keys().cloned());
            }
            None => maps.push((path.clone(), err)),
        }
    }
    let mut missing = Vec::new();
    for (fields, (paths, keys)) in &structs {
        for f in fields {
            if !keys.contains(f) {
                missing.push(format!("{f} (in {})", paths.join(", ")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "options cutover accepts that config/cutover.example.toml does not show \
         (add them, commented if they need files or secrets):\n  {}",
        missing.join("\n  ")
    );
    // The walk reached the structs it must: the file, listener, TLS, storefronts, split,
    // cohort, ..., rollout's gates and source, fleet's tls and auth.
    assert!(
        structs.len() >= 25,
        "only {} structs probed; maps: {maps:?}",
        structs.len()
    );
    let map_paths: Vec<&str> = maps.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        map_paths,
        ["rollout.gates.error_ratio.routes", "storefront"],
        "tables that are not structs: {maps:?}"
    );
}

/// The compiled snapshot as text, with what differs between two files of the same meaning
/// masked: where they live and when they were loaded.
fn compiled(text: &str, dir: &Path) -> String {
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).unwrap();
    let metrics = cutover::metrics::Metrics::new();
    let (_, snap) = cutover::config::load_file(&path, 1, None, &metrics)
        .unwrap_or_else(|e| panic!("the example no longer compiles: {e}"));
    let dump = format!("{snap:#?}");
    // The redirect tables' hash index is seeded at random; their options are serde defaults,
    // checked on the raw config.
    let mut in_redirects = false;
    dump.lines()
        .filter(|l| {
            if *l == "    redirects: [" {
                in_redirects = true;
            } else if in_redirects && *l == "    ]," {
                in_redirects = false;
                return false;
            }
            !in_redirects
                && !l.contains("loaded_at")
                && !l.contains("tv_sec")
                && !l.contains("tv_nsec")
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace(&dir.display().to_string(), "<dir>")
}

#[test]
fn every_stated_default_is_the_real_default() {
    let text = example();
    let live = uncomment(&text);
    let raw_dump = |t: &str| format!("{:?}", toml::from_str::<RawConfig>(t).unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("config/redirects.csv"),
        dir.path().join("redirects.csv"),
    )
    .unwrap();
    let whole = compiled(&text, dir.path());
    let whole_raw = raw_dump(&live);
    let lines = default_lines(&live);
    assert!(lines.len() >= 60, "only {} default lines", lines.len());
    let mut wrong = Vec::new();
    for (i, line) in &lines {
        if raw_dump(&blank_line(&live, *i)) == whole_raw {
            continue; // serde's default: the parsed file is the same without the line
        }
        let commented = text.lines().nth(*i).unwrap().starts_with('#');
        if !commented && compiled(&blank_line(&text, *i), dir.path()) == whole {
            continue; // compile's default: the snapshot is the same without the line
        }
        wrong.push(format!("config/cutover.example.toml:{}: {line}", i + 1));
    }
    assert!(
        wrong.is_empty(),
        "these lines say `default` but their value is not the default (removing them changes \
         the configuration):\n  {}",
        wrong.join("\n  ")
    );
}

/// The checks above can fail: a stated default that is wrong, and an option the example lacks.
#[test]
fn the_checks_catch_a_wrong_default_and_a_missing_option() {
    let text = example().replace(
        "max_headers = 100                  # default",
        "max_headers = 99                   # default",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("config/redirects.csv"),
        dir.path().join("redirects.csv"),
    )
    .unwrap();
    let i = text
        .lines()
        .position(|l| l.starts_with("max_headers = 99"))
        .expect("the example sets max_headers");
    assert_ne!(
        compiled(&blank_line(&text, i), dir.path()),
        compiled(&text, dir.path()),
        "a wrong default would go unnoticed"
    );
    let probed = toml::to_string(&with_probe(
        &toml::from_str(&uncomment(&example())).unwrap(),
        "limits",
    ))
    .unwrap();
    let fields = expected_fields(
        &toml::from_str::<RawConfig>(&probed)
            .unwrap_err()
            .to_string(),
    )
    .expect("serde names the fields");
    assert!(fields.contains(&"drain_delay".to_string()), "{fields:?}");
}

/// docs/https.md explains every option of the TLS tables: `[listener.tls]` and what it holds
/// (`certificates`, `hsts`) and `[storefront.NAME.tls]`, as the uncommented example has them.
#[test]
fn every_tls_option_is_explained_in_https_md() {
    let root: toml::Value = toml::from_str(&uncomment(&example())).unwrap();
    let mut all = Vec::new();
    tables(&root, "", &mut all);
    let page = std::fs::read_to_string(repo().join("docs/https.md")).unwrap();
    let mut keys = std::collections::BTreeSet::new();
    for (path, table) in &all {
        let tls = path.starts_with("listener[") && path.contains(".tls")
            || path.starts_with("storefront.") && path.ends_with(".tls");
        if tls {
            keys.extend(table.keys().cloned());
        }
    }
    assert!(keys.len() >= 15, "{keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| {
            !page.contains(&format!("`{k}`"))
                && !page.contains(&format!("{k} ="))
                && !page.contains(&format!(".{k}]"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "TLS options docs/https.md does not explain: {missing:?}"
    );
}
