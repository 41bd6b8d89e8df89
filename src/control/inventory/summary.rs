//! The inventory's lines in `GET /admin/status` and `cutover status`: its size and, above all,
//! what went wrong with its file. A file rejected at start (half-written, corrupt) leaves the
//! proxy serving with an empty inventory: the log says so once, and the status keeps saying so
//! for as long as the process runs, so an operator who looks later still learns that the counts
//! started from zero.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InventoryRuntime;

/// `inventory` in the status document (present when `[inventory]` is on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventorySummary {
    /// URLs kept now.
    pub urls: usize,
    /// Most URLs it keeps.
    pub capacity: usize,
    /// Where it is persisted; `None`: memory only.
    pub file: Option<String>,
    /// What happened to the file at start: `no_file`, `restored`, `started_empty`.
    pub load: String,
    /// Why the file was rejected at start (names the file, the line and the reason, and where
    /// the bad file was moved); also `cutover_inventory_load_failed` = 1.
    pub load_warning: Option<String>,
    /// The last save error, until a save succeeds.
    pub last_save_error: Option<String>,
}

impl InventoryRuntime {
    /// The status document's view of the inventory.
    pub fn summary(&self) -> InventorySummary {
        let f = self.file_status();
        InventorySummary {
            urls: self.inventory.len(),
            capacity: self.inventory.capacity(),
            file: f.file,
            load: f.load.to_string(),
            load_warning: f.load_warning,
            last_save_error: f.last_save_error,
        }
    }
}

impl fmt::Display for InventorySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = match (&self.file, self.load.as_str()) {
            (None, _) => "in memory only".to_string(),
            (Some(p), "started_empty") => format!("file {p} REJECTED at start"),
            (Some(p), _) => format!("file {p}"),
        };
        writeln!(
            f,
            "inventory   {} of {} URLs; {file}",
            self.urls, self.capacity
        )?;
        if let Some(w) = &self.load_warning {
            writeln!(f, "WARNING     URL inventory started empty: {w}")?;
        }
        if let Some(e) = &self.last_save_error {
            writeln!(f, "WARNING     URL inventory not saved: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_file_reads_as_a_warning_with_its_reason() {
        let s = InventorySummary {
            urls: 3,
            capacity: 100_000,
            file: Some("/srv/inventory.txt".into()),
            load: "started_empty".into(),
            load_warning: Some("/srv/inventory.txt:2: truncated".into()),
            last_save_error: None,
        };
        let text = s.to_string();
        assert!(
            text.starts_with(
                "inventory   3 of 100000 URLs; file /srv/inventory.txt REJECTED at start\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "WARNING     URL inventory started empty: /srv/inventory.txt:2: truncated\n"
            ),
            "{text}"
        );
        let fine = InventorySummary {
            load: "restored".into(),
            load_warning: None,
            ..s
        };
        assert_eq!(
            fine.to_string(),
            "inventory   3 of 100000 URLs; file /srv/inventory.txt\n"
        );
    }
}
