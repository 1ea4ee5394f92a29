//! Choosing how the io_uring backend writes segments, `O_DIRECT` or through the page cache, by
//! measuring both on the data directory's file system.
//!
//! Neither mode wins everywhere: `O_DIRECT` skips a copy and the kernel's writeback throttling,
//! but on some virtual disks the page cache's large, merged writeback beats it. So
//! [`DirectIo::Auto`] writes a few MiB each way into a temporary file in the data directory,
//! in alternating rounds (a loaded disk drifts; alternation spreads the drift over both),
//! and keeps the mode with the higher median rate. `O_DIRECT` keeps ties, and buffered writes
//! must win by [`BUFFERED_MARGIN`]: it spends less CPU per byte and leaves the page cache to
//! the applications around the engine, which a rate measured in seconds does not show.
//!
//! The outcome is written to `<data dir>/write-mode`, with the device and kernel it was
//! measured on, and later opens reuse it while both are the same (a directory moved to another
//! file system, or a new kernel, measures again). Within a process the outcome is also kept
//! per device, so many engines opened on one file system measure once. An explicit
//! [`DirectIo::On`] or [`DirectIo::Off`] is never second-guessed.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::io::aligned::AlignedBuf;

/// How the io_uring backend opens segments for writing (the portable backend always writes
/// through the page cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DirectIo {
    /// Measure both modes on the data directory's file system the first time, and use the
    /// faster (see [`Engine::write_mode`](crate::Engine::write_mode) for the outcome).
    #[default]
    Auto,
    /// `O_DIRECT` (a file system that refuses it gets the page cache anyway).
    On,
    /// Through the page cache.
    Off,
}

/// Parses `auto`, `on`/`true`/`direct` or `off`/`false`/`buffered`, the spellings rill's
/// tools accept.
impl std::str::FromStr for DirectIo {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "auto" => Ok(DirectIo::Auto),
            "on" | "true" | "direct" => Ok(DirectIo::On),
            "off" | "false" | "buffered" => Ok(DirectIo::Off),
            _ => Err(Error::InvalidConfig {
                field: "EngineConfig::direct_io",
                reason: format!("{text:?} is none of auto, on, off"),
            }),
        }
    }
}

impl std::fmt::Display for DirectIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DirectIo::Auto => "auto",
            DirectIo::On => "on",
            DirectIo::Off => "off",
        })
    }
}

/// The write mode an engine runs with, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteMode {
    /// Whether segments are opened with `O_DIRECT` (io_uring backend only).
    pub direct: bool,
    /// Why: the configuration, the backend, or the measurement and its figures.
    pub reason: String,
}

/// How much faster buffered writes must measure before they are chosen over `O_DIRECT`.
pub const BUFFERED_MARGIN: f64 = 0.10;

/// Bytes written each way per round, in writes of [`PROBE_WRITE`] (the size of a busy
/// partition's io_uring write).
const PROBE_ROUND_BYTES: usize = 4 * 1024 * 1024;
const PROBE_WRITE: usize = 1024 * 1024;
const PROBE_ROUNDS: usize = 3;
/// A round stops writing after this long and is rated on what it wrote, so a stalled disk
/// delays an open by seconds, not minutes.
const PROBE_ROUND_BUDGET: Duration = Duration::from_secs(1);

const RECORD_NAME: &str = "write-mode";
const PROBE_NAME: &str = ".write-mode-probe";
const MAGIC: &str = "rill-write-mode 1";

/// Outcomes measured by this process, by device: one file system measures once.
static MEASURED: Mutex<Option<HashMap<u64, Measured>>> = Mutex::new(None);

/// The write mode for an engine on `data_dir` with the io_uring backend. `measurable` is
/// false under a simulated storage, where `Auto` means `O_DIRECT` (the path it exercises).
pub(crate) fn choose(
    data_dir: &Path,
    setting: DirectIo,
    measurable: bool,
    preallocate: bool,
) -> WriteMode {
    let direct = match setting {
        DirectIo::On => true,
        DirectIo::Off => false,
        DirectIo::Auto if measurable => return chosen_by_measure(data_dir, preallocate),
        DirectIo::Auto => {
            return WriteMode {
                direct: true,
                reason: "auto, nothing to measure on a simulated storage".into(),
            };
        }
    };
    WriteMode {
        direct,
        reason: format!("direct_io = {setting} in the configuration"),
    }
}

/// The write mode of the portable backend, whatever the setting.
pub(crate) fn portable() -> WriteMode {
    WriteMode {
        direct: false,
        reason: "the portable backend writes through the page cache".into(),
    }
}

/// The recorded outcome if it is for this device and kernel, else a fresh measurement
/// (recorded for next time). A measurement that fails keeps `O_DIRECT`, and says why.
fn chosen_by_measure(data_dir: &Path, preallocate: bool) -> WriteMode {
    let record = data_dir.join(RECORD_NAME);
    let stamp = match Stamp::of(data_dir) {
        Ok(stamp) => stamp,
        Err(error) => return unmeasured(data_dir, &error),
    };
    if let Some(mode) = Recorded::read(&record).and_then(|r| r.matching(&stamp)) {
        return mode;
    }
    let mut memo = MEASURED.lock().unwrap_or_else(PoisonError::into_inner);
    let memo = memo.get_or_insert_with(HashMap::new);
    let measured = match memo.get(&stamp.device) {
        Some(measured) => measured.clone(),
        None => match measure(&data_dir.join(PROBE_NAME), preallocate) {
            Ok(measured) => measured,
            Err(error) => return unmeasured(data_dir, &error),
        },
    };
    if let Err(error) = crate::log::write_synced(&record, measured.encode(&stamp).as_bytes()) {
        log::warn!(
            "rill: the write mode chosen is not recorded, the next open measures again: {error}"
        );
    }
    let mode = measured.decide();
    memo.insert(stamp.device, measured);
    mode
}

fn unmeasured(data_dir: &Path, error: &dyn std::fmt::Display) -> WriteMode {
    log::warn!(
        "rill: measuring write modes in {} failed ({error}); writing with O_DIRECT",
        data_dir.display()
    );
    WriteMode {
        direct: true,
        reason: format!("auto, measurement failed ({error})"),
    }
}

/// What a measurement is valid for.
#[derive(Debug, PartialEq)]
struct Stamp {
    device: u64,
    kernel: String,
}

impl Stamp {
    fn of(data_dir: &Path) -> io::Result<Self> {
        let device = fs::metadata(data_dir)?.dev();
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned());
        Ok(Self { device, kernel })
    }
}

/// Median rates of the two modes, in bytes per second; `direct` is `None` when the file
/// system refuses `O_DIRECT`.
#[derive(Clone, Debug, PartialEq)]
struct Measured {
    direct: Option<f64>,
    buffered: f64,
}

impl Measured {
    fn decide(&self) -> WriteMode {
        let mb = |rate: f64| rate / 1e6;
        let Some(direct) = self.direct else {
            return WriteMode {
                direct: false,
                reason: "auto: the file system refuses O_DIRECT".into(),
            };
        };
        let is_direct = direct * (1.0 + BUFFERED_MARGIN) >= self.buffered;
        WriteMode {
            direct: is_direct,
            reason: format!(
                "auto: measured O_DIRECT {:.0} MB/s, page cache {:.0} MB/s (median of \
                 {PROBE_ROUNDS} alternating rounds; the page cache must win by {:.0}%)",
                mb(direct),
                mb(self.buffered),
                BUFFERED_MARGIN * 100.0
            ),
        }
    }

    fn encode(&self, stamp: &Stamp) -> String {
        format!(
            "{MAGIC}\ndevice {}\nkernel {}\ndirect_bytes_per_s {}\nbuffered_bytes_per_s {:.0}\n",
            stamp.device,
            stamp.kernel,
            self.direct
                .map_or_else(|| "refused".into(), |r| format!("{r:.0}")),
            self.buffered,
        )
    }
}

/// A measurement read back from the data directory.
struct Recorded {
    stamp: Stamp,
    measured: Measured,
}

impl Recorded {
    /// `None` for a missing or unreadable record: it is only a cache, measured again.
    fn read(path: &Path) -> Option<Self> {
        let text = fs::read_to_string(path).ok()?;
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut value = |key: &str| lines.next()?.strip_prefix(key)?.strip_prefix(' ');
        let device = value("device")?.parse().ok()?;
        let kernel = value("kernel")?.to_owned();
        let direct = match value("direct_bytes_per_s")? {
            "refused" => None,
            rate => Some(rate.parse().ok()?),
        };
        let buffered = value("buffered_bytes_per_s")?.parse().ok()?;
        Some(Self {
            stamp: Stamp { device, kernel },
            measured: Measured { direct, buffered },
        })
    }

    fn matching(self, stamp: &Stamp) -> Option<WriteMode> {
        (self.stamp == *stamp).then(|| {
            let mut mode = self.measured.decide();
            mode.reason = format!("{} (recorded in {RECORD_NAME})", mode.reason);
            mode
        })
    }
}

/// Writes [`PROBE_ROUNDS`] rounds each way into a fresh file at `path`, alternating which
/// mode goes first, and returns the median rates. The file is removed in every case.
fn measure(path: &Path, preallocate: bool) -> io::Result<Measured> {
    let mut buffer = AlignedBuf::new(PROBE_WRITE).map_err(io::Error::other)?;
    // Not zeros: a file system may treat zero pages specially.
    let pattern: Vec<u8> = (0..PROBE_WRITE).map(|i| (i % 251) as u8 + 1).collect();
    buffer
        .extend_from_slice(&pattern)
        .map_err(io::Error::other)?;
    let mut direct = Vec::with_capacity(PROBE_ROUNDS);
    let mut buffered = Vec::with_capacity(PROBE_ROUNDS);
    let mut refused = false;
    let outcome = (|| {
        for round in 0..PROBE_ROUNDS {
            for o_direct in [round % 2 == 0, round % 2 == 1] {
                if o_direct && refused {
                    continue;
                }
                match write_round(path, &buffer, o_direct, preallocate) {
                    Ok(rate) if o_direct => direct.push(rate),
                    Ok(rate) => buffered.push(rate),
                    Err(error) if o_direct && error.raw_os_error() == Some(libc::EINVAL) => {
                        refused = true;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    })();
    if let Err(error) = fs::remove_file(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        log::warn!("rill: {}: not removed: {error}", path.display());
    }
    outcome?;
    Ok(Measured {
        direct: (!refused).then(|| median(&mut direct)),
        buffered: median(&mut buffered),
    })
}

/// One round: a fresh file, written front to back (into preallocated blocks if the logs
/// preallocate), then synced; rated on bytes over time including the sync, which is what
/// makes page-cache writes pay for their writeback.
fn write_round(
    path: &Path,
    buffer: &AlignedBuf,
    o_direct: bool,
    preallocate: bool,
) -> io::Result<f64> {
    let _ = fs::remove_file(path);
    let flags = if o_direct { libc::O_DIRECT } else { 0 };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(flags)
        .open(path)?;
    if preallocate {
        allocate(&file, PROBE_ROUND_BYTES)?;
    }
    let start = Instant::now();
    let mut written = 0;
    while written < PROBE_ROUND_BYTES && start.elapsed() < PROBE_ROUND_BUDGET {
        file.write_all_at(buffer.as_slice(), written as u64)?;
        written += buffer.len();
    }
    file.sync_data()?;
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    Ok(written as f64 / elapsed)
}

/// Preallocates as a segment would. Where a segment would go sparse (a file system that
/// cannot preallocate, or has no room to), the probe is measured sparse, as those segments
/// would be written. Any other failure fails the measurement: `Auto` then falls back to
/// `O_DIRECT` with the error as its reason and records nothing, so the next open measures
/// again (see [`unmeasured`]).
fn allocate(file: &File, len: usize) -> io::Result<()> {
    match crate::io::fallocate(file, 0, len as u64) {
        Err(error) if crate::io::classify(&error) == crate::io::Refusal::Other => Err(error),
        Ok(()) | Err(_) => Ok(()),
    }
}

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn record_path(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join(RECORD_NAME)
    }

    #[test]
    fn an_explicit_setting_is_never_measured() {
        let dir = tempfile::tempdir().unwrap();
        assert!(choose(dir.path(), DirectIo::On, true, true).direct);
        assert!(!choose(dir.path(), DirectIo::Off, true, true).direct);
        assert!(!record_path(dir.path()).exists(), "nothing was measured");
    }

    #[test]
    fn page_cache_must_win_by_the_margin() {
        let close = Measured {
            direct: Some(100e6),
            buffered: 105e6,
        };
        assert!(close.decide().direct, "a 5% lead is within the noise");
        let clear = Measured {
            direct: Some(100e6),
            buffered: 150e6,
        };
        assert!(!clear.decide().direct);
        let refused = Measured {
            direct: None,
            buffered: 1.0,
        };
        assert!(!refused.decide().direct);
    }

    #[test]
    fn a_record_is_reused_only_on_its_device_and_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = Stamp::of(dir.path()).unwrap();
        let measured = Measured {
            direct: Some(100e6),
            buffered: 300e6,
        };
        let path = record_path(dir.path());
        fs::write(&path, measured.encode(&stamp)).unwrap();
        let mode = choose(dir.path(), DirectIo::Auto, true, false);
        assert!(!mode.direct, "the record says buffered: {mode:?}");
        assert!(mode.reason.contains("recorded"), "{}", mode.reason);

        let moved = Stamp {
            device: stamp.device.wrapping_add(1),
            kernel: stamp.kernel.clone(),
        };
        let recorded = Recorded::read(&path).unwrap();
        assert!(recorded.matching(&moved).is_none());
        fs::write(&path, "garbage").unwrap();
        assert!(Recorded::read(&path).is_none());
    }

    #[test]
    fn a_measurement_rates_both_modes_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join(PROBE_NAME);
        let measured = measure(&probe, true).unwrap();
        assert!(measured.buffered > 0.0);
        assert!(measured.direct.is_none_or(|rate| rate > 0.0));
        assert!(!probe.exists());
    }

    /// A probe the file system will not preallocate (as it would not a segment) is measured
    /// sparse, as those segments would be written, and gives a choice to record; any other
    /// failure of the preallocation fails the measurement, which falls back to O_DIRECT with
    /// the error as its reason, and leaves no probe file.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_probe_that_cannot_preallocate_is_measured_sparse_or_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join(PROBE_NAME);
        let name = format!(
            "{}/{PROBE_NAME}",
            dir.path().file_name().unwrap().to_string_lossy()
        );
        // Every round of both modes; the O_DIRECT ones only if the file system takes it.
        let rounds = 2 * PROBE_ROUNDS;
        crate::io::fail_hook::fail(&name, libc::EOPNOTSUPP, rounds);
        let measured = measure(&probe, true).unwrap();
        let left = crate::io::fail_hook::pending();
        assert!(
            left <= rounds - PROBE_ROUNDS,
            "each round tried: {left} left"
        );
        crate::io::fail_hook::clear();
        assert!(measured.buffered > 0.0);
        assert!(measured.decide().reason.starts_with("auto: "));
        let stamp = Stamp::of(dir.path()).unwrap();
        let record = record_path(dir.path());
        fs::write(&record, measured.encode(&stamp)).unwrap();
        assert!(
            Recorded::read(&record).is_some(),
            "a choice worth recording"
        );
        assert!(!probe.exists());

        crate::io::fail_hook::fail(&name, libc::EIO, 1);
        let error = measure(&probe, true).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EIO));
        assert!(!probe.exists());
        let mode = unmeasured(dir.path(), &error);
        assert!(mode.direct, "the fallback of a failed measurement");
        assert!(
            mode.reason.contains("measurement failed"),
            "{}",
            mode.reason
        );
        crate::io::fail_hook::clear();
    }
}
