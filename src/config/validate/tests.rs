use super::*;
use crate::metrics::Metrics;

const BASE: &str = r#"
[[listener]]
address = "127.0.0.1:8080"

[storefront.old]
upstream = "http://127.0.0.1:8081"

[storefront.new]
upstream = "http://127.0.0.1:8082"

[split]
new_share = 10
"#;

fn source(dir: &std::path::Path, extra: &str) -> Source {
    Source {
        path: dir.join("cutover.toml"),
        text: format!("{BASE}{extra}"),
    }
}

/// The stages divide the work as their docs say: validate sees only the text (files that do
/// not exist are not its business), the build reads them and reports each at its line.
#[test]
fn validate_reads_no_file_and_build_reports_the_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(
        dir.path(),
        "[cohort]\nkey_file = \"missing.key\"\n\n[[redirects]]\nname = \"plan\"\nfile = \"missing.csv\"\n",
    );
    let raw = src.parse().unwrap();
    let validated = validate(&raw, &src).expect("validate reads no file");
    let metrics = Metrics::new();
    let input = crate::config::CompileInput {
        source: &src,
        generation: 1,
        previous: None,
        metrics: &metrics,
    };
    let err = crate::config::build_snapshot(&raw, validated, input).unwrap_err();
    let problems = err.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.field == "cohort.key_file" && p.line == 14),
        "{problems:?}"
    );
}

/// Every problem of the text at once, sorted by line, before anything is read.
#[test]
fn validate_collects_every_problem_of_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(
        dir.path(),
        "[limits]\nmax_headers = 0\n\n[cohort]\ncookie = \"bad cookie\"\nkey_file = \"missing.key\"\n",
    );
    let raw = src.parse().unwrap();
    let Err(err) = validate(&raw, &src) else {
        panic!("a zero limit and a bad cookie name must be refused");
    };
    let fields: Vec<_> = err.problems().iter().map(|p| p.field.clone()).collect();
    assert_eq!(fields, ["limits.max_headers", "cohort.cookie"]);
}

/// A previous key equal to the current one is refused wherever the current one comes from:
/// by validate when the file holds it, by the build when a file does.
#[test]
fn a_previous_key_equal_to_the_current_one_is_refused_at_either_stage() {
    let dir = tempfile::tempdir().unwrap();
    let written = source(
        dir.path(),
        "[cohort]\nkey = \"k1\"\nprevious_keys = [\"k1\"]\n",
    );
    let raw = written.parse().unwrap();
    let Err(err) = validate(&raw, &written) else {
        panic!("a written key listed as previous must be refused by validate");
    };
    assert_eq!(err.problems()[0].field, "cohort.previous_keys[0]");

    std::fs::write(dir.path().join("current.key"), "k2\n").unwrap();
    let from_file = source(
        dir.path(),
        "[cohort]\nkey_file = \"current.key\"\nprevious_keys = [\"k2\"]\n",
    );
    let raw = from_file.parse().unwrap();
    let validated = validate(&raw, &from_file).expect("validate does not read the key file");
    let metrics = Metrics::new();
    let input = crate::config::CompileInput {
        source: &from_file,
        generation: 1,
        previous: None,
        metrics: &metrics,
    };
    let err = crate::config::build_snapshot(&raw, validated, input).unwrap_err();
    assert_eq!(err.problems()[0].field, "cohort.previous_keys[0]");
}
