//! `produce`: producers send as fast as the engine takes records, acknowledged at the spec's
//! level; the clock stops when every producer's `flush` has returned *and* the engine has shut
//! down, which syncs every segment: the same "everything on disk" end as the peers' append.
//! `consume`: a fresh engine on the same directory, with the files evicted from the page cache
//! (see [`crate::cache`]), reads everything back from the start, decoding every record and
//! checking its identity and every value byte.

use std::path::Path;
use std::time::Instant;

use super::read::Expect;
use super::send::Timing;
use super::{
    Outcome, Window, completion, merged, named, plans, read_all, records_in_log, send_all,
};
use crate::spec::Spec;
use crate::workload::{Clock, Ledger};

/// Every 64th record's acknowledgement is timed: enough samples for p99.9 without a clock
/// read per record.
const ACK_SAMPLE_EVERY: u64 = 64;

/// `between` runs after the produce, before the page cache is emptied for the consume.
pub fn produce_then_consume(
    dir: &Path,
    spec: &Spec,
    between: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<[Outcome; 2]> {
    let (produce, per_producer) = produce(dir, spec)?;
    between()?;
    crate::cache::evict(dir)?;
    let consume = consume(dir, spec, &per_producer, &produce.backend)?;
    Ok([produce, consume])
}

fn produce(dir: &Path, spec: &Spec) -> anyhow::Result<(Outcome, Vec<u64>)> {
    let engine = spec.open_engine(dir)?;
    let backend = engine.backend().to_owned();
    let name = named("produce", spec.record_bytes);
    let plans = plans(spec, Instant::now(), |_| Timing::Ack {
        every: ACK_SAMPLE_EVERY,
    });
    let expected: u64 = plans.iter().map(|p| p.expected_records()).sum();
    let window = Window::open(&name, expected);
    let sent = send_all(&engine, spec, plans, Clock::start(), &window.progress)?;
    // Counted before shutdown, so it is the log as acknowledged, not as recovered.
    let in_log = records_in_log(&engine)?;
    engine.shutdown()?;
    let measured = window.close(Instant::now());
    let per_producer: Vec<u64> = sent.iter().map(|s| s.records).collect();
    let produced: u64 = per_producer.iter().sum();
    let latency = merged(sent.iter().map(|s| &s.latency));
    let outcome = Outcome {
        name,
        spec: spec.clone(),
        backend,
        records: produced,
        elapsed: measured.elapsed,
        latency,
        latency_of: format!("send to acknowledgement ({:?})", spec.ack).to_lowercase(),
        cpu: measured.cpu,
        cpu_by_role: measured.cpu_by_role,
        peak_rss_mb: measured.peak_rss_mb,
        lost: produced.saturating_sub(in_log),
        duplicates: in_log.saturating_sub(produced),
        pause_max: None,
        timeline: measured.timeline,
        ceiling_neighbours: (0.0, 0.0),
    };
    Ok((outcome, per_producer))
}

fn consume(
    dir: &Path,
    spec: &Spec,
    per_producer: &[u64],
    backend: &str,
) -> anyhow::Result<Outcome> {
    let engine = spec.reopen_engine(dir)?;
    let produced: u64 = per_producer.iter().sum();
    let ledger = Ledger::new(per_producer, spec.record_bytes);
    let name = named("consume", spec.record_bytes);
    let expect = Expect::already_sent(produced);
    let window = Window::open(&name, produced);
    let reads = read_all(
        &engine,
        spec,
        &ledger,
        &expect,
        Clock::start(),
        &window.progress,
    )?;
    let end = completion(&reads);
    let measured = window.close(end);
    engine.shutdown()?;
    let latency = merged(reads.iter().map(|r| &r.poll));
    Ok(Outcome {
        name,
        spec: spec.clone(),
        backend: backend.to_owned(),
        records: ledger.delivered(),
        elapsed: measured.elapsed,
        latency,
        latency_of: "one poll that returned records".to_owned(),
        cpu: measured.cpu,
        cpu_by_role: measured.cpu_by_role,
        peak_rss_mb: measured.peak_rss_mb,
        lost: ledger.lost(per_producer),
        duplicates: ledger.duplicates(),
        pause_max: None,
        timeline: measured.timeline,
        ceiling_neighbours: (0.0, 0.0),
    })
}
