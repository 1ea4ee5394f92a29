//! Fail-stop: why a partition stopped taking writes.
//!
//! After a failed `fdatasync` the kernel may have dropped the dirty pages it covered and
//! marked them clean, so a later sync that succeeds says nothing about them (the PostgreSQL
//! "fsyncgate" lesson). After a failed write the file holds an unknown mix of old and new
//! bytes. Either way the only safe course is to stop: nothing after the last good sync is
//! reported durable again, every pending append fails, and the partition returns only through
//! recovery, which re-reads the file and trusts only what validates. A full disk on a *write*
//! is the one exception (nothing was written, and writes resume once space is freed); it never
//! poisons.

use std::io;
use std::path::PathBuf;

use crate::error::{Error, PartitionFailure};
use crate::topic::TopicPartition;

/// The first failure that stopped a partition; every later refusal repeats it.
#[derive(Clone, Debug)]
pub struct Poison {
    op: &'static str,
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
        op: &'static str,
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
            op: self.op,
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
