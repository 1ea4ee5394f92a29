//! Produce a fixed volume into a topic, then consume all of it back, checking every record.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rill_engine::log::{LogConfig, PartitionLog};
use rill_engine::record::{BatchBuilder, Compression, Limits};
use rill_engine::store::Store;

/// Records per batch aim at this many bytes, a typical producer `batch.size`.
const BATCH_BYTES: usize = 64 * 1024;

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
    let store = Store::open(dir, LogConfig::default()).context("open the data directory")?;
    let topic = store.create_topic("bench", run.partitions)?;
    let mut logs: Vec<PartitionLog> = (0..run.partitions)
        .map(|p| store.open_partition(&topic, p))
        .collect::<Result<_, _>>()?;
    let produced = produce(&mut logs, run)?;
    let consumed = consume(&logs, run)?;
    if consumed.records != produced.records {
        bail!(
            "lost records: produced {}, consumed {}",
            produced.records,
            consumed.records
        );
    }
    Ok((produced, consumed))
}

/// One thread builds batches and appends them round robin; the cost of encoding records is
/// part of the figure, as it is for a real producer.
fn produce(logs: &mut [PartitionLog], run: &Workload) -> anyhow::Result<Measured> {
    let value: Vec<u8> = (0..run.record_bytes).map(|i| (i * 7) as u8).collect();
    let per_batch = (BATCH_BYTES / run.record_bytes).max(1);
    let total_records = run.total_bytes / run.record_bytes as u64;
    let began = Instant::now();
    let mut records = 0u64;
    let mut bytes = 0u64;
    let mut partition = 0;
    while records < total_records {
        let mut builder = BatchBuilder::with_capacity(Compression::None, BATCH_BYTES + 4096);
        let count = per_batch.min((total_records - records) as usize);
        for i in 0..count {
            let key = (records + i as u64).to_be_bytes();
            builder.append(now_ms(), Some(&key), Some(&value), &[])?;
        }
        let mut batch = builder.build()?;
        bytes += batch.len() as u64;
        logs[partition].append(&mut batch)?;
        records += count as u64;
        partition = (partition + 1) % logs.len();
    }
    Ok(Measured {
        name: format!("produce {}B", run.record_bytes),
        records,
        bytes,
        elapsed: began.elapsed(),
    })
}

/// Reads every partition from the start through its reader, validating each batch's CRC and
/// decoding every record, as a consumer does.
fn consume(logs: &[PartitionLog], run: &Workload) -> anyhow::Result<Measured> {
    let limits = Limits::default();
    let began = Instant::now();
    let mut records = 0u64;
    let mut bytes = 0u64;
    for log in logs {
        let reader = log.reader();
        let mut offset = reader.start_offset();
        while offset < reader.end_offset() {
            let slice = reader.read(offset, 1 << 20)?;
            for item in slice.batches() {
                let (_, batch) = item?;
                bytes += batch.size_bytes() as u64;
                for record in batch.records(&limits)?.iter() {
                    let record = record?;
                    if record.value.map(<[u8]>::len) != Some(run.record_bytes) {
                        bail!(
                            "record {} of {} has the wrong size",
                            record.offset,
                            reader.partition()
                        );
                    }
                    records += 1;
                }
            }
            offset = slice.next_offset();
        }
    }
    Ok(Measured {
        name: format!("consume {}B", run.record_bytes),
        records,
        bytes,
        elapsed: began.elapsed(),
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
