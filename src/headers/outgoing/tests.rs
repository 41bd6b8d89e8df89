use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};

use super::*;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static STOREFRONT: HeaderName = HeaderName::from_static("x-cutover-storefront");
static OVERRIDE: HeaderName = HeaderName::from_static("x-cutover-force");
static TOKEN: HeaderName = HeaderName::from_static("x-cutover-token");

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// Header lines as written, read back into a map.
fn read_back(out: &[u8]) -> HeaderMap {
    let text = std::str::from_utf8(out).unwrap();
    let mut h = HeaderMap::new();
    for line in text.split_terminator("\r\n") {
        let (name, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

/// Every name with its values in order, for comparing two maps.
fn lines(h: &HeaderMap) -> Vec<(String, Vec<String>)> {
    let mut names: Vec<String> = h.keys().map(|n| n.to_string()).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let values = h
                .get_all(&n)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            (n, values)
        })
        .collect()
}

#[test]
fn writing_the_headers_equals_applying_them_to_the_map() {
    let shop = HeaderValue::from_static("shop.example");
    let quoted = HeaderValue::from_static("shop\"example");
    let upstream = HeaderValue::from_static("10.1.1.1:8080");
    let id = HeaderValue::from_static("abc123");
    let new = HeaderValue::from_static("new");
    let inputs = [
        map(&[
            ("host", "shop.example"),
            ("accept", "*/*"),
            ("cookie", "a=1"),
        ]),
        map(&[
            ("host", "shop.example"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", " "),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "edge.example"),
            ("forwarded", "for=1.1.1.1"),
            ("via", "1.1 edge"),
            ("via", "1.1 lb"),
            ("x-request-id", "from-the-shopper"),
            ("x-cutover-storefront", "spoofed"),
            ("x-cutover-force", "new"),
            ("x-cutover-token", "secret"),
            ("content-length", "0"),
            ("x-other", "kept"),
            ("x-other", "twice"),
        ]),
        map(&[("accept", "*/*"), ("x-forwarded-host", "edge.example")]),
    ];
    let mut checked = 0;
    for input in &inputs {
        for client in ["10.0.0.9".parse().unwrap(), "2001:db8::1".parse().unwrap()] {
            for hop_host in [None, Some(&shop), Some(&quoted)] {
                for trust_forwarded in [false, true] {
                    for via in [None, Some(Version::HTTP_11), Some(Version::HTTP_2)] {
                        for host in [None, Some(&shop), Some(&upstream)] {
                            for decision in [false, true] {
                                let o = Outgoing {
                                    hop: Hop {
                                        client,
                                        proto: "https",
                                        host: hop_host,
                                    },
                                    trust_forwarded,
                                    via,
                                    host,
                                    remove: [&OVERRIDE, &TOKEN],
                                    set: [
                                        Some((&REQUEST_ID, &id)),
                                        decision.then_some((&STOREFRONT, &new)),
                                        None,
                                        None,
                                    ],
                                };
                                let mut applied = input.clone();
                                o.apply(&mut applied);
                                let mut out = Vec::new();
                                o.write(&mut out, input, true);
                                assert_eq!(
                                    lines(&read_back(&out)),
                                    lines(&applied),
                                    "{o:?} on {input:?}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 2 * 3 * 2 * 3 * 3 * 2);
}

#[test]
fn the_writer_frames_bodies_itself() {
    let o = Outgoing {
        hop: Hop {
            client: "10.0.0.9".parse().unwrap(),
            proto: "http",
            host: None,
        },
        trust_forwarded: false,
        via: None,
        host: None,
        remove: [&OVERRIDE, &TOKEN],
        set: [None; 4],
    };
    let input = map(&[
        ("content-length", "5"),
        ("transfer-encoding", "chunked"),
        ("a", "1"),
    ]);
    let mut out = Vec::new();
    o.write(&mut out, &input, false);
    let written = read_back(&out);
    assert!(!written.contains_key(CONTENT_LENGTH));
    assert!(!written.contains_key(TRANSFER_ENCODING));
    assert_eq!(written["a"], "1");
    out.clear();
    o.write(&mut out, &input, true);
    assert_eq!(read_back(&out)[CONTENT_LENGTH], "5");
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "content-length: 5\r\na: 1\r\nx-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\nforwarded: for=10.0.0.9;proto=http\r\n"
    );
}
