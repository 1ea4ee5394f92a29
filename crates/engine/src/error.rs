//! The engine's error type: what went wrong, and where (topic, partition, offset, file).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::record::RecordError;
use crate::topic::{InvalidTopicName, TopicPartition};

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the engine reports. Variants name the partition, file, offset or byte position
/// involved so an operator can act on the message alone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another [`Engine`](crate::Engine), in this process or another, holds the directory.
    #[error("data directory {path} is already open (locked by this or another process)")]
    DirectoryLocked {
        /// The data directory.
        path: PathBuf,
    },

    /// A topic name breaks Kafka's rules (1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`).
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The name as given (cut to a bounded length).
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },

    /// No topic of this name exists.
    #[error("topic {topic:?} does not exist")]
    UnknownTopic {
        /// The name asked for.
        topic: String,
    },

    /// The topic has no partition of this number.
    #[error("{partition} does not exist")]
    UnknownPartition {
        /// The partition asked for.
        partition: TopicPartition,
    },

    /// The topic exists with a different partition count.
    #[error("topic {topic:?} already exists with {existing} partitions, not {requested}")]
    TopicExists {
        /// The topic.
        topic: String,
        /// Its partition count.
        existing: u32,
        /// The count asked for.
        requested: u32,
    },

    /// The partition's log is already open for writing in this process.
    #[error("{partition} is already open for writing")]
    PartitionBusy {
        /// The partition.
        partition: TopicPartition,
    },

    /// A configuration field holds a value the engine cannot work with, or one that cannot
    /// work together with another field.
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field at fault, as `Struct::field` (for example `LogConfig::segment_bytes`).
        field: &'static str,
        /// Why the value was refused.
        reason: String,
    },

    /// A batch offered for appending is not a valid RecordBatch v2.
    #[error("{partition}: rejected batch: {source}")]
    InvalidBatch {
        /// The partition it was for.
        partition: TopicPartition,
        /// What is wrong with it.
        #[source]
        source: RecordError,
    },

    /// A batch offered for appending has gaps in its offset deltas.
    #[error(
        "{partition}: batch of {records} records declares last offset delta {last_offset_delta}; appended batches must have dense offsets"
    )]
    SparseBatch {
        /// The partition it was for.
        partition: TopicPartition,
        /// Records in the batch.
        records: i32,
        /// The batch's last offset delta (dense batches have `records - 1`).
        last_offset_delta: i32,
    },

    /// A read or seek asked for an offset the log does not hold.
    #[error("{partition}: offset {offset} is outside the log [{start}, {end})")]
    OffsetOutOfRange {
        /// The partition.
        partition: TopicPartition,
        /// The offset asked for.
        offset: i64,
        /// The log's first offset.
        start: i64,
        /// The offset the next record will get.
        end: i64,
    },

    /// A file holds bytes that are not valid batches where valid batches must be.
    #[error("corrupt data in {path} at byte {position}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte position of the bad batch in the file.
        position: u64,
        /// What is wrong.
        #[source]
        source: RecordError,
    },

    /// A file of the engine's own (index, checkpoint, topic metadata) is unreadable.
    #[error("{path}: {reason}")]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The device is full (ENOSPC). Nothing was appended; freeing space and sending again
    /// works without a restart.
    #[error("no space left on the device writing {path}")]
    StorageFull {
        /// The file (or partition directory) being written.
        path: PathBuf,
    },

    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the engine was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The partition's shard has stopped.
    #[error("{partition} is closed")]
    Closed {
        /// The partition.
        partition: TopicPartition,
    },

    /// Something the engine relies on did not hold: a bug in rill, not a problem with the
    /// caller's input or configuration.
    #[error("internal invariant broken: {what}")]
    Invariant {
        /// What did not hold.
        what: String,
    },

    /// The engine has shut down.
    #[error("the engine is shut down")]
    EngineClosed,

    /// The shard could not append the batch holding the record; no offset was assigned.
    #[error("{partition}: the batch could not be appended: {source}")]
    ProduceFailed {
        /// The partition.
        partition: TopicPartition,
        /// Why: the error that failed the batch, shared by every record of it (and of any
        /// other batch the same error failed).
        #[source]
        source: Arc<Error>,
    },

    /// [`Ticket::wait`](crate::Ticket::wait) on a record still in its producer's open batch.
    #[error("{partition}: the record is still in the producer's open batch; call flush() first")]
    NotSubmitted {
        /// The partition.
        partition: TopicPartition,
    },

    /// One record is larger than a batch may be.
    #[error("{partition}: a record of {size} bytes cannot fit in a batch of at most {max} bytes")]
    RecordTooLarge {
        /// The partition.
        partition: TopicPartition,
        /// The record's encoded size in bytes (an upper bound).
        size: usize,
        /// Room for records in a batch, in bytes.
        max: usize,
    },

    /// The partition's ring stayed full for the producer's whole `send_timeout`.
    #[error("{partition}: no room in the shard's queue within the send timeout")]
    SendTimeout {
        /// The partition.
        partition: TopicPartition,
    },

    /// An idempotent producer's batch carries an epoch older than the one the partition
    /// knows: a newer instance of the producer took over (Kafka's `INVALID_PRODUCER_EPOCH`).
    #[error(
        "{partition}: producer {producer_id} is fenced: its batch has epoch {epoch}, the partition knows epoch {current}"
    )]
    ProducerFenced {
        /// The partition.
        partition: TopicPartition,
        /// The producer id of the batch.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The newest epoch the partition has seen of this producer.
        current: i16,
    },

    /// An idempotent producer's batch does not continue its sequence: a batch before it is
    /// missing (Kafka's `OUT_OF_ORDER_SEQUENCE_NUMBER`). Nothing was appended.
    #[error(
        "{partition}: producer {producer_id} epoch {epoch}: sequence {sequence} is out of order, expected {expected}"
    )]
    OutOfOrderSequence {
        /// The partition.
        partition: TopicPartition,
        /// The producer id of the batch.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The batch's first sequence.
        sequence: i32,
        /// The first sequence the partition expected.
        expected: i32,
    },

    /// A batch with a producer id but a negative epoch or sequence.
    #[error(
        "{partition}: producer {producer_id}: epoch {epoch} and sequence {sequence} must not be negative"
    )]
    InvalidProducerFields {
        /// The partition.
        partition: TopicPartition,
        /// The producer id of the batch.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The batch's first sequence.
        sequence: i32,
    },

    /// A retry of an idempotent batch whose first send is still being written: it cannot be
    /// answered yet (the write may still fail), so the producer should send it again.
    #[error(
        "{partition}: producer {producer_id} epoch {epoch}: sequence {sequence} is a retry of a batch at offset {offset} still being written; send it again"
    )]
    DuplicateInFlight {
        /// The partition.
        partition: TopicPartition,
        /// The producer id of the batch.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The batch's first sequence.
        sequence: i32,
        /// Where the first send of the batch starts.
        offset: i64,
    },

    /// A transactional or control batch: rill offers no transactions, so such a batch could
    /// never be committed or aborted, and control batches are written by brokers only.
    #[error(
        "{partition}: producer {producer_id}: {} batches are refused, transactions are not offered",
        if *control { "control" } else { "transactional" }
    )]
    TransactionalBatch {
        /// The partition.
        partition: TopicPartition,
        /// The producer id of the batch.
        producer_id: i64,
        /// A control batch (a transaction marker), not a transactional data batch.
        control: bool,
    },

    /// No producer id is left to hand out (the 63-bit space is used up).
    #[error("no producer id left in {path}")]
    ProducerIdsExhausted {
        /// The file that allocates them.
        path: PathBuf,
    },

    /// The operating system refused to start a shard thread.
    #[error("could not start shard thread {shard}: {source}")]
    ShardStart {
        /// The shard's number.
        shard: usize,
        /// The OS error.
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

impl From<InvalidTopicName> for Error {
    fn from(InvalidTopicName { name, reason }: InvalidTopicName) -> Self {
        Error::InvalidTopicName { name, reason }
    }
}

impl Error {
    /// Wraps an I/O error with the operation and file it came from; a full disk gets its own
    /// variant because callers treat it differently (free space and retry, no restart).
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if is_storage_full(&source) {
            Error::StorageFull { path }
        } else {
            Error::Io { op, path, source }
        }
    }
}

/// Whether an OS error means the device is full: the one classification of ENOSPC, for
/// every path that reports it.
pub(crate) fn is_storage_full(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ENOSPC) || error.kind() == io::ErrorKind::StorageFull
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
