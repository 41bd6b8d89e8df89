//! Staff override through the real proxy: `?cutover=new|clear` and `x-cutover-force` set and
//! clear a pin; a disabled or token-protected override is refused; override parameters and the
//! token never reach the storefront.

mod support;

use support::{Backend, Client, ConfigSpec, InProc, Jar};

fn assert_clean(backend: &Backend) {
    for s in backend.seen() {
        assert!(
            !s.uri.contains("cutover=") && !s.uri.contains("cutover_token"),
            "override parameters reached the storefront: {}",
            s.uri
        );
        assert!(
            s.header("x-cutover-token").is_none() && s.header("x-cutover-force").is_none(),
            "override headers reached the storefront: {:?}",
            s.headers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_sets_and_clears_the_pin() {
    let old = Backend::echo("old").await;
    let new = Backend::echo("new").await;
    let proxy = InProc::start(&ConfigSpec::new(&old.url(), &new.url(), 0.0)).await;
    let client = Client::new(proxy.addr);

    let mut jar = Jar::new();
    assert_eq!(client.get_jar("/", &mut jar).await.backend(), "old");

    let r = client.get_jar("/p?a=1&cutover=new&b=2", &mut jar).await;
    assert_eq!(r.backend(), "new");
    assert!(
        r.set_cookie("cutover_cohort").is_some(),
        "the override pins via the cookie"
    );
    assert_eq!(
        new.seen().last().unwrap().uri,
        "/p?a=1&b=2",
        "parameter stripped"
    );
    for i in 0..20 {
        let r = client.get_jar(&format!("/after/{i}"), &mut jar).await;
        assert_eq!(r.backend(), "new", "request {i} after the override");
    }
    assert_eq!(
        new.seen()
            .last()
            .unwrap()
            .header("x-cutover-reason")
            .as_deref(),
        Some("override")
    );

    let r = client.get_jar("/?cutover=clear", &mut jar).await;
    assert_eq!(r.backend(), "old", "clear lets the split (0%) decide again");
    assert_eq!(old.seen().last().unwrap().uri, "/");
    for i in 0..20 {
        assert_eq!(
            client.get_jar(&format!("/x/{i}"), &mut jar).await.backend(),
            "old"
        );
    }

    // The header form pins too.
    let cookie = jar.header().unwrap();
    let r = client
        .get_h("/", &[("cookie", &cookie), ("x-cutover-force", "new")])
        .await;
    assert_eq!(r.backend(), "new");
    jar.store(&r);
    assert_eq!(client.get_jar("/later", &mut jar).await.backend(), "new");
    assert_clean(&old);
    assert_clean(&new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_override_is_refused() {
    let old = Backend::echo("old").await;
    let new = Backend::echo("new").await;
    let spec = ConfigSpec::new(&old.url(), &new.url(), 0.0).overrides("enabled = false");
    let proxy = InProc::start(&spec).await;
    let client = Client::new(proxy.addr);
    let mut jar = Jar::new();
    assert_eq!(
        client.get_jar("/?cutover=new", &mut jar).await.backend(),
        "old"
    );
    let cookie = jar.header().unwrap();
    let r = client
        .get_h("/", &[("cookie", &cookie), ("x-cutover-force", "new")])
        .await;
    assert_eq!(r.backend(), "old");
    jar.store(&r);
    assert_eq!(client.get_jar("/", &mut jar).await.backend(), "old");
    assert_eq!(new.requests(), 0);
    assert_clean(&old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_protected_override_needs_the_token() {
    let old = Backend::echo("old").await;
    let new = Backend::echo("new").await;
    let spec = ConfigSpec::new(&old.url(), &new.url(), 0.0).overrides("token = \"s3cret\"");
    let proxy = InProc::start(&spec).await;
    let client = Client::new(proxy.addr);
    let mut jar = Jar::new();

    assert_eq!(
        client.get_jar("/?cutover=new", &mut jar).await.backend(),
        "old",
        "no token"
    );
    let r = client
        .get_h("/?cutover=new", &[("x-cutover-token", "wrong")])
        .await;
    assert_eq!(r.backend(), "old", "wrong token header");
    let r = client.get("/?cutover=new&cutover_token=s3cre").await;
    assert_eq!(r.backend(), "old", "wrong token parameter");
    let r = client
        .get_h(
            "/",
            &[("x-cutover-force", "new"), ("x-cutover-token", "S3CRET")],
        )
        .await;
    assert_eq!(r.backend(), "old", "tokens are case-sensitive");
    assert_eq!(new.requests(), 0);
    let cookie = jar.header().unwrap();
    assert_eq!(
        client.get_h("/", &[("cookie", &cookie)]).await.backend(),
        "old",
        "refused overrides set no pin"
    );

    let r = client
        .get_h(
            "/?cutover=new",
            &[("cookie", &cookie), ("x-cutover-token", "s3cret")],
        )
        .await;
    assert_eq!(r.backend(), "new", "right token header");
    jar.store(&r);
    for i in 0..10 {
        assert_eq!(
            client.get_jar(&format!("/{i}"), &mut jar).await.backend(),
            "new"
        );
    }
    let r = client.get("/?cutover=new&cutover_token=s3cret&q=1").await;
    assert_eq!(r.backend(), "new", "right token parameter");
    assert_eq!(new.seen().last().unwrap().uri, "/?q=1");
    assert_clean(&old);
    assert_clean(&new);
}
