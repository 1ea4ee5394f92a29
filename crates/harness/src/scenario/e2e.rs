//! `e2e`: producers and consumers run at once; latency is from `send` to a consumer's poll
//! returning the record. `rate`: the same at a fixed offered load (open loop), latency from
//! each record's *scheduled* send time, so a stall delays every record behind it in the
//! figures too (no coordinated omission).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::read::Expect;
use super::send::Timing;
use super::{Outcome, Window, completion, merged, named, plans, read_all, send_all};
use crate::spec::Spec;
use crate::workload::{Clock, Ledger};

/// Every 16th record carries its send time: thousands of samples per second without a clock
/// read per record on the producer.
const STAMP_EVERY: u64 = 16;

pub fn end_to_end(dir: &Path, spec: &Spec) -> anyhow::Result<Outcome> {
    let name = named("e2e", spec.record_bytes);
    let latency_of = "send to a consumer's poll returning the record";
    run(dir, spec, &name, latency_of, |_, _| Timing::Stamp {
        every: STAMP_EVERY,
    })
}

/// `rate` named by its rate and record size: `rate 100k/s 1KiB`.
pub fn rate(dir: &Path, spec: &Spec) -> anyhow::Result<Outcome> {
    let name = named(&format!("rate {}k/s", spec.rate / 1000), spec.record_bytes);
    rate_as(dir, spec, &name)
}

/// `rate` under a name of the caller's (the suite's rows that differ by more than the rate).
pub fn rate_as(dir: &Path, spec: &Spec, name: &str) -> anyhow::Result<Outcome> {
    let producers = spec.producers.max(1) as f64;
    // Each producer offers rate/producers records per second, all from the same start.
    let interval = Duration::from_secs_f64(producers / spec.rate.max(1) as f64);
    let latency_of = "scheduled send time to a consumer's poll returning the record";
    run(dir, spec, name, latency_of, |_, start| Timing::Paced {
        start,
        interval,
    })
}

fn run(
    dir: &Path,
    spec: &Spec,
    name: &str,
    latency_of: &str,
    timing: impl Fn(usize, Instant) -> Timing,
) -> anyhow::Result<Outcome> {
    let engine = spec.open_engine(dir)?;
    let backend = engine.backend().to_owned();
    let clock = Clock::start();
    let ledger = Ledger::new(
        &vec![spec.records_per_producer(); spec.producers.max(1)],
        spec.record_bytes,
    );
    let expect = Expect::default();
    let name = name.to_owned();
    // Producers start together a little after their threads are created, on one schedule.
    let start = Instant::now() + Duration::from_millis(5);
    let plans = plans(spec, start, |id| timing(id, start));
    let expected: u64 = plans.iter().map(|p| p.expected_records()).sum();
    let window = Window::open(&name, expected);
    let progress = &window.progress;
    let (sent, reads) = std::thread::scope(|scope| {
        let readers = scope.spawn(|| read_all(&engine, spec, &ledger, &expect, clock, progress));
        let sent = send_all(&engine, spec, plans, clock, progress_sink());
        // Readers stop once they have everything sent, or (if sending failed) at once.
        expect.finish(
            sent.as_ref()
                .map_or(0, |s| s.iter().map(|s| s.records).sum()),
        );
        let reads = readers
            .join()
            .map_err(|_| anyhow!("the reader threads panicked"))?;
        anyhow::Ok((sent?, reads?))
    })?;
    let end = completion(&reads);
    let measured = window.close(end);
    let per_producer: Vec<u64> = sent.iter().map(|s| s.records).collect();
    let latency = merged(reads.iter().map(|r| &r.end_to_end));
    engine.shutdown()?;
    Ok(Outcome {
        name,
        spec: spec.clone(),
        backend,
        records: ledger.delivered(),
        elapsed: measured.elapsed,
        latency,
        latency_of: latency_of.to_owned(),
        cpu: measured.cpu,
        cpu_by_role: measured.cpu_by_role,
        peak_rss_mb: measured.peak_rss_mb,
        lost: ledger.lost(&per_producer),
        duplicates: ledger.duplicates(),
        pause_max: None,
        timeline: measured.timeline,
        ceiling_neighbours: (0.0, 0.0),
    })
}

/// The progress bar and timeline follow what consumers receive; producers count into a sink
/// nobody reads.
fn progress_sink() -> &'static crate::measure::Progress {
    static SINK: crate::measure::Progress = crate::measure::Progress::new();
    &SINK
}
