//! An HTTPS listener's certificates: load, check, serve by SNI, reload.
//!
//! `compile` is the single path from config to a certificate table; `load`,
//! `reload`, `reconfigure` and `check` all go through it, so `cutover check`
//! reports exactly what a reload would refuse.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, DnsName};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::certs::{self, CertProblem, LoadedPair, ProblemKind, Severity};
use super::config::{ListenerTlsConfig, MinVersion};
use super::sni::{SniResolver, SniTable};
use super::TlsError;

/// What is being served for one configured certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Label from the config.
    pub label: String,
    /// Certificate chain file.
    pub cert_file: PathBuf,
    /// Private key file.
    pub key_file: PathBuf,
    /// SNI names routed to this certificate (normalised).
    pub names: Vec<String>,
    /// Leaf certificate subject, for status pages and logs.
    pub subject: String,
    /// Earliest notAfter in the chain.
    pub not_after: SystemTime,
}

/// The outcome of a successful reload.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// What is served now.
    pub certificates: Vec<CertSummary>,
    /// Labels whose leaf certificate differs from the one served before.
    pub changed: Vec<String>,
    /// Warnings (expiring soon, misordered chain); the reload went ahead.
    pub warnings: Vec<CertProblem>,
}

/// One HTTPS listener's TLS state. Cheap to share behind an `Arc`.
pub struct TlsListener {
    resolver: Arc<SniResolver>,
    /// Swapped only by `reconfigure` when protocol versions change; a
    /// certificate reload never rebuilds it, so session tickets stay valid.
    server_config: ArcSwap<ServerConfig>,
    state: Mutex<State>,
}

struct State {
    cfg: ListenerTlsConfig,
    base_dir: PathBuf,
    certs: Vec<CertSummary>,
    leaves: HashMap<String, CertificateDer<'static>>,
}

struct Compiled {
    table: SniTable,
    certs: Vec<CertSummary>,
    leaves: HashMap<String, CertificateDer<'static>>,
    warnings: Vec<CertProblem>,
}

impl TlsListener {
    /// Reads and checks every certificate; fails (naming each file) if any
    /// certificate is unusable. Warnings are logged.
    pub fn load(cfg: &ListenerTlsConfig, base_dir: &Path) -> Result<Self, TlsError> {
        let compiled = compile_or_err(cfg, base_dir)?;
        log_warnings(&compiled.warnings);
        let resolver = Arc::new(SniResolver::new(compiled.table));
        let server_config = server_config(resolver.clone(), cfg.min_version)?;
        Ok(TlsListener {
            resolver,
            server_config: ArcSwap::from_pointee(server_config),
            state: Mutex::new(State {
                cfg: cfg.clone(),
                base_dir: base_dir.to_path_buf(),
                certs: compiled.certs,
                leaves: compiled.leaves,
            }),
        })
    }

    /// The acceptor for new connections: TLS 1.2+1.3 (or 1.3 only), ALPN
    /// `h2` then `http/1.1`. Certificates are resolved per handshake, so an
    /// acceptor kept across a reload still serves the new certificates; only
    /// a `reconfigure` that changes `min_version` needs a fresh one, so the
    /// accept loop should call this per connection (an `Arc` clone).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config.load_full())
    }

    /// Re-reads every certificate and key file of the current config. On any
    /// error the certificates being served stay as they were and the error
    /// (naming every bad file) is returned. Blocking file I/O: call from the
    /// watcher thread or `spawn_blocking`.
    pub fn reload(&self) -> Result<ReloadReport, TlsError> {
        let mut state = self.lock();
        let compiled = compile_or_err(&state.cfg, &state.base_dir).inspect_err(|e| {
            tracing::warn!(error = %e, "TLS certificate reload refused; still serving the previous certificates");
        })?;
        Ok(self.install(&mut state, compiled))
    }

    /// Like `reload`, but with a new listener config (certificates added or
    /// removed, names, default, min_version). All or nothing.
    pub fn reconfigure(
        &self,
        cfg: &ListenerTlsConfig,
        base_dir: &Path,
    ) -> Result<ReloadReport, TlsError> {
        let mut state = self.lock();
        let compiled = compile_or_err(cfg, base_dir)?;
        if cfg.min_version != state.cfg.min_version {
            let sc = server_config(self.resolver.clone(), cfg.min_version)?;
            self.server_config.store(Arc::new(sc));
        }
        state.cfg = cfg.clone();
        state.base_dir = base_dir.to_path_buf();
        Ok(self.install(&mut state, compiled))
    }

    fn install(&self, state: &mut State, compiled: Compiled) -> ReloadReport {
        log_warnings(&compiled.warnings);
        let changed: Vec<String> = compiled
            .leaves
            .iter()
            .filter(|(label, leaf)| state.leaves.get(*label) != Some(*leaf))
            .map(|(label, _)| label.clone())
            .collect();
        self.resolver.swap(compiled.table);
        state.certs = compiled.certs.clone();
        state.leaves = compiled.leaves;
        if !changed.is_empty() {
            tracing::info!(certificates = ?changed, "TLS certificates reloaded");
        }
        ReloadReport {
            certificates: compiled.certs,
            changed,
            warnings: compiled.warnings,
        }
    }

    /// Every certificate and key file, for the file watcher.
    pub fn files(&self) -> Vec<PathBuf> {
        let state = self.lock();
        let mut seen = HashSet::new();
        let mut files = Vec::new();
        for c in &state.cfg.certificates {
            for p in [c.cert_path(&state.base_dir), c.key_path(&state.base_dir)] {
                if seen.insert(p.clone()) {
                    files.push(p);
                }
            }
        }
        files
    }

    /// (label, earliest notAfter of the chain) per certificate being served,
    /// for `cutover_tls_certificate_expiry_seconds`.
    pub fn expiries(&self) -> Vec<(String, SystemTime)> {
        let state = self.lock();
        state
            .certs
            .iter()
            .map(|c| (c.label.clone(), c.not_after))
            .collect()
    }

    /// The certificates being served.
    pub fn certificates(&self) -> Vec<CertSummary> {
        self.lock().certs.clone()
    }

    /// The `Strict-Transport-Security` value to add to responses, if configured.
    pub fn hsts_header(&self) -> Option<String> {
        self.lock().cfg.hsts.as_ref().map(|h| h.header_value())
    }

    /// A reload that panicked mid-way cannot leave `State` half written (it
    /// is only assigned after a successful compile), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every certificate problem of a listener config, for `cutover check`:
/// missing or unreadable files, no cert or key, key mismatch, bad chain,
/// expired / not yet valid, expiring within 14 days, names not covered.
pub fn check(cfg: &ListenerTlsConfig, base_dir: &Path) -> Vec<CertProblem> {
    compile(cfg, base_dir, &super::provider(), SystemTime::now()).1
}

fn server_config(resolver: Arc<SniResolver>, min: MinVersion) -> Result<ServerConfig, TlsError> {
    let rustls_err = |context: &str| {
        let context = context.to_string();
        move |source| TlsError::Rustls { context, source }
    };
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(super::provider()))
        .with_protocol_versions(min.versions())
        .map_err(rustls_err("listener protocol versions"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless resumption: returning shoppers (and h2 reconnects on mobile)
    // skip the full handshake. No 0-RTT: replayable checkout POSTs are not
    // worth a round trip.
    cfg.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(rustls_err("session tickets"))?;
    Ok(cfg)
}

fn compile_or_err(cfg: &ListenerTlsConfig, base_dir: &Path) -> Result<Compiled, TlsError> {
    match compile(cfg, base_dir, &super::provider(), SystemTime::now()) {
        (Some(compiled), _) => Ok(compiled),
        (None, problems) => Err(TlsError::Certificates(
            problems.into_iter().filter(CertProblem::is_error).collect(),
        )),
    }
}

fn log_warnings(warnings: &[CertProblem]) {
    for w in warnings {
        tracing::warn!(file = %w.file.display(), kind = ?w.kind, "{}", w.message);
    }
}

/// Config -> certificate table. Returns the table only when no problem is an
/// error; the problem list always has everything found.
fn compile(
    cfg: &ListenerTlsConfig,
    base_dir: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> (Option<Compiled>, Vec<CertProblem>) {
    let mut problems = Vec::new();
    let no_file = Path::new("");
    if cfg.certificates.is_empty() {
        problems.push(CertProblem::error(
            ProblemKind::Config,
            no_file,
            "no certificates configured",
        ));
        return (None, problems);
    }
    if let Some(msg) = cfg.hsts.as_ref().and_then(|h| h.problem()) {
        problems.push(CertProblem::error(ProblemKind::Config, no_file, msg));
    }
    let labels: Vec<String> = cfg.certificates.iter().map(|c| c.label()).collect();
    let mut seen = HashSet::new();
    for (label, c) in labels.iter().zip(&cfg.certificates) {
        if !seen.insert(label) {
            problems.push(CertProblem::error(
                ProblemKind::Config,
                &c.cert_path(base_dir),
                format!("label {label:?} is used by more than one certificate"),
            ));
        }
    }
    let default_idx = match &cfg.default {
        None => 0,
        Some(d) => labels.iter().position(|l| l == d).unwrap_or_else(|| {
            problems.push(CertProblem::error(
                ProblemKind::Config,
                no_file,
                format!("default certificate {d:?} is not a configured label ({labels:?})"),
            ));
            0
        }),
    };

    let mut loaded: Vec<Option<(LoadedPair, Vec<String>)>> = Vec::new();
    for (i, c) in cfg.certificates.iter().enumerate() {
        let cert_path = c.cert_path(base_dir);
        let (pair, found) = certs::load_pair(&cert_path, &c.key_path(base_dir), provider, now);
        problems.extend(found);
        let Some(pair) = pair else {
            loaded.push(None);
            continue;
        };
        let names = match &c.names {
            Some(names) => {
                let mut ok = Vec::new();
                for raw in names {
                    match normalise_name(raw) {
                        Err(why) => problems.push(CertProblem::error(
                            ProblemKind::Config,
                            &cert_path,
                            format!("name {raw:?}: {why}"),
                        )),
                        Ok(n) if !certs::covers(&pair.info.dns_names, &n) => {
                            // An error, not a warning: every shopper on that
                            // name would get a certificate warning, and on a
                            // reload refusing keeps the old, working cert.
                            problems.push(CertProblem::error(
                                ProblemKind::NameNotCovered,
                                &cert_path,
                                format!(
                                    "name {n:?} is not covered by the certificate's names {:?}",
                                    pair.info.dns_names
                                ),
                            ))
                        }
                        Ok(n) => ok.push(n),
                    }
                }
                ok
            }
            None => pair.info.dns_names.clone(),
        };
        if names.is_empty() && i != default_idx {
            problems.push(CertProblem::warning(
                ProblemKind::Config,
                &cert_path,
                "no DNS names to select this certificate by; it is never served",
            ));
        }
        loaded.push(Some((pair, names)));
    }

    let Some(Some((default_pair, _))) = loaded.get(default_idx) else {
        return (None, problems);
    };
    let mut table = SniTable::new(default_pair.certified.clone());
    let mut owner: HashMap<String, PathBuf> = HashMap::new();
    let mut certs_out = Vec::new();
    let mut leaves = HashMap::new();
    for ((c, label), entry) in cfg.certificates.iter().zip(&labels).zip(&loaded) {
        let Some((pair, names)) = entry else { continue };
        let cert_path = c.cert_path(base_dir);
        for n in names {
            if table.insert(n, pair.certified.clone()) {
                owner.insert(n.clone(), cert_path.clone());
            } else {
                problems.push(CertProblem::error(
                    ProblemKind::Config,
                    &cert_path,
                    format!(
                        "name {n:?} is also claimed by {}",
                        owner
                            .get(n)
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        leaves.insert(label.clone(), pair.certified.cert[0].clone());
        certs_out.push(CertSummary {
            label: label.clone(),
            cert_file: cert_path,
            key_file: c.key_path(base_dir),
            names: names.clone(),
            subject: pair.info.subject.clone(),
            not_after: pair.info.not_after,
        });
    }
    if problems.iter().any(CertProblem::is_error) {
        return (None, problems);
    }
    let warnings = problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .cloned()
        .collect();
    let compiled = Compiled {
        table,
        certs: certs_out,
        leaves,
        warnings,
    };
    (Some(compiled), problems)
}

/// Lowercase, no trailing dot, a valid DNS name or `*.` + one.
fn normalise_name(raw: &str) -> Result<String, &'static str> {
    let n = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if n.parse::<IpAddr>().is_ok() {
        return Err(
            "IP addresses are never sent as SNI; make this certificate the default instead",
        );
    }
    let host = n.strip_prefix("*.").unwrap_or(&n);
    if host.contains('*') {
        return Err("only a whole leftmost `*.` label is allowed as a wildcard");
    }
    DnsName::try_from(host).map_err(|_| "not a valid DNS name")?;
    Ok(n)
}
