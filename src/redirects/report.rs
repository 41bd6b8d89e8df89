//! What a load found, printed by `redirects check` and logged on every reload.

use super::error::Warning;
use std::fmt;

/// Summary of a successful load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Name of the table the report is about.
    pub table: String,
    /// The file as configured, for messages.
    pub file: String,
    /// Entries in the table (rows minus identical duplicates and blank rows).
    pub entries: usize,
    /// Exact entries, including per-host ones.
    pub exact: usize,
    /// Prefix (`/*`) rules.
    pub prefix: usize,
    /// Entries bound to a host (`https://host/path` in `old_url`).
    pub per_host: usize,
    /// Entries answering 410.
    pub gone: usize,
    /// Entries whose target was itself redirected, rewritten to the final target.
    pub chains_collapsed: usize,
    /// Hops of the longest chain before collapsing (1 = no chain).
    pub longest_chain: usize,
    /// Rows repeating an earlier row exactly (kept once).
    pub identical_duplicates: usize,
    /// Bytes of URL text kept (keys and targets).
    pub url_bytes: usize,
    /// Heap bytes of the table beyond `url_bytes` (entries, hash slots, spare capacity).
    pub overhead_bytes: usize,
    /// Bytes of a retired table's memory the table was built in (`redirects::recycle`; 0 when
    /// built in fresh memory). Logged, not printed: it says how the load ran, not what it found.
    pub reused_bytes: usize,
    /// The first [`Report::KEEP_WARNINGS`] warnings.
    pub warnings: Vec<Warning>,
    /// Warnings beyond `KEEP_WARNINGS`, counted only.
    pub warnings_omitted: usize,
}

impl Report {
    /// How many warnings are kept.
    pub const KEEP_WARNINGS: usize = 1000;

    pub(crate) fn warn(&mut self, line: u32, message: String) {
        if self.warnings.len() < Self::KEEP_WARNINGS {
            self.warnings.push(Warning { line, message });
        } else {
            self.warnings_omitted += 1;
        }
    }

    /// All warnings, kept or omitted.
    pub fn warning_count(&self) -> usize {
        self.warnings.len() + self.warnings_omitted
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in &self.warnings {
            writeln!(f, "warning: {}:{}: {}", self.file, w.line, w.message)?;
        }
        if self.warnings_omitted > 0 {
            writeln!(
                f,
                "warning: ... and {} more warnings",
                self.warnings_omitted
            )?;
        }
        write!(
            f,
            "redirect table {:?} ({}): {} entries ({} exact, {} prefix, {} per-host, {} gone), \
             {} chains collapsed (longest {} hops), {} identical duplicates, {} warnings",
            self.table,
            self.file,
            self.entries,
            self.exact,
            self.prefix,
            self.per_host,
            self.gone,
            self.chains_collapsed,
            self.longest_chain,
            self.identical_duplicates,
            self.warning_count()
        )
    }
}
