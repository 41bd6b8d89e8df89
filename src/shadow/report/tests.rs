use super::*;
use crate::shadow::compare::Mismatch;

fn mismatch(kind: MismatchKind, old: &str, new: &str) -> Comparison {
    Comparison {
        result: if matches!(kind, MismatchKind::Error | MismatchKind::Timeout) {
            ShadowResult::Error
        } else {
            ShadowResult::Mismatch
        },
        mismatches: vec![Mismatch {
            kind,
            old: old.into(),
            new: new.into(),
        }],
    }
}

fn matched() -> Comparison {
    Comparison {
        result: ShadowResult::Match,
        mismatches: vec![],
    }
}

#[test]
fn aggregates_by_kind_and_route_with_top_urls_and_the_first_example() {
    let mut r = Report::new(ReportLimits::default());
    r.record("products", "/p/1", &mismatch(MismatchKind::Title, "A", "B"));
    r.record("products", "/p/2", &mismatch(MismatchKind::Title, "C", "D"));
    r.record("products", "/p/2", &mismatch(MismatchKind::Title, "C", "D"));
    r.record(
        "default",
        "/x",
        &mismatch(MismatchKind::Timeout, "200", "timeout"),
    );
    r.record("default", "/", &matched());
    let s = r.snapshot(7);
    assert_eq!(
        s.requests,
        Totals {
            r#match: 1,
            mismatch: 3,
            error: 1,
            dropped: 7
        }
    );
    assert_eq!(s.kinds.len(), 2, "only kinds that occurred");
    let title = &s.kinds[0];
    assert_eq!(title.kind, MismatchKind::Title);
    assert_eq!(title.mismatches, 3);
    assert_eq!(title.top_urls[0].url, "/p/2");
    assert_eq!(title.top_urls[0].hits, 2);
    let ex = title.example.as_ref().unwrap();
    assert_eq!(
        (ex.url.as_str(), ex.old.as_str(), ex.new.as_str()),
        ("/p/1", "A", "B")
    );
    assert_eq!(s.kinds[1].kind, MismatchKind::Timeout);

    assert_eq!(s.routes.len(), 2);
    let products = &s.routes[0];
    assert_eq!(products.route, "products");
    assert_eq!(
        (products.matches, products.mismatches, products.errors),
        (0, 3, 0)
    );
    assert_eq!(products.kinds, vec![(MismatchKind::Title, 3)]);
    let default = &s.routes[1];
    assert_eq!(
        (default.matches, default.mismatches, default.errors),
        (1, 0, 1)
    );
    assert_eq!(default.top_urls.len(), 1, "matches are not listed as URLs");
}

#[test]
fn routes_beyond_the_cap_count_as_other() {
    let mut r = Report::new(ReportLimits {
        max_routes: 2,
        ..ReportLimits::default()
    });
    for name in ["a", "b", "c", "d", "a"] {
        r.record(name, "/", &matched());
    }
    let s = r.snapshot(0);
    let names: Vec<_> = s
        .routes
        .iter()
        .map(|r| (r.route.as_str(), r.matches))
        .collect();
    assert_eq!(names, vec![("a", 2), ("b", 1), (OTHER_ROUTE, 2)]);
}

#[test]
fn memory_stays_bounded_under_unique_urls_and_huge_values() {
    let limits = ReportLimits::default();
    let mut r = Report::new(limits);
    let huge = "v".repeat(1 << 20);
    let mut at_some_point = 0;
    for i in 0..20_000 {
        let url = format!("/unique/{i}/{}", "x".repeat(i % 3000));
        let kind = MismatchKind::ALL[i % MismatchKind::ALL.len()];
        r.record(
            &format!("route{}", i % 200),
            &url,
            &mismatch(kind, &huge, &huge),
        );
        if i == 10_000 {
            at_some_point = r.heap_bytes();
        }
    }
    let bytes = r.heap_bytes();
    // Per group: top_urls keys of at most MAX_URL_BYTES plus one example of three values.
    let per_group = limits.top_urls * (crate::shadow::topk::MAX_URL_BYTES + 64)
        + 3 * (limits.max_value_bytes + 8)
        + 512;
    let groups = MismatchKind::ALL.len() + limits.max_routes + 1;
    assert!(
        bytes <= groups * per_group,
        "{bytes} > {}",
        groups * per_group
    );
    assert!(
        bytes <= at_some_point * 2,
        "does not keep growing: {at_some_point} -> {bytes}"
    );
    let s = r.snapshot(0);
    assert_eq!(s.routes.len(), limits.max_routes + 1);
    assert!(s.kinds[0].example.as_ref().unwrap().old.len() <= limits.max_value_bytes);
}

#[test]
fn values_are_stored_as_given_and_escaped_only_on_output() {
    let mut r = Report::new(ReportLimits::default());
    let url = "/search?q=<script>alert(\"x\")</script>,a\nb";
    r.record(
        "r",
        url,
        &mismatch(MismatchKind::Title, "=HYPERLINK(\"http://evil\")", "-1+1"),
    );
    let s = r.snapshot(0);
    assert_eq!(s.kinds[0].top_urls[0].url, url, "stored as given");

    let json = serde_json::to_string(&s).unwrap();
    let back: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(back["kinds"][0]["top_urls"][0]["url"], url);
    assert_eq!(back["kinds"][0]["kind"], "title");
    assert_eq!(back["requests"]["match"], 0);

    let csv_text = s.to_csv();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let kind_row = rows.iter().find(|r| &r[0] == "kind").unwrap();
    assert_eq!(
        &kind_row[3], url,
        "CSV quoting round-trips commas, quotes and newlines"
    );
    assert_eq!(
        &kind_row[6], "'=HYPERLINK(\"http://evil\")",
        "formula neutralised"
    );
    assert_eq!(&kind_row[7], "'-1+1");
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "scope",
            "name",
            "count",
            "url",
            "hits",
            "example_url",
            "example_old",
            "example_new"
        ]
    );
    assert_eq!(rows.iter().filter(|r| &r[0] == "total").count(), 4);
}

#[test]
fn clear_forgets_everything_but_the_bounds() {
    let mut r = Report::new(ReportLimits {
        top_urls: 1,
        ..ReportLimits::default()
    });
    r.record("a", "/1", &mismatch(MismatchKind::Robots, "x", "y"));
    r.clear();
    let s = r.snapshot(0);
    assert!(s.kinds.is_empty() && s.routes.is_empty());
    assert_eq!(s.requests.mismatch, 0);
    r.record("a", "/1", &mismatch(MismatchKind::Robots, "x", "y"));
    r.record("a", "/2", &mismatch(MismatchKind::Robots, "x", "y"));
    assert_eq!(r.snapshot(0).kinds[0].top_urls.len(), 1, "bounds kept");
}
