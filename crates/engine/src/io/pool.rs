//! What both writers share: the staging buffers they lend out, the file slots they write to,
//! and the completions they hand back.
//!
//! The shard's write pipeline (see `engine::direct`) speaks only in these types, so the io_uring
//! writer ([`super::uring`]) and the blocking one ([`super::blocking`]) can be swapped under it.

use std::fmt;
use std::io;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use super::aligned::{AlignedBuf, AlignedBufError, BufferFull};

/// Distinguishes writers so that a buffer cannot be queued on a writer that did not lend it.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh identity for a writer's pool.
pub(super) fn next_pool_id() -> u64 {
    NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed)
}

/// Allocates one staging buffer of `size` bytes.
pub(super) fn allocate(size: usize) -> io::Result<AlignedBuf> {
    AlignedBuf::new(size).map_err(|e| {
        let kind = match e {
            AlignedBufError::Capacity(_) => io::ErrorKind::InvalidInput,
            AlignedBufError::OutOfMemory(_) => io::ErrorKind::OutOfMemory,
        };
        io::Error::new(kind, e)
    })
}

/// A file registered in a writer's file table.
///
/// The generation makes a slot handle from before an unregister useless, so a stale handle
/// cannot write into whatever file reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileSlot {
    pub(super) index: u32,
    pub(super) generation: u32,
}

impl FileSlot {
    /// The slot's index in the registered file table.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// A staging buffer lent out of a writer's pool.
///
/// It is filled through its own methods and read through `Deref<Target = AlignedBuf>`; there is
/// deliberately no `DerefMut`, because swapping the inner buffer for another would detach it
/// from the memory the kernel registered. Give it back to its writer (`queue_write` or
/// `give_back`): dropping it frees the memory and leaves the pool one buffer
/// smaller for the life of the writer.
#[derive(Debug)]
pub struct PooledBuf {
    pub(super) pool: u64,
    pub(super) index: u16,
    pub(super) buf: AlignedBuf,
}

impl PooledBuf {
    /// The buffer's index in the pool (and in the kernel's registered buffer table).
    #[must_use]
    pub fn index(&self) -> u16 {
        self.index
    }

    /// See [`AlignedBuf::extend_from_slice`].
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), BufferFull> {
        self.buf.extend_from_slice(bytes)
    }

    /// See [`AlignedBuf::spare_capacity_mut`].
    #[must_use]
    pub fn spare_capacity_mut(&mut self) -> &mut [u8] {
        self.buf.spare_capacity_mut()
    }

    /// See [`AlignedBuf::commit`].
    pub fn commit(&mut self, n: usize) -> Result<(), BufferFull> {
        self.buf.commit(n)
    }

    /// See [`AlignedBuf::as_mut_slice`].
    #[must_use]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buf.as_mut_slice()
    }

    /// See [`AlignedBuf::truncate`].
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// See [`AlignedBuf::clear`].
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// See [`AlignedBuf::pad_to_block`].
    pub fn pad_to_block(&mut self) -> usize {
        self.buf.pad_to_block()
    }
}

impl Deref for PooledBuf {
    type Target = AlignedBuf;

    fn deref(&self) -> &AlignedBuf {
        &self.buf
    }
}

/// Why a write was refused before reaching the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueErrorKind {
    /// The buffer belongs to another writer's pool.
    ForeignBuffer,
    /// The file slot was unregistered (or belongs to another writer).
    StaleFile,
    /// The buffer holds no bytes.
    Empty,
    /// The file was opened with `O_DIRECT` and the position or length is not block-aligned.
    Misaligned,
    /// The submission queue stayed full after one submit; reap completions and retry.
    QueueFull,
}

/// A refused write, with the buffer handed back so that nothing is lost.
#[derive(Debug)]
pub struct QueueError {
    /// Why.
    pub kind: QueueErrorKind,
    pub(super) buf: PooledBuf,
}

impl QueueError {
    /// The buffer the refused write would have used.
    #[must_use]
    pub fn into_buf(self) -> PooledBuf {
        self.buf
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            QueueErrorKind::ForeignBuffer => "write refused: buffer belongs to another writer",
            QueueErrorKind::StaleFile => "write refused: file slot is not registered",
            QueueErrorKind::Empty => "write refused: buffer is empty",
            QueueErrorKind::Misaligned => {
                "write refused: O_DIRECT file needs 4096-aligned position and length"
            }
            QueueErrorKind::QueueFull => "write refused: submission queue full, reap first",
        })
    }
}

impl std::error::Error for QueueError {}

/// What became of the `fdatasync` linked to a write.
#[derive(Debug)]
pub enum SyncOutcome {
    /// The write was queued without a sync.
    NotRequested,
    /// The sync ran and succeeded: the written bytes are durable.
    Synced,
    /// The sync did not run because the write before it failed (`ECANCELED`).
    Cancelled,
    /// The sync ran and failed.
    Failed(io::Error),
}

/// One finished write, returned by a writer's `reap` and `wait`.
#[derive(Debug)]
pub struct Completion {
    /// The caller's token from the writer's `queue_write`.
    pub token: u64,
    /// The file written.
    pub file: FileSlot,
    /// Where the write started.
    pub position: u64,
    /// Bytes the write asked for.
    pub len: usize,
    /// Bytes that did land, counting every attempt; equals `len` on success.
    pub written: usize,
    /// `Ok(len)` when every byte was written, otherwise the error that stopped it.
    pub result: io::Result<usize>,
    /// The linked sync's fate.
    pub sync: SyncOutcome,
}

impl Completion {
    /// Whether every byte was written and, if a sync was asked for, made durable.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.result.is_ok() && matches!(self.sync, SyncOutcome::NotRequested | SyncOutcome::Synced)
    }
}

