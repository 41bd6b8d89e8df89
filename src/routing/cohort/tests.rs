//! The cohort cookie's format, signing, key rotation and buckets.

use super::*;
use http::HeaderValue;

fn ids(name: &str) -> Option<StorefrontId> {
    match name {
        "old" => Some(0),
        "new" => Some(1),
        _ => None,
    }
}
fn names(id: StorefrontId) -> String {
    ["old", "new"][id].to_string()
}

/// The value and header as `format!` wrote them before `set_cookie`: the oracle.
fn by_format(policy: &CohortPolicy, cookie: &CohortCookie, secure: bool) -> String {
    let mut payload = format!("v1.{}.", cookie.bucket);
    match cookie.pin {
        None => payload.push('-'),
        Some(pin) => {
            let kind = match pin.kind {
                PinKind::Split => 's',
                PinKind::Override => 'o',
            };
            payload += &format!("{kind}~{}~{}", names(pin.storefront), pin.issued);
        }
    }
    let mac = policy.keys.mac(&payload);
    format!(
        "{}={payload}.{mac:016x}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        policy.cookie,
        policy.max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[test]
fn set_cookie_is_what_format_wrote_byte_for_byte() {
    let mut rng = fastrand::Rng::with_seed(22);
    let mut policy = CohortPolicy {
        cookie: "cutover_cohort".into(),
        max_age: Duration::from_secs(2_592_000),
        session_cookie: None,
        keys: CohortKeys::derive("secret"),
        pinning: true,
        pin_ttl: Duration::from_secs(3600),
        default_key: false,
    };
    let mut short_macs = 0;
    for i in 0..2000u32 {
        if i == 1000 {
            policy.cookie = "c".into();
            policy.max_age = Duration::ZERO;
            policy.keys = CohortKeys::derive("another");
        }
        let pin = (i % 3 != 0).then(|| Pin {
            storefront: rng.usize(0..2),
            kind: if rng.bool() {
                PinKind::Split
            } else {
                PinKind::Override
            },
            issued: match i % 4 {
                0 => 0,
                1 => u64::MAX,
                _ => rng.u64(..),
            },
        });
        let cookie = CohortCookie {
            bucket: if i < 10 { i as u16 } else { rng.u16(0..10_000) },
            pin,
        };
        let secure = i % 2 == 0;
        let header = set_cookie(&policy, &cookie, names, secure);
        assert_eq!(header, by_format(&policy, &cookie, secure));
        // The value part is `encode`'s, and it decodes to the cookie again (a time of
        // issue past 19 digits, u64::MAX here, is beyond what `decode` reads as a number).
        let value = encode(&cookie, &policy.keys, names);
        assert!(header.starts_with(&format!("{}={value};", policy.cookie)));
        if cookie
            .pin
            .is_none_or(|p| p.issued < 10_000_000_000_000_000_000)
        {
            assert_eq!(decode(&value, &policy.keys, ids).unwrap().cookie, cookie);
        }
        let mac = value.rsplit('.').next().unwrap();
        short_macs += usize::from(mac.starts_with('0'));
    }
    // Leading zeros of the MAC are written too (one in sixteen MACs has one).
    assert!(short_macs > 50, "{short_macs}");
}

#[test]
fn round_trip_with_and_without_pin() {
    let keys = CohortKeys::derive("secret");
    for cookie in [
        CohortCookie {
            bucket: 0,
            pin: None,
        },
        CohortCookie {
            bucket: 9999,
            pin: None,
        },
        CohortCookie {
            bucket: 42,
            pin: Some(Pin {
                storefront: 1,
                kind: PinKind::Override,
                issued: 1_764_330_000,
            }),
        },
    ] {
        let text = encode(&cookie, &keys, names);
        let back = decode(&text, &keys, ids).expect(&text);
        assert_eq!(back.cookie, cookie);
        assert!(!back.stale_pin);
    }
}

#[test]
fn forged_or_foreign_cookies_are_rejected() {
    let keys = CohortKeys::derive("secret");
    let good = encode(
        &CohortCookie {
            bucket: 5000,
            pin: None,
        },
        &keys,
        names,
    );
    assert!(decode(&good, &CohortKeys::derive("other"), ids).is_none());
    let forged = good.replacen("5000", "0001", 1);
    assert!(decode(&forged, &keys, ids).is_none());
    for junk in [
        "",
        "1234",
        "v1.1.-",
        "v1.99999.-.00",
        "v2.1.-.zz",
        "....",
        "v1.+5.-.00",
        "v1.5.-.00000000000000000",
    ] {
        assert!(decode(junk, &keys, ids).is_none(), "{junk}");
    }
}

#[test]
fn previous_keys_verify_but_never_sign() {
    let old = CohortKeys::derive("old-secret");
    let cookie = CohortCookie {
        bucket: 4321,
        pin: Some(Pin {
            storefront: 1,
            kind: PinKind::Split,
            issued: 1_764_330_000,
        }),
    };
    let by_old = encode(&cookie, &old, names);
    let rotated = CohortKeys::derive("new-secret").with_previous(&["other", "old-secret"]);
    let d = decode(&by_old, &rotated, ids).expect("a previous key still verifies");
    assert_eq!(d.cookie, cookie, "bucket and pin kept");
    assert!(d.signed_by_previous, "marked for re-signing");
    let by_new = encode(&cookie, &rotated, names);
    assert_ne!(
        by_new, by_old,
        "signed with the current key, not the previous one"
    );
    let d = decode(&by_new, &rotated, ids).unwrap();
    assert!(!d.signed_by_previous);
    assert!(
        decode(&by_new, &old, ids).is_none(),
        "the old key alone does not know the new one"
    );
    let dropped = CohortKeys::derive("new-secret");
    assert!(
        decode(&by_old, &dropped, ids).is_none(),
        "once removed from previous_keys, old cookies are foreign"
    );
    assert_eq!(
        rotated.bucket_of("sess"),
        CohortKeys::derive("new-secret").bucket_of("sess"),
        "session buckets follow the current key"
    );
}

#[test]
fn pin_to_removed_storefront_keeps_bucket() {
    let keys = CohortKeys::derive("k");
    let text = encode(
        &CohortCookie {
            bucket: 7,
            pin: Some(Pin {
                storefront: 1,
                kind: PinKind::Split,
                issued: 1,
            }),
        },
        &keys,
        |_| "gone",
    );
    let d = decode(&text, &keys, ids).unwrap();
    assert_eq!(
        d.cookie,
        CohortCookie {
            bucket: 7,
            pin: None
        }
    );
    assert!(d.stale_pin);
}

#[test]
fn session_buckets_are_stable_and_keyed() {
    let a = CohortKeys::derive("k1");
    let b = CohortKeys::derive("k1");
    let c = CohortKeys::derive("k2");
    assert_eq!(a.bucket_of("sess-123"), b.bucket_of("sess-123"));
    let differs = (0..100).any(|i| a.bucket_of(&format!("s{i}")) != c.bucket_of(&format!("s{i}")));
    assert!(differs);
}

#[test]
fn fresh_buckets_cover_evenly() {
    let fresh = FreshBuckets::new(12345);
    for share in [100u16, 1000, 5000, 9000] {
        let n = 20_000;
        let below = (0..n).filter(|_| fresh.next() < share).count();
        let got = below as f64 / n as f64;
        let want = f64::from(share) / 10_000.0;
        assert!((got - want).abs() < 0.002, "share {share}: {got}");
    }
}

#[test]
fn finds_cookie_among_several_headers() {
    let mut h = http::HeaderMap::new();
    h.append(COOKIE, "a=1; cutover_cohort=abc".parse().unwrap());
    h.append(COOKIE, "sid=\"xyz\"".parse().unwrap());
    assert_eq!(find_cookie(&h, "cutover_cohort"), Some("abc"));
    assert_eq!(find_cookie(&h, "sid"), Some("xyz"));
    assert_eq!(
        find_cookie(&h, "cutover"),
        None,
        "a prefix of a name is not the name"
    );
    // Spaces around `=`, a cookie that is not UTF-8 before ours, an empty value.
    let mut h = http::HeaderMap::new();
    h.append(
        COOKIE,
        HeaderValue::from_bytes(b"x=\xff; k = v ;e=").unwrap(),
    );
    assert_eq!(find_cookie(&h, "k"), Some("v"));
    assert_eq!(find_cookie(&h, "e"), Some(""));
    assert_eq!(find_cookie(&h, "x"), None, "not text");
}
