//! A partition's watermarks: how far the log is written, how far it is durable, and from
//! those, how far consumers may read.
//!
//! The writer publishes each watermark with a release store after the bytes below it are
//! complete (and, for `durable`, synced); readers load with acquire. A reader that loads a
//! watermark therefore sees every byte of every batch below it: the batch was written, and its
//! segment's size published, before the watermark moved.

use crate::sync::{AtomicI64, Ordering};

/// Which watermark bounds what consumers see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Records are readable once written to the file (in the page cache): lowest latency.
    #[default]
    Written,
    /// Records are readable only once synced: a consumer never sees a record that a power
    /// loss could take back.
    Durable,
}

#[derive(Debug)]
pub(crate) struct Watermarks {
    written: AtomicI64,
    durable: AtomicI64,
    visibility: Visibility,
}

impl Watermarks {
    pub fn new(offset: i64, visibility: Visibility) -> Self {
        Self {
            written: AtomicI64::new(offset),
            durable: AtomicI64::new(offset),
            visibility,
        }
    }

    /// Offsets below this are complete in the file.
    pub fn written(&self) -> i64 {
        self.written.load(Ordering::Acquire)
    }

    /// Offsets below this are synced to disk.
    pub fn durable(&self) -> i64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Offsets below this may be handed to consumers.
    pub fn visible(&self) -> i64 {
        match self.visibility {
            Visibility::Written => self.written(),
            Visibility::Durable => self.durable(),
        }
    }

    /// Called by the writer only, after the bytes below `offset` are complete.
    pub fn publish_written(&self, offset: i64) {
        debug_assert!(
            offset >= self.written.load(Ordering::Relaxed),
            "written watermark moved back"
        );
        self.written.store(offset, Ordering::Release);
    }

    /// Called by the writer only, after a sync that covered everything below `offset`.
    pub fn publish_durable(&self, offset: i64) {
        debug_assert!(
            offset <= self.written.load(Ordering::Relaxed),
            "durable ahead of written"
        );
        self.durable.store(offset, Ordering::Release);
    }
}
