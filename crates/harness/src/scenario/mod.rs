//! The scenarios: each drives the engine through its public API, as an embedding application
//! would, and returns an [`Outcome`] measured from outside.
//!
//! - [`throughput`]: `produce` as fast as producers can, then `consume` it all back.
//! - [`e2e`]: producers and consumers at once; latency from `send` to the consumer (and the
//!   open-loop `rate` variant, where latency counts from each record's scheduled send time;
//!   the suite runs it in the configurations of [`crate::trickle`] too).
//! - [`durable`]: many producers waiting for fsync acknowledgements: group commit at work.
//! - [`group`]: a consumer group draining a topic while a member joins and another leaves.
//! - `wire` (with the `wire` feature): produce, consume and end to end through librdkafka and
//!   a rill server over loopback.

pub mod durable;
pub mod e2e;
pub mod group;
mod read;
mod send;
pub mod throughput;
#[cfg(feature = "wire")]
pub mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use rill_engine::Engine;
use rill_engine::ProducerConfig;
use rill_engine::{ConsumerConfig, Seek, StartFrom};

use crate::measure::{Latency, Meter, PeakRss, Progress, process_cpu_time};
use crate::report::{ScenarioReport, TimelinePoint};
use crate::spec::{Amount, Spec, TOPIC};
use crate::workload::{Clock, Ledger};

/// What one scenario measured.
pub struct Outcome {
    pub name: String,
    pub spec: Spec,
    /// The backend the engine actually used, after any fallback.
    pub backend: String,
    /// Records the throughput figure counts (sent, or delivered).
    pub records: u64,
    pub elapsed: Duration,
    pub latency: Latency,
    pub latency_of: String,
    pub cpu: Duration,
    /// `cpu` split by the role of the thread that spent it.
    pub cpu_by_role: BTreeMap<crate::cpu::Role, Duration>,
    pub peak_rss_mb: f64,
    pub lost: u64,
    pub duplicates: u64,
    /// Consumer groups: the longest gap between two deliveries on any partition.
    pub pause_max: Option<Duration>,
    pub timeline: Vec<TimelinePoint>,
    /// The disk ceiling sampled right before and right after this scenario (MB/s); (0, 0)
    /// until the suite has sampled them.
    pub ceiling_neighbours: (f64, f64),
}

impl Outcome {
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mb_per_s(&self) -> f64 {
        self.records_per_s() * self.spec.record_bytes as f64 / 1e6
    }

    /// The report entry; its ratio to the disk is against the scenario's own neighbouring
    /// ceiling samples (their mean, with the range from the faster to the slower one), or
    /// against `disk_mb_s` where the scenario has none.
    pub fn report(&self, disk_mb_s: f64) -> ScenarioReport {
        let gb = self.records as f64 * self.spec.record_bytes as f64 / 1e9;
        let (before, after) = self.ceiling_neighbours;
        let paired = before > 0.0 && after > 0.0;
        let mb_s = self.mb_per_s();
        let (ceiling, neighbours, range) = if paired {
            (
                (before + after) / 2.0,
                vec![before, after],
                vec![
                    ratio(mb_s, before.max(after)),
                    ratio(mb_s, before.min(after)),
                ],
            )
        } else {
            (disk_mb_s, Vec::new(), Vec::new())
        };
        ScenarioReport {
            name: self.name.clone(),
            record_bytes: self.spec.record_bytes,
            records: self.records,
            producers: self.spec.producers,
            consumers: self.spec.consumers,
            partitions: self.spec.partitions,
            backend: self.backend.clone(),
            elapsed_s: self.elapsed.as_secs_f64(),
            records_per_s: self.records_per_s(),
            mb_per_s: self.mb_per_s(),
            ratio_to_disk: ratio(mb_s, ceiling),
            ratio_to_disk_range: range,
            disk_ceiling_neighbours_mb_s: neighbours,
            latency_us: self.latency.summary(),
            latency_of: self.latency_of.clone(),
            cpu_s: self.cpu.as_secs_f64(),
            cpu_cores: ratio(self.cpu.as_secs_f64(), self.elapsed.as_secs_f64()),
            cpu_s_per_gb: ratio(self.cpu.as_secs_f64(), gb),
            cpu_ns_per_record: ratio(self.cpu.as_nanos() as f64, self.records as f64),
            cpu_ns_per_record_by_role: crate::cpu::per_record(&self.cpu_by_role, self.records),
            peak_rss_mb: self.peak_rss_mb,
            lost_records: self.lost,
            duplicate_records: self.duplicates,
            rebalance_pause_ms_max: self.pause_max.map(|d| d.as_secs_f64() * 1e3),
            timeline: self.timeline.clone(),
            settings: self.spec.settings(),
            offered_records_per_s: None,
            targets: Vec::new(),
        }
    }
}

pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// The measured stretch of a scenario: process CPU (in all and per thread), peak memory, and
/// the meter's timeline.
pub struct Window {
    began: Instant,
    cpu_start: Duration,
    threads: Arc<Mutex<crate::cpu::Tracker>>,
    rss: PeakRss,
    meter: Meter,
    pub progress: Arc<Progress>,
}

pub struct Measured {
    pub elapsed: Duration,
    pub cpu: Duration,
    pub cpu_by_role: BTreeMap<crate::cpu::Role, Duration>,
    pub peak_rss_mb: f64,
    pub timeline: Vec<TimelinePoint>,
}

impl Window {
    pub fn open(name: &str, expected_records: u64) -> Self {
        let progress = Arc::new(Progress::default());
        let rss = PeakRss::start();
        let threads = Arc::new(Mutex::new(crate::cpu::Tracker::start(None)));
        Self {
            meter: Meter::start(
                name,
                Arc::clone(&progress),
                expected_records,
                Arc::clone(&threads),
            ),
            threads,
            progress,
            rss,
            cpu_start: process_cpu_time(),
            began: Instant::now(),
        }
    }

    /// Closes the window at `end` (when the last record was accounted for), so teardown
    /// after it is not timed.
    pub fn close(self, end: Instant) -> Measured {
        let cpu = process_cpu_time().saturating_sub(self.cpu_start);
        let peak_rss_mb = self.rss.peak_mb();
        let timeline = self.meter.finish();
        let threads = Arc::try_unwrap(self.threads)
            .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
            .unwrap_or_else(|shared| {
                // The meter thread could not be joined; start afresh rather than guess.
                let _ = shared;
                crate::cpu::Tracker::start(None)
            });
        Measured {
            elapsed: end.saturating_duration_since(self.began),
            cpu,
            cpu_by_role: threads.finish(cpu),
            peak_rss_mb,
            timeline,
        }
    }
}

/// The producer settings a spec asks for.
pub fn producer_config(spec: &Spec) -> ProducerConfig {
    ProducerConfig {
        batch_bytes: spec.batch_bytes,
        linger: spec.linger,
        ack: spec.ack,
        idempotent: spec.idempotent,
        ..ProducerConfig::default()
    }
}

/// A scenario name with its record size: `produce 1KiB`, `e2e 100B`.
pub fn named(what: &str, record_bytes: usize) -> String {
    if record_bytes >= 1024 && record_bytes.is_multiple_of(1024) {
        format!("{what} {}KiB", record_bytes / 1024)
    } else {
        format!("{what} {record_bytes}B")
    }
}

/// Runs `plans` on one producer thread each (inside `scope`), returning what each sent.
pub fn send_all(
    engine: &Engine,
    spec: &Spec,
    plans: Vec<send::Plan>,
    clock: Clock,
    progress: &Progress,
) -> anyhow::Result<Vec<send::Sent>> {
    let producers = plans
        .iter()
        .map(|_| engine.producer_with(TOPIC, producer_config(spec)))
        .collect::<Result<Vec<_>, _>>()
        .context("create producers")?;
    std::thread::scope(|scope| {
        let handles = producers
            .into_iter()
            .zip(&plans)
            .enumerate()
            .map(|(i, (producer, plan))| {
                spawn_named(scope, format!("bench-producer-{i}"), move || {
                    send::run(producer, plan, clock, progress)
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        join_all(handles, "producer")
    })
}

/// Spawns a scoped thread with a name, so profiles and `top` tell the harness's threads apart.
pub fn spawn_named<'scope, 'env, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    name: String,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'scope,
) -> anyhow::Result<std::thread::ScopedJoinHandle<'scope, anyhow::Result<T>>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn_scoped(scope, move || {
            let result = f();
            crate::cpu::report_exit();
            result
        })
        .with_context(|| format!("spawn thread {name}"))
}

/// Joins scoped threads; a panic is an error, not a crash of the whole harness.
pub fn join_all<T>(
    handles: Vec<std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>>,
    what: &str,
) -> anyhow::Result<Vec<T>> {
    handles
        .into_iter()
        .enumerate()
        .map(|(i, handle)| {
            handle
                .join()
                .map_err(|_| anyhow!("{what} thread {i} panicked"))?
        })
        .collect()
}

/// One plan per producer; records are split as evenly as they go. Runs bounded by time end
/// at `start` plus the duration.
pub fn plans(
    spec: &Spec,
    start: Instant,
    timing: impl Fn(usize) -> send::Timing,
) -> Vec<send::Plan> {
    let n = spec.producers.max(1);
    (0..n)
        .map(|id| send::Plan {
            producer_id: id,
            record_bytes: spec.record_bytes,
            limit: match spec.amount {
                Amount::Records(total) => send::Limit::Records(
                    total / n as u64 + u64::from((id as u64) < total % n as u64),
                ),
                Amount::Duration(d) => send::Limit::Until {
                    deadline: start + d,
                    cap: spec.records_per_producer(),
                },
            },
            timing: timing(id),
        })
        .collect()
}

/// Runs `spec.consumers` readers (partitions dealt among them) until the ledger is complete.
pub fn read_all(
    engine: &Engine,
    spec: &Spec,
    ledger: &Ledger,
    expect: &read::Expect,
    clock: Clock,
    progress: &Progress,
) -> anyhow::Result<Vec<read::Read>> {
    let n = spec.consumers.max(1);
    let consumers = (0..n)
        .map(|i| {
            let mut consumer = engine.consumer_with(
                TOPIC,
                ConsumerConfig {
                    start: StartFrom::Earliest,
                    ..ConsumerConfig::default()
                },
            )?;
            consumer.assign(deal(spec.partitions, n, i))?;
            Ok(consumer)
        })
        .collect::<Result<Vec<_>, rill_engine::Error>>()
        .context("create consumers")?;
    std::thread::scope(|scope| {
        let handles = consumers
            .into_iter()
            .enumerate()
            .map(|(i, consumer)| {
                spawn_named(scope, format!("bench-consumer-{i}"), move || {
                    read::run(consumer, ledger, expect, clock, spec.record_bytes, progress)
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        join_all(handles, "consumer")
    })
}

/// Records the topic holds, from its partitions' end offsets: dense offsets from 0 mean a
/// lost or duplicated batch shows here even before anyone reads.
pub fn records_in_log(engine: &Engine) -> anyhow::Result<u64> {
    let mut probe = engine.consumer(TOPIC).context("open a probe consumer")?;
    probe.assign_all()?;
    let mut total = 0u64;
    for partition in 0..probe.partitions() {
        let end = probe
            .seek(partition, Seek::Latest)
            .with_context(|| format!("end offset of partition {partition}"))?;
        total += u64::try_from(end).unwrap_or(0);
    }
    Ok(total)
}

/// When the last producer's records reached their acknowledgement level.
pub fn last_finished(sent: &[send::Sent]) -> Instant {
    sent.iter()
        .map(|s| s.finished)
        .max()
        .unwrap_or_else(Instant::now)
}

/// When a reader's poll completed the ledger (now, if none did: the run then lost records,
/// and the ledger says so).
pub fn completion(reads: &[read::Read]) -> Instant {
    reads
        .iter()
        .filter_map(|r| r.completed_at)
        .min()
        .unwrap_or_else(Instant::now)
}

/// One histogram of every thread's.
pub fn merged<'a>(parts: impl IntoIterator<Item = &'a Latency>) -> Latency {
    let mut all = Latency::new();
    for part in parts {
        all.merge(part);
    }
    all
}

/// Partitions `0..partitions` dealt round robin to `n` readers.
pub fn deal(partitions: u32, n: usize, i: usize) -> Vec<u32> {
    (0..partitions).filter(|p| *p as usize % n == i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dealing_covers_every_partition_once() {
        let mut all: Vec<u32> = (0..3).flat_map(|i| deal(8, 3, i)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
    }
}
