//! The `[fleet]` section (parsed and validated in [`crate::config::fleet`]) turned into etcd
//! client options.

use std::path::Path;

pub use crate::config::fleet::{FleetAuth, FleetConfig, FleetProblem, FleetTls};

use super::etcd::{Credentials, EtcdOptions};
use crate::tls::UpstreamTlsOptions;

/// Client options for [`super::etcd::EtcdClient::new`]; reads the password.
pub fn client_options(cfg: &FleetConfig, base_dir: &Path) -> Result<EtcdOptions, FleetProblem> {
    let tls = cfg.tls.clone().unwrap_or_default();
    let auth = match &cfg.auth {
        None => None,
        Some(a) => Some(Credentials {
            user: a.user.clone(),
            password: a.password(base_dir).map_err(|message| FleetProblem {
                field: "auth".into(),
                message,
            })?,
        }),
    };
    Ok(EtcdOptions {
        endpoints: cfg.etcd.clone(),
        request_timeout: cfg.request_timeout.0,
        tls: UpstreamTlsOptions {
            ca_file: tls.ca_file,
            server_name: tls.server_name,
            client_cert: tls.cert,
            client_key: tls.key,
            insecure_skip_verify: false,
        },
        base_dir: base_dir.to_path_buf(),
        auth,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_minimal_section_gives_client_options_without_auth() {
        let c: FleetConfig =
            toml::from_str("etcd = [\"http://127.0.0.1:2379\"]\nid = \"a-1\"").unwrap();
        let o = client_options(&c, Path::new(".")).unwrap();
        assert_eq!(o.request_timeout, Duration::from_secs(2));
        assert!(o.auth.is_none());
    }

    #[test]
    fn passwords_never_reach_logs() {
        let debug = format!(
            "{:?}",
            Credentials {
                user: "u".into(),
                password: "s3cret".into()
            }
        );
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
