//! Configuration in three stages, as rpxy does it: TOML file -> [`raw`] serde structs ->
//! [`validate`] (pure: every check that needs only the text) -> [`build_snapshot`] (secret,
//! certificate and CSV files, pools, the log writer) -> [`Snapshot`].
//!
//! Every problem found is collected, with its file, line and field, before anything is reported:
//! an operator fixing a config at 3 a.m. should see the whole list at once, like `nginx -t`.
//!
//! [`Snapshot`]: crate::state::Snapshot
//!
//! Layer: config. May import its own layer and snapshot, observe, clients, domain, policy, wire;
//! never edge, control, server, request.

pub mod admin;
mod check;
mod compile;
// fleet: the [fleet] section, validated by compile like every other section.
pub mod fleet;
// inventory: `[inventory]` validation and the carried instance.
mod inventory;
mod pool_sizing;
// redirect_probation: `[redirect_probation]` (issue 16).
mod probation;
pub mod raw;
mod routes;
// shadow: `[shadow]`, `[fallback]`, route opt-ins.
pub mod runtime;
pub mod secret;
mod shadow;
mod summary;
mod tables;
mod validate;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use admin::{admin_access, AdminAccess};
pub use compile::{build, build_snapshot, compile, load_file, CompileInput};
pub use runtime::{content_hash, RuntimeOverrides, StateFile};
pub use summary::{warnings, Summary};
pub use validate::{validate, Validated};

/// One thing wrong with a configuration, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file that holds the problem.
    pub file: PathBuf,
    /// 1-based line, 0 when the problem is about the file as a whole.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// Dotted path of the field, e.g. `storefront.new.upstream` or `route[2].to`.
    pub field: String,
    /// What is wrong and, where possible, what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// Why a configuration could not be used. The running snapshot, if any, stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("reading config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every problem, for callers that print or count them individually.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { path, source } => vec![Problem {
                file: path.clone(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read: {source}"),
            }],
            ConfigError::Invalid(p) => p.clone(),
        }
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in configuration",
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// A configuration file's text, kept so byte spans can be turned into line and column.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where it was read from; relative paths inside it resolve against its directory.
    pub path: PathBuf,
    /// The text.
    pub text: String,
}

impl Source {
    /// Reads a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Source {
            path: path.to_path_buf(),
            text,
        })
    }

    /// The directory that relative file names in the config are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// 1-based (line, column) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = offset
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        (line, col)
    }

    /// A problem located at a span of this file.
    pub fn problem(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        let (line, column) = self.line_col(span.start);
        Problem {
            file: self.path.clone(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Parses the TOML into raw structs; a syntax or type error becomes one located problem.
    pub fn parse(&self) -> Result<raw::RawConfig, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            ConfigError::Invalid(vec![self.problem(span, "", message)])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_of_offsets() {
        let s = Source {
            path: "x.toml".into(),
            text: "a = 1\nbb = 2\n".into(),
        };
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(6), (2, 1));
        assert_eq!(s.line_col(11), (2, 6));
    }

    #[test]
    fn unknown_field_is_reported_with_its_line() {
        let s = Source {
            path: "cutover.toml".into(),
            text: "[[listener]]\naddress = \"127.0.0.1:1\"\nadress = \"x\"\n".into(),
        };
        let err = s.parse().unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(p.line, 3, "{err}");
        assert!(p.message.contains("unknown field `adress`"), "{err}");
        assert!(
            err.to_string()
                .starts_with("1 problem in configuration\n  cutover.toml:3:"),
            "{err}"
        );
    }
}
