//! Replays every seed and every saved crash of the fuzz corpora (`fuzz/corpus/<target>/`)
//! through the same checks the fuzz targets run (`cutover::fuzzing`), on the stable toolchain.
//! This is what CI runs; `cargo +nightly fuzz run <target>` explores beyond it (see README.md).

use std::path::Path;

use cutover::fuzzing::TARGETS;

#[test]
fn every_corpus_file_passes_its_target_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failed = Vec::new();
    for (name, check) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: empty corpus", dir.display());
        for file in files {
            let data = std::fs::read(&file).expect("corpus file reads");
            let outcome = std::panic::catch_unwind(|| check(&data));
            if outcome.is_err() {
                failed.push(format!("{name}: {}", file.display()));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "fail their checks (panics above):\n{}",
        failed.join("\n")
    );
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, _) in TARGETS {
        assert!(
            root.join("corpus").join(name).is_dir(),
            "no corpus for {name}"
        );
        let target = root.join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&target)
            .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        assert!(
            text.contains("cutover::fuzzing::"),
            "{name} does not use the shared check"
        );
    }
}
