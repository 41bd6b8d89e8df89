//! Listener tests over real sockets on 127.0.0.1: a tokio-rustls server using
//! `TlsListener::acceptor()` and rustls clients.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;

use super::testutil::*;
use super::upstream::AcceptAnyServerCert;
use super::*;

/// A client that trusts anything, to observe which certificate the server
/// picks even when it does not match the name asked for.
fn observing_client(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = crate::tls::provider();
    let verifier = Arc::new(AcceptAnyServerCert::new(&provider));
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

fn cert_entry(label: &str, cert: &Path, key: &Path, names: Option<&[&str]>) -> CertificateConfig {
    CertificateConfig {
        label: Some(label.to_string()),
        cert: cert.to_path_buf(),
        key: Some(key.to_path_buf()),
        names: names.map(|n| n.iter().map(|s| s.to_string()).collect()),
    }
}

fn listener_cfg(certificates: Vec<CertificateConfig>, default: Option<&str>) -> ListenerTlsConfig {
    ListenerTlsConfig {
        certificates,
        default: default.map(str::to_string),
        min_version: MinVersion::Tls12,
        hsts: None,
        redirect_http: None,
    }
}

async fn serve(listener: &Arc<TlsListener>) -> std::net::SocketAddr {
    let l = listener.clone();
    spawn_echo_server(move || l.acceptor()).await
}

struct Rotating {
    _dir: tempfile::TempDir,
    ca: TestCa,
    cert: PathBuf,
    key: PathBuf,
    listener: Arc<TlsListener>,
}

/// One certificate for `www.shop.example` that the tests overwrite in place.
fn rotating() -> Rotating {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Rotation CA");
    let (cert, key) = ca.leaf(&["www.shop.example"]).write(dir.path(), "www");
    let cfg = listener_cfg(vec![cert_entry("www", &cert, &key, None)], None);
    let listener = Arc::new(TlsListener::load(&cfg, dir.path()).unwrap());
    Rotating {
        _dir: dir,
        ca,
        cert,
        key,
        listener,
    }
}

impl Rotating {
    fn write_new(&self) -> CertificateDer<'static> {
        let leaf = self.ca.leaf(&["www.shop.example"]);
        std::fs::write(&self.cert, &leaf.chain_pem).unwrap();
        std::fs::write(&self.key, &leaf.key_pem).unwrap();
        leaf.der
    }
}

#[tokio::test]
async fn sni_picks_among_three_certificates_and_default_for_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("SNI CA");
    let com = ca.leaf(&["www.shop.example", "shop.example"]);
    let de = ca.leaf(&["*.shop.de"]);
    let fr = ca.leaf(&["www.shop.fr"]);
    let (c1, k1) = com.write(dir.path(), "com");
    let (c2, k2) = de.write(dir.path(), "de");
    let (c3, k3) = fr.write(dir.path(), "fr");
    let cfg = listener_cfg(
        vec![
            cert_entry("com", &c1, &k1, Some(&["www.shop.example", "shop.example"])),
            cert_entry("de", &c2, &k2, None), // names from the SANs: *.shop.de
            cert_entry("fr", &c3, &k3, Some(&["www.shop.fr"])),
        ],
        Some("fr"),
    );
    let listener = Arc::new(TlsListener::load(&cfg, Path::new("/")).unwrap());
    let addr = serve(&listener).await;
    let client = observing_client(&[]);
    for (sni, want) in [
        ("www.shop.example", &com.der),
        ("shop.example", &com.der),
        ("www.shop.de", &de.der),
        ("checkout.shop.de", &de.der),
        ("www.shop.fr", &fr.der),
        ("unknown.example", &fr.der),
        ("a.b.shop.de", &fr.der),
    ] {
        let s = handshake(addr, sni, client.clone()).await.unwrap();
        assert_eq!(&presented(&s), want, "SNI {sni}");
    }
    // And a verifying client accepts the chain it is given.
    let verifying = Arc::new(client_config(ca.roots(), &[]));
    let mut s = handshake(addr, "checkout.shop.de", verifying)
        .await
        .unwrap();
    echo(&mut s, b"hello").await.unwrap();
}

#[tokio::test]
async fn alpn_offers_h2_and_http11() {
    let r = rotating();
    let addr = serve(&r.listener).await;
    for (offer, want) in [
        (vec![&b"h2"[..], b"http/1.1"], Some(&b"h2"[..])),
        (vec![&b"http/1.1"[..]], Some(&b"http/1.1"[..])),
        (vec![], None),
    ] {
        let client = Arc::new(client_config(r.ca.roots(), &offer));
        let s = handshake(addr, "www.shop.example", client).await.unwrap();
        assert_eq!(s.get_ref().1.alpn_protocol(), want, "offer {offer:?}");
    }
}

#[tokio::test]
async fn reload_swaps_certificate_and_keeps_open_connections() {
    let r = rotating();
    let addr = serve(&r.listener).await;
    let client = Arc::new(client_config(r.ca.roots(), &[]));
    let mut open = handshake(addr, "www.shop.example", client.clone())
        .await
        .unwrap();
    let old = presented(&open);
    echo(&mut open, b"before").await.unwrap();

    let new = r.write_new();
    let report = r.listener.reload().unwrap();
    assert_eq!(report.changed, vec!["www".to_string()]);

    let fresh = handshake(addr, "www.shop.example", client.clone())
        .await
        .unwrap();
    assert_eq!(presented(&fresh), new);
    assert_ne!(new, old);
    echo(&mut open, b"after reload").await.unwrap();

    // Reloading unchanged files reports nothing changed.
    assert!(r.listener.reload().unwrap().changed.is_empty());
}

#[tokio::test]
async fn bad_reload_is_refused_and_old_certificate_still_served() {
    let r = rotating();
    let addr = serve(&r.listener).await;
    let client = Arc::new(client_config(r.ca.roots(), &[]));
    let served = presented(
        &handshake(addr, "www.shop.example", client.clone())
            .await
            .unwrap(),
    );

    // A renewal that replaced the cert but left the old key.
    let other = r.ca.leaf(&["www.shop.example"]);
    std::fs::write(&r.cert, &other.chain_pem).unwrap();
    let err = r.listener.reload().unwrap_err();
    let TlsError::Certificates(problems) = &err else {
        panic!("{err}")
    };
    assert_eq!(problems[0].kind, ProblemKind::KeyMismatch);
    assert!(err.to_string().contains(&*r.key.to_string_lossy()), "{err}");
    let s = handshake(addr, "www.shop.example", client.clone())
        .await
        .unwrap();
    assert_eq!(presented(&s), served);

    // A truncated / garbage cert file.
    std::fs::write(&r.cert, b"-----BEGIN CERTIFICATE-----\ngarbage").unwrap();
    let err = r.listener.reload().unwrap_err();
    assert!(
        err.to_string().contains(&*r.cert.to_string_lossy()),
        "{err}"
    );
    let s = handshake(addr, "www.shop.example", client.clone())
        .await
        .unwrap();
    assert_eq!(presented(&s), served);

    // The next good pair is picked up.
    let new = r.write_new();
    r.listener.reload().unwrap();
    let s = handshake(addr, "www.shop.example", client).await.unwrap();
    assert_eq!(presented(&s), new);
}

#[tokio::test]
async fn rotation_under_load_fails_no_handshake() {
    let r = rotating();
    let addr = serve(&r.listener).await;
    let client = Arc::new(client_config(r.ca.roots(), &[]));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, done, ok, failed) = (client.clone(), done.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let worked = match handshake(addr, "www.shop.example", client.clone()).await {
                    Ok(mut s) => echo(&mut s, b"x").await.is_ok(),
                    Err(_) => false,
                };
                let counter = if worked { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut last = None;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        last = Some(r.write_new());
        let listener = r.listener.clone();
        tokio::task::spawn_blocking(move || listener.reload().unwrap())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(40)).await;
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        ok.load(Ordering::Relaxed) > 10,
        "too little load to mean anything"
    );
    let s = handshake(addr, "www.shop.example", client).await.unwrap();
    assert_eq!(Some(presented(&s)), last);
}

#[tokio::test]
async fn min_version_13_refuses_tls12_clients() {
    let r = rotating();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = listener_cfg(vec![cert_entry("www", &r.cert, &r.key, None)], None);
    cfg.min_version = MinVersion::Tls13;
    let listener = Arc::new(TlsListener::load(&cfg, dir.path()).unwrap());
    let addr = serve(&listener).await;
    let tls12_only = ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(r.ca.roots())
        .with_no_client_auth();
    assert!(handshake(addr, "www.shop.example", Arc::new(tls12_only))
        .await
        .is_err());
    let modern = Arc::new(client_config(r.ca.roots(), &[]));
    assert!(handshake(addr, "www.shop.example", modern).await.is_ok());

    // Dropping back to 1.2 through reconfigure takes effect for new acceptors.
    cfg.min_version = MinVersion::Tls12;
    listener.reconfigure(&cfg, dir.path()).unwrap();
    let tls12_only = ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(r.ca.roots())
        .with_no_client_auth();
    assert!(handshake(addr, "www.shop.example", Arc::new(tls12_only))
        .await
        .is_ok());
}

#[test]
fn check_reports_expiry_and_uncovered_names_naming_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Check CA");
    let (good_c, good_k) = ca.leaf(&["www.shop.example"]).write(dir.path(), "good");
    let (old_c, old_k) = ca
        .leaf_with(&["old.shop.example"], KeyKind::P256, Validity::Expired)
        .write(dir.path(), "old");
    let (soon_c, soon_k) = ca
        .leaf_with(
            &["soon.shop.example"],
            KeyKind::P256,
            Validity::ExpiresInDays(3),
        )
        .write(dir.path(), "soon");
    let missing = dir.path().join("missing.crt");
    let cfg = listener_cfg(
        vec![
            cert_entry(
                "good",
                &good_c,
                &good_k,
                Some(&["www.shop.example", "shop.example"]),
            ),
            cert_entry("old", &old_c, &old_k, None),
            cert_entry("soon", &soon_c, &soon_k, None),
            cert_entry("missing", &missing, &good_k, None),
            cert_entry("mismatch", &good_c, &soon_k, None),
        ],
        None,
    );
    let problems = check(&cfg, dir.path());
    let find = |kind| {
        problems
            .iter()
            .find(|p| p.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} in {problems:#?}"))
    };
    assert_eq!(find(ProblemKind::NameNotCovered).file, good_c);
    assert!(find(ProblemKind::NameNotCovered)
        .message
        .contains("\"shop.example\""));
    assert_eq!(find(ProblemKind::Expired).file, old_c);
    let soon = find(ProblemKind::ExpiringSoon);
    assert_eq!(
        (soon.file.clone(), soon.severity),
        (soon_c, Severity::Warning)
    );
    assert_eq!(find(ProblemKind::MissingFile).file, missing);
    assert_eq!(find(ProblemKind::KeyMismatch).file, soon_k);
    for p in &problems {
        assert!(p.to_string().contains(&*p.file.to_string_lossy()), "{p}");
    }
    // The same config refuses to load, naming the files.
    let err = TlsListener::load(&cfg, dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("old.crt") && err.contains("missing.crt"),
        "{err}"
    );
}

#[test]
fn config_mistakes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Config CA");
    let (a_c, a_k) = ca
        .leaf(&["www.shop.example", "*.shop.example"])
        .write(dir.path(), "a");
    let (b_c, b_k) = ca.leaf(&["www.shop.example"]).write(dir.path(), "b");
    let cfg = listener_cfg(
        vec![
            cert_entry("a", &a_c, &a_k, None),
            cert_entry("b", &b_c, &b_k, None),
        ],
        Some("nope"),
    );
    let problems = check(&cfg, dir.path());
    let msgs: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(msgs.iter().any(|m| m.contains("\"nope\"")), "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("b.crt") && m.contains("also claimed by")),
        "{msgs:?}"
    );

    let cfg = listener_cfg(
        vec![cert_entry(
            "a",
            &a_c,
            &a_k,
            Some(&["10.0.0.1", "w*.shop.example", "Shop.Example."]),
        )],
        None,
    );
    let problems = check(&cfg, dir.path());
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems.iter().all(|p| p.file == a_c));
}

#[test]
fn files_and_expiries_for_watcher_and_metric() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Files CA");
    let leaf = ca.leaf_with(
        &["www.shop.example"],
        KeyKind::P256,
        Validity::ExpiresInDays(60),
    );
    let (c, k) = leaf.write(dir.path(), "www");
    // Relative paths resolve against the config directory.
    let cfg = listener_cfg(
        vec![cert_entry(
            "www",
            Path::new("www.crt"),
            Path::new("www.key"),
            None,
        )],
        None,
    );
    let listener = TlsListener::load(&cfg, dir.path()).unwrap();
    assert_eq!(listener.files(), vec![c, k]);
    let exp = listener.expiries();
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0].0, "www");
    let left = exp[0]
        .1
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((59 * 86_400..61 * 86_400).contains(&left), "{left}");
}

#[test]
fn combined_pem_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Combined CA");
    let leaf = ca.leaf(&["www.shop.example"]);
    std::fs::write(
        dir.path().join("both.pem"),
        format!("{}{}", leaf.chain_pem, leaf.key_pem),
    )
    .unwrap();
    let cfg: ListenerTlsConfig = toml::from_str("[[certificates]]\ncert = \"both.pem\"").unwrap();
    let listener = TlsListener::load(&cfg, dir.path()).unwrap();
    assert_eq!(listener.files(), vec![dir.path().join("both.pem")]);
    assert_eq!(listener.certificates()[0].label, "both.pem");
}

#[tokio::test]
async fn sessions_resume_across_a_certificate_reload() {
    let r = rotating();
    let addr = serve(&r.listener).await;
    let mut cfg = client_config(r.ca.roots(), &[]);
    cfg.resumption = rustls::client::Resumption::default();
    let client = Arc::new(cfg);
    let mut first = handshake(addr, "www.shop.example", client.clone())
        .await
        .unwrap();
    // TLS 1.3 tickets arrive after the handshake; one round trip collects them.
    echo(&mut first, b"ticket").await.unwrap();
    r.write_new();
    r.listener.reload().unwrap();
    let again = handshake(addr, "www.shop.example", client).await.unwrap();
    assert_eq!(
        again.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
}
