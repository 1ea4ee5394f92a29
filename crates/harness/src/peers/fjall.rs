//! `fjall` as a peer: an LSM-tree key-value store used as a log, the way an application would
//! use one for this. Keys are big-endian offsets in one keyspace, so key order is log order.
//!
//! Configuration, and why it is fair:
//! - one write batch (`OwnedWriteBatch`) per [`BATCH_BYTES`](super::BATCH_BYTES) of records, the store's batched,
//!   atomic write;
//! - durable: each batch commits with `PersistMode::SyncData` (an `fdatasync` of the journal,
//!   as rill syncs with `fdatasync`); not durable: batches go to the OS (the default), and the
//!   phase ends with one `persist(PersistMode::SyncData)`;
//! - no compression of the journal or of any table block (rill's producer default); fjall would
//!   otherwise compress large journal entries and deep levels with LZ4;
//! - 64 MiB memtables (the default, and the top of fjall's recommended range) and a 256 MiB
//!   block cache instead of 32 MiB, so reads do not go back to the files for blocks just
//!   read or written; the rest is served by the OS page cache, as it is for the other engines;
//! - the default background workers (flush and compaction, on as many threads as cores up to
//!   four): their work during the append phase is part of what the store costs;
//! - the read phase reopens the database and iterates the keyspace in key order; a "read call"
//!   is taking [`READ_BYTES`] of records from the iterator, the same amount as one read call
//!   of the other peer.
//!
//! What cannot be matched: an LSM-tree writes each record to the journal and again when a
//! memtable is flushed to a table (and again on every compaction), and builds per-key index and
//! filter blocks; that write amplification and the background threads doing it are fjall's
//! design and stay in its figure. A reopened database replays the journals of memtables that
//! were not flushed yet; that happens in the (untimed) open, and those records are then read
//! from memory.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use fjall::config::CompressionPolicy;
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, KvPair, PersistMode};

use super::{
    KEY_BYTES, PeerPhase, PeerWorkload, READ_BYTES, Records, Verifier, latency_histogram, measured,
    nanos, prepare_dir, records_per_batch,
};

const PEER: &str = "fjall";
const KEYSPACE: &str = "log";
const CACHE_BYTES: u64 = 256 * 1024 * 1024;
const MEMTABLE_BYTES: u64 = 64 * 1024 * 1024;

pub(super) fn run(dir: &Path, work: &PeerWorkload) -> anyhow::Result<[PeerPhase; 2]> {
    prepare_dir(dir)?;
    let append = {
        let (db, keyspace) = open(dir).context("create the database")?;
        measured(|| append(&db, &keyspace, work))?
        // Dropping the database stops its workers; what is not in tables is in the journal.
    };
    crate::cache::evict(dir)?;
    let (_db, keyspace) = open(dir).context("reopen the database")?;
    let read = measured(|| read(&keyspace, work))?;
    Ok([append, read])
}

fn open(dir: &Path) -> anyhow::Result<(Database, Keyspace)> {
    let db = Database::builder(dir)
        .cache_size(CACHE_BYTES)
        .journal_compression(CompressionType::None)
        .open()?;
    let keyspace = db.keyspace(KEYSPACE, || {
        KeyspaceCreateOptions::default()
            .max_memtable_size(MEMTABLE_BYTES)
            .data_block_compression_policy(CompressionPolicy::disabled())
            .index_block_compression_policy(CompressionPolicy::disabled())
    })?;
    Ok((db, keyspace))
}

fn append(db: &Database, keyspace: &Keyspace, work: &PeerWorkload) -> anyhow::Result<PeerPhase> {
    let mut latency = latency_histogram()?;
    let mut records = Records::new(work.record_bytes);
    let per_batch = records_per_batch(work);
    let durability = work.durable.then_some(PersistMode::SyncData);
    let began = Instant::now();
    let mut next = 0u64;
    while next < work.records {
        let end = (next + per_batch).min(work.records);
        let mut batch = db.batch().durability(durability);
        for index in next..end {
            batch.insert(keyspace, Records::key(index), records.value(index));
        }
        let call = Instant::now();
        batch.commit().context("commit a batch")?;
        latency.saturating_record(nanos(call.elapsed()));
        next = end;
    }
    if !work.durable {
        db.persist(PersistMode::SyncData)
            .context("sync the journal")?;
    }
    Ok(PeerPhase {
        peer: PEER,
        phase: "append",
        records: work.records,
        bytes: work.records * work.record_bytes as u64,
        elapsed: began.elapsed(),
        latency_ns: latency,
        lost_records: 0,
        cpu: Duration::ZERO,
        peak_rss_mb: 0.0,
    })
}

fn read(keyspace: &Keyspace, work: &PeerWorkload) -> anyhow::Result<PeerPhase> {
    let mut verifier = Verifier::new(work);
    let mut latency = latency_histogram()?;
    let mut chunk: Vec<KvPair> = Vec::new();
    let began = Instant::now();
    let mut iter = keyspace.iter();
    let mut done = false;
    while !done {
        chunk.clear();
        let mut bytes = 0;
        let call = Instant::now();
        while bytes < READ_BYTES {
            let Some(guard) = iter.next() else {
                done = true;
                break;
            };
            let (key, value) = guard.into_inner().context("read a record")?;
            bytes += KEY_BYTES + value.len();
            chunk.push((key, value));
        }
        if !chunk.is_empty() {
            latency.saturating_record(nanos(call.elapsed()));
        }
        for (key, value) in &chunk {
            verifier.check(None, key, value);
        }
    }
    Ok(PeerPhase {
        peer: PEER,
        phase: "read",
        records: verifier.read,
        bytes: verifier.bytes,
        elapsed: began.elapsed(),
        latency_ns: latency,
        lost_records: verifier.lost(),
        cpu: Duration::ZERO,
        peak_rss_mb: 0.0,
    })
}
