//! Upstream TLS tests: hyper-util's client through `upstream_connector`
//! against HTTPS origins on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::testutil::*;
use super::*;

/// An origin whose responses say which HTTP version was spoken and whether
/// the client presented a certificate.
async fn spawn_origin(cfg: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = tls.get_ref().1.peer_certificates().is_some();
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let body = format!("{:?} client-cert={client_cert}", req.version());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn origin_config(leaf: &TestLeaf, alpn: &[&[u8]], client_ca: Option<&TestCa>) -> Arc<ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(crate::tls::provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider)
                .build()
                .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(chain, key).unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

type ClientError = hyper_util::client::legacy::Error;

async fn get(opts: &UpstreamTlsOptions, base: &Path, url: String) -> Result<String, ClientError> {
    let connector = upstream_connector(opts, base, Some(Duration::from_secs(5)), true).unwrap();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let resp = client.get(url.parse().unwrap()).await?;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn private_ca_verifies_only_with_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Private Storefront CA");
    ca.write(dir.path(), "private-ca.pem");
    let addr = spawn_origin(origin_config(&ca.leaf(&["127.0.0.1"]), BOTH, None)).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());

    let with_ca = UpstreamTlsOptions {
        ca_file: Some("private-ca.pem".into()),
        ..Default::default()
    };
    // h2 is chosen via ALPN when the origin offers it.
    assert_eq!(
        get(&with_ca, dir.path(), url.clone()).await.unwrap(),
        "HTTP/2.0 client-cert=false"
    );

    let err = get(&UpstreamTlsOptions::default(), dir.path(), url)
        .await
        .unwrap_err();
    assert!(is_tls_error(&err), "not classified as TLS: {err:?}");

    // A refused connection is an upstream error, but not a TLS one.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("https://127.0.0.1:{}/", closed.local_addr().unwrap().port());
    drop(closed);
    let err = get(&with_ca, dir.path(), closed_url).await.unwrap_err();
    assert!(!is_tls_error(&err), "{err:?}");
}

#[tokio::test]
async fn server_name_override_sets_sni_and_verified_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Name CA");
    ca.write(dir.path(), "ca.pem");
    let addr = spawn_origin(origin_config(
        &ca.leaf(&["origin.shop.internal"]),
        BOTH,
        None,
    ))
    .await;
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let mut opts = UpstreamTlsOptions {
        ca_file: Some("ca.pem".into()),
        ..Default::default()
    };
    let err = get(&opts, dir.path(), url.clone()).await.unwrap_err();
    assert!(is_tls_error(&err), "{err:?}");
    opts.server_name = Some("origin.shop.internal".into());
    assert!(get(&opts, dir.path(), url).await.is_ok());
}

#[tokio::test]
async fn http11_only_origin_gets_http11() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("H1 CA");
    ca.write(dir.path(), "ca.pem");
    let addr = spawn_origin(origin_config(
        &ca.leaf(&["127.0.0.1"]),
        &[b"http/1.1"],
        None,
    ))
    .await;
    let opts = UpstreamTlsOptions {
        ca_file: Some("ca.pem".into()),
        ..Default::default()
    };
    let body = get(
        &opts,
        dir.path(),
        format!("https://127.0.0.1:{}/", addr.port()),
    )
    .await
    .unwrap();
    assert_eq!(body, "HTTP/1.1 client-cert=false");
}

#[tokio::test]
async fn client_certificate_is_presented_for_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new("Origin CA");
    let client_ca = TestCa::new("Proxy Client CA");
    server_ca.write(dir.path(), "origin-ca.pem");
    client_ca
        .leaf(&["proxy.shop.example"])
        .write(dir.path(), "client");
    let cfg = origin_config(&server_ca.leaf(&["127.0.0.1"]), BOTH, Some(&client_ca));
    let addr = spawn_origin(cfg).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());

    let mut opts = UpstreamTlsOptions {
        ca_file: Some("origin-ca.pem".into()),
        ..Default::default()
    };
    assert!(get(&opts, dir.path(), url.clone()).await.is_err());
    opts.client_cert = Some("client.crt".into());
    opts.client_key = Some("client.key".into());
    assert_eq!(
        get(&opts, dir.path(), url).await.unwrap(),
        "HTTP/2.0 client-cert=true"
    );
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_self_signed_origin() {
    let dir = tempfile::tempdir().unwrap();
    let addr = spawn_origin(origin_config(
        &self_signed_leaf(&["whatever.invalid"]),
        BOTH,
        None,
    ))
    .await;
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let err = get(&UpstreamTlsOptions::default(), dir.path(), url.clone())
        .await
        .unwrap_err();
    assert!(is_tls_error(&err), "{err:?}");
    let insecure = UpstreamTlsOptions {
        insecure_skip_verify: true,
        ..Default::default()
    };
    assert!(get(&insecure, dir.path(), url).await.is_ok());
}

#[test]
fn bad_options_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let err = upstream_client_config(
        &UpstreamTlsOptions {
            ca_file: Some("nope.pem".into()),
            ..Default::default()
        },
        base,
    )
    .unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");

    let ca = TestCa::new("CA");
    let (cert, _) = ca.leaf(&["a.example"]).write(base, "a");
    let (_, other_key) = ca.leaf(&["b.example"]).write(base, "b");
    let err = upstream_client_config(
        &UpstreamTlsOptions {
            client_cert: Some(cert),
            client_key: Some(other_key.clone()),
            ..Default::default()
        },
        base,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(&*other_key.to_string_lossy()),
        "{err}"
    );

    let err = upstream_client_config(
        &UpstreamTlsOptions {
            client_key: Some("k.pem".into()),
            ..Default::default()
        },
        base,
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::UpstreamOptions(_)), "{err}");

    let err = upstream_connector(
        &UpstreamTlsOptions {
            server_name: Some("not a name".into()),
            ..Default::default()
        },
        base,
        None,
        true,
    )
    .unwrap_err();
    assert!(matches!(err, TlsError::ServerName { .. }), "{err}");
    // ALPN is left for hyper-rustls to fill in.
    let cfg = upstream_client_config(&UpstreamTlsOptions::default(), base).unwrap();
    assert!(cfg.alpn_protocols.is_empty());
}
