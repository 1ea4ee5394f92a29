//! What this machine can physically do, measured in the same run: the disk's sequential-write
//! ceiling on the data directory's file system, and memory copy bandwidth.
//!
//! The disk ceiling writes 1 MiB buffers with io_uring and `O_DIRECT`, [`DEPTH`] in flight,
//! into a fresh file, and includes the final `fdatasync`: the fastest honest way to put bytes
//! on this disk, so a scenario's ratio to it says how much of the hardware the engine gets.
//! Where io_uring is refused it falls back to `pwrite` with `O_DIRECT`, and says so.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rill_engine::io::uring::{BufferRegistration, UringConfig, UringWriter};

const CHUNK: usize = 1 << 20;
const DEPTH: u16 = 8;
const ALIGN: usize = 4096;

pub struct DiskCeiling {
    pub method: String,
    /// Sorted ascending; the median is the figure scenarios are divided by.
    pub samples_mb_s: Vec<f64>,
}

impl DiskCeiling {
    pub fn median_mb_s(&self) -> f64 {
        median(&self.samples_mb_s)
    }
}

/// This disk is shared and bursty (single samples ranged over an order of magnitude within
/// minutes), so the ceiling is the median of several samples, with the samples kept.
pub fn disk(dir: &Path, bytes_per_sample: u64, samples: usize) -> anyhow::Result<DiskCeiling> {
    let path = dir.join("ceiling.tmp");
    let mut method = String::new();
    let mut samples_mb_s = Vec::with_capacity(samples);
    for _ in 0..samples {
        let (how, elapsed) = one_sample(&path, bytes_per_sample)
            .with_context(|| format!("disk ceiling sample in {}", dir.display()))?;
        method = how;
        samples_mb_s.push(bytes_per_sample as f64 / 1e6 / elapsed.as_secs_f64());
    }
    std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    samples_mb_s.sort_by(f64::total_cmp);
    Ok(DiskCeiling {
        method,
        samples_mb_s,
    })
}

fn one_sample(path: &Path, bytes: u64) -> anyhow::Result<(String, Duration)> {
    let (file, direct) = open_fresh(path)?;
    let chunks = bytes.div_ceil(CHUNK as u64);
    match UringWriter::probe(UringConfig {
        entries: 64,
        buffers: DEPTH,
        buffer_size: CHUNK,
        files: 2,
        registration: BufferRegistration::Prefer,
    }) {
        Ok(mut writer) => {
            let elapsed = uring_write(&mut writer, &file, chunks)?;
            Ok((method_name("io_uring", direct), elapsed))
        }
        Err(_) => {
            let elapsed = pwrite_write(&file, chunks)?;
            Ok((method_name("pwrite (io_uring refused)", direct), elapsed))
        }
    }
}

fn method_name(how: &str, direct: bool) -> String {
    let cache = if direct {
        "O_DIRECT"
    } else {
        "buffered (O_DIRECT refused)"
    };
    format!("{how} {cache}, 1 MiB writes, {DEPTH} in flight, fdatasync at the end")
}

/// A new, empty file each sample: the scenarios write into new segments, not over old blocks.
fn open_fresh(path: &Path) -> anyhow::Result<(File, bool)> {
    let open = |flags| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(flags)
            .open(path)
    };
    if let Ok(file) = open(libc::O_DIRECT) {
        return Ok((file, true));
    }
    let file = open(0).with_context(|| format!("create {}", path.display()))?;
    Ok((file, false))
}

fn uring_write(writer: &mut UringWriter, file: &File, chunks: u64) -> anyhow::Result<Duration> {
    let slot = writer.register_file(file).context("register the file")?;
    let mut done = Vec::with_capacity(usize::from(DEPTH));
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
        buf.commit(CHUNK)
            .map_err(|_| anyhow::anyhow!("a 1 MiB chunk does not fit a 1 MiB buffer"))?;
        writer
            .queue_write(slot, i * CHUNK as u64, buf, false, i)
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

fn pwrite_write(file: &File, chunks: u64) -> anyhow::Result<Duration> {
    // An aligned window into a larger vector: O_DIRECT needs aligned memory, and this keeps
    // the harness free of allocation code of its own.
    let mut backing = vec![0u8; CHUNK + ALIGN];
    let start = backing.as_ptr().align_offset(ALIGN);
    let block = &mut backing[start..start + CHUNK];
    fill(block);
    let began = Instant::now();
    for i in 0..chunks {
        file.write_all_at(block, i * CHUNK as u64)
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
