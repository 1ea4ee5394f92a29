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

/// How a topic's partition logs behave: segment sizes, retention, durability, visibility and
/// limits. A topic created with its own keeps it across restarts (see
/// [`Engine::create_topic_with`](crate::Engine::create_topic_with)).
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
    /// When appended bytes are synced (a producer waiting for
    /// [`AckLevel::Durable`](crate::AckLevel::Durable) gets a sync whatever this says).
    pub fsync: FsyncPolicy,
    /// Which watermark bounds what consumers see.
    pub visibility: Visibility,
    /// Bytes of the newest batches kept in memory for consumers at the tail (with the io_uring
    /// backend, whose O_DIRECT writes leave nothing in the page cache); 0 turns it off.
    pub tail_bytes: usize,
    /// Largest batch accepted, and largest a compressed batch may expand to.
    pub limits: Limits,
    /// How long a partition remembers an idempotent producer that appends nothing (Kafka's
    /// `producer.id.expiration.ms`, one day by default). A producer forgotten this way may
    /// resume at any sequence, so a retry older than this is no longer recognized.
    pub producer_id_expiration: Duration,
    /// Whether an active segment's blocks are allocated ahead of its writes (`fallocate`, 32
    /// MiB ahead of the end), rather than by the writes themselves in a sparse file. Writes
    /// into allocated blocks need no block allocation on the write path. The cost: each
    /// partition holds up to 32 MiB of disk it has not written yet (given back when its
    /// segment is sealed). File systems without `fallocate`, or out of room, stay sparse.
    pub preallocate: bool,
}

impl LogConfig {
    /// Segment files address positions with u32 in their indexes, as Kafka's do.
    pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

    /// Checks each field and the combinations that cannot work; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |field: &'static str, reason: String| Err(Error::InvalidConfig { field, reason });
        if self.segment_bytes > Self::MAX_SEGMENT_BYTES {
            return invalid(
                "LogConfig::segment_bytes",
                format!("{} exceeds {}", self.segment_bytes, Self::MAX_SEGMENT_BYTES),
            );
        }
        if self.segment_bytes < self.limits.max_batch_bytes as u64 {
            return invalid(
                "LogConfig::segment_bytes",
                format!(
                    "{} is smaller than limits.max_batch_bytes {}: a largest batch would not fit",
                    self.segment_bytes, self.limits.max_batch_bytes
                ),
            );
        }
        if self.index_interval_bytes == 0 {
            return invalid("LogConfig::index_interval_bytes", "must be positive".into());
        }
        if self.limits.max_batch_bytes <= crate::record::HEADER_LEN {
            return invalid(
                "LogConfig::limits.max_batch_bytes",
                format!(
                    "{} leaves no room for a record after the {}-byte batch header",
                    self.limits.max_batch_bytes,
                    crate::record::HEADER_LEN
                ),
            );
        }
        if self.producer_id_expiration.is_zero() {
            return invalid(
                "LogConfig::producer_id_expiration",
                "must be positive: a producer forgotten at once could never be deduplicated"
                    .into(),
            );
        }
        if self.fsync == FsyncPolicy::Interval(Duration::ZERO) {
            return invalid(
                "LogConfig::fsync",
                "an interval of zero is EveryAppend; say so".into(),
            );
        }
        if self.visibility == Visibility::Durable && self.fsync == FsyncPolicy::Never {
            return invalid(
                "LogConfig::visibility",
                "Durable visibility on a log whose fsync policy is Never: consumers would see \
                 nothing until the engine closes; choose an Interval or EveryAppend fsync"
                    .into(),
            );
        }
        if self.visibility == Visibility::Appended && self.tail_bytes == 0 {
            return invalid(
                "LogConfig::visibility",
                "Appended visibility serves records from the in-memory tail before they are \
                 written; tail_bytes 0 turns the tail off"
                    .into(),
            );
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
            producer_id_expiration: Duration::from_secs(24 * 3600),
            preallocate: false,
        }
    }
}
