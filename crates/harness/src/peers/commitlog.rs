//! The `commitlog` crate as a peer: a segmented append-only log with a memory-mapped offset
//! index, the design closest to rill's log.
//!
//! Configuration, and why it is fair:
//! - segments of 256 MiB, rill's default segment size, so both roll equally often;
//! - each index file is sized up front for a full segment of these records, so no index grows
//!   (a remap) in the timed span;
//! - one `append` of a `MessageBuf` per batch, the crate's batched write; the key goes in the
//!   message's metadata, the value is the payload;
//! - reads through `read(offset, ReadLimit)` in [`READ_BYTES`] steps, which check every
//!   message's CRC-32C (rill's consumer checks each batch's CRC).
//!
//! What cannot be matched, and what is done instead:
//! - `CommitLog::flush` does not reach the disk: for the segment it calls `File::flush`, which
//!   does nothing for a file, and it syncs only the index's whole pages. So the durability rill
//!   and fjall give (an `fdatasync` that covers every record written) is not in the crate. The
//!   peer calls `flush` (what the crate offers) and then `fdatasync`s the segment and index
//!   files itself through handles of its own, and syncs the directory once new files appear
//!   in it. It finds which files those are by tracking the crate's roll rule (a segment rolls
//!   when the next batch would not fit): a wrong guess fails the run rather than leave a file
//!   unsynced.
//! - Every message is indexed (8 bytes per record) and carries a 20-byte header; rill indexes
//!   sparsely and frames records in batches. That is the crate's design and stays in its figure.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use commitlog::message::{MessageBuf, MessageSet};
use commitlog::{CommitLog, LogOptions, ReadLimit};

use super::{
    KEY_BYTES, PeerPhase, PeerWorkload, READ_BYTES, Records, Verifier, latency_histogram, measured,
    nanos, prepare_dir, records_per_batch,
};

const PEER: &str = "commitlog";
/// The crate's per-message header.
const HEADER_BYTES: usize = 20;
/// Every segment file starts with a 2-byte version marker.
const SEGMENT_MAGIC_BYTES: usize = 2;

pub(super) struct Config {
    pub segment_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            segment_bytes: 256 * 1024 * 1024,
        }
    }
}

pub(super) fn run(
    dir: &Path,
    work: &PeerWorkload,
    config: &Config,
) -> anyhow::Result<[PeerPhase; 2]> {
    prepare_dir(dir)?;
    let message_bytes = HEADER_BYTES + KEY_BYTES + work.record_bytes;
    // The crate checks its message size limit against a whole appended batch.
    let batch_bytes = records_per_batch(work) as usize * message_bytes;
    if batch_bytes + SEGMENT_MAGIC_BYTES > config.segment_bytes {
        bail!(
            "a batch of {batch_bytes} bytes does not fit a {} byte segment",
            config.segment_bytes
        );
    }
    // Index positions are 32-bit, so a segment cannot be larger.
    if u32::try_from(config.segment_bytes).is_err() {
        bail!("segments of {} bytes are over 4 GiB", config.segment_bytes);
    }
    let mut options = LogOptions::new(dir);
    options
        .segment_max_bytes(config.segment_bytes)
        .index_max_items(config.segment_bytes / message_bytes + 1)
        .message_max_bytes(batch_bytes);

    let append = measured(|| append(dir, work, &options, config))?;
    crate::cache::evict(dir)?;
    // A fresh log on the same files: the read phase sees what reached them.
    let log = CommitLog::new(options).context("reopen the log")?;
    let read = measured(|| read(&log, work))?;
    Ok([append, read])
}

fn append(
    dir: &Path,
    work: &PeerWorkload,
    options: &LogOptions,
    config: &Config,
) -> anyhow::Result<PeerPhase> {
    let mut log = CommitLog::new(options.clone()).context("create the log")?;
    let mut files = SegmentFiles::open(dir, config.segment_bytes)?;
    let mut latency = latency_histogram()?;
    let mut records = Records::new(work.record_bytes);
    let per_batch = records_per_batch(work);
    let mut buf = MessageBuf::default();
    let began = Instant::now();
    let mut next = 0u64;
    while next < work.records {
        let end = (next + per_batch).min(work.records);
        buf.clear();
        for index in next..end {
            // The error is Debug only (not std Error): keep its name in the message.
            buf.push_with_metadata(Records::key(index), records.value(index))
                .map_err(|error| anyhow::anyhow!("encode message {index}: {error:?}"))?;
        }
        let call = Instant::now();
        let appended = log.append(&mut buf).context("append a batch")?;
        if appended.first() != next || appended.len() as u64 != end - next {
            bail!(
                "batch {next}..{end} was appended at {}..{}",
                appended.first(),
                appended.first() + appended.len() as u64
            );
        }
        files.appended(next, buf.bytes().len())?;
        if work.durable {
            log.flush().context("flush the log")?;
            files.sync()?;
        }
        latency.saturating_record(nanos(call.elapsed()));
        next = end;
    }
    if !work.durable {
        log.flush().context("flush the log")?;
        files.sync()?;
    }
    let elapsed = began.elapsed();
    files.check_bases()?;
    Ok(PeerPhase {
        peer: PEER,
        phase: "append",
        records: work.records,
        bytes: work.records * work.record_bytes as u64,
        elapsed,
        latency_ns: latency,
        lost_records: 0,
        cpu: Duration::ZERO,
        peak_rss_mb: 0.0,
    })
}

fn read(log: &CommitLog, work: &PeerWorkload) -> anyhow::Result<PeerPhase> {
    let mut verifier = Verifier::new(work);
    let mut latency = latency_histogram()?;
    // A read returns whole messages: it must fit at least one.
    let message_bytes = HEADER_BYTES + KEY_BYTES + work.record_bytes;
    let limit = ReadLimit::max_bytes(READ_BYTES.max(message_bytes));
    let end = log.next_offset();
    let began = Instant::now();
    let mut offset = 0u64;
    while offset < end {
        let call = Instant::now();
        let messages = log
            .read(offset, limit)
            .with_context(|| format!("read from offset {offset}"))?;
        latency.saturating_record(nanos(call.elapsed()));
        let mut last = None;
        for message in messages.iter() {
            verifier.check(
                Some(message.offset()),
                message.metadata(),
                message.payload(),
            );
            last = Some(message.offset());
        }
        match last {
            Some(last) if last >= offset => offset = last + 1,
            // Nothing, or nothing past the asked offset: the log ends here.
            _ => break,
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

/// The log's files, as the crate names them, held open to sync them: the crate keeps its own
/// handles private.
struct SegmentFiles {
    dir: PathBuf,
    segment_bytes: usize,
    /// Where the crate's next write to the active segment lands.
    write_pos: usize,
    /// Base offsets of every segment created, oldest first.
    bases: Vec<u64>,
    /// Segment and index files written since the last sync, the active segment last.
    unsynced: Vec<[File; 2]>,
    /// Files were created since the directory was last synced.
    new_entries: bool,
}

impl SegmentFiles {
    /// Right after the crate created the log's first segment, at offset 0.
    fn open(dir: &Path, segment_bytes: usize) -> anyhow::Result<Self> {
        let mut files = Self {
            dir: dir.to_owned(),
            segment_bytes,
            write_pos: SEGMENT_MAGIC_BYTES,
            bases: Vec::new(),
            unsynced: Vec::new(),
            new_entries: false,
        };
        files.created(0)?;
        Ok(files)
    }

    fn created(&mut self, base: u64) -> anyhow::Result<()> {
        let open = |extension: &str| {
            let path = self.dir.join(format!("{base:020}.{extension}"));
            File::open(&path).with_context(|| format!("open {}", path.display()))
        };
        let files = [open("log")?, open("index")?];
        self.bases.push(base);
        self.unsynced.push(files);
        self.new_entries = true;
        Ok(())
    }

    /// A batch of `bytes` starting at offset `first` was appended: the crate rolls to a new
    /// segment, named after that offset, when the batch does not fit the active one.
    fn appended(&mut self, first: u64, bytes: usize) -> anyhow::Result<()> {
        if self.write_pos + bytes > self.segment_bytes {
            self.created(first)?;
            self.write_pos = SEGMENT_MAGIC_BYTES;
        }
        self.write_pos += bytes;
        Ok(())
    }

    /// `fdatasync`s every file written since the last sync, and the directory if it gained
    /// files. A segment the crate rolled away from is never written again, so only the active
    /// segment is kept for next time.
    fn sync(&mut self) -> anyhow::Result<()> {
        for files in &self.unsynced {
            for file in files {
                file.sync_data().context("sync a log file")?;
            }
        }
        if self.new_entries {
            File::open(&self.dir)
                .and_then(|dir| dir.sync_all())
                .with_context(|| format!("sync {}", self.dir.display()))?;
            self.new_entries = false;
        }
        let keep_from = self.unsynced.len().saturating_sub(1);
        self.unsynced.drain(..keep_from);
        Ok(())
    }

    /// After the phase: the segments on disk are exactly the ones tracked (and synced).
    fn check_bases(&self) -> anyhow::Result<()> {
        let mut on_disk = Vec::new();
        for entry in std::fs::read_dir(&self.dir).context("list the log directory")? {
            let path = entry.context("list the log directory")?.path();
            if path.extension() == Some("log".as_ref()) {
                let base = path
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .and_then(|stem| stem.parse::<u64>().ok())
                    .with_context(|| format!("segment name {}", path.display()))?;
                on_disk.push(base);
            }
        }
        on_disk.sort_unstable();
        if on_disk != self.bases {
            bail!(
                "segments on disk {on_disk:?} are not the ones synced {:?}",
                self.bases
            );
        }
        Ok(())
    }
}
