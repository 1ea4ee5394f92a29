//! Produce a fixed volume through the engine, then consume all of it back, checking every
//! record: the path an embedding application uses (producer → ring → shard → disk → consumer).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rill_engine::consumer::{ConsumerConfig, StartFrom};
use rill_engine::engine::{Engine, EngineConfig};
use rill_engine::producer::{ProducerConfig, ProducerRecord};

pub struct Workload {
    pub record_bytes: usize,
    pub partitions: u32,
    pub total_bytes: u64,
}

pub struct Measured {
    pub name: String,
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub backend: &'static str,
}

impl Measured {
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

pub fn produce_then_consume(dir: &Path, run: &Workload) -> anyhow::Result<(Measured, Measured)> {
    let engine = Engine::open(EngineConfig::new(dir)).context("open the engine")?;
    engine.create_topic("bench", run.partitions)?;
    let backend = engine.backend();
    let produced = produce(&engine, run, backend)?;
    let consumed = consume(&engine, run, produced.records, backend)?;
    engine.shutdown().context("shut the engine down")?;
    if consumed.records != produced.records {
        bail!(
            "lost records: produced {}, consumed {}",
            produced.records,
            consumed.records
        );
    }
    Ok((produced, consumed))
}

/// One producer thread: encoding records into batches is part of the figure, as it is for an
/// application. The clock stops when flush returns, so every record is written.
fn produce(engine: &Engine, run: &Workload, backend: &'static str) -> anyhow::Result<Measured> {
    let mut producer = engine.producer_with(
        "bench",
        ProducerConfig {
            batch_bytes: 256 * 1024,
            ..ProducerConfig::default()
        },
    )?;
    let value: Vec<u8> = (0..run.record_bytes).map(|i| (i * 7) as u8).collect();
    let total_records = run.total_bytes / run.record_bytes as u64;
    let began = Instant::now();
    for i in 0..total_records {
        let key = i.to_be_bytes();
        producer.send(ProducerRecord::new(Some(&key), &value))?;
    }
    producer.flush()?;
    Ok(Measured {
        name: format!("produce {}B", run.record_bytes),
        records: total_records,
        bytes: total_records * run.record_bytes as u64,
        elapsed: began.elapsed(),
        backend,
    })
}

/// Reads every partition from the start, validating each batch's CRC and decoding every record.
fn consume(
    engine: &Engine,
    run: &Workload,
    expected: u64,
    backend: &'static str,
) -> anyhow::Result<Measured> {
    let mut consumer = engine.consumer_with(
        "bench",
        ConsumerConfig {
            start: StartFrom::Earliest,
            ..ConsumerConfig::default()
        },
    )?;
    consumer.assign_all()?;
    let began = Instant::now();
    let mut records = 0u64;
    let mut wrong_size = 0u64;
    while records < expected {
        let polled = consumer.poll(Duration::from_secs(5))?;
        if polled.is_empty() {
            bail!("consumer stalled after {records} of {expected} records");
        }
        records += polled.for_each_record(|_, record| {
            if record.value.map(<[u8]>::len) != Some(run.record_bytes) {
                wrong_size += 1;
            }
        })?;
    }
    if wrong_size > 0 {
        bail!("{wrong_size} records came back with the wrong size");
    }
    Ok(Measured {
        name: format!("consume {}B", run.record_bytes),
        records,
        bytes: records * run.record_bytes as u64,
        elapsed: began.elapsed(),
        backend,
    })
}
