//! What this machine can physically do, measured in the same run: the disk's sequential-write
//! ceiling on the data directory's file system, and memory copy bandwidth.
//!
//! The disk ceiling is the best of several ways to write a file sequentially ([`WAYS`]):
//! io_uring with `O_DIRECT` at several write sizes and queue depths, and plain buffered
//! `pwrite`s with one `fdatasync` at the end (on a slow day of this disk the latter beat every
//! `O_DIRECT` way). Each way includes its final `fdatasync`, so the figure is bytes on the disk,
//! and a scenario's ratio to it says how much of the hardware the engine gets. Where io_uring
//! or `O_DIRECT` is refused, those ways fall back to `pwrite` or to buffered writes, and say so.
//!
//! This disk swings by an order of magnitude between days and by a third within a minute, so
//! the suite samples the ceiling right before and right after each scenario ([`sample`]) and
//! divides each scenario by its own neighbours.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rill_engine::io::uring::{BufferRegistration, UringConfig, UringWriter};

const ALIGN: usize = 4096;

/// One way of writing a file sequentially.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Way {
    /// Bytes per write.
    pub chunk: usize,
    /// Writes in flight (io_uring); 0: buffered `pwrite`s one after another.
    pub depth: u16,
}

/// The ways tried for each sample: large and small `O_DIRECT` writes at deep and shallow
/// queues, and buffered writes with one sync at the end.
pub const WAYS: [Way; 4] = [
    Way {
        chunk: 1 << 20,
        depth: 8,
    },
    Way {
        chunk: 4 << 20,
        depth: 4,
    },
    Way {
        chunk: 256 << 10,
        depth: 32,
    },
    Way {
        chunk: 1 << 20,
        depth: 0,
    },
];

/// One ceiling sample: every way once, the best of them kept.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// The best way's MB/s.
    pub mb_s: f64,
    /// How the best way wrote.
    pub method: String,
    /// (way, MB/s) of every way, in [`WAYS`] order.
    pub ways: Vec<(String, f64)>,
}

/// Writes `bytes_per_way` with each of [`WAYS`] into a fresh file in `dir` and keeps the best.
pub fn sample(dir: &Path, bytes_per_way: u64) -> anyhow::Result<Sample> {
    let path = dir.join("ceiling.tmp");
    let mut out = Sample::default();
    for way in WAYS {
        let (how, elapsed) = one_way(&path, bytes_per_way, way)
            .with_context(|| format!("disk ceiling sample in {}", dir.display()))?;
        let mb_s = bytes_per_way as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9);
        if mb_s > out.mb_s {
            out.mb_s = mb_s;
            out.method.clone_from(&how);
        }
        out.ways.push((how, mb_s));
    }
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    Ok(out)
}

pub struct DiskCeiling {
    pub method: String,
    /// Best-of-ways samples, sorted ascending; the median is the run's figure.
    pub samples_mb_s: Vec<f64>,
    /// Every way of the median sample, with its MB/s.
    pub ways: Vec<(String, f64)>,
}

impl DiskCeiling {
    pub fn median_mb_s(&self) -> f64 {
        median(&self.samples_mb_s)
    }
}

/// The run's ceiling: the median of several best-of-ways samples, with the samples kept.
pub fn disk(dir: &Path, bytes_per_way: u64, samples: usize) -> anyhow::Result<DiskCeiling> {
    let mut taken: Vec<Sample> = (0..samples)
        .map(|_| sample(dir, bytes_per_way))
        .collect::<anyhow::Result<_>>()?;
    taken.sort_by(|a, b| a.mb_s.total_cmp(&b.mb_s));
    let middle = taken.get(taken.len() / 2).cloned().unwrap_or_default();
    Ok(DiskCeiling {
        method: middle.method,
        ways: middle.ways,
        samples_mb_s: taken.iter().map(|s| s.mb_s).collect(),
    })
}

fn one_way(path: &Path, bytes: u64, way: Way) -> anyhow::Result<(String, Duration)> {
    let chunks = bytes.div_ceil(way.chunk as u64);
    if way.depth == 0 {
        let file = open_fresh(path, 0)?;
        let elapsed = pwrite_write(&file, chunks, way.chunk)?;
        return Ok((method_name("pwrite", false, way), elapsed));
    }
    let (file, direct) = match open_fresh(path, libc::O_DIRECT) {
        Ok(file) => (file, true),
        Err(_) => (open_fresh(path, 0)?, false),
    };
    match UringWriter::probe(UringConfig {
        entries: u32::from(way.depth) * 2,
        buffers: way.depth,
        buffer_size: way.chunk,
        files: 2,
        registration: BufferRegistration::Prefer,
    }) {
        Ok(mut writer) => {
            let elapsed = uring_write(&mut writer, &file, chunks, way.chunk)?;
            Ok((method_name("io_uring", direct, way), elapsed))
        }
        Err(_) => {
            let elapsed = pwrite_write(&file, chunks, way.chunk)?;
            Ok((
                method_name("pwrite (io_uring refused)", direct, way),
                elapsed,
            ))
        }
    }
}

fn method_name(how: &str, direct: bool, way: Way) -> String {
    let cache = if direct { "O_DIRECT" } else { "buffered" };
    let size = crate::figures::bytes(way.chunk);
    let depth = if way.depth == 0 {
        String::new()
    } else {
        format!(", {} in flight", way.depth)
    };
    format!("{how} {cache}, {size} writes{depth}, fdatasync at the end")
}

/// A new, empty file each sample: the scenarios write into new segments, not over old blocks.
fn open_fresh(path: &Path, flags: i32) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(flags)
        .open(path)
        .with_context(|| format!("create {}", path.display()))
}

fn uring_write(
    writer: &mut UringWriter,
    file: &File,
    chunks: u64,
    chunk: usize,
) -> anyhow::Result<Duration> {
    let slot = writer.register_file(file).context("register the file")?;
    let mut done = Vec::new();
    let began = Instant::now();
    for i in 0..chunks {
        let mut buf = loop {
            if let Some(buf) = writer.take_buffer() {
                break buf;
            }
            writer.wait(1, &mut done).context("wait for a write")?;
            check(&mut done)?;
        };
        fill(buf.spare_capacity_mut());
        buf.commit(chunk)
            .map_err(|_| anyhow::anyhow!("a chunk does not fit a buffer of its size"))?;
        writer
            .queue_write(slot, i * chunk as u64, buf, false, i)
            .map_err(|e| anyhow::anyhow!("queue a write: {e}"))?;
    }
    let in_flight = writer.in_flight();
    writer
        .wait(in_flight, &mut done)
        .context("wait for writes")?;
    check(&mut done)?;
    file.sync_data().context("fdatasync")?;
    let elapsed = began.elapsed();
    writer
        .unregister_file(slot)
        .context("unregister the file")?;
    Ok(elapsed)
}

fn check(done: &mut Vec<rill_engine::io::uring::Completion>) -> anyhow::Result<()> {
    for completion in done.drain(..) {
        if let Err(e) = completion.result {
            bail!("ceiling write failed: {e}");
        }
    }
    Ok(())
}

fn pwrite_write(file: &File, chunks: u64, chunk: usize) -> anyhow::Result<Duration> {
    // An aligned window into a larger vector: O_DIRECT needs aligned memory, and this keeps
    // the harness free of allocation code of its own.
    let mut backing = vec![0u8; chunk + ALIGN];
    let start = backing.as_ptr().align_offset(ALIGN);
    let block = &mut backing[start..start + chunk];
    let began = Instant::now();
    for i in 0..chunks {
        // Filled for every write, as the io_uring ways and the engine fill their buffers.
        fill(block);
        file.write_all_at(block, i * chunk as u64)
            .context("pwrite")?;
    }
    file.sync_data().context("fdatasync")?;
    Ok(began.elapsed())
}

/// Non-zero bytes, so no layer can shortcut zero blocks. Filled for every write, as the
/// engine fills its buffers: the ceiling includes touching the memory once.
fn fill(bytes: &mut [u8]) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) | 1;
    }
}

/// Copy bandwidth between two buffers far larger than the caches (GB/s, median of samples).
pub fn memcpy_gb_s(samples: usize) -> f64 {
    const BYTES: usize = 256 << 20;
    let src = vec![0x5au8; BYTES];
    let mut dst = vec![0u8; BYTES];
    // Touch the destination first so page faults are not timed.
    dst.copy_from_slice(&src);
    let mut rates: Vec<f64> = (0..samples.max(1))
        .map(|_| {
            let began = Instant::now();
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
            BYTES as f64 / 1e9 / began.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    median(&rates)
}

fn median(sorted: &[f64]) -> f64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_ceiling_writes_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let one = sample(dir.path(), 8 << 20).unwrap();
        assert_eq!(one.ways.len(), WAYS.len());
        let best = one.ways.iter().map(|w| w.1).fold(0.0, f64::max);
        assert_eq!(one.mb_s, best);
        assert!(one.ways.iter().any(|w| w.0 == one.method));
        let ceiling = disk(dir.path(), 8 << 20, 3).unwrap();
        assert_eq!(ceiling.samples_mb_s.len(), 3);
        assert!(ceiling.samples_mb_s.iter().all(|&s| s > 0.0));
        assert!(ceiling.samples_mb_s.windows(2).all(|w| w[0] <= w[1]));
        assert!(!ceiling.method.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn memcpy_is_measured() {
        assert!(memcpy_gb_s(1) > 0.0);
    }
}
