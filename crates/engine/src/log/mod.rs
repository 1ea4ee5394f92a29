//! A partition's log: segments of Kafka batches on disk, one writer, any number of readers.
//!
//! - [`PartitionLog`] is the writer. It validates each batch, stamps its base offset (the CRC
//!   does not cover it, so no re-encoding), writes it through an [`IoBackend`], indexes it, and
//!   publishes it. It rolls segments by size and age (the fsyncs of a roll are a job queued to
//!   a sealer thread, see `roll`) and deletes old ones by retention.
//! - [`LogReader`] is a cheap handle for readers on any thread. It finds segments through a
//!   table published with `crossbeam-epoch` (pin, clone one `Arc<Segment>`, unpin), so a
//!   segment that rolls or expires is never unmapped under a reader: the last `Arc` unmaps it.
//! - Opening takes the partition's checkpoint into account: after a clean close everything is
//!   trusted (indexes are still checked against the log); after a crash the segments from the
//!   recovery point on are validated batch by batch and the log is cut at the first invalid
//!   byte.
//!
//! Directory layout, as Kafka's: `<topic>-<partition>/00000000000000000000.log` with `.index`
//! and `.timeindex` beside each segment, plus a `checkpoint` file.
//!
//! [`IoBackend`]: crate::io::IoBackend

mod checkpoint;
mod config;
mod index;
mod poison;
mod producers;
mod reader;
mod recovery;
mod roll;
mod segment;
mod staged;
mod tail;
mod watermark;

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crossbeam_epoch::{self as epoch, Atomic, Owned};

pub use config::{FsyncPolicy, LogConfig};
pub use poison::Poison;
pub(crate) use poison::StorageOp;
pub(crate) use roll::Sealer;
pub use reader::{LogReader, LogSlice};
pub use watermark::Visibility;
pub(crate) use watermark::Watermarks;

pub(crate) use self::checkpoint::Checkpoint;
use self::producers::{ProducerBatch, ProducerStates, Verdict};
use self::segment::{IndexTracker, Room, Segment};
use crate::error::{Error, IoContext, Result, is_storage_full};
use crate::io::IoBackend;
use crate::lock::{DirLock, LockMode};
use crate::record::{Batch, RecordError, set_base_offset};
use crate::topic::TopicPartition;

pub(crate) use recovery::segment_paths;
pub(crate) use segment::{header_at, write_synced};

/// Where a batch handed to the log comes from, which decides how much of it is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Bytes from a caller, a file or the network: every check, the CRC included.
    Outside,
    /// Encoded in this process by [`crate::record::BatchBuilder`], which computed the CRC over
    /// exactly these bytes: framing and offsets are checked, the CRC is not recomputed (it was
    /// 12–15% of a shard's CPU).
    Builder,
}

/// Where an appended batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: i32,
    /// Whether the batch was synced to disk before `append` returned.
    pub durable: bool,
    /// The batch repeats one an idempotent producer already appended: nothing was written,
    /// and the offsets are those of the first send.
    pub duplicate: bool,
}

/// What [`PartitionLog::check_batch`] learns of a batch.
#[derive(Clone, Copy, Debug)]
struct Checked {
    records: i32,
    max_timestamp: i64,
    /// Its producer fields, if it has a producer id.
    producer: Option<ProducerBatch>,
}

/// What [`PartitionLog::enforce_retention`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// The segments readers can see, oldest first. Replaced whole on roll and retention.
#[derive(Debug)]
pub(crate) struct SegmentTable {
    segments: Vec<Arc<Segment>>,
}

impl SegmentTable {
    /// The segment holding `offset`: the last one whose base is at or below it.
    fn floor(&self, offset: i64) -> Option<&Arc<Segment>> {
        let after = self.segments.partition_point(|s| s.base_offset() <= offset);
        after.checked_sub(1).and_then(|i| self.segments.get(i))
    }

    fn after(&self, base_offset: i64) -> Option<&Arc<Segment>> {
        let after = self
            .segments
            .partition_point(|s| s.base_offset() <= base_offset);
        self.segments.get(after)
    }
}

/// State shared by the writer and every reader of a partition.
#[derive(Debug)]
pub(crate) struct Shared {
    partition: TopicPartition,
    table: Atomic<SegmentTable>,
    watermarks: Watermarks,
    tail: tail::Tail,
    limits: crate::record::Limits,
    /// Set once, by the writer, when a write or sync fails for good (fail-stop).
    poison: OnceLock<Poison>,
}

impl Shared {
    /// Runs `f` on the current segment table. The epoch pin keeps the table alive for the
    /// call; anything kept longer must be an `Arc` cloned out of it.
    fn with_table<R>(&self, f: impl FnOnce(&SegmentTable) -> R) -> Option<R> {
        let guard = epoch::pin();
        let table = self.table.load(Ordering::Acquire, &guard);
        // SAFETY: tables are only ever replaced through `publish_table`, which retires the old
        // one with `defer_destroy`; this thread is pinned, so the table loaded above cannot be
        // destroyed before `guard` drops at the end of this function, and `f` cannot keep a
        // reference to it beyond that (the borrow is bounded by the closure call).
        unsafe { table.as_ref() }.map(f)
    }

    /// Replaces the table readers see; the old one is freed once no reader is pinned on it.
    fn publish_table(&self, segments: Vec<Arc<Segment>>) {
        let guard = epoch::pin();
        let old = self.table.swap(
            Owned::new(SegmentTable { segments }),
            Ordering::AcqRel,
            &guard,
        );
        if !old.is_null() {
            // SAFETY: `old` was just unlinked by the swap, so no new reader can load it, and the
            // readers pinned before the swap are exactly what `defer_destroy` waits out.
            unsafe { guard.defer_destroy(old) };
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: `&mut self` in drop means no reader or writer holds this `Shared` any more, so
        // no pinned thread can be reading the table: it can be taken and freed right away.
        let table = unsafe { self.table.load(Ordering::Acquire, epoch::unprotected()) };
        if !table.is_null() {
            // SAFETY: as above, this is the last reference to the table.
            drop(unsafe { table.into_owned() });
        }
    }
}

/// The writer of one partition's log. Exactly one exists per partition directory while the
/// data directory is open; it is `Send`, so a shard thread can own it.
pub struct PartitionLog {
    dir: PathBuf,
    _lock: DirLock,
    config: LogConfig,
    shared: Arc<Shared>,
    segments: Vec<Arc<Segment>>,
    tracker: IndexTracker,
    io: Box<dyn IoBackend>,
    staging: staged::Staging,
    next_offset: i64,
    /// The highest offset a successful sync covered; the durable watermark is this, held
    /// below the base of the oldest segment whose roll is still pending.
    synced: i64,
    /// The base offsets of the segments whose roll (the previous segment's sealing) is still
    /// pending, oldest first.
    pending_rolls: VecDeque<i64>,
    /// The recovery point of the last checkpoint a roll wrote: every segment below is sealed.
    recovery_point: i64,
    rolls: Arc<roll::Rolls>,
    roll_runner: roll::RollRunner,
    /// Reused list of the roll outcomes applied at once.
    roll_outcomes: Vec<roll::RollOutcome>,
    /// An interval sync is queued to the sealer and not done yet.
    sync_queued: bool,
    last_sync: Instant,
    closed: bool,
    /// The idempotent producers this partition knows (see `producers`).
    producers: ProducerStates,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("partition", &self.shared.partition)
            .field("next_offset", &self.next_offset)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering it if it was not closed cleanly.
    ///
    /// The partition directory is locked while the log is open: a second writer, in this
    /// process or another, gets [`Error::PartitionBusy`].
    pub fn open(
        dir: &Path,
        partition: TopicPartition,
        config: LogConfig,
        io: Box<dyn IoBackend>,
    ) -> Result<Self> {
        config.validate()?;
        fs::create_dir_all(dir).context("create partition directory", dir)?;
        let lock = DirLock::acquire(dir, LockMode::Exclusive, |_| Error::PartitionBusy {
            partition: partition.clone(),
        })?;
        let checkpoint = Checkpoint::read(dir);
        let loaded = recovery::load(dir, &config, checkpoint)?;
        if loaded.truncated_bytes > 0 {
            log::warn!(
                "{partition}: recovery cut {} bytes of invalid data",
                loaded.truncated_bytes
            );
        }
        let mut segments: Vec<Arc<Segment>> = loaded.segments.into_iter().map(Arc::new).collect();
        match segments.pop() {
            Some(last) => segments.push(Arc::new(as_active(last, &config)?)),
            None => segments.push(Arc::new(Segment::create(
                dir,
                0,
                config.segment_bytes,
                config.index_interval_bytes,
                Room::of(config.preallocate),
            )?)),
        }
        let next_offset = segments.last().map_or(0, |s| s.next_offset());
        let segments_base = segments.last().map_or(0, |s| s.base_offset());
        let producers =
            producers::rebuild(dir, &segments, next_offset, config.producer_id_expiration)?;
        let shared = Arc::new(Shared {
            partition,
            table: Atomic::null(),
            watermarks: Watermarks::new(next_offset, config.visibility),
            tail: tail::Tail::new(config.tail_bytes),
            limits: config.limits,
            poison: OnceLock::new(),
        });
        shared.publish_table(segments.clone());
        let log = Self {
            dir: dir.to_owned(),
            _lock: lock,
            config,
            shared,
            segments,
            tracker: loaded.tracker,
            io,
            staging: staged::Staging::default(),
            next_offset,
            synced: next_offset,
            pending_rolls: VecDeque::new(),
            recovery_point: segments_base,
            rolls: Arc::default(),
            roll_runner: roll::RollRunner::Inline,
            roll_outcomes: Vec::new(),
            sync_queued: false,
            last_sync: Instant::now(),
            closed: false,
            producers,
        };
        // From here until a clean close, a crash must be treated as unclean.
        log.write_checkpoint(false)?;
        Ok(log)
    }

    pub fn partition(&self) -> &TopicPartition {
        &self.shared.partition
    }

    /// A handle for reading this log from any thread.
    pub fn reader(&self) -> LogReader {
        LogReader::new(self.shared.clone())
    }

    /// The offset the next appended record gets.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn start_offset(&self) -> i64 {
        self.segments.first().map_or(0, |s| s.base_offset())
    }

    pub fn durable_offset(&self) -> i64 {
        self.shared.watermarks.durable()
    }

    /// Total bytes of the log's segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn backend_name(&self) -> &'static str {
        self.io.name()
    }

    /// Appends one encoded batch, assigning its offsets, and syncs if the fsync policy says so.
    ///
    /// The batch is validated (framing, magic, CRC, size limit, dense offset deltas) and its
    /// first eight bytes are overwritten with the assigned base offset, in place.
    pub fn append(&mut self, batch: &mut [u8]) -> Result<AppendInfo> {
        let mut info = self.append_deferred(batch)?;
        info.durable = self.sync_if_due()?;
        Ok(info)
    }

    /// Appends without syncing, whatever the policy: a writer that appends several batches in
    /// a row calls [`PartitionLog::sync_if_due`] once after them, so one fsync covers them all
    /// (group commit).
    pub fn append_deferred(&mut self, batch: &mut [u8]) -> Result<AppendInfo> {
        self.append_checked(batch, Origin::Outside)
    }

    /// [`PartitionLog::append_deferred`], checking the batch as its origin calls for.
    pub(crate) fn append_checked(
        &mut self,
        batch: &mut [u8],
        origin: Origin,
    ) -> Result<AppendInfo> {
        self.check_writable()?;
        let checked = self.check_batch(batch, origin)?;
        if let Some(original) = self.screen(&checked)? {
            return Ok(original);
        }
        let Checked {
            records: record_count,
            max_timestamp,
            ..
        } = checked;
        let len = batch.len() as u64;
        self.roll_if_needed(len)?;
        let base_offset = self.next_offset;
        set_base_offset(batch, base_offset).map_err(|source| self.invalid(source))?;

        let active = self.active().clone();
        let position = active.size();
        if let Err(source) = self.io.write_all_at(active.file(), position, batch) {
            // A full disk wrote nothing the log will ever publish: the next append writes at
            // the same position once space is freed. Anything else leaves the file unknown.
            return Err(if is_storage_full(&source) {
                Error::io("write segment", active.path(), source)
            } else {
                self.poison_with(StorageOp::Write, active.path().to_owned(), &source)
            });
        }
        active.index_batch(&mut self.tracker, base_offset, position, max_timestamp, len);
        let next_offset = base_offset + i64::from(record_count);
        active.publish(position + len, next_offset, max_timestamp);
        self.next_offset = next_offset;
        self.shared.watermarks.publish_written(next_offset);
        self.remember(&checked, base_offset);
        Ok(AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            record_count,
            durable: false,
            duplicate: false,
        })
    }

    /// Applies the idempotent producer rules to a checked batch: `Some` with the first send's
    /// offsets for a retry of a batch already written, `None` to append it. A retry of a batch
    /// not yet written is refused ([`Error::DuplicateInFlight`]): its write may still fail and
    /// give its offsets to another batch.
    fn screen(&self, checked: &Checked) -> Result<Option<AppendInfo>> {
        let Some(batch) = &checked.producer else {
            return Ok(None);
        };
        let original = match self.producers.check(&self.shared.partition, batch)? {
            Verdict::Append => return Ok(None),
            Verdict::Duplicate(original) => original,
        };
        if original.last_offset >= self.shared.watermarks.written() {
            return Err(Error::DuplicateInFlight {
                partition: self.shared.partition.clone(),
                producer_id: batch.id,
                epoch: batch.epoch,
                sequence: batch.first_seq,
                offset: original.base_offset,
            });
        }
        Ok(Some(AppendInfo {
            base_offset: original.base_offset,
            last_offset: original.last_offset,
            record_count: i32::try_from(
                (original.last_offset - original.base_offset).saturating_add(1),
            )
            .unwrap_or(i32::MAX),
            durable: self.durable_offset() > original.last_offset,
            duplicate: true,
        }))
    }

    /// Records an appended batch of an idempotent producer.
    fn remember(&mut self, checked: &Checked, base_offset: i64) {
        if let Some(batch) = &checked.producer {
            let last_offset = base_offset + i64::from(checked.records) - 1;
            let now = crate::time::unix_millis();
            self.producers.record(batch, base_offset, last_offset, now);
        }
    }

    /// Syncs everything written so far. Staged batches whose write has not completed are not
    /// covered: durability is published only up to what was written before the sync began.
    ///
    /// A failed sync poisons the partition, out of space included: the kernel may have
    /// dropped the pages it covered, so no later sync may vouch for them.
    pub fn flush(&mut self) -> Result<()> {
        self.check_writable()?;
        self.sync_active()
    }

    /// The sync of [`PartitionLog::flush`], without the check that the log is open.
    fn sync_active(&mut self) -> Result<()> {
        let written = self.shared.watermarks.written();
        let active = self.active().clone();
        if let Err(source) = self.io.sync_data(active.file()) {
            return Err(self.poison_with(StorageOp::Sync, active.path().to_owned(), &source));
        }
        self.publish_durable(written);
        Ok(())
    }

    /// Publishes that a sync covered everything below `synced`. The durable watermark stays
    /// below the base of the oldest segment whose roll is pending: until that roll's job has
    /// synced the segment before it and the directory that names it, a successful sync of
    /// the new segment does not make its records durable.
    fn publish_durable(&mut self, synced: i64) {
        self.synced = self.synced.max(synced);
        self.last_sync = Instant::now();
        let held_at = self.pending_rolls.front().copied().unwrap_or(i64::MAX);
        self.shared
            .watermarks
            .publish_durable(self.synced.min(held_at));
    }

    /// Deletes the oldest segments (never the active one) while the log is over its size
    /// retention or their newest record is older than the age retention.
    pub fn enforce_retention(&mut self) -> Result<RetentionOutcome> {
        let now_ms = crate::time::unix_millis();
        self.producers
            .expire(now_ms, self.config.producer_id_expiration);
        let mut total: u64 = self.size_bytes();
        let mut doomed = 0;
        // Never the active segment, nor one whose roll is pending: its sealer may still be
        // writing its index files.
        let sealed = self
            .segments
            .partition_point(|s| s.base_offset() < self.recovery_point)
            .min(self.segments.len().saturating_sub(1));
        for segment in &self.segments[..sealed] {
            let over_size = self.config.retention_bytes.is_some_and(|max| total > max);
            let expired = self.config.retention_age.is_some_and(|age| {
                let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                segment.max_timestamp() < now_ms.saturating_sub(age_ms)
            });
            if !over_size && !expired {
                break;
            }
            total -= segment.size();
            doomed += 1;
        }
        if doomed == 0 {
            return Ok(RetentionOutcome::default());
        }
        let removed: Vec<Arc<Segment>> = self.segments.drain(..doomed).collect();
        self.shared.publish_table(self.segments.clone());
        let mut outcome = RetentionOutcome::default();
        for segment in removed {
            segment.delete_files()?;
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += segment.size();
        }
        Ok(outcome)
    }

    /// Syncs, seals the active segment's length, writes its indexes and marks the partition
    /// clean, so the next open trusts it without a scan.
    pub fn close(mut self) -> Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        // Pending rolls first: their checkpoints must not land after the clean one.
        self.finish_rolls();
        // A poisoned log stays marked unclean, so the next open recovers it.
        self.check_writable()?;
        self.closed = true;
        self.sync_active()?;
        self.active().seal()?;
        self.producers.write_snapshot(&self.dir, self.next_offset)?;
        self.write_checkpoint(true)
    }

    fn active(&self) -> &Arc<Segment> {
        // `open` always leaves one segment and nothing removes the last one.
        &self.segments[self.segments.len() - 1]
    }

    fn invalid(&self, source: RecordError) -> Error {
        Error::InvalidBatch {
            partition: self.shared.partition.clone(),
            source,
        }
    }

    /// Validates a batch for appending; returns its record count and max timestamp.
    ///
    /// Everything the log relies on to lay batches end to end is checked whatever the origin
    /// (length, size limit, magic, no trailing bytes, dense offsets); only the CRC of a batch
    /// built in this process is not computed a second time.
    fn check_batch(&self, batch: &[u8], origin: Origin) -> Result<Checked> {
        let parsed = match origin {
            Origin::Outside => Batch::parse(batch, &self.config.limits),
            Origin::Builder => Batch::parse_framing(batch, &self.config.limits),
        }
        .map_err(|e| self.invalid(e))?;
        if parsed.size_bytes() != batch.len() {
            return Err(self.invalid(RecordError::TrailingBytes {
                trailing: batch.len() - parsed.size_bytes(),
            }));
        }
        let header = parsed.header();
        let records = header.record_count.get();
        let last_delta = header.last_offset_delta.get();
        if records <= 0 || last_delta != records - 1 {
            return Err(Error::SparseBatch {
                partition: self.shared.partition.clone(),
                records,
                last_offset_delta: last_delta,
            });
        }
        Ok(Checked {
            records,
            max_timestamp: parsed.max_timestamp(),
            producer: ProducerBatch::of(header),
        })
    }

    fn roll_if_needed(&mut self, incoming: u64) -> Result<()> {
        let active = self.active();
        if active.size() == 0 {
            return Ok(());
        }
        let full = active.size() + incoming > self.config.segment_bytes;
        let old = self
            .config
            .segment_age
            .is_some_and(|age| active.age() >= age);
        if full || old { self.roll() } else { Ok(()) }
    }

    /// Starts a new segment at the next offset and queues the sealing of the old one (see
    /// [`roll`]): appends go on into the new segment while the old one is synced and sealed.
    ///
    /// A roll that cannot begin for lack of space is undone and fails with
    /// [`Error::StorageFull`] (see [`PartitionLog::roll_not_begun`]); any other failure
    /// poisons the partition: a half-done roll leaves a segment that only recovery sorts out.
    /// Without a sealer the job runs here, and its failure is this call's error.
    fn roll(&mut self) -> Result<()> {
        let old = self.active().clone();
        let new_base = self.next_offset;
        let job = match self.begin_roll(&old, new_base) {
            Ok(job) => job,
            Err(error) => return Err(self.roll_not_begun(&old, error)),
        };
        self.tracker = IndexTracker::new(self.config.index_interval_bytes);
        self.shared.publish_table(self.segments.clone());
        self.pending_rolls.push_back(new_base);
        self.roll_runner
            .run(roll::Job::Roll(Box::new(job)), self.io.as_mut());
        self.apply_rolls();
        self.check_writable()
    }

    /// The quick part of a roll, on the writer's thread: no sync, but every file-system call
    /// that needs space (the old segment shrinks first), so a full disk stops the roll here.
    /// Creates and adds the new segment; returns the job that seals the old one.
    fn begin_roll(&mut self, old: &Arc<Segment>, new_base: i64) -> Result<roll::RollJob> {
        let indexes = old.begin_seal(new_base)?;
        let checkpoint = Checkpoint {
            recovery_point: new_base,
            clean: false,
            untrusted_from: None,
        }
        .reserve(&self.dir, new_base)?;
        // Everything below the new base is written and none of it is undone later (a roll
        // waits for every write of the old segment), so this is the state there.
        let (path, bytes) = self.producers.snapshot(&self.dir, new_base);
        // Whatever stops the snapshot's reservation is no reason to stop the roll: the
        // snapshot is only a shortcut for the next open, which scans more without it.
        let snapshot = match segment::Reserved::new(&path, new_base, bytes.len()) {
            Ok(file) => Some((file, bytes)),
            Err(error) => {
                log::warn!(
                    "{}: producer snapshot not written ({error}); the next open scans more",
                    self.shared.partition
                );
                None
            }
        };
        let segment = Segment::create(
            &self.dir,
            new_base,
            self.config.segment_bytes,
            self.config.index_interval_bytes,
            Room::of(self.config.preallocate),
        )?;
        self.segments.push(Arc::new(segment));
        Ok(roll::RollJob {
            dir: self.dir.clone(),
            old: old.clone(),
            indexes,
            checkpoint,
            snapshot,
            rolls: self.rolls.clone(),
        })
    }

    /// What a roll whose quick part failed leaves: the error for the append that asked for it.
    ///
    /// Out of space is the one failure undone. The quick part wrote nothing: the old segment
    /// was only shrunk to the bytes it holds, the files reserved so far were removed when
    /// they were dropped, and a new segment file that could not be set up was removed. So the
    /// old segment gets its room back and stays active, nothing is poisoned, and the append
    /// fails with `StorageFull`, to be retried once space is freed, as a write that found the
    /// disk full is. Anything else, or an undo that fails, cannot be shown harmless: the
    /// partition stops, naming the file that failed.
    fn roll_not_begun(&mut self, old: &Arc<Segment>, error: Error) -> Error {
        if let Error::StorageFull { path } = &error {
            log::warn!(
                "{}: no room to roll ({}); the segment stays active until space is freed",
                self.shared.partition,
                path.display()
            );
            return match old.resume(Room::of(self.config.preallocate)) {
                Ok(()) => error,
                Err(undo) => self.poison_error(StorageOp::Roll, old.path().to_owned(), undo),
            };
        }
        let path = match &error {
            Error::Io { path, .. } => path.clone(),
            _ => old.path().to_owned(),
        };
        self.poison_error(StorageOp::Roll, path, error)
    }

    /// Hands this log's roll jobs to a sealer thread from now on.
    pub(crate) fn set_sealer(&mut self, sealer: Sealer) {
        self.roll_runner = roll::RollRunner::Sealer(sealer);
    }

    /// Whether finished roll jobs wait for [`PartitionLog::apply_rolls`].
    pub(crate) fn rolls_ready(&self) -> bool {
        self.rolls.ready()
    }

    /// Applies the sealer's jobs that finished, in order: a sealed segment moves the recovery
    /// point and releases the durable watermark, a sync moves it; a failed job stops the
    /// partition. Returns whether anything changed.
    pub(crate) fn apply_rolls(&mut self) -> bool {
        let mut outcomes = std::mem::take(&mut self.roll_outcomes);
        self.rolls.take(&mut outcomes);
        let changed = !outcomes.is_empty();
        for outcome in outcomes.drain(..) {
            match outcome.kind {
                roll::JobKind::Sync => self.sync_queued = false,
                // Rolls finish in the order they were queued.
                roll::JobKind::Roll => {
                    self.pending_rolls.pop_front();
                    if outcome.failure.is_none() {
                        self.recovery_point = outcome.new_base;
                    }
                }
            }
            match outcome.failure {
                // A sync covered its offset; a roll, everything below the new segment.
                None if self.poison().is_none() => self.publish_durable(outcome.new_base),
                Some(failure) if self.poison().is_none() => {
                    self.poison_with(failure.op, failure.path, &failure.source);
                }
                None | Some(_) => {}
            }
        }
        self.roll_outcomes = outcomes;
        changed
    }

    /// Waits (bounded) for every roll job sent and applies their outcomes.
    fn finish_rolls(&mut self) {
        if !self.rolls.wait_idle() {
            log::error!(
                "{}: a segment roll did not finish in time; the next open recovers",
                self.shared.partition
            );
        }
        self.apply_rolls();
    }

    /// Refuses writes to a closed or poisoned log.
    fn check_writable(&self) -> Result<()> {
        if let Some(poison) = self.shared.poison.get() {
            return Err(poison.error(&self.shared.partition));
        }
        if self.closed {
            return Err(Error::Closed {
                partition: self.shared.partition.clone(),
            });
        }
        Ok(())
    }

    /// Stops the partition after `op` on `path` failed: from now on it refuses writes and
    /// publishes nothing, and the durable watermark stays where the last good sync left it.
    /// The first failure is kept; the returned error repeats it.
    pub(crate) fn poison_with(
        &mut self,
        op: StorageOp,
        path: PathBuf,
        source: &std::io::Error,
    ) -> Error {
        let poison = Poison::new(
            op,
            path,
            self.shared.watermarks.durable(),
            self.next_offset,
            source,
        );
        log::error!(
            "{}: {} failed, partition stopped: {source}",
            self.shared.partition,
            op.name()
        );
        if self.shared.poison.get().is_none() {
            // Roll jobs not started yet are abandoned: their checkpoints would move the
            // recovery point past what failed.
            self.rolls.abandon();
            if op.covers_a_sync() {
                self.distrust_unsynced();
            }
        }
        let kept = self.shared.poison.get_or_init(|| poison);
        kept.error(&self.shared.partition)
    }

    /// [`PartitionLog::poison_with`] for an engine error (its I/O source, or its message).
    fn poison_error(&mut self, op: StorageOp, path: PathBuf, error: Error) -> Error {
        if let Error::PartitionFailed(_) = error {
            return error;
        }
        let source = match error {
            Error::Io { source, .. } => source,
            Error::StorageFull { .. } => std::io::Error::from_raw_os_error(libc::ENOSPC),
            other => std::io::Error::other(other.to_string()),
        };
        self.poison_with(op, path, &source)
    }

    /// Why the partition stopped taking writes, if it did.
    pub fn poison(&self) -> Option<&Poison> {
        self.shared.poison.get()
    }

    /// Syncs if the fsync policy asks for it now and something is unsynced; returns whether
    /// everything appended is now durable.
    pub fn sync_if_due(&mut self) -> Result<bool> {
        let unsynced = self.durable_offset() < self.shared.watermarks.written();
        let due = unsynced
            && match self.config.fsync {
                FsyncPolicy::Never => false,
                FsyncPolicy::EveryAppend => true,
                FsyncPolicy::Interval(interval) => self.last_sync.elapsed() >= interval,
            };
        if due {
            self.flush()?;
        }
        // Not `due` alone: a pending roll holds the durable watermark below what the sync did.
        Ok(self.durable_offset() >= self.shared.watermarks.written())
    }

    /// [`PartitionLog::sync_if_due`] for an interval policy, without waiting for the disk: the
    /// sync is a job of the sealer thread (when the log has one), and the durable watermark
    /// moves when the shard applies its outcome. Any other policy syncs here, as before.
    pub(crate) fn queue_sync_if_due(&mut self) -> Result<()> {
        let interval = matches!(self.config.fsync, FsyncPolicy::Interval(_));
        if !interval || !self.roll_runner.is_queued() {
            return self.sync_if_due().map(|_| ());
        }
        self.check_writable()?;
        let covers = self.shared.watermarks.written();
        let due = !self.sync_queued
            && self.synced < covers
            && self.next_sync_due().is_some_and(|due| due <= Instant::now());
        if due {
            self.sync_queued = true;
            let job = roll::SyncJob {
                segment: self.active().clone(),
                covers,
                rolls: self.rolls.clone(),
            };
            self.roll_runner
                .run(roll::Job::Sync(job), self.io.as_mut());
        }
        Ok(())
    }

    /// When an interval policy next wants a sync, if anything is unsynced.
    pub fn next_sync_due(&self) -> Option<Instant> {
        if self.poison().is_some() || self.sync_queued {
            return None;
        }
        match self.config.fsync {
            FsyncPolicy::Interval(interval)
                if self.durable_offset() < self.shared.watermarks.written() =>
            {
                Some(self.last_sync + interval)
            }
            _ => None,
        }
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    fn write_checkpoint(&self, clean: bool) -> Result<()> {
        Checkpoint {
            recovery_point: self.active().base_offset(),
            clean,
            untrusted_from: None,
        }
        .write(&self.dir)
    }

    /// After a failed sync: tells the next open to drop everything from the durable watermark
    /// on (see [`checkpoint`]). The disk is failing, so this write may fail too; then only the
    /// in-memory poison stands, and the log line says so.
    ///
    /// A roll job still running may write a checkpoint too: this one waits for it, so that it
    /// lands last, and keeps the recovery point the last finished roll reached.
    fn distrust_unsynced(&self) {
        if !self.rolls.wait_idle() {
            log::error!(
                "{}: a segment roll did not finish in time",
                self.shared.partition
            );
        }
        let checkpoint = Checkpoint {
            recovery_point: self.recovery_point.max(self.rolls.checkpointed()),
            clean: false,
            untrusted_from: Some(self.shared.watermarks.durable()),
        };
        if let Err(error) = checkpoint.write(&self.dir) {
            log::error!(
                "{}: cannot record where the failed sync left the log ({error}); a reopen in \
                 this boot may keep records after offset {}",
                self.shared.partition,
                self.shared.watermarks.durable()
            );
        }
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        if let Err(e) = self.close_inner() {
            log::error!(
                "{}: close on drop failed, the next open will recover: {e}",
                self.shared.partition
            );
        }
    }
}

/// Makes the newest loaded segment the active one: mapped at full capacity for appends.
fn as_active(last: Arc<Segment>, config: &LogConfig) -> Result<Segment> {
    let last = Arc::try_unwrap(last).map_err(|_| Error::Invariant {
        what: "segment shared during open".into(),
    })?;
    if last.capacity() >= config.segment_bytes {
        return Ok(last);
    }
    let (size, next_offset, max_timestamp) =
        (last.size(), last.next_offset(), last.max_timestamp());
    let (path, base_offset) = (last.path().to_owned(), last.base_offset());
    let mut active = Segment::open(
        path,
        base_offset,
        config.segment_bytes,
        config.index_interval_bytes,
        Room::of(config.preallocate),
    )?;
    active.offsets = last.offsets;
    active.times = last.times;
    active.publish(size, next_offset, max_timestamp);
    Ok(active)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::io::PortableIo;
    use crate::record::{BatchBuilder, Compression, MAGIC_V2};
    use crate::topic::TopicName;

    fn open(dir: &Path) -> PartitionLog {
        let tp = TopicPartition::new(TopicName::new("t").unwrap(), 0);
        PartitionLog::open(dir, tp, LogConfig::default(), Box::new(PortableIo)).unwrap()
    }

    fn batch() -> Vec<u8> {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(1, None, Some(b"v"), &[]).unwrap();
        builder.append(2, None, Some(b"w"), &[]).unwrap();
        builder.build().unwrap()
    }

    /// Staged batches are never forgotten while something else may still write them: undoing
    /// staging is allowed only for exactly the batches whose writes failed; anything else
    /// stops the partition, and no offset is handed out twice.
    #[test]
    fn staged_offsets_are_never_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        assert_eq!(
            log.stage(&mut batch(), Origin::Builder)
                .unwrap()
                .base_offset,
            0
        );
        assert_eq!(
            log.stage(&mut batch(), Origin::Builder)
                .unwrap()
                .base_offset,
            2
        );
        // One write failed for lack of space, but two batches are staged: the other may be in
        // flight, so its offsets must not be reused.
        let refused = log.discard_failed_writes(1);
        assert!(
            matches!(refused, Err(Error::PartitionFailed(_))),
            "{refused:?}"
        );
        assert_eq!(log.next_offset(), 4, "no offset taken back");
        assert!(log.stage(&mut batch(), Origin::Builder).is_err());
        assert_eq!(log.complete_through(u64::MAX, true, &mut Vec::new()), 0);
        assert_eq!(log.durable_offset(), 0, "nothing published after the stop");

        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        log.stage(&mut batch(), Origin::Builder).unwrap();
        log.discard_failed_writes(1).unwrap();
        assert_eq!(
            log.stage(&mut batch(), Origin::Builder)
                .unwrap()
                .base_offset,
            0
        );
    }

    fn idempotent_batch(sequence: i32) -> Vec<u8> {
        let mut builder = BatchBuilder::new(Compression::None).producer(9, 0, sequence);
        builder.append(1, None, Some(b"v"), &[]).unwrap();
        builder.build().unwrap()
    }

    /// A retry of a batch still being written is refused (its write may fail and hand its
    /// offsets to another batch); once written it gets the first offsets; a write undone for
    /// lack of space takes the batch out of the producer state, so its retry is appended anew.
    #[test]
    fn retries_wait_for_the_first_write_and_undone_writes_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let first = log.stage(&mut idempotent_batch(0), Origin::Builder).unwrap();
        assert!(!first.duplicate);
        let early = log.stage(&mut idempotent_batch(0), Origin::Builder);
        assert!(
            matches!(early, Err(Error::DuplicateInFlight { offset: 0, .. })),
            "{early:?}"
        );
        let end = first.position + first.len;
        assert_eq!(log.complete_through(end, false, &mut Vec::new()), 1);
        let retry = log.stage(&mut idempotent_batch(0), Origin::Builder).unwrap();
        assert!(retry.duplicate && retry.base_offset == 0);
        assert_eq!(log.next_offset(), 1);

        log.stage(&mut idempotent_batch(1), Origin::Builder).unwrap();
        log.discard_failed_writes(1).unwrap();
        let again = log.stage(&mut idempotent_batch(1), Origin::Builder).unwrap();
        assert!(!again.duplicate);
        assert_eq!(again.base_offset, 1);
    }

    /// Outside bytes get the CRC check; the builder's own bytes get every other check.
    #[test]
    fn only_the_crc_depends_on_where_a_batch_comes_from() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let mut bad_crc = batch();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        let refused = log.append_checked(&mut bad_crc.clone(), Origin::Outside);
        assert!(matches!(
            refused,
            Err(Error::InvalidBatch {
                source: RecordError::CrcMismatch { .. },
                ..
            })
        ));

        let mut bad_magic = batch();
        bad_magic[16] = (MAGIC_V2 + 1) as u8;
        let mut trailing = batch();
        trailing.push(0);
        let mut short = batch();
        short.truncate(short.len() - 1);
        for mut bytes in [bad_magic, trailing, short] {
            assert!(log.append_checked(&mut bytes, Origin::Builder).is_err());
            assert!(log.stage(&mut bytes, Origin::Builder).is_err());
        }
        assert_eq!(log.next_offset(), 0, "nothing refused took an offset");

        let info = log.append_checked(&mut batch(), Origin::Builder).unwrap();
        assert_eq!((info.base_offset, info.record_count), (0, 2));
    }

    /// Allocations that fail (injected with the hook of `io::fallocate`, Linux only).
    #[cfg(target_os = "linux")]
    mod allocation {
        use std::fs::File;
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::AtomicBool;

        use super::*;

        /// How every test of a failed allocation opens its log: a roll at every append after the
        /// first (each rolled segment has one index entry, so every reservation has bytes), on a
        /// backend whose writes find the disk full while `full` is set.
        fn open_rolling(dir: &Path, preallocate: bool, full: &Arc<AtomicBool>) -> PartitionLog {
            let tp = TopicPartition::new(TopicName::new("t").unwrap(), 0);
            let config = LogConfig {
                segment_age: Some(std::time::Duration::ZERO),
                preallocate,
                ..LogConfig::default()
            };
            PartitionLog::open(dir, tp, config, Box::new(FullDisk(full.clone()))).unwrap()
        }

        #[derive(Debug)]
        struct FullDisk(Arc<AtomicBool>);

        impl IoBackend for FullDisk {
            fn write_all_at(&mut self, file: &File, at: u64, bytes: &[u8]) -> std::io::Result<()> {
                if self.0.load(Ordering::Relaxed) {
                    return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
                }
                PortableIo.write_all_at(file, at, bytes)
            }

            fn sync_data(&mut self, file: &File) -> std::io::Result<()> {
                PortableIo.sync_data(file)
            }

            fn name(&self) -> &'static str {
                "full-disk"
            }
        }

        /// A path fragment only files of `dir` have: the hook's rules stay with their test.
        fn in_dir(dir: &Path, name: &str) -> String {
            format!("{}/{name}", dir.file_name().unwrap().to_string_lossy())
        }

        /// The base offsets of every batch the log holds, read back through a reader.
        fn stored(log: &PartitionLog) -> Vec<i64> {
            let reader = log.reader();
            let mut offsets = Vec::new();
            let mut next = reader.start_offset();
            while next < reader.end_offset() {
                let slice = reader.read(next, 1 << 20).unwrap();
                for item in slice.batches() {
                    offsets.push(item.unwrap().1.base_offset());
                }
                next = slice.next_offset();
            }
            offsets
        }

        fn temporaries(dir: &Path) -> Vec<std::path::PathBuf> {
            fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "tmp"))
                .collect()
        }

        /// A roll whose reservations find no room fails the append that asked for it with
        /// `StorageFull` naming the file: nothing is appended, no reserved file is left, the old
        /// segment stays active with every record readable, and the partition is not stopped: the
        /// next append rolls and lands, and a reopen finds everything. Out of room over the quota
        /// is the same, and so is a roll asked for on the io_uring path (`roll_now`).
        #[test]
        fn a_reservation_without_room_fails_the_roll_and_nothing_else() {
            let dir = tempfile::tempdir().unwrap();
            let full = Arc::new(AtomicBool::new(false));
            let mut log = open_rolling(dir.path(), false, &full);
            log.append(&mut batch()).unwrap();
            // The time index is reserved after the offset index: the first must be undone too.
            let timeindex = in_dir(dir.path(), "00000000000000000000.timeindex");
            crate::io::fail_hook::fail(&timeindex, libc::ENOSPC, 1);
            let refused = log.append(&mut batch());
            assert_eq!(crate::io::fail_hook::pending(), 0);
            match &refused {
                Err(Error::StorageFull { path }) => {
                    assert!(path.ends_with("00000000000000000000.timeindex.2.tmp"), "{path:?}");
                }
                other => panic!("expected StorageFull naming the reservation, got {other:?}"),
            }
            assert!(log.poison().is_none(), "a full disk does not stop the partition");
            assert_eq!(log.next_offset(), 2, "nothing appended");
            assert_eq!(log.segment_count(), 1, "the old segment stays active");
            assert_eq!(temporaries(dir.path()), Vec::<std::path::PathBuf>::new());
            assert_eq!(stored(&log), [0]);

            let checkpoint = in_dir(dir.path(), "checkpoint");
            crate::io::fail_hook::fail(&checkpoint, libc::EDQUOT, 1);
            let refused = log.roll_now();
            assert!(matches!(refused, Err(Error::StorageFull { .. })), "{refused:?}");
            assert!(log.poison().is_none());
            assert_eq!(temporaries(dir.path()), Vec::<std::path::PathBuf>::new());

            let info = log.append(&mut batch()).unwrap();
            assert_eq!(info.base_offset, 2, "space back: the roll and the append go on");
            assert_eq!(log.segment_count(), 2);
            assert_eq!(stored(&log), [0, 2]);
            log.close().unwrap();
            let log = open_rolling(dir.path(), false, &full);
            assert_eq!(stored(&log), [0, 2], "nothing lost on reopen");
            crate::io::fail_hook::clear();
        }

        /// Any other failure of a reservation cannot be shown harmless: the partition stops, and
        /// its error names the file whose reservation failed.
        #[test]
        fn a_reservation_that_fails_otherwise_stops_the_partition() {
            let dir = tempfile::tempdir().unwrap();
            let full = Arc::new(AtomicBool::new(false));
            let mut log = open_rolling(dir.path(), false, &full);
            log.append(&mut batch()).unwrap();
            let index = in_dir(dir.path(), "00000000000000000000.index");
            crate::io::fail_hook::fail(&index, libc::EIO, 1);
            let refused = log.append(&mut batch()).unwrap_err();
            assert!(matches!(refused, Error::PartitionFailed(_)), "{refused:?}");
            assert!(
                refused.to_string().contains("00000000000000000000.index.2.tmp"),
                "{refused}"
            );
            assert!(log.poison().is_some());
            assert!(log.append(&mut batch()).is_err(), "no writes after the stop");
            crate::io::fail_hook::clear();
        }

        /// A file system that cannot preallocate gets no reservations, and the roll goes on: the
        /// files are written when the roll job runs. A snapshot that cannot be reserved, for
        /// whatever reason, is left out (the next open scans more), and the roll goes on too.
        #[test]
        fn a_roll_goes_on_where_reservations_are_unsupported() {
            let dir = tempfile::tempdir().unwrap();
            let full = Arc::new(AtomicBool::new(false));
            let mut log = open_rolling(dir.path(), false, &full);
            log.append(&mut batch()).unwrap();
            let base = in_dir(dir.path(), "00000000000000000000.");
            crate::io::fail_hook::fail(&base, libc::EOPNOTSUPP, 2);
            crate::io::fail_hook::fail(&in_dir(dir.path(), "checkpoint"), libc::EOPNOTSUPP, 1);
            let snapshot = in_dir(dir.path(), "00000000000000000002.snapshot");
            crate::io::fail_hook::fail(&snapshot, libc::EIO, 1);
            let info = log.append(&mut batch()).unwrap();
            assert_eq!(crate::io::fail_hook::pending(), 0, "every reservation was tried");
            assert_eq!(info.base_offset, 2);
            assert!(log.poison().is_none());
            assert_eq!(log.segment_count(), 2);
            let index = fs::read(dir.path().join("00000000000000000000.index")).unwrap();
            assert_eq!(index.len(), index::OffsetIndex::ENTRY_BYTES, "the index was written");
            assert_eq!(Checkpoint::read(dir.path()).recovery_point, 2);
            assert!(!dir.path().join("00000000000000000002.snapshot").exists());
            assert_eq!(temporaries(dir.path()), Vec::<std::path::PathBuf>::new());
            assert_eq!(stored(&log), [0, 2]);
            crate::io::fail_hook::clear();
        }

        /// A segment the file system cannot preallocate (or has no room to) is sparse, and takes
        /// appends; a write that then finds the disk full fails with `StorageFull`, appends
        /// nothing and stops nothing, and the next one lands once space is back.
        #[test]
        fn a_segment_without_preallocation_is_sparse_and_its_full_disk_is_retryable() {
            for errno in [libc::EOPNOTSUPP, libc::ENOSPC] {
                let dir = tempfile::tempdir().unwrap();
                let full = Arc::new(AtomicBool::new(false));
                let first = in_dir(dir.path(), "00000000000000000000.log");
                crate::io::fail_hook::fail(&first, errno, 1);
                let mut log = open_rolling(dir.path(), true, &full);
                assert_eq!(crate::io::fail_hook::pending(), 0, "errno {errno}");
                let blocks = fs::metadata(dir.path().join("00000000000000000000.log"))
                    .unwrap()
                    .blocks();
                assert_eq!(blocks, 0, "errno {errno}: nothing preallocated, nor tried again");
                log.append(&mut batch()).unwrap();
                full.store(true, Ordering::Relaxed);
                // The roll finds room (reservations are real); the write does not.
                let refused = log.append(&mut batch());
                match &refused {
                    Err(Error::StorageFull { path }) => {
                        assert!(path.ends_with("00000000000000000002.log"), "{path:?}");
                    }
                    other => panic!("errno {errno}: expected StorageFull, got {other:?}"),
                }
                assert!(log.poison().is_none());
                full.store(false, Ordering::Relaxed);
                assert_eq!(log.append(&mut batch()).unwrap().base_offset, 2);
                assert_eq!(stored(&log), [0, 2]);
            }
            crate::io::fail_hook::clear();
        }

    }
}
