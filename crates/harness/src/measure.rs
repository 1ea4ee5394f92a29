//! Honest measurement: latency histograms, the process's CPU time and peak memory as the
//! kernel accounts them, and throughput over time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::{LatencyUs, TimelinePoint};

/// Latencies in nanoseconds, 1 ns to 100 s at three significant digits.
#[derive(Clone, Debug)]
pub struct Latency(Histogram<u64>);

const LATENCY_MAX_NS: u64 = 100_000_000_000;

impl Latency {
    pub fn new() -> Self {
        // 3 significant digits over this range is a valid configuration; an error here
        // would be a bug in the constants, not a condition to handle.
        #[allow(clippy::expect_used)]
        let histogram =
            Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds");
        Self(histogram)
    }

    /// Values beyond the range are clamped to it rather than dropped: a lost sample would
    /// flatter the tail.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos())
            .unwrap_or(u64::MAX)
            .clamp(1, LATENCY_MAX_NS);
        self.0.saturating_record(ns);
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail; saturate rather than panic.
        let _ = self.0.add(&other.0);
    }

    pub fn summary(&self) -> LatencyUs {
        let us = |q: f64| self.0.value_at_quantile(q) as f64 / 1e3;
        if self.0.is_empty() {
            return LatencyUs::default();
        }
        LatencyUs {
            samples: self.0.len(),
            p50: us(0.50),
            p90: us(0.90),
            p99: us(0.99),
            p999: us(0.999),
            p9999: us(0.9999),
            max: self.0.max() as f64 / 1e3,
            curve: CURVE_PERCENTILES
                .iter()
                .map(|&p| (p, us(p / 100.0)))
                .collect(),
        }
    }
}

/// A histogram of nanoseconds recorded elsewhere (the peers keep their own).
impl From<Histogram<u64>> for Latency {
    fn from(histogram: Histogram<u64>) -> Self {
        Self(histogram)
    }
}

/// Where the percentile curve is sampled: dense in the tail, where the story is.
const CURVE_PERCENTILES: &[f64] = &[
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// CPU time of the whole process (every thread, user and system).
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call, and
    // CLOCK_PROCESS_CPUTIME_ID is a clock every Linux kernel provides.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Peak resident memory of the process, from the kernel's high-water mark.
pub struct PeakRss(());

impl PeakRss {
    /// Resets the kernel's high-water mark (`/proc/self/clear_refs`, value 5) so the peak
    /// belongs to one scenario. Where the kernel refuses, the peak is the process's since it
    /// started: an over-estimate, never an under-estimate.
    pub fn start() -> Self {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Self(())
    }

    pub fn peak_mb(&self) -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kib| kib * 1024.0 / 1e6)
    }
}

/// Counts what a scenario has moved so far; shared by its threads, sampled by the [`Meter`].
#[derive(Debug, Default)]
pub struct Progress {
    records: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    pub const fn new() -> Self {
        Self {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Threads add in chunks (every few thousand records), keeping the counter off the hot path.
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn read(&self) -> (u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Samples a [`Progress`] every [`Meter::INTERVAL`] on its own (mostly sleeping) thread: the
/// timeline for the charts and the live progress bar.
pub struct Meter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<TimelinePoint>>>,
}

impl Meter {
    pub const INTERVAL: Duration = Duration::from_millis(100);

    /// `expected_records` sizes the bar; 0 shows a spinner (runs bounded by time). Every
    /// interval it also samples the threads' CPU times into `cpu`, so threads that end before
    /// the window closes are counted up to their last interval.
    pub fn start(
        name: &str,
        progress: Arc<Progress>,
        expected_records: u64,
        cpu: Arc<Mutex<crate::cpu::Tracker>>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let bar = progress_bar(name, expected_records);
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("rill-bench-meter".to_owned())
            .spawn(move || sample(&progress, &flag, &bar, &cpu))
            .ok();
        Self { stop, thread }
    }

    pub fn finish(mut self) -> Vec<TimelinePoint> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn progress_bar(name: &str, expected_records: u64) -> ProgressBar {
    let bar = if expected_records > 0 {
        ProgressBar::new(expected_records)
    } else {
        ProgressBar::new_spinner()
    };
    // Draws only on a terminal; logs and CI output stay clean.
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    let template = if expected_records > 0 {
        "{prefix:>18} [{bar:30}] {percent:>3}% {msg}"
    } else {
        "{prefix:>18} {spinner} {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(name.to_owned());
    bar
}

fn sample(
    progress: &Progress,
    stop: &AtomicBool,
    bar: &ProgressBar,
    cpu: &Mutex<crate::cpu::Tracker>,
) -> Vec<TimelinePoint> {
    let began = Instant::now();
    let mut points = Vec::new();
    let (mut last_records, mut last_bytes) = progress.read();
    let mut last_at = began;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Meter::INTERVAL);
        cpu.lock().unwrap_or_else(PoisonError::into_inner).sample();
        let now = Instant::now();
        let (records, bytes) = progress.read();
        let seconds = (now - last_at).as_secs_f64().max(1e-9);
        let point = TimelinePoint {
            t_s: (now - began).as_secs_f64(),
            mb_per_s: (bytes - last_bytes) as f64 / 1e6 / seconds,
            records_per_s: (records - last_records) as f64 / seconds,
        };
        bar.set_position(records);
        bar.set_message(format!(
            "{:>8.0} MB/s {:>12.0} records/s",
            point.mb_per_s, point.records_per_s
        ));
        points.push(point);
        (last_records, last_bytes, last_at) = (records, bytes, now);
    }
    bar.finish_and_clear();
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_orders_its_percentiles() {
        let mut latency = Latency::new();
        for us in 1..=10_000u64 {
            latency.record(Duration::from_micros(us));
        }
        let s = latency.summary();
        assert_eq!(s.samples, 10_000);
        assert!((s.p50 - 5_000.0).abs() < 10.0, "p50 {}", s.p50);
        assert!(s.p50 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max);
        assert!((s.max - 10_000.0).abs() < 10.0, "max {}", s.max);
        assert!(s.curve.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn out_of_range_latency_is_clamped_not_lost() {
        let mut latency = Latency::new();
        latency.record(Duration::ZERO);
        latency.record(Duration::from_secs(1_000));
        assert_eq!(latency.summary().samples, 2);
    }

    #[test]
    fn cpu_time_advances_with_work() {
        let before = process_cpu_time();
        let mut x = 0u64;
        while process_cpu_time() - before < Duration::from_millis(5) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
    }

    #[test]
    fn peak_rss_sees_this_process() {
        assert!(PeakRss::start().peak_mb() > 0.0);
    }
}
