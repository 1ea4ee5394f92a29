//! `Visibility::Appended` under churn: producers send small batches with no linger into a
//! tail kept small and segments that roll often, while a consumer reads at the tail. Every
//! record must reach the consumer exactly once, in offset order per partition.
//!
//! Runs on whichever backend `RILL_IO` picks (CI runs it on both).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rill_engine::log::{LogConfig, Visibility};
use rill_engine::record::Limits;
use rill_engine::{AckLevel, ConsumerConfig, Engine, EngineConfig, StartFrom};
use rill_engine::{ProducerConfig, ProducerRecord};

mod support;

const PRODUCERS: u64 = 3;
const RECORDS_PER_PRODUCER: u64 = 20_000;
const PARTITIONS: u32 = 2;

/// A value naming its producer and sequence number, padded to 100 bytes as the harness's are.
fn value(producer: u64, seq: u64) -> Vec<u8> {
    let mut value = vec![0x5a; 100];
    value[..8].copy_from_slice(&producer.to_be_bytes());
    value[8..16].copy_from_slice(&seq.to_be_bytes());
    value
}

fn identity(value: &[u8]) -> (u64, u64) {
    let producer = u64::from_be_bytes(value[..8].try_into().unwrap());
    let seq = u64::from_be_bytes(value[8..16].try_into().unwrap());
    (producer, seq)
}

fn engine(dir: &std::path::Path) -> Engine {
    let engine = Engine::open(EngineConfig {
        io: support::io_from_env(),
        shards: 1,
        pin_shards: false,
        ..EngineConfig::new(dir)
    })
    .unwrap();
    let log = LogConfig {
        visibility: Visibility::Appended,
        // A few dozen small batches: the tail evicts all the time, often before a batch's
        // write completed.
        tail_bytes: 16 * 1024,
        // Rolls every few hundred batches.
        segment_bytes: 64 * 1024,
        index_interval_bytes: 512,
        limits: Limits {
            max_batch_bytes: 8 * 1024,
            ..Limits::default()
        },
        ..LogConfig::default()
    };
    engine.create_topic_with("t", PARTITIONS, log).unwrap();
    engine
}

fn produce(engine: &Engine, producer: u64) {
    let config = ProducerConfig {
        ack: AckLevel::Appended,
        linger: Duration::ZERO,
        batch_bytes: 512,
        ..ProducerConfig::default()
    };
    let mut sender = engine.producer_with("t", config).unwrap();
    for seq in 0..RECORDS_PER_PRODUCER {
        let key = (seq % u64::from(PARTITIONS)).to_be_bytes();
        sender
            .send(ProducerRecord::new(Some(&key), &value(producer, seq)))
            .unwrap();
        if seq % 64 == 0 {
            std::thread::yield_now();
        }
    }
    sender.flush().unwrap();
}

/// A delivery: (partition, offset, producer, seq).
type Delivery = (u32, i64, u64, u64);

fn consume(engine: &Engine, done_producing: &AtomicBool) -> Vec<Delivery> {
    let config = ConsumerConfig {
        start: StartFrom::Earliest,
        max_bytes_per_partition: 2048,
        ..ConsumerConfig::default()
    };
    let mut consumer = engine.consumer_with("t", config).unwrap();
    consumer.assign_all().unwrap();
    let total = (PRODUCERS * RECORDS_PER_PRODUCER) as usize;
    let mut seen = Vec::with_capacity(total);
    let mut quiet_since = None;
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        let polled = consumer.poll(Duration::from_millis(20)).unwrap();
        polled
            .for_each_record(|partition, record| {
                let (producer, seq) = identity(record.value.unwrap());
                seen.push((partition, record.offset, producer, seq));
            })
            .unwrap();
        if !polled.is_empty() || !done_producing.load(Ordering::Acquire) {
            quiet_since = None;
        } else if *quiet_since.get_or_insert_with(Instant::now) + Duration::from_millis(500)
            < Instant::now()
        {
            break;
        }
    }
    seen
}

#[test]
fn appended_records_reach_a_consumer_at_the_tail_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let done_producing = AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let reader = scope.spawn(|| consume(&engine, &done_producing));
        std::thread::scope(|producers| {
            for producer in 0..PRODUCERS {
                let engine = &engine;
                producers.spawn(move || produce(engine, producer));
            }
        });
        done_producing.store(true, Ordering::Release);
        reader.join().unwrap()
    });

    let mut last: HashMap<u32, i64> = HashMap::new();
    let mut out_of_order = Vec::new();
    let mut by_identity: HashMap<(u64, u64), Vec<(u32, i64)>> = HashMap::new();
    for &(partition, offset, producer, seq) in &seen {
        let previous = last.insert(partition, offset);
        if previous.is_some_and(|previous| previous >= offset) {
            out_of_order.push((partition, previous, offset, producer, seq));
        }
        by_identity
            .entry((producer, seq))
            .or_default()
            .push((partition, offset));
    }
    let mut twice: Vec<_> = by_identity
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(id, at)| (*id, at.clone()))
        .collect();
    twice.sort();
    let expected = (PRODUCERS * RECORDS_PER_PRODUCER) as usize;
    assert!(
        out_of_order.is_empty() && twice.is_empty(),
        "{} deliveries out of order (partition, previous, offset, producer, seq), first: {:?}; \
         {} records seen more than once ((producer, seq), [(partition, offset)]), first: {:?}",
        out_of_order.len(),
        &out_of_order[..out_of_order.len().min(10)],
        twice.len(),
        &twice[..twice.len().min(10)],
    );
    assert_eq!(by_identity.len(), expected, "every record was seen");
    engine.shutdown().unwrap();
}
