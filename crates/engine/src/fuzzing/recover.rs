//! `segment_recover`: arbitrary bytes as the tail of a partition's only segment, after a valid
//! prefix, with no checkpoint (an unclean stop that left nothing to trust).
//!
//! Properties:
//! - opening the partition succeeds and never panics;
//! - recovery keeps exactly the longest prefix of valid batches with dense offsets (at least
//!   the prefix written here) and cuts everything after it;
//! - reading back through [`LogReader`] returns exactly those bytes, batch by batch, each one
//!   valid, with dense offsets;
//! - an append after recovery lands at the recovered end offset;
//! - after a clean close, [`Inspector::verify`] sees the same batches and finds the segment
//!   and its indexes sound, and a second open agrees.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::inspect::Inspector;
use crate::io::PortableIo;
use crate::log::{FsyncPolicy, LogConfig, LogReader, PartitionLog};
use crate::record::{Batch, BatchBuilder, Compression, Header, Limits, set_base_offset};
use crate::topic::{TopicName, TopicPartition};

const LIMITS: Limits = Limits {
    max_batch_bytes: 64 * 1024,
    max_decompressed_bytes: 1024 * 1024,
};

fn config() -> LogConfig {
    LogConfig {
        // Small enough that a large fuzz input overflows it and the append after recovery
        // rolls a second segment.
        segment_bytes: 256 * 1024,
        segment_age: None,
        retention_bytes: None,
        retention_age: None,
        // Dense indexes, so the ones written on close have entries worth verifying.
        index_interval_bytes: 128,
        fsync: FsyncPolicy::Never,
        limits: LIMITS,
        ..LogConfig::default()
    }
}

/// Valid batches (three codecs, headers, null fields) with dense offsets from 0.
struct Prefix {
    bytes: Vec<u8>,
    next_offset: i64,
}

fn prefix() -> &'static Prefix {
    static PREFIX: OnceLock<Prefix> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut bytes = Vec::new();
        let mut next_offset = 0;
        for (codec, records) in [
            (Compression::None, 3u8),
            (Compression::Gzip, 2),
            (Compression::None, 1),
        ] {
            let mut builder = BatchBuilder::new(codec);
            for i in 0..records {
                let tag = [i];
                let headers = [Header::new(b"h", Some(&tag[..]))];
                builder
                    .append(1_700_000_000_000 + i64::from(i), Some(&tag), None, &headers)
                    .expect("prefix record");
            }
            let mut batch = builder.build().expect("prefix batch");
            set_base_offset(&mut batch, next_offset).expect("prefix offset");
            next_offset += i64::from(records);
            bytes.extend_from_slice(&batch);
        }
        Prefix { bytes, next_offset }
    })
}

/// The specification of recovery, restated independently of `Segment::scan`: batches that
/// parse (framing, magic, CRC, size limit), continue the offsets densely and declare dense
/// offsets themselves, from byte 0 up to the first one that does not.
fn longest_valid_prefix(file: &[u8], limits: &Limits) -> (usize, i64) {
    let (mut end, mut next) = (0, 0i64);
    while let Some(rest) = file.get(end..).filter(|rest| !rest.is_empty()) {
        let Ok(batch) = Batch::parse(rest, limits) else {
            break;
        };
        let count = batch.record_count();
        if batch.base_offset() != next
            || count < 1
            || batch.header().last_offset_delta.get() != count - 1
        {
            break;
        }
        end += batch.size_bytes();
        next = batch.next_offset();
    }
    (end, next)
}

pub fn segment_recover(data: &[u8]) {
    let scratch = ScratchDir::new();
    let part = scratch.path().join("t-0");
    fs::create_dir(&part).expect("create partition directory");
    let segment = part.join("00000000000000000000.log");
    let prefix = prefix();
    let file = [&prefix.bytes[..], data].concat();
    fs::write(&segment, &file).expect("write segment");

    let (expected_end, expected_next) = longest_valid_prefix(&file, &LIMITS);
    assert!(expected_end >= prefix.bytes.len() && expected_next >= prefix.next_offset);
    let tp = TopicPartition::new(TopicName::new("t").expect("topic name"), 0);

    let open = || PartitionLog::open(&part, tp.clone(), config(), Box::new(PortableIo));
    let mut log = open().unwrap_or_else(|e| panic!("recovery failed: {e}"));
    assert_eq!(log.next_offset(), expected_next, "recovered end offset");
    assert_eq!(log.size_bytes(), expected_end as u64, "recovered bytes");

    let (kept, undecodable) = read_back(&log.reader(), expected_next);
    assert!(
        kept == file[..expected_end],
        "reads differ from the file's valid prefix"
    );

    let mut batch = BatchBuilder::new(Compression::None);
    batch.append(0, None, Some(b"after"), &[]).expect("record");
    let info = log
        .append(&mut batch.build().expect("batch"))
        .expect("append after recovery");
    assert_eq!(
        info.base_offset, expected_next,
        "append offset after recovery"
    );
    log.close().expect("close");

    let on_disk = fs::read(&segment).expect("read segment");
    assert!(
        on_disk.get(..expected_end) == Some(&file[..expected_end]),
        "recovery changed bytes it kept"
    );

    let inspector = Inspector::open(scratch.path(), LIMITS).expect("inspect");
    let check = inspector.verify(&tp).expect("verify");
    assert_eq!(check.summary.next_offset, expected_next + 1);
    // Recovery, like Kafka's, validates framing and CRC, not what is inside a batch (the
    // design's contract, and append's too): a CRC-valid batch whose records do not decode is
    // kept, the reader returns the batch and the record decoder a typed error. `verify` looks
    // deeper and reports exactly those batches; anything else it finds is a disagreement.
    for problem in &check.problems {
        let record_level = problem.reason.starts_with("record: ")
            && problem.path == segment
            && problem
                .position
                .is_some_and(|p| undecodable.contains(&(p as usize)));
        assert!(record_level, "verify disagrees with recovery: {problem}");
    }
    assert_eq!(
        check.problems.len(),
        undecodable.len(),
        "verify must report every batch whose records do not decode"
    );
    drop(inspector);

    let log = open().unwrap_or_else(|e| panic!("clean reopen failed: {e}"));
    assert_eq!(
        log.next_offset(),
        expected_next + 1,
        "end offset after reopen"
    );
    log.close().expect("close");
}

/// Reads the log from offset 0 batch by batch; returns the bytes read and the positions of
/// batches whose records do not decode.
fn read_back(reader: &LogReader, end_offset: i64) -> (Vec<u8>, BTreeSet<usize>) {
    let mut bytes = Vec::new();
    let mut undecodable = BTreeSet::new();
    let mut offset = 0;
    loop {
        let slice = reader.read(offset, 4096).expect("read inside the log");
        if slice.is_empty() {
            break;
        }
        for item in slice.batches() {
            let (_, batch) = item.expect("the reader returned an invalid batch");
            assert_eq!(batch.base_offset(), offset, "offsets must be dense");
            let decodes = batch.records(&LIMITS).and_then(|records| {
                records
                    .iter()
                    .try_fold(0usize, |n, record| record.map(|_| n + 1))
            });
            match decodes {
                Ok(count) => assert_eq!(count as i64, i64::from(batch.record_count())),
                Err(_) => {
                    undecodable.insert(bytes.len());
                }
            }
            offset = batch.next_offset();
            bytes.extend_from_slice(batch.as_bytes());
        }
        assert_eq!(slice.next_offset(), offset);
    }
    assert_eq!(offset, end_offset, "reads end at the recovered end offset");
    (bytes, undecodable)
}

/// A fresh directory under the system's temporary directory (`TMPDIR`: the fuzz script points
/// it at a RAM disk when there is one), removed on drop.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    pub(crate) fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    /// A fresh directory under `base`.
    pub(crate) fn new_in(base: &Path) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("rill-fuzz-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Self(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create {}: {e}", path.display()),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
