//! Embedding rill: open a data directory, create a topic, produce, consume.
//!
//! Run with `cargo run --example embed`. Uses only the facade's root names.

use std::time::{Duration, Instant};

use rill::{
    AckLevel, ConsumerConfig, Engine, EngineConfig, LogConfig, ProducerConfig, ProducerRecord,
    StartFrom,
};

const RECORDS: u32 = 1_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("rill-embed-{}", std::process::id()));
    let result = run(&dir);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn run(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::open(EngineConfig {
        shards: 1,
        pin_shards: false,
        ..EngineConfig::new(dir)
    })?;
    // A topic of its own configuration: 16 MiB segments. It reopens with it.
    engine.create_topic_with(
        "orders",
        3,
        LogConfig {
            segment_bytes: 16 << 20,
            ..LogConfig::default()
        },
    )?;
    println!("topic orders has id {}", engine.topic_id("orders")?);

    // One record, waited for: `wait` hands the batch over and returns the offset.
    let mut producer = engine.producer_with(
        "orders",
        ProducerConfig {
            ack: AckLevel::Written,
            ..ProducerConfig::default()
        },
    )?;
    let first = ProducerRecord {
        partition: Some(0),
        ..ProducerRecord::new(Some(b"order-0"), b"first")
    };
    let offset = producer.send(first)?.wait()?;
    println!("the first record is at orders-0 offset {offset}");

    // Many records, pipelined: keep the tickets, flush once.
    let mut tickets = Vec::new();
    for i in 1..RECORDS {
        let key = format!("order-{i}");
        let value = format!("value {i}");
        let record = ProducerRecord::new(Some(key.as_bytes()), value.as_bytes());
        tickets.push(producer.send(record)?.into_ticket());
    }
    producer.flush()?;
    for ticket in &tickets {
        ticket.wait()?;
    }

    let mut consumer = engine.consumer_with(
        "orders",
        ConsumerConfig {
            start: StartFrom::Earliest,
            ..ConsumerConfig::default()
        },
    )?;
    consumer.assign_all()?;
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen < u64::from(RECORDS) && Instant::now() < deadline {
        let polled = consumer.poll(Duration::from_millis(100))?;
        seen += polled.for_each_record(|_partition, record| {
            let _ = (record.offset, record.key, record.value);
        })?;
    }
    println!("consumed {seen} records");
    if seen != u64::from(RECORDS) {
        return Err(format!("consumed {seen} of {RECORDS} records").into());
    }
    engine.shutdown()?;
    Ok(())
}
