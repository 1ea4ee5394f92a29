//! The portable backend: `pwrite` and `fdatasync`, one system call each.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::IoBackend;

/// Blocking positional writes and `fdatasync`; works wherever std does.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortableIo;

impl IoBackend for PortableIo {
    fn write_all_at(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<()> {
        file.write_all_at(bytes, position)
    }

    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn name(&self) -> &'static str {
        "portable"
    }
}
