//! `cutover status | shift | evacuate | reload | upgrade`: the admin API from the command line.
//!
//! The admin address and token are found the way the server finds them (the same `[admin]`
//! resolution on the same config file), so on the proxy's machine these need no flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use http::{Method, StatusCode};

use cutover::admin::client::{self, ClientError};
use cutover::config::{self, admin::DEFAULT_ADMIN};
use cutover::control::paths;
use cutover::control::status::Status;
use cutover::control::{ChangeAnswer, ReloadAnswer, UpgradeAnswer};

use super::AdminArgs;

/// Where the proxy is and how to authenticate, and where that came from (for error messages).
// shadow: pub(crate) so `cutover shadow` (src/cli/shadow.rs) calls the admin API the same way.
pub(crate) struct Target {
    address: String,
    token: Option<String>,
    from: String,
    token_from: String,
}

pub(crate) fn resolve(args: &AdminArgs) -> anyhow::Result<Target> {
    let config = args.config.clone().or_else(|| {
        let demo = PathBuf::from("config/demo.toml");
        demo.exists().then_some(demo)
    });
    let access = match &config {
        Some(path) => Some(config::admin_access(path).map_err(|e| {
            anyhow!("reading the admin settings of {}: {e}\n(pass --admin ADDR and --token-file FILE to skip the config)", path.display())
        })?),
        None => None,
    };
    let (address, from) = match (&args.admin, &access, &config) {
        (Some(a), _, _) => (a.clone(), "--admin".to_string()),
        (None, Some(acc), Some(path)) => match acc.address {
            Some(a) => (a.to_string(), path.display().to_string()),
            None => bail!(
                "{} has `[admin] address = \"off\"`: there is no admin API to talk to",
                path.display()
            ),
        },
        _ => (DEFAULT_ADMIN.to_string(), "the default".to_string()),
    };
    let (token, token_from) = match &args.token_file {
        Some(f) => (
            Some(read_token(f)?),
            format!("--token-file {}", f.display()),
        ),
        None => match (access.and_then(|a| a.token), &config) {
            (Some(t), Some(path)) => (Some(t), format!("[admin] of {}", path.display())),
            _ => (None, "nowhere (no token configured)".to_string()),
        },
    };
    Ok(Target {
        address,
        token,
        from,
        token_from,
    })
}

fn read_token(f: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(f)
        .with_context(|| format!("reading the token file {}", f.display()))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        bail!("the token file {} is empty", f.display());
    }
    Ok(t)
}

/// The `error` field of a JSON error answer, else the body.
fn message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.to_string())
}

pub(crate) async fn call(
    target: &Target,
    method: Method,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let sent = tokio::time::timeout(
        timeout,
        client::call(&target.address, method, path, target.token.as_deref(), body),
    )
    .await;
    match sent {
        Err(_) => bail!(
            "the admin listener at {} (from {}) did not answer within {timeout:?}",
            target.address,
            target.from
        ),
        Ok(Ok(body)) => Ok(body),
        Ok(Err(ClientError::Connect { source, .. })) => bail!(
            "cannot reach cutover's admin listener at {} (from {}): {source}\n\
             Is cutover running? Point at it with --config FILE (its config) or --admin ADDR.",
            target.address,
            target.from
        ),
        Ok(Err(ClientError::Status { status, body, .. })) if status == StatusCode::UNAUTHORIZED => {
            bail!(
                "the admin API at {} refused the token: {}\nThe token came from {}; check [admin] token/token_file/token_env, or pass --token-file.",
                target.address,
                message(&body),
                target.token_from
            )
        }
        Ok(Err(ClientError::Status { status, body, .. })) => {
            bail!("{} ({status})", message(&body))
        }
        Ok(Err(e)) => Err(e.into()),
    }
}

pub(crate) const QUICK: Duration = Duration::from_secs(30);

pub(crate) fn print_json(body: &str) {
    print!("{body}");
    if !body.ends_with('\n') {
        println!();
    }
}

pub async fn status(args: AdminArgs) -> anyhow::Result<bool> {
    let t = resolve(&args)?;
    let body = call(&t, Method::GET, paths::STATUS, None, QUICK).await?;
    if args.json {
        print_json(&body);
    } else {
        let s: Status = serde_json::from_str(&body).context("reading the status answer")?;
        print!("{s}");
    }
    Ok(true)
}

// fleet:
/// `cutover status --fleet`: every replica and whether it lags.
pub async fn status_fleet(args: AdminArgs) -> anyhow::Result<bool> {
    let t = resolve(&args)?;
    let body = call(&t, Method::GET, paths::FLEET, None, QUICK).await?;
    if args.json {
        print_json(&body);
        return Ok(true);
    }
    let a: cutover::control::fleet::answer::FleetAnswer =
        serde_json::from_str(&body).context("reading the fleet answer")?;
    print!("{a}");
    Ok(a.replicas.iter().all(|r| !r.flagged))
}

fn notes(a: &ChangeAnswer) {
    if !a.persisted {
        println!("WARNING: not saved in the state file; lost on restart");
    }
    for w in &a.warnings {
        println!("WARNING: {w}");
    }
    for n in &a.notes {
        println!("note: {n}");
    }
}

pub async fn shift(percent: &str, args: AdminArgs) -> anyhow::Result<bool> {
    cutover::values::parse_percent(percent)
        .map_err(|e| anyhow!("`{percent}`: {e} (e.g. cutover shift 25, cutover shift 12.5)"))?;
    let t = resolve(&args)?;
    let body = serde_json::json!({ "new_share": percent }).to_string();
    let answer = call(&t, Method::PUT, paths::SPLIT, Some(body), QUICK).await?;
    if args.json {
        print_json(&answer);
        return Ok(true);
    }
    let a: ChangeAnswer = serde_json::from_str(&answer).context("reading the answer")?;
    if a.changed {
        println!(
            "share on new: {:.2}% -> {:.2}% (generation {}), an override of the config file until it changes",
            a.previous_share, a.new_share, a.generation
        );
    } else {
        println!(
            "share on new: already {:.2}% (generation {} stays): nothing changed",
            a.new_share, a.generation
        );
    }
    notes(&a);
    Ok(true)
}

pub async fn evacuate(storefront: &str, args: AdminArgs) -> anyhow::Result<bool> {
    let t = resolve(&args)?;
    let path = paths::evacuate(storefront);
    let answer = call(&t, Method::POST, &path, None, QUICK).await?;
    if args.json {
        print_json(&answer);
        return Ok(true);
    }
    let a: ChangeAnswer = serde_json::from_str(&answer).context("reading the answer")?;
    println!(
        "evacuated {storefront}: pins to it issued until {} are released (generation {})",
        cutover::values::time::when(a.evacuated_at.unwrap_or_default(), unix_now()),
        a.generation
    );
    notes(&a);
    Ok(true)
}

pub async fn reload(args: AdminArgs) -> anyhow::Result<bool> {
    let t = resolve(&args)?;
    let answer = call(&t, Method::POST, paths::RELOAD, None, QUICK).await?;
    if args.json {
        print_json(&answer);
        return Ok(true);
    }
    let a: ReloadAnswer = serde_json::from_str(&answer).context("reading the answer")?;
    println!(
        "configuration applied: generation {}, {:.2}% on new{}",
        a.generation,
        a.new_share,
        if a.overrides {
            " (admin overrides still in force: the file did not change)"
        } else {
            ""
        }
    );
    Ok(true)
}

pub async fn upgrade(args: AdminArgs) -> anyhow::Result<bool> {
    let t = resolve(&args)?;
    let answer = call(
        &t,
        Method::POST,
        paths::UPGRADE,
        None,
        Duration::from_secs(90),
    )
    .await?;
    if args.json {
        print_json(&answer);
        return Ok(true);
    }
    let a: UpgradeAnswer = serde_json::from_str(&answer).context("reading the answer")?;
    println!(
        "pid {} now serves on the same sockets; pid {} is draining",
        a.new_pid, a.old_pid
    );
    Ok(true)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
