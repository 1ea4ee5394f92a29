//! Several writes of one partition in flight on io_uring, published strictly in offset order,
//! and a partition whose write is slow does not stop the other partitions of its shard.
//!
//! The storage here does real I/O and holds back the completion of the first write of
//! partition `a-0` (the one that starts at byte 0) until the test releases it: to the engine,
//! a write the disk is slow to finish. Before, a partition whose buffer filled while its
//! write was in flight made the whole shard wait for that write.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rill_engine::io::{IoBackend, PortableIo, Storage};
use rill_engine::{AckLevel, DirectIo, Engine, EngineConfig, FsyncPolicy, IoMode, Limits};
use rill_engine::{LogConfig, ProducerConfig, ProducerRecord, Ticket};

const BOUND: Duration = Duration::from_secs(10);
/// The longest a write is held if the test never releases it.
const HOLD_BOUND: Duration = Duration::from_secs(20);

#[derive(Debug, Default)]
struct GateState {
    released: bool,
    /// When the held write's completion first came back.
    held_since: Option<std::time::Instant>,
    /// Writes of `a-0` after the held one whose completions came back while it was held.
    later_while_held: u32,
}

/// Holds back the completion of `a-0`'s write that starts at byte 0.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.changed.notify_all();
    }

    /// Waits until the held write's completion came back.
    fn wait_held(&self) {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, BOUND, |s| s.held_since.is_none())
            .unwrap();
        assert!(state.held_since.is_some(), "a-0 never wrote");
    }

    fn later_while_held(&self) -> u32 {
        self.state.lock().unwrap().later_while_held
    }
}

impl Storage for Gate {
    fn backend(&self) -> Box<dyn IoBackend> {
        Box::new(PortableIo)
    }

    fn uring_result(&self, _token: u64, _is_sync: bool, res: i32) -> i32 {
        res
    }

    fn uring_completed(
        &self,
        _path: &Path,
        _logical: Range<u64>,
        _done: &rill_engine::io::uring::Completion,
    ) {
    }

    fn uring_hold(&self, path: &Path, logical: Range<u64>) -> bool {
        if !path.parent().is_some_and(|dir| dir.ends_with("a-0")) {
            return false;
        }
        let mut state = self.state.lock().unwrap();
        if logical.start > 0 {
            if state.held_since.is_some() && !state.released {
                state.later_while_held += 1;
            }
            return false;
        }
        let since = *state.held_since.get_or_insert_with(std::time::Instant::now);
        self.changed.notify_all();
        !state.released && since.elapsed() < HOLD_BOUND
    }
}

/// One shard whose staging buffers hold 20 KiB (the largest batch, 16 KiB, and a block).
fn engine(dir: &Path, gate: &Arc<Gate>, direct_io: DirectIo) -> Engine {
    let config = LogConfig {
        fsync: FsyncPolicy::Never,
        limits: Limits {
            max_batch_bytes: 16 * 1024,
            ..Limits::default()
        },
        ..LogConfig::default()
    };
    let engine = Engine::open(EngineConfig {
        shards: 1,
        pin_shards: false,
        io: IoMode::Auto,
        direct_io,
        storage: Some(gate.clone()),
        log: config.clone(),
        ..EngineConfig::new(dir)
    })
    .unwrap();
    engine.create_topic_with("a", 1, config.clone()).unwrap();
    engine.create_topic_with("b", 1, config).unwrap();
    engine
}

/// `count` records of 1000 bytes in batches of 8 KiB (two fill a staging buffer).
fn send(engine: &Engine, topic: &str, count: usize, ack: AckLevel) -> Vec<Ticket> {
    let config = ProducerConfig {
        ack,
        batch_bytes: 8 * 1024,
        linger: Duration::ZERO,
        ..ProducerConfig::default()
    };
    let mut producer = engine.producer_with(topic, config).unwrap();
    let value = vec![7u8; 1000];
    let tickets = (0..count)
        .map(|_| {
            producer
                .send(ProducerRecord::new(None, &value))
                .unwrap()
                .into_ticket()
        })
        .collect();
    drop(producer); // hands the open batch over without waiting
    tickets
}

fn resolve(ticket: &Ticket) -> i64 {
    match ticket.wait_timeout(BOUND) {
        Ok(Some(offset)) => offset,
        Ok(None) => panic!("a ticket did not resolve within {BOUND:?}: the shard is stalled"),
        Err(error) => panic!("a ticket failed: {error}"),
    }
}

/// While `a-0`'s first write is held: `a-0` keeps filling buffers and sends them (the shard
/// does not wait), `b-0` on the same shard gets its acknowledgements, and no ticket of `a-0`
/// resolves, later writes complete or not; once released, every ticket of `a-0` resolves,
/// with the offsets in the order the records were sent.
fn a_slow_write_stalls_only_its_partition(direct_io: DirectIo) -> Option<u32> {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let engine = engine(dir.path(), &gate, direct_io);
    if engine.backend() != "io_uring" {
        eprintln!("skipped: io_uring is not available here");
        return None;
    }

    // 60 KB: three staging buffers, so a-0's buffers fill while its first write is held
    // and go to the kernel beside it.
    let a = send(&engine, "a", 60, AckLevel::Written);
    gate.wait_held();
    let b = send(&engine, "b", 100, AckLevel::Written);
    for (expected, ticket) in b.iter().enumerate() {
        assert_eq!(resolve(ticket), expected as i64, "{direct_io:?}");
    }
    let first = a[0].wait_timeout(Duration::from_millis(100));
    assert!(
        matches!(first, Ok(None)),
        "{direct_io:?}: a-0's first write is held: {first:?}"
    );
    assert!(
        a.iter()
            .all(|t| matches!(t.wait_timeout(Duration::ZERO), Ok(None))),
        "{direct_io:?}: nothing of a-0 is published before its first write"
    );
    let later = gate.later_while_held();
    gate.release();
    for (expected, ticket) in a.iter().enumerate() {
        assert_eq!(resolve(ticket), expected as i64, "{direct_io:?}");
    }
    engine.shutdown().unwrap();
    Some(later)
}

#[test]
fn a_slow_write_stalls_only_its_partition_through_the_page_cache() {
    if let Some(later) = a_slow_write_stalls_only_its_partition(DirectIo::Off) {
        assert!(
            later > 0,
            "later writes of a-0 were in flight, and completed, beside the held one"
        );
    }
}

#[test]
fn a_slow_write_stalls_only_its_partition_with_o_direct() {
    // With O_DIRECT a write that re-writes the held write's last block waits for it, so how
    // many later writes go beside it depends on where the buffers end.
    a_slow_write_stalls_only_its_partition(DirectIo::On);
}
