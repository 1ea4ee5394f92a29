//! `Visibility::Appended`: consumers see a batch as soon as its shard has sequenced it, before
//! its write completes, and a crash takes back what was not synced, never what was.
//!
//! The first test runs on io_uring only (there the write completes after sequencing; the
//! portable backend writes inside the sequencing step) and says so when it is skipped; the
//! second runs on whichever backend `RILL_IO` picks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rill_engine::fuzzing::{FaultRates, SimStorage};
use rill_engine::io::{IoBackend, Storage};
use rill_engine::log::{LogConfig, Visibility};
use rill_engine::{AckLevel, ConsumerConfig, Engine, EngineConfig, IoMode, StartFrom};
use rill_engine::{ProducerConfig, ProducerRecord};

mod support;

/// The storage simulator, with a gate that holds io_uring write completions: while it is
/// closed, the shard that consumes a completion waits in it, so the write has not completed
/// as far as the engine knows.
#[derive(Debug)]
struct Gated {
    sim: Arc<SimStorage>,
    closed: Mutex<bool>,
    opened: Condvar,
    /// Set once a completion waited at the closed gate.
    held_one: AtomicBool,
}

impl Gated {
    fn new(sim: Arc<SimStorage>) -> Arc<Self> {
        Arc::new(Self {
            sim,
            closed: Mutex::new(false),
            opened: Condvar::new(),
            held_one: AtomicBool::new(false),
        })
    }

    fn close(&self) {
        *self.closed.lock().unwrap() = true;
    }

    fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.opened.notify_all();
    }
}

impl Storage for Gated {
    fn backend(&self) -> Box<dyn IoBackend> {
        self.sim.backend()
    }

    fn uring_result(&self, token: u64, is_sync: bool, res: i32) -> i32 {
        if !is_sync {
            let mut closed = self.closed.lock().unwrap();
            let until = Instant::now() + Duration::from_secs(20);
            while *closed && Instant::now() < until {
                self.held_one.store(true, Ordering::Release);
                closed = self
                    .opened
                    .wait_timeout(closed, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
        }
        self.sim.uring_result(token, is_sync, res)
    }

    fn uring_completed(
        &self,
        path: &std::path::Path,
        logical: std::ops::Range<u64>,
        done: &rill_engine::io::uring::Completion,
    ) {
        self.sim.uring_completed(path, logical, done);
    }
}

fn appended_log() -> LogConfig {
    LogConfig {
        visibility: Visibility::Appended,
        ..LogConfig::default()
    }
}

fn config(dir: &std::path::Path, io: IoMode, storage: Arc<dyn Storage>) -> EngineConfig {
    EngineConfig {
        io,
        shards: 1,
        pin_shards: false,
        storage: Some(storage),
        ..EngineConfig::new(dir)
    }
}

fn producer(engine: &Engine, ack: AckLevel) -> rill_engine::Producer {
    let config = ProducerConfig {
        ack,
        linger: Duration::ZERO,
        ..ProducerConfig::default()
    };
    engine.producer_with("t", config).unwrap()
}

/// Polls from the start until `count` records came or `within` passed: (offset, value).
fn read(engine: &Engine, count: usize, within: Duration) -> Vec<(i64, Vec<u8>)> {
    let earliest = ConsumerConfig {
        start: StartFrom::Earliest,
        ..ConsumerConfig::default()
    };
    let mut consumer = engine.consumer_with("t", earliest).unwrap();
    consumer.assign_all().unwrap();
    let until = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < until {
        let polled = consumer.poll(Duration::from_millis(100)).unwrap();
        polled
            .for_each_record(|_, record| {
                out.push((record.offset, record.value.unwrap_or_default().to_vec()))
            })
            .unwrap();
    }
    out
}

#[test]
fn a_consumer_sees_an_appended_record_before_its_write_completes_and_a_crash_takes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(7, FaultRates::default());
    let gate = Gated::new(sim.clone());
    let engine = Engine::open(config(dir.path(), IoMode::Auto, gate.clone())).unwrap();
    if engine.backend() != "io_uring" {
        eprintln!(
            "skipped: the {} backend writes while it sequences",
            engine.backend()
        );
        return;
    }
    engine.create_topic_with("t", 1, appended_log()).unwrap();

    // A: synced before its ticket resolves.
    let mut durable = producer(&engine, AckLevel::Durable);
    let a = durable.send(ProducerRecord::new(None, b"synced")).unwrap();
    assert_eq!(a.wait().unwrap(), 0);

    // B: its write's completion is held at the gate. Large enough (many sectors) that a crash
    // cannot leave all of it in place.
    gate.close();
    let value = vec![0xb5; 16 * 1024];
    let mut appended = producer(&engine, AckLevel::Appended);
    let b = appended.send(ProducerRecord::new(None, &value)).unwrap();
    assert_eq!(b.wait().unwrap(), 1, "sequenced");

    let seen = read(&engine, 2, Duration::from_secs(10));
    assert_eq!(seen.len(), 2, "the appended record is visible: {seen:?}");
    assert_eq!(seen[1], (1, value.clone()));
    // The write was submitted at once; its completion cannot have been consumed: the gate is
    // still closed, and the shard waits in it.
    let until = Instant::now() + Duration::from_secs(10);
    while !gate.held_one.load(Ordering::Acquire) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        gate.held_one.load(Ordering::Acquire),
        "the write's completion waits at the gate"
    );

    // The process dies before the write completes: the completion fails, the disk keeps what
    // a power loss would leave of the unsynced range.
    sim.crash();
    gate.open();
    drop((durable, appended));
    let _ = engine.shutdown();
    sim.restart().unwrap();

    let engine = Engine::open(config(dir.path(), IoMode::Auto, gate.clone())).unwrap();
    // Waiting a little for a second record that must not come.
    let after = read(&engine, 2, Duration::from_millis(300));
    assert_eq!(
        after,
        vec![(0, b"synced".to_vec())],
        "only the synced prefix remains"
    );
    engine.shutdown().unwrap();
}

#[test]
fn appended_visibility_serves_every_record_in_order_and_keeps_them_across_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimStorage::new(11, FaultRates::default());
    let io = support::io_from_env();
    let engine = Engine::open(config(dir.path(), io, sim.as_storage())).unwrap();
    engine.create_topic_with("t", 1, appended_log()).unwrap();
    let mut appended = producer(&engine, AckLevel::Appended);
    let tickets: Vec<_> = (0..200u32)
        .map(|i| {
            appended
                .send(ProducerRecord::new(None, &i.to_be_bytes()))
                .unwrap()
                .into_ticket()
        })
        .collect();
    appended.flush().unwrap();
    for (i, ticket) in tickets.iter().enumerate() {
        assert_eq!(ticket.wait().unwrap(), i as i64);
    }
    let expected: Vec<_> = (0..200u32)
        .map(|i| (i64::from(i), i.to_be_bytes().to_vec()))
        .collect();
    assert_eq!(read(&engine, 200, Duration::from_secs(10)), expected);
    drop(appended);
    engine.shutdown().unwrap();
    sim.forget_files();

    let engine = Engine::open(config(dir.path(), io, sim.as_storage())).unwrap();
    assert_eq!(
        read(&engine, 200, Duration::from_secs(10)),
        expected,
        "a clean restart keeps them"
    );
    engine.shutdown().unwrap();
}
