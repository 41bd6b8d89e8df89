//! The `cutover` command line: the only place that uses `anyhow` and sets up logging.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use cutover::config::{self, Summary};

mod cli;
use cli::inventory::InventoryCommand;
use cli::redirects::RedirectsCommand;
use cli::{control, rollout, shadow, AdminArgs};
use cutover::demo::{self, Flavor};

#[derive(Parser)]
#[command(
    name = "cutover",
    version,
    about = "Reverse proxy for a zero-downtime e-commerce platform migration",
    long_about = "cutover stands in front of the old and the new storefront during a platform \
migration. It routes every request to one of them (by rule, or by a sticky percentage of \
shoppers), serves the migration's redirect table, and exports metrics comparing the two sides. \
Routing, the share and the redirect table change live: edit the config file, send SIGHUP, or \
use `cutover shift`, `evacuate` and `reload` against the running proxy (docs/operations.md).",
    after_help = "Start here:\n  cutover demo                          two demo stores + the proxy on 127.0.0.1:8080\n  \
cutover check --config cutover.toml   validate a config, print what it will do\n  \
cutover serve --config cutover.toml   run it\n  \
cutover status / shift 25             see and change a running proxy\n\nEvery subcommand has its own --help."
)]
struct Cli {
    /// Log filter: `info`, `debug`, `cutover=debug,hyper=warn` (tracing EnvFilter syntax).
    #[arg(long, global = true, env = "CUTOVER_LOG", default_value = "info")]
    log: String,
    /// Log format: human-readable text or one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "CUTOVER_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    ///
    /// Binds every [[listener]] of the config, routes requests to the storefronts and reloads
    /// the configuration when the file (or a file it names) changes, or on SIGHUP; a change that
    /// does not validate is rejected and the running configuration stays. SIGTERM or SIGINT
    /// drains: listeners close, in-flight requests get `limits.drain_timeout` to finish.
    /// SIGUSR2 (or `cutover upgrade`) hands the listening sockets to a new process, then drains.
    /// Sockets passed by systemd socket activation (LISTEN_FDS) are used instead of binding.
    Serve {
        /// Configuration file (TOML). See config/cutover.example.toml for every option.
        #[arg(short, long, env = "CUTOVER_CONFIG")]
        config: PathBuf,
        /// Worker threads of the async runtime (default: one per CPU core). `--workers 1` runs
        /// everything on one thread, like nginx's `worker_processes 1` (see BENCHMARKS.md).
        #[arg(long, env = "CUTOVER_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
        workers: Option<u16>,
    },
    /// Validate a configuration and print what it will do, like `nginx -t`.
    ///
    /// Exits 0 when the configuration is usable, 1 otherwise, listing every problem as
    /// FILE:LINE:COLUMN: FIELD: MESSAGE.
    Check {
        /// Configuration file (TOML).
        #[arg(short, long, env = "CUTOVER_CONFIG")]
        config: PathBuf,
    },
    /// Work with the migration's redirect plan.
    #[command(subcommand)]
    Redirects(RedirectsCommand),
    // inventory:
    /// The old store's URLs seen in live traffic, and whether the plan gives each a home.
    #[command(subcommand)]
    Inventory(InventoryCommand),
    // shadow:
    /// The shadow comparison of a running proxy: `cutover shadow report`, `cutover shadow clear`.
    #[command(subcommand)]
    Shadow(shadow::ShadowCommand),
    /// Show what a running proxy has in force: generation, split, pins, storefront health,
    /// redirect tables, last reload, admin overrides.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        // fleet:
        /// List every replica of the fleet ([fleet]) with the state generation it applied,
        /// flagging those that lag.
        #[arg(long)]
        fleet: bool,
    },
    /// Set the share of shoppers on the new storefront, live: `cutover shift 25`.
    ///
    /// The change is an override of the config file, kept in its state file so it survives a
    /// restart, until the config file itself changes (then the file wins).
    Shift {
        /// Percent of shoppers on the split's `to` storefront: 25, 12.5 or 12.5% (0.01 steps).
        percent: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Release every pin to a storefront issued until now (split and staff override pins), so
    /// its shoppers are routed by their bucket again: the way off a broken storefront.
    Evacuate {
        /// Storefront name, e.g. new.
        storefront: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    // rollout: the automatic ramp of the share, judged new-vs-old.
    /// Drive the `[rollout]` plan of a running proxy: start, pause, resume, promote, abort, or
    /// show its status (step, last verdicts with both sides' values, next evaluation).
    Rollout {
        /// start, pause, resume, promote, abort or status.
        #[arg(value_enum)]
        action: rollout::Action,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Reload the config file now (what SIGHUP does), and report whether it went live.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Replace the running process without dropping a connection: it starts a new `cutover`
    /// (the binary now at its path, e.g. after a package upgrade) with its listening sockets,
    /// waits until that one serves, then drains. Same as sending it SIGUSR2.
    Upgrade {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Start two demo storefronts and the proxy in front of them.
    ///
    /// Uses config/demo.toml (or the copy built into the binary): the old store on
    /// 127.0.0.1:8081, the new one on 127.0.0.1:8082, the proxy on 127.0.0.1:8080 with 10% of
    /// shoppers on new. Open the proxy in a browser, then try ?cutover=new to pin yourself to new.
    Demo {
        /// Use this config instead of config/demo.toml; its storefronts on 127.0.0.1 are started as demo stores.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Also serve HTTPS on 127.0.0.1:8443 with a freshly generated self-signed certificate
        /// (curl -k, or trust the printed certificate file).
        #[arg(long)]
        tls: bool,
        // rollout:
        /// Also run simulated shoppers through the proxy (40 shoppers, 20 requests/s in all),
        /// so the dashboards, the inventory and the shadow report have data.
        #[arg(long)]
        traffic: bool,
        /// Run the demo's short rollout plan (config/demo-rollout.toml) on its own shoppers,
        /// with the old store as baseline: the new store is sized for a quarter of the traffic, so
        /// the rollout ramps, overloads it at 50% and rolls back on its own. Implies --traffic.
        #[arg(long)]
        rollout: bool,
    },
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log filter `{filter}`"))?;
    // Colour only for a person at a terminal: never into a pipe, a file or journald, and never
    // when NO_COLOR is set (https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

fn check(path: &Path) -> ExitCode {
    match config::load_file(path, 1, None, &cutover::metrics::Metrics::new()) {
        Ok((_, snap)) => {
            println!("{}: configuration ok", path.display());
            print!("{}", Summary(&snap));
            // rollout: the plan and the effective Prometheus queries.
            print!("{}", cutover::control::rollout::check_summary(&snap));
            for w in config::warnings(&snap) {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: configuration invalid", path.display());
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The demo's files as they were at a clean build (see build.rs: editing them in a checkout does
/// not rebuild the binary, which reads the checkout's own).
const DEMO_FILES: [(&str, &str); 2] = [
    (
        "demo.toml",
        include_str!(concat!(env!("OUT_DIR"), "/demo.toml")),
    ),
    (
        "redirects.csv",
        include_str!(concat!(env!("OUT_DIR"), "/redirects.csv")),
    ),
];

/// The demo config: the repository's file when run from a checkout, else the built-in copy
/// (with its redirect plan) written to a temporary directory so relative paths in it resolve.
fn demo_config(given: Option<PathBuf>) -> anyhow::Result<(PathBuf, Option<RemovedOnExit>)> {
    if let Some(p) = given {
        return Ok((p, None));
    }
    let local = PathBuf::from("config/demo.toml");
    if local.exists() {
        return Ok((local, None));
    }
    let dir = std::env::temp_dir().join(format!("cutover-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let guard = RemovedOnExit(dir.clone());
    for (name, text) in DEMO_FILES {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok((dir.join("demo.toml"), Some(guard)))
}

const DEMO_TLS_PREFIX: &str = "cutover-demo-tls-";

/// A demo's temporary directory (the built-in config's copy; the TLS demo's private key,
/// certificate and state file): removed when the demo ends (the TLS one also on the next start
/// when a crash left it behind).
struct RemovedOnExit(PathBuf);

impl Drop for RemovedOnExit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the directories of TLS demos whose process is gone (killed, crashed).
fn remove_stale_demo_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DEMO_TLS_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A copy of the demo config (and the files it names) in a temporary directory, with an HTTPS
/// listener on 127.0.0.1:8443 using a generated self-signed certificate.
fn demo_tls_config(path: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let source = config::Source::read(path)?;
    let raw = source.parse()?;
    for t in &raw.redirects {
        let from = source.base_dir().join(&t.file);
        let to = dir.join(&t.file);
        if to.exists() {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
    }
    // One certificate for the demo's life: an edit of the config must not change it.
    let (cert_path, key_path) = (dir.join("cutover-demo.crt"), dir.join("cutover-demo.key"));
    if !cert_path.exists() || !key_path.exists() {
        cutover::tls::generate_self_signed(dir).context("generating the demo certificate")?;
    }
    // The shipped demo gets the well-known 8443; a config on other ports (the metrics gate, a
    // second demo) gets a free one, printed when it starts.
    let default_ports = raw
        .listeners
        .first()
        .is_some_and(|l| l.get_ref().address.get_ref() == "127.0.0.1:8080");
    let https = if default_ports {
        "127.0.0.1:8443"
    } else {
        "127.0.0.1:0"
    };
    let text = format!(
        "{}\n[[listener]]\nname = \"https\"\naddress = \"{https}\"\n\
         [listener.tls]\nhsts = {{ max_age = 300 }}\n\
         [[listener.tls.certificates]]\ncert = {:?}\nkey = {:?}\n",
        source.text,
        cert_path.display().to_string(),
        key_path.display().to_string()
    );
    let out = dir.join("demo.toml");
    // Written whole and renamed, so the reloader watching it never reads half a file.
    let tmp = dir.join("demo.toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

/// The TLS demo runs from a copy: this keeps the copy following edits of the file it was made
/// from, so "edit config/demo.toml and watch" works with `--tls` too (the copy's own watcher
/// then reloads it).
fn follow_demo_edits(original: PathBuf, dir: PathBuf) {
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    tokio::spawn(async move {
        let mut seen = stamp(&original);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            let now = stamp(&original);
            if now != seen {
                seen = now;
                if let Err(e) = demo_tls_config(&original, &dir) {
                    tracing::warn!(error = %e, "the demo's edited config was not applied");
                }
            }
        }
    });
}

async fn run_demo(
    config: Option<PathBuf>,
    tls: bool,
    traffic: bool,
    rollout: bool,
) -> anyhow::Result<bool> {
    let (mut path, _builtin_dir) = demo_config(config)?;
    // rollout: the shipped plan over a copy of the config (removed on exit).
    let mut _rollout_dir = None;
    if rollout {
        let (copy, dir) = demo::rollout::prepare(&path)?;
        path = copy;
        _rollout_dir = Some(dir);
    }
    let mut _tls_dir = None;
    if tls {
        remove_stale_demo_dirs();
        let dir = std::env::temp_dir().join(format!("{DEMO_TLS_PREFIX}{}", std::process::id()));
        let guard = RemovedOnExit(dir.clone());
        let original = path.clone();
        path = demo_tls_config(&original, &dir)?;
        println!(
            "demo certificate: {} (self-signed for localhost and 127.0.0.1; removed on exit)",
            dir.join("cutover-demo.crt").display()
        );
        follow_demo_edits(original, dir);
        _tls_dir = Some(guard);
    }
    // Only the storefront addresses are needed here; `app::start` below validates and compiles
    // the whole file (and its redirect table) once.
    let source = config::Source::read(&path)?;
    let raw = source.parse()?;
    let to = raw
        .split
        .as_ref()
        .and_then(|s| s.get_ref().to.as_ref().map(|t| t.get_ref().clone()))
        .unwrap_or_else(|| "new".to_string());
    let mut stores = Vec::new();
    for (name, sf) in &raw.storefronts {
        let name = name.get_ref();
        let Ok(uri) = sf.get_ref().upstream.get_ref().parse::<http::Uri>() else {
            continue;
        };
        let addr: std::net::SocketAddr = match uri.authority().map(|a| (a.host(), a.as_str())) {
            Some(("127.0.0.1", text)) => match text.parse() {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ => continue,
        };
        let flavor = if *name == to {
            Flavor::New
        } else {
            Flavor::Old
        };
        // rollout: in the rollout demo the new store is sized for a quarter of the traffic.
        let capacity = (rollout && flavor == Flavor::New).then(|| {
            std::sync::Arc::new(demo::rollout::Capacity::new(
                demo::rollout::NEW_CAPACITY_PER_SECOND,
            ))
        });
        demo::start_with(addr, name, flavor, capacity)
            .await
            .with_context(|| {
                format!("starting the demo store `{name}` on {addr} (is the port in use?)")
            })?;
        stores.push((name.clone(), addr));
    }
    let app = cutover::app::start(&path).await?;
    let proxy = app.addresses[0];
    if let Some(https) = app.addresses.get(1).filter(|_| tls) {
        println!("  the shop over HTTPS:         https://{https}/   (curl -k, or --cacert the certificate)");
    }
    println!("\ncutover demo is running ({}).", path.display());
    // console: the page to watch and steer the migration comes first.
    if let Some(admin) = app.admin_address {
        println!("  the console (watch, steer): http://{admin}/");
    }
    println!("  the shop, through cutover:  http://{proxy}/");
    for (name, addr) in &stores {
        println!("  {name:<6} store directly:     http://{addr}/");
    }
    if let Some(admin) = app.admin_address {
        println!("  admin (metrics, health):    http://{admin}/metrics");
    }
    println!(
        "\nTry:\n  curl -si http://{proxy}/ | grep -i -e x-cutover -e set-cookie      # which store, and your cohort cookie\n  \
curl -si 'http://{proxy}/?cutover=new' | grep -i x-cutover        # staff override: pin yourself to new\n  \
curl -si http://{proxy}/help/shipping | grep -i x-cutover        # a rule keeps /help on old\n  \
cutover shift 25 && cutover status                          # 25% of shoppers on new, live\n  \
edit {} (split.new_share) and watch the share change live\nCtrl-C to stop.",
        path.display()
    );
    // rollout: shoppers (bounded: fixed number and rate), and the demo's rollout started.
    let shoppers = traffic.then(|| {
        let o = demo::traffic::TrafficOptions::default();
        println!(
            "\nshoppers: {} simulated shoppers browsing through http://{proxy}/ ({} requests/s in all)",
            o.shoppers, o.per_second
        );
        demo::traffic::Traffic::start(proxy, o)
    });
    if rollout {
        let admin = app
            .admin_address
            .context("the rollout demo needs the [admin] listener of the demo config")?;
        println!(
            "rollout: the new store serves at most {} requests/s; `cutover rollout status` shows the verdicts",
            demo::rollout::NEW_CAPACITY_PER_SECOND
        );
        demo::rollout::begin(admin).await?;
    }
    let clean = app.run_until_signal().await;
    if let Some(s) = shoppers {
        println!("shoppers: {}", s.counts().summary());
    }
    Ok(clean)
}

/// `cutover status | head` closes our stdout early; like other CLI tools, stop quietly instead
/// of printing a panic about the broken pipe.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log, cli.log_format) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    if let Command::Check { config } = &cli.command {
        return check(config);
    }
    // Sockets passed by systemd or by the process this one upgrades; taken before any thread
    // starts, since it edits the environment.
    let inherited = match &cli.command {
        Command::Serve { .. } => match cutover::handover::Inherited::from_env() {
            Ok(i) => i,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => cutover::handover::Inherited::none(),
    };
    cli::allocator::return_freed_memory_while_idle();
    // One worker: a single-threaded runtime, every task on this thread (what nginx's
    // `worker_processes 1` is); no work stealing and no cross-thread wake-ups to pay for.
    let mut builder = match &cli.command {
        Command::Serve {
            workers: Some(1), ..
        } => tokio::runtime::Builder::new_current_thread(),
        Command::Serve {
            workers: Some(n), ..
        } => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(*n));
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<bool> = runtime.block_on(async {
        match cli.command {
            Command::Serve { config, .. } => {
                let options = cutover::app::StartOptions {
                    inherited,
                    upgrade: cutover::handover::UpgradeCommand::current().ok(),
                };
                let app = cutover::app::start_with(&config, options).await?;
                app.notify_ready();
                Ok(app.run_until_signal().await)
            }
            // fleet: `--fleet` lists the replicas.
            Command::Status { admin, fleet: true } => control::status_fleet(admin).await,
            Command::Status { admin, .. } => control::status(admin).await,
            Command::Shift { percent, admin } => control::shift(&percent, admin).await,
            Command::Evacuate { storefront, admin } => control::evacuate(&storefront, admin).await,
            Command::Reload { admin } => control::reload(admin).await,
            // rollout:
            Command::Rollout { action, admin } => rollout::run(action, admin).await,
            Command::Upgrade { admin } => control::upgrade(admin).await,
            Command::Demo {
                config,
                tls,
                traffic,
                rollout,
            } => run_demo(config, tls, traffic || rollout, rollout).await,
            Command::Redirects(cmd) => cli::redirects::run(cmd).await,
            // inventory:
            Command::Inventory(InventoryCommand::Coverage { probe, csv, admin }) => {
                cli::inventory::coverage(probe, csv, admin).await
            }
            Command::Inventory(InventoryCommand::ImportSitemap { source, admin }) => {
                cli::inventory::import_sitemap(&source, admin).await
            }
            // shadow:
            Command::Shadow(cmd) => shadow::run(cmd).await,
            Command::Check { .. } => unreachable!("handled above"),
        }
    });
    // Connections still open after the grace period are cut here, with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
