//! One segment: a `.log` file of batches starting at a base offset, its memory map, and its
//! sparse indexes.
//!
//! The active segment's file is extended to its full capacity when it is created and mapped
//! once at that length; the writer then fills it with positional writes and publishes how many
//! bytes are complete. Readers view the map only below that published size, so they never see
//! a partly written batch, and the map never has to be replaced while readers hold it. Sealing
//! truncates the file to its real length. The room past the written bytes reads as zeros: a
//! sparse hole, or, when the log preallocates ([`Room`]), blocks allocated with `fallocate`
//! a window ahead of the published end ([`ALLOCATE_AHEAD`]), so appends land in allocated
//! blocks while a segment holds at most that much disk it has not written.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use memmap2::{Mmap, MmapOptions};

use super::index::{IndexEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::error::{Error, IoContext, Result};
use crate::io::Refusal;
use crate::record::{BatchHeader, Batches, InvalidBatch, Limits, RecordError};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// The file name of a segment: its base offset in 20 digits, as Kafka names them.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// Parses `00000000000000001234.log` into 1234.
pub(super) fn parse_log_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    path: PathBuf,
    file: File,
    map: Option<Mmap>,
    /// Bytes of complete, valid batches: the limit of what readers may view.
    size: AtomicU64,
    /// Offset after the last complete batch.
    next_offset: AtomicI64,
    max_timestamp: AtomicI64,
    pub(crate) offsets: OffsetIndex,
    pub(crate) times: TimeIndex,
    /// Index entries this segment has room for: its capacity over the index interval.
    index_capacity: usize,
    /// Set when a lookup found an index entry that does not match the log (warned once).
    index_mismatch_seen: AtomicBool,
    /// Blocks below this are allocated ([`Room::Preallocated`]); at the capacity (sealed
    /// segments, sparse ones, or once `fallocate` failed) nothing more is allocated. Written
    /// only by the writer.
    allocated: AtomicU64,
    created: Instant,
}

/// How far past the published end a preallocating segment keeps blocks allocated. Writes in
/// flight run at most a few staging buffers (of the largest batch) past the published end.
pub(crate) const ALLOCATE_AHEAD: u64 = 32 * 1024 * 1024;
/// The window is topped up when less than this is left, so one `fallocate` covers many
/// appends.
const ALLOCATE_WHEN_LEFT: u64 = ALLOCATE_AHEAD / 2;

/// How an active segment's file gets room for its capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Room {
    /// A sparse file: blocks are allocated as writes reach them.
    Sparse,
    /// Blocks allocated ahead of the writes (`fallocate`), [`ALLOCATE_AHEAD`] at a time;
    /// sparse where the file system cannot (no `fallocate`, or no room left).
    Preallocated,
}

impl Room {
    pub fn of(preallocate: bool) -> Self {
        if preallocate {
            Room::Preallocated
        } else {
            Room::Sparse
        }
    }
}

impl Segment {
    /// Creates an empty active segment with room for `capacity` bytes.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        capacity: u64,
        index_interval: u64,
        room: Room,
    ) -> Result<Self> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .context("create segment", &path)?;
        // A file this call created and could not make a segment of holds nothing: it goes, so
        // that trying again (a roll that found the disk full) can create it anew.
        Self::activate(path.clone(), file, base_offset, 0, capacity, index_interval, room)
            .inspect_err(|_| {
                if let Err(error) = fs::remove_file(&path) {
                    log::debug!("{}: not removed: {error}", path.display());
                }
            })
    }

    /// Opens an existing segment file for reading and, as the active segment (`capacity`
    /// above its length), appending.
    pub fn open(
        path: PathBuf,
        base_offset: i64,
        capacity: u64,
        index_interval: u64,
        room: Room,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .context("open segment", &path)?;
        let length = file.metadata().context("stat segment", &path)?.len();
        Self::activate(
            path,
            file,
            base_offset,
            length,
            capacity.max(length),
            index_interval,
            room,
        )
    }

    fn activate(
        path: PathBuf,
        file: File,
        base_offset: i64,
        size: u64,
        capacity: u64,
        index_interval: u64,
        room: Room,
    ) -> Result<Self> {
        let allocated = make_room(&file, &path, size, capacity, room)?;
        let map = map_file(&file, &path, capacity)?;
        let index_capacity =
            usize::try_from(capacity / index_interval.max(1) + 1).unwrap_or(usize::MAX);
        Ok(Self {
            base_offset,
            path,
            file,
            map,
            size: AtomicU64::new(size),
            next_offset: AtomicI64::new(base_offset),
            max_timestamp: AtomicI64::new(i64::MIN),
            offsets: OffsetIndex::with_capacity(index_capacity),
            times: TimeIndex::with_capacity(index_capacity),
            index_capacity,
            index_mismatch_seen: AtomicBool::new(false),
            allocated: AtomicU64::new(allocated),
            created: Instant::now(),
        })
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    /// Largest timestamp in the segment; `i64::MIN` when it holds no batch.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    pub fn age(&self) -> std::time::Duration {
        self.created.elapsed()
    }

    pub fn capacity(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.len() as u64)
    }

    /// The complete bytes of the segment.
    pub fn bytes(&self) -> &[u8] {
        let size = usize::try_from(self.size()).unwrap_or(usize::MAX);
        match &self.map {
            Some(map) => &map[..size.min(map.len())],
            None => &[],
        }
    }

    /// Publishes a batch the writer has finished writing at the end of the segment.
    ///
    /// The release store of `size` is what makes the batch's bytes visible to readers, so it
    /// must come after the write completed.
    ///
    /// A preallocating segment tops up its allocated window here, after the publication: the
    /// writer is the only caller, and the end it publishes is where the next writes go.
    pub fn publish(&self, size: u64, next_offset: i64, max_timestamp: i64) {
        self.max_timestamp
            .fetch_max(max_timestamp, Ordering::AcqRel);
        self.next_offset.store(next_offset, Ordering::Release);
        self.size.store(size, Ordering::Release);
        let allocated = self.allocated.load(Ordering::Relaxed);
        if allocated < self.capacity() && size + ALLOCATE_WHEN_LEFT > allocated {
            self.allocate_ahead(allocated, size);
        }
    }

    /// Allocates the next window after `allocated`. A failure is not the append's: the
    /// segment stays sparse from there (said once), and writes allocate as they go.
    fn allocate_ahead(&self, allocated: u64, size: u64) {
        let end = size.saturating_add(ALLOCATE_AHEAD).min(self.capacity());
        let reached = match allocate(&self.file, &self.path, allocated, end) {
            Ok(true) => end,
            Ok(false) => self.capacity(),
            Err(error) => {
                log::warn!("{error}; the rest of the segment is allocated as it is written");
                self.capacity()
            }
        };
        self.allocated.store(reached, Ordering::Relaxed);
    }

    /// Indexes a batch the writer is about to publish, if enough bytes passed since the last
    /// entry. Time entries go with offset entries, and only when the running max grew.
    pub fn index_batch(
        &self,
        tracker: &mut IndexTracker,
        base_offset: i64,
        position: u64,
        max_timestamp: i64,
        batch_bytes: u64,
    ) {
        tracker.running_max = tracker.running_max.max(max_timestamp);
        let due = tracker.bytes_since_entry >= tracker.interval;
        tracker.bytes_since_entry += batch_bytes;
        if !due {
            return;
        }
        let (Ok(relative_offset), Ok(position)) = (
            u32::try_from(base_offset - self.base_offset),
            u32::try_from(position),
        ) else {
            return;
        };
        tracker.bytes_since_entry = batch_bytes;
        self.offsets.push(IndexEntry {
            relative_offset,
            position,
        });
        if tracker.running_max > self.times.last().map_or(i64::MIN, |e| e.max_timestamp) {
            self.times.push(TimeEntry {
                max_timestamp: tracker.running_max,
                relative_offset,
                position,
            });
        }
    }

    /// Walks batch headers from the nearest index entry until the batch holding `offset`;
    /// returns its position, or the end of the complete bytes when no batch holds it.
    ///
    /// Index files are only hints (a sealed segment's are loaded, not rebuilt, on open), so the
    /// entry is checked against the batch it names before the walk trusts it: a wrong position
    /// would start the walk inside a batch. The check reads the header the walk reads first
    /// anyway; on a mismatch the walk starts from the segment's first batch.
    pub fn position_of(&self, offset: i64) -> u64 {
        let bytes = self.bytes();
        let start = match u32::try_from(offset - self.base_offset)
            .ok()
            .and_then(|relative| self.offsets.floor(relative))
        {
            Some(entry) if self.starts_batch(bytes, entry.position, entry.relative_offset) => {
                u64::from(entry.position)
            }
            Some(_) => {
                self.index_mismatch(INDEX_SUFFIX);
                0
            }
            None => 0,
        };
        let mut position = start;
        while let Some((header, len)) = header_at(bytes, position) {
            if header.next_offset() > offset {
                return position;
            }
            position += len;
        }
        bytes.len() as u64
    }

    /// Position of the first batch whose max timestamp is at least `timestamp`.
    ///
    /// Checked like [`Segment::position_of`]: the entry must name a batch whose own max
    /// timestamp it covers.
    pub fn position_of_time(&self, timestamp: i64) -> Option<u64> {
        let bytes = self.bytes();
        let start = match self.times.last_before(timestamp) {
            Some(entry)
                if self.starts_batch(bytes, entry.position, entry.relative_offset)
                    && header_at(bytes, u64::from(entry.position))
                        .is_some_and(|(h, _)| h.max_timestamp.get() <= entry.max_timestamp) =>
            {
                u64::from(entry.position)
            }
            Some(_) => {
                self.index_mismatch(TIME_INDEX_SUFFIX);
                0
            }
            None => 0,
        };
        let mut position = start;
        while let Some((header, len)) = header_at(bytes, position) {
            if header.max_timestamp.get() >= timestamp {
                return Some(position);
            }
            position += len;
        }
        None
    }

    /// Whether a batch starts at `position` with the offset an index entry claims for it.
    fn starts_batch(&self, bytes: &[u8], position: u32, relative_offset: u32) -> bool {
        header_at(bytes, u64::from(position)).is_some_and(|(header, _)| {
            header.base_offset.get() == self.base_offset + i64::from(relative_offset)
        })
    }

    /// Says once per segment that an index entry did not match the log; lookups still answer
    /// correctly, only slower, and the next rebuild of the index repairs it.
    fn index_mismatch(&self, suffix: &str) {
        if !self.index_mismatch_seen.swap(true, Ordering::Relaxed) {
            log::warn!(
                "{}: an entry does not match the log; lookups in this segment scan from its start",
                self.sibling(suffix).display()
            );
        }
    }

    /// Validates every batch from the start, indexing as it goes; stops at the first invalid
    /// byte or offset that breaks density. Used by recovery and to rebuild lost indexes.
    /// Batches that end past `limit` are left out as if invalid (`limited` says so): the
    /// records from a failed sync on are not trusted.
    pub fn scan(&self, len: u64, limits: Limits, index_interval: u64, limit: i64) -> ScanOutcome {
        let map = match &self.map {
            Some(map) => &map[..],
            None => &[],
        };
        let file_bytes = usize::try_from(len).unwrap_or(usize::MAX).min(map.len());
        let mut tracker = IndexTracker::new(index_interval);
        let mut expected = self.base_offset;
        let mut valid: u64 = 0;
        let mut max_timestamp = i64::MIN;
        let mut failure = None;
        let mut limited = false;
        for item in Batches::new(&map[..file_bytes], limits) {
            let (position, batch) = match item {
                Ok(found) => found,
                Err(invalid) => {
                    failure = Some(invalid);
                    break;
                }
            };
            let header = batch.header();
            let dense = header.record_count.get() == header.last_offset_delta.get().wrapping_add(1)
                && header.record_count.get() > 0;
            if batch.base_offset() != expected || !dense {
                failure = Some(InvalidBatch {
                    position,
                    source: RecordError::OffsetDeltaMismatch {
                        declared: header.last_offset_delta.get(),
                        found: i32::try_from(batch.base_offset().wrapping_sub(expected))
                            .unwrap_or(i32::MAX),
                    },
                });
                break;
            }
            if batch.next_offset() > limit {
                limited = true;
                break;
            }
            let len = batch.size_bytes() as u64;
            self.index_batch(&mut tracker, expected, position, batch.max_timestamp(), len);
            expected = batch.next_offset();
            max_timestamp = max_timestamp.max(batch.max_timestamp());
            valid = position + len;
        }
        self.publish(valid, expected, max_timestamp);
        ScanOutcome {
            valid_bytes: valid,
            failure,
            limited,
            tracker,
        }
    }

    /// Recomputes the end offset and max timestamp of a trusted segment from its last index
    /// entry and the batches after it, validating those batches (framing, CRC, dense offsets):
    /// the tail is where a cut or torn file shows, and checking it costs at most an index
    /// interval of bytes. Returns why the tail is wrong instead of publishing anything.
    pub fn load_tail(
        &self,
        size: u64,
        limits: Limits,
        index_interval: u64,
    ) -> std::result::Result<IndexTracker, String> {
        let map = match &self.map {
            Some(map) => &map[..],
            None => &[],
        };
        let bytes = map
            .get(..usize::try_from(size).unwrap_or(usize::MAX))
            .unwrap_or(map);
        let mut tracker = IndexTracker::new(index_interval);
        tracker.running_max = self.times.last().map_or(i64::MIN, |e| e.max_timestamp);
        let last_entry = self.offsets.last();
        let start = last_entry.map_or(0, |e| u64::from(e.position));
        let mut next_offset =
            self.base_offset + last_entry.map_or(0, |e| i64::from(e.relative_offset));
        let tail = usize::try_from(start)
            .ok()
            .and_then(|start| bytes.get(start..))
            .ok_or_else(|| format!("last index entry points past the end, at byte {start}"))?;
        for item in Batches::new(tail, limits) {
            let (position, batch) = item.map_err(|invalid| {
                format!(
                    "invalid batch at byte {}: {}",
                    start + invalid.position,
                    invalid.source
                )
            })?;
            let header = batch.header();
            let count = header.record_count.get();
            if batch.base_offset() != next_offset
                || count < 1
                || header.last_offset_delta.get() != count - 1
            {
                return Err(format!(
                    "batch at byte {} starts at offset {}, expected {next_offset} with dense offsets",
                    start + position,
                    batch.base_offset()
                ));
            }
            next_offset = batch.next_offset();
            tracker.running_max = tracker.running_max.max(batch.max_timestamp());
            tracker.bytes_since_entry += batch.size_bytes() as u64;
        }
        self.publish(size, next_offset, tracker.running_max);
        Ok(tracker)
    }

    /// Drops indexes loaded from files that turned out not to match the log, before a scan
    /// rebuilds them (a scan appends to whatever is there).
    pub fn reset_indexes(&mut self) {
        self.offsets = OffsetIndex::with_capacity(self.index_capacity);
        self.times = TimeIndex::with_capacity(self.index_capacity);
    }

    /// Cuts the file after its first `size` bytes (recovery). With `keep_capacity` the file
    /// grows back to the mapped capacity, zero-filled (given room that way), ready for
    /// appends; either way the cut bytes are gone, so stale batches cannot line up with new
    /// appends later.
    pub fn cut(&self, size: u64, keep_capacity: Option<Room>) -> Result<()> {
        self.file
            .set_len(size)
            .context("truncate segment", &self.path)?;
        if let Some(room) = keep_capacity {
            let allocated = make_room(&self.file, &self.path, size, self.capacity(), room)?;
            self.allocated.store(allocated, Ordering::Relaxed);
        }
        // Durable before the checkpoint that stops asking for the cut replaces the old one.
        self.file.sync_all().context("sync segment", &self.path)
    }

    /// Makes the segment final: its file shrinks to the bytes it holds, data and length are
    /// synced, and its index files are written.
    pub fn seal(&self) -> Result<()> {
        self.file
            .set_len(self.size())
            .context("truncate segment", &self.path)?;
        self.file.sync_all().context("sync segment", &self.path)?;
        self.write_indexes()
    }

    /// The first half of a seal done off the writer's thread (a roll): the file shrinks to the
    /// bytes it holds (giving back any blocks allocated past them, room the reservations may
    /// need) and the index files' space is reserved, so that a full disk shows here, at once,
    /// as it did when sealing was one call. [`Segment::finish_seal`] does the rest, or
    /// [`Segment::resume`] undoes the shrink.
    pub fn begin_seal(&self, tag: i64) -> Result<[Reserved; 2]> {
        self.file
            .set_len(self.size())
            .context("truncate segment", &self.path)?;
        let offsets = self.offsets.len() * OffsetIndex::ENTRY_BYTES;
        let times = self.times.len() * TimeIndex::ENTRY_BYTES;
        Ok([
            Reserved::new(&self.sibling(INDEX_SUFFIX), tag, offsets)?,
            Reserved::new(&self.sibling(TIME_INDEX_SUFFIX), tag, times)?,
        ])
    }

    /// Undoes [`Segment::begin_seal`]'s shrink for a roll that cannot go on: the file grows
    /// back to its capacity (zeros past the bytes it holds), given room as `room` asks, and
    /// the segment stays the active one.
    pub fn resume(&self, room: Room) -> Result<()> {
        let allocated = make_room(&self.file, &self.path, self.size(), self.capacity(), room)?;
        self.allocated.store(allocated, Ordering::Relaxed);
        Ok(())
    }

    /// The slow half of a seal begun by [`Segment::begin_seal`]: data and length synced, the
    /// index files written, synced and renamed into place.
    pub fn finish_seal(&self, [offsets, times]: [Reserved; 2]) -> Result<()> {
        self.file.sync_all().context("sync segment", &self.path)?;
        offsets.finish(&self.offsets.to_bytes())?;
        times.finish(&self.times.to_bytes())
    }

    pub fn write_indexes(&self) -> Result<()> {
        write_synced(&self.sibling(INDEX_SUFFIX), &self.offsets.to_bytes())?;
        write_synced(&self.sibling(TIME_INDEX_SUFFIX), &self.times.to_bytes())
    }

    /// Loads the index files of a trusted segment, checking them against the log: entries must
    /// increase, stay inside the file, and the last must point at a batch with its offset;
    /// time entries must fall on offset entries. Checking every entry against the log would
    /// read a page per index interval, most of the segment, on every open; the other entries
    /// are checked when a lookup uses them instead ([`Segment::position_of`]).
    /// Returns false when they are missing or wrong, so the caller rebuilds them by scanning.
    pub fn load_indexes(&mut self, size: u64) -> bool {
        let (Ok(offset_bytes), Ok(time_bytes)) = (
            fs::read(self.sibling(INDEX_SUFFIX)),
            fs::read(self.sibling(TIME_INDEX_SUFFIX)),
        ) else {
            return false;
        };
        let Some(offsets) = OffsetIndex::from_bytes(&offset_bytes, self.index_capacity) else {
            return false;
        };
        if !self.offsets_agree_with_log(&offsets, size) {
            return false;
        }
        let Some(times) = TimeIndex::from_bytes(&time_bytes, &offsets, self.index_capacity) else {
            return false;
        };
        self.offsets = offsets;
        self.times = times;
        true
    }

    fn offsets_agree_with_log(&self, offsets: &OffsetIndex, size: u64) -> bool {
        let increasing = (1..offsets.len()).all(|i| match (offsets.get(i - 1), offsets.get(i)) {
            (Some(a), Some(b)) => a.relative_offset < b.relative_offset && a.position < b.position,
            _ => false,
        });
        let Some(last) = offsets.last() else {
            return increasing;
        };
        let map = self.map.as_ref().map_or(&[][..], |m| &m[..]);
        let bytes = map
            .get(..usize::try_from(size).unwrap_or(usize::MAX))
            .unwrap_or(map);
        let points_at_batch = header_at(bytes, u64::from(last.position)).is_some_and(|(h, _)| {
            h.base_offset.get() == self.base_offset + i64::from(last.relative_offset)
        });
        increasing && points_at_batch
    }

    pub fn sibling(&self, suffix: &str) -> PathBuf {
        self.path.with_extension(suffix)
    }

    /// Removes the segment's files. Readers that still hold the segment keep their map: the
    /// kernel frees the blocks when the last map goes.
    pub fn delete_files(&self) -> Result<()> {
        for path in [
            self.path.clone(),
            self.sibling(INDEX_SUFFIX),
            self.sibling(TIME_INDEX_SUFFIX),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("delete segment file", path, e)),
            }
        }
        Ok(())
    }
}

/// What a validating scan found.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    pub valid_bytes: u64,
    pub failure: Option<InvalidBatch>,
    /// The scan stopped at the limit it was given, before any invalid byte.
    pub limited: bool,
    pub tracker: IndexTracker,
}

/// The writer's running state for indexing the active segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexTracker {
    interval: u64,
    bytes_since_entry: u64,
    running_max: i64,
}

impl IndexTracker {
    pub fn new(interval: u64) -> Self {
        Self {
            interval,
            // The first batch of a segment is always indexed: position 0 needs no entry, but
            // indexing it costs nothing and keeps the time index complete from the start.
            bytes_since_entry: interval,
            running_max: i64::MIN,
        }
    }
}

/// The batch header at `position` and the batch's length, if a whole batch is there.
///
/// Used on bytes that were validated when written or recovered, so only framing is checked.
pub(crate) fn header_at(bytes: &[u8], position: u64) -> Option<(&BatchHeader, u64)> {
    let rest = bytes.get(usize::try_from(position).ok()?..)?;
    let header = BatchHeader::ref_from_prefix(rest).ok()?;
    let len = header.total_len().ok()?;
    (len <= rest.len()).then_some((header, len as u64))
}

/// Extends `file` to `capacity` bytes (zeros past `size`, the bytes it holds; never shrinks
/// it), with a first window after `size` allocated if `room` asks. Returns where allocated
/// blocks end: the capacity when nothing more is to be allocated.
fn make_room(file: &File, path: &Path, size: u64, capacity: u64, room: Room) -> Result<u64> {
    if file.metadata().context("stat segment", path)?.len() < capacity {
        file.set_len(capacity).context("extend segment", path)?;
    }
    if room == Room::Sparse {
        return Ok(capacity);
    }
    // A file already at its capacity is an active segment a crash left extended: where its
    // batches end is not known yet, so the first publication allocates from the start (blocks
    // already written are skipped by the file system).
    if size >= capacity {
        return Ok(0);
    }
    let end = size.saturating_add(ALLOCATE_AHEAD).min(capacity);
    Ok(if allocate(file, path, size, end)? {
        end
    } else {
        capacity
    })
}

/// Allocates the blocks of `from..to`, within the file's length. False when the file system
/// cannot, which leaves the file sparse: a file system without `fallocate` (said at debug
/// level, it is how that file system is), or without room (a warning: the writes that need
/// the blocks then fail with `StorageFull`, as they would have anyway, retryable once space
/// is freed). Any other failure is the caller's error.
fn allocate(file: &File, path: &Path, from: u64, to: u64) -> Result<bool> {
    let Err(error) = crate::io::fallocate(file, from, to.saturating_sub(from)) else {
        return Ok(true);
    };
    match crate::io::classify(&error) {
        Refusal::Unsupported => {
            log::debug!(
                "{}: the file system cannot preallocate ({error}); the segment is sparse",
                path.display()
            );
            Ok(false)
        }
        Refusal::NoSpace => {
            log::warn!(
                "{}: no room to preallocate bytes {from}..{to} ({error}); the segment is \
                 sparse from there",
                path.display()
            );
            Ok(false)
        }
        Refusal::Other => Err(Error::io("preallocate segment", path, error)),
    }
}

fn map_file(file: &File, path: &Path, len: u64) -> Result<Option<Mmap>> {
    if len == 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| Error::CorruptFile {
        path: path.to_owned(),
        reason: "segment larger than the address space".into(),
    })?;
    // SAFETY: the map is read-only and covers bytes the file holds (it was extended to `len`
    // first). Mapped memory can change under the map if the file is written, which is why
    // readers only view bytes below the published size: those bytes were completely written
    // before being published and are never written again by this process. Another process
    // writing the file is excluded by the data directory's exclusive lock; a user editing the
    // files behind the engine's back is outside what any mmap-based reader can defend against.
    let map = unsafe { MmapOptions::new().len(len).map(file) }.context("map segment", path)?;
    // Consumers read segments front to back, and O_DIRECT writes leave nothing in the page
    // cache: ask for aggressive readahead so a read-back is not one disk read per page.
    if let Err(error) = map.advise(memmap2::Advice::Sequential) {
        log::debug!("madvise(SEQUENTIAL) on {} failed: {error}", path.display());
    }
    Ok(Some(map))
}

/// A small file whose space is reserved under a temporary name, to be written, synced and
/// renamed into place later (on another thread): [`write_synced`] in two halves. Dropped
/// unfinished (its roll did not go on), it removes its temporary file.
#[derive(Debug)]
pub(crate) struct Reserved {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    finished: bool,
}

impl Reserved {
    /// Creates `<path>.<tag>.tmp` (the tag keeps two pending writes of one path apart) with
    /// `len` bytes allocated, so that writing them later cannot fail for lack of space.
    ///
    /// A file system that cannot preallocate gets no reservation: there a full disk shows
    /// when the bytes are written, where it fails the roll and stops the partition. No room
    /// is [`Error::StorageFull`] naming the file (nothing was written, freeing space and
    /// trying again works); any other failure is an I/O error naming it. Either way the
    /// temporary file is gone.
    pub fn new(path: &Path, tag: i64, len: usize) -> Result<Self> {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{tag}.tmp"));
        let tmp = path.with_file_name(name);
        let file = File::create(&tmp).context("create", &tmp)?;
        let reserved = Self {
            file,
            tmp,
            path: path.to_owned(),
            finished: false,
        };
        let Err(error) = crate::io::fallocate(&reserved.file, 0, len as u64) else {
            return Ok(reserved);
        };
        match crate::io::classify(&error) {
            Refusal::Unsupported => Ok(reserved),
            Refusal::NoSpace => Err(Error::StorageFull {
                path: reserved.tmp.clone(),
            }),
            Refusal::Other => Err(Error::io("reserve", reserved.tmp.clone(), error)),
        }
    }

    /// Writes `bytes`, syncs, and renames the file into place.
    pub fn finish(mut self, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(bytes, 0)
            .and_then(|()| self.file.set_len(bytes.len() as u64))
            .context("write", &self.tmp)?;
        self.file.sync_all().context("sync", &self.tmp)?;
        fs::rename(&self.tmp, &self.path).context("rename", &self.path)?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Only tidiness: the next open removes temporary files anyway.
        if let Err(error) = fs::remove_file(&self.tmp)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            log::debug!("{}: not removed: {error}", self.tmp.display());
        }
    }
}

/// Writes a small file atomically: to a temporary name, synced, then renamed into place.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).context("write", &tmp)?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .context("sync", &tmp)?;
    fs::rename(&tmp, path).context("rename", path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn allocated(segment: &Segment) -> u64 {
        segment.file().metadata().unwrap().blocks() * 512
    }

    /// A preallocating segment holds a window of allocated blocks ahead of its published end,
    /// topped up as the end nears it, never the whole capacity up front; a sparse one holds
    /// nothing it has not written.
    #[test]
    fn a_preallocating_segment_keeps_a_window_ahead_of_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let capacity = 2 * ALLOCATE_AHEAD;
        let sparse = Segment::create(dir.path(), 0, capacity, 4096, Room::Sparse).unwrap();
        sparse.publish(ALLOCATE_AHEAD, 1, 0);
        assert_eq!(allocated(&sparse), 0);

        let segment =
            Segment::create(dir.path(), 1, capacity, 4096, Room::Preallocated).unwrap();
        if allocated(&segment) == 0 {
            eprintln!("skipped: this file system cannot preallocate");
            return;
        }
        assert_eq!(segment.file().metadata().unwrap().len(), capacity);
        let first = allocated(&segment);
        assert!(
            (ALLOCATE_AHEAD..capacity).contains(&first),
            "one window: {first}"
        );
        segment.publish(ALLOCATE_AHEAD - ALLOCATE_WHEN_LEFT - 1, 2, 0);
        assert_eq!(allocated(&segment), first, "enough left ahead");
        segment.publish(ALLOCATE_AHEAD - ALLOCATE_WHEN_LEFT + 1, 3, 0);
        assert!(allocated(&segment) > first, "topped up");
        segment.publish(capacity - 1, 4, 0);
        assert!(allocated(&segment) >= capacity, "up to the capacity");
    }

    /// Preallocation the file system refuses (cannot, or has no room for) leaves the segment
    /// sparse, and is not tried again at every publication; any other failure is the
    /// segment's error, naming it, and leaves no file behind.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_refused_preallocation_leaves_the_segment_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let dir_name = dir.path().file_name().unwrap().to_string_lossy().into_owned();
        let capacity = 2 * ALLOCATE_AHEAD;
        for (base, errno) in [(0, libc::EOPNOTSUPP), (1, libc::ENOSPC)] {
            let name = format!("{dir_name}/{}", file_name(base, LOG_SUFFIX));
            crate::io::fail_hook::fail(&name, errno, 1);
            let segment =
                Segment::create(dir.path(), base, capacity, 4096, Room::Preallocated).unwrap();
            assert_eq!(crate::io::fail_hook::pending(), 0);
            assert_eq!(segment.file().metadata().unwrap().len(), capacity);
            segment.publish(capacity - 1, base + 1, 0);
            assert_eq!(allocated(&segment), 0, "errno {errno}: sparse, not tried again");
        }

        let name = format!("{dir_name}/{}", file_name(2, LOG_SUFFIX));
        crate::io::fail_hook::fail(&name, libc::EIO, 1);
        let failed = Segment::create(dir.path(), 2, capacity, 4096, Room::Preallocated);
        match failed {
            Err(Error::Io { op, path, .. }) => {
                assert_eq!(op, "preallocate segment");
                assert!(path.ends_with(file_name(2, LOG_SUFFIX)), "{path:?}");
                assert!(!path.exists(), "the file it created is gone");
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        crate::io::fail_hook::clear();
    }


    /// A reservation interrupted by signals is tried again, like every other allocation, and
    /// holds its blocks; dropped unfinished, it leaves no temporary file.
    #[test]
    #[cfg(target_os = "linux")]
    fn an_interrupted_reservation_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let dir_name = dir.path().file_name().unwrap().to_string_lossy().into_owned();
        let path = dir.path().join("checkpoint");
        crate::io::fail_hook::fail(&format!("{dir_name}/checkpoint"), libc::EINTR, 3);
        let reserved = Reserved::new(&path, 7, 1 << 20).unwrap();
        assert_eq!(crate::io::fail_hook::pending(), 0);
        let tmp = dir.path().join("checkpoint.7.tmp");
        if tmp.metadata().unwrap().blocks() == 0 {
            eprintln!("skipped the block count: this file system cannot preallocate");
        } else {
            assert!(tmp.metadata().unwrap().blocks() * 512 >= 1 << 20);
        }
        drop(reserved);
        assert!(!tmp.exists());
        crate::io::fail_hook::clear();
    }

}
