//! Sitemap import with real files (plain, gzip, index with relative entries) and a real hyper
//! server on 127.0.0.1 for indexes and sitemaps fetched over HTTP. A malformed file anywhere
//! imports nothing.

use bytes::Bytes;
use cutover::inventory::{sitemap, CrawlerMatcher, Inventory, KeyPolicy, SitemapError};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn inv(cap: usize) -> Inventory {
    Inventory::new(cap, KeyPolicy::default(), CrawlerMatcher::default())
}

fn urlset(urls: &[String]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
    for u in urls {
        s.push_str(&format!(
            "  <url><loc>{u}</loc><lastmod>2025-01-01</lastmod></url>\n"
        ));
    }
    s.push_str("</urlset>\n");
    s
}

fn index(locs: &[&str]) -> String {
    let mut s = String::from("<?xml version=\"1.0\"?>\n<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
    for l in locs {
        s.push_str(&format!("  <sitemap><loc>{l}</loc></sitemap>\n"));
    }
    s.push_str("</sitemapindex>\n");
    s
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn pages(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("https://old.example/{prefix}/{i}"))
        .collect()
}

fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    p.display().to_string()
}

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn index_with_plain_and_gzip_sitemaps_imports_every_url() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "maps/products.xml",
        urlset(&pages("Products", 300)),
    );
    write(
        dir.path(),
        "maps/sub/pages.xml.gz",
        gzip(urlset(&pages("pages", 20)).as_bytes()),
    );
    let idx = write(
        dir.path(),
        "maps/index.xml",
        index(&["products.xml", "sub/pages.xml.gz"]),
    );
    let i = inv(10_000);
    i.record_at("", "/products/7", 200, b"", 1);
    let r = sitemap::import(&i, &idx, T).await.unwrap();
    assert_eq!(r.read.files.len(), 3);
    assert_eq!(r.read.urls.len(), 320);
    assert_eq!(r.added, 319, "/products/7 was already counted");
    assert_eq!(i.len(), 320);
    let e = i.entries();
    let seven = e.iter().find(|e| e.url == "/products/7").unwrap();
    assert!(seven.sources.traffic && seven.sources.sitemap && seven.hits == 1);
    assert!(e.iter().all(|e| e.sources.sitemap));
    assert!(e.iter().any(|e| e.url == "/pages/19"));
}

#[tokio::test]
async fn a_single_gzip_sitemap_imports() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "sitemap.xml.gz",
        gzip(urlset(&pages("a", 5)).as_bytes()),
    );
    let i = inv(100);
    assert_eq!(sitemap::import(&i, &f, T).await.unwrap().added, 5);
}

#[tokio::test]
async fn a_malformed_file_in_an_index_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.xml", urlset(&pages("good", 10)));
    let bad = write(
        dir.path(),
        "bad.xml",
        "<urlset>\n<url><loc>https://old.example/a</loc></url>\n<url><loc>https://old.example/b</url>\n</urlset>\n",
    );
    let idx = write(dir.path(), "index.xml", index(&["good.xml", "bad.xml"]));
    let i = inv(100);
    let e = sitemap::import(&i, &idx, T).await.unwrap_err();
    match &e {
        SitemapError::Malformed {
            source_name, line, ..
        } => {
            assert_eq!(source_name, &bad);
            assert_eq!(*line, 3);
        }
        other => panic!("{other}"),
    }
    assert!(
        e.to_string()
            .starts_with(&format!("sitemap {bad}:3: malformed XML")),
        "{e}"
    );
    assert!(i.is_empty(), "nothing imported");
}

#[tokio::test]
async fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let idx = write(dir.path(), "index.xml", index(&["missing.xml"]));
    let e = sitemap::import(&inv(10), &idx, T).await.unwrap_err();
    assert!(matches!(e, SitemapError::Read { .. }), "{e}");
    assert!(e.to_string().contains("missing.xml"), "{e}");
    // Nested indexes are refused, with the line of the entry.
    write(dir.path(), "inner.xml", index(&["x.xml"]));
    let outer = write(dir.path(), "outer.xml", index(&["inner.xml"]));
    let e = sitemap::import(&inv(10), &outer, T).await.unwrap_err();
    assert!(
        e.to_string().contains("outer.xml:3: ") && e.to_string().contains("itself a sitemap index"),
        "{e}"
    );
    // A corrupted gzip file.
    let gz = gzip(urlset(&pages("a", 50)).as_bytes());
    let f = write(dir.path(), "cut.xml.gz", &gz[..gz.len() - 20]);
    let e = sitemap::import(&inv(10), &f, T).await.unwrap_err();
    assert!(e.to_string().contains("gzip data is damaged"), "{e}");
    // More sitemap URLs than the inventory can pin: nothing imported.
    let f = write(dir.path(), "many.xml", urlset(&pages("m", 100)));
    let i = inv(32);
    let e = sitemap::import(&i, &f, T).await.unwrap_err();
    assert!(
        matches!(e, SitemapError::Limit { .. }) && e.to_string().contains("inventory.capacity"),
        "{e}"
    );
    assert!(i.is_empty());
}

/// A static site on 127.0.0.1: path -> (status, body); `/hang` never answers.
async fn site(files: HashMap<&'static str, (u16, Vec<u8>)>) -> String {
    let files = Arc::new(files);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let files = files.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let files = files.clone();
                    async move {
                        if req.uri().path() == "/hang" {
                            std::future::pending::<()>().await;
                        }
                        let (status, body) = files
                            .get(req.uri().path())
                            .cloned()
                            .unwrap_or((404, b"not found".to_vec()));
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .body(http_body_util::Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_index_fetched_over_http_follows_relative_and_absolute_entries() {
    let dir = tempfile::tempdir().unwrap();
    // The absolute entry points at the same server: its address is known only once it runs,
    // so the index names a relative path and an absolute path.
    let base = site(HashMap::from([
        (
            "/maps/index.xml",
            (200, index(&["a.xml.gz", "/top.xml"]).into_bytes()),
        ),
        (
            "/maps/a.xml.gz",
            (200, gzip(urlset(&pages("a", 3)).as_bytes())),
        ),
        ("/top.xml", (200, urlset(&pages("top", 2)).into_bytes())),
    ]))
    .await;
    let i = inv(100);
    let r = sitemap::import(&i, &format!("{base}/maps/index.xml"), T)
        .await
        .unwrap();
    assert_eq!(r.added, 5);
    assert_eq!(
        r.read.files,
        [
            format!("{base}/maps/index.xml"),
            format!("{base}/maps/a.xml.gz"),
            format!("{base}/top.xml")
        ]
    );
    // A local index may list http(s) sitemaps.
    let idx = write(
        dir.path(),
        "index.xml",
        index(&[&format!("{base}/top.xml")]),
    );
    let i = inv(100);
    assert_eq!(sitemap::import(&i, &idx, T).await.unwrap().added, 2);
}

#[tokio::test]
async fn fetch_failures_name_the_url_and_import_nothing() {
    let base = site(HashMap::from([
        (
            "/index.xml",
            (200, index(&["ok.xml", "missing.xml"]).into_bytes()),
        ),
        ("/ok.xml", (200, urlset(&pages("ok", 3)).into_bytes())),
        ("/hang-index.xml", (200, index(&["/hang"]).into_bytes())),
    ]))
    .await;
    let i = inv(100);
    let e = sitemap::import(&i, &format!("{base}/index.xml"), T)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("sitemap {base}/missing.xml: fetching: answered 404")
    );
    assert!(i.is_empty());
    let e = sitemap::import(
        &i,
        &format!("{base}/hang-index.xml"),
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("/hang: fetching: timed out"), "{e}");
    let e = sitemap::import(&i, "http://127.0.0.1:1/sitemap.xml", T)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("sitemap http://127.0.0.1:1/sitemap.xml: fetching: request failed"),
        "{e}"
    );
    assert!(i.is_empty());
}
