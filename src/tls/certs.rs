//! Reading PEM certificate chains and keys, and checking them before they
//! are served.
//!
//! Every check produces a [`CertProblem`] naming the file, and all problems
//! of a pair are collected (not just the first), so `cutover check` can show
//! an operator everything wrong at once. A pair is only usable when no
//! problem has [`Severity::Error`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

/// Certificates expiring sooner than this are reported as a warning: renewal
/// should have happened at 30 days left, so 14 means it is failing.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// How bad a [`CertProblem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The certificate is not loaded (or a reload is refused).
    Error,
    /// Loaded, but someone should look.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// What kind of problem, for callers that count or filter them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file does not exist.
    MissingFile,
    /// The file exists but cannot be read.
    Unreadable,
    /// No PEM certificate in the file.
    NoCertificate,
    /// No PEM private key in the file.
    NoKey,
    /// The key is encrypted, malformed or of an unsupported type.
    BadKey,
    /// The key does not belong to the certificate.
    KeyMismatch,
    /// A certificate in the chain does not parse, or the chain is misordered.
    BadChain,
    /// The certificate (or one in its chain) has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// Expires within the warning window (14 days).
    ExpiringSoon,
    /// A configured SNI name is not in the certificate.
    NameNotCovered,
    /// Duplicate labels or names, unknown default, bad HSTS, invalid name.
    Config,
}

/// One thing wrong with a certificate, key or CA file, naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{severity}: {}: {message}", display_file(file))]
pub struct CertProblem {
    /// Error (refuses the load) or warning.
    pub severity: Severity,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The file at fault; empty for listener-wide config problems.
    pub file: PathBuf,
    /// What is wrong, for the operator.
    pub message: String,
}

fn display_file(file: &Path) -> String {
    if file.as_os_str().is_empty() {
        "tls config".to_string()
    } else {
        file.display().to_string()
    }
}

impl CertProblem {
    pub(crate) fn error(kind: ProblemKind, file: &Path, message: impl Into<String>) -> Self {
        CertProblem {
            severity: Severity::Error,
            kind,
            file: file.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn warning(kind: ProblemKind, file: &Path, message: impl Into<String>) -> Self {
        CertProblem {
            severity: Severity::Warning,
            ..CertProblem::error(kind, file, message)
        }
    }

    /// Whether this problem refuses the load.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// What the listener needs to know about a loaded chain.
#[derive(Debug, Clone)]
pub struct ChainInfo {
    /// DNS subjectAltNames of the leaf, lowercased (wildcards kept as `*.x`).
    pub dns_names: Vec<String>,
    /// The earliest notAfter in the chain: an expired intermediate breaks
    /// clients just like an expired leaf, so that is the date that matters.
    pub not_after: SystemTime,
    /// Leaf subject, for messages.
    pub subject: String,
}

/// A checked chain + key, ready for the SNI table.
#[derive(Debug, Clone)]
pub struct LoadedPair {
    pub certified: Arc<CertifiedKey>,
    pub info: ChainInfo,
}

/// Reads a PEM file, telling a missing file from an unreadable one.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, CertProblem> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CertProblem::error(ProblemKind::MissingFile, path, "file not found")
        } else {
            CertProblem::error(ProblemKind::Unreadable, path, format!("cannot read: {e}"))
        }
    })
}

/// All certificates in a PEM file, in file order.
pub(crate) fn parse_certs(
    path: &Path,
    pem_bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, CertProblem> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| {
            CertProblem::error(ProblemKind::BadChain, path, format!("invalid PEM: {e}"))
        })?;
    if certs.is_empty() {
        return Err(CertProblem::error(
            ProblemKind::NoCertificate,
            path,
            "no CERTIFICATE block in the file",
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn parse_key(
    path: &Path,
    pem_bytes: &[u8],
) -> Result<PrivateKeyDer<'static>, CertProblem> {
    match PrivateKeyDer::from_pem_slice(pem_bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let encrypted = pem_bytes
                .windows(b"ENCRYPTED PRIVATE KEY".len())
                .any(|w| w == b"ENCRYPTED PRIVATE KEY");
            Err(if encrypted {
                CertProblem::error(
                    ProblemKind::BadKey,
                    path,
                    "the private key is encrypted; cutover needs an unencrypted key file",
                )
            } else {
                CertProblem::error(ProblemKind::NoKey, path, "no private key block in the file")
            })
        }
        Err(e) => Err(CertProblem::error(
            ProblemKind::BadKey,
            path,
            format!("invalid PEM: {e}"),
        )),
    }
}

/// Parses every certificate of a chain and checks dates and order.
/// Returns the chain facts when the leaf parses, plus every problem found.
pub(crate) fn inspect_chain(
    path: &Path,
    chain: &[CertificateDer<'_>],
    now: SystemTime,
) -> (Option<ChainInfo>, Vec<CertProblem>) {
    let mut problems = Vec::new();
    let mut info: Option<ChainInfo> = None;
    let mut earliest: Option<SystemTime> = None;
    let mut prev_issuer: Option<String> = None;
    for (i, der) in chain.iter().enumerate() {
        let what = if i == 0 {
            "leaf certificate".to_string()
        } else {
            format!("chain certificate #{}", i + 1)
        };
        let cert = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => cert,
            Err(e) => {
                problems.push(CertProblem::error(
                    ProblemKind::BadChain,
                    path,
                    format!("{what} does not parse: {e}"),
                ));
                continue;
            }
        };
        let subject = cert.subject().to_string();
        if let Some(issuer) = prev_issuer.take() {
            if issuer != subject {
                problems.push(CertProblem::warning(
                    ProblemKind::BadChain,
                    path,
                    format!(
                        "{what} ({subject}) is not the issuer of the one before it ({issuer}); \
                         the chain must be ordered leaf first, then each issuer"
                    ),
                ));
            }
        }
        prev_issuer = Some(cert.issuer().to_string());
        let validity = cert.validity();
        let not_before = unix_to_system(validity.not_before.timestamp());
        let not_after = unix_to_system(validity.not_after.timestamp());
        if now > not_after {
            problems.push(CertProblem::error(
                ProblemKind::Expired,
                path,
                format!("{what} ({subject}) expired {}", describe_time(not_after)),
            ));
        } else if now < not_before {
            problems.push(CertProblem::error(
                ProblemKind::NotYetValid,
                path,
                format!(
                    "{what} ({subject}) is not valid before {}",
                    describe_time(not_before)
                ),
            ));
        } else if not_after.duration_since(now).unwrap_or_default() < EXPIRY_WARNING {
            problems.push(CertProblem::warning(
                ProblemKind::ExpiringSoon,
                path,
                format!("{what} ({subject}) expires {}", describe_time(not_after)),
            ));
        }
        earliest = Some(earliest.map_or(not_after, |e| e.min(not_after)));
        if i == 0 {
            let dns_names = dns_alt_names(path, &cert, &mut problems);
            info = Some(ChainInfo {
                dns_names,
                not_after,
                subject,
            });
        }
    }
    if let (Some(info), Some(earliest)) = (info.as_mut(), earliest) {
        info.not_after = earliest;
    }
    (info, problems)
}

/// DNS subjectAltNames only: SNI never carries IP addresses, and modern
/// clients ignore the subject CN, so these are the names a cert can serve.
fn dns_alt_names(
    path: &Path,
    cert: &x509_parser::certificate::X509Certificate<'_>,
    problems: &mut Vec<CertProblem>,
) -> Vec<String> {
    let mut dns = Vec::new();
    match cert.subject_alternative_name() {
        Ok(Some(san)) => {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(n) = name {
                    dns.push(n.trim_end_matches('.').to_ascii_lowercase());
                }
            }
        }
        Ok(None) => {}
        Err(e) => problems.push(CertProblem::error(
            ProblemKind::BadChain,
            path,
            format!("subjectAltName extension does not parse: {e}"),
        )),
    }
    dns
}

/// Reads, parses and checks one chain + key. The pair is `Some` only when no
/// error-severity problem was found; warnings come back either way.
pub(crate) fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> (Option<LoadedPair>, Vec<CertProblem>) {
    let mut problems = Vec::new();
    // Both files are read before anything is judged, so a missing key and a
    // missing cert are reported together.
    let cert_bytes = read_file(cert_path).map_err(|p| problems.push(p)).ok();
    let key_bytes = if key_path == cert_path {
        cert_bytes.clone()
    } else {
        read_file(key_path).map_err(|p| problems.push(p)).ok()
    };
    let chain = cert_bytes.and_then(|b| {
        parse_certs(cert_path, &b)
            .map_err(|p| problems.push(p))
            .ok()
    });
    let key = key_bytes.and_then(|b| parse_key(key_path, &b).map_err(|p| problems.push(p)).ok());

    let info = chain.as_ref().and_then(|chain| {
        let (info, found) = inspect_chain(cert_path, chain, now);
        problems.extend(found);
        info
    });
    let signing_key = key.and_then(|key| {
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| {
                problems.push(CertProblem::error(
                    ProblemKind::BadKey,
                    key_path,
                    format!(
                        "unusable private key ({e}); supported: RSA, ECDSA P-256/P-384, Ed25519"
                    ),
                ))
            })
            .ok()
    });
    let (Some(chain), Some(signing_key)) = (chain, signing_key) else {
        return (None, problems);
    };
    let certified = CertifiedKey::new(chain, signing_key);
    // Compares the key's SubjectPublicKeyInfo with the leaf's: the check that
    // catches a renewal that replaced the cert but not the key (or the reverse).
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => problems
            .push(CertProblem::error(
                ProblemKind::KeyMismatch,
                key_path,
                format!(
                    "private key does not match the certificate in {}",
                    cert_path.display()
                ),
            )),
        Err(e) => problems.push(CertProblem::error(
            ProblemKind::BadChain,
            cert_path,
            format!("leaf certificate rejected: {e}"),
        )),
    }
    match info {
        Some(info) if !problems.iter().any(CertProblem::is_error) => (
            Some(LoadedPair {
                certified: Arc::new(certified),
                info,
            }),
            problems,
        ),
        _ => (None, problems),
    }
}

/// Whether a certificate with these SANs is valid for `name` as a client
/// would judge it: exact match, or a one-label wildcard SAN. A configured
/// wildcard name is only covered by the same wildcard SAN.
pub fn covers(dns_names: &[String], name: &str) -> bool {
    dns_names.iter().any(|san| {
        if san == name {
            return true;
        }
        match (san.strip_prefix("*."), name.split_once('.')) {
            (Some(san_parent), Some((first, parent))) => {
                first != "*" && !first.is_empty() && parent == san_parent
            }
            _ => false,
        }
    })
}

fn unix_to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// "at <unix seconds> (in 3 days)"-style text without pulling in a date crate.
fn describe_time(t: SystemTime) -> String {
    let now = SystemTime::now();
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_else(|e| -(e.duration().as_secs() as i64));
    let rel = match t.duration_since(now) {
        Ok(d) => format!("in {}", human(d)),
        Err(e) => format!("{} ago", human(e.duration())),
    };
    format!("at unix time {secs} ({rel})")
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 2 * 86_400 {
        format!("{} days", s / 86_400)
    } else if s >= 2 * 3600 {
        format!("{} hours", s / 3600)
    } else {
        format!("{} minutes", s / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testutil::*;

    #[test]
    fn wildcard_coverage_is_one_label() {
        let sans = vec!["*.shop.example".to_string(), "shop.example".to_string()];
        assert!(covers(&sans, "www.shop.example"));
        assert!(covers(&sans, "shop.example"));
        assert!(covers(&sans, "*.shop.example"));
        assert!(!covers(&sans, "a.b.shop.example"));
        assert!(!covers(&sans, "shop.example.evil"));
        assert!(!covers(&["www.shop.example".to_string()], "*.shop.example"));
    }

    #[test]
    fn loads_every_key_format_and_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("Test CA");
        let cases: Vec<(&str, KeyKind)> = vec![
            ("p256", KeyKind::P256),
            ("ed25519", KeyKind::Ed25519),
            ("rsa-pkcs8", KeyKind::RsaPkcs8),
            ("rsa-pkcs1", KeyKind::RsaPkcs1),
            ("p384-pkcs8", KeyKind::P384Pkcs8),
            ("p384-sec1", KeyKind::P384Sec1),
        ];
        for (name, kind) in cases {
            let leaf = ca.leaf_with(&["a.example"], kind, Validity::Normal);
            let (cert, key) = leaf.write(dir.path(), name);
            let (pair, problems) =
                load_pair(&cert, &key, &crate::tls::provider(), SystemTime::now());
            assert!(problems.is_empty(), "{name}: {problems:?}");
            let pair = pair.unwrap_or_else(|| panic!("{name} did not load"));
            // full chain: leaf + CA
            assert_eq!(pair.certified.cert.len(), 2, "{name}");
            assert_eq!(pair.info.dns_names, vec!["a.example".to_string()]);
        }
    }

    #[test]
    fn reports_missing_garbage_and_mismatch_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("Test CA");
        let (cert, key) = ca.leaf(&["a.example"]).write(dir.path(), "a");
        let (_, other_key) = ca.leaf(&["b.example"]).write(dir.path(), "b");
        let now = SystemTime::now();

        let missing = dir.path().join("nope.pem");
        let (pair, problems) = load_pair(&missing, &key, &crate::tls::provider(), now);
        assert!(pair.is_none());
        assert_eq!(problems[0].kind, ProblemKind::MissingFile);
        assert!(
            problems[0].to_string().contains("nope.pem"),
            "{}",
            problems[0]
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, b"this is not PEM").unwrap();
        let (_, problems) = load_pair(&garbage, &key, &crate::tls::provider(), now);
        assert_eq!(problems[0].kind, ProblemKind::NoCertificate);
        let (_, problems) = load_pair(&cert, &garbage, &crate::tls::provider(), now);
        assert_eq!(problems[0].kind, ProblemKind::NoKey);
        assert!(problems[0].to_string().contains("garbage.pem"));

        let (pair, problems) = load_pair(&cert, &other_key, &crate::tls::provider(), now);
        assert!(pair.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, ProblemKind::KeyMismatch);
        assert_eq!(problems[0].file, other_key);
        assert!(problems[0].message.contains("a.crt"), "{}", problems[0]);
    }

    #[test]
    fn dates_are_checked_across_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("Test CA");
        let now = SystemTime::now();
        for (name, validity, kind, loads) in [
            ("expired", Validity::Expired, ProblemKind::Expired, false),
            (
                "future",
                Validity::NotYetValid,
                ProblemKind::NotYetValid,
                false,
            ),
            (
                "soon",
                Validity::ExpiresInDays(5),
                ProblemKind::ExpiringSoon,
                true,
            ),
        ] {
            let (cert, key) = ca
                .leaf_with(&["a.example"], KeyKind::P256, validity)
                .write(dir.path(), name);
            let (pair, problems) = load_pair(&cert, &key, &crate::tls::provider(), now);
            assert_eq!(pair.is_some(), loads, "{name}: {problems:?}");
            assert_eq!(problems.len(), 1, "{name}: {problems:?}");
            assert_eq!(problems[0].kind, kind);
            assert_eq!(problems[0].file, cert);
        }
        let (cert, key) = ca
            .leaf_with(&["a.example"], KeyKind::P256, Validity::ExpiresInDays(5))
            .write(dir.path(), "metric");
        let (pair, _) = load_pair(&cert, &key, &crate::tls::provider(), now);
        let left = pair.unwrap().info.not_after.duration_since(now).unwrap();
        assert!(left > Duration::from_secs(4 * 86_400) && left < Duration::from_secs(6 * 86_400));
    }

    #[test]
    fn encrypted_keys_are_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc.key");
        std::fs::write(
            &path,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = parse_key(&path, &std::fs::read(&path).unwrap()).unwrap_err();
        assert_eq!(err.kind, ProblemKind::BadKey);
        assert!(err.message.contains("encrypted"));
    }
}
