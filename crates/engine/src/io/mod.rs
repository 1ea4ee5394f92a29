//! I/O backends: how a partition's bytes reach its files.
//!
//! A shard writes its partitions through one pipeline (`engine::direct`) that drives a
//! [`writer::Writer`]: the asynchronous [`uring`] writer (batched submissions, registered
//! buffers and files, linked fdatasync) or the [`blocking`] writer, the portable backend, which
//! performs the same queued writes with `pwrite` and `fdatasync` when they are submitted. Both
//! lend the block-aligned buffers of [`aligned`] from a bounded pool and answer with the
//! completions of [`pool`].
//!
//! [`IoBackend`] is the pair of data-path operations, positional writes and data syncs, that
//! the blocking writer, the logs' own syncs and the sealer thread call; [`PortableIo`] is the
//! real one. `fallocate` allocates a file's blocks ahead of its writes, for every caller that
//! preallocates or reserves space.
//!
//! [`Storage`] is the seam the storage simulator of tests plugs into: it supplies every
//! [`IoBackend`] (so it sees each write and sync of the blocking writer, and each log sync),
//! and sees (and may rewrite) every result the io_uring writer consumes.

pub mod aligned;
#[cfg(target_os = "linux")]
pub mod blocking;
mod fallocate;
pub mod pool;
mod portable;
#[cfg(target_os = "linux")]
pub mod uring;
#[cfg(target_os = "linux")]
pub mod writer;

use std::fmt;
use std::fs::File;
use std::io;

#[cfg(all(test, target_os = "linux"))]
pub(crate) use fallocate::fail_hook;
pub(crate) use fallocate::{Refusal, classify, fallocate};
pub use portable::PortableIo;

/// The data-path operations a partition log needs from the operating system.
pub trait IoBackend: Send {
    /// Writes all of `bytes` at `position` in `file`.
    fn write_all_at(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<()>;

    /// Makes the file's data durable (fdatasync: metadata only as far as needed to read it).
    fn sync_data(&mut self, file: &File) -> io::Result<()>;

    /// A short name for logs and reports.
    fn name(&self) -> &'static str;
}

/// Where an engine's partitions write: the narrow interface a deterministic fault-injecting
/// implementation replaces in tests. The engine uses the real thing ([`PortableIo`], or the
/// kernel's io_uring answers untouched) unless `EngineConfig::storage` names one.
#[doc(hidden)]
pub trait Storage: Send + Sync + fmt::Debug {
    /// A backend: for a partition's log (its syncs), a sealer thread, or a shard's blocking
    /// writer (every write of the portable backend).
    fn backend(&self) -> Box<dyn IoBackend>;

    /// The result of one io_uring completion of the write queued with `token` (`is_sync` for
    /// its linked fdatasync), as the writer's state machine will consume it: the kernel's
    /// `res`, or an injected one.
    fn uring_result(&self, token: u64, is_sync: bool, res: i32) -> i32;

    /// A write of `path` whose completion the io_uring pipeline consumed; it carried the
    /// log's bytes `logical` (before any block padding).
    #[cfg(target_os = "linux")]
    fn uring_completed(
        &self,
        path: &std::path::Path,
        logical: std::ops::Range<u64>,
        done: &uring::Completion,
    );

    /// Whether the io_uring pipeline must keep back, for now, the completion of the write of
    /// `path` that carried the log's bytes `logical`: to its partition the write stays in
    /// flight, as on a slow disk, and the shard asks again on its next rounds. Tests hold a
    /// write this way; nothing is held by default.
    #[cfg(target_os = "linux")]
    fn uring_hold(&self, _path: &std::path::Path, _logical: std::ops::Range<u64>) -> bool {
        false
    }
}
