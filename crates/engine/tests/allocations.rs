//! In steady state a batch allocates (almost) nothing on its way from a producer through the
//! shard to a consumer: its buffer, its ticket and its tail chunk are reused.
//!
//! This file is its own test binary (its own process), so the counting allocator below sees
//! only this engine's threads. It counts allocations on every thread (the shard's included)
//! while a warmed-up producer sends batches and a consumer reads them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rill_engine::{Engine, EngineConfig, ProducerConfig, ProducerRecord};

mod support;

/// The system allocator, counting the allocations (and growths) it serves.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to the system allocator unchanged; the counter is a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Records per batch: the producer hands a batch over once it holds this many.
const RECORDS_PER_BATCH: usize = 64;
const VALUE: [u8; 100] = [7; 100];

/// Sends `batches` batches of `RECORDS_PER_BATCH` records (each handed over by a flush) and
/// reads each back before the next, as a consumer at the tail does; returns the records read.
fn round_trip(
    producer: &mut rill_engine::Producer,
    consumer: &mut rill_engine::Consumer,
    batches: usize,
) -> u64 {
    let mut total = 0;
    for _ in 0..batches {
        for _ in 0..RECORDS_PER_BATCH {
            let _ticket = producer
                .send(ProducerRecord {
                    partition: Some(0),
                    ..ProducerRecord::new(None, &VALUE)
                })
                .unwrap()
                .into_ticket();
        }
        producer.flush().unwrap();
        let mut read = 0;
        while read < RECORDS_PER_BATCH as u64 {
            let polled = consumer.poll(Duration::from_secs(10)).unwrap();
            assert!(!polled.is_empty(), "a sent batch was not readable in time");
            read += polled.for_each_record(|_, _| {}).unwrap();
        }
        total += read;
    }
    total
}

#[test]
fn a_batch_in_steady_state_allocates_at_most_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        io: support::io_from_env(),
        shards: 1,
        pin_shards: false,
        ..EngineConfig::new(dir.path())
    };
    let engine = Engine::open(config).unwrap();
    engine.create_topic("alloc", 1).unwrap();
    let mut producer = engine
        .producer_with(
            "alloc",
            ProducerConfig {
                batch_bytes: 1 << 20,
                linger: Duration::from_secs(60),
                ..ProducerConfig::default()
            },
        )
        .unwrap();
    let mut consumer = engine.consumer("alloc").unwrap();
    consumer.assign_all().unwrap();

    // Warm-up: enough batches to fill the tail and the recyclers, and to let every lazily
    // grown buffer reach its size.
    round_trip(&mut producer, &mut consumer, 2_000);

    const BATCHES: usize = 2_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let records = round_trip(&mut producer, &mut consumer, BATCHES);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(records, (BATCHES * RECORDS_PER_BATCH) as u64);
    let per_batch = allocations as f64 / BATCHES as f64;
    eprintln!("{allocations} allocations for {BATCHES} batches: {per_batch:.2} per batch");
    // What remains per batch: the list of slices a poll returns, which the caller owns (one
    // poll per batch here, as the flush waits until the batch is readable). The slack is for
    // what is not per batch: the epoch collector's bag when a reader was inside the tail at
    // an eviction, a recycler that was empty when a buffer's last reader was late.
    assert!(
        per_batch <= MAX_ALLOCATIONS_PER_BATCH,
        "{per_batch:.2} allocations per batch (bound {MAX_ALLOCATIONS_PER_BATCH})"
    );
}

/// One poll's list per batch, plus slack (see the assertion). Before buffers, acks and tail
/// chunks were reused this was about 9.
const MAX_ALLOCATIONS_PER_BATCH: f64 = 1.5;
