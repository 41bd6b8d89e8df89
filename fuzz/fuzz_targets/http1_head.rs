//! Fuzz target `http1_head`: the checks live in `cutover::fuzzing::check_http1_head`, shared with the corpus
//! replay test (`tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cutover::fuzzing::check_http1_head(data));
