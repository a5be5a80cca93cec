//! Fuzz target `markdown`: the checks are in `hubbub_fuzz::markdown` (fuzz/src/lib.rs),
//! shared with the regression test `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubbub_fuzz::markdown(data));
