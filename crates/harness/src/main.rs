//! `rill-bench`: drives the engine and prints what it does beside what the disk can do.
//!
//! The default run (no arguments) produces a fixed volume of records through the engine into a
//! temporary data directory, reads it all back with a consumer, measures the disk's sequential-write ceiling on the same file
//! system, and prints one table. Every figure comes from this run on this machine.

mod ceiling;
mod peers;
mod scenario;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "rill-bench",
    version,
    about = "Load harness for the rill log engine"
)]
struct Args {
    /// Data directory to run in (a temporary directory, removed afterwards, by default).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A few seconds instead of the full suite, for CI.
    #[arg(long)]
    quick: bool,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 2)]
    partitions: u32,
    /// Bytes of records to produce per scenario (default 1 GiB, 128 MiB with --quick).
    #[arg(long)]
    bytes: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let temp;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("rill-bench-")
                .tempdir()
                .context("create a temporary data directory")?;
            temp.path().to_owned()
        }
    };
    let volume = args
        .bytes
        .unwrap_or(if args.quick { 128 << 20 } else { 1 << 30 });
    println!(
        "rill-bench: {} of records per scenario in {}",
        human_bytes(volume),
        root.display()
    );

    let ceiling = ceiling::median_of_three(&root, (volume / 2).clamp(64 << 20, 512 << 20))
        .context("measure the disk ceiling")?;
    let mut rows = Vec::new();
    for record_bytes in [1024usize, 100] {
        let run = scenario::Workload {
            record_bytes,
            partitions: args.partitions,
            total_bytes: volume,
        };
        let dir = root.join(format!("run-{record_bytes}"));
        let (produce, consume) = scenario::produce_then_consume(&dir, &run)?;
        rows.push(produce);
        rows.push(consume);
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    print_table(&ceiling, &rows);
    Ok(())
}

fn print_table(ceiling: &ceiling::Ceiling, rows: &[scenario::Measured]) {
    println!();
    println!(
        "disk ceiling ({}): {:.0} MB/s sequential 1 MiB writes (median of 3; {:.0} to {:.0})",
        ceiling.method, ceiling.mb_per_s, ceiling.min_mb_per_s, ceiling.max_mb_per_s
    );
    println!();
    println!(
        "{:<16} {:<10} {:>12} {:>14} {:>10} {:>10}",
        "scenario", "backend", "records", "records/s", "MB/s", "% of disk"
    );
    for row in rows {
        println!(
            "{:<16} {:<10} {:>12} {:>14.0} {:>10.0} {:>9.0}%",
            row.name,
            row.backend,
            row.records,
            row.records_per_s(),
            row.mb_per_s(),
            100.0 * row.mb_per_s() / ceiling.mb_per_s
        );
    }
    println!();
    println!(
        "MB/s counts record values only (1 MB = 10^6 bytes); the disk ceiling is measured in this run."
    );
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{b} B"),
    }
}
