//! `cutover redirects check | missed`: the redirect plan before cutover night (validation, probe of
//! every target) and the old URLs a running proxy found without a home.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use cutover::config;

/// `cutover redirects ...`.
#[derive(Subcommand)]
pub enum RedirectsCommand {
    /// Validate a redirect plan (CSV) and report what it contains, before cutover night.
    ///
    /// Reports entries, chains collapsed (and the longest), loops, conflicting duplicates,
    /// self-redirects and targets outside allowed_hosts, each with its line. With --probe,
    /// requests every target from the new storefront and lists those that do not answer 2xx:
    /// the pre-cutover audit. Exits 1 when the plan has errors or targets fail the probe.
    Check {
        /// The CSV file: a header row with old_url,new_url[,status], as a spreadsheet exports it.
        file: PathBuf,
        /// Take the matching options (query mode, allowed hosts...) from the [[redirects]] entry
        /// of this config whose file is FILE.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Base URL of the new storefront, e.g. https://new.shop.example: every target is requested.
        #[arg(long)]
        probe: Option<String>,
        /// Probe requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Print the old URLs that had no redirect and got a 404 from the new storefront, most
    /// frequent first (from a running proxy's admin listener).
    ///
    /// `--csv` prints rows ready to paste into the plan: fill in new_url and reload.
    Missed {
        /// Admin listener address of the running proxy.
        #[arg(long, default_value = "127.0.0.1:9901", env = "CUTOVER_ADMIN")]
        admin: String,
        /// CSV (old_url,new_url,status,count) instead of the table, ready for the plan.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// The admin API's JSON instead of the table (for scripts).
        #[arg(long)]
        json: bool,
    },
}

/// The `[[redirects]]` entry of `config` whose file is `file`.
fn table_config(config: &Path, file: &Path) -> anyhow::Result<cutover::redirects::TableConfig> {
    let source = config::Source::read(config)?;
    let raw = source.parse()?;
    let want =
        std::fs::canonicalize(file).with_context(|| format!("reading {}", file.display()))?;
    let base = source.base_dir();
    raw.redirects
        .into_iter()
        .find(|t| std::fs::canonicalize(base.join(&t.file)).is_ok_and(|p| p == want))
        .with_context(|| {
            format!(
                "{} has no [[redirects]] entry for {}",
                config.display(),
                file.display()
            )
        })
}

/// Runs `cutover redirects ...`.
pub async fn run(cmd: RedirectsCommand) -> anyhow::Result<bool> {
    match cmd {
        RedirectsCommand::Check {
            file,
            config,
            probe,
            concurrency,
        } => {
            let table = config.map(|c| table_config(&c, &file)).transpose()?;
            let mut out = std::io::stdout();
            let ok = cutover::redirects::check::run(
                &file,
                table.as_ref(),
                probe.as_deref(),
                concurrency.max(1),
                &mut out,
            )
            .await
            .with_context(|| format!("checking {}", file.display()))?;
            Ok(ok)
        }
        RedirectsCommand::Missed { admin, csv, json } => {
            let path = if csv {
                "/redirects/missed.csv"
            } else {
                "/redirects/missed"
            };
            let body = cutover::admin::client::get(&admin, path)
                .await
                .with_context(|| {
                    format!("asking the admin listener at {admin} (is cutover running? --admin)")
                })?;
            if csv || json {
                println!("{}", body.trim_end());
            } else {
                print!("{}", missed_table(&body)?);
            }
            Ok(true)
        }
    }
}

/// `cutover redirects missed` for people: most frequent first, counts right-aligned. URLs came
/// from requests, so control characters are shown escaped, never sent to the terminal.
fn missed_table(json: &str) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let v: serde_json::Value =
        serde_json::from_str(json).context("reading the admin API's answer")?;
    let entries = v["entries"].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    if entries.is_empty() {
        out.push_str("no missed redirects: every old URL that reached new had a home\n");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "old URLs with no redirect that got a 404 from new (most frequent first; `--csv` pastes into the plan)"
    );
    let _ = writeln!(out, "{:>8}  OLD URL", "HITS");
    for e in entries {
        let host = e["host"].as_str().unwrap_or("");
        let path = e["path"].as_str().unwrap_or("");
        let url: String = format!("{host}{path}").escape_default().collect();
        let count = e["count"].as_u64().unwrap_or(0);
        let at_least = e["count_at_least"].as_u64().unwrap_or(count);
        let hits = if at_least == count {
            count.to_string()
        } else {
            format!("~{count}")
        };
        let _ = writeln!(out, "{hits:>8}  {url}");
    }
    if let Some(skipped) = v["skipped"].as_u64().filter(|s| *s > 0) {
        let _ = writeln!(
            out,
            "({skipped} misses were not counted: their counter was busy)"
        );
    }
    Ok(out)
}
