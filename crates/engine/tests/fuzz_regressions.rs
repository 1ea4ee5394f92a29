//! Replays saved fuzz inputs through the same property checks the fuzz targets run
//! (`rill_engine::fuzzing`), so a finding stays fixed under a plain `cargo test`.
//!
//! - every file in `fuzz/regressions/<target>/` (crashes once found, kept after the fix);
//! - the independent Kafka vectors, which also seed the fuzz corpora, through `batch_decode`
//!   and as the torn tail of `segment_recover`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::path::{Path, PathBuf};

use rill_engine::fuzzing::{self, TrackingAlloc};

// The allocation bound of `batch_decode` is measured through this allocator.
#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && !path.ends_with(".gitkeep"))
        .collect();
    files.sort();
    files
}

/// Runs `target` on each file, reporting every failing file by name rather than the first.
fn replay(target: &str, files: &[PathBuf]) -> usize {
    let failures: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| fuzzing::run(target, &data));
            match outcome {
                Ok(true) => None,
                Ok(false) => Some(format!("{target}: no such fuzz target")),
                Err(_) => Some(format!("{target}: {}", file.display())),
            }
        })
        .collect();
    assert!(
        failures.is_empty(),
        "failing inputs:\n{}",
        failures.join("\n")
    );
    files.len()
}

#[test]
fn saved_fuzz_findings_stay_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let mut total = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        let target = dir.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            fuzzing::TARGETS.contains(&target.as_str()),
            "{}: not a fuzz target (expected one of {:?})",
            dir.display(),
            fuzzing::TARGETS
        );
        let replayed = replay(&target, &files_in(&dir));
        println!("{target}: {replayed} regression inputs");
        total += replayed;
    }
    assert!(total > 0, "no regression inputs under {}", root.display());
}

#[test]
fn kafka_vectors_pass_the_fuzz_properties() {
    let files: Vec<PathBuf> = [
        rill_testdata::kafka_batches(),
        rill_testdata::generated_batches(),
    ]
    .iter()
    .flat_map(|dir| files_in(dir))
    .filter(|path| path.extension().is_some_and(|ext| ext == "bin"))
    .collect();
    assert!(files.len() > 30, "only {} vectors", files.len());
    replay("batch_decode", &files);
    replay("segment_recover", &files);
}
