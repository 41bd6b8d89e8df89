//! `cutover shadow report | clear`: the shadow comparison of a running proxy (issue 18).

use anyhow::Context as _;
use clap::Subcommand;
use http::Method;
use serde_json::Value;

use cutover::control::paths;

use super::control::{call, print_json, resolve, QUICK};
use super::AdminArgs;

#[derive(Subcommand)]
pub enum ShadowCommand {
    /// Show the shadow comparison: requests matched, mismatched, failed and dropped, and the
    /// mismatches by kind and by route, each with its top URLs and one example.
    Report {
        #[command(flatten)]
        admin: AdminArgs,
        /// The report as CSV (kind/route, URL, hits, example), for a spreadsheet.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Clear the shadow report (an admin change; the metrics keep counting).
    Clear {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

pub async fn run(cmd: ShadowCommand) -> anyhow::Result<bool> {
    match cmd {
        ShadowCommand::Report { admin, csv } => {
            let t = resolve(&admin)?;
            let path = if csv {
                format!("{}?format=csv", paths::SHADOW)
            } else {
                paths::SHADOW.to_string()
            };
            let body = call(&t, Method::GET, &path, None, QUICK).await?;
            if csv || admin.json {
                print_json(&body);
            } else {
                let v: Value = serde_json::from_str(&body).context("reading the shadow report")?;
                print!("{}", table(&v));
            }
            Ok(true)
        }
        ShadowCommand::Clear { admin } => {
            let t = resolve(&admin)?;
            let body = call(&t, Method::POST, paths::SHADOW_CLEAR, None, QUICK).await?;
            if admin.json {
                print_json(&body);
            } else {
                println!("shadow report cleared");
            }
            Ok(true)
        }
    }
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Text that came from a request or a storefront, shown on a terminal: control characters out.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn example(out: &mut String, v: &Value) {
    if let Some(e) = v.get("example").filter(|e| !e.is_null()) {
        out.push_str(&format!(
            "    example {}: old {:?} / new {:?}\n",
            clean(s(e, "url")),
            clean(s(e, "old")),
            clean(s(e, "new"))
        ));
    }
}

/// The human table of a `GET /shadow` answer.
fn table(v: &Value) -> String {
    let mut out = String::new();
    let r = v.get("requests").cloned().unwrap_or(Value::Null);
    out.push_str(&format!(
        "requests: {} match, {} mismatch, {} error, {} dropped\n",
        n(&r, "match"),
        n(&r, "mismatch"),
        n(&r, "error"),
        n(&r, "dropped")
    ));
    let kinds = items(v, "kinds");
    if kinds.is_empty() {
        out.push_str("no mismatches\n");
    } else {
        out.push_str(&format!(
            "\n{:<16} {:>10}  top URLs\n",
            "KIND", "MISMATCHES"
        ));
        for k in kinds {
            let top: Vec<String> = items(k, "top_urls")
                .iter()
                .take(3)
                .map(|u| format!("{} ({})", clean(s(u, "url")), n(u, "hits")))
                .collect();
            out.push_str(&format!(
                "{:<16} {:>10}  {}\n",
                s(k, "kind"),
                n(k, "mismatches"),
                top.join(", ")
            ));
            example(&mut out, k);
        }
    }
    let routes = items(v, "routes");
    if !routes.is_empty() {
        out.push_str(&format!(
            "\n{:<20} {:>8} {:>10} {:>8}\n",
            "ROUTE", "MATCH", "MISMATCH", "ERROR"
        ));
        for rt in routes {
            out.push_str(&format!(
                "{:<20} {:>8} {:>10} {:>8}\n",
                clean(s(rt, "route")),
                n(rt, "matches"),
                n(rt, "mismatches"),
                n(rt, "errors")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_counts_kinds_and_routes_with_control_characters_removed() {
        let v: Value = serde_json::from_str(
            r#"{"requests":{"match":3,"mismatch":1,"error":0,"dropped":2},
                "kinds":[{"kind":"title","mismatches":1,
                  "top_urls":[{"url":"/p\u001b[31m","hits":1,"error":0}],
                  "example":{"kind":"title","url":"/p","old":"A","new":"B"}}],
                "routes":[{"route":"default","matches":3,"mismatches":1,"errors":0,
                  "kinds":[["title",1]],"top_urls":[],"example":null}]}"#,
        )
        .unwrap();
        let t = table(&v);
        assert!(
            t.starts_with("requests: 3 match, 1 mismatch, 0 error, 2 dropped\n"),
            "{t}"
        );
        assert!(t.contains("title"), "{t}");
        assert!(t.contains("/p?[31m (1)"), "{t}");
        assert!(t.contains("old \"A\" / new \"B\""), "{t}");
        assert!(t.contains("default"), "{t}");
        assert!(!t.contains('\u{1b}'), "{t}");
    }
}
