//! One producer thread's loop, shared by every scenario that sends.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use rill_engine::Ticket;
use rill_engine::{Producer, ProducerRecord};

use crate::measure::{Latency, Progress};
use crate::workload::{Clock, Payload};

/// When a producer stops.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Records(u64),
    /// Stops at this instant, or at `cap` records (the ledger's room), whichever comes first.
    Until {
        deadline: Instant,
        cap: u64,
    },
}

/// What latency a producer measures, if any.
#[derive(Clone, Copy, Debug)]
pub enum Timing {
    /// Nothing timed (filling a topic before the measured part).
    Untimed,
    /// Every `every`-th record carries its send time for the consumer (end to end).
    Stamp { every: u64 },
    /// Every `every`-th record's ticket is watched: send to acknowledgement.
    Ack { every: u64 },
    /// Open loop: record `seq` is due at `start + seq * interval` and carries that due time,
    /// so latency counts from when it should have been sent (no coordinated omission).
    Paced { start: Instant, interval: Duration },
    /// Closed loop: `flush` (which waits for the acks) after every `records` records; each
    /// record's latency is from its send to the flush's return.
    Window { records: usize },
}

pub struct Plan {
    pub producer_id: usize,
    pub record_bytes: usize,
    pub limit: Limit,
    pub timing: Timing,
}

impl Plan {
    /// Records this producer will send if nothing fails; 0 when bounded by time.
    pub fn expected_records(&self) -> u64 {
        match self.limit {
            Limit::Records(n) => n,
            Limit::Until { .. } => 0,
        }
    }
}

pub struct Sent {
    pub records: u64,
    pub latency: Latency,
    /// When the last record reached its acknowledgement level (flush returned).
    pub finished: Instant,
}

/// Tickets being watched for acknowledgement latency; bounded so a slow disk cannot grow it.
const WATCHED_MAX: usize = 4096;
/// Latency is not sampled for this long after a producer starts.
const WARMUP: Duration = Duration::from_millis(100);
/// Records between two updates of the shared progress counter.
const PROGRESS_EVERY: u64 = 1024;

pub fn run(
    mut producer: Producer,
    plan: &Plan,
    clock: Clock,
    progress: &Progress,
) -> anyhow::Result<Sent> {
    let mut payload = Payload::new(plan.producer_id, plan.record_bytes);
    let mut latency = Latency::new();
    let mut watched: VecDeque<(Instant, Ticket)> = VecDeque::new();
    let mut window: Vec<Option<Instant>> = Vec::new();
    let mut seq = 0u64;
    // Latency samples start after the warm-up (thread start, first segment, cold caches); the
    // records sent meanwhile still count in the throughput.
    let warm_from = Instant::now() + WARMUP;
    while !limit_reached(plan.limit, seq) {
        let stamp = match plan.timing {
            Timing::Stamp { every } if seq.is_multiple_of(every) => {
                let now = Instant::now();
                if now >= warm_from {
                    clock.at_ns(now)
                } else {
                    0
                }
            }
            Timing::Paced { start, interval } => {
                let due = start + interval.saturating_mul(u32::try_from(seq).unwrap_or(u32::MAX));
                wait_until(due);
                if due >= warm_from {
                    clock.at_ns(due)
                } else {
                    0
                }
            }
            _ => 0,
        };
        let timed = match plan.timing {
            Timing::Ack { every } => seq.is_multiple_of(every),
            Timing::Window { .. } => true,
            _ => false,
        };
        let sent_at = timed.then(Instant::now).filter(|at| *at >= warm_from);
        let ticket = producer
            .send(ProducerRecord::new(None, payload.stamp(seq, stamp)))
            .with_context(|| format!("producer {} send #{seq}", plan.producer_id))?
            .into_ticket();
        match plan.timing {
            Timing::Ack { .. } => {
                if let Some(sent_at) = sent_at {
                    watched.push_back((sent_at, ticket));
                    let full = watched.len() >= WATCHED_MAX;
                    settle(&mut watched, &mut latency, full)?;
                }
            }
            Timing::Window { records } => {
                window.push(sent_at);
                if window.len() >= records {
                    flush_window(&mut producer, &mut window, &mut latency)?;
                }
            }
            _ => {}
        }
        seq += 1;
        if seq.is_multiple_of(PROGRESS_EVERY) {
            progress.add(PROGRESS_EVERY, PROGRESS_EVERY * plan.record_bytes as u64);
        }
    }
    settle(&mut watched, &mut latency, false)?;
    flush_window(&mut producer, &mut window, &mut latency)?;
    let finished = Instant::now();
    // Tickets still open were in the last, partly filled batches, which only flush hands
    // over: their acknowledgement is the flush.
    for (sent_at, _) in watched.drain(..) {
        latency.record(finished - sent_at);
    }
    let rest = seq % PROGRESS_EVERY;
    progress.add(rest, rest * plan.record_bytes as u64);
    Ok(Sent {
        records: seq,
        latency,
        finished,
    })
}

fn limit_reached(limit: Limit, seq: u64) -> bool {
    match limit {
        Limit::Records(n) => seq >= n,
        // Reading the clock every record would cost more than some sends; every 64 is within
        // microseconds of the deadline.
        Limit::Until { deadline, cap } => {
            seq >= cap || (seq.is_multiple_of(64) && Instant::now() >= deadline)
        }
    }
}

/// Records the latency of watched tickets that have resolved, oldest first; with `block`,
/// waits for the oldest one first (the bound on watched tickets was reached).
fn settle(
    watched: &mut VecDeque<(Instant, Ticket)>,
    latency: &mut Latency,
    block: bool,
) -> anyhow::Result<()> {
    if block && let Some((sent_at, ticket)) = watched.pop_front() {
        ticket.wait().context("wait for an acknowledgement")?;
        latency.record(sent_at.elapsed());
    }
    while let Some((sent_at, ticket)) = watched.front() {
        if ticket.poll().context("acknowledgement")?.is_none() {
            break;
        }
        latency.record(sent_at.elapsed());
        watched.pop_front();
    }
    Ok(())
}

/// `window` holds each record's send time (`None` during the warm-up).
fn flush_window(
    producer: &mut Producer,
    window: &mut Vec<Option<Instant>>,
    latency: &mut Latency,
) -> anyhow::Result<()> {
    producer.flush().context("flush")?;
    let done = Instant::now();
    for sent_at in window.drain(..).flatten() {
        latency.record(done - sent_at);
    }
    Ok(())
}

/// Sleeps until `due` if it is ahead; a late record is sent at once (and its lateness counts
/// in its latency). Sleeping, not spinning: on two cores a spinning producer would take the
/// shard's CPU.
fn wait_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}
