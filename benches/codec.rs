//! The RecordBatch v2 codec in isolation: how fast a batch is built, validated and read.
//!
//! Two record shapes, each in a batch of about 256 KiB (inside the 1 MiB default batch limit,
//! and the size a busy producer's `batch.size` reaches):
//!
//! - `100B`: 100-byte values, 2048 records a batch;
//! - `1KiB`: 1024-byte values, 256 records a batch.
//!
//! Keys are 12 bytes (`key-00000042`), there are no headers. Values are words drawn at random
//! from a small vocabulary, so they compress roughly like log text does rather than like zeros
//! (flattering) or like random bytes (hopeless); the compression ratios are printed at start.
//!
//! Every benchmark reports records/s and MB/s. The bytes are always those of the *uncompressed*
//! batch, also for the compressed groups, so MB/s compares the same work across codecs.
//!
//! Groups: `codec/build` (append + build, uncompressed), `codec/build-compressed` (the same with
//! lz4 and zstd), `codec/validate` (`Batch::parse`: framing and CRC-32C), `codec/iterate`
//! (`records()` and a walk over every record, reading key and value lengths) and
//! `codec/iterate-compressed` (the same, so including decompression).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rill::engine::record::{Batch, BatchBuilder, Compression, Limits};

struct Case {
    name: &'static str,
    records: Vec<(Vec<u8>, Vec<u8>)>,
    /// The batch encoded uncompressed: what all throughput figures are counted against.
    plain: Vec<u8>,
}

impl Case {
    fn new(name: &'static str, value_len: usize, count: usize) -> Self {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..count)
            .map(|i| {
                let key = format!("key-{i:08}").into_bytes();
                (key, text(&mut rng, value_len))
            })
            .collect();
        let plain = build(&records, Compression::None);
        Self {
            name,
            records,
            plain,
        }
    }

    fn throughput(&self) -> Throughput {
        Throughput::ElementsAndBytes {
            elements: self.records.len() as u64,
            bytes: self.plain.len() as u64,
        }
    }
}

const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

fn build(records: &[(Vec<u8>, Vec<u8>)], codec: Compression) -> Vec<u8> {
    // Sized up front, as a producer that batches by size would: growth is not the codec's cost.
    let capacity = records.iter().map(|(k, v)| k.len() + v.len() + 16).sum();
    let mut builder = BatchBuilder::with_capacity(codec, capacity);
    for (i, (key, value)) in records.iter().enumerate() {
        builder
            .append(BASE_TIMESTAMP + i as i64, Some(key), Some(value), &[])
            .unwrap();
    }
    builder.build().unwrap()
}

/// `len` bytes of space-separated words from a fixed vocabulary, chosen by a xorshift generator.
fn text(rng: &mut u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 32] = [
        "order", "user", "click", "view", "cart", "item", "price", "total", "session", "device",
        "mobile", "desktop", "region", "eu-west", "us-east", "status", "ok", "error", "retry",
        "latency", "ms", "bytes", "request", "response", "GET", "POST", "/api/v1", "checkout",
        "login", "logout", "search", "page",
    ];
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        out.extend_from_slice(WORDS[(*rng % WORDS.len() as u64) as usize].as_bytes());
        // A number now and then, as real events carry ids and amounts.
        out.extend_from_slice(format!("={} ", (*rng >> 40) % 10_000).as_bytes());
    }
    out.truncate(len);
    out
}

fn cases() -> Vec<Case> {
    let cases = vec![Case::new("100B", 100, 2048), Case::new("1KiB", 1024, 256)];
    for case in &cases {
        let sizes: Vec<String> = [Compression::Lz4, Compression::Zstd]
            .into_iter()
            .map(|codec| {
                let size = build(&case.records, codec).len();
                format!(
                    "{codec} {size} B ({:.2}x)",
                    case.plain.len() as f64 / size as f64
                )
            })
            .collect();
        println!(
            "codec/{}: {} records, batch {} B; {}",
            case.name,
            case.records.len(),
            case.plain.len(),
            sizes.join(", ")
        );
    }
    cases
}

fn bench_build(c: &mut Criterion, cases: &[Case]) {
    let mut group = c.benchmark_group("codec/build");
    for case in cases {
        group.throughput(case.throughput());
        group.bench_with_input(BenchmarkId::new("none", case.name), case, |b, case| {
            b.iter(|| build(black_box(&case.records), Compression::None))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("codec/build-compressed");
    for case in cases {
        group.throughput(case.throughput());
        for codec in [Compression::Lz4, Compression::Zstd] {
            group.bench_with_input(
                BenchmarkId::new(codec.name(), case.name),
                case,
                |b, case| b.iter(|| build(black_box(&case.records), codec)),
            );
        }
    }
    group.finish();
}

fn bench_validate(c: &mut Criterion, cases: &[Case]) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("codec/validate");
    for case in cases {
        group.throughput(case.throughput());
        group.bench_with_input(BenchmarkId::new("none", case.name), case, |b, case| {
            b.iter(|| {
                Batch::parse(black_box(&case.plain), &limits)
                    .unwrap()
                    .record_count()
            })
        });
    }
    group.finish();
}

/// Decodes every record and touches its key and value, so no field parse can be skipped.
fn iterate(batch: &Batch<'_>, limits: &Limits) -> usize {
    let records = batch.records(limits).unwrap();
    let mut total = 0;
    for record in records.iter() {
        let record = record.unwrap();
        total += record.key.map_or(0, <[u8]>::len) + record.value.map_or(0, <[u8]>::len);
    }
    total
}

fn bench_iterate(c: &mut Criterion, cases: &[Case]) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("codec/iterate");
    for case in cases {
        let batch = Batch::parse(&case.plain, &limits).unwrap();
        group.throughput(case.throughput());
        group.bench_with_input(BenchmarkId::new("none", case.name), &batch, |b, batch| {
            b.iter(|| iterate(black_box(batch), &limits))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("codec/iterate-compressed");
    for case in cases {
        group.throughput(case.throughput());
        for codec in [Compression::Lz4, Compression::Zstd] {
            let bytes = build(&case.records, codec);
            let batch = Batch::parse(&bytes, &limits).unwrap();
            group.bench_with_input(
                BenchmarkId::new(codec.name(), case.name),
                &batch,
                |b, batch| b.iter(|| iterate(black_box(batch), &limits)),
            );
        }
    }
    group.finish();
}

fn codec(c: &mut Criterion) {
    let cases = cases();
    bench_build(c, &cases);
    bench_validate(c, &cases);
    bench_iterate(c, &cases);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = codec
}
criterion_main!(benches);
