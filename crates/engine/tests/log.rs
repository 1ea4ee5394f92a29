//! The partition log: offsets, reads, rolls, retention, recovery and locking.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rill_engine::Error;
use rill_engine::io::PortableIo;
use rill_engine::log::{FsyncPolicy, LogConfig, PartitionLog};
use rill_engine::record::{BatchBuilder, Compression, Limits, RecordError};
use rill_engine::store::Store;
use rill_engine::{TopicName, TopicPartition};

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        segment_age: None,
        retention_bytes: None,
        retention_age: None,
        index_interval_bytes: 1024,
        fsync: FsyncPolicy::Never,
        limits: Limits {
            max_batch_bytes: 16 * 1024,
            ..Limits::default()
        },
        ..LogConfig::default()
    }
}

fn tp(name: &str) -> TopicPartition {
    TopicPartition::new(TopicName::new(name).unwrap(), 0)
}

fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, tp("t"), config, Box::new(PortableIo)).unwrap()
}

/// A batch of `records` records whose values encode (tag, index) so reads can be checked.
fn batch(tag: u32, records: u32, timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..records {
        let mut value = [tag.to_be_bytes(), i.to_be_bytes()].concat();
        value.resize(100, 0xab);
        builder.append(timestamp, None, Some(&value), &[]).unwrap();
    }
    builder.build().unwrap()
}

/// Reads the whole log from `from`, checking dense offsets; returns (offset, tag) pairs.
fn read_all(log: &rill_engine::log::LogReader, from: i64) -> Vec<(i64, u32)> {
    let limits = Limits::default();
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let slice = log.read(offset, 8 * 1024).unwrap();
        if slice.is_empty() {
            break;
        }
        for item in slice.batches() {
            let (_, batch) = item.unwrap();
            for record in batch.records(&limits).unwrap().iter() {
                let record = record.unwrap();
                if record.offset < offset {
                    continue;
                }
                assert_eq!(record.offset, offset, "offsets must be dense");
                let tag = u32::from_be_bytes(record.value.unwrap()[..4].try_into().unwrap());
                out.push((record.offset, tag));
                offset += 1;
            }
        }
        assert_eq!(slice.next_offset(), offset);
    }
    out
}

/// What a crash leaves: the files as they are in the page cache, copied while the log is open.
fn crash_copy(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != ".lock" {
            fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn offsets_are_dense_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut expected = 0;
    for tag in 0..200u32 {
        let info = log
            .append(&mut batch(tag, 1 + tag % 17, 1_000 + i64::from(tag)))
            .unwrap();
        assert_eq!(info.base_offset, expected);
        expected = info.last_offset + 1;
    }
    assert_eq!(log.next_offset(), expected);
    assert!(
        log.segment_count() > 3,
        "only {} segments",
        log.segment_count()
    );
    let records = read_all(&log.reader(), 0);
    assert_eq!(records.len() as i64, expected);
    // Every offset can start a read, including those in the middle of a batch.
    let reader = log.reader();
    for offset in (0..expected).step_by(7) {
        assert_eq!(read_all(&reader, offset).first().map(|r| r.0), Some(offset));
    }
}

#[test]
fn reads_outside_the_log_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    log.append(&mut batch(0, 5, 0)).unwrap();
    let reader = log.reader();
    assert!(reader.read(5, 1024).unwrap().is_empty());
    for offset in [-1, 6, i64::MAX] {
        let error = reader.read(offset, 1024).unwrap_err();
        assert!(
            matches!(
                error,
                Error::OffsetOutOfRange {
                    start: 0,
                    end: 5,
                    ..
                }
            ),
            "{error}"
        );
    }
}

#[test]
fn finds_offsets_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for tag in 0..100u32 {
        log.append(&mut batch(tag, 10, 10_000 + 100 * i64::from(tag)))
            .unwrap();
    }
    let reader = log.reader();
    assert_eq!(reader.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(reader.offset_for_timestamp(10_000).unwrap(), Some(0));
    assert_eq!(reader.offset_for_timestamp(10_001).unwrap(), Some(10));
    assert_eq!(reader.offset_for_timestamp(15_000).unwrap(), Some(500));
    assert_eq!(reader.offset_for_timestamp(19_900).unwrap(), Some(990));
    assert_eq!(reader.offset_for_timestamp(19_901).unwrap(), None);
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_age: Some(Duration::ZERO),
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    for tag in 0..4 {
        log.append(&mut batch(tag, 1, 0)).unwrap();
    }
    assert_eq!(log.segment_count(), 4);
    assert_eq!(read_all(&log.reader(), 0).len(), 4);
}

#[test]
fn retention_by_size_keeps_the_active_segment_and_live_readers() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(100 * 1024),
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    for tag in 0..300u32 {
        log.append(&mut batch(tag, 20, 0)).unwrap();
    }
    let reader = log.reader();
    let held = reader.read(0, 1024).unwrap();
    let before = log.segment_count();
    let outcome = log.enforce_retention().unwrap();
    assert!(outcome.segments_deleted > 0);
    assert_eq!(log.segment_count(), before - outcome.segments_deleted);
    assert!(log.size_bytes() <= 100 * 1024 + 64 * 1024);
    assert!(reader.start_offset() > 0);
    assert!(matches!(
        reader.read(0, 1024),
        Err(Error::OffsetOutOfRange { .. })
    ));
    // A slice taken before retention still reads its (now unlinked) segment.
    let (_, first) = held.batches().next().unwrap().unwrap();
    assert_eq!(first.base_offset(), 0);
    let remaining = read_all(&reader, reader.start_offset());
    assert_eq!(remaining.last().unwrap().0, log.next_offset() - 1);
}

#[test]
fn retention_by_age_uses_record_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_age: Some(Duration::from_secs(3600)),
        segment_age: Some(Duration::ZERO),
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    log.append(&mut batch(0, 1, now_ms - 7_200_000)).unwrap();
    log.append(&mut batch(1, 1, now_ms - 7_100_000)).unwrap();
    log.append(&mut batch(2, 1, now_ms)).unwrap();
    log.append(&mut batch(3, 1, now_ms)).unwrap();
    let outcome = log.enforce_retention().unwrap();
    assert_eq!(outcome.segments_deleted, 2);
    assert_eq!(log.start_offset(), 2);
}

#[test]
fn clean_close_and_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for tag in 0..120u32 {
        log.append(&mut batch(tag, 7, i64::from(tag))).unwrap();
    }
    let before = read_all(&log.reader(), 0);
    let segments = log.segment_count();
    log.close().unwrap();
    for file in log_files(dir.path()) {
        assert!(
            file.with_extension("index").exists(),
            "{} has no index",
            file.display()
        );
    }
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.segment_count(), segments);
    assert_eq!(read_all(&log.reader(), 0), before);
    assert_eq!(log.reader().offset_for_timestamp(60).unwrap(), Some(60 * 7));
    let info = log.append(&mut batch(999, 1, 0)).unwrap();
    assert_eq!(info.base_offset, 120 * 7);
}

#[test]
fn crash_recovery_keeps_every_complete_batch() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let crashed = dir.path().join("crashed");
    let mut log = open(&live, small_config());
    for tag in 0..150u32 {
        log.append(&mut batch(tag, 3, 0)).unwrap();
    }
    let expected = read_all(&log.reader(), 0);
    crash_copy(&live, &crashed);
    drop(log);
    let mut recovered = open(&crashed, small_config());
    assert_eq!(read_all(&recovered.reader(), 0), expected);
    assert_eq!(
        recovered.append(&mut batch(7, 1, 0)).unwrap().base_offset,
        450
    );
}

#[test]
fn torn_tail_vector_recovers_to_its_first_batch() {
    let vectors = rill_testdata::kafka_batches();
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        vectors.join("torn_tail.bin"),
        dir.path().join("00000000000000000000.log"),
    )
    .unwrap();
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.next_offset(), 5);
    assert_eq!(read_all(&log.reader(), 0).len(), 5);
    assert_eq!(log.append(&mut batch(1, 2, 0)).unwrap().base_offset, 5);
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.next_offset(), 7);
}

#[test]
fn corruption_in_an_early_segment_cuts_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let crashed = dir.path().join("crashed");
    let mut log = open(&live, small_config());
    for tag in 0..400u32 {
        log.append(&mut batch(tag, 4, 0)).unwrap();
    }
    crash_copy(&live, &crashed);
    drop(log);
    // The checkpoint says the first segments are safe; make it say nothing is, then damage
    // a byte inside the second segment's records.
    fs::remove_file(crashed.join("checkpoint")).unwrap();
    let files = log_files(&crashed);
    assert!(files.len() >= 3);
    let second = &files[1];
    let mut bytes = fs::read(second).unwrap();
    let damaged_at = 5_000;
    bytes[damaged_at] ^= 0xff;
    fs::write(second, &bytes).unwrap();

    let log = open(&crashed, small_config());
    let records = read_all(&log.reader(), 0);
    assert_eq!(
        log_files(&crashed).len(),
        2,
        "segments after the cut are deleted"
    );
    assert_eq!(records.len() as i64, log.next_offset());
    assert!(fs::metadata(second).unwrap().len() <= damaged_at as u64 + 64 * 1024);
    // Everything before the damaged batch survives.
    let first_segment_records = read_all(&log.reader(), 0)
        .iter()
        .filter(|(offset, _)| *offset < log.next_offset())
        .count();
    assert!(first_segment_records > 200);
}

#[test]
fn damaged_indexes_are_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for tag in 0..100u32 {
        log.append(&mut batch(tag, 5, 0)).unwrap();
    }
    let expected = read_all(&log.reader(), 0);
    log.close().unwrap();
    for file in log_files(dir.path()) {
        let index = file.with_extension("index");
        let mut bytes = fs::read(&index).unwrap();
        if bytes.len() >= 8 {
            let last = bytes.len() - 1;
            bytes[last] = bytes[last].wrapping_add(3); // points mid-batch
        }
        fs::write(&index, bytes).unwrap();
    }
    fs::remove_file(log_files(dir.path())[0].with_extension("timeindex")).unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log.reader(), 0), expected);
    let reader = log.reader();
    for offset in (0..500).step_by(13) {
        assert_eq!(read_all(&reader, offset).first().map(|r| r.0), Some(offset));
    }
}

#[test]
fn bad_batches_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut big = BatchBuilder::new(Compression::None);
    big.append(0, None, Some(&vec![1u8; 20_000]), &[]).unwrap();
    let error = log.append(&mut big.build().unwrap()).unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidBatch {
                source: RecordError::BatchTooLarge { .. },
                ..
            }
        ),
        "{error}"
    );

    let mut corrupt = batch(0, 3, 0);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let error = log.append(&mut corrupt).unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidBatch {
                source: RecordError::CrcMismatch { .. },
                ..
            }
        ),
        "{error}"
    );

    let mut trailing = batch(0, 1, 0);
    trailing.push(0);
    assert!(log.append(&mut trailing).is_err());
    assert!(log.append(&mut [0u8; 10]).is_err());
    assert_eq!(log.next_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(log.append(&mut batch(0, 2, 0)).unwrap().base_offset, 0);
}

#[test]
fn every_append_policy_syncs_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        fsync: FsyncPolicy::EveryAppend,
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    let info = log.append(&mut batch(0, 3, 0)).unwrap();
    assert!(info.durable);
    assert_eq!(log.durable_offset(), 3);
    assert_eq!(log.reader().durable_offset(), 3);
}

#[test]
fn a_directory_has_one_opener() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_config()).unwrap();
    let error = Store::open(dir.path(), small_config()).unwrap_err();
    assert!(matches!(error, Error::DirectoryLocked { .. }), "{error}");
    let topic = store.create_topic("t", 2).unwrap();
    let log = store.open_partition(&topic, 1).unwrap();
    let error = store.open_partition(&topic, 1).unwrap_err();
    assert!(matches!(error, Error::PartitionBusy { .. }), "{error}");
    drop(log);
    store.open_partition(&topic, 1).unwrap();
    drop(store);
    Store::open(dir.path(), small_config()).unwrap();
}

#[test]
fn topics_are_validated_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_config()).unwrap();
    for name in ["..", "../escape", "a/b", ""] {
        assert!(matches!(
            store.create_topic(name, 1),
            Err(Error::InvalidTopicName { .. })
        ));
    }
    assert!(
        fs::read_dir(dir.path().parent().unwrap())
            .unwrap()
            .all(|e| {
                let name = e.unwrap().file_name();
                !name.to_string_lossy().starts_with("escape")
            })
    );
    store.create_topic("b-topic", 3).unwrap();
    store.create_topic("a.topic", 1).unwrap();
    store.create_topic("a.topic", 1).unwrap();
    assert!(matches!(
        store.create_topic("a.topic", 2),
        Err(Error::TopicExists { .. })
    ));
    assert!(matches!(
        store.create_topic("zero", 0),
        Err(Error::InvalidConfig { .. })
    ));
    let topics: Vec<(String, u32)> = store
        .topics()
        .unwrap()
        .into_iter()
        .map(|(t, n)| (t.to_string(), n))
        .collect();
    assert_eq!(
        topics,
        [("a.topic".to_owned(), 1), ("b-topic".to_owned(), 3)]
    );
    let topic = TopicName::new("b-topic").unwrap();
    assert!(matches!(
        store.open_partition(&topic, 3),
        Err(Error::UnknownPartition { .. })
    ));
}

#[test]
fn readers_on_other_threads_see_dense_complete_batches_while_appending() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let reader = log.reader();
    let total = 3_000i64;
    let checker = std::thread::spawn(move || {
        let mut seen = 0;
        while seen < total {
            let records = read_all(&reader, seen);
            if let Some(&(last, _)) = records.last() {
                seen = last + 1;
            }
        }
        seen
    });
    for tag in 0..(total / 3) as u32 {
        log.append(&mut batch(tag, 3, 0)).unwrap();
    }
    assert_eq!(checker.join().unwrap(), total);
}

#[test]
fn damaged_tail_of_a_cleanly_closed_log_is_cut_not_fatal() {
    // A clean checkpoint makes open trust the newest segment, but its tail can still be cut,
    // torn or zero-extended after the close (a copy, a restore, a filesystem that lost blocks).
    // Open used to fail with "batches end at byte N, the file at M"; it must keep the intact
    // batches instead.
    for damage in ["truncate", "garbage", "zeros"] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), small_config());
        for tag in 0..20u32 {
            log.append(&mut batch(tag, 2, 0)).unwrap();
        }
        let expected = read_all(&log.reader(), 0);
        log.close().unwrap();
        let active = log_files(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&active).unwrap();
        let batch_len = bytes.len() / 20;
        let cut = bytes.len() - batch_len / 2; // inside the last batch
        match damage {
            "truncate" => bytes.truncate(cut),
            "garbage" => bytes[cut..].iter_mut().for_each(|b| *b = 0x5a),
            _ => bytes.extend_from_slice(&[0; 1000]),
        }
        fs::write(&active, &bytes).unwrap();

        let mut log = open(dir.path(), small_config());
        let keep = if damage == "zeros" { 40 } else { 38 };
        assert_eq!(log.next_offset(), keep, "{damage}");
        assert_eq!(
            read_all(&log.reader(), 0),
            expected[..keep as usize],
            "{damage}"
        );
        assert_eq!(log.append(&mut batch(99, 1, 0)).unwrap().base_offset, keep);
    }
}

#[test]
fn a_wrong_middle_index_entry_never_misdirects_reads() {
    // Open checks an index file's shape and its last entry only. A middle entry that still
    // increases but points inside a batch used to start the reader's walk mid-batch: reads
    // from the offsets it covered skipped to a later batch, silently.
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for tag in 0..100u32 {
        log.append(&mut batch(tag, 5, i64::from(tag))).unwrap();
    }
    let expected = read_all(&log.reader(), 0);
    log.close().unwrap();
    let first = &log_files(dir.path())[0];
    let index = first.with_extension("index");
    let mut bytes = fs::read(&index).unwrap();
    assert!(bytes.len() >= 4 * 8, "the test needs a few index entries");
    let middle = (bytes.len() / 8 / 2) * 8;
    bytes[middle + 7] = bytes[middle + 7].wrapping_add(3); // position: 3 bytes into its batch
    fs::write(&index, bytes).unwrap();

    let log = open(dir.path(), small_config());
    let reader = log.reader();
    for offset in 0..log.next_offset() {
        assert_eq!(
            read_all(&reader, offset).first().map(|r| r.0),
            Some(offset),
            "read at {offset}"
        );
    }
    assert_eq!(read_all(&reader, 0), expected);
}

#[test]
fn a_time_index_entry_off_the_offset_index_is_rebuilt() {
    // Time entries are written only beside offset entries; one that names another offset is
    // damage, and the time index used to resolve it to some earlier position and keep it.
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for tag in 0..100u32 {
        log.append(&mut batch(tag, 5, 1_000 + i64::from(tag)))
            .unwrap();
    }
    log.close().unwrap();
    let first = &log_files(dir.path())[0];
    let time_index = first.with_extension("timeindex");
    let mut bytes = fs::read(&time_index).unwrap();
    assert!(bytes.len() >= 3 * 12);
    bytes[12 + 11] = bytes[12 + 11].wrapping_add(1); // second entry's offset, off by one
    fs::write(&time_index, &bytes).unwrap();

    let log = open(dir.path(), small_config());
    let reader = log.reader();
    for tag in 0..100 {
        assert_eq!(
            reader.offset_for_timestamp(1_000 + tag).unwrap(),
            Some(tag * 5),
            "timestamp {}",
            1_000 + tag
        );
    }
    drop(log);
    // The first segment was scanned and its indexes written again, without the damage.
    assert_ne!(fs::read(&time_index).unwrap(), bytes);
}

/// Bytes of disk a file holds (its allocated blocks), as opposed to its length.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().blocks() * 512
}

fn preallocated_config(preallocate: bool) -> LogConfig {
    LogConfig {
        preallocate,
        ..small_config()
    }
}

/// An active segment holds its whole capacity of disk when the log preallocates, and only
/// what was written when it does not; sealing gives the preallocated tail back either way.
#[test]
fn preallocation_holds_the_active_segments_blocks_until_it_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = small_config().segment_bytes;
    for preallocate in [true, false] {
        let path = dir.path().join(preallocate.to_string());
        let mut log = open(&path, preallocated_config(preallocate));
        log.append(&mut batch(0, 3, 0)).unwrap();
        let active = log_files(&path).pop().unwrap();
        assert_eq!(fs::metadata(&active).unwrap().len(), capacity);
        if preallocate {
            assert!(
                allocated(&active) >= capacity,
                "{} bytes allocated of {capacity}",
                allocated(&active)
            );
        } else {
            assert!(allocated(&active) < capacity, "a sparse segment");
        }
        log.close().unwrap();
        let sealed = fs::metadata(&active).unwrap().len();
        assert!(sealed < capacity, "sealed to its batches: {sealed}");
        assert!(allocated(&active) < capacity, "the tail went back");
    }
}

/// A crash leaves a preallocated segment at its full length, a zero tail after the last
/// batch, and maybe a torn batch before the zeros: recovery keeps every complete batch, cuts
/// the torn one, preallocates again, and appends continue at the next offset.
#[test]
fn a_crash_with_a_preallocated_zero_tail_recovers_every_complete_batch() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let config = preallocated_config(true);
    let mut log = open(&live, config.clone());
    for tag in 0..40u32 {
        log.append(&mut batch(tag, 3, 0)).unwrap();
    }
    let expected = read_all(&log.reader(), 0);
    let end = log.reader().read(0, usize::MAX).unwrap().bytes().len() as u64;
    for torn in [false, true] {
        let crashed = dir.path().join(format!("crashed-{torn}"));
        crash_copy(&live, &crashed);
        let active = log_files(&crashed).pop().unwrap();
        assert_eq!(
            fs::metadata(&active).unwrap().len(),
            config.segment_bytes,
            "a crash leaves the preallocated length"
        );
        if torn {
            // The first half of one more batch reached the disk before the crash.
            let next = batch(99, 3, 0);
            let file = fs::OpenOptions::new().write(true).open(&active).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&file, &next[..next.len() / 2], end).unwrap();
        }
        let mut recovered = open(&crashed, config.clone());
        assert_eq!(read_all(&recovered.reader(), 0), expected, "torn: {torn}");
        assert!(
            allocated(&active) >= config.segment_bytes,
            "preallocated again"
        );
        assert_eq!(
            recovered.append(&mut batch(7, 1, 0)).unwrap().base_offset,
            120
        );
        recovered.close().unwrap();
        let mut reopened = open(&crashed, config.clone());
        assert_eq!(read_all(&reopened.reader(), 0).len(), 121);
        assert_eq!(
            reopened.append(&mut batch(8, 1, 0)).unwrap().base_offset,
            121
        );
    }
    drop(log);
}

/// A clean close seals a preallocated segment to its batches; reopening it preallocates it
/// again and reads back what was there, across rolls, with retention deleting old segments.
#[test]
fn a_clean_reopen_of_a_preallocated_log_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(3 * small_config().segment_bytes),
        ..preallocated_config(true)
    };
    let mut log = open(dir.path(), config.clone());
    for tag in 0..400u32 {
        log.append(&mut batch(tag, 5, i64::from(tag))).unwrap();
    }
    let removed = log.enforce_retention().unwrap();
    assert!(removed.segments_deleted > 0, "retention deleted segments");
    let before = read_all(&log.reader(), log.reader().start_offset());
    log.close().unwrap();
    for file in log_files(dir.path()) {
        assert!(
            fs::metadata(&file).unwrap().len() < config.segment_bytes,
            "{} is sealed to its batches",
            file.display()
        );
    }
    let mut log = open(dir.path(), config.clone());
    assert_eq!(read_all(&log.reader(), log.reader().start_offset()), before);
    let active = log_files(dir.path()).pop().unwrap();
    assert!(allocated(&active) >= config.segment_bytes);
    assert_eq!(
        log.append(&mut batch(999, 1, 0)).unwrap().base_offset,
        400 * 5
    );
}
