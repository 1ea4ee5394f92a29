//! The disk ceiling: how fast 1 MiB sequential writes reach this disk, four ways, in one run.
//!
//! - `uring-direct`: io_uring, `O_DIRECT`, several writes in flight (the ceiling the engine
//!   is judged against);
//! - `uring-buffered`: the same through the page cache;
//! - `pwrite-buffered`: one blocking `pwrite` at a time through the page cache;
//! - `pwrite-direct`: one blocking `pwrite` at a time with `O_DIRECT`.
//!
//! Each sample starts from a fresh sparse file of 1 GiB, like a new segment, writes
//! sequentially (wrapping within the GiB) and ends with one `fdatasync`, which is timed: without
//! it a buffered write only measures copying into the page cache. The file lives in a temporary
//! directory under `RILL_BENCH_DIR` (default: the system temporary directory), which should be
//! on the disk the data will use. `RILL_BENCH_FILE=reuse` keeps the file between samples, so
//! that after the warm-up the writes overwrite allocated blocks: the gap between the two runs
//! is the filesystem's block allocation cost.

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::{File, OpenOptions};
    use std::hint::black_box;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use criterion::{Criterion, Throughput, criterion_group};
    use rill::engine::io::aligned::AlignedBuf;
    use rill::engine::io::uring::{BufferRegistration, UringConfig, UringWriter};

    const CHUNK: usize = 1 << 20;
    /// Writes in flight for the io_uring cases.
    const DEPTH: u16 = 8;
    const FILE_BYTES: u64 = 1 << 30;

    fn bench_dir() -> PathBuf {
        std::env::var_os("RILL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
    }

    fn open(path: &Path, direct: bool) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(if direct { libc::O_DIRECT } else { 0 })
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    }

    /// Whether samples overwrite blocks earlier samples allocated (`RILL_BENCH_FILE=reuse`)
    /// instead of starting from a fresh sparse file each time (the default, as a new segment).
    fn reuse() -> bool {
        std::env::var("RILL_BENCH_FILE").is_ok_and(|v| v == "reuse")
    }

    /// Gives back the previous sample's blocks and starts a new sparse file, untimed.
    fn fresh(file: &File) {
        if !reuse() {
            file.set_len(0).unwrap_or_else(|e| panic!("truncate: {e}"));
        }
        file.set_len(FILE_BYTES)
            .unwrap_or_else(|e| panic!("preallocate: {e}"));
    }

    fn position(i: u64) -> u64 {
        (i * CHUNK as u64) % FILE_BYTES
    }

    /// Non-zero bytes, so that no layer can shortcut zero blocks.
    fn fill(bytes: &mut [u8]) {
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) | 1;
        }
    }

    fn pwrite_loop(file: &File, data: &[u8], iters: u64) -> Duration {
        fresh(file);
        let start = Instant::now();
        for i in 0..iters {
            file.write_all_at(data, position(i))
                .unwrap_or_else(|e| panic!("pwrite: {e}"));
        }
        file.sync_data()
            .unwrap_or_else(|e| panic!("fdatasync: {e}"));
        start.elapsed()
    }

    fn uring_loop(w: &mut UringWriter, file: &File, iters: u64) -> Duration {
        let slot = w
            .register_file(file)
            .unwrap_or_else(|e| panic!("register: {e}"));
        fresh(file);
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

    fn disk(c: &mut Criterion) {
        let base = bench_dir();
        let dir = tempfile::tempdir_in(&base)
            .unwrap_or_else(|e| panic!("temp dir in {}: {e}", base.display()));
        eprintln!(
            "disk bench: writing under {} ({})",
            base.display(),
            if reuse() {
                "reusing allocated blocks"
            } else {
                "fresh sparse file per sample"
            }
        );
        let mut group = c.benchmark_group("disk/seq-write-1MiB");
        group.throughput(Throughput::BytesDecimal(CHUNK as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(5));

        match UringWriter::probe(UringConfig {
            entries: 64,
            buffers: DEPTH,
            buffer_size: CHUNK,
            files: 4,
            registration: BufferRegistration::Prefer,
        }) {
            Ok(mut w) => {
                if let Some(e) = w.registration_error() {
                    eprintln!("disk bench: buffers not registered ({e}); using plain writes");
                }
                for (name, direct) in [("uring-direct", true), ("uring-buffered", false)] {
                    let file = open(&dir.path().join(name), direct);
                    group.bench_function(name, |b| {
                        b.iter_custom(|iters| uring_loop(&mut w, &file, iters));
                    });
                }
            }
            Err(e) => eprintln!("disk bench: SKIPPED io_uring cases: {e}"),
        }

        let mut data = AlignedBuf::new(CHUNK).unwrap_or_else(|e| panic!("{e}"));
        fill(data.spare_capacity_mut());
        data.commit(CHUNK).unwrap_or_else(|e| panic!("{e}"));
        for (name, direct) in [("pwrite-buffered", false), ("pwrite-direct", true)] {
            let file = open(&dir.path().join(name), direct);
            group.bench_function(name, |b| {
                b.iter_custom(|iters| pwrite_loop(&file, black_box(data.as_slice()), iters));
            });
        }
        group.finish();
    }

    criterion_group!(benches, disk);
}

#[cfg(target_os = "linux")]
criterion::criterion_main!(linux::benches);

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("disk bench: io_uring and O_DIRECT are Linux-only; nothing to measure");
}
