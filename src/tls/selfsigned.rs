//! A throwaway certificate for `cutover demo --tls`, so the demo can show
//! HTTPS and h2 without the user bringing a certificate.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::CertificateDer;

use super::config::{CertificateConfig, ListenerTlsConfig, MinVersion};
use super::TlsError;

/// Files written by [`generate_self_signed`].
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// PEM certificate file.
    pub cert: PathBuf,
    /// PEM private key file.
    pub key: PathBuf,
    /// For clients (tests, `curl --cacert`) that want to trust exactly this cert.
    pub cert_der: CertificateDer<'static>,
}

impl SelfSigned {
    /// A listener config serving this certificate for every name.
    pub fn listener_config(&self) -> ListenerTlsConfig {
        ListenerTlsConfig {
            certificates: vec![CertificateConfig {
                label: Some("demo".into()),
                cert: self.cert.clone(),
                key: Some(self.key.clone()),
                names: None,
            }],
            default: None,
            min_version: MinVersion::Tls12,
            hsts: None,
            redirect_http: None,
        }
    }
}

/// Writes `cutover-demo.crt` and `cutover-demo.key` (ECDSA P-256, valid one
/// year, for `localhost`, `127.0.0.1` and `::1`) into `dir`. The key file is
/// created owner-only on Unix.
pub fn generate_self_signed(dir: &Path) -> Result<SelfSigned, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "cutover demo (self-signed)");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Backdated a day so a client with a slightly slow clock accepts it.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let day = Duration::from_secs(86_400);
    params.not_before = epoch + now.saturating_sub(day);
    params.not_after = epoch + now + 365 * day;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;

    let cert_path = dir.join("cutover-demo.crt");
    let key_path = dir.join("cutover-demo.key");
    write(&cert_path, cert.pem().as_bytes(), false)?;
    write(&key_path, key.serialize_pem().as_bytes(), true)?;
    Ok(SelfSigned {
        cert: cert_path,
        key: key_path,
        cert_der: cert.der().clone(),
    })
}

fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).map_err(err)?;
    // `mode` only applies when the file is created; tighten a leftover one too.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{check, TlsListener};

    #[test]
    fn demo_certificate_loads_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let ss = generate_self_signed(&dir.path().join("tls")).unwrap();
        let cfg = ss.listener_config();
        assert_eq!(check(&cfg, dir.path()), vec![]);
        let listener = TlsListener::load(&cfg, dir.path()).unwrap();
        assert_eq!(
            listener.certificates()[0].names,
            vec!["localhost".to_string()]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&ss.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
    }
}
