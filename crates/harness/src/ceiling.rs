//! What the disk can do: sequential 1 MiB writes with O_DIRECT, synced at the end, on the
//! file system the data directory is on.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

const BLOCK: usize = 1 << 20;
const ALIGN: usize = 4096;

pub struct Ceiling {
    pub method: &'static str,
    /// The median of the samples: the figure scenarios are compared with.
    pub mb_per_s: f64,
    pub min_mb_per_s: f64,
    pub max_mb_per_s: f64,
}

/// This machine's disk is shared and bursty (one sample here measured 145 MB/s, the next
/// 1,100): the ceiling is the median of three samples, and their spread is reported with it.
pub fn median_of_three(dir: &Path, bytes: u64) -> io::Result<Ceiling> {
    let mut samples = Vec::with_capacity(3);
    let mut method = "";
    for _ in 0..3 {
        let sample = sequential_write(dir, bytes)?;
        method = sample.method;
        samples.push(sample.mb_per_s);
    }
    samples.sort_by(f64::total_cmp);
    Ok(Ceiling {
        method,
        mb_per_s: samples[1],
        min_mb_per_s: samples[0],
        max_mb_per_s: samples[2],
    })
}

/// Writes `bytes` sequentially in 1 MiB blocks, O_DIRECT when the file system allows it
/// (buffered otherwise, and said so), then syncs.
pub fn sequential_write(dir: &Path, bytes: u64) -> io::Result<Ceiling> {
    fs::create_dir_all(dir)?;
    let path = dir.join("ceiling.tmp");
    let (file, method) = match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
    {
        Ok(file) => (file, "pwrite O_DIRECT"),
        Err(_) => (
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?,
            "pwrite buffered (O_DIRECT refused)",
        ),
    };
    // An aligned window into a larger vector: O_DIRECT needs the buffer aligned, and this
    // keeps the harness free of unsafe allocation code.
    let backing: Vec<u8> = (0..BLOCK + ALIGN).map(|i| (i % 251) as u8).collect();
    let start = backing.as_ptr().align_offset(ALIGN);
    let block = &backing[start..start + BLOCK];
    let blocks = bytes.div_ceil(BLOCK as u64);
    let began = Instant::now();
    for i in 0..blocks {
        file.write_all_at(block, i * BLOCK as u64)?;
    }
    file.sync_data()?;
    let seconds = began.elapsed().as_secs_f64();
    drop(file);
    fs::remove_file(&path)?;
    let mb_per_s = (blocks * BLOCK as u64) as f64 / 1e6 / seconds;
    Ok(Ceiling {
        method,
        mb_per_s,
        min_mb_per_s: mb_per_s,
        max_mb_per_s: mb_per_s,
    })
}
