//! The raw disk ceiling, shared by the `disk` and `e2e` benches so that both judge against the
//! same loop: io_uring, 1 MiB buffers, [`DEPTH`] writes in flight, one `fdatasync` at the end.
//!
//! Included with `#[path]` rather than built as a library so the benches stay single files and
//! this module sees the facade exactly as they do.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rill::engine::io::uring::{BufferRegistration, UringConfig, UringUnavailable, UringWriter};

pub const CHUNK: usize = 1 << 20;
/// Writes in flight.
pub const DEPTH: u16 = 8;
/// Writes wrap within this many bytes, so a long sample does not grow the file without bound.
pub const FILE_BYTES: u64 = 1 << 30;

/// Where bench files go: `RILL_BENCH_DIR`, which should be on the disk under test, or the
/// system temporary directory.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("RILL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

pub fn open(path: &Path, direct: bool) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(if direct { libc::O_DIRECT } else { 0 })
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// A writer sized for the ceiling loop: one buffer per write in flight.
pub fn writer() -> Result<UringWriter, UringUnavailable> {
    UringWriter::probe(UringConfig {
        entries: 64,
        buffers: DEPTH,
        buffer_size: CHUNK,
        files: 4,
        registration: BufferRegistration::Prefer,
    })
}

/// What the file a sample writes into holds when the sample starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileState {
    /// A fresh sparse file, as a new segment: the default.
    Sparse,
    /// A fresh file whose blocks are allocated (`fallocate`) but never written.
    Preallocated,
    /// The blocks earlier samples wrote, overwritten in place.
    Reused,
}

/// Starts a sample, untimed: unless reusing, the previous sample's blocks are given back
/// first, so the sample writes into a new file as into a new segment.
pub fn fresh(file: &File, state: FileState) {
    if state != FileState::Reused {
        file.set_len(0).unwrap_or_else(|e| panic!("truncate: {e}"));
    }
    file.set_len(FILE_BYTES)
        .unwrap_or_else(|e| panic!("preallocate: {e}"));
    if state == FileState::Preallocated {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(FILE_BYTES).unwrap_or(libc::off_t::MAX);
        // SAFETY: fallocate only reads its integer arguments; the descriptor is live.
        let done = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
        if done != 0 {
            panic!("fallocate: {}", std::io::Error::last_os_error());
        }
    }
}

pub fn position(i: u64) -> u64 {
    (i * CHUNK as u64) % FILE_BYTES
}

/// Non-zero bytes, so that no layer can shortcut zero blocks.
pub fn fill(bytes: &mut [u8]) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) | 1;
    }
}

/// Writes `iters` chunks sequentially and syncs; returns the time from the first write to the
/// end of the sync. Without the sync a buffered file would only measure the page cache.
pub fn uring_loop(w: &mut UringWriter, file: &File, iters: u64, state: FileState) -> Duration {
    let slot = w
        .register_file(file)
        .unwrap_or_else(|e| panic!("register: {e}"));
    fresh(file, state);
    let mut filled = [false; DEPTH as usize];
    let mut done = Vec::with_capacity(usize::from(DEPTH));
    let start = Instant::now();
    for i in 0..iters {
        let mut buf = loop {
            if let Some(buf) = w.take_buffer() {
                break buf;
            }
            // The pool is the queue depth: wait for one write to finish (this also submits).
            w.wait(1, &mut done).unwrap_or_else(|e| panic!("wait: {e}"));
            for c in done.drain(..) {
                c.result.unwrap_or_else(|e| panic!("write: {e}"));
            }
        };
        // Fill each buffer once; later the stale contents are the same pattern, so committing
        // the full length re-sends them without a copy, as a raw ceiling should.
        let seen = &mut filled[usize::from(buf.index())];
        if !*seen {
            fill(buf.spare_capacity_mut());
            *seen = true;
        }
        buf.commit(CHUNK).unwrap_or_else(|e| panic!("commit: {e}"));
        w.queue_write(slot, position(i), buf, false, i)
            .unwrap_or_else(|e| panic!("queue: {e}"));
    }
    let in_flight = w.in_flight();
    w.wait(in_flight, &mut done)
        .unwrap_or_else(|e| panic!("wait: {e}"));
    for c in done.drain(..) {
        c.result.unwrap_or_else(|e| panic!("write: {e}"));
    }
    file.sync_data()
        .unwrap_or_else(|e| panic!("fdatasync: {e}"));
    let elapsed = start.elapsed();
    w.unregister_file(slot)
        .unwrap_or_else(|e| panic!("unregister: {e}"));
    elapsed
}
