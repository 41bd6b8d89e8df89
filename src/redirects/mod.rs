//! The migration's redirect plan, served from memory.
//!
//! Flow: `config::TableConfig` (serde) -> [`load`] reads the CSV (`csv_load`), checks and keys
//! each row (`validate`, `normalize`), builds the compact index (`table`), collapses chains and
//! rejects loops (`chains`) -> an immutable [`RedirectTable`] the proxy shares behind its
//! snapshot, plus a [`Report`]. On the request path the proxy calls [`RedirectTable::lookup`]
//! and, for misses the new storefront answers with 404, [`MissedRedirects::record`].
//! `check` is the `cutover redirects check` command.
//!
//! Loading allocates and takes ~1 s for 10^6 rows: call it off the request path (reloads use
//! a low-priority thread, see [`crate::background`]), and drop replaced tables off the request path too.
//!
//! Layer: domain. May import its own layer and policy, wire; never edge, control, server, request,
//! config, snapshot, observe, clients.

mod chains;
pub mod check;
pub mod config;
mod csv_load;
mod error;
mod index;
mod missed;
mod normalize;
pub mod probation;
pub(crate) mod recycle;
mod report;
mod table;
mod validate;

#[cfg(test)]
mod tests_load;
#[cfg(test)]
mod tests_lookup;
#[cfg(test)]
mod tests_status;

/// Crate-internal pieces the inventory and the fuzzing checks (`crate::fuzzing`) re-use.
pub(crate) mod internals {
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) use super::csv_load::read_rows;
    pub(crate) use super::normalize::{canon_target, is_canonical_path};
    pub(crate) use super::validate::split_absolute;
}

pub use config::{ApplyTo, DuringShift, QueryMode, TableConfig, TrailingSlash};
pub use error::{LoadError, LoadErrors, Warning};
pub use missed::{MissedEntry, MissedRedirects};
pub use report::Report;
pub use table::RedirectTable;

use http::StatusCode;
use std::path::Path;

/// Body served with a 410: small, so removed pages cost nothing.
pub const GONE_BODY: &str = "This page has been removed.\n";

/// What the rest of the config knows that a table needs at load.
pub struct LoadContext<'a> {
    /// Directory of the config file; `TableConfig::file` is relative to it.
    pub base_dir: &'a Path,
    /// Name of a route that pins (host, path) to the OLD storefront, if any: such URLs never
    /// reach the table for shoppers on that route, which deserves a warning.
    pub pinned_to_old: &'a dyn Fn(Option<&str>, &str) -> Option<String>,
}

impl LoadContext<'_> {
    /// A context without routes.
    pub fn standalone(base_dir: &Path) -> LoadContext<'_> {
        LoadContext {
            base_dir,
            pinned_to_old: &|_, _| None,
        }
    }
}

/// A table that passed validation, with what was found on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The lookup table.
    pub table: RedirectTable,
    /// What validation found (counts, chains, warnings).
    pub report: Report,
}

/// A redirect answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The status as written in the table.
    pub written: StatusCode,
    /// `None` for 410; otherwise a same-site path or a URL on an allowed host, built only from
    /// the table and re-encoded parts of the request.
    pub location: Option<String>,
    /// Line of the row in the CSV, for logs.
    pub line: u32,
    /// The table's policy, so [`Hit::status`] needs only the shift state.
    pub during_shift: DuringShift,
}

impl Hit {
    /// The status to serve. While the new storefront's share is below 100% (`full_shift` false)
    /// and the table says `during_shift = "temporary"`, 301 becomes 302 and 308 becomes 307:
    /// a browser caches a permanent redirect forever, and a rollback would strand shoppers.
    pub fn status(&self, full_shift: bool) -> StatusCode {
        if full_shift || self.during_shift == DuringShift::AsWritten {
            return self.written;
        }
        match self.written {
            StatusCode::MOVED_PERMANENTLY => StatusCode::FOUND,
            StatusCode::PERMANENT_REDIRECT => StatusCode::TEMPORARY_REDIRECT,
            s => s,
        }
    }

    /// [`Hit::status`] for the split's share in basis points: only a full shift (10,000 bp,
    /// every shopper on the new storefront) serves a permanent redirect permanently; 99.99% is
    /// still a shift a rollback must be able to undo.
    pub fn status_at(&self, share_bp: u16) -> StatusCode {
        self.status(share_bp == FULL_SHARE_BP)
    }
}

/// The split's share when every shopper is on the new storefront, in basis points.
pub const FULL_SHARE_BP: u16 = 10_000;

/// Reads, validates and builds one table. Every problem is collected (each with file:line);
/// any error rejects the whole table so the previous one keeps serving.
pub fn load(cfg: &TableConfig, ctx: &LoadContext<'_>) -> Result<Loaded, LoadErrors> {
    let path = ctx.base_dir.join(&cfg.file);
    let file = path.display().to_string();
    // A bad default status is reported without reading the file, as `load_bytes` would.
    check_default_status(cfg, &file)?;
    let mut data = Vec::new();
    let read = std::fs::File::open(&path).and_then(|mut f| {
        use std::io::Read;
        let len = f.metadata()?.len();
        data = recycle::take_read(usize::try_from(len).unwrap_or(usize::MAX));
        f.read_to_end(&mut data)
    });
    let built = match read {
        Ok(_) => build(cfg, ctx, file, &data),
        Err(e) => Err(LoadError::Read {
            file,
            reason: e.to_string(),
        }
        .into()),
    };
    recycle::keep_read(data);
    built
}

/// [`load`] on bytes already in memory: the CSV as if read from `base_dir/cfg.file` (that path
/// only names the file in errors and reports). Exists so the fuzz targets and the corpus replay
/// test (`tests/fuzz_corpus.rs`) reach the whole loader without touching the file system.
pub fn load_bytes(
    cfg: &TableConfig,
    ctx: &LoadContext<'_>,
    data: &[u8],
) -> Result<Loaded, LoadErrors> {
    let file = ctx.base_dir.join(&cfg.file).display().to_string();
    check_default_status(cfg, &file)?;
    build(cfg, ctx, file, data)
}

fn check_default_status(cfg: &TableConfig, file: &str) -> Result<(), LoadErrors> {
    if validate::STATUSES.contains(&cfg.default_status) {
        return Ok(());
    }
    Err(LoadError::BadStatus {
        file: file.to_string(),
        line: 0,
        url: "(default_status in the config)".into(),
        value: cfg.default_status.to_string(),
    }
    .into())
}

/// Validates and builds the table from the CSV bytes of `file`, in a retired table's memory
/// when one is kept.
fn build(
    cfg: &TableConfig,
    ctx: &LoadContext<'_>,
    file: String,
    data: &[u8],
) -> Result<Loaded, LoadErrors> {
    let mem = recycle::take_table(data.len()).unwrap_or_default();
    build_in(cfg, ctx, file, data, mem)
}

fn build_in(
    cfg: &TableConfig,
    ctx: &LoadContext<'_>,
    file: String,
    data: &[u8],
    mem: table::Buffers,
) -> Result<Loaded, LoadErrors> {
    let mut errs = LoadErrors::default();
    // Rows <= newlines + 1 and URL text <= file size: size everything once, no rehashing.
    let rows = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let (mut table, reused_bytes) = RedirectTable::with_capacity(cfg, rows, data.len(), mem);
    let mut report = Report {
        table: cfg.name.clone(),
        file: file.clone(),
        reused_bytes,
        ..Report::default()
    };
    let allow = config::HostAllowList::new(&cfg.allowed_hosts);
    let mut sink = validate::RowSink {
        file: &file,
        table: &mut table,
        allow: &allow,
        default_status: cfg.default_status,
        ctx,
        errs: &mut errs,
        report: &mut report,
        norm: normalize::Normalized::default(),
    };
    let mut csv_errs = LoadErrors::default();
    csv_load::read_rows(&file, data, &mut csv_errs, |row| sink.add(row));
    errs.omitted += csv_errs.omitted;
    csv_errs.errors.into_iter().for_each(|e| errs.push(e));
    chains::collapse(&mut table, &file, &mut errs, &mut report);
    if !errs.is_empty() {
        return Err(errs);
    }
    table.finish();
    fill_counts(&table, &mut report);
    Ok(Loaded { table, report })
}

fn fill_counts(t: &RedirectTable, r: &mut Report) {
    r.entries = t.len();
    for i in 0..t.len() as u32 {
        if t.is_prefix(i) {
            r.prefix += 1;
        } else {
            r.exact += 1;
        }
        r.per_host += usize::from(!t.host_of(i).is_empty());
        r.gone += usize::from(t.status(i) == 410);
    }
    r.url_bytes = t.url_bytes();
    r.overhead_bytes = t.overhead_bytes();
}
