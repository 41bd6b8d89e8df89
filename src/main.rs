//! The `cutover` command line: the only place that uses `anyhow` and sets up logging.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use cutover::config::{self, Summary};
use cutover::demo::{self, Flavor};

#[derive(Parser)]
#[command(
    name = "cutover",
    version,
    about = "Reverse proxy for a zero-downtime e-commerce platform migration",
    long_about = "cutover stands in front of the old and the new storefront during a platform \
migration. It routes every request to one of them (by rule, or by a sticky percentage of \
shoppers), serves the migration's redirect table, and exports metrics comparing the two sides. \
Routing, the share and the redirect table change live: edit the config file, or send SIGHUP.",
    after_help = "Start here:\n  cutover demo                          two demo stores + the proxy on 127.0.0.1:8080\n  \
cutover check --config cutover.toml   validate a config, print what it will do\n  \
cutover serve --config cutover.toml   run it\n\nEvery subcommand has its own --help."
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
    /// Start two demo storefronts and the proxy in front of them.
    ///
    /// Uses config/demo.toml (or the copy built into the binary): the old store on
    /// 127.0.0.1:8081, the new one on 127.0.0.1:8082, the proxy on 127.0.0.1:8080 with 10% of
    /// shoppers on new. Open the proxy in a browser, then try ?cutover=new to pin yourself to new.
    Demo {
        /// Use this config instead of config/demo.toml; its storefronts on 127.0.0.1 are started as demo stores.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log filter `{filter}`"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

fn check(path: &Path) -> ExitCode {
    match config::load_file(path, 1, None) {
        Ok((_, snap)) => {
            println!("{}: configuration ok", path.display());
            print!("{}", Summary(&snap));
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

const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// The demo config: the repository's file when run from a checkout, else the built-in copy
/// written to a temporary directory so relative paths in it resolve.
fn demo_config(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let local = PathBuf::from("config/demo.toml");
    if local.exists() {
        return Ok(local);
    }
    let dir = std::env::temp_dir().join(format!("cutover-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("demo.toml");
    std::fs::write(&path, DEMO_CONFIG).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

async fn run_demo(config: Option<PathBuf>) -> anyhow::Result<bool> {
    let path = demo_config(config)?;
    let (_, snap) = config::load_file(&path, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut stores = Vec::new();
    for (id, sf) in snap.storefronts.iter().enumerate() {
        let auth = &sf.upstream.settings.authority;
        let addr: std::net::SocketAddr = match auth.as_str().parse() {
            Ok(a) if auth.host() == "127.0.0.1" => a,
            _ => continue,
        };
        let flavor = if id == snap.split.to {
            Flavor::New
        } else {
            Flavor::Old
        };
        demo::start(addr, &sf.name, flavor).await.with_context(|| {
            format!(
                "starting the demo store `{}` on {addr} (is the port in use?)",
                sf.name
            )
        })?;
        stores.push((sf.name.clone(), addr));
    }
    let app = cutover::app::start(&path).await?;
    let proxy = app.addresses[0];
    println!("\ncutover demo is running ({}).", path.display());
    println!("  the shop, through cutover:  http://{proxy}/");
    for (name, addr) in &stores {
        println!("  {name:<6} store directly:     http://{addr}/");
    }
    if let Some(admin) = snap.admin {
        println!("  admin (metrics, health):    http://{admin}/");
    }
    println!(
        "\nTry:\n  curl -si http://{proxy}/ | grep -i -e x-cutover -e set-cookie      # which store, and your cohort cookie\n  \
curl -si 'http://{proxy}/?cutover=new' | grep -i x-cutover        # staff override: pin yourself to new\n  \
curl -si http://{proxy}/blog/spring-sale | grep -i x-cutover       # a rule keeps /blog on old\n  \
edit {} (split.new_share) and watch the share change live\nCtrl-C to stop.",
        path.display()
    );
    Ok(app.run_until_signal().await)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log, cli.log_format) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    if let Command::Check { config } = &cli.command {
        return check(config);
    }
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
                let app = cutover::app::start(&config).await?;
                Ok(app.run_until_signal().await)
            }
            Command::Demo { config } => run_demo(config).await,
            Command::Check { .. } => unreachable!("handled above"),
        }
    });
    // Connections still open after the grace period are cut here, with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
