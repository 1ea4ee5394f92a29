//! Latency at a trickle: the open-loop `rate` scenario on 100-byte records at 10,000
//! records/s in each configuration that decides latency at low load (the producer's linger,
//! `O_DIRECT` or the page cache, what consumers may see), then at half the maximum sustainable
//! rate, which is this run's `produce 100B` (records/s) halved.
//!
//! A row's defining settings (record size, rate, batch size, linger, direct I/O, visibility)
//! win over the command-line knobs, so each row stays the configuration its name says; the
//! other knobs (duration, backend, partitions, shards, pinning, ...) apply as to every
//! scenario. "Defaults" are the engine's own (`ProducerConfig`, `EngineConfig`, `LogConfig`),
//! read from it rather than copied here; the write mode of "defaults" and of the trickle
//! `appended` row is the engine's default (`Auto`: measured on the data directory), the
//! `linger 0` rows and the half-maximum rows name theirs (`O_DIRECT` or the page cache).
//!
//! Rows carry the project's targets for their configuration (`Target`); the report sets
//! each beside the figure it bounds ([`OpenLoop::annotate`]). Targets are goals, not
//! measurements: a row that misses one is reported as missing it, never failed.

use std::time::Duration;

use rill_engine::log::{LogConfig, Visibility};
use rill_engine::{DirectIo, ProducerConfig};

use crate::report::{ScenarioReport, TargetCheck};
use crate::spec::Spec;

/// Record size of every row.
pub const RECORD_BYTES: usize = 100;
/// The trickle: records per second offered by the fixed-rate rows.
pub const TRICKLE_PER_S: u64 = 10_000;
/// Seconds each trickle row sends for (the full suite; `--quick` takes a sixth).
const TRICKLE_SECONDS: f64 = 5.0;
/// Seconds each half-maximum row sends for: millions of records already.
const HALF_MAX_SECONDS: f64 = 3.0;
/// The half-maximum rows' linger. At `linger 0` the producer hands every record over as its
/// own batch, one ring push and one shard write each, which sustains a small fraction of the
/// produce rate: the row would measure a backlog growing for seconds, not latency at half the
/// maximum. A linger of half the tighter target's p99 budget (100 µs) lets batches form at
/// that rate while leaving the rest of the budget to the hand-off.
const HALF_MAX_LINGER: Duration = Duration::from_micros(50);

/// A figure of an entry that a target bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    P50Us,
    P99Us,
    P999Us,
    /// CPU-seconds over wall-seconds, all threads of the process.
    CpuCores,
}

impl Figure {
    /// The figure as the entry's JSON names it.
    pub fn key(self) -> &'static str {
        match self {
            Figure::P50Us => "latency_us.p50",
            Figure::P99Us => "latency_us.p99",
            Figure::P999Us => "latency_us.p999",
            Figure::CpuCores => "cpu_cores",
        }
    }

    fn of(self, entry: &ScenarioReport) -> f64 {
        match self {
            Figure::P50Us => entry.latency_us.p50,
            Figure::P99Us => entry.latency_us.p99,
            Figure::P999Us => entry.latency_us.p999,
            Figure::CpuCores => entry.cpu_cores,
        }
    }
}

/// The figure must be at most `at_most`, in the figure's unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    pub figure: Figure,
    pub at_most: f64,
}

/// At 10,000 records/s with `Appended` visibility: p50 ≤ 5 µs, p99 ≤ 25 µs, p99.9 ≤ 100 µs,
/// under a tenth of one core in all.
const APPENDED_TRICKLE: &[Target] = &[
    Target {
        figure: Figure::P50Us,
        at_most: 5.0,
    },
    Target {
        figure: Figure::P99Us,
        at_most: 25.0,
    },
    Target {
        figure: Figure::P999Us,
        at_most: 100.0,
    },
    Target {
        figure: Figure::CpuCores,
        at_most: 0.10,
    },
];
/// At half the maximum sustainable rate, `Appended`: p99 ≤ 100 µs.
const APPENDED_HALF_MAX: &[Target] = &[Target {
    figure: Figure::P99Us,
    at_most: 100.0,
}];
/// At half the maximum sustainable rate, `Written` through the page cache: p99 ≤ 200 µs.
const WRITTEN_BUFFERED_HALF_MAX: &[Target] = &[Target {
    figure: Figure::P99Us,
    at_most: 200.0,
}];

/// How fast a row offers records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    PerSecond(u64),
    /// Half of this run's `produce 100B` records/s.
    HalfMax,
}

/// One row of the section.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// What sets the row apart, the last words of its name.
    pub label: &'static str,
    pub pace: Pace,
    /// `None`: the producer's default linger.
    linger: Option<Duration>,
    /// How segments are written: the engine's default (`Auto`, measured on the data
    /// directory), or `O_DIRECT` / the page cache where the row is about that choice.
    write: DirectIo,
    /// `None`: the engine's default visibility.
    visibility: Option<Visibility>,
    pub targets: &'static [Target],
    /// The one row `--quick` runs.
    quick: bool,
}

/// The section, in the order it runs. Rows at `linger 0` hand every record over as it is sent
/// (one record per batch at a trickle); the half-maximum rows linger [`HALF_MAX_LINGER`].
pub const ROWS: [Row; 6] = [
    Row {
        label: "defaults",
        pace: Pace::PerSecond(TRICKLE_PER_S),
        linger: None,
        write: DirectIo::Auto,
        visibility: None,
        targets: &[],
        quick: false,
    },
    Row {
        label: "linger 0",
        pace: Pace::PerSecond(TRICKLE_PER_S),
        linger: Some(Duration::ZERO),
        write: DirectIo::On,
        visibility: None,
        targets: &[],
        quick: false,
    },
    Row {
        label: "linger 0 buffered",
        pace: Pace::PerSecond(TRICKLE_PER_S),
        linger: Some(Duration::ZERO),
        write: DirectIo::Off,
        visibility: None,
        targets: &[],
        quick: false,
    },
    Row {
        label: "appended",
        pace: Pace::PerSecond(TRICKLE_PER_S),
        linger: Some(Duration::ZERO),
        write: DirectIo::Auto,
        visibility: Some(Visibility::Appended),
        targets: APPENDED_TRICKLE,
        quick: true,
    },
    Row {
        label: "appended",
        pace: Pace::HalfMax,
        linger: Some(HALF_MAX_LINGER),
        write: DirectIo::On,
        visibility: Some(Visibility::Appended),
        targets: APPENDED_HALF_MAX,
        quick: false,
    },
    Row {
        label: "written buffered",
        pace: Pace::HalfMax,
        linger: Some(HALF_MAX_LINGER),
        write: DirectIo::Off,
        visibility: Some(Visibility::Written),
        targets: WRITTEN_BUFFERED_HALF_MAX,
        quick: false,
    },
];

/// The rows a run takes: all of them, or for `--quick` (CI) the one short row.
pub fn rows(quick: bool) -> impl Iterator<Item = &'static Row> {
    ROWS.iter().filter(move |row| !quick || row.quick)
}

/// The names a complete run of the section reports.
pub fn names(quick: bool) -> Vec<String> {
    rows(quick).map(Row::name).collect()
}

impl Row {
    /// `rate 10k/s 100B appended`, `rate half-max 100B written buffered`.
    pub fn name(&self) -> String {
        let pace = match self.pace {
            Pace::PerSecond(per_s) if per_s >= 1000 && per_s.is_multiple_of(1000) => {
                format!("{}k/s", per_s / 1000)
            }
            Pace::PerSecond(per_s) => format!("{per_s}/s"),
            Pace::HalfMax => "half-max".to_owned(),
        };
        format!("rate {pace} {RECORD_BYTES}B {}", self.label)
    }

    /// Full-suite seconds of sending (the suite scales them for `--quick`).
    pub fn seconds(&self) -> f64 {
        match self.pace {
            Pace::PerSecond(_) => TRICKLE_SECONDS,
            Pace::HalfMax => HALF_MAX_SECONDS,
        }
    }

    /// Sets what defines the row on `spec` (which already carries the knobs), offering
    /// `per_s` records per second.
    pub fn define(&self, spec: &mut Spec, per_s: u64) {
        let producer = ProducerConfig::default();
        spec.record_bytes = RECORD_BYTES;
        spec.rate = per_s.max(1);
        spec.batch_bytes = producer.batch_bytes;
        spec.linger = self.linger.unwrap_or(producer.linger);
        spec.direct_io = self.write;
        spec.visibility = self
            .visibility
            .unwrap_or_else(|| LogConfig::default().visibility);
    }
}

/// Half of a maximum rate in records per second, at least one record per second.
pub fn half(max_per_s: f64) -> u64 {
    if max_per_s.is_finite() && max_per_s >= 2.0 {
        (max_per_s / 2.0).round() as u64
    } else {
        1
    }
}

/// What the suite knows about an open-loop entry beyond its outcome: the rate it offered, how
/// that rate was chosen, and the targets for it.
#[derive(Clone, Debug)]
pub struct OpenLoop {
    pub name: String,
    pub offered_per_s: u64,
    /// How the rate was chosen, when it was not a fixed figure.
    pub rate_from: Option<String>,
    pub targets: &'static [Target],
}

impl OpenLoop {
    /// Sets the offered rate, its origin and each target's check on the entry of that name.
    pub fn annotate(&self, entry: &mut ScenarioReport) {
        entry.offered_records_per_s = Some(self.offered_per_s as f64);
        if let Some(from) = &self.rate_from {
            entry.settings.push(("rate_from".to_owned(), from.clone()));
        }
        entry.targets = self
            .targets
            .iter()
            .map(|t| TargetCheck::new(t.figure.key(), t.at_most, t.figure.of(entry)))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Amount;
    use rill_engine::EngineConfig;

    #[test]
    fn names_say_the_configuration_and_are_distinct() {
        let names = names(false);
        assert_eq!(
            names,
            [
                "rate 10k/s 100B defaults",
                "rate 10k/s 100B linger 0",
                "rate 10k/s 100B linger 0 buffered",
                "rate 10k/s 100B appended",
                "rate half-max 100B appended",
                "rate half-max 100B written buffered",
            ]
        );
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn quick_runs_one_trickle_row_only() {
        let quick: Vec<&Row> = rows(true).collect();
        assert_eq!(quick.len(), 1);
        assert_eq!(quick[0].pace, Pace::PerSecond(TRICKLE_PER_S));
        assert_eq!(quick[0].visibility, Some(Visibility::Appended));
    }

    #[test]
    fn rows_override_the_knobs_they_are_defined_by() {
        let mut spec = Spec::new(1024, Amount::Records(1));
        spec.linger = Duration::from_millis(7);
        spec.visibility = Visibility::Durable;
        spec.direct_io = DirectIo::On;
        spec.rate = 123;
        let buffered = ROWS
            .iter()
            .find(|r| r.label == "linger 0 buffered")
            .unwrap();
        buffered.define(&mut spec, TRICKLE_PER_S);
        assert_eq!(spec.record_bytes, RECORD_BYTES);
        assert_eq!(spec.rate, TRICKLE_PER_S);
        assert_eq!(spec.linger, Duration::ZERO);
        assert_eq!(spec.direct_io, DirectIo::Off);
        assert_eq!(spec.visibility, LogConfig::default().visibility);
        assert_eq!(
            spec.amount,
            Amount::Records(1),
            "the amount stays the knobs'"
        );

        ROWS[0].define(&mut spec, TRICKLE_PER_S);
        assert_eq!(spec.linger, ProducerConfig::default().linger);
        assert_eq!(spec.batch_bytes, ProducerConfig::default().batch_bytes);
        assert_eq!(spec.direct_io, EngineConfig::new(".").direct_io);
    }

    #[test]
    fn half_of_nothing_is_still_a_rate() {
        assert_eq!(half(2_000_001.0), 1_000_001);
        assert_eq!(half(0.0), 1);
        assert_eq!(half(f64::NAN), 1);
    }

    #[test]
    fn annotation_checks_each_target_against_its_figure() {
        let mut entry = crate::report::tests::entry("rate 10k/s 100B appended");
        entry.latency_us.p50 = 4.0;
        entry.latency_us.p99 = 30.0;
        entry.latency_us.p999 = 100.0;
        entry.cpu_cores = 0.25;
        let appended = ROWS.iter().find(|r| r.targets == APPENDED_TRICKLE).unwrap();
        OpenLoop {
            name: appended.name(),
            offered_per_s: TRICKLE_PER_S,
            rate_from: Some("half of something".to_owned()),
            targets: appended.targets,
        }
        .annotate(&mut entry);
        assert_eq!(entry.offered_records_per_s, Some(TRICKLE_PER_S as f64));
        let met: Vec<(&str, bool)> = entry
            .targets
            .iter()
            .map(|t| (t.figure.as_str(), t.met))
            .collect();
        assert_eq!(
            met,
            [
                ("latency_us.p50", true),
                ("latency_us.p99", false),
                ("latency_us.p999", true),
                ("cpu_cores", false),
            ]
        );
        assert!(
            entry
                .settings
                .contains(&("rate_from".to_owned(), "half of something".to_owned()))
        );
    }
}
