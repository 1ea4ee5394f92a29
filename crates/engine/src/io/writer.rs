//! Either writer behind one type: the interface the shard's write pipeline drives, whichever
//! backend carries it out.
//!
//! The pipeline calls the same methods on both; each call goes to the io_uring writer
//! ([`super::uring::UringWriter`]) or the blocking one ([`super::blocking::BlockingWriter`]).
//! The only difference the pipeline sees is time: an io_uring write completes later, a blocking
//! one is done when `submit` returns.

use std::io;
use std::os::fd::AsFd;

use super::blocking::BlockingWriter;
use super::pool::{Completion, FileSlot, PooledBuf, QueueError};
use super::uring::UringWriter;

/// The writer a shard's pipeline drives.
// One per shard for its whole life: the size difference costs nothing, while boxing the ring
// would add an indirection to every call of the write path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Writer {
    /// Asynchronous writes through an io_uring.
    Uring(UringWriter),
    /// Positional writes and `fdatasync` on the calling thread.
    Blocking(BlockingWriter),
}

/// Calls the same method on whichever writer it is.
macro_rules! delegate {
    ($self:ident, $writer:ident => $call:expr) => {
        match $self {
            Writer::Uring($writer) => $call,
            Writer::Blocking($writer) => $call,
        }
    };
}

impl Writer {
    /// The backend's name for logs and reports.
    #[must_use]
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Uring(_) => "io_uring",
            Self::Blocking(_) => "portable",
        }
    }

    /// Bytes per staging buffer.
    #[must_use]
    pub fn buffer_size(&self) -> usize {
        delegate!(self, w => w.buffer_size())
    }

    /// Buffers ready to be taken, counting those the pool may still allocate.
    #[must_use]
    pub fn free_buffers(&self) -> usize {
        delegate!(self, w => w.free_buffers())
    }

    /// Writes queued and not yet reaped.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        delegate!(self, w => w.in_flight())
    }

    /// Whether completions wait to be reaped or writes to be submitted: no reason to sleep.
    pub fn has_unfinished_business(&mut self) -> bool {
        delegate!(self, w => w.has_unfinished_business())
    }

    /// Puts `file` into a free slot of the writer's file table.
    pub fn register_file(&mut self, file: &impl AsFd) -> io::Result<FileSlot> {
        delegate!(self, w => w.register_file(file))
    }

    /// Empties `slot`.
    pub fn unregister_file(&mut self, slot: FileSlot) -> io::Result<()> {
        delegate!(self, w => w.unregister_file(slot))
    }

    /// Lends out an empty staging buffer, or `None` when all are in use.
    pub fn take_buffer(&mut self) -> Option<PooledBuf> {
        delegate!(self, w => w.take_buffer())
    }

    /// Returns an unused buffer to the pool; a buffer from another writer is handed back.
    pub fn give_back(&mut self, buf: PooledBuf) -> Result<(), PooledBuf> {
        delegate!(self, w => w.give_back(buf))
    }

    /// Queues a write of `buf` at `position` in `file`, with an fdatasync after it when `sync`.
    pub fn queue_write(
        &mut self,
        file: FileSlot,
        position: u64,
        buf: PooledBuf,
        sync: bool,
        token: u64,
    ) -> Result<(), QueueError> {
        delegate!(self, w => w.queue_write(file, position, buf, sync, token))
    }

    /// Sends (io_uring) or performs (blocking) every queued write.
    pub fn submit(&mut self) -> io::Result<usize> {
        delegate!(self, w => w.submit())
    }

    /// Collects finished writes into `out` without blocking; returns how many were added.
    pub fn reap(&mut self, out: &mut Vec<Completion>) -> usize {
        delegate!(self, w => w.reap(out))
    }

    /// Submits what is queued and collects at least `min_complete` completions (fewer if
    /// fewer are in flight) into `out`.
    pub fn wait(&mut self, min_complete: usize, out: &mut Vec<Completion>) -> io::Result<usize> {
        delegate!(self, w => w.wait(min_complete, out))
    }
}
