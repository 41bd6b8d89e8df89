//! `cutover check` (the binary): every problem reported with file:line and field, exit non-zero;
//! a valid config exits 0 with a summary.

mod support;

use support::process::check;
use support::TempConfig;

const HEAD: &str = r#"[[listener]]
address = "127.0.0.1:0"

[storefront.old]
upstream = "http://127.0.0.1:8081"

[storefront.new]
upstream = "http://127.0.0.1:8082"
"#;

/// The 1-based line of the first line containing `marker`.
fn line_of(text: &str, marker: &str) -> usize {
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("{marker} not in config"))
        + 1
}

/// Runs check on `text`; asserts failure and that each `(marker, field, words)` problem is
/// reported at the marker's line. Returns stderr.
fn assert_reported(text: &str, expected: &[(&str, &str, &str)]) -> String {
    let cfg = TempConfig::new(text);
    let (code, stdout, stderr) = check(cfg.path());
    let ok = code == 0;
    assert!(!ok, "check accepted a broken config:\n{text}\n{stdout}");
    let path = cfg.path().display().to_string();
    for (marker, field, words) in expected {
        let line = line_of(text, marker);
        let hit = stderr.lines().find(|l| {
            l.trim_start().starts_with(&format!("{path}:{line}:"))
                && l.contains(field)
                && l.contains(words)
        });
        assert!(
            hit.is_some(),
            "no problem `{field}` ({words}) at {path}:{line}:\n{stderr}"
        );
    }
    let n = expected.len();
    let plural = if n == 1 { "" } else { "s" };
    assert!(
        stderr.contains(&format!("{n} problem{plural} in configuration")),
        "exactly the expected problems, no knock-on ones:\n{stderr}"
    );
    stderr
}

#[test]
fn unknown_field_is_reported_with_its_line() {
    // Unknown fields are TOML/serde errors: reported one at a time, each with its line.
    let in_storefront = format!("{HEAD}timeout = \"5s\"\n\n[split]\nnew_share = 10\n");
    let in_limits =
        format!("{HEAD}\n[split]\nnew_share = 10\n\n[limits]\nheader_timeout = \"1s\"\n");
    let unknown_section = format!("{HEAD}\n[split]\nnew_share = 10\n\n[admn]\naddress = \"off\"\n");
    for (text, marker, words) in [
        (&in_storefront, "timeout = ", "unknown field `timeout`"),
        (
            &in_limits,
            "header_timeout",
            "unknown field `header_timeout`",
        ),
        (&unknown_section, "[admn]", "unknown field `admn`"),
    ] {
        assert_reported(text, &[(marker, "", words)]);
    }
}

#[test]
fn unknown_storefront_in_a_route_is_reported_with_its_line() {
    let text = format!(
        "{HEAD}\n[split]\nnew_share = 10\n\n[[route]]\npath_prefix = \"/blog\"\nto = \"old\"\n\n\
         [[route]]\npath_prefix = \"/api\"\nto = \"newer\"\n"
    );
    assert_reported(
        &text,
        &[(
            "to = \"newer\"",
            "route[1].to",
            "unknown storefront `newer`",
        )],
    );
}

#[test]
fn share_out_of_range_is_reported_with_its_line() {
    for share in ["150", "-1", "\"100.5%\"", "\"12.345\""] {
        let text = format!("{HEAD}\n[split]\nnew_share = {share}\n");
        assert_reported(&text, &[("new_share", "split.new_share", "")]);
    }
}

#[test]
fn bad_upstream_urls_are_reported_with_their_lines() {
    for url in [
        "ftp://127.0.0.1:8081",
        "127.0.0.1:8081",
        "not a url",
        "http://",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:8o8o",
        "http://:8080",
        "http://127.0.0.1:8081/shop",
    ] {
        let text = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[storefront.old]\nupstream = \"http://127.0.0.1:8081\"\n\n\
             [storefront.new]\nupstream = \"{url}\"\n\n[split]\nnew_share = 10\n\n[[route]]\npath = \"/n\"\nto = \"new\"\n"
        );
        let marker = format!("upstream = \"{url}\"");
        assert_reported(&text, &[(&marker, "storefront.new.upstream", "")]);
    }
}

#[test]
fn every_problem_is_listed_at_once() {
    let text = r#"[[listener]]
address = "127.0.0.1:0"

[storefront.old]
upstream = "gopher://old.shop"

[storefront.new]
upstream = "http://127.0.0.1:8082"

[split]
new_share = 101

[[route]]
path_prefix = "/blog"
to = "blog-platform"
"#;
    assert_reported(
        text,
        &[
            ("gopher://", "storefront.old.upstream", "http://"),
            ("new_share", "split.new_share", "between 0 and 100"),
            ("blog-platform", "route[0].to", "unknown storefront"),
        ],
    );
}

#[test]
fn a_valid_config_exits_zero_with_a_summary() {
    let text = format!(
        "{HEAD}\n[split]\nnew_share = 12.5\n\n[cohort]\nkey = \"k\"\n\n[[route]]\nname = \"blog\"\npath_prefix = \"/blog\"\nto = \"old\"\n"
    );
    let cfg = TempConfig::new(&text);
    let (code, stdout, stderr) = check(cfg.path());
    let ok = code == 0;
    assert!(ok, "valid config rejected: {stderr}");
    assert!(stdout.contains("configuration ok"), "{stdout}");
    assert!(stdout.contains("12.50%"), "{stdout}");
    assert!(stdout.contains("blog"), "{stdout}");
    // And the shipped configs pass too.
    for shipped in ["config/demo.toml", "config/cutover.example.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(shipped);
        if path.exists() {
            let (code, _, stderr) = check(&path);
            let ok = code == 0;
            assert!(ok, "{shipped} does not pass check: {stderr}");
        }
    }
}

#[test]
fn pool_sizing_out_of_range_is_reported_with_its_line() {
    let text = format!(
        "{HEAD}pool_idle_ceiling = 0\npool_max_idle = 100000\npool_peak_window = \"0s\"\n\n[split]\nnew_share = 10\n"
    );
    assert_reported(
        &text,
        &[
            (
                "pool_idle_ceiling = 0",
                "storefront.new.pool_idle_ceiling",
                "between 1 and 65536",
            ),
            (
                "pool_max_idle = 100000",
                "storefront.new.pool_max_idle",
                "between 0 and 65536",
            ),
            (
                "pool_peak_window",
                "storefront.new.pool_peak_window",
                "greater than zero",
            ),
        ],
    );
}
