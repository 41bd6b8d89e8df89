//! A minimal exact-path router for the admin listener.
//!
//! The admin surface is a handful of fixed paths, so an exact match on (method, path) is all it
//! needs, and a wrong method must answer 405 rather than 404 so an operator who POSTs to a GET
//! endpoint (or the reverse, for later mutations) learns why. Envoy's admin refuses mutations over
//! GET for the same reason: a link or a prefetch must never change the proxy.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

/// What every admin handler answers with: admin bodies are small and built in memory.
pub type AdminResponse = Response<Full<Bytes>>;
/// A boxed handler future, so routes of different closures fit in one table.
pub type HandlerFuture = Pin<Box<dyn Future<Output = AdminResponse> + Send>>;
type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFuture + Send + Sync>;

struct Route {
    method: Method,
    path: String,
    handler: Handler,
}

/// Routes by exact method and path. Later admin features (status, mutations behind a bearer token)
/// register here; the handler receives the whole request, so it can check headers and read a body.
#[derive(Default, Clone)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    /// State serving `metrics`, reporting readiness from `ready`.
    pub fn new() -> Self {
        Router::default()
    }

    /// Adds a route. The first route registered for a (method, path) wins, so built-in routes
    /// cannot be shadowed by later additions. A `{name}` segment matches any one segment.
    pub fn route<F, Fut>(mut self, method: Method, path: &str, handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = AdminResponse> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)) as HandlerFuture);
        self.routes.push(Arc::new(Route {
            method,
            path: path.to_string(),
            handler,
        }));
        self
    }

    /// Adds a GET route (HEAD is answered by it too).
    pub fn get<F, Fut>(self, path: &str, handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = AdminResponse> + Send + 'static,
    {
        self.route(Method::GET, path, handler)
    }

    /// Appends `other`'s routes after this router's.
    pub fn merge(mut self, other: Router) -> Self {
        self.routes.extend(other.routes);
        self
    }

    /// Answers `req`: the matching handler, else 405 with `Allow` when the path exists under other
    /// methods, else 404.
    pub async fn dispatch(&self, req: Request<Incoming>) -> Result<AdminResponse, Infallible> {
        let path = req.uri().path();
        let method = req.method();
        // HEAD is GET without a body; hyper drops the body for HEAD responses.
        let wanted = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let mut allowed: Vec<&str> = Vec::new();
        let mut found = None;
        for route in self.routes.iter().filter(|r| path_matches(&r.path, path)) {
            if route.method == *wanted {
                found = Some(route.handler.clone());
                break;
            }
            allowed.push(route.method.as_str());
            if route.method == Method::GET {
                allowed.push("HEAD");
            }
        }
        if let Some(handler) = found {
            return Ok(handler(req).await);
        }
        if allowed.is_empty() {
            return Ok(text(StatusCode::NOT_FOUND, "not found\n"));
        }
        allowed.dedup();
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        Ok(resp)
    }
}

/// Exact match, where a `{name}` segment of the pattern matches any one non-empty segment
/// (`/admin/evacuate/{storefront}`); handlers read the segment from the request path.
fn path_matches(pattern: &str, path: &str) -> bool {
    if !pattern.contains('{') {
        return pattern == path;
    }
    let mut p = pattern.split('/');
    let mut q = path.split('/');
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') && a.ends_with('}') => {
                if b.is_empty() {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> AdminResponse {
    body_with_type(status, "text/plain; charset=utf-8", body)
}

/// A response with an explicit content type.
pub fn body_with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> AdminResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Scrapes and probes must see the current state, never a cached one.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod pattern_tests {
    use super::path_matches;

    #[test]
    fn patterns_match_one_segment() {
        assert!(path_matches("/admin/status", "/admin/status"));
        assert!(!path_matches("/admin/status", "/admin/status/"));
        assert!(path_matches("/admin/evacuate/{sf}", "/admin/evacuate/new"));
        assert!(!path_matches("/admin/evacuate/{sf}", "/admin/evacuate/"));
        assert!(!path_matches("/admin/evacuate/{sf}", "/admin/evacuate/a/b"));
        assert!(!path_matches("/admin/evacuate/{sf}", "/admin/evacuate"));
    }
}
