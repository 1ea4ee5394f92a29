//! A full disk: the producer gets a typed error, acknowledged data stays readable, and once
//! space is freed the engine takes writes again without a restart and loses nothing on reopen.
//!
//! Runs on a small tmpfs mounted for the test; where mounting is not allowed (an unprivileged
//! container) it says so and skips. tmpfs refuses O_DIRECT, so the io_uring run also covers the
//! buffered io_uring path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rill_engine::Error;
use rill_engine::log::LogConfig;
use rill_engine::{ConsumerConfig, StartFrom};
use rill_engine::{Engine, EngineConfig, IoMode};
use rill_engine::{ProducerConfig, ProducerRecord};

/// A tmpfs of a fixed size, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount refused: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn engine(dir: &Path, io: IoMode) -> Engine {
    Engine::open(EngineConfig {
        shards: 1,
        pin_shards: false,
        io,
        log: LogConfig {
            segment_bytes: 2 << 20,
            ..LogConfig::default()
        },
        ..EngineConfig::new(dir)
    })
    .unwrap()
}

fn value(seq: u32) -> Vec<u8> {
    let mut value = seq.to_be_bytes().to_vec();
    value.resize(1000, (seq % 251) as u8);
    value
}

/// Sends records in flushed groups until the disk is full; returns how many were acknowledged
/// and the error that stopped it.
fn produce_until_full(engine: &Engine, first: u32) -> (u32, Error) {
    let mut producer = engine
        .producer_with(
            "fill",
            ProducerConfig {
                batch_bytes: 32 * 1024,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
    let mut acked = 0;
    for group in 0..10_000u32 {
        let tickets: Vec<_> = (0..50)
            .map(|i| {
                producer
                    .send(ProducerRecord::new(None, &value(first + group * 50 + i)))
                    .unwrap()
                    .into_ticket()
            })
            .collect();
        if let Err(error) = producer.flush() {
            let done = tickets.iter().take_while(|t| t.wait().is_ok()).count() as u32;
            return (acked + done, error);
        }
        acked += 50;
    }
    panic!("the disk never filled");
}

fn read_all(engine: &Engine) -> Vec<u32> {
    let mut consumer = engine
        .consumer_with(
            "fill",
            ConsumerConfig {
                start: StartFrom::Earliest,
                ..ConsumerConfig::default()
            },
        )
        .unwrap();
    consumer.assign_all().unwrap();
    let mut seqs = Vec::new();
    loop {
        let polled = consumer.poll(Duration::from_millis(100)).unwrap();
        if polled.is_empty() {
            return seqs;
        }
        polled
            .for_each_record(|_, record| {
                let bytes = record.value.unwrap();
                let seq = u32::from_be_bytes(bytes[..4].try_into().unwrap());
                assert_eq!(bytes, value(seq).as_slice(), "record {seq} is not intact");
                seqs.push(seq);
            })
            .unwrap();
    }
}

fn full_disk_round(io: IoMode) {
    let disk = match SmallDisk::mount(24 << 20) {
        Ok(disk) => disk,
        Err(reason) => {
            eprintln!("skipped full-disk test: {reason}");
            return;
        }
    };
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![1u8; 6 << 20]).unwrap();
    let data = disk.path().join("data");
    let engine = engine(&data, io);
    engine.create_topic("fill", 1).unwrap();

    let (acked, error) = produce_until_full(&engine, 0);
    assert!(
        matches!(error, Error::StorageFull { .. }),
        "{io:?}: expected StorageFull, got {error}"
    );
    assert!(
        acked > 1_000,
        "{io:?}: only {acked} records fit before the disk filled"
    );
    let readable = read_all(&engine);
    assert_eq!(
        readable,
        (0..acked).collect::<Vec<_>>(),
        "{io:?}: acknowledged records must stay readable"
    );

    std::fs::remove_file(&filler).unwrap();
    let mut producer = engine.producer("fill").unwrap();
    for seq in 1_000_000..1_000_100 {
        producer
            .send(ProducerRecord::new(None, &value(seq)))
            .unwrap();
    }
    producer
        .flush()
        .expect("writes resume once space is freed, without a restart");
    drop(producer);
    engine.shutdown().unwrap();

    let engine = self::engine(&data, io);
    let mut expected: Vec<u32> = (0..acked).collect();
    expected.extend(1_000_000..1_000_100);
    assert_eq!(
        read_all(&engine),
        expected,
        "{io:?}: nothing lost on reopen"
    );
    engine.shutdown().unwrap();
}

#[test]
fn a_full_disk_is_a_typed_error_and_loses_nothing() {
    full_disk_round(IoMode::Auto);
    full_disk_round(IoMode::Sync);
}
