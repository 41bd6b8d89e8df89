//! Unit tests of the new storefront's evidence on inventoried URLs ([`OnNew`]): what it
//! records, what it never adds, the verdicts it gives and its line in the file.

use super::*;
use http::{Method, StatusCode};

fn inv() -> Inventory {
    Inventory::new(100, KeyPolicy::default(), CrawlerMatcher::default())
}

fn on_new(inv: &Inventory, url: &str) -> OnNew {
    inv.entries()
        .into_iter()
        .find(|e| e.url == url)
        .unwrap_or_else(|| panic!("{url} not inventoried"))
        .on_new
}

/// An oracle that knows nothing but one redirect (`/moved` -> `/home`) and one rule (`/help`).
struct PlanOnly;

impl CoverageOracle for PlanOnly {
    fn redirect_target(&self, _: &str, url: &str) -> Option<(String, u16)> {
        (url == "/moved").then(|| ("/home".to_string(), 301))
    }
    fn is_gone(&self, _: &str, _: &str) -> bool {
        false
    }
    fn kept_on_old_by_rule(&self, _: &str, url: &str) -> bool {
        url.starts_with("/help")
    }
    fn same_path_on_new_known(&self, _: &str, _: &str) -> bool {
        false
    }
}

const GET: Method = Method::GET;

#[test]
fn new_answers_mark_inventoried_urls_only_and_the_latest_wins() {
    let i = inv();
    i.record(&GET, "", "/shoes/Red", StatusCode::OK, b"");
    // Keyed like the plan: another spelling of the same URL.
    assert_eq!(
        i.observe_new(&GET, "", "/shoes/red/", StatusCode::OK),
        Recorded::Counted
    );
    assert_eq!(on_new(&i, "/shoes/red"), OnNew::Served);
    let hits = i.entries()[0].hits;
    assert_eq!(hits, 1, "new's answers are evidence, never old-store hits");
    assert_eq!(
        i.observe_new(&GET, "", "/shoes/red", StatusCode::NOT_FOUND),
        Recorded::Counted
    );
    assert_eq!(on_new(&i, "/shoes/red"), OnNew::Missing);
    // Says nothing about the page: unchanged.
    for s in [StatusCode::MOVED_PERMANENTLY, StatusCode::BAD_GATEWAY] {
        assert_eq!(
            i.observe_new(&GET, "", "/shoes/red", s),
            Recorded::NotEligible
        );
    }
    assert_eq!(
        i.observe_new(&Method::POST, "", "/shoes/red", StatusCode::OK),
        Recorded::NotEligible
    );
    assert_eq!(on_new(&i, "/shoes/red"), OnNew::Missing);
    // A URL only new knows does not come in: the inventory lists the old store's URLs.
    assert_eq!(
        i.observe_new(&GET, "", "/only-on-new", StatusCode::OK),
        Recorded::NotInventoried
    );
    assert_eq!(i.len(), 1);
    assert_eq!(
        i.observe_new(&GET, "", "/bad%zz", StatusCode::OK),
        Recorded::NoKey
    );
}

#[test]
fn a_fallback_answer_is_an_old_store_hit_and_marks_the_url() {
    let i = inv();
    assert_eq!(
        i.record_fallback(&GET, "", "/only-old", StatusCode::OK, b"Googlebot"),
        Recorded::Added
    );
    let e = &i.entries()[0];
    assert_eq!((e.hits, e.crawler_hits, e.last_status), (1, 1, 200));
    assert!(e.sources.traffic);
    assert_eq!(e.on_new, OnNew::FallbackServed);
    // A later shopper on old leaves the evidence about new alone; new gaining the page ends it.
    i.record(&GET, "", "/only-old", StatusCode::OK, b"");
    assert_eq!(on_new(&i, "/only-old"), OnNew::FallbackServed);
    i.observe_new(&GET, "", "/only-old", StatusCode::OK);
    assert_eq!(on_new(&i, "/only-old"), OnNew::Served);
    assert_eq!(
        i.record_fallback(&GET, "", "/x", StatusCode::NOT_FOUND, b""),
        Recorded::NotEligible
    );
}

#[test]
fn evidence_gives_same_path_and_fallback_served_after_the_plan_and_the_rules() {
    let i = inv();
    for url in [
        "/served",
        "/fell-back",
        "/missing",
        "/unseen",
        "/moved",
        "/help/faq",
    ] {
        i.record(&GET, "", url, StatusCode::OK, b"");
    }
    i.observe_new(&GET, "", "/served", StatusCode::OK);
    i.record_fallback(&GET, "", "/fell-back", StatusCode::OK, b"");
    i.observe_new(&GET, "", "/missing", StatusCode::NOT_FOUND);
    // The plan and the rules decide before evidence: new's 200 on a redirected URL does not
    // make it same_path.
    i.observe_new(&GET, "", "/moved", StatusCode::OK);
    i.record_fallback(&GET, "", "/help/faq", StatusCode::OK, b"");
    let r = CoverageReport::build(&i.entries(), &PlanOnly);
    let verdict = |url: &str| {
        let row = r.rows.iter().find(|r| r.old_url == url).unwrap();
        (row.verdict, row.new_url.clone())
    };
    assert_eq!(
        verdict("/served"),
        (Verdict::SamePath, Some("/served".into()))
    );
    assert_eq!(verdict("/fell-back"), (Verdict::FallbackServed, None));
    assert_eq!(verdict("/missing"), (Verdict::Uncovered, None));
    assert_eq!(verdict("/unseen"), (Verdict::Uncovered, None));
    assert_eq!(
        verdict("/moved"),
        (Verdict::Redirected, Some("/home".into()))
    );
    assert_eq!(verdict("/help/faq"), (Verdict::KeptOnOld, None));
    // Served by the fallback is not coverage: listed with the uncovered, weighed out.
    assert!(!Verdict::FallbackServed.is_covered());
    assert_eq!(r.covered_urls, 3);
    assert_eq!(r.uncovered().count(), 3);
    let mut csv = Vec::new();
    r.write_csv(&mut csv, true).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains("/fell-back,2,0,fallback_served,\n"), "{csv}");
    assert_eq!(coverage_of_hits(&i.entries(), &PlanOnly), Some(4.0 / 8.0));
}

#[test]
fn the_file_keeps_the_evidence_and_reads_files_without_it() {
    let i = inv();
    for url in ["/a", "/b", "/c", "/d"] {
        i.record_at("", url, 200, b"", 1_767_225_600);
    }
    i.observe_new(&GET, "", "/a", StatusCode::OK);
    i.observe_new(&GET, "", "/b", StatusCode::GONE);
    i.record_fallback(&GET, "", "/c", StatusCode::OK, b"");
    let text = persist::encode(&i.entries());
    let s = String::from_utf8_lossy(&text);
    assert!(s.contains("\ttraffic+new_served\t-\t/a\n"), "{s}");
    assert!(s.contains("\ttraffic+new_missing\t-\t/b\n"), "{s}");
    assert!(s.contains("\ttraffic+fallback_served\t-\t/c\n"), "{s}");
    assert!(s.contains("\ttraffic\t-\t/d\n"), "{s}");
    let back = persist::decode("inventory.txt", &text).unwrap();
    let restored = inv();
    restored.restore(back);
    for (url, want) in [
        ("/a", OnNew::Served),
        ("/b", OnNew::Missing),
        ("/c", OnNew::FallbackServed),
        ("/d", OnNew::Unseen),
    ] {
        assert_eq!(on_new(&restored, url), want, "{url}");
    }
    let bad = s.replace("traffic+new_served", "traffic+new_shiny");
    let body_end = bad.rfind("end crc32=").unwrap();
    let crc = crc32fast::hash(&bad.as_bytes()[..body_end]);
    let bad = format!("{}end crc32={crc:08x}\n", &bad[..body_end]);
    let e = persist::decode("inventory.txt", bad.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("traffic+new_shiny"), "{e}");
}
