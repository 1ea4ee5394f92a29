//! `durable`: producers that each wait for their records to be on disk (ack level durable)
//! before sending more, as a service acknowledging its own clients would. With one producer
//! every fdatasync carries one window of records; with many, the shard stages several
//! producers' batches into one write and one linked fdatasync (group commit), so throughput
//! should grow with producers while each fsync costs the same.

use std::path::Path;
use std::time::Instant;

use super::send::Timing;
use super::{Outcome, Window, last_finished, merged, named, plans, records_in_log, send_all};
use crate::spec::Spec;
use crate::workload::Clock;
use rill_engine::AckLevel;

/// Records each producer sends before waiting for them to be durable.
pub const WINDOW_RECORDS: usize = 16;

pub fn durable(dir: &Path, spec: &Spec) -> anyhow::Result<Outcome> {
    let spec = Spec {
        ack: AckLevel::Durable,
        ..spec.clone()
    };
    let engine = spec.open_engine(dir)?;
    let backend = engine.backend().to_owned();
    let name = named(&format!("durable x{}", spec.producers), spec.record_bytes);
    let plans = plans(&spec, Instant::now(), |_| Timing::Window {
        records: WINDOW_RECORDS,
    });
    let expected: u64 = plans.iter().map(|p| p.expected_records()).sum();
    let window = Window::open(&name, expected);
    let sent = send_all(&engine, &spec, plans, Clock::start(), &window.progress)?;
    let end = last_finished(&sent);
    let measured = window.close(end);
    let produced: u64 = sent.iter().map(|s| s.records).sum();
    let in_log = records_in_log(&engine)?;
    let latency = merged(sent.iter().map(|s| &s.latency));
    engine.shutdown()?;
    Ok(Outcome {
        name,
        spec,
        backend,
        records: produced,
        elapsed: measured.elapsed,
        latency,
        latency_of: format!(
            "send to durable acknowledgement (windows of {WINDOW_RECORDS} records per producer)"
        ),
        cpu: measured.cpu,
        cpu_by_role: measured.cpu_by_role,
        peak_rss_mb: measured.peak_rss_mb,
        lost: produced.saturating_sub(in_log),
        duplicates: in_log.saturating_sub(produced),
        pause_max: None,
        timeline: measured.timeline,
        ceiling_neighbours: (0.0, 0.0),
    })
}
