//! `group`: a consumer group drains a topic filled beforehand. Two members start; a third
//! joins once a third of the records are delivered, and one of the first two leaves at two
//! thirds. Every partition's longest gap between two deliveries is the pause the rebalances
//! cost it (ordinary gaps between a member's polls count too, so the figure is an upper
//! bound on the rebalance pause).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rill_group::{Group, GroupConfig, GroupError, Member, MemberConfig, StartFrom};

use super::send::Timing;
use super::{Outcome, Window, join_all, named, plans, send_all, spawn_named};
use crate::measure::{Latency, Progress};
use crate::spec::{Spec, TOPIC};
use crate::workload::{Clock, Ledger, Tally};

const POLL_TIMEOUT: Duration = Duration::from_millis(20);
/// A member that has seen nothing new for this long stops; the ledger counts what is missing.
const STALL: Duration = Duration::from_secs(10);

pub fn group(dir: &Path, spec: &Spec) -> anyhow::Result<Outcome> {
    let engine = spec.open_engine(dir)?;
    let backend = engine.backend().to_owned();
    let clock = Clock::start();
    let sent = send_all(
        &engine,
        spec,
        plans(spec, Instant::now(), |_| Timing::Untimed),
        clock,
        &Progress::new(),
    )
    .context("fill the topic")?;
    let per_producer: Vec<u64> = sent.iter().map(|s| s.records).collect();
    let total: u64 = per_producer.iter().sum();
    let ledger = Ledger::new(
        &vec![spec.records_per_producer(); spec.producers.max(1)],
        spec.record_bytes,
    );
    let gaps = Gaps::new(spec.partitions);
    let group = Group::new(
        &engine,
        "rill-bench",
        GroupConfig {
            start: StartFrom::Earliest,
            ..GroupConfig::default()
        },
    )
    .context("create the group")?;
    let name = named("group", spec.record_bytes);
    let window = Window::open(&name, total);
    let shared = Shared {
        ledger: &ledger,
        gaps: &gaps,
        clock,
        total,
        record_bytes: spec.record_bytes,
        progress: &window.progress,
    };
    let reads = std::thread::scope(|scope| {
        let join = || {
            group
                .join(MemberConfig::new([TOPIC]))
                .context("join the group")
        };
        let mut handles = Vec::new();
        let leaver = join()?;
        handles.push(spawn_named(scope, "bench-member-0".to_owned(), || {
            drain(leaver, Some(total * 2 / 3), &shared)
        })?);
        let stayer = join()?;
        handles.push(spawn_named(scope, "bench-member-1".to_owned(), || {
            drain(stayer, None, &shared)
        })?);
        wait_for(&ledger, total / 3);
        let joiner = join()?;
        handles.push(spawn_named(scope, "bench-member-2".to_owned(), || {
            drain(joiner, None, &shared)
        })?);
        join_all(handles, "member")
    })?;
    let end = reads
        .iter()
        .flatten()
        .min()
        .copied()
        .unwrap_or_else(Instant::now);
    let measured = window.close(end);
    drop(group);
    engine.shutdown()?;
    Ok(Outcome {
        name,
        spec: Spec {
            consumers: 3,
            ..spec.clone()
        },
        backend,
        records: ledger.delivered(),
        elapsed: measured.elapsed,
        latency: gaps.latency(),
        latency_of: "gap between two deliveries on a partition".to_owned(),
        cpu: measured.cpu,
        cpu_by_role: measured.cpu_by_role,
        peak_rss_mb: measured.peak_rss_mb,
        lost: ledger.lost(&per_producer),
        duplicates: ledger.duplicates(),
        pause_max: Some(gaps.max()),
        timeline: measured.timeline,
        ceiling_neighbours: (0.0, 0.0),
    })
}

/// What the member threads share.
struct Shared<'a> {
    ledger: &'a Ledger,
    gaps: &'a Gaps,
    clock: Clock,
    total: u64,
    record_bytes: usize,
    progress: &'a Progress,
}

/// Polls until everything is delivered (or, with `leave_at`, until that many are, then
/// leaves). Returns when this member's poll completed the ledger, if it did.
fn drain(
    mut member: Member,
    leave_at: Option<u64>,
    shared: &Shared<'_>,
) -> anyhow::Result<Option<Instant>> {
    let mut last_news = Instant::now();
    loop {
        let delivered = shared.ledger.delivered();
        if leave_at.is_some_and(|at| delivered >= at) {
            member.leave().context("leave the group")?;
            return Ok(None);
        }
        if delivered >= shared.total || last_news.elapsed() > STALL {
            return Ok(None);
        }
        let polled = member.poll(POLL_TIMEOUT).context("member poll")?;
        if polled.is_empty() {
            continue;
        }
        last_news = Instant::now();
        let now_ns = shared.clock.now_ns();
        let offsets = polled.offsets();
        for (tp, _) in &offsets {
            shared.gaps.delivered(tp.partition, now_ns);
        }
        let mut tally = Tally::default();
        let records = polled
            .for_each_record(|_, _, record| {
                shared.ledger.mark(record.value, &mut tally);
            })
            .context("decode polled records")?;
        shared.ledger.add(tally);
        shared
            .progress
            .add(records, records * shared.record_bytes as u64);
        match member.commit(offsets) {
            // A rebalance between the poll and the commit: the next owner re-reads from the
            // last commit, which is what at-least-once delivery means.
            Ok(()) | Err(GroupError::StaleMemberEpoch { .. } | GroupError::NotOwner { .. }) => {}
            Err(e) => return Err(e).context("commit"),
        }
        if shared.ledger.delivered() >= shared.total {
            return Ok(Some(Instant::now()));
        }
    }
}

fn wait_for(ledger: &Ledger, records: u64) {
    let began = Instant::now();
    while ledger.delivered() < records && began.elapsed() < STALL {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Per partition: when it last delivered, and every gap between deliveries.
struct Gaps {
    last_ns: Vec<AtomicU64>,
    max_ns: AtomicU64,
    samples: std::sync::Mutex<Latency>,
}

impl Gaps {
    fn new(partitions: u32) -> Self {
        Self {
            last_ns: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            max_ns: AtomicU64::new(0),
            samples: std::sync::Mutex::new(Latency::new()),
        }
    }

    fn delivered(&self, partition: u32, now_ns: u64) {
        let Some(last) = self.last_ns.get(partition as usize) else {
            return;
        };
        let previous = last.swap(now_ns, Ordering::Relaxed);
        if previous != 0 && now_ns > previous {
            let gap = now_ns - previous;
            self.max_ns.fetch_max(gap, Ordering::Relaxed);
            if let Ok(mut samples) = self.samples.lock() {
                samples.record(Duration::from_nanos(gap));
            }
        }
    }

    fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns.load(Ordering::Relaxed))
    }

    fn latency(&self) -> Latency {
        self.samples
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|_| Latency::new())
    }
}
