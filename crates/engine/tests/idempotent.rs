//! Idempotent producers: retries answered with their first offsets, gaps and fenced epochs
//! refused, and the producer state kept across a clean reopen, a crash, a damaged snapshot,
//! and forgotten after its expiry. Engine tests run on whichever backend the engine picks
//! (`RILL_IO=sync` forces the portable one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::fs;
use std::path::Path;
use std::time::Duration;

use rill_engine::io::PortableIo;
use rill_engine::log::{LogConfig, PartitionLog};
use rill_engine::record::{BatchBuilder, BatchHeader, Compression};
use rill_engine::{AckLevel, Engine, EngineConfig, Error, ProducerConfig, ProducerRecord};
use rill_engine::{RawAppender, RawPartition, TopicName, TopicPartition};

mod support;

const PID: i64 = 42;

/// A batch of `records` records of producer `PID` at `epoch`, from sequence `seq`.
fn batch(epoch: i16, seq: i32, records: u32, timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None).producer(PID, epoch, seq);
    for i in 0..records {
        // Padded so a few dozen batches take several small segments.
        let value = format!("e{epoch}-s{:<100}", seq as u32 + i);
        builder
            .append(timestamp, None, Some(value.as_bytes()), &[])
            .unwrap();
    }
    builder.build().unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn engine(dir: &Path) -> Engine {
    Engine::open(EngineConfig {
        io: support::io_from_env(),
        shards: 1,
        pin_shards: false,
        log: LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        },
        ..EngineConfig::new(dir)
    })
    .unwrap()
}

/// Appends through the raw path (as the wire server does) and waits for the outcome.
fn send(appender: &mut RawAppender, partition: &RawPartition, bytes: &[u8]) -> Result<i64, Error> {
    let ticket = appender.append(partition, bytes, AckLevel::Written)?;
    Ok(ticket.wait_timeout(Duration::from_secs(10))?.unwrap())
}

/// The cause a failed batch carries.
fn cause(error: Error) -> std::sync::Arc<Error> {
    match error {
        Error::ProduceFailed { source, .. } => source,
        other => panic!("not a failed batch: {other}"),
    }
}

#[test]
fn a_retry_gets_its_first_offsets_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.create_topic("t", 1).unwrap();
    let partition = engine.raw_partition("t", 0).unwrap();
    let mut appender = engine.raw_appender(Duration::from_secs(5));
    let ts = now_ms();
    assert_eq!(
        send(&mut appender, &partition, &batch(0, 0, 3, ts)).unwrap(),
        0
    );
    assert_eq!(
        send(&mut appender, &partition, &batch(0, 3, 2, ts)).unwrap(),
        3
    );
    let end = partition.high_watermark();
    assert_eq!(end, 5);
    // Both retries, the older one too: it is within the last five batches.
    assert_eq!(
        send(&mut appender, &partition, &batch(0, 0, 3, ts)).unwrap(),
        0
    );
    assert_eq!(
        send(&mut appender, &partition, &batch(0, 3, 2, ts)).unwrap(),
        3
    );
    assert_eq!(
        partition.high_watermark(),
        end,
        "a retry was appended again"
    );
    // A batch without a producer id is never deduplicated.
    let plain = {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(ts, None, Some(b"x"), &[]).unwrap();
        builder.build().unwrap()
    };
    assert_eq!(send(&mut appender, &partition, &plain).unwrap(), 5);
    assert_eq!(send(&mut appender, &partition, &plain).unwrap(), 6);
}

#[test]
fn gaps_old_epochs_and_new_epochs_follow_kafkas_rules() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.create_topic("t", 1).unwrap();
    let partition = engine.raw_partition("t", 0).unwrap();
    let mut appender = engine.raw_appender(Duration::from_secs(5));
    let ts = now_ms();
    // A producer the partition does not know may start at any sequence.
    assert_eq!(
        send(&mut appender, &partition, &batch(0, 7, 1, ts)).unwrap(),
        0
    );
    let gap = cause(send(&mut appender, &partition, &batch(0, 9, 1, ts)).unwrap_err());
    assert!(
        matches!(
            *gap,
            Error::OutOfOrderSequence {
                producer_id: PID,
                epoch: 0,
                sequence: 9,
                expected: 8,
                ..
            }
        ),
        "{gap}"
    );
    // A new epoch must start at 0.
    let restart = cause(send(&mut appender, &partition, &batch(1, 8, 1, ts)).unwrap_err());
    assert!(
        matches!(
            *restart,
            Error::OutOfOrderSequence {
                epoch: 1,
                expected: 0,
                ..
            }
        ),
        "{restart}"
    );
    assert_eq!(
        send(&mut appender, &partition, &batch(1, 0, 1, ts)).unwrap(),
        1
    );
    let fenced = cause(send(&mut appender, &partition, &batch(0, 8, 1, ts)).unwrap_err());
    assert!(
        matches!(
            *fenced,
            Error::ProducerFenced {
                producer_id: PID,
                epoch: 0,
                current: 1,
                ..
            }
        ),
        "{fenced}"
    );
    // The old epoch's batches are no longer duplicates either.
    let old = cause(send(&mut appender, &partition, &batch(0, 7, 1, ts)).unwrap_err());
    assert!(matches!(*old, Error::ProducerFenced { .. }), "{old}");
    assert_eq!(
        partition.high_watermark(),
        2,
        "nothing refused was appended"
    );
}

#[test]
fn the_state_survives_a_clean_reopen_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let first_id = {
        let engine = engine(dir.path());
        engine.create_topic("t", 1).unwrap();
        let partition = engine.raw_partition("t", 0).unwrap();
        let mut appender = engine.raw_appender(Duration::from_secs(5));
        send(&mut appender, &partition, &batch(0, 0, 2, now_ms())).unwrap();
        let id = engine.init_producer_id().unwrap();
        engine.shutdown().unwrap();
        id
    };
    let engine = engine(dir.path());
    let partition = engine.raw_partition("t", 0).unwrap();
    let mut appender = engine.raw_appender(Duration::from_secs(5));
    assert_eq!(
        send(&mut appender, &partition, &batch(0, 0, 2, now_ms())).unwrap(),
        0
    );
    assert_eq!(partition.high_watermark(), 2);
    let next = engine.init_producer_id().unwrap();
    assert!(next.id > first_id.id, "{next:?} after {first_id:?}");
    assert_eq!(next.epoch, 0);
}

#[test]
fn the_embedded_producer_stamps_ids_and_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.create_topic("t", 1).unwrap();
    let config = ProducerConfig {
        idempotent: true,
        linger: Duration::ZERO,
        ..ProducerConfig::default()
    };
    let mut producer = engine.producer_with("t", config).unwrap();
    for value in [b"a".as_slice(), b"b", b"c"] {
        producer
            .send(ProducerRecord::new(None, value))
            .unwrap()
            .wait()
            .unwrap();
    }
    let partition = engine.raw_partition("t", 0).unwrap();
    let mut sequences = Vec::new();
    let mut ids = Vec::new();
    let mut offset = 0;
    while offset < partition.high_watermark() {
        let slice = partition.read(offset, 1 << 20).unwrap();
        for item in slice.batches() {
            let (_, batch) = item.unwrap();
            let header: &BatchHeader = batch.header();
            ids.push(header.producer_id.get());
            sequences.push((header.base_sequence.get(), header.record_count.get()));
        }
        offset = slice.next_offset();
    }
    assert!(ids.iter().all(|&id| id >= 0 && id == ids[0]), "{ids:?}");
    let mut expected = 0;
    for (first, count) in sequences {
        assert_eq!(first, expected);
        expected += count;
    }
    assert_eq!(expected, 3);
}

// The partition log alone: recovery paths.

fn tp() -> TopicPartition {
    TopicPartition::new(TopicName::new("t").unwrap(), 0)
}

fn small() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        limits: rill_engine::Limits {
            max_batch_bytes: 1024,
            ..rill_engine::Limits::default()
        },
        segment_age: None,
        retention_age: None,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, tp(), config, Box::new(PortableIo)).unwrap()
}

/// Appends 40 batches of two records (several segments at 4 KiB); returns the log.
fn fill(dir: &Path) -> PartitionLog {
    let mut log = open(dir, small());
    for i in 0..40 {
        let info = log.append(&mut batch(0, i * 2, 2, now_ms())).unwrap();
        assert!(!info.duplicate);
    }
    assert!(log.segment_count() > 2, "the test wants several segments");
    log
}

/// Whether the log answers a retry of the last batch with its first offsets.
fn retry_is_recognized(log: &mut PartitionLog) -> bool {
    let end = log.next_offset();
    let info = log.append(&mut batch(0, 78, 2, now_ms())).unwrap();
    assert_eq!(log.next_offset(), end, "{info:?}");
    info.duplicate && info.base_offset == 78
}

fn snapshots(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .collect();
    found.sort();
    found
}

#[test]
fn a_crash_rebuilds_the_state_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let crashed = dir.path().join("crashed");
    let log = fill(&live);
    // What a crash leaves: the files as they are, copied while the log is open.
    fs::create_dir_all(&crashed).unwrap();
    for entry in fs::read_dir(&live).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != ".lock" {
            fs::copy(&path, crashed.join(path.file_name().unwrap())).unwrap();
        }
    }
    drop(log);
    assert!(!snapshots(&crashed).is_empty(), "rolls write snapshots");
    let mut recovered = open(&crashed, small());
    assert!(retry_is_recognized(&mut recovered));
    // The sequence goes on where it stopped, and a gap is still a gap.
    assert!(matches!(
        recovered.append(&mut batch(0, 81, 1, now_ms())),
        Err(Error::OutOfOrderSequence { expected: 80, .. })
    ));
    assert_eq!(
        recovered
            .append(&mut batch(0, 80, 1, now_ms()))
            .unwrap()
            .base_offset,
        80
    );
}

#[test]
fn a_damaged_snapshot_is_ignored_and_the_log_scanned() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path()).close().unwrap();
    let found = snapshots(dir.path());
    assert!(!found.is_empty());
    for path in &found {
        let mut bytes = fs::read(path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(path, bytes).unwrap();
    }
    let mut log = open(dir.path(), small());
    assert!(retry_is_recognized(&mut log));
    // Without any snapshot at all, the same.
    log.close().unwrap();
    for path in snapshots(dir.path()) {
        fs::remove_file(path).unwrap();
    }
    assert!(retry_is_recognized(&mut open(dir.path(), small())));
}

#[test]
fn idle_producers_expire() {
    let refused = LogConfig {
        producer_id_expiration: Duration::ZERO,
        ..small()
    }
    .validate();
    assert!(matches!(
        refused,
        Err(Error::InvalidConfig {
            field: "LogConfig::producer_id_expiration",
            ..
        })
    ));
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path()).close().unwrap();
    // Still remembered within the expiration...
    assert!(retry_is_recognized(&mut open(dir.path(), small())));
    // ...forgotten past it: the retry is then a new batch of an unknown producer.
    std::thread::sleep(Duration::from_millis(20));
    let short = LogConfig {
        producer_id_expiration: Duration::from_millis(10),
        ..small()
    };
    let mut log = open(dir.path(), short);
    let end = log.next_offset();
    let info = log.append(&mut batch(0, 78, 2, now_ms())).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.base_offset, end);
}
