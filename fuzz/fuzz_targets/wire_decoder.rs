//! Fuzz target `wire_decoder`: the checks are in `hubbub_fuzz::wire_decoder` (fuzz/src/lib.rs), shared
//! with the regression test `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubbub_fuzz::wire_decoder(data));
