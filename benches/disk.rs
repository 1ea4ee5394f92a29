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
//! is the filesystem's block allocation cost. `RILL_BENCH_FILE=fallocate` starts each sample
//! from a fresh file whose blocks are allocated but unwritten, which tells allocation apart
//! from the conversion of unwritten blocks on their first write.

#[cfg(target_os = "linux")]
#[path = "support/ceiling.rs"]
mod ceiling;

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::hint::black_box;
    use std::os::unix::fs::FileExt;
    use std::time::{Duration, Instant};

    use criterion::{Criterion, Throughput, criterion_group};
    use rill::engine::io::aligned::AlignedBuf;

    use crate::ceiling::{
        self, CHUNK, FileState, bench_dir, fill, fresh, open, position, uring_loop,
    };

    /// From `RILL_BENCH_FILE`: `reuse`, `fallocate`, anything else a sparse file.
    fn file_state() -> FileState {
        match std::env::var("RILL_BENCH_FILE").as_deref() {
            Ok("reuse") => FileState::Reused,
            Ok("fallocate") => FileState::Preallocated,
            _ => FileState::Sparse,
        }
    }

    fn pwrite_loop(file: &File, data: &[u8], iters: u64) -> Duration {
        fresh(file, file_state());
        let start = Instant::now();
        for i in 0..iters {
            file.write_all_at(data, position(i))
                .unwrap_or_else(|e| panic!("pwrite: {e}"));
        }
        file.sync_data()
            .unwrap_or_else(|e| panic!("fdatasync: {e}"));
        start.elapsed()
    }

    fn disk(c: &mut Criterion) {
        let base = bench_dir();
        let dir = tempfile::tempdir_in(&base)
            .unwrap_or_else(|e| panic!("temp dir in {}: {e}", base.display()));
        eprintln!(
            "disk bench: writing under {} ({})",
            base.display(),
            match file_state() {
                FileState::Sparse => "fresh sparse file per sample",
                FileState::Preallocated => "fresh fallocated file per sample",
                FileState::Reused => "reusing written blocks",
            }
        );
        let mut group = c.benchmark_group("disk/seq-write-1MiB");
        group.throughput(Throughput::BytesDecimal(CHUNK as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(5));

        match ceiling::writer() {
            Ok(mut w) => {
                if let Some(e) = w.registration_error() {
                    eprintln!("disk bench: buffers not registered ({e}); using plain writes");
                }
                for (name, direct) in [("uring-direct", true), ("uring-buffered", false)] {
                    let file = open(&dir.path().join(name), direct);
                    group.bench_function(name, |b| {
                        b.iter_custom(|iters| uring_loop(&mut w, &file, iters, file_state()));
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
