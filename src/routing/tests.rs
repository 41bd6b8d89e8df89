//! Table-driven tests of the routing decision, on tables built directly: no TOML, no metrics.
//! (How the config's `[[route]]` text becomes these matchers is tested in `config`.)

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};

use super::cohort::{CohortKeys, CohortPolicy};
use super::staff_override::OverridePolicy;
use super::*;

const NOW: u64 = 1_800_000_000;

/// `old` (id 0) and `new` (id 1), the split moving `share_bp` basis points to new, no rules.
fn table(share_bp: u16) -> Table {
    Table {
        storefronts: ["old", "new"]
            .map(|name| StorefrontRouting {
                name: name.into(),
                evacuated_at: None,
            })
            .into(),
        routes: vec![default_route()],
        split: Split {
            from: 0,
            to: 1,
            share_bp,
        },
        cohort: CohortPolicy::with_key("test-key"),
        overrides: OverridePolicy::default(),
    }
}

fn default_route() -> Route {
    Route {
        name: "default".into(),
        matcher: Matcher::default(),
        action: Action::Split,
    }
}

/// Inserts rules before the default route, in order.
fn with_rules(mut t: Table, rules: Vec<(&str, Matcher, StorefrontId)>) -> Table {
    let default = t.routes.pop().expect("default route");
    for (name, matcher, to) in rules {
        t.routes.push(Route {
            name: name.into(),
            matcher,
            action: Action::Storefront(to),
        });
    }
    t.routes.push(default);
    t
}

const OLD: StorefrontId = 0;
const NEW: StorefrontId = 1;

struct Req {
    method: Method,
    host: &'static str,
    path: &'static str,
    query: Option<&'static str>,
    headers: HeaderMap,
}

fn get(path: &'static str) -> Req {
    Req {
        method: Method::GET,
        host: "shop.example",
        path,
        query: None,
        headers: HeaderMap::new(),
    }
}

impl Req {
    fn query(mut self, q: &'static str) -> Self {
        self.query = Some(q);
        self
    }
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
    fn cookie(self, t: &Table, c: &CohortCookie) -> Self {
        let v = cohort::encode(c, &t.cohort.keys, |id| t.storefronts[id].name.clone());
        self.header("cookie", &format!("{}={v}", t.cohort.cookie))
    }
    fn decide(&self, t: &Table, now: u64, fresh: u16) -> Decision {
        let view = RequestView {
            method: &self.method,
            host: self.host,
            path: self.path,
            query: self.query,
            headers: (&self.headers).into(),
        };
        decide(t, &view, now, || fresh)
    }
}

fn name(t: &Table, d: &Decision) -> String {
    t.storefronts[d.storefront].name.clone()
}

fn prefix(p: &str) -> Matcher {
    Matcher {
        path_prefix: Some(p.trim_end_matches('/').into()),
        ..Matcher::default()
    }
}

#[test]
fn segment_boundary_prefixes() {
    let cases = [
        ("/blog", "/blog", true),
        ("/blog", "/blog/", true),
        ("/blog", "/blog/x/y", true),
        ("/blog", "/blogger", false),
        ("/blog", "/blo", false),
        ("", "/anything", true),
        ("/api/v2", "/api/v2/cart", true),
        ("/api/v2", "/api/v20", false),
    ];
    for (prefix, path, want) in cases {
        assert_eq!(prefix_matches(prefix, path), want, "{prefix} vs {path}");
    }
}

#[test]
fn route_precedence_and_conditions() {
    let snap = with_rules(
        table(5000),
        vec![
            ("api-new", prefix("/api/v2"), NEW),
            ("blog", prefix("/blog/"), OLD),
            (
                "admin-host",
                Matcher {
                    host: Some(HostPattern::Suffix(".admin.example".into())),
                    ..Matcher::default()
                },
                OLD,
            ),
            (
                "post-checkout",
                Matcher {
                    path: Some("/checkout".into()),
                    methods: vec![Method::POST],
                    ..Matcher::default()
                },
                OLD,
            ),
            (
                "beta-header",
                Matcher {
                    header: Some((
                        http::HeaderName::from_static("x-beta"),
                        Some(HeaderValue::from_static("yes")),
                    )),
                    ..Matcher::default()
                },
                NEW,
            ),
            (
                "beta-cookie",
                Matcher {
                    cookie: Some(("beta".into(), None)),
                    ..Matcher::default()
                },
                NEW,
            ),
            ("everything-under-api", prefix("/api"), OLD),
        ],
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
            snap.routes[d.route].name, route,
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

#[test]
fn bucket_against_share() {
    // The edges of `bucket < share_bp`: nobody at 0, exactly bucket 0 at 1 bp, everybody but
    // bucket 9,999 at 9,999 bp, everybody at 10,000 bp.
    let cases = [
        (0u16, 0u16, "old"),
        (0, 9999, "old"),
        (1, 0, "new"),
        (1, 1, "old"),
        (1000, 999, "new"),
        (1000, 1000, "old"),
        (9999, 9998, "new"),
        (9999, 9999, "old"),
        (10_000, 0, "new"),
        (10_000, 9999, "new"),
    ];
    for (share, bucket, want) in cases {
        let snap = table(share);
        let fresh = get("/").decide(&snap, NOW, bucket);
        assert_eq!(name(&snap, &fresh), want, "share {share} bucket {bucket}");
        assert!(fresh.newly_assigned);
        assert_eq!(fresh.set_cookie, Some(CohortCookie { bucket, pin: None }));
        // The same bucket carried in a cookie decides the same way and sets nothing.
        let returning = get("/")
            .cookie(&snap, &CohortCookie { bucket, pin: None })
            .decide(&snap, NOW, 4242);
        assert_eq!(name(&snap, &returning), want);
        assert_eq!(returning.set_cookie, None);
        assert!(!returning.newly_assigned);
    }
}

#[test]
fn raising_the_share_only_moves_old_to_new() {
    let snaps: Vec<Table> = [1000, 2000, 5000, 9999, 10_000].map(table).into();
    for bucket in 0..10_000u16 {
        let mut was_new = false;
        for snap in &snaps {
            let d = get("/")
                .cookie(snap, &CohortCookie { bucket, pin: None })
                .decide(snap, NOW, 0);
            let is_new = name(snap, &d) == "new";
            assert!(!was_new || is_new, "bucket {bucket} moved back to old");
            was_new = is_new;
        }
    }
}

#[test]
fn session_cookie_decides_bucket_without_setting_a_cookie() {
    let text_snap = snapshot_session();
    let d1 = get("/")
        .header("cookie", "PHPSESSID=abc123")
        .decide(&text_snap, NOW, 1);
    let d2 = get("/other")
        .header("cookie", "PHPSESSID=abc123")
        .decide(&text_snap, NOW, 9999);
    assert_eq!(d1.storefront, d2.storefront);
    assert_eq!(d1.set_cookie, None);
    assert!(!d1.newly_assigned);
    let bucket = text_snap.cohort.keys.bucket_of("abc123");
    let want = if bucket < 5000 { "new" } else { "old" };
    assert_eq!(name(&text_snap, &d1), want);
}

fn snapshot_session() -> Table {
    let mut t = table(5000);
    t.cohort = CohortPolicy {
        session_cookie: Some("PHPSESSID".into()),
        ..CohortPolicy::with_key("k")
    };
    t
}

#[test]
fn pinning_holds_shoppers_when_the_share_drops_until_evacuated() {
    let build = |share_bp: u16, evacuated_at: Option<u64>| {
        let mut t = table(share_bp);
        t.cohort.pinning = true;
        t.cohort.pin_ttl = Duration::from_secs(7200);
        t.storefronts[NEW].evacuated_at = evacuated_at;
        t
    };
    let at50 = build(5000, None);
    let first = get("/").decide(&at50, NOW, 10);
    assert_eq!(name(&at50, &first), "new");
    let cookie = first.set_cookie.expect("pin issued");
    assert_eq!(cookie.pin.map(|p| p.kind), Some(PinKind::Split));

    let at0 = build(0, None);
    let later = get("/").cookie(&at0, &cookie).decide(&at0, NOW + 60, 0);
    assert_eq!(
        name(&at0, &later),
        "new",
        "pinned shopper stays when the share drops"
    );
    assert_eq!(later.reason, Reason::Pin);
    assert_eq!(
        later.set_cookie, None,
        "no refresh in the first half of the ttl"
    );

    let refreshed = get("/")
        .cookie(&at0, &cookie)
        .decide(&at0, NOW + 3601 + 60, 0);
    assert_eq!(name(&at0, &refreshed), "new");
    assert_eq!(
        refreshed.set_cookie.and_then(|c| c.pin).map(|p| p.issued),
        Some(NOW + 3661)
    );

    let expired = get("/").cookie(&at0, &cookie).decide(&at0, NOW + 7200, 0);
    assert_eq!(
        name(&at0, &expired),
        "old",
        "an expired pin lets the share decide"
    );

    let evacuated = build(0, Some(NOW + 30));
    let moved = get("/")
        .cookie(&evacuated, &cookie)
        .decide(&evacuated, NOW + 60, 0);
    assert_eq!(
        name(&evacuated, &moved),
        "old",
        "evacuating new releases its pins"
    );
    assert_eq!(moved.reason, Reason::Split);
    assert_eq!(
        moved.set_cookie.and_then(|c| c.pin).map(|p| p.storefront),
        Some(moved.storefront)
    );
}

#[test]
fn override_sets_and_clears_pins() {
    let snap = table(0);
    let forced = get("/").query("cutover=new").decide(&snap, NOW, 5000);
    assert_eq!(name(&snap, &forced), "new");
    assert_eq!(forced.reason, Reason::Override);
    let cookie = forced.set_cookie.expect("override pin");
    assert_eq!(cookie.pin.map(|p| p.kind), Some(PinKind::Override));

    let follow = get("/cart")
        .cookie(&snap, &cookie)
        .decide(&snap, NOW + 10, 0);
    assert_eq!(name(&snap, &follow), "new");
    assert_eq!(follow.reason, Reason::Override);

    let cleared = get("/")
        .query("cutover=clear")
        .cookie(&snap, &cookie)
        .decide(&snap, NOW + 20, 0);
    assert_eq!(name(&snap, &cleared), "old");
    assert_eq!(
        cleared.set_cookie,
        Some(CohortCookie {
            bucket: 5000,
            pin: None
        })
    );

    let header = get("/")
        .header("x-cutover-force", "new")
        .decide(&snap, NOW, 5000);
    assert_eq!(name(&snap, &header), "new");
}

#[test]
fn refused_override_changes_nothing() {
    let mut disabled = table(0);
    disabled.overrides.enabled = false;
    let d = get("/").query("cutover=new").decide(&disabled, NOW, 5000);
    assert_eq!(name(&disabled, &d), "old");
    assert!(d.override_refused);
    assert_eq!(d.set_cookie.and_then(|c| c.pin), None);

    let mut tokened = table(0);
    tokened.overrides.token = Some("s3cret".into());
    let wrong = get("/")
        .query("cutover=new&cutover_token=guess")
        .decide(&tokened, NOW, 5000);
    assert_eq!(name(&tokened, &wrong), "old");
    assert!(wrong.override_refused);
    let right = get("/")
        .query("cutover=new&cutover_token=s3cret")
        .decide(&tokened, NOW, 5000);
    assert_eq!(name(&tokened, &right), "new");
}

#[test]
fn forged_cookie_is_replaced() {
    let snap = table(5000);
    let d = get("/")
        .header(
            "cookie",
            "cutover_cohort=v1.1.o~new~1800000000.0000000000000000",
        )
        .decide(&snap, NOW, 9000);
    assert_eq!(name(&snap, &d), "old", "a forged override pin is ignored");
    assert_eq!(
        d.set_cookie,
        Some(CohortCookie {
            bucket: 9000,
            pin: None
        })
    );
}

#[test]
fn override_on_a_rule_route_pins_for_later() {
    let snap = with_rules(table(0), vec![("blog", prefix("/blog"), OLD)]);
    let d = get("/blog/post").query("cutover=new").decide(&snap, NOW, 1);
    assert_eq!(name(&snap, &d), "old");
    assert_eq!(d.reason, Reason::Rule);
    assert_eq!(
        d.set_cookie.and_then(|c| c.pin).map(|p| p.storefront),
        snap.storefront_id("new")
    );
}

#[test]
fn reason_label_order_matches_declaration() {
    // Metric handles are indexed by `reason as usize`; ALL must list reasons in that order.
    for (i, r) in Reason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i, "{}", r.as_str());
    }
}

/// Key rotation: a cookie signed by a previous key keeps bucket and pin, and the answer carries
/// the same cookie signed with the current key.
#[test]
fn cookie_signed_by_a_previous_key_keeps_its_side_and_is_resigned() {
    let old_table = table(3000);
    let pinned = CohortCookie {
        bucket: 9000,
        pin: Some(Pin {
            storefront: NEW,
            kind: PinKind::Split,
            issued: NOW - 60,
        }),
    };
    let req = get("/").cookie(&old_table, &pinned);
    let mut rotated = table(3000);
    rotated.cohort.pinning = true;
    rotated.cohort.keys = CohortKeys::derive("next-key").with_previous(&["test-key"]);
    let d = req.decide(&rotated, NOW, 0);
    assert_eq!(
        name(&rotated, &d),
        "new",
        "the pin holds despite bucket 9000"
    );
    assert_eq!(d.reason, Reason::Pin);
    let resent = d.set_cookie.expect("re-signed with the current key");
    assert_eq!(resent, pinned, "same bucket and pin");
    let again = get("/").cookie(&rotated, &resent).decide(&rotated, NOW, 0);
    assert_eq!(name(&rotated, &again), "new");
    assert!(
        again.set_cookie.is_none(),
        "a current-key cookie is not rewritten"
    );
    // Without the previous key the same cookie is foreign: a new bucket from `fresh`.
    let mut dropped = rotated.clone();
    dropped.cohort.keys = CohortKeys::derive("next-key");
    let d = req.decide(&dropped, NOW, 10);
    assert!(d.newly_assigned || d.set_cookie.is_some());
    assert_eq!(d.set_cookie.map(|c| c.bucket), Some(10));
}

/// Who is counted where (`routing::shopper`): returning shoppers only, one id per shopper
/// across requests, and pins that hold a shopper against the share marked as such.
#[test]
fn shoppers_are_identified_for_counting_and_pins_against_the_share_marked() {
    let mut t = with_rules(table(10_000), vec![("img", prefix("/img"), OLD)]);
    t.cohort.pinning = true;
    // A first visit carries nothing: not counted (bots without cookies are not a crowd).
    let first = get("/").decide(&t, NOW, 42);
    assert_eq!(first.shopper, None);
    let cookie = first.set_cookie.expect("pinned to new");
    // Back with the cookie: counted, pinned where the share sends them, not against it.
    let back = get("/").cookie(&t, &cookie).decide(&t, NOW + 5, 0);
    let s = back.shopper.expect("a returning shopper is counted");
    assert!(s.pinned && !s.pinned_against_share, "{s:?}");
    let again = get("/cart").cookie(&t, &cookie).decide(&t, NOW + 9, 0);
    assert_eq!(
        again.shopper.map(|s| s.id),
        Some(s.id),
        "one id per shopper"
    );
    // A rule route does not say where the shopper is.
    let img = get("/img/a.png").cookie(&t, &cookie).decide(&t, NOW + 9, 0);
    assert_eq!(img.shopper, None);
    // Pinned to old while the share (100%) says new: held against the share.
    let on_old = CohortCookie {
        bucket: 42,
        pin: Some(Pin {
            storefront: OLD,
            kind: PinKind::Split,
            issued: NOW,
        }),
    };
    let held = get("/").cookie(&t, &on_old).decide(&t, NOW + 5, 0);
    assert_eq!(name(&t, &held), "old");
    let h = held.shopper.unwrap();
    assert!(h.pinned && h.pinned_against_share, "{h:?}");
    assert_ne!(h.id, s.id, "another shopper (same bucket, other pin)");
    // Without a pin: counted, not pinned; shoppers of the same bucket share a cookie (a cohort).
    let mut off = table(0);
    off.cohort.pinning = false;
    let plain = CohortCookie {
        bucket: 42,
        pin: None,
    };
    let p = get("/").cookie(&off, &plain).decide(&off, NOW, 0).shopper;
    assert_eq!(
        p.map(|p| (p.pinned, p.pinned_against_share)),
        Some((false, false))
    );
    // A session cookie identifies the shopper whether or not our cookie came along.
    let mut sess = snapshot_session();
    sess.cohort.pinning = true;
    let s1 = get("/")
        .header("cookie", "PHPSESSID=abc123")
        .decide(&sess, NOW, 0);
    let pinned = s1.set_cookie.expect("pinned");
    let s2 = get("/")
        .header("cookie", "PHPSESSID=abc123")
        .cookie(&sess, &pinned)
        .decide(&sess, NOW + 5, 0);
    assert_eq!(
        s1.shopper.map(|s| s.id),
        Some(sess.cohort.keys.session_hash("abc123"))
    );
    assert_eq!(s1.shopper.map(|s| s.id), s2.shopper.map(|s| s.id));
}
