//! The binary's subcommands, one file per family; `main.rs` parses and dispatches.

use std::path::PathBuf;

pub mod allocator;
pub mod control;
pub mod inventory;
pub mod redirects;
pub mod rollout;
pub mod shadow;

/// How the control commands find the running proxy: like the server does.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The proxy's config file: the admin address and token are read from its [admin] section.
    /// Default: $CUTOVER_CONFIG, else config/demo.toml when present (next to `cutover demo`),
    /// else 127.0.0.1:9901 without a token.
    #[arg(short, long, env = "CUTOVER_CONFIG")]
    config: Option<PathBuf>,
    /// Admin listener address (IP:port), instead of the config's.
    #[arg(long, env = "CUTOVER_ADMIN")]
    admin: Option<String>,
    /// File holding the admin token, instead of the config's token/token_file/token_env.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Print the admin API's JSON answer instead of text (for scripts).
    #[arg(long)]
    json: bool,
}
