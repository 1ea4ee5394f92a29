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
//! Per partition at most one write is in flight. While it is, new batches keep being staged
//! into the partition's next buffer, so a busy partition writes large buffers back to back and
//! an idle one writes small ones at once. One write at a time per partition is also what the
//! `O_DIRECT` tail re-write needs: the next write starts by re-writing the block the previous
//! one ended in, and must not race it. Writes of different partitions are in flight together,
//! and one `submit` per pass sends all of them.
//!
//! Completion order is the kernel's; publication order is the log's: a completed write
//! publishes exactly the batches it carried (offsets were assigned at staging), and with its
//! linked fdatasync it also moves the durable watermark.
//!
//! Failures are fail-stop: a write or sync that fails for any reason but a full disk on the
//! write poisons the partition's log, and every batch in flight or staged fails with that
//! poison; nothing is forgotten and no offset is handed out twice. A write refused for lack of
//! space fails the batches it and the open buffer carried, and the log undoes their staging
//! (nothing else is in flight then), so writes resume once space is freed.

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

/// The most staging buffers a shard's pool grows to: each busy partition holds one in flight and
/// fills another, so this lets 16 partitions per shard pipeline before the pool is the limit.
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

/// A write in flight: where the log ends once it lands, and whose batches it carries.
struct InFlight {
    end: u64,
    acks: Vec<Arc<BatchAck>>,
    /// The batches themselves, for the log's in-memory tail (empty when it keeps none).
    batches: Vec<BatchBuf>,
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
    /// Emptied lists of a completed write, reused so that queueing a write allocates nothing.
    spare_acks: Vec<Arc<BatchAck>>,
    spare_batches: Vec<BatchBuf>,
    in_flight: Option<InFlight>,
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
            spare_acks: Vec::new(),
            spare_batches: Vec::new(),
            in_flight: None,
        })
    }

    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some() || self.buffer.as_ref().is_some_and(|b| !b.is_empty())
    }

    pub fn has_in_flight(&self) -> bool {
        self.in_flight.is_some()
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

    /// Queues the open buffer as a write, unless one is already in flight.
    ///
    /// A write that cannot be planned or queued stops the partition: its buffer goes back to
    /// the pool and every batch it carried fails with the poison, which is returned.
    pub fn queue(&mut self, io: &mut DirectIo, log: &mut PartitionLog) -> Result<bool, Error> {
        if self.in_flight.is_some() || self.buffer_acks.is_empty() {
            return Ok(false);
        }
        let Some(mut buffer) = self.buffer.take() else {
            return Ok(false);
        };
        let planned = match self.appender.as_mut() {
            Some(appender) => appender
                .seal(&mut buffer)
                .map(|plan| (plan.position, plan.end))
                .map_err(|e| (StorageOp::PlanDirect, io::Error::other(e))),
            None => Ok((self.buffer_position, self.buffer_end)),
        };
        let refused = match planned {
            Ok((position, end)) => io
                .writer
                .queue_write(self.slot, position, buffer, self.buffer_sync, self.token)
                .map(|()| end)
                .map_err(|refused| {
                    let reason = io::Error::other(refused.to_string());
                    let _ = io.writer.give_back(refused.into_buf());
                    (StorageOp::Queue, reason)
                }),
            Err(failure) => {
                let _ = io.writer.give_back(buffer);
                Err(failure)
            }
        };
        let end = match refused {
            Ok(end) => end,
            Err((op, reason)) => {
                let error = log.poison_with(op, log.active_path().to_owned(), &reason);
                self.fail_all(&error);
                return Err(error);
            }
        };
        self.in_flight = Some(InFlight {
            end,
            acks: std::mem::replace(&mut self.buffer_acks, std::mem::take(&mut self.spare_acks)),
            batches: std::mem::replace(
                &mut self.buffer_batches,
                std::mem::take(&mut self.spare_batches),
            ),
        });
        self.buffer_sync = false;
        Ok(true)
    }

    /// Applies a completion of this partition's write to the log. Returns the failure, if the
    /// write failed, after failing every batch it and the open buffer carried.
    pub fn complete(
        &mut self,
        io: &mut DirectIo,
        log: &mut PartitionLog,
        done: &Completion,
    ) -> Option<Error> {
        let InFlight {
            end,
            mut acks,
            mut batches,
        } = self.in_flight.take()?;
        if let Some(storage) = &io.storage {
            storage.uring_completed(log.active_path(), log.published_size()..end, done);
        }
        // The path is copied only for an error: a copy per completion was an allocation per
        // write.
        let path = |log: &PartitionLog| log.active_path().to_owned();
        let stopped = log.poison().map(|poison| poison.error(log.partition()));
        let error = match (&done.result, &done.sync, stopped) {
            // Stopped meanwhile (a failure elsewhere on the path): this write's batches can
            // never be published, so they fail with the partition.
            (_, _, Some(stopped)) => stopped,
            // A sync that ran and failed stops the partition whatever its write said: it
            // covered earlier unsynced writes too, whose pages the kernel may have dropped.
            (_, SyncOutcome::Failed(error), None) => {
                log.poison_with(StorageOp::Sync, path(log), error)
            }
            (Err(error), _, None) if is_storage_full(error) => Error::io(
                "write segment",
                path(log),
                io::Error::from_raw_os_error(libc::ENOSPC),
            ),
            (Err(error), _, None) => log.poison_with(StorageOp::Write, path(log), error),
            (Ok(_), _, None) => {
                let synced = matches!(done.sync, SyncOutcome::Synced);
                log.complete_through(end, synced, &mut batches);
                self.keep_spares(acks, batches);
                return None;
            }
        };
        for ack in &acks {
            ack.fail_with(&error);
        }
        let failed = acks.len() + self.buffer_acks.len();
        self.fail_all(&error);
        acks.clear();
        batches.clear();
        self.keep_spares(acks, batches);
        if let Some(buffer) = self.buffer.take() {
            let _ = io.writer.give_back(buffer);
        }
        if log.poison().is_none() {
            // Out of space: nothing of this log is in flight any more and every staged batch
            // just failed, so their staging can be undone and writes resume once space is freed.
            let resumed = log
                .discard_failed_writes(failed)
                .and_then(|()| self.reset(log));
            if let Err(error) = resumed {
                return Some(error);
            }
        }
        Some(error)
    }

    /// Fails every batch of the open buffer with `error` and empties it.
    pub fn fail_all(&mut self, error: &Error) {
        for ack in self.buffer_acks.drain(..) {
            ack.fail_with(error);
        }
        self.buffer_batches.clear();
        self.buffer_sync = false;
    }

    /// Keeps a completed write's emptied lists for the next write.
    fn keep_spares(&mut self, mut acks: Vec<Arc<BatchAck>>, mut batches: Vec<BatchBuf>) {
        acks.clear();
        batches.clear();
        self.spare_acks = acks;
        self.spare_batches = batches;
    }

    /// Starts planning again from what the log has published (after a write ran out of
    /// space). An O_DIRECT file whose tail cannot be planned stops the partition: without an
    /// appender every later write would be refused as misaligned.
    fn reset(&mut self, log: &mut PartitionLog) -> Result<(), Error> {
        let end = log.published_size();
        self.buffer_position = end;
        self.buffer_end = end;
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
        let refused = io.queue(&mut direct, &mut log);
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
        assert_eq!(io.queue(&mut direct, &mut log).ok(), Some(true));

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
        let failure = io.complete(&mut direct, &mut log, &done);
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

    /// The registry entry a shard would keep for `log`.
    fn entry_of(log: &PartitionLog) -> Arc<PartitionEntry> {
        Arc::new(PartitionEntry {
            tp: log.partition().clone(),
            reader: log.reader(),
            shard: Arc::new(ShardControl::new(0)),
            notifier: Notifier::default(),
            topic_notifier: Arc::new(Notifier::default()),
            deleted: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn builder_batch() -> Vec<u8> {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(2, None, Some(b"w"), &[]).unwrap();
        builder.build().unwrap()
    }
}
