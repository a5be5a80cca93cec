//! Fuzz target `paging_cursor`: the checks are in `hubbub_fuzz::paging_cursor` (fuzz/src/lib.rs), shared
//! with the regression test `tests/fuzz_regressions.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hubbub_fuzz::paging_cursor(data));
