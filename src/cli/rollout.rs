//! `cutover rollout start | pause | resume | promote | abort | status`: the automatic ramp
//! through the admin API, with human output (or `--json`).

use anyhow::Context as _;
use http::Method;

use cutover::control::paths;
use cutover::control::rollout::{CommandAnswer, RolloutView};

use super::control::{call, print_json, resolve, QUICK};
use super::AdminArgs;

/// What `cutover rollout` does.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Action {
    /// Start at step one (from idle, rolled back or completed).
    Start,
    /// Stop at the current step until resumed.
    Pause,
    /// Continue a paused rollout at the same step.
    Resume,
    /// Move to the next step now, without waiting for the gates.
    Promote,
    /// Stop the rollout: share to 0 (enforce mode).
    Abort,
    /// Show the state, the plan, the last verdicts and the next evaluation.
    Status,
}

pub async fn run(action: Action, args: AdminArgs) -> anyhow::Result<bool> {
    let t = resolve(&args)?;
    let path = match action {
        Action::Start => paths::ROLLOUT_START,
        Action::Pause => paths::ROLLOUT_PAUSE,
        Action::Resume => paths::ROLLOUT_RESUME,
        Action::Promote => paths::ROLLOUT_PROMOTE,
        Action::Abort => paths::ROLLOUT_ABORT,
        Action::Status => {
            let body = call(&t, Method::GET, paths::ROLLOUT, None, QUICK).await?;
            if args.json {
                print_json(&body);
            } else {
                let v: RolloutView =
                    serde_json::from_str(&body).context("reading the rollout status")?;
                print!("{v}");
            }
            return Ok(true);
        }
    };
    let body = call(&t, Method::POST, path, None, QUICK).await?;
    if args.json {
        print_json(&body);
        return Ok(true);
    }
    let a: CommandAnswer = serde_json::from_str(&body).context("reading the answer")?;
    for m in &a.messages {
        println!("{m}");
    }
    print!("{}", a.rollout);
    Ok(true)
}
