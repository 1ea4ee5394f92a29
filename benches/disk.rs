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

    use crate::ceiling::{self, CHUNK, bench_dir, fill, fresh, open, position, uring_loop};

    /// Whether samples overwrite blocks earlier samples allocated (`RILL_BENCH_FILE=reuse`)
    /// instead of starting from a fresh sparse file each time (the default, as a new segment).
    fn reuse() -> bool {
        std::env::var("RILL_BENCH_FILE").is_ok_and(|v| v == "reuse")
    }

    fn pwrite_loop(file: &File, data: &[u8], iters: u64) -> Duration {
        fresh(file, reuse());
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

        match ceiling::writer() {
            Ok(mut w) => {
                if let Some(e) = w.registration_error() {
                    eprintln!("disk bench: buffers not registered ({e}); using plain writes");
                }
                for (name, direct) in [("uring-direct", true), ("uring-buffered", false)] {
                    let file = open(&dir.path().join(name), direct);
                    group.bench_function(name, |b| {
                        b.iter_custom(|iters| uring_loop(&mut w, &file, iters, reuse()));
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
