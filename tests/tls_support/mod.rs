//! Helpers for the TLS end-to-end tests: certificates made with rcgen in the test, recording
//! storefronts (plain and HTTPS), a proxy started in-process or as the binary, TLS clients that
//! report the presented certificate and the negotiated protocol, and metric scraping.
//!
//! Every wait here is bounded; nothing asserts on wall-clock durations.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Upper bound of any single wait in these tests; generous because CI shares two cores.
pub const WAIT: Duration = Duration::from_secs(30);

/// Awaits `f`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// Polls `check` every 50 ms until it returns `Some`, at most [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {WAIT:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// How long a generated certificate is valid, relative to now.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// From yesterday for a year.
    Normal,
    /// Ended yesterday.
    Expired,
    /// From yesterday, ending in this many days.
    ExpiresInDays(u32),
}

fn apply_validity(params: &mut CertificateParams, v: Validity) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let day = Duration::from_secs(86_400);
    let (from, to) = match v {
        Validity::Normal => (now - day, now + 365 * day),
        Validity::Expired => (now - 30 * day, now - day),
        Validity::ExpiresInDays(d) => (now - day, now + d * day),
    };
    params.not_before = epoch + from;
    params.not_after = epoch + to;
}

/// A throwaway certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate.
    pub der: CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A leaf certificate chain (leaf then CA) and its key, PEM.
#[derive(Clone)]
pub struct Leaf {
    /// The leaf certificate, for comparing with what a server presents.
    pub der: CertificateDer<'static>,
    /// Leaf + issuing CA.
    pub chain_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
}

impl Ca {
    /// A new CA named `cn`.
    pub fn new(cn: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        apply_validity(&mut params, Validity::Normal);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
            pem: cert.pem(),
        }
    }

    /// A leaf for `names` (DNS SANs), valid for a year.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, Validity::Normal)
    }

    /// A leaf for `names` with the given validity.
    pub fn leaf_with(&self, names: &[&str], validity: Validity) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        apply_validity(&mut params, validity);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
        }
    }

    /// Trusts only this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }

    /// Writes the CA certificate to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

impl Leaf {
    /// Writes `<name>.crt` (chain) and `<name>.key` in `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.chain_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// Replaces `<name>.crt` and `<name>.key` the way certbot-style tools do: write a temporary
    /// file next to each, then rename it over the old one (key first, then the chain).
    pub fn rotate_into(&self, dir: &Path, name: &str) {
        replace_file(&dir.join(format!("{name}.key")), self.key_pem.as_bytes());
        replace_file(&dir.join(format!("{name}.crt")), self.chain_pem.as_bytes());
    }
}

/// Atomically replaces `path` with `contents` (write a sibling, then rename).
pub fn replace_file(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// TLS clients

/// Accepts any server certificate: used to see which certificate a server presents for names
/// the certificate does not cover (the default one for unknown SNI).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(cutover::tls::provider())
}

fn finish(mut cfg: ClientConfig, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // A resumed session reports the certificate of the original handshake; the tests want
    // what a full handshake presents.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// A client that verifies the server against `roots`, offering `alpn`.
pub fn client(roots: RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    finish(cfg, alpn)
}

/// A client that accepts any certificate (it only looks at which one is presented).
pub fn client_any(alpn: &[&[u8]], send_sni: bool) -> Arc<ClientConfig> {
    let p = provider();
    let mut cfg = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(p)))
        .with_no_client_auth();
    cfg.enable_sni = send_sni;
    finish(cfg, alpn)
}

/// TCP connect + TLS handshake with `sni` as the server name.
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    TlsConnector::from(cfg).connect(name, tcp).await
}

/// The leaf certificate the server presented.
pub fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// The ALPN protocol the server picked.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

// ---------------------------------------------------------------------------------------------
// HTTP clients over any stream

/// A response read whole.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `name=value` of the first `Set-Cookie` for `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|kv| kv.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }
}

/// An HTTP/1.1 or HTTP/2 client connection.
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    /// HTTP/1.1 over `io`.
    pub async fn h1<I>(io: I) -> Conn
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = bounded(
            "h1 handshake",
            hyper::client::conn::http1::handshake(TokioIo::new(io)),
        )
        .await
        .expect("h1 handshake");
        tokio::spawn(conn);
        Conn::H1(send)
    }

    /// HTTP/2 over `io`.
    pub async fn h2<I>(io: I) -> Conn
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = bounded(
            "h2 handshake",
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)),
        )
        .await
        .expect("h2 handshake");
        tokio::spawn(conn);
        Conn::H2(send)
    }

    /// HTTP/1.1 or HTTP/2 over a TLS stream, as ALPN decided.
    pub async fn negotiated(stream: TlsStream<TcpStream>) -> Conn {
        if alpn(&stream).as_deref() == Some(b"h2") {
            Conn::h2(stream).await
        } else {
            Conn::h1(stream).await
        }
    }

    /// Whether this is an HTTP/2 connection.
    pub fn is_h2(&self) -> bool {
        matches!(self, Conn::H2(_))
    }

    /// A clone of an HTTP/2 sender (streams multiplexed on the same connection).
    pub fn h2_sender(&self) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
        match self {
            Conn::H2(s) => s.clone(),
            Conn::H1(_) => panic!("not an HTTP/2 connection"),
        }
    }

    /// Sends `GET path` for `host` with extra headers and reads the whole response.
    pub async fn get(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Got {
        let req = request(self.is_h2(), "GET", host, path, headers);
        self.send(req).await
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Got {
        let resp = match self {
            Conn::H1(s) => {
                bounded("h1 ready", s.ready()).await.expect("h1 ready");
                bounded("h1 response", s.send_request(req)).await
            }
            Conn::H2(s) => {
                bounded("h2 ready", s.ready()).await.expect("h2 ready");
                bounded("h2 response", s.send_request(req)).await
            }
        }
        .expect("response");
        read(resp).await
    }
}

/// A request in the form each protocol uses: HTTP/1.1 names the host in `Host`, HTTP/2 in
/// `:authority` (no `Host` header), as browsers do.
pub fn request(
    h2: bool,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method);
    if h2 {
        b = b.uri(format!("https://{host}{path}"));
    } else {
        b = b.uri(path).header(http::header::HOST, host);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// Reads a response whole.
pub async fn read(resp: Response<Incoming>) -> Got {
    let (parts, body) = resp.into_parts();
    let body = bounded("response body", body.collect())
        .await
        .expect("response body")
        .to_bytes();
    Got {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Plain-HTTP `GET` on a fresh connection.
pub async fn plain_get(addr: SocketAddr, path: &str) -> Got {
    let tcp = bounded("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let mut c = Conn::h1(tcp).await;
    c.get(&addr.to_string(), path, &[]).await
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// The admin listener's `/metrics` text.
pub async fn scrape(admin: SocketAddr) -> String {
    let got = plain_get(admin, "/metrics").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    got.body
}

/// The value of the sample `name{labels}` (labels as written by the exposition, in any order;
/// each of `labels` must appear), or 0 when absent.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Storefronts

/// One request as a storefront saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub version: Version,
    pub headers: HeaderMap,
}

/// A storefront's answer, boxed so the service has a nameable type.
type Reply =
    std::pin::Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

/// A recording storefront. `GET /hold...` waits until [`Backend::release`] (bounded);
/// `GET /slow...` takes 100 ms; everything else answers at once with `200 <name>`.
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    gate: Arc<watch::Sender<bool>>,
}

impl Backend {
    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The most requests this storefront had in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests in progress now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Lets held requests finish (and every later one pass straight through).
    pub fn release(&self) {
        let _ = self.gate.send(true);
    }

    fn service(&self) -> impl Fn(Request<Incoming>) -> Reply + Clone {
        let me = self.clone();
        move |req: Request<Incoming>| {
            let me = me.clone();
            Box::pin(async move {
                me.seen.lock().unwrap().push(Seen {
                    method: req.method().to_string(),
                    path_and_query: req
                        .uri()
                        .path_and_query()
                        .map_or("/".into(), |p| p.to_string()),
                    version: req.version(),
                    headers: req.headers().clone(),
                });
                let path = req.uri().path().to_string();
                let now = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                me.max_in_flight.fetch_max(now, Ordering::SeqCst);
                if path.starts_with("/hold") {
                    let mut rx = me.gate.subscribe();
                    let _ = tokio::time::timeout(WAIT, rx.wait_for(|open| *open)).await;
                } else if path.starts_with("/slow") {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                me.in_flight.fetch_sub(1, Ordering::SeqCst);
                let resp = Response::builder()
                    .header("x-backend", me.name.as_str())
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from(me.name.clone())))
                    .unwrap();
                Ok(resp)
            })
        }
    }

    fn new(addr: SocketAddr, name: &str) -> Backend {
        let (gate, _) = watch::channel(false);
        Backend {
            addr,
            name: name.to_string(),
            seen: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            gate: Arc::new(gate),
        }
    }
}

/// A plain-HTTP storefront (HTTP/1.1 and h2c) on 127.0.0.1.
pub async fn backend(name: &str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = Backend::new(listener.local_addr().unwrap(), name);
    let svc = b.service();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let svc = svc.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service_fn(svc))
                    .await;
            });
        }
    });
    b
}

/// An HTTPS storefront presenting `leaf`, offering h2 and http/1.1 by ALPN.
pub async fn tls_backend(name: &str, leaf: &Leaf) -> Backend {
    let chain: Vec<CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_slice_iter(leaf.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls::pki_types::pem::PemObject::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = Backend::new(listener.local_addr().unwrap(), name);
    let svc = b.service();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let svc = svc.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(WAIT, acceptor.accept(tcp)).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service_fn(svc))
                    .await;
            });
        }
    });
    b
}

// ---------------------------------------------------------------------------------------------
// The proxy

/// A port on 127.0.0.1 that was free a moment ago (for listeners whose bound address the
/// proxy does not report, such as `redirect_http`, and for the binary).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `[storefront.old]` and `[storefront.new]` pointing at two plain backends.
pub fn storefronts(old: &Backend, new: &Backend) -> String {
    format!(
        "[storefront.old]\nupstream = \"http://{}\"\n\n[storefront.new]\nupstream = \"http://{}\"\n",
        old.addr, new.addr
    )
}

/// A `[[listener]]` on 127.0.0.1:0 with TLS, one `[[listener.tls.certificates]]` per
/// `(label, file stem, names)`; `extra` goes into `[listener.tls]` (e.g. `default = "x"`).
pub fn tls_listener(certs: &[(&str, &str, Option<&[&str]>)], extra: &str) -> String {
    let mut s = format!("[[listener]]\naddress = \"127.0.0.1:0\"\n[listener.tls]\n{extra}\n");
    for (label, stem, names) in certs {
        s.push_str(&format!(
            "[[listener.tls.certificates]]\nlabel = \"{label}\"\ncert = \"{stem}.crt\"\nkey = \"{stem}.key\"\n"
        ));
        if let Some(names) = names {
            let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
            s.push_str(&format!("names = [{}]\n", list.join(", ")));
        }
    }
    s
}

/// Writes `cutover.toml` in `dir`.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the proxy in-process from `dir/cutover.toml`.
pub async fn start(dir: &Path, text: &str) -> cutover::app::App {
    // Without an [admin] section the admin listener takes its default port; tests run in parallel.
    let text = if text.contains("[admin]") {
        text.to_string()
    } else {
        format!("{text}\n[admin]\naddress = \"127.0.0.1:0\"\n")
    };
    let text = text.as_str();
    let path = write_config(dir, text);
    match bounded("proxy start", cutover::app::start(&path)).await {
        Ok(app) => app,
        Err(e) => panic!("proxy did not start: {e}\nconfig:\n{text}"),
    }
}

/// A `cutover` process, killed on drop.
pub struct Process {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Process {
    /// Runs `cutover serve --config <config>`, logging to `dir/cutover.log`.
    pub fn serve(dir: &Path, config: &Path) -> Process {
        let log = dir.join("cutover.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["--log", "info", "serve", "--config"])
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawning cutover");
        Process { child, log }
    }

    /// Sends SIGHUP (reload).
    pub fn hup(&self) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cutover check --config <config>` (bounded); returns (exit code, stdout, stderr).
pub fn check(config: &Path) -> (i32, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["check", "--config"])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning cutover check");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("cutover check did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Empty request body type for callers that build their own requests.
pub fn empty() -> Empty<Bytes> {
    Empty::new()
}
