//! One consumer thread's loop: poll, tick every record off in the ledger, time stamped ones.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rill_engine::Consumer;

use crate::measure::{Latency, Progress};
use crate::workload::{Clock, Ledger, Tally};

/// What the readers share with the producers: when sending is over and how much was sent.
#[derive(Default)]
pub struct Expect {
    sending_done: AtomicBool,
    sent: AtomicU64,
}

impl Expect {
    /// All records are already in the log (reading back after producing).
    pub fn already_sent(records: u64) -> Self {
        let expect = Self::default();
        expect.finish(records);
        expect
    }

    pub fn finish(&self, records: u64) {
        self.sent.store(records, Ordering::SeqCst);
        self.sending_done.store(true, Ordering::SeqCst);
    }

    fn target(&self) -> Option<u64> {
        self.sending_done
            .load(Ordering::SeqCst)
            .then(|| self.sent.load(Ordering::SeqCst))
    }
}

pub struct Read {
    /// Stamped records: send to this consumer's poll returning them.
    pub end_to_end: Latency,
    /// How long each poll that returned records took.
    pub poll: Latency,
    /// When this reader's own poll completed the ledger (the moment the last record was seen).
    pub completed_at: Option<Instant>,
}

/// Once sending is over, a reader that sees nothing new for this long stops; the ledger
/// then counts what never came as lost.
const STALL: Duration = Duration::from_secs(10);
const POLL_TIMEOUT: Duration = Duration::from_millis(50);

pub fn run(
    mut consumer: Consumer,
    ledger: &Ledger,
    expect: &Expect,
    clock: Clock,
    record_bytes: usize,
    progress: &Progress,
) -> anyhow::Result<Read> {
    let mut end_to_end = Latency::new();
    let mut poll = Latency::new();
    let mut last_news = Instant::now();
    loop {
        if let Some(target) = expect.target()
            && (ledger.delivered() >= target || last_news.elapsed() > STALL)
        {
            break;
        }
        let asked = Instant::now();
        let polled = consumer.poll(POLL_TIMEOUT).context("poll")?;
        if polled.is_empty() {
            continue;
        }
        let now_ns = clock.now_ns();
        poll.record(asked.elapsed());
        last_news = Instant::now();
        let mut tally = Tally::default();
        let records = polled
            .for_each_record(|_, record| {
                if let Some(sent_ns) = ledger.mark(record.value, &mut tally)
                    && sent_ns != 0
                {
                    end_to_end.record(Duration::from_nanos(now_ns.saturating_sub(sent_ns)));
                }
            })
            .context("decode polled records")?;
        ledger.add(tally);
        progress.add(records, records * record_bytes as u64);
        if expect
            .target()
            .is_some_and(|target| ledger.delivered() >= target)
        {
            return Ok(Read {
                end_to_end,
                poll,
                completed_at: Some(Instant::now()),
            });
        }
    }
    Ok(Read {
        end_to_end,
        poll,
        completed_at: None,
    })
}
