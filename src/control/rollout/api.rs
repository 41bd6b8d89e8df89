//! `GET /admin/rollout` and `POST /admin/rollout/{start,pause,resume,promote,abort}`.
//!
//! Commands are registered with [`crate::control::change`], so they follow the token rules of
//! every change; they take an empty body.

use std::sync::Arc;

use http::{Method, StatusCode};

use super::{Command, DriverError, Rollout};
use crate::admin::Router;
use crate::control::request::{error, expect_empty, json};
use crate::control::{change, paths, Control};

/// Adds the rollout's routes to `router`.
pub fn routes(mut router: Router, control: &Arc<Control>, rollout: Rollout) -> Router {
    let r = rollout.clone();
    router = router.get(paths::ROLLOUT, move |_| {
        let view = r.view();
        async move { json(StatusCode::OK, &*view) }
    });
    for (path, command) in [
        (paths::ROLLOUT_START, Command::Start),
        (paths::ROLLOUT_PAUSE, Command::Pause),
        (paths::ROLLOUT_RESUME, Command::Resume),
        (paths::ROLLOUT_PROMOTE, Command::Promote),
        (paths::ROLLOUT_ABORT, Command::Abort),
    ] {
        let r = rollout.clone();
        router = change(router, control, Method::POST, path, move |_, _, body| {
            let r = r.clone();
            async move {
                if let Err(resp) = expect_empty(&body) {
                    return resp;
                }
                match r.command(command).await {
                    Ok(answer) => json(StatusCode::OK, &answer),
                    Err(e @ DriverError::NoPlan) => error(StatusCode::NOT_FOUND, e.to_string()),
                    Err(e @ DriverError::Refused(_)) => error(StatusCode::CONFLICT, e.to_string()),
                    Err(e @ DriverError::Gone) => {
                        error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    }
                    Err(DriverError::Fleet(e)) => error(e.status(), e.to_string()),
                }
            }
        });
    }
    router
}
