use super::*;

#[test]
fn api_prefix_follows_the_cluster_version() {
    assert_eq!(api_prefix_for("3.4.0"), Some("/v3"));
    assert_eq!(api_prefix_for("3.5.12"), Some("/v3"));
    assert_eq!(api_prefix_for("3.3.0"), Some("/v3beta"));
    assert_eq!(api_prefix_for("3.2.9"), Some("/v3alpha"));
    assert_eq!(api_prefix_for("3.1.0"), None);
    assert_eq!(api_prefix_for("garbage"), None);
}

#[test]
fn gateway_errors_name_endpoint_key_and_code() {
    let body = br#"{"error":"etcdserver: permission denied","message":"etcdserver: permission denied","code":7}"#;
    let err = parse_answer("http://e:1", 403, body, "put", b"/fleet/state").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("http://e:1") && text.contains("/fleet/state"),
        "{text}"
    );
    assert!(
        text.contains("permission denied") && text.contains("code 7"),
        "{text}"
    );
    assert!(!err.is_unreachable());
    let err = parse_answer("http://e:1", 503, b"<html>", "put", b"k").unwrap_err();
    assert!(
        err.is_unreachable(),
        "a 503 page lets the next endpoint try"
    );
    let err = parse_answer("http://e:1", 200, b"{", "range", b"k").unwrap_err();
    assert!(err.to_string().contains("not JSON"));
}

#[test]
fn rejects_endpoints_that_are_not_base_urls() {
    for bad in ["127.0.0.1:2379", "ftp://h:1", "http://h:1/v3", ""] {
        let err = EtcdClient::new(EtcdOptions::new(vec![bad.into()], Duration::from_secs(1)))
            .unwrap_err();
        assert!(err.to_string().contains("endpoint"), "{bad}: {err}");
    }
    assert!(EtcdClient::new(EtcdOptions::new(vec![], Duration::from_secs(1))).is_err());
}

#[test]
fn int_reads_strings_and_numbers() {
    assert_eq!(int(&json!("42")), 42);
    assert_eq!(int(&json!(7)), 7);
    assert_eq!(int(&Value::Null), 0);
}
