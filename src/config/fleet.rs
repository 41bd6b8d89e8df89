//! The `[fleet]` config section: where the shared operator state lives and who this replica is.
//!
//! Here in `config` (not in `fleet`) so the compile step validates it with file:line like every
//! other section; `crate::fleet::config` turns it into etcd client options.
//!
//! ```toml
//! [fleet]
//! etcd = ["https://etcd-0.etcd:2379", "https://etcd-1.etcd:2379"]
//! prefix = "/cutover/shop-eu"     # one prefix per fleet; keys: state, leader, members/<id>
//! id = "cutover-0"                # default: $HOSTNAME (the pod name in Kubernetes)
//! address = "10.1.2.3:9090"       # shown by `cutover status --fleet`
//! lease_ttl = "10s"               # member registration and leadership vanish this long after death
//! start_timeout = "5s"            # how long readiness waits for the shared state before using the file
//! request_timeout = "2s"          # bound on every etcd call
//! [fleet.tls]
//! ca_file = "certs/etcd-ca.pem"
//! cert = "certs/etcd-client.pem"
//! key = "certs/etcd-client.key"
//! [fleet.auth]
//! user = "cutover"
//! password_file = "/run/secrets/etcd-password"   # or password_env = "ETCD_PASSWORD"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::values::HumanDuration;

/// `[fleet]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// Key prefix shared by the replicas of one fleet.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// This replica's name; `$HOSTNAME` when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Address shown to operators for this replica (admin listener).
    #[serde(default)]
    pub address: Option<String>,
    /// TTL of the member registration and the leader lease.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: HumanDuration,
    /// Bound on the startup read of the shared state.
    #[serde(default = "default_start_timeout")]
    pub start_timeout: HumanDuration,
    /// Bound on every etcd call.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// TLS towards etcd.
    #[serde(default)]
    pub tls: Option<FleetTls>,
    /// etcd user authentication.
    #[serde(default)]
    pub auth: Option<FleetAuth>,
}

/// `[fleet.tls]`: paths relative to the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetTls {
    /// CA that signed the etcd server certificates (added to the webpki roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain when etcd requires client certificates.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its key; read from `cert` when absent.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name checked in the server certificate instead of the endpoint host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// `[fleet.auth]`: the password is never written in the config itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetAuth {
    /// etcd user.
    pub user: String,
    /// File holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// One thing wrong with `[fleet]`, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[fleet] {field}: {message}")]
pub struct FleetProblem {
    /// Dotted field name, e.g. `tls.ca_file`, `etcd[1]`.
    pub field: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

fn default_prefix() -> String {
    "/cutover/default".into()
}
fn default_lease_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_start_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

impl FleetConfig {
    /// Every problem at once (so an operator fixes the section in one go). `base_dir` is the
    /// config file's directory; files are checked for readability, the password is read.
    pub fn validate(&self, base_dir: &Path) -> Result<(), Vec<FleetProblem>> {
        let mut problems = Vec::new();
        let mut bad =
            |field: String, message: String| problems.push(FleetProblem { field, message });
        if self.etcd.is_empty() {
            bad(
                "etcd".into(),
                "list at least one etcd client URL, e.g. [\"http://127.0.0.1:2379\"]".into(),
            );
        }
        for (i, e) in self.etcd.iter().enumerate() {
            if let Err(m) = check_endpoint(e) {
                bad(format!("etcd[{i}]"), m);
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.len() < 2 {
            bad(
                "prefix".into(),
                format!(
                    "`{}` must start with `/` and not end with `/`, e.g. \"/cutover/shop\"",
                    self.prefix
                ),
            );
        }
        if self
            .prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            bad(
                "prefix".into(),
                "must not contain spaces or control characters".into(),
            );
        }
        if let Err(m) = self.replica_id() {
            bad("id".into(), m);
        }
        let ttl = self.lease_ttl.0;
        if ttl < Duration::from_secs(2) || ttl > Duration::from_secs(300) || ttl.subsec_nanos() != 0
        {
            bad(
                "lease_ttl".into(),
                format!("{ttl:?}: use whole seconds from 2s to 300s"),
            );
        }
        let start = self.start_timeout.0;
        if start.is_zero() || start > Duration::from_secs(300) {
            bad(
                "start_timeout".into(),
                format!("{start:?}: use more than 0 and at most 5m"),
            );
        }
        let req = self.request_timeout.0;
        if req.is_zero() || req.saturating_mul(3) > ttl {
            bad(
                "request_timeout".into(),
                format!("{req:?}: must be more than 0 and at most a third of lease_ttl ({ttl:?}) so a keep-alive can be retried before the lease expires"),
            );
        }
        if let Some(tls) = &self.tls {
            if !self.etcd.iter().any(|e| e.starts_with("https://")) {
                bad(
                    "tls".into(),
                    "is set but no etcd endpoint uses https://".into(),
                );
            }
            if tls.key.is_some() && tls.cert.is_none() {
                bad("tls.key".into(), "is set but tls.cert is not".into());
            }
            for (field, p) in [
                ("tls.ca_file", &tls.ca_file),
                ("tls.cert", &tls.cert),
                ("tls.key", &tls.key),
            ] {
                if let Some(p) = p {
                    let path = base_dir.join(p);
                    if let Err(e) = std::fs::metadata(&path) {
                        bad(field.into(), format!("cannot read {}: {e}", path.display()));
                    }
                }
            }
        }
        if let Some(auth) = &self.auth {
            if auth.user.trim().is_empty() {
                bad("auth.user".into(), "must not be empty".into());
            }
            if let Err(m) = auth.password(base_dir) {
                bad("auth".into(), m);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// `id`, else `$HOSTNAME`; letters, digits, `.`, `_`, `-` only (it becomes part of a key).
    pub fn replica_id(&self) -> Result<String, String> {
        let id = match &self.id {
            Some(id) => id.clone(),
            None => std::env::var("HOSTNAME").map_err(|_| {
                "not set and $HOSTNAME is not set either: name this replica, e.g. id = \"cutover-0\"".to_string()
            })?,
        };
        if id.is_empty()
            || id.len() > 128
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(format!(
                "`{id}`: use 1-128 letters, digits, `.`, `_` or `-`"
            ));
        }
        Ok(id)
    }
}

impl FleetAuth {
    /// The password from `password_file` or `password_env` (exactly one must be set).
    pub fn password(&self, base_dir: &Path) -> Result<String, String> {
        let file = self.password_file.as_ref().map(|f| base_dir.join(f));
        let fields = super::secret::SecretFields {
            value: None,
            file: file.as_deref(),
            env: self.password_env.as_deref(),
        };
        match fields.read() {
            Ok(Some(password)) => Ok(password.into_string()),
            Ok(None) => Err("set password_file or password_env for the password".into()),
            Err((origin, e)) => {
                let field = match origin {
                    super::secret::Origin::Env => "password_env",
                    _ => "password_file",
                };
                Err(match e {
                    super::secret::SecretError::Several => {
                        "set password_file or password_env, not both".into()
                    }
                    e => format!("{field}: {e}"),
                })
            }
        }
    }
}

fn check_endpoint(e: &str) -> Result<(), String> {
    let uri: http::Uri = e
        .parse()
        .map_err(|err| format!("`{e}` is not a URL: {err}"))?;
    match (uri.scheme_str(), uri.host(), uri.path()) {
        (Some("http" | "https"), Some(_), "" | "/") if uri.port_u16().is_some() => Ok(()),
        _ => Err(format!("`{e}`: write the client URL as http(s)://host:port with no path, e.g. http://127.0.0.1:2379")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> FleetConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_minimal_section_gets_defaults_and_passes() {
        let c = parse("etcd = [\"http://127.0.0.1:2379\"]\nid = \"a-1\"");
        assert_eq!(c.prefix, "/cutover/default");
        assert_eq!(c.lease_ttl.0, Duration::from_secs(10));
        c.validate(Path::new(".")).unwrap();
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_field() {
        let c = parse(
            r#"
            etcd = ["127.0.0.1:2379", "http://h:1/v3"]
            prefix = "cutover/"
            id = "a b"
            lease_ttl = "1s"
            start_timeout = "0s"
            request_timeout = "1s"
            [tls]
            key = "missing.key"
            [auth]
            user = ""
            "#,
        );
        let problems = c.validate(Path::new("/nonexistent")).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for f in [
            "etcd[0]",
            "etcd[1]",
            "prefix",
            "id",
            "lease_ttl",
            "start_timeout",
            "request_timeout",
            "tls",
            "tls.key",
            "auth.user",
            "auth",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        let text = problems[0].to_string();
        assert!(text.starts_with("[fleet] etcd[0]: "), "{text}");
    }

    #[test]
    fn password_comes_from_a_file_or_the_environment_never_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let auth = |file: Option<&str>, env: Option<&str>| FleetAuth {
            user: "u".into(),
            password_file: file.map(PathBuf::from),
            password_env: env.map(String::from),
        };
        assert_eq!(
            auth(Some("pw"), None).password(dir.path()).unwrap(),
            "s3cret"
        );
        assert!(auth(Some("pw"), Some("X"))
            .password(dir.path())
            .unwrap_err()
            .contains("not both"));
        assert!(auth(None, None).password(dir.path()).is_err());
        assert!(auth(Some("nope"), None)
            .password(dir.path())
            .unwrap_err()
            .contains("nope"));
        let var = "CUTOVER_FLEET_TEST_PASSWORD_UNSET";
        assert!(auth(None, Some(var))
            .password(dir.path())
            .unwrap_err()
            .contains(var));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<FleetConfig>("etcd = []\nendpoints = []").unwrap_err();
        assert!(err.to_string().contains("endpoints"), "{err}");
    }
}
