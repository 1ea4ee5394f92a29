//! I/O backends: how a partition's bytes reach its files.
//!
//! The log calls a backend for its two data-path operations, positional writes and data
//! syncs, so that the portable backend here and the io_uring backend can be swapped without
//! the log knowing which one runs.
//!
//! [`uring`] is the asynchronous writer a shard thread drives directly (batched submissions,
//! registered buffers and files, linked fdatasync); [`aligned`] holds the block-aligned staging
//! buffers it writes from.

pub mod aligned;
mod portable;
#[cfg(target_os = "linux")]
pub mod uring;

use std::fs::File;
use std::io;

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
