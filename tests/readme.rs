//! The README's console examples, run: every `$ cutover check ...` block against the shipped
//! files and every `$ curl ... 127.0.0.1:8080` block against a live `cutover demo`. Output must
//! match line by line, except values that differ per run (cohort buckets and signatures, pin
//! times), which are masked on both sides. A README line ending in `...` matches any rest.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One `$ command` with the output the README shows for it.
#[derive(Debug)]
struct Example {
    command: String,
    output: Vec<String>,
    line: usize,
}

fn examples(readme: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut in_console = false;
    let mut current: Option<Example> = None;
    let mut continued = false;
    for (i, line) in readme.lines().enumerate() {
        if line.starts_with("```console") {
            in_console = true;
            continue;
        }
        if in_console && line.starts_with("```") {
            in_console = false;
            out.extend(current.take());
            continue;
        }
        if !in_console {
            continue;
        }
        if continued {
            let ex = current.as_mut().expect("a command");
            ex.command.push('\n');
            ex.command.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(cmd) = line.strip_prefix("$ ") {
            out.extend(current.take());
            current = Some(Example {
                command: cmd.to_string(),
                output: Vec::new(),
                line: i + 1,
            });
            continued = cmd.ends_with('\\');
        } else if let Some(ex) = current.as_mut() {
            if !line.is_empty() {
                ex.output.push(line.to_string());
            }
        }
    }
    out
}

/// Masks what differs from run to run: the cohort cookie's bucket, pin and signature.
fn mask(line: &str) -> String {
    let mut s = line.to_string();
    if let Some(i) = s.find("cutover_cohort=v1.") {
        let end = s[i..].find(';').map_or(s.len(), |e| i + e);
        s.replace_range(i..end, "cutover_cohort=<cookie>");
    }
    s
}

fn matches(want: &[String], got: &str) -> Result<(), String> {
    let got: Vec<&str> = got.lines().filter(|l| !l.is_empty()).collect();
    for (i, w) in want.iter().enumerate() {
        if w == "..." {
            return Ok(());
        }
        let g = got.get(i).copied().unwrap_or("<missing>");
        if mask(w) != mask(g) {
            return Err(format!("line {}: want {w:?}\n           got  {g:?}", i + 1));
        }
    }
    if got.len() > want.len() {
        return Err(format!("extra output: {:?}", &got[want.len()..]));
    }
    Ok(())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command` with the built binary first on PATH, in `dir`.
fn run(command: &str, dir: &Path) -> String {
    let bin_dir = Path::new(support::process::binary()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("CUTOVER_CONFIG")
        .env_remove("CUTOVER_ADMIN")
        .output()
        .expect("bash");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

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
    let mut demo = Command::new(support::process::binary())
        .arg("demo")
        .current_dir(repo())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cutover demo");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect("127.0.0.1:8080").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not listen on 8080"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for ex in curls {
        let got = run(&ex.command, scratch.path());
        if let Err(e) = matches(&ex.output, &got) {
            failures.push(format!("README.md:{}: `{}`\n{e}", ex.line, ex.command));
        }
    }
    let _ = demo.kill();
    let _ = demo.wait();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
