use std::collections::BTreeMap;

use super::*;

const OLD_URL: &str = "https://shop.example/index.php?route=product&id=7";
const NEW_URL: &str = "https://shop.example/products/red-shoes";

/// The plan of these tests: two old URLs with new homes.
fn plan(url: &str) -> Option<String> {
    match url {
        "https://shop.example/index.php?route=product&id=7" => Some("/products/red-shoes".into()),
        "https://shop.example/de/rote-schuhe" => {
            Some("https://shop.example/de/products/rot".into())
        }
        _ => None,
    }
}

fn page(title: &str, canonical: &str) -> Answer {
    Answer {
        status: 200,
        location: None,
        content_type: Some("text/html".into()),
        html: Some(HtmlSignals {
            title: Some(title.into()),
            canonical: Some(canonical.into()),
            robots: Some("index, follow".into()),
            hreflang: BTreeMap::new(),
            has_h1: true,
            truncated: false,
        }),
    }
}

fn obs(url: &str, outcome: Result<Answer, Failure>) -> Observation {
    Observation {
        url: url.into(),
        outcome,
    }
}

fn kinds(c: &Comparison) -> Vec<MismatchKind> {
    c.mismatches.iter().map(|m| m.kind).collect()
}

fn run(old: Result<Answer, Failure>, new: Result<Answer, Failure>) -> Comparison {
    compare(&obs(OLD_URL, old), &obs(NEW_URL, new), &plan)
}

#[test]
fn same_page_after_mapping_the_canonical_through_the_plan_matches() {
    let c = run(
        Ok(page("Red shoes", OLD_URL)),
        Ok(page("Red shoes", "https://shop.example/products/red-shoes")),
    );
    assert_eq!(c.result, ShadowResult::Match, "{c:?}");
    assert!(c.mismatches.is_empty());
}

#[test]
fn canonical_that_is_not_where_the_plan_leads_is_a_mismatch() {
    let c = run(
        Ok(page("Red shoes", OLD_URL)),
        Ok(page(
            "Red shoes",
            "https://shop.example/products/blue-shoes",
        )),
    );
    assert_eq!(c.result, ShadowResult::Mismatch);
    assert_eq!(
        c.mismatches,
        vec![Mismatch {
            kind: MismatchKind::Canonical,
            old: "https://shop.example/products/red-shoes".into(),
            new: "https://shop.example/products/blue-shoes".into(),
        }]
    );
}

#[test]
fn each_html_signal_is_its_own_kind() {
    let old = page("Red shoes", OLD_URL);
    let mut new = page(
        "Red Shoes | Shop",
        "https://shop.example/products/red-shoes",
    );
    let html = new.html.as_mut().unwrap();
    html.robots = Some("noindex".into());
    html.has_h1 = false;
    html.hreflang
        .insert("de".into(), "https://shop.example/de/products/rot".into());
    let c = run(Ok(old.clone()), Ok(new.clone()));
    assert_eq!(
        kinds(&c),
        vec![
            MismatchKind::Title,
            MismatchKind::Robots,
            MismatchKind::Hreflang,
            MismatchKind::H1
        ]
    );
    assert_eq!(c.mismatches[2].old, "(none)");
    assert_eq!(c.mismatches[3].new, "absent");

    // Old's hreflang alternate mapped through the plan equals new's.
    let mut old = old;
    old.html
        .as_mut()
        .unwrap()
        .hreflang
        .insert("de".into(), "https://shop.example/de/rote-schuhe".into());
    let c = run(Ok(old), Ok(new));
    assert!(!kinds(&c).contains(&MismatchKind::Hreflang), "{c:?}");
}

#[test]
fn status_is_compared_by_class() {
    let ok = |s| Answer {
        status: s,
        ..Answer::default()
    };
    assert_eq!(run(Ok(ok(200)), Ok(ok(203))).result, ShadowResult::Match);
    assert_eq!(run(Ok(ok(404)), Ok(ok(410))).result, ShadowResult::Match);
    assert_eq!(
        kinds(&run(Ok(ok(200)), Ok(ok(500)))),
        vec![MismatchKind::Status]
    );
    assert_eq!(
        kinds(&run(Ok(ok(404)), Ok(ok(200)))),
        vec![MismatchKind::Status]
    );
    assert_eq!(
        kinds(&run(Ok(ok(200)), Ok(ok(404)))),
        vec![MismatchKind::MissingOnNew]
    );
    assert_eq!(
        kinds(&run(Ok(ok(301)), Ok(ok(410)))),
        vec![MismatchKind::MissingOnNew]
    );
    let c = run(Ok(ok(500)), Ok(ok(404)));
    assert_eq!(kinds(&c), vec![MismatchKind::Status]);
    assert_eq!(
        (c.mismatches[0].old.as_str(), c.mismatches[0].new.as_str()),
        ("500", "404")
    );
}

#[test]
fn redirect_targets_are_resolved_and_mapped() {
    let redirect = |to: &str| Answer {
        status: 301,
        location: Some(to.into()),
        ..Answer::default()
    };
    // Old redirects to an old URL the plan maps; new redirects straight to its new home.
    let old = redirect("/de/rote-schuhe");
    assert_eq!(
        run(Ok(old.clone()), Ok(redirect("/de/products/rot"))).result,
        ShadowResult::Match
    );
    let c = run(Ok(old), Ok(redirect("https://shop.example/de/")));
    assert_eq!(kinds(&c), vec![MismatchKind::Redirect]);
    assert_eq!(c.mismatches[0].old, "https://shop.example/de/products/rot");
    let c = run(
        Ok(redirect("/a")),
        Ok(Answer {
            status: 302,
            ..Answer::default()
        }),
    );
    assert_eq!(c.mismatches[0].new, "(none)");
}

#[test]
fn content_type_compares_the_media_type_only() {
    let typed = |ct: &str| {
        Answer::from_head(200, &{
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, ct.parse().unwrap());
            h
        })
    };
    assert_eq!(
        run(
            Ok(typed("text/html; charset=UTF-8")),
            Ok(typed("TEXT/HTML"))
        )
        .result,
        ShadowResult::Match
    );
    let c = run(Ok(typed("text/html")), Ok(typed("application/json")));
    assert_eq!(kinds(&c), vec![MismatchKind::ContentType]);
    assert_eq!(media_type(" ; x"), None);
    assert!(is_html(Some("application/xhtml+xml")) && !is_html(None));
}

#[test]
fn failures_are_errors_or_timeouts_and_nothing_else_is_compared() {
    let c = run(Ok(page("a", OLD_URL)), Err(Failure::Timeout));
    assert_eq!(c.result, ShadowResult::Error);
    assert_eq!(kinds(&c), vec![MismatchKind::Timeout]);
    assert_eq!(
        (c.mismatches[0].old.as_str(), c.mismatches[0].new.as_str()),
        ("200", "timeout")
    );
    let c = run(
        Err(Failure::Error("refused".into())),
        Ok(page("b", NEW_URL)),
    );
    assert_eq!(kinds(&c), vec![MismatchKind::Error]);
    assert_eq!(c.mismatches[0].old, "error: refused");
    let c = run(Err(Failure::Error("x".into())), Err(Failure::Timeout));
    assert_eq!(kinds(&c), vec![MismatchKind::Timeout]);
}

#[test]
fn labels_are_fixed_and_indexed_in_order() {
    for (i, kind) in MismatchKind::ALL.iter().enumerate() {
        assert_eq!(kind.index(), i);
    }
    let labels: Vec<&str> = MismatchKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        labels,
        [
            "status",
            "missing_on_new",
            "redirect",
            "canonical",
            "title",
            "robots",
            "hreflang",
            "h1",
            "content_type",
            "error",
            "timeout"
        ]
    );
    let results: Vec<&str> = ShadowResult::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(results, ["match", "mismatch", "error", "dropped"]);
    assert_eq!(
        serde_json::to_string(&MismatchKind::MissingOnNew).unwrap(),
        "\"missing_on_new\""
    );
}
