//! The partition log's append and read rates through the portable (pwrite) backend.
//!
//! Appends reuse one pre-built batch (the log only restamps its base offset), so the figure is
//! the log's cost: validation (CRC), the write system call, indexing and publication. Reads
//! walk the whole log through a `LogReader` and validate every batch's CRC, as a consumer does.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rill::engine::log::{FsyncPolicy, LogConfig, PartitionLog};
use rill::engine::record::{BatchBuilder, Compression, Limits};
use rill::engine::store::Store;

/// Records per batch for each record size: about 64 KiB of values per batch.
const CASES: [(usize, usize); 2] = [(100, 640), (1024, 64)];

fn batch(value_bytes: usize, records: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None);
    let value: Vec<u8> = (0..value_bytes).map(|i| (i * 31) as u8).collect();
    for i in 0..records {
        builder
            .append(
                1_700_000_000_000 + i as i64,
                Some(&(i as u64).to_be_bytes()),
                Some(&value),
                &[],
            )
            .unwrap_or_else(|e| panic!("building the bench batch: {e}"));
    }
    builder
        .build()
        .unwrap_or_else(|e| panic!("building the bench batch: {e}"))
}

fn config() -> LogConfig {
    LogConfig {
        retention_bytes: Some(1 << 30),
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    }
}

fn open_log(dir: &std::path::Path) -> (Store, PartitionLog) {
    let store = Store::open(dir, config()).unwrap_or_else(|e| panic!("{e}"));
    let topic = store
        .create_topic("bench", 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = store
        .open_partition(&topic, 0)
        .unwrap_or_else(|e| panic!("{e}"));
    (store, log)
}

fn append(c: &mut Criterion) {
    for (value_bytes, records) in CASES {
        let template = batch(value_bytes, records);
        for (unit, throughput) in [
            ("records", Throughput::Elements(records as u64)),
            ("bytes", Throughput::Bytes(template.len() as u64)),
        ] {
            let mut group = c.benchmark_group(format!("log/append/{unit}"));
            group.throughput(throughput);
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let (_store, mut log) = open_log(dir.path());
            let mut bytes = template.clone();
            let mut appended = 0u64;
            group.bench_function(
                BenchmarkId::from_parameter(format!("{value_bytes}B")),
                |b| {
                    b.iter(|| {
                        let info = log.append(&mut bytes).unwrap_or_else(|e| panic!("{e}"));
                        appended += 1;
                        if appended.is_multiple_of(4096) {
                            log.enforce_retention().unwrap_or_else(|e| panic!("{e}"));
                        }
                        black_box(info)
                    });
                },
            );
            group.finish();
        }
    }
}

fn read(c: &mut Criterion) {
    let limits = Limits::default();
    for (value_bytes, records) in CASES {
        let template = batch(value_bytes, records);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (_store, mut log) = open_log(dir.path());
        let batches = (64 << 20) / template.len();
        for _ in 0..batches {
            log.append(&mut template.clone())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let reader = log.reader();
        let total_bytes = log.size_bytes();
        let total_records = log.next_offset() as u64;
        for (unit, throughput) in [
            ("records", Throughput::Elements(total_records)),
            ("bytes", Throughput::Bytes(total_bytes)),
        ] {
            let mut group = c.benchmark_group(format!("log/read/{unit}"));
            group.throughput(throughput);
            group.bench_function(
                BenchmarkId::from_parameter(format!("{value_bytes}B")),
                |b| {
                    b.iter(|| {
                        let mut offset = 0;
                        let mut seen = 0u64;
                        while offset < total_records as i64 {
                            let slice = reader
                                .read(offset, 1 << 20)
                                .unwrap_or_else(|e| panic!("{e}"));
                            for item in slice.batches() {
                                let (_, batch) = item.unwrap_or_else(|e| panic!("{e}"));
                                for record in batch
                                    .records(&limits)
                                    .unwrap_or_else(|e| panic!("{e}"))
                                    .iter()
                                {
                                    let record = record.unwrap_or_else(|e| panic!("{e}"));
                                    seen += record.value.map_or(0, |v| v.len() as u64);
                                }
                            }
                            offset = slice.next_offset();
                        }
                        black_box(seen)
                    });
                },
            );
            group.finish();
        }
    }
}

fn short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = short();
    targets = append, read
}
criterion_main!(benches);
