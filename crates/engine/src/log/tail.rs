//! The in-memory tail: the newest written batches of a partition (under `Visibility::Appended`,
//! the newest staged ones, published before their write completes), kept in memory for the
//! consumers that keep up.
//!
//! With O_DIRECT writes nothing written stays in the page cache, so a consumer reading the
//! newest records through the segment's map would fault every page back in from the disk it was
//! just written to. Instead, each completed write publishes the batches it carried, one chunk
//! per batch. The chunk is the producer's own batch buffer, moved rather than copied: the shard
//! copies each batch once, into the aligned staging buffer, and the tail keeps the original.
//! Readers whose offset falls in a chunk view it in place; older offsets are read from the
//! segments as before. The chunk list is replaced whole on each publication through
//! `crossbeam-epoch`, and chunks are `Arc`s, so a reader holding one keeps it alive after it is
//! evicted; the last owner's drop sends the buffer back to its producer for reuse.
//!
//! The bound is on memory, not on batch bytes: a chunk costs its buffer's capacity, which for
//! a batch handed over half full (a linger, a flush) is more than its length.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_epoch::{self as epoch, Atomic, Owned};

use super::segment::Segment;
use crate::recycle::BatchBuf;

/// One written batch, in memory.
#[derive(Debug)]
pub(crate) struct TailChunk {
    /// The segment the bytes were written to, for naming the file in errors.
    pub segment: Arc<Segment>,
    /// File position of `bytes[0]` in that segment.
    pub position: u64,
    pub base_offset: i64,
    pub next_offset: i64,
    pub bytes: BatchBuf,
}

#[derive(Debug, Default)]
struct Chunks {
    list: Vec<Arc<TailChunk>>,
}

/// The newest chunks of a partition, oldest first.
#[derive(Debug)]
pub(crate) struct Tail {
    chunks: Atomic<Chunks>,
    max_bytes: usize,
}

impl Tail {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            chunks: Atomic::new(Chunks::default()),
            max_bytes,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// The chunk holding `offset`, if it is still in memory.
    pub fn find(&self, offset: i64) -> Option<Arc<TailChunk>> {
        let guard = epoch::pin();
        let chunks = self.chunks.load(Ordering::Acquire, &guard);
        // SAFETY: the list is only replaced by `push`, which retire the old one with
        // `defer_destroy`; this thread is pinned until `guard` drops at the end of this
        // function, and only an `Arc` cloned out of the list leaves it.
        let chunks = unsafe { chunks.as_ref() }?;
        let after = chunks.list.partition_point(|c| c.base_offset <= offset);
        let chunk = chunks.list.get(after.checked_sub(1)?)?;
        (offset < chunk.next_offset).then(|| chunk.clone())
    }

    /// The first offset the tail holds, if it holds any.
    pub fn oldest_base(&self) -> Option<i64> {
        let guard = epoch::pin();
        let chunks = self.chunks.load(Ordering::Acquire, &guard);
        // SAFETY: as in `find`.
        let chunks = unsafe { chunks.as_ref() }?;
        chunks.list.first().map(|chunk| chunk.base_offset)
    }

    /// Publishes chunks that follow each other (called by the writer only), evicting the
    /// oldest beyond the bound. One publication per completed write, however many batches it
    /// carried.
    pub fn extend(&self, new: impl IntoIterator<Item = TailChunk>) {
        if !self.is_enabled() {
            return;
        }
        let guard = epoch::pin();
        let current = self.chunks.load(Ordering::Acquire, &guard);
        // SAFETY: as in `find`; only the single writer calls `extend`, so the list
        // loaded here is the one it replaces below.
        let mut list = unsafe { current.as_ref() }
            .map(|c| c.list.clone())
            .unwrap_or_default();
        let mut added = false;
        for chunk in new {
            let continues = list
                .last()
                .is_none_or(|last| last.next_offset == chunk.base_offset);
            if !continues {
                list.clear();
            }
            list.push(Arc::new(chunk));
            added = true;
        }
        if !added {
            return;
        }
        let mut total: usize = list.iter().map(|c| c.bytes.capacity()).sum();
        let mut evict = 0;
        while total > self.max_bytes && evict + 1 < list.len() {
            total -= list[evict].bytes.capacity();
            evict += 1;
        }
        list.drain(..evict);
        self.replace(Chunks { list }, &guard);
    }

    /// Drops every chunk at or after `offset` (called by the writer only, when batches that
    /// were published at staging are undone).
    pub fn truncate_from(&self, offset: i64) {
        if !self.is_enabled() {
            return;
        }
        let guard = epoch::pin();
        let current = self.chunks.load(Ordering::Acquire, &guard);
        // SAFETY: as in `extend`: the single writer replaces the list it loaded here.
        let Some(list) = (unsafe { current.as_ref() }).map(|c| &c.list) else {
            return;
        };
        if list.last().is_none_or(|last| last.next_offset <= offset) {
            return;
        }
        let kept = list
            .iter()
            .filter(|chunk| chunk.next_offset <= offset)
            .cloned()
            .collect();
        self.replace(Chunks { list: kept }, &guard);
    }

    fn replace(&self, chunks: Chunks, guard: &epoch::Guard) {
        let old = self
            .chunks
            .swap(Owned::new(chunks), Ordering::AcqRel, guard);
        if !old.is_null() {
            // SAFETY: `old` is unlinked by the swap; readers pinned before it are what
            // `defer_destroy` waits for.
            unsafe { guard.defer_destroy(old) };
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        // SAFETY: `&mut self` in drop: no reader can be pinned on this tail any more.
        let chunks = unsafe { self.chunks.load(Ordering::Acquire, epoch::unprotected()) };
        if !chunks.is_null() {
            // SAFETY: as above, this is the last reference to the list.
            drop(unsafe { chunks.into_owned() });
        }
    }
}
