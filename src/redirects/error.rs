//! Load errors: every one names the file and line (and the URL), so a migration team can fix a
//! 10^5-row spreadsheet in one pass instead of one error per reload.

use std::fmt;

/// One problem found while loading a table. `file` is the path as configured.
// Each variant's `#[error]` text says what it and its fields mean.
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("{file}: cannot read the redirect table: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}:{line}: the header has no `{column}` column (found: {found})")]
    MissingColumn {
        file: String,
        line: u32,
        column: &'static str,
        found: String,
    },
    #[error("{file}:{line}: unreadable CSV row: {reason}")]
    Csv {
        file: String,
        line: u32,
        reason: String,
    },
    #[error("{file}:{line}: not valid UTF-8 (export the sheet as CSV UTF-8)")]
    Utf8 { file: String, line: u32 },
    #[error("{file}:{line}: {column} {url:?}: {reason}")]
    BadUrl {
        file: String,
        line: u32,
        column: &'static str,
        url: String,
        reason: String,
    },
    #[error("{file}:{line}: status {value:?} for {url:?}: expected 301, 302, 307, 308 or 410")]
    BadStatus {
        file: String,
        line: u32,
        url: String,
        value: String,
    },
    #[error(
        "{file}:{line}: target {url:?} points to host {host:?}, which is not in allowed_hosts"
    )]
    HostNotAllowed {
        file: String,
        line: u32,
        url: String,
        host: String,
    },
    #[error("{file}:{line}: {url:?} is also on line {first} with a different target or status ({this} here, {other} there)")]
    Conflict {
        file: String,
        line: u32,
        url: String,
        first: u32,
        this: String,
        other: String,
    },
    #[error("{file}:{line}: {url:?} redirects to itself")]
    SelfRedirect {
        file: String,
        line: u32,
        url: String,
    },
    #[error("{file}:{line}: redirect loop: {cycle}")]
    Loop {
        file: String,
        line: u32,
        cycle: String,
    },
    #[error("{file}:{line}: {url:?} starts a chain longer than {max} hops: {chain}")]
    ChainTooLong {
        file: String,
        line: u32,
        url: String,
        max: usize,
        chain: String,
    },
    #[error("{file}: more than {max} entries or {max_bytes} bytes of URLs")]
    TooLarge {
        file: String,
        max: usize,
        max_bytes: usize,
    },
}

/// Every problem of one load. Only the first [`LoadErrors::KEEP`] are kept: a file with a
/// million broken rows should not take a million lines of memory to say so.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoadErrors {
    /// The problems kept (the first `KEEP`).
    pub errors: Vec<LoadError>,
    /// Errors found beyond the kept ones.
    pub omitted: usize,
}

impl LoadError {
    /// The CSV line the error is about; 0 when it concerns the whole file.
    pub fn line(&self) -> u32 {
        use LoadError::*;
        match self {
            Read { .. } | TooLarge { .. } => 0,
            MissingColumn { line, .. }
            | Csv { line, .. }
            | Utf8 { line, .. }
            | BadUrl { line, .. }
            | BadStatus { line, .. }
            | HostNotAllowed { line, .. }
            | Conflict { line, .. }
            | SelfRedirect { line, .. }
            | Loop { line, .. }
            | ChainTooLong { line, .. } => *line,
        }
    }
}

impl LoadErrors {
    /// How many problems are kept; the rest are counted.
    pub const KEEP: usize = 1000;

    pub(crate) fn push(&mut self, e: LoadError) {
        if self.errors.len() < Self::KEEP {
            self.errors.push(e);
        } else {
            self.omitted += 1;
        }
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Total number of errors found, kept or not.
    pub fn count(&self) -> usize {
        self.errors.len() + self.omitted
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        if self.omitted > 0 {
            write!(f, "\n... and {} more errors", self.omitted)?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

impl From<LoadError> for LoadErrors {
    /// A load that failed on one problem before any row was read.
    fn from(e: LoadError) -> Self {
        let mut errs = LoadErrors::default();
        errs.push(e);
        errs
    }
}

/// Something that loads but deserves a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line in the CSV file.
    pub line: u32,
    /// What is wrong.
    pub message: String,
}
