//! Fuzz target `inbound`: the checks are in `hubbub_fuzz::inbound` (fuzz/src/lib.rs), shared
//! with the regression test `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubbub_fuzz::inbound(data));
