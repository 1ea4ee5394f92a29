//! A partition's watermarks: how far the log is sequenced in memory, how far it is written,
//! how far it is durable, and from those, how far consumers may read.
//!
//! The writer publishes each watermark with a release store after the bytes below it are
//! complete where that watermark says (in the in-memory tail for `appended`, in the file for
//! `written`, synced for `durable`); readers load with acquire. A reader that loads a watermark
//! therefore sees every byte of every batch below it: the batch was put in the tail, or
//! written and its segment's size published, before the watermark moved.

use crate::sync::{AtomicI64, Ordering};

/// Which watermark bounds what consumers see, and so what a crash can take back from a
/// consumer that already read it.
///
/// Whatever the level, a crash never takes back a record acknowledged
/// [`AckLevel::Durable`](crate::AckLevel::Durable), never returns a torn or corrupt batch
/// after recovery, and leaves each partition a prefix of what was appended: recovery cuts the
/// log at the first batch that did not reach the disk whole, and offsets from there on are
/// assigned again to the next records produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Records are readable as soon as their shard has sequenced them in memory (offsets
    /// assigned, batch in the partition's in-memory tail), before their write is submitted or
    /// completes: the lowest latency, as Kafka consumers reading what is only in the page cache.
    ///
    /// What a crash can take back from a consumer: the end of the process (a panic, `kill -9`)
    /// takes back every record whose write had not completed, and a power loss or kernel crash
    /// everything not yet synced. A consumer may therefore have read records, and acted on
    /// them, that no longer exist after a restart, and their offsets then name other records.
    /// Needs the in-memory tail (`LogConfig::tail_bytes` > 0); a
    /// record evicted from the tail before its write completes becomes readable when it does.
    Appended,
    /// Records are readable once written to the file (the write completed, in the page cache
    /// or, with `O_DIRECT`, on the device).
    ///
    /// What a crash can take back from a consumer: nothing on the end of the process alone
    /// (the page cache outlives it); a power loss or kernel crash takes back every record not
    /// yet synced (with `O_DIRECT`, whatever the device's volatile cache still held).
    #[default]
    Written,
    /// Records are readable only once synced: a crash of any kind takes back nothing a
    /// consumer saw.
    Durable,
}

#[derive(Debug)]
pub(crate) struct Watermarks {
    appended: AtomicI64,
    written: AtomicI64,
    durable: AtomicI64,
    visibility: Visibility,
}

impl Watermarks {
    pub fn new(offset: i64, visibility: Visibility) -> Self {
        Self {
            appended: AtomicI64::new(offset),
            written: AtomicI64::new(offset),
            durable: AtomicI64::new(offset),
            visibility,
        }
    }

    /// Offsets below this are sequenced and in the in-memory tail (or written).
    pub fn appended(&self) -> i64 {
        self.appended.load(Ordering::Acquire)
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
            Visibility::Appended => self.appended(),
            Visibility::Written => self.written(),
            Visibility::Durable => self.durable(),
        }
    }

    /// Called by the writer only, after the batches below `offset` are in the in-memory tail.
    pub fn publish_appended(&self, offset: i64) {
        debug_assert!(
            offset >= self.appended.load(Ordering::Relaxed),
            "appended watermark moved back"
        );
        self.appended.store(offset, Ordering::Release);
    }

    /// Called by the writer only: batches at and after `offset` were undone (their write ran
    /// out of space) and left the tail.
    pub fn retract_appended(&self, offset: i64) {
        if self.appended.load(Ordering::Relaxed) > offset {
            self.appended.store(offset, Ordering::Release);
        }
    }

    /// Called by the writer only, after the bytes below `offset` are complete. The appended
    /// watermark follows, for writes that never went through the tail (a log without one, or
    /// a batch too large to keep).
    pub fn publish_written(&self, offset: i64) {
        debug_assert!(
            offset >= self.written.load(Ordering::Relaxed),
            "written watermark moved back"
        );
        self.written.store(offset, Ordering::Release);
        if self.appended.load(Ordering::Relaxed) < offset {
            self.appended.store(offset, Ordering::Release);
        }
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

/// Model checks of the publication protocol: the writer writes a batch's bytes, then moves a
/// watermark; loom explores every interleaving and flags a read of bytes that is not ordered
/// after their write, so a too-weak ordering fails the model even if the values look right.
///
/// `RUSTFLAGS="--cfg loom --cfg crossbeam_loom" cargo test --release -p rill-engine --lib loom_`
#[cfg(all(test, loom))]
mod loom_model {
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    use super::{Visibility, Watermarks};

    const BATCHES: usize = 3;

    struct Log {
        marks: Watermarks,
        bytes: [UnsafeCell<u8>; BATCHES],
    }

    fn write_and_publish(log: &Log) {
        for (i, cell) in log.bytes.iter().enumerate() {
            // SAFETY: only this thread writes, and each byte is written before the watermark
            // that covers it is published; readers touch only bytes below a watermark they saw.
            cell.with_mut(|byte| unsafe { *byte = i as u8 + 1 });
            // Sequenced into the tail first (the bytes are in memory), written after.
            log.marks.publish_appended(i as i64 + 1);
            log.marks.publish_written(i as i64 + 1);
            if i == 1 {
                log.marks.publish_durable(2);
            }
        }
    }

    fn read_visible(log: &Log) {
        let visible = log.marks.visible();
        for (i, cell) in log.bytes.iter().enumerate().take(visible as usize) {
            // SAFETY: the byte is below a watermark loaded with acquire, so its write happened
            // before this read; loom reports a data race if that ever does not hold.
            let byte = cell.with(|byte| unsafe { *byte });
            assert_eq!(
                byte,
                i as u8 + 1,
                "a batch below the watermark was incomplete"
            );
        }
        let durable = log.marks.durable();
        assert!(
            durable <= log.marks.written(),
            "durable seen ahead of written"
        );
    }

    fn model(visibility: Visibility) {
        loom::model(move || {
            let log = Arc::new(Log {
                marks: Watermarks::new(0, visibility),
                bytes: std::array::from_fn(|_| UnsafeCell::new(0)),
            });
            let writer = {
                let log = log.clone();
                thread::spawn(move || write_and_publish(&log))
            };
            let reader = {
                let log = log.clone();
                thread::spawn(move || read_visible(&log))
            };
            read_visible(&log);
            writer.join().unwrap_or_else(|_| panic!("writer panicked"));
            reader.join().unwrap_or_else(|_| panic!("reader panicked"));
        });
    }

    #[test]
    fn loom_readers_never_see_a_batch_before_its_bytes() {
        model(Visibility::Written);
    }

    #[test]
    fn loom_appended_readers_never_see_a_batch_before_its_bytes() {
        model(Visibility::Appended);
    }

    #[test]
    fn loom_durable_visibility_hides_unsynced_batches() {
        model(Visibility::Durable);
    }
}
