//! Read-only inspection: a clean directory is sound; damage is found and named, not repaired.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::fs;
use std::path::{Path, PathBuf};

use rill_engine::Error;
use rill_engine::TopicPartition;
use rill_engine::inspect::Inspector;
use rill_engine::log::LogConfig;
use rill_engine::record::{BatchBuilder, Compression, Limits};
use rill_engine::store::Store;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 32 * 1024,
        index_interval_bytes: 512,
        limits: Limits {
            max_batch_bytes: 8 * 1024,
            ..Limits::default()
        },
        ..LogConfig::default()
    }
}

/// A closed data directory with topic "t" (2 partitions) holding `batches` batches in partition 0.
fn populated(root: &Path, batches: u32) {
    let store = Store::open(root, config()).unwrap();
    let topic = store.create_topic("t", 2).unwrap();
    let mut log = store.open_partition(&topic, 0).unwrap();
    for i in 0..batches {
        let mut builder = BatchBuilder::new(Compression::None);
        for j in 0..5u32 {
            builder
                .append(i64::from(i), Some(&j.to_be_bytes()), Some(&[7u8; 90]), &[])
                .unwrap();
        }
        log.append(&mut builder.build().unwrap()).unwrap();
    }
}

fn partition(inspector: &Inspector, n: usize) -> TopicPartition {
    inspector.partitions().unwrap()[n].clone()
}

fn segment_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(root.join("t-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_cleanly_closed_directory_is_sound() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path(), 200);
    let inspector = Inspector::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(inspector.partitions().unwrap().len(), 2);
    let check = inspector.verify(&partition(&inspector, 0)).unwrap();
    assert!(check.is_sound(), "{:?}", check.problems);
    assert_eq!((check.batches, check.records), (200, 1000));
    assert_eq!(check.summary.next_offset, 1000);
    assert!(check.summary.segments > 2);
    let empty = inspector.verify(&partition(&inspector, 1)).unwrap();
    assert!(empty.is_sound(), "{:?}", empty.problems);
    assert_eq!(empty.summary.next_offset, 0);
}

#[test]
fn a_flipped_byte_is_reported_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path(), 200);
    let second = &segment_files(dir.path())[1];
    let mut bytes = fs::read(second).unwrap();
    bytes[3000] ^= 0x40;
    fs::write(second, bytes).unwrap();
    let inspector = Inspector::open(dir.path(), Limits::default()).unwrap();
    let check = inspector.verify(&partition(&inspector, 0)).unwrap();
    assert!(!check.is_sound());
    let problem = &check.problems[0];
    assert_eq!(problem.path, *second);
    assert!(problem.position.unwrap() <= 3000, "{problem}");
    assert!(problem.reason.contains("CRC"), "{problem}");
}

#[test]
fn a_wrong_index_entry_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path(), 200);
    let index = segment_files(dir.path())[0].with_extension("index");
    let mut bytes = fs::read(&index).unwrap();
    bytes[7] = bytes[7].wrapping_add(1);
    fs::write(&index, bytes).unwrap();
    let inspector = Inspector::open(dir.path(), Limits::default()).unwrap();
    let check = inspector.verify(&partition(&inspector, 0)).unwrap();
    assert!(
        check.problems.iter().any(|p| p.path == index),
        "{:?}",
        check.problems
    );
}

#[test]
fn inspection_waits_for_the_engine_to_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    let error = Inspector::open(dir.path(), Limits::default()).unwrap_err();
    assert!(matches!(error, Error::DirectoryLocked { .. }), "{error}");
    drop(store);
    let first = Inspector::open(dir.path(), Limits::default()).unwrap();
    let _second = Inspector::open(dir.path(), Limits::default()).unwrap();
    assert!(matches!(
        Store::open(dir.path(), config()),
        Err(Error::DirectoryLocked { .. })
    ));
    drop(first);
}

/// `verify` on preallocated segments: sound after a clean close (sealed to their batches), and
/// after a crash the preallocated zero tail is named as such, not as corruption.
#[test]
fn preallocated_segments_verify_sound_and_a_crashed_zero_tail_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let preallocated = LogConfig {
        preallocate: true,
        ..config()
    };
    let store = Store::open(dir.path(), preallocated).unwrap();
    let topic = store.create_topic("t", 1).unwrap();
    let mut log = store.open_partition(&topic, 0).unwrap();
    for i in 0..100 {
        let mut builder = BatchBuilder::new(Compression::None);
        builder
            .append(i64::from(i), None, Some(&[7u8; 90]), &[])
            .unwrap();
        log.append(&mut builder.build().unwrap()).unwrap();
    }
    // A crash now: copy the partition as it is while the log is open.
    let crashed = tempfile::tempdir().unwrap();
    fs::create_dir(crashed.path().join("t-0")).unwrap();
    for entry in fs::read_dir(dir.path().join("t-0")).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(
            &path,
            crashed.path().join("t-0").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    drop(log);
    drop(store);

    let inspector = Inspector::open(dir.path(), Limits::default()).unwrap();
    let check = inspector.verify(&partition(&inspector, 0)).unwrap();
    assert!(check.is_sound(), "{:?}", check.problems);
    assert_eq!(check.records, 100);

    let inspector = Inspector::open(crashed.path(), Limits::default()).unwrap();
    let check = inspector.verify(&partition(&inspector, 0)).unwrap();
    assert_eq!(check.records, 100, "every batch before the zeros");
    assert!(
        !check.problems.is_empty()
            && check
                .problems
                .iter()
                .all(|p| p.reason.contains("zero-filled tail")),
        "{:?}",
        check.problems
    );
}
