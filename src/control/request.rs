//! What every admin mutation does before anything else: authenticate, then read a bounded JSON
//! body. Each failure is a JSON error with a 4xx status that says what to do.

// The error *is* the response to send; it is built once per refused request, never on the data
// plane, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::admin::{body_with_type, AdminResponse, PeerAddr};
use crate::config::admin::token_matches;

/// Largest admin request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// A body must arrive within this.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> AdminResponse {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    body_with_type(status, "application/json", body)
}

/// A JSON error: `{"error": "...", "status": 400}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> AdminResponse {
    #[derive(Serialize)]
    struct E {
        error: String,
        status: u16,
    }
    json(
        status,
        &E {
            error: message.into(),
            status: status.as_u16(),
        },
    )
}

/// Lets a mutation through, or answers why not. With a token configured, the request needs
/// `Authorization: Bearer <token>` (401 otherwise). Without one, only loopback peers may mutate
/// (403 otherwise): the config refuses a non-loopback admin address without a token, and this
/// also covers an admin socket inherited from systemd bound more widely than the config says.
pub fn authorize(req: &Request<Incoming>, token: Option<&str>) -> Result<(), AdminResponse> {
    match token {
        Some(expected) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (scheme, rest) = v.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
                });
            match given {
                Some(t) if token_matches(expected, t) => Ok(()),
                Some(_) => Err(unauthorized("wrong token")),
                None => Err(unauthorized(
                    "this admin API needs `Authorization: Bearer <token>` for changes (the token is in [admin] token / token_file / token_env)",
                )),
            }
        }
        None => {
            let local = req
                .extensions()
                .get::<PeerAddr>()
                .is_some_and(|p| p.0.ip().is_loopback() || p.0.ip().to_canonical().is_loopback());
            if local {
                Ok(())
            } else {
                Err(error(
                    StatusCode::FORBIDDEN,
                    "no admin token is configured, so changes are accepted from this machine only; set [admin] token_file",
                ))
            }
        }
    }
}

fn unauthorized(message: &str) -> AdminResponse {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"cutover admin\""),
    );
    r
}

/// Reads the whole body, at most `MAX_BODY` bytes and within `BODY_TIMEOUT`.
pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, AdminResponse> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(req.into_body(), MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("reading the request body: {e}"),
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn too_large() -> AdminResponse {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request bodies are limited to {MAX_BODY} bytes"),
    )
}

/// Parses a JSON body into `T`; `example` shows the expected shape in the error.
pub fn parse<T: DeserializeOwned>(body: &[u8], example: &str) -> Result<T, AdminResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("expected a JSON body like {example}"),
        ));
    }
    let value = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("malformed JSON body ({e}); expected e.g. {example}"),
        )
    })?;
    // serde's derived structs also accept a JSON array of their fields in order (`[12.5]`,
    // `[]` for no fields): every body of this API is an object, say so instead.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("expected a JSON object like {example}"),
        ));
    }
    Ok(value)
}

/// An optional body: empty, or a JSON object with no fields (`{}`).
pub fn expect_empty(body: &[u8]) -> Result<(), AdminResponse> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nothing {}
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    parse::<Nothing>(body, "{} or no body").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Share {
        #[allow(dead_code)]
        new_share: f64,
    }

    /// Found by the `admin_json` fuzz target: `[]` passed as "no body" and `[12.5]` as
    /// `{"new_share": 12.5}`, because derived structs also deserialize from arrays.
    #[test]
    fn only_objects_are_bodies() {
        for bad in ["[]", " [ ] ", "[{}]"] {
            let r = expect_empty(bad.as_bytes()).expect_err(bad);
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        for ok in ["", " \r\n", "{}", " { } "] {
            assert!(expect_empty(ok.as_bytes()).is_ok(), "{ok:?}");
        }
        let r = parse::<Share>(b"[12.5]", "{\"new_share\": 12.5}").expect_err("array");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let s = parse::<Share>(b" {\"new_share\": 12.5}", "x").expect("object");
        assert_eq!(s.new_share, 12.5);
    }
}
