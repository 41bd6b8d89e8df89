//! Fuzz target `fast_path`: the checks live in `cutover::fuzzing::check_fast_path`, shared with the corpus
//! replay test (`tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cutover::fuzzing::check_fast_path(data));
