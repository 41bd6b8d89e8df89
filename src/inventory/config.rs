//! `[inventory]` in the TOML config: raw values, defaults, and a validation that lists every
//! problem at once.

use super::crawler::default_crawler_user_agents;
use super::store::DEFAULT_CAPACITY;
use crate::values::HumanDuration;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Most URLs an inventory may be configured to keep: ~1 KiB each at worst, so 10^7 is ~10 GB.
pub const MAX_CAPACITY: usize = 10_000_000;

/// The `[inventory]` section. Unknown fields are rejected so a typo fails the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InventoryConfig {
    /// Off by default: the inventory is a pre-cutover audit, turned on for the weeks before.
    #[serde(default)]
    pub enabled: bool,
    /// URLs kept at most (heavy hitters win).
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Where the inventory is persisted, relative to the config file's directory; `None` keeps
    /// it in memory only (a restart starts empty).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// How often the file is rewritten; a restart loses at most this much.
    #[serde(default = "default_persist_interval")]
    pub persist_interval: HumanDuration,
    /// User-Agent substrings (case-insensitive) of search-engine crawlers; replaces the default
    /// list when given.
    #[serde(default = "default_crawler_user_agents")]
    pub crawler_user_agents: Vec<String>,
    /// Keep URLs of different hosts apart (plans with per-host entries).
    #[serde(default)]
    pub per_host: bool,
}

fn default_capacity() -> usize {
    DEFAULT_CAPACITY
}

fn default_persist_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            enabled: false,
            capacity: default_capacity(),
            file: None,
            persist_interval: default_persist_interval(),
            crawler_user_agents: default_crawler_user_agents(),
            per_host: false,
        }
    }
}

/// One problem of the section: the field (`inventory.capacity`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted field name.
    pub field: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl InventoryConfig {
    /// Every problem at once; empty when the section is usable.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(ConfigProblem {
                field: format!("inventory.{field}"),
                message,
            })
        };
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            bad(
                "capacity",
                format!(
                    "must be between 1 and {MAX_CAPACITY}, got {}",
                    self.capacity
                ),
            );
        }
        let every = self.persist_interval.0;
        if every < Duration::from_secs(1) {
            bad(
                "persist_interval",
                format!("must be at least 1s, got {every:?}"),
            );
        }
        if let Some(f) = &self.file {
            if f.as_os_str().is_empty() {
                bad(
                    "file",
                    "is empty; leave it out to keep the inventory in memory".into(),
                );
            } else if f.file_name().is_none() {
                bad("file", format!("{} does not name a file", f.display()));
            }
        }
        for (i, ua) in self.crawler_user_agents.iter().enumerate() {
            if ua.trim().is_empty() {
                bad(
                    &format!("crawler_user_agents[{i}]"),
                    "is empty: it would match every User-Agent".into(),
                );
            } else if !ua.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                bad(
                    &format!("crawler_user_agents[{i}]"),
                    format!("{ua:?} has characters a User-Agent header cannot hold"),
                );
            }
        }
        out
    }

    /// Where the file is, for a config file in `base_dir`.
    pub fn file_path(&self, base_dir: &std::path::Path) -> Option<PathBuf> {
        self.file.as_ref().map(|f| base_dir.join(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_empty_section() {
        let c: InventoryConfig = toml::from_str("").unwrap();
        assert_eq!(c, InventoryConfig::default());
        assert_eq!(c.capacity, 100_000);
        assert!(c.crawler_user_agents.iter().any(|u| u == "Googlebot"));
        assert!(c.validate().is_empty());
    }

    #[test]
    fn all_fields_parse() {
        let c: InventoryConfig = toml::from_str(
            "enabled = true\ncapacity = 5000\nfile = 'inv.txt'\npersist_interval = '1m'\n\
             crawler_user_agents = ['MyBot']\nper_host = true",
        )
        .unwrap();
        assert!(c.enabled && c.per_host);
        assert_eq!(c.capacity, 5000);
        assert_eq!(c.persist_interval.0, Duration::from_secs(60));
        assert_eq!(c.crawler_user_agents, vec!["MyBot".to_string()]);
        assert_eq!(
            c.file_path(std::path::Path::new("/etc/cutover")),
            Some(PathBuf::from("/etc/cutover/inv.txt"))
        );
        assert!(c.validate().is_empty());
    }

    #[test]
    fn unknown_field_rejected() {
        let e = toml::from_str::<InventoryConfig>("capacty = 1").unwrap_err();
        assert!(e.to_string().contains("capacty"), "{e}");
    }

    #[test]
    fn every_problem_reported_at_once() {
        let c: InventoryConfig = toml::from_str(
            "capacity = 0\nfile = ''\npersist_interval = '10ms'\n\
             crawler_user_agents = ['ok', ' ', \"bad\\nbot\"]",
        )
        .unwrap();
        let fields: Vec<String> = c.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "inventory.capacity",
                "inventory.persist_interval",
                "inventory.file",
                "inventory.crawler_user_agents[1]",
                "inventory.crawler_user_agents[2]",
            ]
        );
        let too_big = InventoryConfig {
            capacity: MAX_CAPACITY + 1,
            ..InventoryConfig::default()
        };
        assert_eq!(
            too_big.validate()[0].to_string(),
            format!(
                "inventory.capacity: must be between 1 and {MAX_CAPACITY}, got {}",
                MAX_CAPACITY + 1
            )
        );
    }
}
