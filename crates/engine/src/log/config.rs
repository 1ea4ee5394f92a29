//! How a partition log behaves: segment sizes, retention, durability, limits.

use std::time::Duration;

use super::Visibility;
use crate::error::{Error, Result};
use crate::record::Limits;

/// When appended bytes are made durable with fdatasync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Leave flushing to the operating system (Kafka's default). Data survives a process
    /// crash but not a power loss.
    #[default]
    Never,
    /// Sync when at least this long has passed since the last sync.
    Interval(Duration),
    /// Sync after every append, before it is acknowledged.
    EveryAppend,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment rolls when the next batch would take it past this many bytes.
    pub segment_bytes: u64,
    /// A segment rolls at the first append after it is this old.
    pub segment_age: Option<Duration>,
    /// Oldest segments are deleted while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Segments whose newest record is older than this are deleted.
    pub retention_age: Option<Duration>,
    /// Bytes of log between two sparse index entries (Kafka's `index.interval.bytes`).
    pub index_interval_bytes: u64,
    pub fsync: FsyncPolicy,
    /// Which watermark bounds what consumers see.
    pub visibility: Visibility,
    /// Bytes of the newest batches kept in memory for consumers at the tail (with the io_uring
    /// backend, whose O_DIRECT writes leave nothing in the page cache); 0 turns it off.
    pub tail_bytes: usize,
    pub limits: Limits,
}

impl LogConfig {
    /// Segment files address positions with u32 in their indexes, as Kafka's do.
    pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if self.segment_bytes > Self::MAX_SEGMENT_BYTES {
            return invalid(format!(
                "segment_bytes {} exceeds {}",
                self.segment_bytes,
                Self::MAX_SEGMENT_BYTES
            ));
        }
        if self.segment_bytes < self.limits.max_batch_bytes as u64 {
            return invalid(format!(
                "segment_bytes {} is smaller than max_batch_bytes {}: a largest batch would not fit",
                self.segment_bytes, self.limits.max_batch_bytes
            ));
        }
        if self.index_interval_bytes == 0 {
            return invalid("index_interval_bytes must be positive".into());
        }
        Ok(())
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 256 * 1024 * 1024,
            segment_age: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes: None,
            retention_age: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Never,
            visibility: Visibility::Written,
            tail_bytes: 4 * 1024 * 1024,
            limits: Limits::default(),
        }
    }
}
