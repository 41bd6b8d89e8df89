//! Temp directories holding a config and its companions (CSV tables, certificates, logs), and
//! the two ways a file gets replaced in production: atomically (rename) and in place.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A temp directory, removed when dropped.
pub struct Dir {
    dir: TempDir,
}

impl Default for Dir {
    fn default() -> Self {
        Self::new()
    }
}

impl Dir {
    /// A fresh, empty directory.
    pub fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// In-place rewrite: truncate and write the same inode, as `echo > file` or most editors do.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write file");
        p
    }

    /// Atomic replace: write a sibling temp file, then rename it over `name`.
    pub fn write_atomic(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        replace_atomically(&p, content);
        p
    }
}

/// Replaces `path` atomically (write a sibling, then rename), the way editors, ConfigMaps and
/// certbot do, so a watcher never reads half a file.
pub fn replace_atomically(path: &Path, contents: &(impl AsRef<[u8]> + ?Sized)) {
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents.as_ref()).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over file");
}

/// Rewrites `path` in place (truncate, then write the same inode), the way `echo > file` does.
pub fn write_in_place(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .expect("open for rewrite");
    f.write_all(text.as_bytes()).expect("rewrite");
    f.flush().expect("flush");
}

/// Writes `cutover.toml` in `dir`.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).expect("writing config");
    path
}

/// A `cutover.toml` in its own temp directory.
pub struct TempConfig {
    dir: Dir,
    path: PathBuf,
}

impl TempConfig {
    /// Writes `text` to a fresh `cutover.toml`.
    pub fn new(text: &str) -> Self {
        let dir = Dir::new();
        let path = write_config(dir.root(), text);
        TempConfig { dir, path }
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory (for CA files and other companions).
    pub fn dir(&self) -> &Path {
        self.dir.root()
    }

    /// A file next to the config.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    /// Replaces the config atomically, as a deploy would.
    pub fn rewrite(&self, text: &str) {
        replace_atomically(&self.path, text);
    }
}
