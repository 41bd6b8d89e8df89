//! The documentation checked by the suite (issue 23): every TOML snippet of README.md and
//! docs/*.md passes `cutover check` (a fragment merged into config/demo.toml first), and every
//! console example of docs/*.md runs against a live `cutover demo` and prints what the page
//! shows. The rules are in docs/README.md; the mechanism is tests/support/docs.rs, shared with
//! tests/readme.rs.

mod support;

use std::path::{Path, PathBuf};

use support::docs::{examples, merge, repo, run_examples, toml_snippets, Demo, Snippet};

/// The pages: README.md and every docs/*.md, by name.
fn pages() -> Vec<(String, String)> {
    let mut out = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(repo().join("README.md")).unwrap(),
    )];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for p in docs {
        let name = format!("docs/{}", p.file_name().unwrap().to_string_lossy());
        out.push((name, std::fs::read_to_string(&p).unwrap()));
    }
    out
}

fn demo_config() -> toml::Table {
    toml::from_str(&std::fs::read_to_string(repo().join("config/demo.toml")).unwrap()).unwrap()
}

/// A directory holding what snippets may name (docs/README.md lists it): the demo's redirect
/// plan, a certificate for www.shop.example / shop.example / *.shop.example (`certs/www.crt`,
/// `certs/www.key`), the CA that signed it (`certs/ca.pem`, `certs/etcd-ca.pem`) and an etcd
/// password (`secrets/etcd-password`).
fn snippet_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("config/redirects.csv"),
        dir.path().join("redirects.csv"),
    )
    .unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = cutover::tls::testkit::TestCa::new("docs test CA");
    ca.write(&certs, "ca.pem");
    ca.write(&certs, "etcd-ca.pem");
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/etcd-password"), "docs-test\n").unwrap();
    ca.leaf(&["www.shop.example", "shop.example", "*.shop.example"])
        .write(&certs, "www");
    dir
}

/// The config a snippet stands for: itself, or config/demo.toml with it merged in.
fn config_of(snippet: &Snippet) -> Result<String, String> {
    let table: toml::Table = toml::from_str(&snippet.text).map_err(|e| e.to_string())?;
    if !snippet.fragment {
        return Ok(snippet.text.clone());
    }
    let mut base = demo_config();
    merge(&mut base, table);
    Ok(toml::to_string(&base).unwrap())
}

fn check(config: &str, dir: &Path) -> Result<(), String> {
    let path = dir.join("snippet.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(support::process::binary())
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("CUTOVER_LOG")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn every_toml_snippet_passes_check() {
    let dir = snippet_dir();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, text) in pages() {
        for s in toml_snippets(&text) {
            checked += 1;
            let result = config_of(&s).and_then(|c| check(&c, dir.path()));
            if let Err(e) = result {
                let kind = if s.fragment { "fragment" } else { "config" };
                failures.push(format!("{name}:{} ({kind}):\n{e}", s.line));
            }
        }
    }
    assert!(checked >= 8, "only {checked} TOML snippets found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The check above can fail: a misspelt option in a fragment, a fragment that is no TOML.
#[test]
fn a_bad_snippet_fails_the_check() {
    let dir = snippet_dir();
    let page = format!(
        "{}\n```toml\n[rollout]\nsteps = [1, 5]\nmin_hold = \"1m\"\nintervall = \"1m\"\n```\n",
        support::docs::FRAGMENT
    );
    let s = &toml_snippets(&page)[0];
    assert!(s.fragment);
    let err = check(&config_of(s).unwrap(), dir.path()).unwrap_err();
    assert!(err.contains("intervall"), "{err}");
    let page = format!("{}\n```toml\nsteps = [1\n```\n", support::docs::FRAGMENT);
    assert!(config_of(&toml_snippets(&page)[0]).is_err());
}

/// Each page's console examples, in order, against a fresh demo running config/demo.toml with
/// the page's fragments merged in.
#[test]
fn docs_console_examples_run_against_the_demo() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, text) in pages() {
        if name == "README.md" || examples(&text).is_empty() {
            continue; // tests/readme.rs runs the README's
        }
        let mut config = demo_config();
        for s in toml_snippets(&text).into_iter().filter(|s| s.fragment) {
            merge(&mut config, toml::from_str(&s.text).unwrap());
        }
        let demo = Demo::start(&toml::to_string(&config).unwrap());
        let scratch = Demo::scratch();
        ran += examples(&text).len();
        failures.extend(run_examples(&name, &text, scratch.path()));
        drop(demo);
    }
    assert!(ran >= 20, "only {ran} console examples in docs/");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
