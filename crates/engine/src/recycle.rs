//! Batch buffers that find their way back to the producer that filled them.
//!
//! A producer encodes each batch into a `Vec<u8>` of its own. The batch travels to the shard,
//! is copied into an aligned staging buffer for the disk, and is then kept as it is in the
//! partition's in-memory tail until newer batches push it out. Freeing it there and allocating
//! a fresh one for the next batch made every batch's pages new to the process: page faults
//! were about a sixth of a producer's CPU at 1 KiB records.
//!
//! So a [`BatchBuf`] remembers its home, the [`Recycler`] of the producer lane that filled it,
//! and dropping it puts its memory back there, whoever drops it last: the shard (after the
//! copy, when no tail is kept), the tail (on eviction) or a consumer that still held a view of
//! an evicted batch. The producer takes from its recycler before it allocates, so in steady
//! state no batch allocates. The recycler is bounded: a buffer that finds it full is freed, so
//! memory parked there never exceeds `capacity` buffers per lane.
//!
//! The queue is `crossbeam_queue::ArrayQueue`, a bounded lock-free queue, because the last
//! owner of a buffer may be any thread; no lock is taken on the data path.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

/// One producer lane's spare batch buffers.
#[derive(Debug)]
pub(crate) struct Recycler {
    free: ArrayQueue<Vec<u8>>,
}

impl Recycler {
    /// A recycler that keeps at most `capacity` spare buffers (at least one).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            free: ArrayQueue::new(capacity.max(1)),
        })
    }

    /// A spare buffer, emptied, if one came back.
    pub fn take(&self) -> Option<Vec<u8>> {
        let mut buf = self.free.pop()?;
        buf.clear();
        Some(buf)
    }

    fn give_back(&self, buf: Vec<u8>) {
        // Full: this buffer is simply freed; the bound is the point.
        let _ = self.free.push(buf);
    }

    #[cfg(test)]
    fn spare(&self) -> usize {
        self.free.len()
    }
}

/// An encoded batch whose memory returns to its producer's [`Recycler`] when dropped.
#[derive(Debug, Default)]
pub(crate) struct BatchBuf {
    bytes: Vec<u8>,
    home: Option<Arc<Recycler>>,
}

impl BatchBuf {
    pub fn new(bytes: Vec<u8>, home: Arc<Recycler>) -> Self {
        Self {
            bytes,
            home: Some(home),
        }
    }

    /// Memory the buffer holds, which is what keeping it costs (its length may be less).
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

impl Deref for BatchBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl DerefMut for BatchBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl Drop for BatchBuf {
    fn drop(&mut self) {
        if let Some(home) = self.home.take()
            && self.bytes.capacity() > 0
        {
            home.give_back(std::mem::take(&mut self.bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dropped_buffers_go_home_up_to_the_bound() {
        let home = Recycler::new(2);
        for i in 0..3 {
            drop(BatchBuf::new(vec![i; 100], home.clone()));
        }
        assert_eq!(home.spare(), 2, "the third buffer found the recycler full");
        let again = home.take().unwrap();
        assert!(again.is_empty() && again.capacity() >= 100);
        drop(BatchBuf::default());
        assert_eq!(home.spare(), 1);
    }

    #[test]
    fn a_buffer_dropped_on_another_thread_comes_back() {
        let home = Recycler::new(4);
        let buf = BatchBuf::new(vec![7; 10], home.clone());
        std::thread::spawn(move || drop(buf)).join().unwrap();
        assert_eq!(home.take().map(|b| b.capacity() >= 10), Some(true));
    }
}
