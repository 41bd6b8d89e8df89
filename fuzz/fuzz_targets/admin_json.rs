//! Fuzz target `admin_json`: the checks live in `cutover::fuzzing::check_admin_json`, shared with the corpus
//! replay test (`tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cutover::fuzzing::check_admin_json(data));
