use super::*;

const PAGE: &str = "https://shop.example/category/shoes?page=2";

/// A page with every construct the tokenizer must get right, and decoys for each signal.
const DOC: &str = concat!(
    "\u{feff}<!DOCTYPE html>\n",
    "<!-- <title>commented title</title> <link rel=canonical href=/decoy> -->\n",
    "<!-->text after an abrupt empty comment<!--->and another\n",
    "<HTML lang=en><HEAD>\n",
    "<?xml-stylesheet href=\"x\"?>\n",
    "<script>var s = '<title>in script</title>'; if (a<b && c>d) {} // </scrip t>\n",
    "document.write('<link rel=\"canonical\" href=\"/script-decoy\">');</SCRIPT >\n",
    "<style>h1 > a { content: '<h1>' } </styles> still style</style>\n",
    "<Title data-x='a>b'>\n  Men&#39;s   Shoes &amp; Boots\t&ndash; Page 2 </tItle>\n",
    "<base href='/category/'>\n",
    "<link href=\"shoes?page=2&amp;sort=price\" data-note=\"a > b\" REL=\"Canonical\">\n",
    "<link rel='canonical' href='/second-canonical-ignored'>\n",
    "<link rel=alternate hreflang=de-DE href=https://shop.example/de/schuhe>\n",
    "<link rel=\"alternate\" hreflang=\"en\" href=\"../en/shoes\" />\n",
    "<link rel=\"stylesheet alternate\" href=\"/alt.css\">\n",
    "<meta name=\"ROBOTS\" content=\"NoIndex,  follow\">\n",
    "<meta content='max-snippet:50, noindex' name=robots>\n",
    "<meta name=description content=\"<h1>not a heading</h1>\">\n",
    "</head><body>\n",
    "<svg><title>an icon</title></svg>\n",
    "<textarea><h1>typed</h1></textarea>\n",
    "<h1 class=x>Shoes</h1><p>a < b, 1<2</p>\n",
    "</body></html>\n",
);

fn expected() -> HtmlSignals {
    let mut hreflang = BTreeMap::new();
    hreflang.insert("de-de".into(), "https://shop.example/de/schuhe".into());
    hreflang.insert("en".into(), "https://shop.example/en/shoes".into());
    HtmlSignals {
        title: Some("Men's Shoes & Boots – Page 2".into()),
        canonical: Some("https://shop.example/category/shoes?page=2&sort=price".into()),
        robots: Some("follow, max-snippet:50, noindex".into()),
        hreflang,
        has_h1: true,
        truncated: false,
    }
}

fn extract(chunks: &[&[u8]], limit: usize) -> HtmlSignals {
    let mut x = HtmlExtractor::new(PAGE, limit);
    for c in chunks {
        if x.feed(c) == Feed::Enough {
            break;
        }
    }
    x.finish()
}

#[test]
fn reads_every_signal_and_skips_every_decoy() {
    assert_eq!(extract(&[DOC.as_bytes()], DEFAULT_LIMIT), expected());
}

#[test]
fn same_signals_when_split_at_every_byte_offset() {
    let doc = DOC.as_bytes();
    let want = expected();
    for at in 0..=doc.len() {
        let got = extract(&[&doc[..at], &doc[at..]], DEFAULT_LIMIT);
        assert_eq!(got, want, "split at byte {at}");
    }
}

#[test]
fn same_signals_fed_one_byte_at_a_time() {
    let doc = DOC.as_bytes();
    let chunks: Vec<&[u8]> = doc.chunks(1).collect();
    assert_eq!(extract(&chunks, DEFAULT_LIMIT), expected());
}

#[test]
fn same_signals_split_in_three_at_many_offset_pairs() {
    let doc = DOC.as_bytes();
    let want = expected();
    for a in (0..doc.len()).step_by(5) {
        for b in (a..=doc.len()).step_by(11) {
            let got = extract(&[&doc[..a], &doc[a..b], &doc[b..]], DEFAULT_LIMIT);
            assert_eq!(got, want, "split at {a} and {b}");
        }
    }
}

#[test]
fn the_limit_cuts_the_body_and_says_so() {
    let at = DOC.find("<h1 class").unwrap();
    let got = extract(&[DOC.as_bytes()], at);
    assert!(!got.has_h1, "the h1 is after the limit");
    assert!(got.truncated);
    assert_eq!(
        got.title,
        expected().title,
        "signals before the limit are kept"
    );

    // Fed in small chunks, the limit holds across them too.
    let chunks: Vec<&[u8]> = DOC.as_bytes().chunks(7).collect();
    let got = extract(&chunks, at);
    assert!(!got.has_h1 && got.truncated);
}

#[test]
fn stops_early_once_every_signal_is_known() {
    let mut x = HtmlExtractor::new(PAGE, DEFAULT_LIMIT);
    assert_eq!(
        x.feed(b"<html><head><title>T</title></head><body>"),
        Feed::More
    );
    assert_eq!(x.feed(b"<h1>x</h1>"), Feed::Enough);
    let s = x.finish();
    assert!(s.has_h1 && !s.truncated);
}

#[test]
fn an_abruptly_closed_comment_ends_at_its_own_bracket() {
    let got = extract(&[b"<!--><title>Real</title>"], DEFAULT_LIMIT);
    assert_eq!(got.title.as_deref(), Some("Real"));
    let got = extract(&[b"<!-- --!> <title>Hidden</title> -->"], DEFAULT_LIMIT);
    assert_eq!(
        got.title, None,
        "`--!>` does not close here; a browser would, rarely matters"
    );
}

#[test]
fn absent_signals_are_none_and_empty_title_is_some() {
    let got = extract(&[b"<html><title></title><p>hi"], DEFAULT_LIMIT);
    assert_eq!(got.title.as_deref(), Some(""));
    assert_eq!(got.canonical, None);
    assert_eq!(got.robots, None);
    assert!(got.hreflang.is_empty());
    assert!(!got.has_h1);
    let got = extract(&[b"plain text, not html < > &amp;"], DEFAULT_LIMIT);
    assert_eq!(got, HtmlSignals::default());
}

#[test]
fn an_oversized_tag_is_skipped_but_parsing_continues() {
    let mut doc = String::from("<link rel=canonical data-x=\"");
    doc.push_str(&"x".repeat(MAX_TAG_BYTES * 2));
    doc.push_str("\" href=/huge><title>After</title><link rel=canonical href=/ok>");
    let got = extract(&[doc.as_bytes()], DEFAULT_LIMIT);
    assert_eq!(got.canonical.as_deref(), Some("https://shop.example/ok"));
    assert_eq!(got.title.as_deref(), Some("After"));
}

#[test]
fn the_title_is_bounded() {
    let doc = format!("<title>{}</title><h1>", "a".repeat(MAX_TITLE_BYTES * 3));
    let got = extract(&[doc.as_bytes()], DEFAULT_LIMIT);
    assert_eq!(got.title.unwrap().len(), MAX_TITLE_BYTES);
    assert!(got.has_h1);
}

#[test]
fn an_unterminated_script_swallows_the_rest() {
    let got = extract(
        &[b"<script>if (x) { </scriptx> <title>no</title> <h1>"],
        DEFAULT_LIMIT,
    );
    assert_eq!(got, HtmlSignals::default());
}

#[test]
fn invalid_utf8_is_replaced_not_rejected() {
    let got = extract(&[b"<title>caf\xe9</title>"], DEFAULT_LIMIT);
    assert_eq!(got.title.as_deref(), Some("caf\u{fffd}"));
}

#[test]
fn attribute_forms() {
    let attrs = attributes(b" a=1 B='two words' c=\"x&amp;y\" d e = f /g=h a=dup");
    assert_eq!(
        attrs,
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "two words".into()),
            ("c".into(), "x&y".into()),
            ("d".into(), String::new()),
            ("e".into(), "f".into()),
            ("g".into(), "h".into()),
        ]
    );
    assert_eq!(attribute(b" href='/x", "href").as_deref(), Some("/x"));
}
