//! The inventory file on a real file system: survives a restart, a half-written or altered file
//! is rejected with file and line and the inventory starts empty, the persister saves on its
//! interval and on drain.

use cutover::inventory::{
    load_or_start_empty, persist, spawn_persister, CrawlerMatcher, Inventory, KeyPolicy, Loaded,
    PersistError,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn inv() -> Inventory {
    Inventory::new(1000, KeyPolicy::default(), CrawlerMatcher::default())
}

fn traffic(inv: &Inventory) {
    for n in 0..30u64 {
        for _ in 0..=n {
            inv.record_at(
                "",
                &format!("/products/{n}"),
                200,
                b"Googlebot",
                1_767_225_600 + n,
            );
        }
    }
    inv.import_sitemap_urls(&[(String::new(), "/pages/about".into())], 1_767_225_600)
        .unwrap();
}

#[test]
fn the_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inventory.txt");
    let before = inv();
    traffic(&before);
    assert_eq!(persist::save(&before, &file).unwrap(), 31);
    // Only the file is left beside it: the temp file was renamed into place.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["inventory.txt"]);
    let after = inv();
    assert_eq!(
        load_or_start_empty(&after, &file),
        Loaded::Restored {
            entries: 31,
            dropped: 0
        }
    );
    assert_eq!(after.entries(), before.entries());
    // Saving again replaces the file atomically with the new counts.
    after.record_at("", "/products/0", 200, b"", 1_767_300_000);
    persist::save(&after, &file).unwrap();
    let again = inv();
    load_or_start_empty(&again, &file);
    assert_eq!(again.entries(), after.entries());
}

#[test]
fn no_file_is_a_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let i = inv();
    assert_eq!(
        load_or_start_empty(&i, &dir.path().join("none.txt")),
        Loaded::NoFile
    );
    assert!(i.is_empty());
}

fn expect_started_empty(file: &Path, line: usize, why: &str) {
    let i = inv();
    let Loaded::StartedEmpty(warning) = load_or_start_empty(&i, file) else {
        panic!("loaded a bad file");
    };
    let at = format!("inventory file {}:{line}: ", file.display());
    assert!(warning.starts_with(&at), "{warning}");
    assert!(warning.contains(why), "{warning}");
    assert!(
        warning.contains("starting with an empty inventory"),
        "{warning}"
    );
    assert!(i.is_empty());
    // Moved aside so the next save cannot overwrite the evidence.
    let mut bad = file.as_os_str().to_owned();
    bad.push(".bad");
    assert!(Path::new(&bad).exists(), "{warning}");
    assert!(!file.exists());
}

#[test]
fn a_half_written_file_is_rejected_and_the_inventory_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inventory.txt");
    let i = inv();
    traffic(&i);
    persist::save(&i, &file).unwrap();
    let full = std::fs::read(&file).unwrap();
    // Cut in the middle of line 10, as a crash during a non-atomic copy would leave it.
    let cut = full
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(9)
        .unwrap()
        .0
        + 4;
    std::fs::write(&file, &full[..cut]).unwrap();
    expect_started_empty(&file, 11, "incomplete (half-written?)");
}

#[test]
fn an_altered_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inventory.txt");
    let i = inv();
    traffic(&i);
    persist::save(&i, &file).unwrap();
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replacen("/products/29", "/products/28", 1);
    std::fs::write(&file, text).unwrap();
    expect_started_empty(&file, 33, "checksum mismatch");
}

#[test]
fn save_errors_name_the_file_and_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing-dir").join("inventory.txt");
    let e = persist::save(&inv(), &file).unwrap_err();
    assert!(
        matches!(
            e,
            PersistError::Io {
                action: "creating the temp file",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("missing-dir/inventory.txt"), "{e}");
    // A directory where the file should be: the rename fails, no temp file is left behind.
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("x"), "x").unwrap();
    let e = persist::save(&inv(), &taken).unwrap_err();
    assert!(
        matches!(
            e,
            PersistError::Io {
                action: "renaming the temp file into place",
                ..
            }
        ),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    // An unreadable path (a directory) is a read error, not "no file".
    let i = inv();
    match load_or_start_empty(&i, &taken) {
        Loaded::StartedEmpty(w) => assert!(w.contains("reading"), "{w}"),
        other => panic!("{other:?}"),
    }
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_persister_saves_on_its_interval_and_on_drain() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inventory.txt");
    let i = Arc::new(inv());
    i.record_at("", "/first", 200, b"", 1);
    let p = spawn_persister(i.clone(), file.clone(), Duration::from_millis(50));
    let status = p.status();
    wait_for("a periodic save", || status.saves() >= 1).await;
    let saved = persist::load_entries(&file).unwrap().unwrap();
    assert!(saved.iter().any(|e| e.url == "/first"));
    // Hits after the last periodic save reach the file through the final save on drain.
    i.record_at("", "/last", 200, b"", 2);
    let before = status.saves();
    assert_eq!(p.drain().await.unwrap(), 2);
    assert!(status.saves() > before);
    let saved = persist::load_entries(&file).unwrap().unwrap();
    assert!(saved.iter().any(|e| e.url == "/last"), "{saved:?}");
    assert_eq!(status.failures(), 0);
}

#[tokio::test]
async fn persister_failures_are_counted_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gone").join("inventory.txt");
    let p = spawn_persister(Arc::new(inv()), file, Duration::from_millis(20));
    let status = p.status();
    wait_for("a failed save", || status.failures() >= 1).await;
    assert!(status
        .last_error()
        .unwrap()
        .contains("creating the temp file"));
    assert!(p.save_now().await.is_err());
    assert!(p.drain().await.is_err());
}
