//! The engine end to end: producers on several threads, shards, consumers, acks, back-pressure,
//! shutdown and reopen. Runs on whichever backend the engine picks (`RILL_IO=sync`, read here, forces the
//! portable one; CI runs this file both ways).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::collections::HashMap;
use std::time::Duration;

use rill_engine::Error;
use rill_engine::log::{FsyncPolicy, LogConfig};
use rill_engine::{AckLevel, Engine, EngineConfig};
use rill_engine::{ConsumerConfig, Seek, StartFrom};
use rill_engine::{ProducerConfig, ProducerRecord, TrySendError};

mod support;

fn config(dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        io: support::io_from_env(),
        shards: 2,
        pin_shards: false,
        log: LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        },
        ..EngineConfig::new(dir)
    }
}

fn earliest() -> ConsumerConfig {
    ConsumerConfig {
        start: StartFrom::Earliest,
        ..ConsumerConfig::default()
    }
}

/// Reads every record of the topic from the start: (partition, offset, value) in poll order.
fn consume_all(engine: &Engine, topic: &str, expected: usize) -> Vec<(u32, i64, Vec<u8>)> {
    let mut consumer = engine.consumer_with(topic, earliest()).unwrap();
    consumer.assign_all().unwrap();
    let mut out = Vec::new();
    let mut idle_polls = 0;
    while out.len() < expected && idle_polls < 25 {
        let polled = consumer.poll(Duration::from_millis(200)).unwrap();
        idle_polls = if polled.is_empty() { idle_polls + 1 } else { 0 };
        polled
            .for_each_record(|partition, record| {
                out.push((partition, record.offset, record.value.unwrap().to_vec()))
            })
            .unwrap();
    }
    out
}

#[test]
fn offsets_are_dense_and_each_producers_order_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic("orders", 3).unwrap();
    let producers = 4u32;
    let per_producer = 3_000u32;
    std::thread::scope(|scope| {
        for id in 0..producers {
            let engine = &engine;
            scope.spawn(move || {
                let mut producer = engine
                    .producer_with(
                        "orders",
                        ProducerConfig {
                            batch_bytes: 2048,
                            ..ProducerConfig::default()
                        },
                    )
                    .unwrap();
                for seq in 0..per_producer {
                    let value = [id.to_be_bytes(), seq.to_be_bytes()].concat();
                    let record = ProducerRecord {
                        partition: Some(seq % 3),
                        ..ProducerRecord::new(None, &value)
                    };
                    producer.send(record).unwrap();
                }
                producer.flush().unwrap();
            });
        }
    });
    let total = (producers * per_producer) as usize;
    let records = consume_all(&engine, "orders", total);
    assert_eq!(records.len(), total);
    let mut next_offset: HashMap<u32, i64> = HashMap::new();
    let mut last_seq: HashMap<(u32, u32), u32> = HashMap::new();
    for (partition, offset, value) in &records {
        let expected = next_offset.entry(*partition).or_insert(0);
        assert_eq!(
            *offset, *expected,
            "partition {partition}: offsets must be dense"
        );
        *expected += 1;
        let producer = u32::from_be_bytes(value[..4].try_into().unwrap());
        let seq = u32::from_be_bytes(value[4..8].try_into().unwrap());
        assert_eq!(seq % 3, *partition);
        if let Some(previous) = last_seq.insert((producer, *partition), seq) {
            assert!(
                seq > previous,
                "producer {producer} reordered on partition {partition}"
            );
        }
    }
    engine.shutdown().unwrap();
}

#[test]
fn tickets_resolve_at_each_ack_level() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic("acks", 1).unwrap();
    for level in [AckLevel::Appended, AckLevel::Written, AckLevel::Durable] {
        let mut producer = engine
            .producer_with(
                "acks",
                ProducerConfig {
                    ack: level,
                    ..ProducerConfig::default()
                },
            )
            .unwrap();
        let tickets: Vec<_> = (0..50u32)
            .map(|i| {
                producer
                    .send(ProducerRecord::new(None, &i.to_be_bytes()))
                    .unwrap()
                    .into_ticket()
            })
            .collect();
        assert!(matches!(tickets[0].wait(), Err(Error::NotSubmitted { .. })));
        producer.flush().unwrap();
        let mut previous = None;
        for ticket in &tickets {
            let offset = ticket.wait().unwrap();
            assert!(previous.is_none_or(|p| offset == p + 1));
            previous = Some(offset);
        }
        let last = previous.unwrap();
        let consumer = engine.consumer("acks").unwrap();
        drop(consumer);
        if level == AckLevel::Durable {
            // The topic's policy is Never, yet a durable ack forced the sync.
            let mut probe = engine.consumer_with("acks", earliest()).unwrap();
            probe.assign([0]).unwrap();
            assert!(tickets.iter().all(|t| t.poll().unwrap() == t.offset()));
        }
        assert!(last >= 49);
    }
}

#[test]
fn a_full_ring_is_back_pressure_not_loss() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic("bp", 1).unwrap();
    let mut producer = engine
        .producer_with(
            "bp",
            ProducerConfig {
                batch_bytes: 100,
                ring_batches: 2,
                send_timeout: Some(Duration::from_millis(50)),
                ..ProducerConfig::default()
            },
        )
        .unwrap();
    engine.hold_shards(true);
    let value = [7u8; 80];
    let mut tickets = Vec::new();
    let refused = loop {
        match producer.try_send(ProducerRecord::new(None, &value)) {
            Ok(sent) => tickets.push(sent.into_ticket()),
            Err(TrySendError::WouldBlock(record)) => break record,
            Err(other) => panic!("{other}"),
        }
        assert!(tickets.len() < 100, "the ring never filled");
    };
    assert_eq!(refused.value, Some(&value[..]));
    // The blocking send must hand over the open batch first; with the shard held, it times
    // out and that batch fails, visibly, through its tickets.
    let error = producer
        .send(ProducerRecord::new(None, &value))
        .unwrap_err();
    assert!(matches!(error, Error::SendTimeout { .. }), "{error}");
    engine.hold_shards(false);
    // Let the shard drain what it held before sending again: on a loaded machine the 50 ms
    // send timeout is shorter than a starved shard's turn.
    for ticket in &tickets {
        let _ = ticket.wait_timeout(Duration::from_secs(10));
    }
    tickets.push(
        producer
            .send(ProducerRecord::new(None, &value))
            .unwrap()
            .into_ticket(),
    );
    let _ = producer.flush();
    let delivered = tickets.iter().filter(|t| t.wait().is_ok()).count();
    let failed: Vec<Error> = tickets.iter().filter_map(|t| t.wait().err()).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    // The ticket names what failed its batch as the engine's own error, not as text.
    let Error::ProduceFailed { partition, source } = &failed[0] else {
        panic!("not a failed batch: {}", failed[0]);
    };
    assert_eq!(partition.partition, 0);
    match source.as_ref() {
        Error::SendTimeout {
            partition: timed_out,
        } => assert_eq!(timed_out, partition),
        other => panic!("the cause is {other:?}, not the send timeout"),
    }
    let chained = std::error::Error::source(&failed[0]).map(ToString::to_string);
    assert_eq!(chained, Some(source.to_string()));
    // Exactly the acknowledged records are in the log: none lost, none duplicated.
    let records = consume_all(&engine, "bp", delivered);
    assert_eq!(records.len(), delivered);
    assert_eq!(records.last().unwrap().1, delivered as i64 - 1);
}

#[test]
fn consumers_at_the_tail_and_behind_see_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic("tail", 2).unwrap();
    let mut tail = engine.consumer("tail").unwrap();
    tail.assign_all().unwrap();
    let mut producer = engine.producer("tail").unwrap();
    let total = 20_000u32;
    let mut tail_seen = 0u64;
    for i in 0..total {
        producer
            .send(ProducerRecord::new(Some(&i.to_be_bytes()), &[1u8; 100]))
            .unwrap();
        if i % 5_000 == 4_999 {
            producer.flush().unwrap();
            tail_seen += tail
                .poll(Duration::from_millis(500))
                .unwrap()
                .for_each_record(|_, _| {})
                .unwrap();
        }
    }
    producer.flush().unwrap();
    for _ in 0..100 {
        if tail_seen >= u64::from(total) {
            break;
        }
        tail_seen += tail
            .poll(Duration::from_millis(100))
            .unwrap()
            .for_each_record(|_, _| {})
            .unwrap();
    }
    assert_eq!(tail_seen, u64::from(total));
    // Far behind: from the start, over several rolled segments.
    let behind = consume_all(&engine, "tail", total as usize);
    assert_eq!(behind.len(), total as usize);
    // An idle poll parks until its timeout and returns nothing.
    assert!(tail.poll(Duration::from_millis(30)).unwrap().is_empty());
}

#[test]
fn a_parked_consumer_wakes_for_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic("wake", 1).unwrap();
    let mut consumer = engine.consumer("wake").unwrap();
    consumer.assign([0]).unwrap();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(move || {
            let started = std::time::Instant::now();
            let polled = consumer.poll(Duration::from_secs(20)).unwrap();
            (
                polled.for_each_record(|_, _| {}).unwrap(),
                started.elapsed(),
            )
        });
        std::thread::sleep(Duration::from_millis(50));
        let mut producer = engine.producer("wake").unwrap();
        producer.send(ProducerRecord::new(None, b"hello")).unwrap();
        producer.flush().unwrap();
        let (count, waited) = waiter.join().unwrap();
        assert_eq!(count, 1);
        assert!(waited < Duration::from_secs(10));
    });
}

#[test]
fn seek_by_timestamp_and_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic("time", 1).unwrap();
    let mut producer = engine.producer("time").unwrap();
    for i in 0..1_000i64 {
        let record = ProducerRecord {
            timestamp: Some(1_000_000 + i * 10),
            ..ProducerRecord::new(None, &[0u8; 50])
        };
        producer.send(record).unwrap();
    }
    producer.flush().unwrap();
    let mut consumer = engine.consumer("time").unwrap();
    consumer.assign([0]).unwrap();
    assert_eq!(
        consumer
            .seek(0, Seek::Timestamp(1_000_000 + 5_005))
            .unwrap(),
        501
    );
    assert_eq!(consumer.seek(0, Seek::Timestamp(0)).unwrap(), 0);
    assert_eq!(consumer.seek(0, Seek::Timestamp(i64::MAX)).unwrap(), 1_000);
    assert!(matches!(
        consumer.seek(0, Seek::Offset(1_001)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        consumer.seek(0, Seek::Offset(-1)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        consumer.seek(5, Seek::Earliest),
        Err(Error::UnknownPartition { .. })
    ));
    consumer.seek(0, Seek::Offset(990)).unwrap();
    let mut offsets = Vec::new();
    consumer
        .poll(Duration::from_millis(100))
        .unwrap()
        .for_each_record(|_, r| offsets.push(r.offset))
        .unwrap();
    assert_eq!(offsets, (990..1_000).collect::<Vec<_>>());
}

#[test]
fn shutdown_and_reopen_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic("keep", 4).unwrap();
    let mut producer = engine.producer("keep").unwrap();
    for i in 0..10_000u32 {
        producer
            .send(ProducerRecord::new(
                Some(&i.to_be_bytes()),
                &i.to_le_bytes(),
            ))
            .unwrap();
    }
    producer.flush().unwrap();
    drop(producer);
    engine.shutdown().unwrap();

    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.topics(), [("keep".to_owned(), 4)]);
    let records = consume_all(&engine, "keep", 10_000);
    let mut values: Vec<u32> = records
        .iter()
        .map(|(_, _, v)| u32::from_le_bytes(v[..4].try_into().unwrap()))
        .collect();
    values.sort_unstable();
    assert_eq!(values, (0..10_000).collect::<Vec<_>>());
    // Sends after shutdown are refused, not lost silently.
    let mut producer = engine.producer("keep").unwrap();
    drop(engine);
    assert!(matches!(
        producer.send(ProducerRecord::new(None, b"late")),
        Err(Error::EngineClosed)
    ));
}

#[test]
fn durable_topics_hide_unsynced_records_and_hostile_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let durable = LogConfig {
        fsync: FsyncPolicy::EveryAppend,
        visibility: rill_engine::log::Visibility::Durable,
        ..config(dir.path()).log
    };
    engine.create_topic_with("safe", 1, durable).unwrap();
    let mut producer = engine.producer("safe").unwrap();
    producer.send(ProducerRecord::new(None, b"x")).unwrap();
    producer.flush().unwrap();
    assert_eq!(consume_all(&engine, "safe", 1).len(), 1);

    let huge = vec![0u8; 2 << 20];
    assert!(matches!(
        producer.send(ProducerRecord::new(None, &huge)),
        Err(Error::RecordTooLarge { .. })
    ));
    let bad = ProducerRecord {
        partition: Some(9),
        ..ProducerRecord::new(None, b"x")
    };
    assert!(matches!(
        producer.send(bad),
        Err(Error::UnknownPartition { .. })
    ));
    assert!(matches!(
        engine.producer("../etc"),
        Err(Error::InvalidTopicName { .. })
    ));
    assert!(matches!(
        engine.producer("missing"),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        engine.create_topic("safe", 2),
        Err(Error::TopicExists { .. })
    ));
    assert!(matches!(
        Engine::open(config(dir.path())),
        Err(Error::DirectoryLocked { .. })
    ));
}

#[test]
fn the_newest_records_are_read_from_memory_older_ones_from_segments() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let small_tail = LogConfig {
        tail_bytes: 64 * 1024,
        ..config(dir.path()).log
    };
    engine
        .create_topic_with("tail-bytes", 1, small_tail)
        .unwrap();
    let mut producer = engine.producer("tail-bytes").unwrap();
    for i in 0..5_000u32 {
        producer
            .send(ProducerRecord::new(None, &[i as u8; 200]))
            .unwrap();
        if i % 500 == 499 {
            producer.flush().unwrap();
        }
    }
    producer.flush().unwrap();
    let mut consumer = engine.consumer_with("tail-bytes", earliest()).unwrap();
    consumer.assign([0]).unwrap();
    let (mut from_memory, mut from_segments, mut next) = (0, 0, 0i64);
    while next < 5_000 {
        let polled = consumer.poll(Duration::from_secs(5)).unwrap();
        assert!(!polled.is_empty(), "stalled at offset {next}");
        for slice in polled.slices() {
            if slice.is_from_memory() {
                from_memory += 1;
            } else {
                from_segments += 1;
            }
            slice
                .for_each_record(|record| {
                    assert_eq!(
                        record.offset, next,
                        "dense and in order across both sources"
                    );
                    assert_eq!(record.value.unwrap()[0], next as u8);
                    next += 1;
                })
                .unwrap();
        }
    }
    assert!(
        from_segments > 0,
        "1 MB of records cannot all fit a 64 KiB tail"
    );
    if engine.backend() == "io_uring" {
        assert!(
            from_memory > 0,
            "the newest records should come from the in-memory tail"
        );
    }
}

/// With `direct_io` off the io_uring backend writes through the page cache: same records, same
/// files (rolls included), readable by an engine that writes with `O_DIRECT` again.
#[test]
fn direct_io_off_writes_the_same_log_through_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let buffered = EngineConfig {
        direct_io: rill_engine::DirectIo::Off,
        ..config(dir.path())
    };
    let engine = Engine::open(buffered).unwrap();
    engine.create_topic("paged", 2).unwrap();
    let mut producer = engine.producer("paged").unwrap();
    let total = 12_000u32;
    for i in 0..total {
        let mut value = i.to_le_bytes().to_vec();
        value.resize(300, i as u8);
        producer.send(ProducerRecord::new(None, &value)).unwrap();
    }
    producer.flush().unwrap();
    assert_eq!(
        consume_all(&engine, "paged", total as usize).len(),
        total as usize
    );
    drop(producer);
    engine.shutdown().unwrap();

    let engine = Engine::open(config(dir.path())).unwrap();
    let records = consume_all(&engine, "paged", total as usize);
    let mut values: Vec<u32> = records
        .iter()
        .map(|(_, _, v)| {
            assert_eq!(v.len(), 300);
            u32::from_le_bytes(v[..4].try_into().unwrap())
        })
        .collect();
    values.sort_unstable();
    assert_eq!(values, (0..total).collect::<Vec<_>>());
}
