//! `cutover inventory coverage | import-sitemap`: the running proxy's URL inventory from the
//! command line (admin API `GET /inventory/coverage`, `POST /inventory/import-sitemap`).

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use http::Method;
use serde::Deserialize;

use cutover::control::inventory::{ImportAnswer, ImportBody};
use cutover::control::paths;
use cutover::inventory::probe::{self, ProbeOptions};

use super::control::{call, print_json, resolve};
use super::AdminArgs;

/// `cutover inventory ...`.
#[derive(clap::Subcommand)]
pub enum InventoryCommand {
    /// Coverage of the running proxy's URL inventory by the plan in force: the share of
    /// old-store hits and of URLs with a home on the new store, and the uncovered URLs by hits
    /// (crawler hits apart).
    Coverage {
        /// Also ask the new storefront for every plan target and same path (bounded
        /// concurrency, progress on stderr): a target that does not answer 2xx is not coverage,
        /// an uncovered URL whose same path answers 2xx is.
        #[arg(long)]
        probe: bool,
        /// Write every URL as `old_url,hits,crawler_hits,verdict,new_url` to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Import a sitemap or sitemap index (file or http(s) URL, gzip too) of the old store into
    /// the running inventory; a malformed file imports nothing.
    ImportSitemap {
        /// sitemap.xml, sitemap.xml.gz, or an http(s) URL.
        source: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// A coverage pass over 10^5 URLs and a sitemap fetch can take a while.
const SLOW: Duration = Duration::from_secs(120);
/// Uncovered URLs listed in the human table.
const SHOWN: usize = 25;

#[derive(Debug, Deserialize)]
struct Row {
    old_url: String,
    hits: u64,
    crawler_hits: u64,
    verdict: String,
    new_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    generation: u64,
    new_storefront: String,
    rows: Vec<Row>,
}

/// Verdicts that are not coverage: no home on new (`fallback_served`: old's page served by the
/// 404 fallback, lost once old goes).
fn uncovered(verdict: &str) -> bool {
    matches!(verdict, "uncovered" | "fallback_served")
}

/// What `--probe` found: targets that do not answer 2xx, and uncovered paths that do.
struct Probed {
    failed: Vec<(String, String)>,
}

fn path_of(url: &str) -> &str {
    for scheme in ["https://", "http://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    url
}

/// `cutover inventory coverage [--probe] [--csv FILE]`.
pub async fn coverage(
    probe_new: bool,
    csv: Option<PathBuf>,
    args: AdminArgs,
) -> anyhow::Result<bool> {
    let t = resolve(&args)?;
    let body = call(&t, Method::GET, paths::INVENTORY_COVERAGE, None, SLOW).await?;
    if args.json && !probe_new && csv.is_none() {
        print_json(&body);
        return Ok(true);
    }
    let mut a: Answer = serde_json::from_str(&body).context("reading the coverage answer")?;
    let probed = if probe_new {
        Some(run_probe(&mut a).await?)
    } else {
        None
    };
    if let Some(path) = &csv {
        write_csv(path, &a.rows)?;
    }
    print_report(&a, probed.as_ref(), csv.as_deref());
    Ok(true)
}

/// Asks the new storefront for every promised URL (plan targets, same paths) and for the same
/// path of every uncovered URL; verdicts are corrected with what it answered.
async fn run_probe(a: &mut Answer) -> anyhow::Result<Probed> {
    let promised: HashSet<String> = a.rows.iter().filter_map(|r| r.new_url.clone()).collect();
    let mut seen = HashSet::new();
    let mut urls = Vec::new();
    for r in &a.rows {
        let u = match (&r.new_url, r.verdict.as_str()) {
            (Some(n), _) => n.clone(),
            (None, v) if uncovered(v) => path_of(&r.old_url).to_string(),
            _ => continue,
        };
        if seen.insert(u.clone()) {
            urls.push(u);
        }
    }
    let progress = |done: usize, total: usize| {
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\rprobing the new storefront: {done}/{total}");
        if done == total {
            let _ = writeln!(e);
        }
    };
    let report = probe::probe(&a.new_storefront, &urls, ProbeOptions::default(), &progress)
        .await
        .with_context(|| format!("probing the new storefront at {}", a.new_storefront))?;
    let failed: Vec<(String, String)> = report
        .failures
        .iter()
        .map(|f| (f.url.clone(), f.outcome.to_string()))
        .collect();
    let bad: HashSet<&str> = failed.iter().map(|(u, _)| u.as_str()).collect();
    for r in &mut a.rows {
        match (r.verdict.as_str(), &r.new_url) {
            ("redirected" | "same_path", Some(n)) if bad.contains(n.as_str()) => {
                r.verdict = "uncovered".into();
            }
            (v, None) if uncovered(v) && !bad.contains(path_of(&r.old_url)) => {
                r.verdict = "same_path".into();
                r.new_url = Some(path_of(&r.old_url).to_string());
            }
            _ => {}
        }
    }
    // Only promised targets that fail are news; an uncovered path that 404s is expected.
    let failed = failed
        .into_iter()
        .filter(|(u, _)| promised.contains(u))
        .collect();
    Ok(Probed { failed })
}

fn write_csv(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = csv::Writer::from_writer(file);
    w.write_record(["old_url", "hits", "crawler_hits", "verdict", "new_url"])?;
    for r in rows {
        w.write_record([
            r.old_url.as_str(),
            &r.hits.to_string(),
            &r.crawler_hits.to_string(),
            &r.verdict,
            r.new_url.as_deref().unwrap_or(""),
        ])?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "n/a (no hits yet)".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn print_report(a: &Answer, probed: Option<&Probed>, csv: Option<&Path>) {
    let covered = |r: &&Row| !uncovered(&r.verdict);
    let hits: u64 = a.rows.iter().map(|r| r.hits).sum();
    let covered_hits: u64 = a.rows.iter().filter(covered).map(|r| r.hits).sum();
    let covered_urls = a.rows.iter().filter(covered).count();
    let crawler: u64 = a.rows.iter().map(|r| r.crawler_hits).sum();
    let lost: Vec<&Row> = a.rows.iter().filter(|r| uncovered(&r.verdict)).collect();
    let uncovered_crawler: u64 = lost.iter().map(|r| r.crawler_hits).sum();
    println!(
        "URL inventory coverage (generation {}{})",
        a.generation,
        if probed.is_some() { ", probed" } else { "" }
    );
    println!(
        "  old-store hits covered: {} ({covered_hits} of {hits})",
        pct(covered_hits, hits)
    );
    println!(
        "  URLs covered:           {} ({covered_urls} of {})",
        pct(covered_urls as u64, a.rows.len() as u64),
        a.rows.len()
    );
    println!("  crawler hits on uncovered URLs: {uncovered_crawler} of {crawler}");
    let count = |v: &str| a.rows.iter().filter(|r| r.verdict == v).count();
    // `fallback_served` only once the 404 fallback served one: most stores never turn it on.
    let by: Vec<String> = [
        "redirected",
        "same_path",
        "kept_on_old",
        "gone",
        "fallback_served",
        "uncovered",
    ]
    .iter()
    .filter(|v| **v != "fallback_served" || count(v) > 0)
    .map(|v| format!("{v} {}", count(v)))
    .collect();
    println!("  {}", by.join(", "));
    if lost.is_empty() {
        println!("\nEvery inventoried URL has a home on the new store.");
    } else {
        println!("\nUncovered URLs by hits:");
        println!("  {:>8} {:>8}  OLD URL", "HITS", "CRAWLER");
        for r in lost.iter().take(SHOWN) {
            let mark = if r.verdict == "fallback_served" {
                "  (fallback)"
            } else {
                ""
            };
            println!("  {:>8} {:>8}  {}{mark}", r.hits, r.crawler_hits, r.old_url);
        }
        if lost.len() > SHOWN {
            println!(
                "  ... and {} more (--csv FILE lists every URL)",
                lost.len() - SHOWN
            );
        }
        if count("fallback_served") > 0 {
            println!("  (fallback): new answered 404 and the 404 fallback served old's page");
        }
    }
    if let Some(p) = probed {
        if p.failed.is_empty() {
            println!(
                "\nEvery plan target and same-path URL answered 2xx on {}.",
                a.new_storefront
            );
        } else {
            println!(
                "\nNot answering 2xx on {} (not coverage):",
                a.new_storefront
            );
            for (u, why) in &p.failed {
                println!("  {u}: {why}");
            }
        }
    }
    if let Some(path) = csv {
        println!(
            "\nWrote {} (old_url,hits,crawler_hits,verdict,new_url).",
            path.display()
        );
    }
}

/// `cutover inventory import-sitemap FILE_OR_URL`: a local file is sent as an absolute path (the
/// proxy reads it: same machine), a URL as it is.
pub async fn import_sitemap(source: &str, args: AdminArgs) -> anyhow::Result<bool> {
    let source = if source.starts_with("http://") || source.starts_with("https://") {
        source.to_string()
    } else {
        std::path::absolute(source)
            .with_context(|| format!("resolving {source}"))?
            .display()
            .to_string()
    };
    let t = resolve(&args)?;
    let body = serde_json::to_string(&ImportBody { source })?;
    let answer = call(
        &t,
        Method::POST,
        paths::INVENTORY_IMPORT_SITEMAP,
        Some(body),
        SLOW,
    )
    .await?;
    if args.json {
        print_json(&answer);
        return Ok(true);
    }
    let a: ImportAnswer = serde_json::from_str(&answer).context("reading the import answer")?;
    println!(
        "imported {} URLs from the sitemap ({} new); the inventory holds {} URLs",
        a.urls, a.added, a.inventory_urls
    );
    Ok(true)
}
