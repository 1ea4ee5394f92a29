//! Peers: the same workload as rill's produce-then-consume run, through the `commitlog` crate
//! (an append-only segmented log, the closest thing to rill's log) and `fjall` (an LSM-tree
//! key-value store used as a log: keys are big-endian offsets in one keyspace).
//!
//! What is the same for every engine, so their figures can stand side by side:
//! - the records: record `i` has the 8-byte key `i` (big-endian) and a `record_bytes` value
//!   whose first 8 bytes are `i` (big-endian) and the rest the pattern rill's produce uses;
//! - one writer thread, which encodes the records itself (encoding is part of the figure, as
//!   it is for rill's producer), in batches of about [`BATCH_BYTES`] of keys and values, the
//!   producer's batch size in rill's produce run;
//! - durability: with `durable` every batch call is followed by an `fdatasync` before the next
//!   one starts; without it nothing is synced per batch, and the phase ends with one sync of
//!   everything written, inside the timed span;
//! - no compression anywhere (rill's producer default), so an engine cannot win by squeezing
//!   the repetitive values;
//! - the read phase reopens the store from its files (dropping every writer-side buffer),
//!   with the files' pages evicted from the page cache first (see [`crate::cache`]: rill's
//!   `O_DIRECT` segments are never in it, so every engine reads back from the disk), then reads everything back in order in calls of about [`READ_BYTES`] (a rill consumer's
//!   default fetch per partition), checking every record's key and every value byte. Opening
//!   is not timed, as the engine's open is not timed in rill's run.
//!
//! `bytes` counts values only (1 MB = 10^6 bytes when turned into MB/s), as rill's rows do.
//! Where an engine cannot be matched exactly, its module says so.

mod commitlog;
mod fjall;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use crate::measure::{PeakRss, process_cpu_time};

/// Keys and values per append batch: rill's produce run uses a 256 KiB producer batch.
pub const BATCH_BYTES: usize = 256 * 1024;
/// Bytes asked for per read call: a rill consumer fetches up to 1 MiB per partition per poll.
pub const READ_BYTES: usize = 1024 * 1024;
/// Bytes of the key: the record's index, big-endian.
const KEY_BYTES: usize = 8;

pub struct PeerWorkload {
    pub record_bytes: usize,
    pub records: u64,
    pub durable: bool,
}

/// One phase of one peer.
pub struct PeerPhase {
    /// "commitlog" or "fjall".
    pub peer: &'static str,
    /// "append" or "read".
    pub phase: &'static str,
    pub records: u64,
    /// Value bytes only.
    pub bytes: u64,
    pub elapsed: Duration,
    /// Per-call latency in nanoseconds: per batch call (with its sync when durable) for append,
    /// per read call for read. The append phase's closing sync (not durable) is in `elapsed`
    /// only.
    pub latency_ns: Histogram<u64>,
    /// Read phase: records expected but not read back, or read back with the wrong key or
    /// content. Always 0 for append.
    pub lost_records: u64,
    /// Process CPU time (every thread, the engine's background workers included).
    pub cpu: Duration,
    pub peak_rss_mb: f64,
}

impl PeerPhase {
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
}

/// Appends the workload to a `commitlog` log in `dir` (created; must be empty), then reads it
/// back.
pub fn run_commitlog(dir: &Path, work: &PeerWorkload) -> anyhow::Result<[PeerPhase; 2]> {
    commitlog::run(dir, work, &commitlog::Config::default())
}

/// Appends the workload to a `fjall` keyspace in `dir` (created; must be empty), then reads it
/// back in key order.
pub fn run_fjall(dir: &Path, work: &PeerWorkload) -> anyhow::Result<[PeerPhase; 2]> {
    fjall::run(dir, work)
}

/// Runs one phase with the process's CPU time and peak memory measured around it.
fn measured(phase: impl FnOnce() -> anyhow::Result<PeerPhase>) -> anyhow::Result<PeerPhase> {
    let rss = PeakRss::start();
    let cpu_before = process_cpu_time();
    let mut done = phase()?;
    done.cpu = process_cpu_time().saturating_sub(cpu_before);
    done.peak_rss_mb = rss.peak_mb();
    Ok(done)
}

/// Records per append batch: about [`BATCH_BYTES`] of keys and values, at least one.
fn records_per_batch(work: &PeerWorkload) -> u64 {
    (BATCH_BYTES / (KEY_BYTES + work.record_bytes)).max(1) as u64
}

/// Creates `dir` and refuses one with anything in it: a peer appending after old records
/// would neither start at offset 0 nor read back only this run's records.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut entries = std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))?;
    if entries.next().is_some() {
        bail!("{} is not empty", dir.display());
    }
    Ok(())
}

/// Latency histogram from 1 ns to 10 minutes, 3 significant figures; longer calls saturate.
fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600 * 1_000_000_000, 3).context("create a latency histogram")
}

fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// The workload's records, built in one reused buffer: only the index bytes change.
struct Records {
    value: Vec<u8>,
}

impl Records {
    fn new(record_bytes: usize) -> Self {
        // The same pattern as rill's produce run, so no engine sees easier data.
        let value = (0..record_bytes).map(|i| (i * 7) as u8).collect();
        Self { value }
    }

    fn key(index: u64) -> [u8; KEY_BYTES] {
        index.to_be_bytes()
    }

    /// Record `index`'s value: the index (big-endian) over the first 8 bytes of the pattern.
    fn value(&mut self, index: u64) -> &[u8] {
        let stamp = index.to_be_bytes();
        let len = self.value.len().min(KEY_BYTES);
        self.value[..len].copy_from_slice(&stamp[..len]);
        &self.value
    }
}

/// Checks records read back in order against the workload. A record counts as read back when
/// its key is a workload index past the last good one (in order, no duplicates) and its value is
/// exactly that record's value; everything else is lost.
struct Verifier {
    expected: Records,
    total: u64,
    /// The smallest index the next good record may have.
    next: u64,
    good: u64,
    read: u64,
    bytes: u64,
}

impl Verifier {
    fn new(work: &PeerWorkload) -> Self {
        Self {
            expected: Records::new(work.record_bytes),
            total: work.records,
            next: 0,
            good: 0,
            read: 0,
            bytes: 0,
        }
    }

    /// One record as read back. `offset` is the position the store gave it, where it has one.
    fn check(&mut self, offset: Option<u64>, key: &[u8], value: &[u8]) {
        self.read += 1;
        self.bytes += value.len() as u64;
        let Ok(key) = <[u8; KEY_BYTES]>::try_from(key) else {
            return;
        };
        let index = u64::from_be_bytes(key);
        let good = index >= self.next
            && index < self.total
            && offset.is_none_or(|offset| offset == index)
            && value == self.expected.value(index);
        if good {
            self.good += 1;
            self.next = index + 1;
        }
    }

    fn lost(&self) -> u64 {
        self.total - self.good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_phases(phases: &[PeerPhase; 2], peer: &str, work: &PeerWorkload) {
        let [append, read] = phases;
        assert_eq!((append.peer, append.phase), (peer, "append"));
        assert_eq!((read.peer, read.phase), (peer, "read"));
        let value_bytes = work.records * work.record_bytes as u64;
        for phase in phases {
            assert_eq!(phase.records, work.records, "{peer} {}", phase.phase);
            assert_eq!(phase.bytes, value_bytes, "{peer} {}", phase.phase);
            assert_eq!(phase.lost_records, 0, "{peer} {}", phase.phase);
            assert!(!phase.latency_ns.is_empty(), "{peer} {}", phase.phase);
        }
        let batches = work.records.div_ceil(records_per_batch(work));
        assert_eq!(
            append.latency_ns.len(),
            batches,
            "one latency per batch call"
        );
    }

    const WORKLOADS: [PeerWorkload; 2] = [
        PeerWorkload {
            record_bytes: 100,
            records: 2_000,
            durable: false,
        },
        PeerWorkload {
            record_bytes: 1024,
            records: 2_000,
            durable: true,
        },
    ];

    #[test]
    fn commitlog_appends_and_reads_back_every_record() {
        for work in &WORKLOADS {
            let dir = tempfile::tempdir().unwrap();
            let phases = run_commitlog(dir.path(), work).unwrap();
            check_phases(&phases, "commitlog", work);
        }
    }

    #[test]
    fn commitlog_syncs_every_segment_it_rolls_to() {
        // Small segments: several rolls, each predicted and synced (a wrong prediction fails).
        let config = commitlog::Config {
            segment_bytes: 600 * 1024,
        };
        let workloads = [
            PeerWorkload {
                record_bytes: 100,
                records: 10_000,
                durable: false,
            },
            PeerWorkload {
                record_bytes: 1024,
                records: 2_000,
                durable: true,
            },
        ];
        for work in &workloads {
            let dir = tempfile::tempdir().unwrap();
            let phases = commitlog::run(dir.path(), work, &config).unwrap();
            check_phases(&phases, "commitlog", work);
            let segments = std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|entry| entry.as_ref().unwrap().path().extension() == Some("log".as_ref()))
                .count();
            assert!(segments > 1, "{segments} segments");
        }
    }

    #[test]
    fn fjall_appends_and_reads_back_every_record() {
        for work in &WORKLOADS {
            let dir = tempfile::tempdir().unwrap();
            let phases = run_fjall(dir.path(), work).unwrap();
            check_phases(&phases, "fjall", work);
        }
    }

    #[test]
    fn an_empty_workload_reads_back_nothing() {
        let work = PeerWorkload {
            record_bytes: 100,
            records: 0,
            durable: false,
        };
        for run in [run_commitlog, run_fjall] {
            let dir = tempfile::tempdir().unwrap();
            let [append, read] = run(dir.path(), &work).unwrap();
            assert_eq!((append.records, read.records, read.lost_records), (0, 0, 0));
        }
    }

    #[test]
    fn a_non_empty_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), b"x").unwrap();
        let work = &WORKLOADS[0];
        assert!(run_commitlog(dir.path(), work).is_err());
        assert!(run_fjall(dir.path(), work).is_err());
    }

    #[test]
    fn the_verifier_counts_missing_wrong_and_repeated_records_as_lost() {
        let work = PeerWorkload {
            record_bytes: 20,
            records: 6,
            durable: false,
        };
        fn feed(verifier: &mut Verifier, source: &mut Records, offset: Option<u64>, index: u64) {
            let value = source.value(index).to_vec();
            verifier.check(offset, &Records::key(index), &value);
        }
        let source = &mut Records::new(work.record_bytes);
        let mut verifier = Verifier::new(&work);
        feed(&mut verifier, source, Some(0), 0);
        // Record 1 is missing; 2 arrives at the wrong offset.
        feed(&mut verifier, source, Some(1), 2);
        feed(&mut verifier, source, None, 3);
        // A repeat of 3 and a record past the workload are not read back records.
        feed(&mut verifier, source, None, 3);
        feed(&mut verifier, source, None, 6);
        // Record 4 with one wrong value byte, record 5 under a short key.
        let mut wrong = source.value(4).to_vec();
        wrong[15] ^= 1;
        verifier.check(None, &Records::key(4), &wrong);
        let value = source.value(5).to_vec();
        verifier.check(None, &Records::key(5)[1..], &value);
        assert_eq!(verifier.good, 2, "records 0 and 3");
        assert_eq!(verifier.lost(), 4);
        assert_eq!(verifier.read, 7);

        let mut exact = Verifier::new(&work);
        for index in 0..work.records {
            feed(&mut exact, source, Some(index), index);
        }
        assert_eq!(exact.lost(), 0);
    }

    #[test]
    fn values_carry_their_index_and_the_produce_pattern() {
        let mut records = Records::new(12);
        assert_eq!(
            records.value(0x0102),
            [0, 0, 0, 0, 0, 0, 1, 2, 56, 63, 70, 77]
        );
        assert_eq!(Records::new(3).value(0x0102), [0, 0, 0]);
    }

    /// Throughput at the harness's two record sizes, on this machine's disk:
    /// `cargo test --release -p rill-harness peer_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "writes a few hundred MB per peer; run by hand in release"]
    fn peer_timing() {
        for (record_bytes, records) in [(1024, 200_000), (100, 1_000_000)] {
            for durable in [false, true] {
                let work = PeerWorkload {
                    record_bytes,
                    records,
                    durable,
                };
                for run in [run_commitlog, run_fjall] {
                    let dir = tempfile::tempdir().unwrap();
                    for phase in run(dir.path(), &work).unwrap() {
                        assert_eq!(phase.lost_records, 0);
                        println!(
                            "{:<9} {:<6} {:>5} B x {:>9} durable={:<5} {:>9.3} s {:>12.0} records/s {:>8.1} MB/s  p50 {:>9} ns  p99 {:>10} ns",
                            phase.peer,
                            phase.phase,
                            record_bytes,
                            phase.records,
                            durable,
                            phase.elapsed.as_secs_f64(),
                            phase.records_per_s(),
                            phase.mb_per_s(),
                            phase.latency_ns.value_at_quantile(0.5),
                            phase.latency_ns.value_at_quantile(0.99),
                        );
                    }
                }
            }
        }
    }
}
