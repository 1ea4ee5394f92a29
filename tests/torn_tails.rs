//! Torn and corrupt tails: a log written over several segments, closed cleanly or copied as a
//! crash leaves it, then damaged at random where a crash or a bad disk damages files: the end of
//! the active segment (cut at a random byte, overwritten with garbage, zero-filled as a
//! preallocated file is) and, in some cases, the middle of a sealed segment's `.index` or
//! `.timeindex`.
//!
//! After reopening, recovery must keep exactly the batches that are intact before the first
//! damaged byte and nothing after; every read returns valid batches with dense offsets and the
//! records that were written; lookups by offset and by timestamp agree with a model of the log;
//! appends continue at the recovered end; and `verify` finds the directory sound after a close.
//!
//! The cases are seeded: a failure prints its seed, and `TORN_TAIL_SEED=<seed> cargo test
//! --test torn_tails` replays that case alone; `TORN_TAIL_CASES=<n>` runs more than the
//! default 200.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::fs;
use std::path::{Path, PathBuf};

use rill::engine::inspect::Inspector;
use rill::engine::io::PortableIo;
use rill::engine::log::{FsyncPolicy, LogConfig, LogReader, PartitionLog};
use rill::engine::record::{BatchBuilder, Compression, Header, Limits};
use rill::{TopicName, TopicPartition};

const CASES: u64 = 200;
const FIRST_SEED: u64 = 0x7011_7a11_5eed_0000;

/// The leader epoch (bytes 12..16 of a batch) is outside the CRC, as in Kafka, because a broker
/// rewrites it; damage confined to it is invisible by design and changes no record.
const EPOCH_FIELD: std::ops::Range<usize> = 12..16;

/// SplitMix64: tiny, fast, and good enough to pick sizes and positions reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn between(&mut self, low: u64, high_inclusive: u64) -> u64 {
        low + self.below(high_inclusive - low + 1)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 24 * 1024,
        segment_age: None,
        retention_bytes: None,
        retention_age: None,
        index_interval_bytes: 1024,
        fsync: FsyncPolicy::Never,
        limits: Limits {
            max_batch_bytes: 16 * 1024,
            ..Limits::default()
        },
        ..LogConfig::default()
    }
}

fn partition() -> TopicPartition {
    TopicPartition::new(TopicName::new("t").unwrap(), 0)
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, partition(), config(), Box::new(PortableIo))
        .unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

#[derive(Clone, Debug, PartialEq)]
struct ModelRecord {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A batch as appended: where it starts, and the bytes the log stored.
struct ModelBatch {
    base_offset: i64,
    bytes: Vec<u8>,
}

/// What was written, record by record and batch by batch.
#[derive(Default)]
struct Model {
    batches: Vec<ModelBatch>,
    records: Vec<ModelRecord>,
}

fn random_batch(rng: &mut Rng, first_offset: i64) -> (Vec<u8>, Vec<ModelRecord>) {
    let codec = if rng.chance(3) {
        Compression::ALL[rng.below(5) as usize]
    } else {
        Compression::None
    };
    let mut builder = BatchBuilder::new(codec);
    let mut records = Vec::new();
    // Sizes from a few bytes to several kilobytes, so batches straddle index intervals and
    // segments roll every few batches.
    let value_max = [16, 300, 3000][rng.below(3) as usize];
    let count = rng.between(1, if value_max > 300 { 4 } else { 12 });
    for i in 0..count {
        let timestamp = 1_700_000_000_000 + rng.below(100_000) as i64;
        let key = (!rng.chance(4)).then(|| {
            let len = rng.between(0, 12) as usize;
            rng.bytes(len)
        });
        let value = (!rng.chance(8)).then(|| {
            let len = rng.between(0, value_max) as usize;
            rng.bytes(len)
        });
        let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..rng.below(3))
            .map(|h| (format!("h{h}").into_bytes(), Some(rng.bytes(4))))
            .collect();
        let header_refs: Vec<Header<'_>> = headers
            .iter()
            .map(|(k, v)| Header::new(k, v.as_deref()))
            .collect();
        builder
            .append(timestamp, key.as_deref(), value.as_deref(), &header_refs)
            .unwrap();
        records.push(ModelRecord {
            offset: first_offset + i as i64,
            timestamp,
            key,
            value,
            headers,
        });
    }
    (builder.build().unwrap(), records)
}

/// What a crash leaves: the files as they are in the page cache, copied while the log is
/// open, without the lock (a lock dies with its process).
fn crash_copy(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != ".lock" {
            fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

fn files_with(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

fn base_offset_of(segment: &Path) -> i64 {
    segment
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[derive(Debug)]
#[allow(dead_code)] // the fields are read through Debug, in failure messages
enum TailDamage {
    /// The file ends at this byte.
    Truncate { at: usize },
    /// Random bytes from `at`, to the end of the data or only over `len` bytes.
    Garbage { at: usize, len: usize },
    /// Zeros from `at` (at most the data's end) to `extra` bytes past the data: a write that
    /// reached the file's size but not its blocks, in a preallocated file.
    Zeros { at: usize, extra: usize },
}

#[derive(Debug)]
#[allow(dead_code)] // the fields are read through Debug, in failure messages
enum IndexDamage {
    None,
    /// Random bytes over part of the middle of a sealed segment's index file.
    Overwrite {
        file: PathBuf,
        at: usize,
        len: usize,
    },
}

/// Totals over all cases, printed at the end.
#[derive(Default)]
struct Totals {
    cases: u64,
    crash_copies: u64,
    index_damaged: u64,
    batches_checked: u64,
    batches_cut: u64,
    records_checked: u64,
}

fn run_case(seed: u64, totals: &mut Totals) {
    let mut rng = Rng(seed);
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live").join("t-0");
    let mut log = open(&live);
    let mut model = Model::default();
    let batches = rng.between(12, 60);
    let segments_wanted = rng.between(2, 4) as usize;
    while (model.batches.len() as u64) < batches || log.segment_count() < segments_wanted {
        let (mut bytes, records) = random_batch(&mut rng, log.next_offset());
        let info = log.append(&mut bytes).unwrap();
        assert_eq!(info.base_offset, records[0].offset);
        model.batches.push(ModelBatch {
            base_offset: info.base_offset,
            bytes,
        });
        model.records.extend(records);
    }

    let crashed = rng.chance(2);
    let dir = if crashed {
        let copy = root.path().join("crashed").join("t-0");
        crash_copy(&live, &copy);
        drop(log);
        totals.crash_copies += 1;
        copy
    } else {
        log.close().unwrap();
        live
    };

    let segments = files_with(&dir, "log");
    let active = segments.last().unwrap().clone();
    let active_base = base_offset_of(&active);
    let original = fs::read(&active).unwrap();
    let in_active: Vec<&ModelBatch> = model
        .batches
        .iter()
        .filter(|b| b.base_offset >= active_base)
        .collect();
    let data_end: usize = in_active.iter().map(|b| b.bytes.len()).sum();
    assert!(original.len() >= data_end);

    let damage = match rng.below(3) {
        0 => TailDamage::Truncate {
            at: rng.between(0, data_end as u64) as usize,
        },
        1 => {
            let at = rng.below(data_end as u64) as usize;
            // A scan validates every batch of a crashed log, so garbage may also land inside the
            // data with intact batches after it; a cleanly closed log is trusted up to its tail,
            // so there the garbage runs to the end, as a torn write would.
            let len = if crashed && rng.chance(2) {
                rng.between(1, 64) as usize
            } else {
                original.len() - at
            };
            TailDamage::Garbage { at, len }
        }
        _ => TailDamage::Zeros {
            at: rng.between(0, data_end as u64) as usize,
            extra: rng.between(0, 8192) as usize,
        },
    };
    let mut damaged = original.clone();
    match damage {
        TailDamage::Truncate { at } => damaged.truncate(at),
        TailDamage::Garbage { at, len } => {
            let garbage = rng.bytes(len);
            damaged.splice(at..at + len, garbage);
        }
        TailDamage::Zeros { at, extra } => {
            damaged.truncate(at);
            damaged.resize(data_end + extra, 0);
        }
    }
    fs::write(&active, &damaged).unwrap();

    let index_damage = if rng.chance(2) && segments.len() > 1 {
        let sealed = &segments[rng.below(segments.len() as u64 - 1) as usize];
        let file = sealed.with_extension(if rng.chance(2) { "index" } else { "timeindex" });
        let mut bytes = fs::read(&file).unwrap();
        if bytes.len() >= 24 {
            let third = bytes.len() / 3;
            let at = third + rng.below(third as u64) as usize;
            let len = (rng.between(1, 8) as usize).min(bytes.len() - at);
            let garbage = rng.bytes(len);
            bytes.splice(at..at + len, garbage);
            fs::write(&file, &bytes).unwrap();
            totals.index_damaged += 1;
            IndexDamage::Overwrite { file, at, len }
        } else {
            IndexDamage::None
        }
    } else {
        IndexDamage::None
    };

    // The oracle: batches of the active segment survive while each is intact (outside its
    // leader epoch) in the damaged file.
    let mut kept_next = active_base;
    let mut position = 0;
    for batch in &in_active {
        let end = position + batch.bytes.len();
        let Some(now) = damaged.get(position..end) else {
            break;
        };
        let intact = now
            .iter()
            .zip(&batch.bytes)
            .enumerate()
            .all(|(i, (a, b))| a == b || EPOCH_FIELD.contains(&i));
        if !intact {
            break;
        }
        kept_next = batch.base_offset + count_records(&batch.bytes);
        position = end;
    }
    let context = format!(
        "{} log, {} batches over {} segments, active segment at offset {active_base} with {data_end} bytes of batches, {damage:?}, {index_damage:?}",
        if crashed { "crash-copied" } else { "closed" },
        model.batches.len(),
        segments.len(),
    );
    let expected: Vec<ModelRecord> = model
        .records
        .iter()
        .filter(|r| r.offset < kept_next)
        .cloned()
        .collect();

    let mut log = open(&dir);
    assert_eq!(
        log.next_offset(),
        kept_next,
        "recovered end offset; {context}"
    );
    let reader = log.reader();
    let (read, batches_read) = read_from(&reader, 0, &context);
    assert!(read == expected, "records read back differ; {context}");
    totals.batches_checked += batches_read;
    totals.records_checked += read.len() as u64;
    totals.batches_cut += model.batches.len() as u64 - batches_read;

    // Lookups: from offsets inside batches, and by timestamp, against the model.
    for _ in 0..8 {
        if kept_next == 0 {
            break;
        }
        let offset = rng.below(kept_next as u64) as i64;
        let first = read_one(&reader, offset, &context);
        assert_eq!(
            first, expected[offset as usize],
            "read at {offset}; {context}"
        );
        let timestamp = 1_700_000_000_000 + rng.below(100_010) as i64;
        let wanted = expected
            .iter()
            .find(|r| r.timestamp >= timestamp)
            .map(|r| r.offset);
        let found = reader.offset_for_timestamp(timestamp).unwrap();
        assert_eq!(found, wanted, "offset for timestamp {timestamp}; {context}");
    }

    let (mut bytes, _) = random_batch(&mut rng, kept_next);
    let appended = log.append(&mut bytes).unwrap();
    assert_eq!(
        appended.base_offset, kept_next,
        "append after recovery; {context}"
    );
    let end = appended.last_offset + 1;
    log.close().unwrap();

    let data_root = dir.parent().unwrap();
    let inspector = Inspector::open(data_root, config().limits).unwrap();
    let check = inspector.verify(&partition()).unwrap();
    // Open checks a loaded index's shape and its last entry, not every entry against the log
    // (that would read most of each segment); lookups check the entries they use. So a sealed
    // segment's index damaged in the middle can survive on disk, answered around by lookups,
    // and verify, which reads every entry, rightly names that file and nothing else.
    let damaged_index = match &index_damage {
        IndexDamage::Overwrite { file, .. } => Some(file.clone()),
        IndexDamage::None => None,
    };
    let unexplained: Vec<_> = check
        .problems
        .iter()
        .filter(|p| Some(&p.path) != damaged_index.as_ref())
        .collect();
    assert!(
        unexplained.is_empty(),
        "verify after recovery: {unexplained:?}; {context}"
    );
    assert_eq!(check.summary.next_offset, end, "{context}");
    drop(inspector);
    assert_eq!(open(&dir).next_offset(), end, "reopen; {context}");
    totals.cases += 1;
}

fn count_records(batch: &[u8]) -> i64 {
    i64::from(i32::from_be_bytes(batch[57..61].try_into().unwrap()))
}

/// Reads every record from `from` to the end, checking each batch and the density of offsets.
fn read_from(reader: &LogReader, from: i64, context: &str) -> (Vec<ModelRecord>, u64) {
    let limits = config().limits;
    let mut out = Vec::new();
    let mut batches = 0;
    let mut offset = from;
    loop {
        let slice = reader
            .read(offset, 4096)
            .unwrap_or_else(|e| panic!("read at {offset}: {e}; {context}"));
        if slice.is_empty() {
            break;
        }
        for item in slice.batches() {
            let (_, batch) =
                item.unwrap_or_else(|e| panic!("corrupt batch read at {offset}: {e}; {context}"));
            batches += 1;
            assert!(
                batch.base_offset() <= offset,
                "gap before {offset}; {context}"
            );
            for record in batch.records(&limits).unwrap().iter() {
                let record = record.unwrap();
                if record.offset < offset {
                    continue;
                }
                assert_eq!(record.offset, offset, "offsets must be dense; {context}");
                out.push(ModelRecord {
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key.map(<[u8]>::to_vec),
                    value: record.value.map(<[u8]>::to_vec),
                    headers: record
                        .headers()
                        .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                        .collect(),
                });
                offset += 1;
            }
        }
        assert_eq!(slice.next_offset(), offset, "{context}");
    }
    (out, batches)
}

/// The record at `offset`, read through a slice that starts at the batch holding it.
fn read_one(reader: &LogReader, offset: i64, context: &str) -> ModelRecord {
    let slice = reader.read(offset, 1).unwrap();
    let (_, batch) = slice
        .batches()
        .next()
        .unwrap_or_else(|| panic!("nothing read at {offset}; {context}"))
        .unwrap_or_else(|e| panic!("corrupt batch read at {offset}: {e}; {context}"));
    assert!(
        batch.base_offset() <= offset && offset < batch.next_offset(),
        "read at {offset} returned the batch {}..{}; {context}",
        batch.base_offset(),
        batch.next_offset()
    );
    let limits = config().limits;
    let records = batch.records(&limits).unwrap();
    let record = records
        .iter()
        .map(Result::unwrap)
        .find(|r| r.offset == offset)
        .unwrap();
    ModelRecord {
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key.map(<[u8]>::to_vec),
        value: record.value.map(<[u8]>::to_vec),
        headers: record
            .headers()
            .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
            .collect(),
    }
}

#[test]
fn recovery_keeps_exactly_the_intact_prefix() {
    let seeds: Vec<u64> = match std::env::var("TORN_TAIL_SEED") {
        Ok(seed) => vec![seed.parse().expect("TORN_TAIL_SEED is a u64")],
        Err(_) => {
            let cases = std::env::var("TORN_TAIL_CASES").map_or(CASES, |n| {
                n.parse().expect("TORN_TAIL_CASES is a number of cases")
            });
            (0..cases).map(|case| FIRST_SEED + case).collect()
        }
    };
    let mut totals = Totals::default();
    for seed in seeds {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(seed, &mut totals)));
        if let Err(panic) = outcome {
            eprintln!(
                "torn-tail case with seed {seed} failed; replay it with TORN_TAIL_SEED={seed} cargo test --test torn_tails"
            );
            std::panic::resume_unwind(panic);
        }
    }
    println!(
        "torn tails: {} cases ({} crash copies, {} with a damaged index), {} batches and {} records checked after recovery, {} batches cut",
        totals.cases,
        totals.crash_copies,
        totals.index_damaged,
        totals.batches_checked,
        totals.records_checked,
        totals.batches_cut
    );
}
