//! One rule for every secret the config names: the admin token, the staff override's token and
//! the etcd password. Each can be given inline (`token`), in a file (`token_file`: a Kubernetes
//! secret or a systemd credential, re-read on reload) or in an environment variable
//! (`token_env`), exactly one of them; surrounding whitespace (the file's trailing newline) is
//! not part of the secret, and an empty secret is a mistake, never "no secret".

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{Problem, Source};

/// A secret value. Its `Debug` never shows it, so a config dumped into a log keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that compares or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Which of the three fields a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The value written in the config.
    Value,
    /// The file named by the config.
    File,
    /// The environment variable named by the config.
    Env,
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// More than one of value, file and variable is set.
    #[error("set only one of the value, the file or the environment variable")]
    Several,
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The variable is not set.
    #[error("environment variable `{0}` is not set")]
    EnvUnset(String),
    /// The secret is empty (or only whitespace).
    #[error("the secret is empty")]
    Empty,
}

/// Where a secret is to be read from, as the config says.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretFields<'a> {
    /// Inline value.
    pub value: Option<&'a str>,
    /// File (already resolved against the config's directory).
    pub file: Option<&'a Path>,
    /// Environment variable name.
    pub env: Option<&'a str>,
}

impl SecretFields<'_> {
    /// The secret, `None` when none of the fields is set, or which field is wrong and why.
    pub fn read(&self) -> Result<Option<Secret>, (Origin, SecretError)> {
        let given = [
            self.value.map(|_| Origin::Value),
            self.file.map(|_| Origin::File),
            self.env.map(|_| Origin::Env),
        ];
        let mut given = given.into_iter().flatten();
        let Some(first) = given.next() else {
            return Ok(None);
        };
        if let Some(second) = given.next() {
            return Err((second, SecretError::Several));
        }
        let text = match first {
            Origin::Value => self.value.unwrap_or_default().to_string(),
            Origin::File => {
                let path = self.file.unwrap_or(Path::new(""));
                std::fs::read_to_string(path).map_err(|source| {
                    let path = path.to_path_buf();
                    (Origin::File, SecretError::Unreadable { path, source })
                })?
            }
            Origin::Env => {
                let var = self.env.unwrap_or_default();
                std::env::var(var)
                    .map_err(|_| (Origin::Env, SecretError::EnvUnset(var.to_string())))?
            }
        };
        let text = text.trim();
        if text.is_empty() {
            return Err((first, SecretError::Empty));
        }
        Ok(Some(Secret(text.to_string())))
    }
}

/// Reads a `<name>` / `<name>_file` / `<name>_env` triple of the TOML (`section.name` in
/// problems), reporting at the line of the field at fault. Returns the secret, the problem, and
/// the file read (watched, so a rotated secret takes effect on reload).
pub(crate) fn read_spanned(
    src: &Source,
    section: &str,
    name: &str,
    fields: [Option<&Spanned<String>>; 3],
) -> (Option<Secret>, Option<Problem>, Option<PathBuf>) {
    let [value, file, env] = fields;
    let path = file.map(|f| {
        let p = Path::new(f.get_ref());
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            src.base_dir().join(p)
        }
    });
    let read = SecretFields {
        value: value.map(|v| v.get_ref().as_str()),
        file: path.as_deref(),
        env: env.map(|v| v.get_ref().as_str()),
    }
    .read();
    match read {
        Ok(secret) => (secret, None, path),
        Err((origin, e)) => {
            let (spanned, field) = match origin {
                Origin::Value => (value, format!("{section}.{name}")),
                Origin::File => (file, format!("{section}.{name}_file")),
                Origin::Env => (env, format!("{section}.{name}_env")),
            };
            let span = spanned.map_or(0..0, |s| s.span());
            let message = match e {
                SecretError::Several => {
                    format!("set one of `{name}`, `{name}_file` or `{name}_env`, not several")
                }
                e => e.to_string(),
            };
            (None, Some(src.problem(span, field, message)), path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("cutover-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let from_file = SecretFields {
            file: Some(&file),
            ..Default::default()
        };
        assert_eq!(from_file.read().unwrap().unwrap().expose(), "s3cret");
        let inline = SecretFields {
            value: Some(" abc "),
            ..Default::default()
        };
        assert_eq!(inline.read().unwrap().unwrap().expose(), "abc");
        assert!(SecretFields::default().read().unwrap().is_none());
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            from_file.read(),
            Err((Origin::File, SecretError::Empty))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            from_file.read(),
            Err((Origin::File, SecretError::Unreadable { .. }))
        ));
    }

    #[test]
    fn several_sources_and_a_missing_variable_are_refused() {
        let both = SecretFields {
            value: Some("a"),
            env: Some("CUTOVER_TEST_SECRET_NOT_SET_ANYWHERE"),
            ..Default::default()
        };
        assert!(matches!(
            both.read(),
            Err((Origin::Env, SecretError::Several))
        ));
        let env = SecretFields {
            env: Some("CUTOVER_TEST_SECRET_NOT_SET_ANYWHERE"),
            ..Default::default()
        };
        let err = env.read().unwrap_err();
        assert_eq!(err.0, Origin::Env);
        assert!(err
            .1
            .to_string()
            .contains("CUTOVER_TEST_SECRET_NOT_SET_ANYWHERE"));
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretFields {
            value: Some("hunter2"),
            ..Default::default()
        }
        .read()
        .unwrap()
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
