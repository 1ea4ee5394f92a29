//! Fail-stop: why a partition stopped taking writes.
//!
//! After a failed `fdatasync` the kernel may have dropped the dirty pages it covered and
//! marked them clean, so a later sync that succeeds says nothing about them (the PostgreSQL
//! "fsyncgate" lesson). After a failed write the file holds an unknown mix of old and new
//! bytes. Either way the only safe course is to stop: nothing after the last good sync is
//! reported durable again, every pending append fails, and the partition returns only through
//! recovery, which re-reads the file and trusts only what validates. A full disk on a *write*
//! is the one exception (nothing was written, and writes resume once space is freed); it never
//! poisons. Neither does a roll that found no room to reserve its files: it wrote nothing
//! either, and is undone.

use std::io;
use std::path::PathBuf;

use crate::error::{Error, PartitionFailure};
use crate::topic::TopicPartition;

/// The storage operation whose failure stopped a partition. Typed, so that deciding what a
/// failure means (did it cover a sync?) is a match, not a comparison of names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StorageOp {
    /// A positional write of batches into the active segment.
    Write,
    /// An fdatasync of a segment (alone, or linked to a write).
    Sync,
    /// Sealing a rolled segment: its final sync, truncation and index files.
    Roll,
    /// Writing the checkpoint file (and syncing its directory).
    Checkpoint,
    /// Copying a batch into a staging buffer.
    Stage,
    /// Planning an O_DIRECT write from the segment's tail block.
    PlanDirect,
    /// Handing a write to the shard's writer.
    Queue,
    /// Opening the active segment for the shard's writer (and registering it there).
    OpenForWriter,
    /// Undoing the staging of writes that ran out of space.
    DiscardFailed,
    /// A roll not attempted because an earlier step of the partition failed.
    Abandoned,
}

impl StorageOp {
    /// The name errors and logs show.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Write => "write segment",
            Self::Sync => "sync segment",
            Self::Roll => "roll segment",
            Self::Checkpoint => "write checkpoint",
            Self::Stage => "stage batch",
            Self::PlanDirect => "plan O_DIRECT write",
            Self::Queue => "queue write",
            Self::OpenForWriter => "open segment for writing",
            Self::DiscardFailed => "discard failed writes",
            Self::Abandoned => "roll abandoned",
        }
    }

    /// Whether the failure may have been a failed sync: then the bytes since the last good
    /// sync cannot be trusted even where the page cache still serves them. (A roll syncs and
    /// seals the segment it closes.)
    pub(crate) fn covers_a_sync(self) -> bool {
        matches!(self, Self::Sync | Self::Roll)
    }
}

/// The first failure that stopped a partition; every later refusal repeats it.
#[derive(Clone, Debug)]
pub struct Poison {
    op: StorageOp,
    path: PathBuf,
    first: i64,
    end: i64,
    os_error: Option<i32>,
    kind: io::ErrorKind,
    message: String,
}

impl Poison {
    /// A failure of `op` on `path`, with offsets from `first` (the durable watermark) to `end`
    /// (the next offset) not durable.
    pub(crate) fn new(
        op: StorageOp,
        path: PathBuf,
        first: i64,
        end: i64,
        source: &io::Error,
    ) -> Self {
        Self {
            op,
            path,
            first,
            end,
            os_error: source.raw_os_error(),
            kind: source.kind(),
            message: source.to_string(),
        }
    }

    /// The typed error for `partition`, as every ticket and refused append reports it.
    pub fn error(&self, partition: &TopicPartition) -> Error {
        let source = match self.os_error {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, self.message.clone()),
        };
        Error::PartitionFailed(Box::new(PartitionFailure {
            partition: partition.clone(),
            op: self.op.name(),
            path: self.path.clone(),
            first: self.first,
            end: self.end,
            source,
        }))
    }

    /// The OS error number, when the failure came from a system call.
    pub fn os_error(&self) -> Option<i32> {
        self.os_error
    }
}
