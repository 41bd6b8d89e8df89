//! The README's console examples, run: every `$ cutover check ...` block against the shipped
//! files and every `$ curl ... 127.0.0.1:8080` block against a live `cutover demo`. Output must
//! match line by line, except values that differ per run (cohort buckets and signatures, pin
//! times), which are masked on both sides (tests/support/docs.rs has the rules, shared with
//! tests/docs_snippets.rs, which runs docs/).

mod support;

use support::docs::{examples, matches, repo, run, Demo, Example};

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

#[test]
fn readme_check_examples_print_what_the_readme_shows() {
    let all = examples(&readme());
    let checks: Vec<&Example> = all
        .iter()
        .filter(|e| e.command.starts_with("cutover check"))
        .collect();
    assert!(
        checks.len() >= 2,
        "the README shows `cutover check` twice: {all:?}"
    );
    for ex in checks {
        // `check` logs its tables on stderr at INFO; the README shows stdout and the errors.
        let got = run(&format!("{} 2>&1 | grep -v ' INFO '", ex.command), &repo());
        if let Err(e) = matches(&ex.output, &got) {
            panic!(
                "README.md:{}: `{}`\n{e}\nfull output:\n{got}",
                ex.line, ex.command
            );
        }
    }
}

#[test]
fn readme_curl_examples_run_against_the_demo() {
    let all = examples(&readme());
    let curls: Vec<&Example> = all
        .iter()
        .filter(|e| e.command.starts_with("curl") && e.command.contains("127.0.0.1:8080"))
        .collect();
    assert!(curls.len() >= 3, "{all:?}");
    let demo = Demo::start(&std::fs::read_to_string(repo().join("config/demo.toml")).unwrap());
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for ex in curls {
        let got = run(&ex.command, scratch.path());
        if let Err(e) = matches(&ex.output, &got) {
            failures.push(format!("README.md:{}: `{}`\n{e}", ex.line, ex.command));
        }
    }
    drop(demo);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
