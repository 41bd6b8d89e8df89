//! The cutover console: one page on the admin listener to watch and steer the migration.
//!
//! `GET /` serves the page, `/console.js` and `/console.css` its script and style, all compiled
//! into the binary (no CDN, no fonts: it works on an air-gapped network). The page reads the
//! same JSON endpoints as the CLI, plus [`paths::TIMESERIES`] (the sampler in [`timeseries`]),
//! and changes things only through the admin API's mutations, with the token the operator types
//! (kept in `sessionStorage`, sent as `Authorization: Bearer`, never a cookie, so there is no
//! CSRF surface: a cross-site form cannot add that header).
//!
//! Every answer here forbids framing and inline script (a strict Content-Security-Policy with
//! `script-src 'self'`), so even a display bug that let a URL from traffic reach the DOM as
//! markup could not run it; the script also only ever writes such data with `textContent`.

pub mod timeseries;

use std::sync::Arc;

use http::{header, HeaderValue, StatusCode};

use super::paths;
use super::Control;
use crate::admin::{body_with_type, AdminResponse, Router};

/// The page.
pub const PAGE_HTML: &str = include_str!("page.html");
/// Its script: plain JavaScript, no framework, no build step.
pub const PAGE_JS: &str = include_str!("console.js");
/// Its style: light and dark by `prefers-color-scheme`.
pub const PAGE_CSS: &str = include_str!("console.css");

/// Only this origin's script, style and fetches; no inline script, no plugins, no framing, no
/// form posts, no `<base>` rewriting.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// A console asset with the headers every console answer carries (`no-store` comes from
/// [`body_with_type`]).
fn asset(content_type: &'static str, body: &'static str) -> AdminResponse {
    let mut resp = body_with_type(StatusCode::OK, content_type, body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// Registers the page, its assets and the time series, and starts the sampler behind the
/// latter (it stops when the admin routes are dropped).
pub fn routes(router: Router, control: &Arc<Control>) -> Router {
    let sampler = timeseries::Sampler::spawn(Arc::clone(control.reloader.state()));
    router
        .get(paths::CONSOLE, |_| async {
            asset("text/html; charset=utf-8", PAGE_HTML)
        })
        .get(paths::CONSOLE_JS, |_| async {
            asset("text/javascript; charset=utf-8", PAGE_JS)
        })
        .get(paths::CONSOLE_CSS, |_| async {
            asset("text/css; charset=utf-8", PAGE_CSS)
        })
        .get(paths::TIMESERIES, move |_| {
            // Compact: up to 300 points of every storefront, fetched every 2 s by each open page.
            let body = serde_json::to_vec(&sampler.series()).unwrap_or_else(|_| b"{}".to_vec());
            async move { body_with_type(StatusCode::OK, "application/json", body) }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page must not need `'unsafe-inline'`: no inline script, handler or style attribute.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let lower = PAGE_HTML.to_ascii_lowercase();
        for bad in ["<script>", "style=", "javascript:", "<style"] {
            assert!(!lower.contains(bad), "page.html contains `{bad}`");
        }
        // No event-handler attribute (` onclick=`...).
        for (i, _) in lower.match_indices(" on") {
            let name: String = lower[i + 1..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            let rest = &lower[i + 1 + name.len()..];
            assert!(!rest.starts_with('='), "page.html has a handler `{name}=`");
        }
        assert!(lower.contains("<script src=\"/console.js\""));
        assert!(
            !PAGE_JS.contains("innerHTML"),
            "data goes through textContent"
        );
        assert!(!PAGE_JS.contains("insertAdjacentHTML"));
        assert!(!PAGE_JS.contains("document.write"));
        // No request leaves the admin origin: the only URL is the SVG namespace (a name, never
        // fetched).
        let js = PAGE_JS.replace("'http://www.w3.org/2000/svg'", "");
        for text in [PAGE_HTML, PAGE_CSS, js.as_str()] {
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn")
            );
        }
    }
}
