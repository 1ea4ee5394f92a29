//! `produce`: producers send as fast as the engine takes records, acknowledged at the spec's
//! level, timed until every producer's `flush` returns. `consume`: consumers then read all of
//! it back from the start, decoding and ticking off every record.

use std::path::Path;
use std::time::Instant;

use super::read::Expect;
use super::send::Timing;
use super::{Outcome, Window, named, plans, read_all, records_in_log, send_all};
use crate::measure::Latency;
use crate::spec::Spec;
use crate::workload::{Clock, Ledger};

/// Every 64th record's acknowledgement is timed: enough samples for p99.9 without a clock
/// read per record.
const ACK_SAMPLE_EVERY: u64 = 64;

pub fn produce_then_consume(dir: &Path, spec: &Spec) -> anyhow::Result<[Outcome; 2]> {
    let engine = spec.open_engine(dir)?;
    let backend = engine.backend().to_owned();
    let clock = Clock::start();
    let capacity = vec![spec.records_per_producer(); spec.producers.max(1)];
    let ledger = Ledger::new(&capacity);

    let name = named("produce", spec.record_bytes);
    let plans = plans(spec, Instant::now(), |_| Timing::Ack {
        every: ACK_SAMPLE_EVERY,
    });
    let expected: u64 = plans.iter().map(|p| p.expected_records()).sum();
    let window = Window::open(&name, expected);
    let sent = send_all(&engine, spec, plans, clock, &window.progress)?;
    let end = sent
        .iter()
        .map(|s| s.finished)
        .max()
        .unwrap_or_else(Instant::now);
    let measured = window.close(end);
    let per_producer: Vec<u64> = sent.iter().map(|s| s.records).collect();
    let produced: u64 = per_producer.iter().sum();
    let in_log = records_in_log(&engine)?;
    let mut latency = Latency::new();
    for s in &sent {
        latency.merge(&s.latency);
    }
    let produce = Outcome {
        name,
        spec: spec.clone(),
        backend: backend.clone(),
        records: produced,
        elapsed: measured.elapsed,
        latency,
        latency_of: format!("send to acknowledgement ({:?})", spec.ack).to_lowercase(),
        cpu: measured.cpu,
        peak_rss_mb: measured.peak_rss_mb,
        lost: produced.saturating_sub(in_log),
        duplicates: in_log.saturating_sub(produced),
        pause_max: None,
        timeline: measured.timeline,
    };

    let name = named("consume", spec.record_bytes);
    let expect = Expect::already_sent(produced);
    let window = Window::open(&name, produced);
    let reads = read_all(&engine, spec, &ledger, &expect, clock, &window.progress)?;
    let end = reads
        .iter()
        .filter_map(|r| r.completed_at)
        .min()
        .unwrap_or_else(Instant::now);
    let measured = window.close(end);
    let mut latency = Latency::new();
    for r in &reads {
        latency.merge(&r.poll);
    }
    let consume = Outcome {
        name,
        spec: spec.clone(),
        backend,
        records: ledger.delivered(),
        elapsed: measured.elapsed,
        latency,
        latency_of: "one poll that returned records".to_owned(),
        cpu: measured.cpu,
        peak_rss_mb: measured.peak_rss_mb,
        lost: ledger.lost(&per_producer),
        duplicates: ledger.duplicates(),
        pause_max: None,
        timeline: measured.timeline,
    };
    engine.shutdown()?;
    Ok([produce, consume])
}
