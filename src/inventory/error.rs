//! Errors of the inventory: each says what was being done with which file, line or URL.

/// Loading or saving the persisted inventory file.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The file could not be read, written, synced or renamed.
    #[error("inventory file {file}: {action}: {reason}")]
    Io {
        /// The file.
        file: String,
        /// What was being done ("reading", "writing temp file", "renaming into place", ...).
        action: &'static str,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is half-written, corrupted or not an inventory file.
    #[error("inventory file {file}:{line}: {reason}")]
    Corrupt {
        /// The file.
        file: String,
        /// 1-based line where the problem was found.
        line: usize,
        /// What is wrong there.
        reason: String,
    },
}

/// Importing a sitemap or sitemap index.
#[derive(Debug, thiserror::Error)]
pub enum SitemapError {
    /// Reading a local file failed.
    #[error("sitemap {source_name}: reading: {reason}")]
    Read {
        /// The file or URL.
        source_name: String,
        /// The operating system's reason.
        reason: String,
    },
    /// Fetching over HTTP failed (connect, status, timeout).
    #[error("sitemap {source_name}: fetching: {reason}")]
    Fetch {
        /// The URL.
        source_name: String,
        /// What went wrong.
        reason: String,
    },
    /// The XML is malformed or is not a sitemap.
    #[error("sitemap {source_name}:{line}: {reason}")]
    Malformed {
        /// The file or URL.
        source_name: String,
        /// 1-based line (of the uncompressed text).
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A limit of the sitemaps protocol (or of the inventory) was exceeded.
    #[error("sitemap {source_name}: {reason}")]
    Limit {
        /// The file or URL.
        source_name: String,
        /// Which limit.
        reason: String,
    },
}

/// Requesting URLs from the new storefront (`--probe`).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The base URL is not `http(s)://host[:port]`.
    #[error("--probe {url:?}: {reason}")]
    BadBase {
        /// What was given.
        url: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("setting up the probe client: {0}")]
    Client(String),
}
