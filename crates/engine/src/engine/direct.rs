//! The shard's write pipeline: batches staged into aligned buffers, written with `O_DIRECT`
//! where the file system allows it and the write mode asks for it, acknowledged in order when
//! the writer says the write completed.
//!
//! The pipeline drives a [`Writer`]: the io_uring writer, or the blocking one that performs each
//! queued write (and its sync) through an `IoBackend` when submitted. Both lend buffers from a
//! bounded pool and answer with the same completions, so everything below holds for both
//! backends, and the tests of one exercise the other. Only io_uring completions are reported to
//! the storage simulator here: the blocking writer's writes go through the simulator's backend,
//! which sees them already.
//!
//! Per partition a bounded queue of writes ([`MAX_WRITES`]): a buffer that fills while
//! earlier writes are in flight is sealed into the queue and a new one starts, so a busy
//! partition keeps several large writes on their way and the shard never waits for one
//! partition's write (a partition whose queue is full, or the pool empty, parks its batches
//! and the shard serves the others). An idle partition writes small buffers at once: its
//! open buffer is sealed and queued as soon as nothing of it is queued ahead. Writes of all
//! partitions go to the kernel with one `submit` per pass.
//!
//! # Order
//!
//! Completion order is the kernel's; publication order is the log's. Each write carries its
//! number in the token, so its completion finds it; a completed write whose predecessors are
//! still in flight waits in the queue, and the queue's head publishes exactly the batches it
//! carried (offsets were assigned at staging). Acknowledgements thus resolve in offset order.
//!
//! Two rules decide when a sealed write may be queued:
//!
//! - **Sync.** A write with a linked fdatasync is queued only once every earlier write of the
//!   partition has completed. The kernel runs a linked sync after its own write completed,
//!   and an fdatasync covers every write that completed before it ran; so when that sync
//!   succeeds, every byte up to the end of its write is durable, and the durable watermark
//!   moves to exactly there. Writes queued after it may or may not be covered; nothing claims
//!   they are. (The other way, letting syncs go with writes in flight and proving coverage
//!   afterwards, would need completion times the ring does not give.)
//! - **`O_DIRECT` tail block.** A write that re-writes the block the previous write ended in
//!   (`DirectWrite::after`) is queued only once that write completed: otherwise the older
//!   one could land last and put zeros back over newer bytes. Writes after a block-aligned
//!   end, and page-cache writes, need no such wait.
//!
//! # Failures
//!
//! Failures are fail-stop: a write or sync that fails for any reason but a full disk on the
//! write poisons the partition's log, and every batch in flight or staged fails with that
//! poison; completions of its other writes still in flight are consumed (their buffers go
//! back to the pool) but never published, so nothing after the last successful sync is ever
//! reported durable and no offset is handed out twice.
//!
//! A write refused for lack of space fails every batch of the partition with the storage
//! error, and new batches wait; once no write of the partition is in flight any more, the log
//! undoes their staging (it assigns those offsets again, densely) and writes resume once
//! space is freed. A later write may have landed although an earlier one ran out of space:
//! its bytes lie past the log's end, and hold the very offsets the next batches get. The log
//! cuts the segment at its published end when it undoes the staging (see
//! `PartitionLog::discard_failed_writes`), so neither recovery nor a shorter next write can
//! line them up after the log's end.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use super::BatchAck;
use super::notify::doorbell::Doorbell;
use crate::error::{Error, is_storage_full};
use crate::io::aligned::{BLOCK, align_down, align_up};
use crate::io::blocking::BlockingWriter;
use crate::io::uring::{
    BufferRegistration, Completion, DirectAppender, FileSlot, PooledBuf, SyncOutcome, UringConfig,
    UringUnavailable, UringWriter,
};
use crate::io::writer::Writer;
use crate::io::{IoBackend, Storage};
use crate::log::{PartitionLog, StorageOp};
use crate::recycle::BatchBuf;

/// The most staging buffers a shard's pool grows to: a busy partition holds up to
/// [`MAX_WRITES`] queued and fills another, so this lets six partitions per shard keep full
/// queues (and many more pipeline one write each) before the pool is the limit; then their
/// batches park until buffers come back.
const STAGING_BUFFERS: u16 = 32;
/// Registered file slots: one per partition a shard owns.
const FILE_SLOTS: u32 = 4096;

/// What a shard's partitions share: the writer (io_uring or blocking) and its buffer pool.
pub(crate) struct DirectIo {
    writer: Writer,
    completions: Vec<Completion>,
    /// The storage simulator of tests, told of every io_uring completion the pipeline
    /// consumes. Never set for the blocking writer: its writes go through the simulator's
    /// own backend, which records them already.
    storage: Option<Arc<dyn Storage>>,
}

/// Bytes per staging buffer: the largest batch plus a re-written O_DIRECT tail block.
fn staging_buffer_size(max_batch_bytes: usize) -> usize {
    usize::try_from(align_up((max_batch_bytes + BLOCK) as u64)).unwrap_or(usize::MAX)
}

impl DirectIo {
    /// Sets up the blocking writer: the same pipeline, each write performed through `backend`
    /// when submitted.
    pub fn blocking(max_batch_bytes: usize, backend: Box<dyn IoBackend>) -> io::Result<Self> {
        let writer = BlockingWriter::new(
            backend,
            STAGING_BUFFERS,
            staging_buffer_size(max_batch_bytes),
            FILE_SLOTS,
        )?;
        Ok(Self {
            writer: Writer::Blocking(writer),
            completions: Vec::with_capacity(STAGING_BUFFERS as usize),
            storage: None,
        })
    }

    /// Sets up a ring whose buffers hold the largest batch plus a re-written tail block. With
    /// `storage` (tests), every completion result passes through it before it is consumed.
    pub fn probe(
        max_batch_bytes: usize,
        storage: Option<Arc<dyn Storage>>,
    ) -> Result<Self, UringUnavailable> {
        let buffer_size = staging_buffer_size(max_batch_bytes);
        let config = UringConfig {
            entries: 256,
            buffers: STAGING_BUFFERS,
            buffer_size,
            files: FILE_SLOTS,
            registration: BufferRegistration::Prefer,
        };
        let mut writer = UringWriter::probe(config)?;
        if let Some(storage) = &storage {
            let storage = storage.clone();
            writer.set_result_filter(Box::new(move |token, is_sync, res| {
                storage.uring_result(token, is_sync, res)
            }));
        }
        if let Some(reason) = writer.registration_error() {
            log::info!(
                "rill: io_uring buffers not registered ({reason}); using unregistered writes"
            );
        }
        Ok(Self {
            writer: Writer::Uring(writer),
            completions: Vec::with_capacity(STAGING_BUFFERS as usize * 2),
            storage,
        })
    }

    /// The backend's name for logs and reports ("io_uring" or "portable").
    pub fn backend_name(&self) -> &'static str {
        self.writer.backend_name()
    }

    /// Whether a write is done when `submit` returns (the blocking writer).
    pub fn writes_inside_submit(&self) -> bool {
        matches!(self.writer, Writer::Blocking(_))
    }

    /// An eventfd the kernel rings on every completion of this ring: the shard sleeps on it,
    /// and producers ring it too, so a batch for one partition does not wait for another's
    /// write to complete. `None` (the shard then sleeps in the ring) if it cannot be made, and
    /// for the blocking writer, which never has a write in flight to sleep for.
    pub fn doorbell(&self) -> Option<Arc<Doorbell>> {
        let Writer::Uring(writer) = &self.writer else {
            return None;
        };
        let made = Doorbell::new()
            .and_then(|doorbell| writer.register_eventfd(doorbell.fd()).map(|()| doorbell));
        match made {
            Ok(doorbell) => Some(Arc::new(doorbell)),
            Err(error) => {
                log::info!(
                    "rill: no eventfd for io_uring completions ({error}); a shard with writes in flight wakes on completions only"
                );
                None
            }
        }
    }

    /// Whether completions are ready or submissions pending: no reason to sleep.
    pub fn has_unfinished_business(&mut self) -> bool {
        self.writer.has_unfinished_business()
    }

    /// Sends every queued write to the kernel with one system call (io_uring), or performs
    /// them (blocking).
    pub fn submit(&mut self) -> io::Result<usize> {
        self.writer.submit()
    }

    /// Completions ready now, without waiting. Drained rather than taken, so the list keeps
    /// its memory: taking it allocated a new one per completion.
    pub fn reap(&mut self) -> std::vec::Drain<'_, Completion> {
        self.writer.reap(&mut self.completions);
        self.completions.drain(..)
    }

    /// Sleeps in the kernel until at least one write completes (io_uring); performs what is
    /// queued (blocking).
    pub fn wait_one(&mut self) -> io::Result<std::vec::Drain<'_, Completion>> {
        self.writer.wait(1, &mut self.completions)?;
        Ok(self.completions.drain(..))
    }

    pub fn in_flight(&self) -> usize {
        self.writer.in_flight()
    }
}

/// Writes one partition keeps queued at most: sealed and waiting for their turn, in flight, or
/// completed and waiting for an earlier write to be published first. Four, because a busy
/// partition then has its next full buffers going to the disk while one is written, which is
/// all a sequential append to one file gains from depth; and because a partition's queue
/// plus its open buffer (five) stays a small share of the shard's pool ([`STAGING_BUFFERS`]),
/// so one busy partition cannot take every buffer from the others.
pub(crate) const MAX_WRITES: usize = 4;

/// A write's token: the low half names the partition (its index in the shard, which routes
/// the completion), the high half the write's number within the partition, which finds the
/// write whatever order the kernel completes them in.
fn token_of(partition: u64, seq: u32) -> u64 {
    partition_of(partition) | (u64::from(seq) << 32)
}

/// The partition (its index in the shard) a write's token names.
pub(crate) fn partition_of(token: u64) -> u64 {
    token & u64::from(u32::MAX)
}

/// Where a write of the partition's queue is.
enum Stage {
    /// The slot holds no write.
    Free,
    /// Planned, not yet queued: an earlier write must complete first (see [`PartitionIo`]).
    Sealed { buffer: PooledBuf, position: u64 },
    /// Queued with the ring.
    InFlight,
    /// The kernel completed it, but the test storage holds the completion back for now.
    Held(Completion),
    /// Completed; published (or not) when every earlier write is.
    Done(Completion),
    /// Never to be written: the partition failed before its turn came.
    Dropped,
}

/// One write of a partition's queue: where it starts and ends in the log, and whose batches
/// it carries. The slots are reused, and so are their lists: queueing allocates nothing.
struct Write {
    stage: Stage,
    seq: u32,
    /// The log's end before this write (its logical first byte).
    start: u64,
    /// The log's end once it lands.
    end: u64,
    /// An fdatasync is linked to it.
    sync: bool,
    /// It re-writes the block the previous write ended in (`O_DIRECT`).
    after_previous: bool,
    acks: Vec<Arc<BatchAck>>,
    /// The batches themselves, for the log's in-memory tail (empty when it keeps none).
    batches: Vec<BatchBuf>,
}

impl Write {
    fn free() -> Self {
        Self {
            stage: Stage::Free,
            seq: 0,
            start: 0,
            end: 0,
            sync: false,
            after_previous: false,
            acks: Vec::new(),
            batches: Vec::new(),
        }
    }

    /// Whether the kernel may still be working on it (a held completion counts: to the
    /// pipeline it is a write that has not completed yet).
    fn unfinished(&self) -> bool {
        matches!(
            self.stage,
            Stage::Sealed { .. } | Stage::InFlight | Stage::Held(_)
        )
    }
}

/// One partition's side of the io_uring path.
pub(crate) struct PartitionIo {
    token: u64,
    slot: FileSlot,
    /// The descriptor registered with the ring; opened with O_DIRECT when the appender is set.
    _file: File,
    appender: Option<DirectAppender>,
    buffer: Option<PooledBuf>,
    /// Where the buffer's first byte goes (buffered mode only; O_DIRECT plans its own).
    buffer_position: u64,
    buffer_end: u64,
    buffer_acks: Vec<Arc<BatchAck>>,
    buffer_sync: bool,
    /// Whether the log keeps an in-memory tail, which takes the batches after their write.
    keeps_tail: bool,
    /// The batches copied into the open buffer, kept (not copied again) for the tail.
    buffer_batches: Vec<BatchBuf>,
    /// The queue of writes, a ring of [`MAX_WRITES`] slots: `queued` of them from `head`,
    /// in log order.
    writes: Vec<Write>,
    head: usize,
    queued: usize,
    next_seq: u32,
    /// Where the last sealed write ends: the next one starts there.
    sealed_end: u64,
    /// A write ran out of space: every batch of the partition failed, and the staging is
    /// undone once no write of it is in flight any more. New batches wait until then.
    out_of_space: bool,
    /// Batches failed since the last time the staging was undone (or the partition opened).
    failed: usize,
}

impl PartitionIo {
    /// Registers the log's active segment with the ring, with O_DIRECT when `direct_io` asks
    /// for it and the file system allows it, else through the page cache.
    pub fn open(
        io: &mut DirectIo,
        log: &PartitionLog,
        token: u64,
        direct_io: bool,
    ) -> io::Result<Self> {
        let path = log.active_path();
        let buffered = || OpenOptions::new().write(true).open(path);
        let (file, o_direct) = if direct_io {
            match OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
            {
                Ok(file) => (file, true),
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => (buffered()?, false),
                Err(error) => return Err(error),
            }
        } else {
            (buffered()?, false)
        };
        let slot = io.writer.register_file(&file)?;
        let end = log.published_size();
        let appender = if o_direct {
            let tail = log.active_bytes_from(align_down(end));
            Some(DirectAppender::new(end, tail).map_err(io::Error::other)?)
        } else {
            None
        };
        Ok(Self {
            token,
            slot,
            _file: file,
            appender,
            buffer: None,
            buffer_position: end,
            buffer_end: end,
            buffer_acks: Vec::new(),
            buffer_sync: false,
            // An `Appended` log took its batches into the tail when they were staged.
            keeps_tail: log.keeps_tail() && !log.tails_when_staged(),
            buffer_batches: Vec::new(),
            writes: (0..MAX_WRITES).map(|_| Write::free()).collect(),
            head: 0,
            queued: 0,
            next_seq: 0,
            sealed_end: end,
            out_of_space: false,
            failed: 0,
        })
    }

    /// Batches staged or writes queued: the partition has something on its way to the disk.
    pub fn is_busy(&self) -> bool {
        self.queued > 0 || self.has_open_buffer()
    }

    /// Whether new batches must wait for the partition's writes in flight (one ran out of
    /// space, and the staging is undone only once none is in flight).
    pub fn waits_for_writes(&self) -> bool {
        self.out_of_space
    }

    /// Whether a completion is held back by the test storage (the shard asks again later).
    pub fn has_held(&self) -> bool {
        self.slots().any(|w| matches!(w.stage, Stage::Held(_)))
    }

    /// Whether a buffer with staged batches is waiting to be queued.
    pub fn has_open_buffer(&self) -> bool {
        !self.buffer_acks.is_empty()
    }

    /// Links an fdatasync to the open buffer's write (an interval sync came due).
    pub fn sync_next_write(&mut self) {
        self.buffer_sync = true;
    }

    /// Room for `len` more bytes in the open buffer.
    pub fn has_room(&self, len: usize) -> bool {
        self.buffer.as_ref().is_some_and(|b| b.remaining() >= len)
    }

    /// Starts a buffer from the pool; false when the pool is empty.
    pub fn start_buffer(&mut self, io: &mut DirectIo) -> bool {
        let Some(mut buffer) = io.writer.take_buffer() else {
            return false;
        };
        buffer.clear();
        if let Some(appender) = &self.appender
            && appender.begin(&mut buffer).is_err()
        {
            let _ = io.writer.give_back(buffer);
            return false;
        }
        self.buffer_position = self.buffer_end;
        self.buffer = Some(buffer);
        true
    }

    /// Copies a staged batch into the open buffer. The batch itself then waits for the write
    /// to become the log's in-memory tail, if it keeps one: the one copy serves both the disk
    /// and the readers. Without a tail it is dropped here, which returns it to its producer.
    pub fn stage(&mut self, batch: BatchBuf, end: u64, ack: Arc<BatchAck>, sync: bool) -> bool {
        if !self.stage_copy(&batch, end, ack, sync) {
            return false;
        }
        if self.keeps_tail {
            self.buffer_batches.push(batch);
        }
        true
    }

    /// Copies a staged batch into the open buffer and keeps nothing of it: the caller keeps
    /// the batch (an `Appended` log puts it in its tail at once).
    pub fn stage_copy(&mut self, batch: &[u8], end: u64, ack: Arc<BatchAck>, sync: bool) -> bool {
        let Some(buffer) = self.buffer.as_mut() else {
            return false;
        };
        if buffer.extend_from_slice(batch).is_err() {
            return false;
        }
        self.buffer_end = end;
        self.buffer_acks.push(ack);
        self.buffer_sync |= sync;
        true
    }

    /// The pass's call: seals the open buffer when no write of the partition is queued ahead
    /// of it, then queues every sealed write whose turn came. A busy partition thus fills
    /// large buffers while its writes are in flight (a full one is sealed by the shard's
    /// `make_room`), and an idle one writes small ones at once. True if a write was queued.
    pub fn send(&mut self, io: &mut DirectIo, log: &mut PartitionLog) -> Result<bool, Error> {
        if self.queued == 0 {
            self.seal(io, log)?;
        }
        self.queue_ready(io, log)
    }

    /// Seals the open buffer into the partition's queue of writes, planned (`O_DIRECT`) but
    /// not yet queued: [`Self::queue_ready`] sends it when its turn comes. False when there is
    /// nothing to seal, the queue is at its bound, or the partition waits for its writes.
    ///
    /// A write that cannot be planned stops the partition: its buffer goes back to the pool
    /// and every batch of the partition fails with the poison, which is returned.
    pub fn seal(&mut self, io: &mut DirectIo, log: &mut PartitionLog) -> Result<bool, Error> {
        if self.buffer_acks.is_empty() || self.queued == MAX_WRITES || self.out_of_space {
            return Ok(false);
        }
        let Some(mut buffer) = self.buffer.take() else {
            return Ok(false);
        };
        let planned = match self.appender.as_mut() {
            Some(appender) => appender
                .seal(&mut buffer)
                .map(|plan| (plan.position, plan.end, plan.after.is_some())),
            None => Ok((self.buffer_position, self.buffer_end, false)),
        };
        let (position, end, after_previous) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                let _ = io.writer.give_back(buffer);
                let path = log.active_path().to_owned();
                let error = log.poison_with(StorageOp::PlanDirect, path, &io::Error::other(error));
                self.fail_all(&error);
                return Err(error);
            }
        };
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let at = (self.head + self.queued) % MAX_WRITES;
        let write = &mut self.writes[at];
        write.stage = Stage::Sealed { buffer, position };
        write.seq = seq;
        write.start = self.sealed_end;
        write.end = end;
        write.sync = self.buffer_sync;
        write.after_previous = after_previous;
        // The slot's lists are empty (emptied when its last write retired): swapped, not
        // allocated.
        std::mem::swap(&mut write.acks, &mut self.buffer_acks);
        std::mem::swap(&mut write.batches, &mut self.buffer_batches);
        self.queued += 1;
        self.sealed_end = end;
        self.buffer_sync = false;
        Ok(true)
    }

    /// Queues the sealed writes whose turn came, in log order, stopping at the first that
    /// must wait (see [`PartitionIo`] for the two rules). True if a write was queued.
    ///
    /// A write the ring refuses stops the partition: its buffer goes back to the pool and
    /// every batch of the partition fails with the poison, which is returned.
    pub fn queue_ready(
        &mut self,
        io: &mut DirectIo,
        log: &mut PartitionLog,
    ) -> Result<bool, Error> {
        if let Some(stopped) = log.poison().map(|poison| poison.error(log.partition())) {
            self.fail_all(&stopped);
        }
        let stopped = self.out_of_space || log.poison().is_some();
        let mut sent = false;
        for n in 0..self.queued {
            let at = (self.head + n) % MAX_WRITES;
            if !matches!(self.writes[at].stage, Stage::Sealed { .. }) {
                continue;
            }
            if stopped {
                self.drop_sealed(io, at);
                continue;
            }
            if !self.may_queue(n) {
                break;
            }
            let write = &mut self.writes[at];
            let Stage::Sealed { buffer, position } =
                std::mem::replace(&mut write.stage, Stage::InFlight)
            else {
                continue;
            };
            let token = token_of(self.token, write.seq);
            if let Err(refused) = io
                .writer
                .queue_write(self.slot, position, buffer, write.sync, token)
            {
                write.stage = Stage::Dropped;
                let reason = io::Error::other(refused.to_string());
                let _ = io.writer.give_back(refused.into_buf());
                let path = log.active_path().to_owned();
                let error = log.poison_with(StorageOp::Queue, path, &reason);
                self.fail_everything(io, &error);
                return Err(error);
            }
            sent = true;
        }
        if stopped {
            self.retire(io, log);
        }
        Ok(sent)
    }

    /// Whether the `n`-th write of the queue may go to the kernel now. A write with a linked
    /// sync waits until every earlier write completed (the sync covers only writes that
    /// completed before it ran); an `O_DIRECT` write that re-writes the previous write's last
    /// block waits until that write completed (else the older one could land last).
    fn may_queue(&self, n: usize) -> bool {
        let write = &self.writes[(self.head + n) % MAX_WRITES];
        if write.sync {
            return !(0..n).any(|k| self.writes[(self.head + k) % MAX_WRITES].unfinished());
        }
        let previous = n
            .checked_sub(1)
            .map(|k| &self.writes[(self.head + k) % MAX_WRITES]);
        !(write.after_previous && previous.is_some_and(Write::unfinished))
    }

    /// A sealed write that will never be queued: its buffer goes back to the pool.
    fn drop_sealed(&mut self, io: &mut DirectIo, at: usize) {
        let stage = &mut self.writes[at].stage;
        if !matches!(stage, Stage::Sealed { .. }) {
            return;
        }
        if let Stage::Sealed { buffer, .. } = std::mem::replace(stage, Stage::Dropped) {
            let _ = io.writer.give_back(buffer);
        }
    }

    /// Takes the completion of one of this partition's writes. A failure fails every batch
    /// of the partition at once (and is returned); a success waits until every earlier write
    /// is published, then publishes exactly the batches it carried: acknowledgements go out
    /// in offset order whatever order the kernel completes the writes in.
    pub fn complete(
        &mut self,
        io: &mut DirectIo,
        log: &mut PartitionLog,
        done: Completion,
    ) -> Option<Error> {
        let seq = u32::try_from(done.token >> 32).ok()?;
        let at = (0..self.queued)
            .map(|n| (self.head + n) % MAX_WRITES)
            .find(|&at| {
                self.writes[at].seq == seq && matches!(self.writes[at].stage, Stage::InFlight)
            })?;
        let write = &self.writes[at];
        let held = io
            .storage
            .as_ref()
            .is_some_and(|storage| storage.uring_hold(log.active_path(), write.start..write.end));
        if held {
            self.writes[at].stage = Stage::Held(done);
            return None;
        }
        self.arrive(io, log, at, done)
    }

    /// Takes the completions the test storage no longer holds back.
    pub fn poll_held(&mut self, io: &mut DirectIo, log: &mut PartitionLog) -> Option<Error> {
        let mut failure = None;
        for n in 0..MAX_WRITES {
            let at = (self.head + n) % MAX_WRITES;
            let write = &self.writes[at];
            if !matches!(write.stage, Stage::Held(_)) {
                continue;
            }
            let still = io.storage.as_ref().is_some_and(|storage| {
                storage.uring_hold(log.active_path(), write.start..write.end)
            });
            if still {
                continue;
            }
            if let Stage::Held(done) =
                std::mem::replace(&mut self.writes[at].stage, Stage::InFlight)
            {
                failure = failure.or(self.arrive(io, log, at, done));
            }
        }
        failure
    }

    /// A completion of the write in slot `at` arrived: a failure stops or fails the partition
    /// now, then whatever is complete at the head of the queue retires.
    fn arrive(
        &mut self,
        io: &mut DirectIo,
        log: &mut PartitionLog,
        at: usize,
        done: Completion,
    ) -> Option<Error> {
        let failure = self.failure_of(log, &done);
        self.writes[at].stage = Stage::Done(done);
        if let Some(error) = &failure {
            self.fail_everything(io, error);
        }
        let resumed = self.retire(io, log);
        failure.or(resumed)
    }

    /// What a completion's failure means for the partition, if it failed (and it is not
    /// already failing: then the completion is only consumed).
    fn failure_of(&mut self, log: &mut PartitionLog, done: &Completion) -> Option<Error> {
        // The path is copied only for an error: a copy per completion was an allocation per
        // write.
        let path = |log: &PartitionLog| log.active_path().to_owned();
        if let Some(stopped) = log.poison().map(|poison| poison.error(log.partition())) {
            // Stopped meanwhile (a failure elsewhere on the path): nothing more is published.
            return Some(stopped);
        }
        if self.out_of_space {
            return None;
        }
        match (&done.result, &done.sync) {
            // A sync that ran and failed stops the partition whatever its write said: it
            // covered earlier unsynced writes too, whose pages the kernel may have dropped.
            (_, SyncOutcome::Failed(error)) => {
                Some(log.poison_with(StorageOp::Sync, path(log), error))
            }
            (Err(error), _) if is_storage_full(error) => {
                self.out_of_space = true;
                Some(Error::io(
                    "write segment",
                    path(log),
                    io::Error::from_raw_os_error(libc::ENOSPC),
                ))
            }
            (Err(error), _) => Some(log.poison_with(StorageOp::Write, path(log), error)),
            (Ok(_), _) => None,
        }
    }

    /// Publishes, in order, the completed writes at the head of the queue, up to the first
    /// that has not completed; a failing partition publishes nothing, it only frees the slots.
    /// After running out of space, once nothing is in flight, the staging is undone.
    fn retire(&mut self, io: &mut DirectIo, log: &mut PartitionLog) -> Option<Error> {
        while self.queued > 0 {
            let write = &mut self.writes[self.head];
            if !matches!(write.stage, Stage::Done(_) | Stage::Dropped) {
                break;
            }
            if let Stage::Done(done) = std::mem::replace(&mut write.stage, Stage::Free) {
                if let Some(storage) = &io.storage {
                    storage.uring_completed(log.active_path(), write.start..write.end, &done);
                }
                if done.is_success() && !self.out_of_space {
                    // Nothing once the log is poisoned, whatever the write says.
                    let synced = matches!(done.sync, SyncOutcome::Synced);
                    log.complete_through(write.end, synced, &mut write.batches);
                }
            }
            write.stage = Stage::Free;
            write.acks.clear();
            write.batches.clear();
            self.head = (self.head + 1) % MAX_WRITES;
            self.queued -= 1;
        }
        if !self.out_of_space || self.queued > 0 {
            return None;
        }
        // Out of space, and nothing of this partition is in flight any more: every staged
        // batch failed, so the staging is undone and writes resume once space is freed.
        self.out_of_space = false;
        let failed = std::mem::take(&mut self.failed);
        log.discard_failed_writes(failed)
            .and_then(|()| self.reset(log))
            .err()
    }

    /// Fails every batch of the partition (open buffer and queue) with `error`: the sealed
    /// writes' buffers go back to the pool, the open one too; writes in flight stay until
    /// their completions come back, and are then never published.
    fn fail_everything(&mut self, io: &mut DirectIo, error: &Error) {
        self.fail_all(error);
        for n in 0..self.queued {
            self.drop_sealed(io, (self.head + n) % MAX_WRITES);
        }
        if let Some(buffer) = self.buffer.take() {
            let _ = io.writer.give_back(buffer);
        }
    }

    /// Fails every batch of the partition's open buffer and queue with `error`.
    pub fn fail_all(&mut self, error: &Error) {
        for ack in self.buffer_acks.drain(..) {
            ack.fail_with(error);
            self.failed += 1;
        }
        self.buffer_batches.clear();
        self.buffer_sync = false;
        for n in 0..self.queued {
            let write = &mut self.writes[(self.head + n) % MAX_WRITES];
            for ack in write.acks.drain(..) {
                ack.fail_with(error);
                self.failed += 1;
            }
            write.batches.clear();
        }
    }

    fn slots(&self) -> impl Iterator<Item = &Write> {
        (0..self.queued).map(|n| &self.writes[(self.head + n) % MAX_WRITES])
    }

    /// Starts planning again from what the log has published (after a write ran out of
    /// space). An O_DIRECT file whose tail cannot be planned stops the partition: without an
    /// appender every later write would be refused as misaligned.
    fn reset(&mut self, log: &mut PartitionLog) -> Result<(), Error> {
        let end = log.published_size();
        self.buffer_position = end;
        self.buffer_end = end;
        self.sealed_end = end;
        if self.appender.is_some() {
            let tail = log.active_bytes_from(align_down(end));
            match DirectAppender::new(end, tail) {
                Ok(appender) => self.appender = Some(appender),
                Err(error) => {
                    let path = log.active_path().to_owned();
                    return Err(log.poison_with(
                        StorageOp::PlanDirect,
                        path,
                        &io::Error::other(error),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Releases the ring's resources for this partition (its segment rolled or it closes).
    pub fn release(mut self, io: &mut DirectIo) {
        if let Some(buffer) = self.buffer.take() {
            let _ = io.writer.give_back(buffer);
        }
        for at in 0..MAX_WRITES {
            self.drop_sealed(io, at);
        }
        if let Err(error) = io.writer.unregister_file(self.slot) {
            log::warn!("rill: unregistering a segment from io_uring failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::engine::{AckLevel, Notifier, PartitionEntry, ShardControl, Ticket};
    use crate::error::Error;
    use crate::io::PortableIo;
    use crate::log::{LogConfig, Origin};
    use crate::record::{BatchBuilder, Compression};
    use crate::recycle::Recycler;
    use crate::topic::{TopicName, TopicPartition};

    /// A write whose O_DIRECT plan fails gives its buffer back to the pool and fails its
    /// tickets with the partition's poison; before, the buffer was dropped (the pool shrank
    /// for good) and the tickets never resolved. On both writers.
    #[test]
    fn a_failed_plan_keeps_the_pool_and_fails_its_tickets() {
        for (direct, _dir, log) in writers_and_logs() {
            failed_plan_round(direct, log);
        }
    }

    fn failed_plan_round(mut direct: DirectIo, mut log: PartitionLog) {
        let entry = entry_of(&log);
        let mut io = PartitionIo::open(&mut direct, &log, 0, true).unwrap();
        // Whatever the file system allows, plan as O_DIRECT would, from a 10-byte tail.
        io.appender = Some(DirectAppender::new(10, &[1; 10]).unwrap());
        let pool = direct.writer.free_buffers();
        assert!(io.start_buffer(&mut direct));

        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(1, None, Some(b"v"), &[]).unwrap();
        let mut batch = builder.build().unwrap();
        let staged = log.stage(&mut batch, Origin::Builder).unwrap();
        let ack = BatchAck::new(entry);
        ack.appended(staged.base_offset);
        ack.mark_submitted();
        let end = staged.position + staged.len;
        let batch = BatchBuf::new(batch, Recycler::new(1));
        assert!(io.stage(batch, end, ack.clone(), true));

        // The appender no longer matches the buffer's tail: planning the write fails.
        io.appender = Some(DirectAppender::new(20, &[2; 20]).unwrap());
        let refused = io.send(&mut direct, &mut log);
        assert!(
            matches!(refused, Err(Error::PartitionFailed(_))),
            "{refused:?}"
        );
        assert_eq!(direct.writer.free_buffers(), pool, "the buffer went back");
        let ticket = Ticket::new(ack, 0, AckLevel::Written);
        assert!(matches!(ticket.poll(), Err(Error::PartitionFailed(_))));
        assert!(log.poison().is_some(), "the partition stopped");
        let mut next = builder_batch();
        assert!(
            log.stage(&mut next, Origin::Builder).is_err(),
            "and takes nothing more"
        );
    }

    /// Found by the storage simulator: a completion whose write failed for lack of space and
    /// whose sync ran and failed was taken as a retryable `ENOSPC`, so a later successful sync
    /// could publish as durable earlier writes that the failed sync had covered. On both
    /// writers.
    #[test]
    fn a_failed_sync_stops_the_partition_even_when_its_write_ran_out_of_space() {
        for (direct, _dir, log) in writers_and_logs() {
            failed_sync_round(direct, log);
        }
    }

    fn failed_sync_round(mut direct: DirectIo, mut log: PartitionLog) {
        let entry = entry_of(&log);
        let mut io = PartitionIo::open(&mut direct, &log, 0, false).unwrap();
        assert!(io.start_buffer(&mut direct));
        let mut batch = builder_batch();
        let staged = log.stage(&mut batch, Origin::Builder).unwrap();
        let ack = BatchAck::new(entry);
        ack.appended(staged.base_offset);
        ack.mark_submitted();
        let end = staged.position + staged.len;
        assert!(io.stage(
            BatchBuf::new(batch, Recycler::new(1)),
            end,
            ack.clone(),
            true
        ));
        assert_eq!(io.send(&mut direct, &mut log).ok(), Some(true));

        // What the pipeline is handed in place of the kernel's answer.
        let done = Completion {
            token: 0,
            file: io.slot,
            position: 0,
            len: BLOCK,
            written: 0,
            result: Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            sync: SyncOutcome::Failed(io::Error::from_raw_os_error(libc::EIO)),
        };
        let failure = io.complete(&mut direct, &mut log, done);
        assert!(
            matches!(failure, Some(Error::PartitionFailed(_))),
            "{failure:?}"
        );
        assert!(log.poison().is_some(), "the partition stopped");
        let ticket = Ticket::new(ack, 0, AckLevel::Durable);
        assert!(matches!(ticket.poll(), Err(Error::PartitionFailed(_))));
    }

    /// Each writer (the blocking one always, io_uring where available) with a fresh
    /// partition log in a temporary directory (kept alive by the caller).
    fn writers_and_logs() -> Vec<(DirectIo, tempfile::TempDir, PartitionLog)> {
        let mut writers = vec![DirectIo::blocking(64 * 1024, Box::new(PortableIo)).unwrap()];
        match DirectIo::probe(64 * 1024, None) {
            Ok(ring) => writers.push(ring),
            Err(why) => eprintln!("io_uring part skipped: {why}"),
        }
        writers
            .into_iter()
            .map(|direct| {
                let dir = tempfile::tempdir().unwrap();
                let tp = TopicPartition::new(TopicName::new("t").unwrap(), 0);
                let log =
                    PartitionLog::open(dir.path(), tp, LogConfig::default(), Box::new(PortableIo))
                        .unwrap();
                (direct, dir, log)
            })
            .collect()
    }

    /// Three page-cache writes of one partition, each of one batch, queued together (none
    /// carries a sync). Returns the partition and its tickets.
    fn three_writes_in_flight(
        direct: &mut DirectIo,
        log: &mut PartitionLog,
    ) -> (PartitionIo, Vec<Ticket>) {
        let entry = entry_of(log);
        let mut io = PartitionIo::open(direct, log, 0, false).unwrap();
        let mut tickets = Vec::new();
        for _ in 0..3 {
            assert!(io.start_buffer(direct));
            let mut batch = builder_batch();
            let staged = log.stage(&mut batch, Origin::Builder).unwrap();
            let ack = BatchAck::new(entry.clone());
            ack.appended(staged.base_offset);
            ack.mark_submitted();
            let end = staged.position + staged.len;
            let batch = BatchBuf::new(batch, Recycler::new(1));
            assert!(io.stage(batch, end, ack.clone(), false));
            assert!(io.seal(direct, log).unwrap(), "the queue has room");
            tickets.push(Ticket::new(ack, 0, AckLevel::Written));
        }
        assert!(io.queue_ready(direct, log).unwrap());
        assert_eq!(io.queued, 3);
        assert!(
            io.slots().all(|w| matches!(w.stage, Stage::InFlight)),
            "page-cache writes without a sync go together"
        );
        // The bytes really land; the pipeline is then handed made-up completions instead.
        direct.submit().unwrap();
        for _ in 0..100 {
            if direct.in_flight() == 0 {
                break;
            }
            drop(direct.wait_one().unwrap());
        }
        assert_eq!(direct.in_flight(), 0);
        (io, tickets)
    }

    /// What the pipeline is handed for write `seq` of partition 0: success or `errno`.
    fn completion(io: &PartitionIo, seq: u32, errno: Option<i32>) -> Completion {
        let write = io.slots().find(|w| w.seq == seq).unwrap();
        let len = usize::try_from(write.end - write.start).unwrap();
        Completion {
            token: token_of(0, seq),
            file: io.slot,
            position: write.start,
            len,
            written: if errno.is_some() { 0 } else { len },
            result: errno.map_or(Ok(len), |code| Err(io::Error::from_raw_os_error(code))),
            sync: SyncOutcome::NotRequested,
        }
    }

    /// Completions in the order 2, 0, 1 with write 1 failing: write 2's success publishes
    /// nothing while 0 and 1 are out, write 0 then publishes its batch alone, and write 1's
    /// failure stops the partition, so write 2, complete and successful, is never published.
    #[test]
    fn out_of_order_completions_publish_in_order_and_nothing_after_a_failure() {
        let Some((mut direct, _dir, mut log)) = ring_and_log() else {
            return;
        };
        let (mut io, tickets) = three_writes_in_flight(&mut direct, &mut log);
        let reader = log.reader();
        let first_end = io.slots().next().unwrap().end;

        let done = completion(&io, 2, None);
        assert!(io.complete(&mut direct, &mut log, done).is_none());
        assert_eq!(
            reader.written_offset(),
            0,
            "write 2 waits for writes 0 and 1"
        );
        assert!(matches!(tickets[2].poll(), Ok(None)));

        let done = completion(&io, 0, None);
        assert!(io.complete(&mut direct, &mut log, done).is_none());
        assert_eq!(reader.written_offset(), 1, "write 0 published, alone");
        assert_eq!(log.published_size(), first_end);
        assert!(matches!(tickets[0].poll(), Ok(Some(0))));

        let done = completion(&io, 1, Some(libc::EIO));
        let failure = io.complete(&mut direct, &mut log, done);
        assert!(
            matches!(failure, Some(Error::PartitionFailed(_))),
            "{failure:?}"
        );
        assert_eq!(reader.written_offset(), 1, "nothing after the failed write");
        assert_eq!(log.published_size(), first_end);
        for ticket in &tickets[1..] {
            assert!(matches!(ticket.poll(), Err(Error::PartitionFailed(_))));
        }
        assert_eq!(io.queued, 0, "every write retired");
        assert!(!io.is_busy());
    }

    /// Write 1 runs out of space while 0 and 2 are in flight: every batch fails with the
    /// storage error, new batches wait, and once the last write is back (its success is not
    /// published) the staging is undone: the next batch gets offset 0 again.
    #[test]
    fn running_out_of_space_mid_queue_undoes_the_staging_once_nothing_is_in_flight() {
        let Some((mut direct, _dir, mut log)) = ring_and_log() else {
            return;
        };
        let (mut io, tickets) = three_writes_in_flight(&mut direct, &mut log);
        let reader = log.reader();

        let done = completion(&io, 1, Some(libc::ENOSPC));
        let failure = io.complete(&mut direct, &mut log, done);
        assert!(
            matches!(&failure, Some(Error::StorageFull { .. })),
            "{failure:?}"
        );
        assert!(io.waits_for_writes(), "writes 0 and 2 are still in flight");
        for ticket in &tickets {
            let outcome = ticket.poll();
            assert!(
                matches!(&outcome, Err(Error::StorageFull { .. })),
                "{outcome:?}"
            );
        }
        let done = completion(&io, 2, None);
        assert!(io.complete(&mut direct, &mut log, done).is_none());
        assert!(io.waits_for_writes());
        let done = completion(&io, 0, None);
        assert!(io.complete(&mut direct, &mut log, done).is_none());
        assert!(!io.waits_for_writes(), "nothing in flight: writes resume");
        assert_eq!(reader.written_offset(), 0, "nothing was published");
        assert_eq!(log.published_size(), 0);
        assert!(log.poison().is_none());
        // Writes 0 and 2 did land: cut, so that no stale batch can line up after the end.
        let file = std::fs::read(log.active_path()).unwrap();
        assert!(
            file.iter().all(|&b| b == 0),
            "bytes of undone writes left in the segment"
        );
        let mut batch = builder_batch();
        let staged = log.stage(&mut batch, Origin::Builder).unwrap();
        assert_eq!(
            staged.base_offset, 0,
            "the failed offsets are assigned again"
        );
        assert_eq!(staged.position, 0);
    }

    /// A ring and a fresh partition log in a temporary directory (kept alive by the caller),
    /// or `None` where io_uring is not available.
    fn ring_and_log() -> Option<(DirectIo, tempfile::TempDir, PartitionLog)> {
        let Ok(direct) = DirectIo::probe(64 * 1024, None) else {
            eprintln!("skipped: io_uring is not available here");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new(TopicName::new("t").unwrap(), 0);
        let log =
            PartitionLog::open(dir.path(), tp, LogConfig::default(), Box::new(PortableIo)).unwrap();
        Some((direct, dir, log))
    }

    /// The registry entry a shard would keep for `log`.
    fn entry_of(log: &PartitionLog) -> Arc<PartitionEntry> {
        Arc::new(PartitionEntry {
            tp: log.partition().clone(),
            reader: log.reader(),
            shard: Arc::new(ShardControl::new(0)),
            notifier: Notifier::default(),
            topic_notifier: Arc::new(Notifier::default()),
            deleted: std::sync::atomic::AtomicBool::new(false),
            parked: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn builder_batch() -> Vec<u8> {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(2, None, Some(b"w"), &[]).unwrap();
        builder.build().unwrap()
    }
}
