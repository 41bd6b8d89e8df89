//! The config's `[[route]]` text compiled and run through the routing decision: what the file
//! says is what routing does. (Routing's own edge cases are in `routing::tests`, on tables built
//! directly.)

use http::{HeaderMap, HeaderValue, Method};

use crate::config::{compile, CompileInput, Source};
use crate::routing::{decide, Decision, Reason, RequestView};
use crate::state::Snapshot;

const NOW: u64 = 1_800_000_000;

fn snapshot(extra: &str) -> Snapshot {
    let text = format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
[storefront.old]
upstream = "http://127.0.0.1:1"
[storefront.new]
upstream = "http://127.0.0.1:2"
[cohort]
key = "test-key"
{extra}
"#
    );
    let source = Source {
        path: "test.toml".into(),
        text,
    };
    let raw = source.parse().expect("parses");
    compile(
        &raw,
        CompileInput {
            source: &source,
            generation: 1,
            previous: None,
            metrics: &crate::metrics::Metrics::new(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn with_split(share: &str, extra: &str) -> Snapshot {
    snapshot(&format!("[split]\nnew_share = {share}\n{extra}"))
}

struct Req {
    method: Method,
    host: &'static str,
    path: &'static str,
    headers: HeaderMap,
}

fn get(path: &'static str) -> Req {
    Req {
        method: Method::GET,
        host: "shop.example",
        path,
        headers: HeaderMap::new(),
    }
}

impl Req {
    fn host(mut self, h: &'static str) -> Self {
        self.host = h;
        self
    }
    fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }
    fn header(mut self, k: &'static str, v: &str) -> Self {
        self.headers.append(k, HeaderValue::from_str(v).unwrap());
        self
    }
    fn decide(&self, snap: &Snapshot, now: u64, fresh: u16) -> Decision {
        let view = RequestView {
            method: &self.method,
            host: self.host,
            path: self.path,
            query: None,
            headers: (&self.headers).into(),
        };
        decide(&snap.routing, &view, now, || fresh)
    }
}

fn name(snap: &Snapshot, d: &Decision) -> String {
    snap.storefronts[d.storefront].name.clone()
}

#[test]
fn route_rules_compile_to_matchers_in_file_order() {
    let snap = with_split(
        "50",
        r#"
[[route]]
name = "api-new"
path_prefix = "/api/v2"
to = "new"
[[route]]
name = "blog"
path_prefix = "/blog/"
to = "old"
[[route]]
name = "admin-host"
host = "*.admin.example"
to = "old"
[[route]]
name = "post-checkout"
path = "/checkout"
method = ["POST"]
to = "old"
[[route]]
name = "beta-header"
header = { name = "x-beta", value = "yes" }
to = "new"
[[route]]
name = "beta-cookie"
cookie = { name = "beta" }
to = "new"
[[route]]
name = "everything-under-api"
path_prefix = "/api"
to = "old"
"#,
    );
    let cases: Vec<(Req, &str, &str)> = vec![
        (get("/api/v2/cart"), "api-new", "new"),
        (get("/api/v20"), "everything-under-api", "old"),
        (get("/api"), "everything-under-api", "old"),
        (get("/blog"), "blog", "old"),
        (get("/blogger"), "default", ""),
        (get("/x").host("eu.admin.example"), "admin-host", "old"),
        (get("/x").host("EU.Admin.Example"), "admin-host", "old"),
        (get("/x").host("admin.example"), "default", ""),
        (
            get("/checkout").method(Method::POST),
            "post-checkout",
            "old",
        ),
        (get("/checkout"), "default", ""),
        (get("/x").header("x-beta", "yes"), "beta-header", "new"),
        (get("/x").header("x-beta", "no"), "default", ""),
        (
            get("/x").header("cookie", "a=1; beta=1"),
            "beta-cookie",
            "new",
        ),
    ];
    for (req, route, sf) in cases {
        let d = req.decide(&snap, NOW, 0);
        assert_eq!(
            snap.routing.routes[d.route].name, route,
            "{} {}",
            req.host, req.path
        );
        if !sf.is_empty() {
            assert_eq!(name(&snap, &d), sf, "{}", req.path);
            assert_eq!(d.reason, Reason::Rule);
            assert_eq!(d.set_cookie, None, "rules do not mint cookies");
        } else {
            assert_eq!(d.reason, Reason::Split);
        }
    }
}
