//! Issue 16, "colour only on a terminal (and NO_COLOR honoured)": the piped case is in
//! first_hour.rs; here the binary runs on a real pseudo-terminal (util-linux `script`), where it
//! colours its log unless `NO_COLOR` is set (https://no-color.org).

mod support;

use std::process::Command;

use support::process::binary;

/// `cutover check` on the demo config under a pseudo-terminal: what the terminal received.
fn check_on_a_terminal(no_colour: Option<&str>) -> String {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} check --config {demo}", binary()),
        "/dev/null",
    ])
    .env_remove("NO_COLOR");
    if let Some(v) = no_colour {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().expect(
        "util-linux `script` runs a command on a pseudo-terminal (apt-get install bsdutils)",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("configuration ok"), "{text}");
    assert!(text.contains("INFO"), "the check logs its tables: {text}");
    text
}

#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    assert!(
        check_on_a_terminal(None).contains('\u{1b}'),
        "a terminal gets colour"
    );
    assert!(
        !check_on_a_terminal(Some("1")).contains('\u{1b}'),
        "NO_COLOR=1 on a terminal"
    );
    // The convention: an empty NO_COLOR does not count.
    assert!(check_on_a_terminal(Some("")).contains('\u{1b}'));
}
