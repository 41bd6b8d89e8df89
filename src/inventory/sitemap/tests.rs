use super::*;

fn urls(p: Parsed) -> Vec<String> {
    match p {
        Parsed::UrlSet(l) | Parsed::Index(l) => l.into_iter().map(|l| l.url).collect(),
    }
}

fn malformed(data: &[u8]) -> (usize, String) {
    match parse("s.xml", data).unwrap_err() {
        SitemapError::Malformed {
            source_name,
            line,
            reason,
        } => {
            assert_eq!(source_name, "s.xml");
            (line, reason)
        }
        e => panic!("{e}"),
    }
}

#[test]
fn urlset_with_extensions_entities_and_cdata() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
    xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url>
<loc> https://old.example/index.php?route=product&amp;id=1 </loc>
<lastmod>2024-01-01</lastmod>
<image:image><image:loc>https://old.example/img.jpg</image:loc></image:image>
  </url>
  <url><loc><![CDATA[https://old.example/a&b]]></loc></url>
  <url><loc>https://old.example/caf&#233;</loc></url>
</urlset>"#;
    let p = parse("s.xml", xml.as_bytes()).unwrap();
    assert!(matches!(p, Parsed::UrlSet(_)));
    assert_eq!(
        urls(p),
        [
            "https://old.example/index.php?route=product&id=1",
            "https://old.example/a&b",
            "https://old.example/café"
        ]
    );
}

#[test]
fn index_lists_sitemaps_with_lines() {
    let xml = "<sitemapindex>\n<sitemap><loc>a.xml</loc></sitemap>\n<sitemap>\n<loc>b.xml.gz</loc>\n</sitemap>\n</sitemapindex>\n";
    match parse("i.xml", xml.as_bytes()).unwrap() {
        Parsed::Index(l) => assert_eq!(
            l,
            [
                Loc {
                    url: "a.xml".into(),
                    line: 2
                },
                Loc {
                    url: "b.xml.gz".into(),
                    line: 4
                }
            ]
        ),
        p => panic!("{p:?}"),
    }
}

#[test]
fn malformed_files_name_the_line() {
    let cases: [(&str, usize, &str); 10] = [
        (
            "<urlset>\n<url><loc>/a</loc></url>\n<url><loc>/b</lo></url>\n</urlset>",
            3,
            "malformed XML",
        ),
        ("<urlset>\n<url><loc>/a</loc>\n", 3, "ends inside <url>"),
        ("<html>\n</html>", 1, "neither <urlset>"),
        (
            "<urlset>\n<url><lastmod>x</lastmod></url>\n</urlset>",
            2,
            "without <loc>",
        ),
        (
            "<urlset>\n<url><loc> </loc></url>\n</urlset>",
            2,
            "empty <loc>",
        ),
        ("<urlset>\n<url><loc/></url>\n</urlset>", 2, "empty <loc/>"),
        (
            "<urlset>\n<url><loc>/a</loc><loc>/b</loc></url>\n</urlset>",
            2,
            "two <loc>",
        ),
        (
            "<urlset><url><loc>/a&nbsp;</loc></url></urlset>",
            1,
            "unknown entity",
        ),
        ("", 1, "no <urlset>"),
        ("<urlset/>", 1, "empty root"),
    ];
    for (xml, line, want) in cases {
        let (l, reason) = malformed(xml.as_bytes());
        assert!(reason.contains(want), "{xml:?}: {reason}");
        assert_eq!(l, line, "{xml:?}: {reason}");
    }
    let (l, r) = malformed(b"<urlset>\n\xff</urlset>");
    assert_eq!((l, r.contains("UTF-8")), (2, true));
}

#[test]
fn gzip_is_detected_by_magic_bytes() {
    use std::io::Write;
    let xml = "<urlset><url><loc>https://old.example/x</loc></url></urlset>";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(xml.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(
        urls(parse("s.xml", &gz).unwrap()),
        ["https://old.example/x"]
    );
    let (line, reason) = malformed(&gz[..gz.len() / 2]);
    assert_eq!(line, 1);
    assert!(reason.contains("gzip"), "{reason}");
}

#[test]
fn protocol_limits_are_enforced() {
    let mut xml = String::from("<urlset>");
    for i in 0..=MAX_URLS {
        xml.push_str(&format!("<url><loc>/p{i}</loc></url>"));
    }
    xml.push_str("</urlset>");
    let e = parse("big.xml", xml.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("more than 50000"), "{e}");
    // 50 MB uncompressed, even when the gzip is small.
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"<urlset>").unwrap();
    gz.write_all(&vec![b' '; MAX_BYTES]).unwrap();
    gz.write_all(b"</urlset>").unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < MAX_BYTES / 100);
    let e = parse("bomb.xml.gz", &gz).unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
}

#[test]
fn index_children_resolve_relative_to_the_index() {
    let f = Source::File(PathBuf::from("/data/maps/index.xml"));
    assert_eq!(f.child("a.xml").name(), "/data/maps/a.xml");
    assert_eq!(
        f.child("https://x.example/b.xml").name(),
        "https://x.example/b.xml"
    );
    let u = Source::Url("http://127.0.0.1:8/maps/index.xml".into());
    assert_eq!(u.child("a.xml").name(), "http://127.0.0.1:8/maps/a.xml");
    assert_eq!(u.child("/top.xml").name(), "http://127.0.0.1:8/top.xml");
}

#[test]
fn locs_are_keyed_like_the_plan() {
    let mut out = SitemapUrls::default();
    let locs = vec![
        Loc {
            url: "https://Old.Example/Shoes/Red/?utm_source=x#top".into(),
            line: 3,
        },
        Loc {
            url: "/about".into(),
            line: 4,
        },
        Loc {
            url: "https://old.example/bad%zz".into(),
            line: 5,
        },
    ];
    key_locs("s.xml", locs, &KeyPolicy::default(), &mut out).unwrap();
    assert_eq!(
        out.urls,
        [
            (String::new(), "/shoes/red".into()),
            (String::new(), "/about".into())
        ]
    );
    assert_eq!(out.skipped.len(), 1);
    assert!(out.skipped[0].starts_with("s.xml:5: "), "{:?}", out.skipped);
    let per_host = KeyPolicy::from_table(
        &crate::redirects::TableConfig::with_defaults("t", "f"),
        true,
    );
    let mut out = SitemapUrls::default();
    key_locs(
        "s.xml",
        vec![Loc {
            url: "https://Old.Example/a".into(),
            line: 1,
        }],
        &per_host,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.urls, [("old.example".into(), "/a".into())]);
    let e = key_locs(
        "s.xml",
        vec![Loc {
            url: "ftp://x/a".into(),
            line: 7,
        }],
        &per_host,
        &mut out,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("sitemap s.xml:7: "), "{e}");
}
