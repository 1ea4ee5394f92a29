//! The engine's error type: what went wrong, and where (topic, partition, offset, file).

use std::io;
use std::path::PathBuf;

use crate::record::RecordError;
use crate::topic::TopicPartition;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the engine reports. Variants name the partition, file, offset or byte position
/// involved so an operator can act on the message alone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("data directory {path} is already open (locked by this or another process)")]
    DirectoryLocked { path: PathBuf },

    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },

    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },

    #[error("{partition} does not exist")]
    UnknownPartition { partition: TopicPartition },

    #[error("topic {topic:?} already exists with {existing} partitions, not {requested}")]
    TopicExists {
        topic: String,
        existing: u32,
        requested: u32,
    },

    #[error("{partition} is already open for writing")]
    PartitionBusy { partition: TopicPartition },

    #[error("invalid configuration: {reason}")]
    InvalidConfig { reason: String },

    #[error("{partition}: rejected batch: {source}")]
    InvalidBatch {
        partition: TopicPartition,
        #[source]
        source: RecordError,
    },

    #[error(
        "{partition}: batch of {records} records declares last offset delta {last_offset_delta}; appended batches must have dense offsets"
    )]
    SparseBatch {
        partition: TopicPartition,
        records: i32,
        last_offset_delta: i32,
    },

    #[error("{partition}: offset {offset} is outside the log [{start}, {end})")]
    OffsetOutOfRange {
        partition: TopicPartition,
        offset: i64,
        start: i64,
        end: i64,
    },

    #[error("corrupt data in {path} at byte {position}: {source}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        #[source]
        source: RecordError,
    },

    #[error("{path}: {reason}")]
    CorruptFile { path: PathBuf, reason: String },

    #[error("no space left on the device writing {path}")]
    StorageFull { path: PathBuf },

    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{partition} is closed")]
    Closed { partition: TopicPartition },

    /// Something the engine relies on did not hold: a bug in rill, not a problem with the
    /// caller's input or configuration.
    #[error("internal invariant broken: {what}")]
    Invariant { what: String },

    #[error("the engine is shut down")]
    EngineClosed,

    #[error("{partition}: the batch could not be appended: {reason}")]
    ProduceFailed {
        partition: TopicPartition,
        reason: String,
    },

    #[error("{partition}: the record is still in the producer's open batch; call flush() first")]
    NotSubmitted { partition: TopicPartition },

    #[error("{partition}: a record of {size} bytes cannot fit in a batch of at most {max} bytes")]
    RecordTooLarge {
        partition: TopicPartition,
        size: usize,
        max: usize,
    },

    #[error("{partition}: no room in the shard's queue within the send timeout")]
    SendTimeout { partition: TopicPartition },

    #[error("could not start shard thread {shard}: {source}")]
    ShardStart {
        shard: usize,
        #[source]
        source: io::Error,
    },

    // Fail-stop of the write path (see `log::Poison`).
    /// A write or sync of the partition failed for a reason other than a retryable full disk;
    /// the partition takes no writes until it is recovered. Boxed: it names a lot, and every
    /// `Result` of the engine carries its size.
    #[error(transparent)]
    PartitionFailed(Box<PartitionFailure>),
}

/// Why a partition stopped taking writes: which operation on which file failed, and how.
///
/// Offsets from `first` on may not be durable (after a failed sync the kernel may have dropped
/// the pages it covered), so the partition refuses writes until recovery runs on it (reopening
/// the engine). Consumers still read what was visible.
#[derive(Debug, thiserror::Error)]
#[error(
    "{partition}: {op} {path} failed: {source}; offsets {first}..{end} are not durable and the partition takes no writes until it is recovered (reopen the engine)"
)]
pub struct PartitionFailure {
    pub partition: TopicPartition,
    pub op: &'static str,
    pub path: PathBuf,
    /// The durable watermark when the failure happened: nothing from here on is durable.
    pub first: i64,
    /// The next offset the log would have assigned.
    pub end: i64,
    #[source]
    pub source: io::Error,
}

impl Error {
    /// Wraps an I/O error with the operation and file it came from; a full disk gets its own
    /// variant because callers treat it differently (free space and retry, no restart).
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.kind() == io::ErrorKind::StorageFull
        {
            Error::StorageFull { path }
        } else {
            Error::Io { op, path, source }
        }
    }
}

/// Attaches a path and operation to `std::io` results.
pub(crate) trait IoContext<T> {
    fn context(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::io(op, path, source))
    }
}
