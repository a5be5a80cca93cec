//! Replays the fuzzers' inputs under plain `cargo test`: the hand-made seeds in
//! `fuzz/seeds/<target>/` and every input a fuzzer found a bug with, kept in
//! `fuzz/regressions/<target>/`. Each goes through the same checks the fuzz target runs
//! (`fuzz/src/lib.rs`, included here as a module). See docs/fuzzing.md.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

// The fuzz crate's library, compiled into this test; its items are public for the fuzz
// targets, not for this crate.
#[allow(unreachable_pub)]
#[path = "../fuzz/src/lib.rs"]
mod checks;

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_and_every_saved_crash_passes_its_targets_checks() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    for &(target, check) in checks::TARGETS {
        let seeds = files_in(&fuzz.join("seeds").join(target));
        assert!(
            !seeds.is_empty(),
            "fuzz/seeds/{target}/ has no inputs; the replay would pass without testing anything"
        );
        let regressions = files_in(&fuzz.join("regressions").join(target));
        for path in seeds.iter().chain(&regressions) {
            let data = fs::read(path).expect("readable input");
            if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that fail their checks: {failures:#?}"
    );
}
