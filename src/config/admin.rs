//! `[admin]`: where the admin listener binds, the token that guards its mutations, and where
//! runtime changes are kept.
//!
//! The server (through `compile`) and the CLI (`cutover status`, `shift`...) resolve these with the
//! same function, so the CLI finds the proxy and its token exactly the way the proxy does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::RawAdmin;
use super::{ConfigError, Problem, Source};

/// Where the admin listener binds unless configured otherwise.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

/// How to reach and authenticate to the admin API.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminAccess {
    /// Admin listener address; `None` when `address = "off"`.
    pub address: Option<SocketAddr>,
    /// Bearer token for mutations; `None` means mutations are accepted from loopback peers only.
    pub token: Option<String>,
    /// Where runtime overrides are kept.
    pub state_file: PathBuf,
}

impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccess")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("state_file", &self.state_file)
            .finish()
    }
}

/// The default state file: `<config file>.state.json`, next to the config.
pub fn default_state_file(config: &Path) -> PathBuf {
    let mut name = config
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "cutover".into());
    name.push(".state.json");
    config.with_file_name(name)
}

/// Resolves `[admin]`. Returns the access, the problems found, and the files read (for the
/// reload watcher, so a rotated token file takes effect).
pub(crate) fn resolve(src: &Source, raw: &RawAdmin) -> (AdminAccess, Vec<Problem>, Vec<PathBuf>) {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    let at = |v: &Spanned<String>, field: &str, msg: String| src.problem(v.span(), field, msg);
    let resolve_path = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            src.base_dir().join(p)
        }
    };

    let address = match &raw.address {
        None => Some(DEFAULT_ADMIN.parse().expect("valid default")),
        Some(a) if a.get_ref() == "off" => None,
        Some(a) => match a.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problems.push(at(a, "admin.address", "not IP:port, or \"off\"".into()));
                None
            }
        },
    };

    let fields = [&raw.token, &raw.token_file, &raw.token_env];
    let (secret, problem, file) =
        super::secret::read_spanned(src, "admin", "token", fields.map(Option::as_ref));
    problems.extend(problem);
    files.extend(file);
    let token = secret.map(super::secret::Secret::into_string);
    // The one rule only admin tokens need: they travel in a header.
    let given = fields.into_iter().flatten().next();
    if let (Some(t), Some(v)) = (&token, given) {
        if t.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            problems.push(at(
                v,
                "admin.token",
                "the token must be printable ASCII without spaces (it travels in a header)".into(),
            ));
        }
    }
    if let (Some(addr), None) = (address, &token) {
        if !addr.ip().is_loopback() {
            let msg = format!(
                "the admin listener on {addr} is reachable from other machines, so it needs a token \
                 for its mutations: set admin.token_file or admin.token_env (or bind 127.0.0.1)"
            );
            match &raw.address {
                Some(a) => problems.push(at(a, "admin.address", msg)),
                None => problems.push(src.problem(0..0, "admin.address", msg)),
            }
        }
    }
    let state_file = raw.state_file.as_ref().map_or_else(
        || default_state_file(&src.path),
        |s| resolve_path(s.get_ref()),
    );
    (
        AdminAccess {
            address,
            token,
            state_file,
        },
        problems,
        files,
    )
}

/// Reads only what the CLI needs from a config file: the admin address, token and state file.
/// Other sections are parsed (so a typo is still reported) but not validated.
pub fn admin_access(path: &Path) -> Result<AdminAccess, ConfigError> {
    let source = Source::read(path)?;
    let raw = source.parse()?;
    let (access, problems, _) = resolve(&source, &raw.admin);
    if problems.is_empty() {
        Ok(access)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Compares two tokens in time independent of where they differ.
pub fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source {
            path: "/etc/cutover/cutover.toml".into(),
            text: text.into(),
        }
    }

    fn resolve_text(text: &str) -> (AdminAccess, Vec<Problem>) {
        let s = src(text);
        let raw = s.parse().unwrap();
        let (a, p, _) = resolve(&s, &raw.admin);
        (a, p)
    }

    #[test]
    fn defaults_to_loopback_without_token() {
        let (a, p) = resolve_text("");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(a.address, Some("127.0.0.1:9901".parse().unwrap()));
        assert_eq!(a.token, None);
        assert_eq!(
            a.state_file,
            PathBuf::from("/etc/cutover/cutover.toml.state.json")
        );
    }

    #[test]
    fn public_admin_needs_a_token() {
        let (_, p) = resolve_text("[admin]\naddress = \"0.0.0.0:9901\"\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, 2);
        assert!(p[0].message.contains("needs a token"), "{}", p[0]);
        let (a, p) =
            resolve_text("[admin]\naddress = \"0.0.0.0:9901\"\ntoken = \"s3cret-token\"\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(a.token.as_deref(), Some("s3cret-token"));
    }

    #[test]
    fn one_token_source_only_and_no_spaces() {
        let (_, p) = resolve_text("[admin]\ntoken = \"a\"\ntoken_env = \"X\"\n");
        assert!(p.iter().any(|p| p.message.contains("not several")), "{p:?}");
        let (_, p) = resolve_text("[admin]\ntoken = \"a b\"\n");
        assert!(p.iter().any(|p| p.message.contains("printable")), "{p:?}");
    }

    #[test]
    fn state_file_resolves_against_the_config_directory() {
        let (a, _) = resolve_text("[admin]\nstate_file = \"state/x.json\"\n");
        assert_eq!(a.state_file, PathBuf::from("/etc/cutover/state/x.json"));
    }

    #[test]
    fn token_comparison() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("abc", "abcd"));
        assert!(!token_matches("", "x"));
    }

    #[test]
    fn debug_redacts_the_token() {
        let (a, _) = resolve_text("[admin]\ntoken = \"topsecret\"\n");
        assert!(!format!("{a:?}").contains("topsecret"));
    }
}
