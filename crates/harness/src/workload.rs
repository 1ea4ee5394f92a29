//! The records every scenario sends, and the ledger that proves each one arrived.
//!
//! A record's value starts with its identity (producer and sequence number) and, for sampled
//! records, the time it was sent; the rest is filler. The identity lets consumers tick each
//! record off in a [`Ledger`], so a lost or duplicated record is counted, not guessed at; the
//! send time gives end-to-end latency without any side channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Bytes at the start of a value that identify and time it.
pub const HEADER_BYTES: usize = 16;
/// Sequence numbers get the low 40 bits of an identity: 10^12 records per producer.
const SEQ_BITS: u32 = 40;

/// A record value of `len` bytes for producer `producer`, ready to be stamped per record.
pub struct Payload {
    bytes: Vec<u8>,
    producer: u64,
}

/// The bytes of a `len`-byte value after its header: the same for every record.
fn filler(len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len.max(HEADER_BYTES))
        .map(|i| (i as u8).wrapping_mul(7))
        .collect();
    bytes[..HEADER_BYTES].fill(0);
    bytes
}

impl Payload {
    pub fn new(producer: usize, len: usize) -> Self {
        let bytes = filler(len);
        Self {
            bytes,
            producer: producer as u64,
        }
    }

    /// The value for sequence number `seq`; `sent_ns` is 0 for records not sampled for latency.
    pub fn stamp(&mut self, seq: u64, sent_ns: u64) -> &[u8] {
        let id = (self.producer << SEQ_BITS) | seq;
        self.bytes[..8].copy_from_slice(&id.to_be_bytes());
        self.bytes[8..HEADER_BYTES].copy_from_slice(&sent_ns.to_be_bytes());
        &self.bytes
    }
}

/// What a consumer reads back from a value: (producer, sequence number, send time or 0).
pub fn parse(value: &[u8]) -> Option<(usize, u64, u64)> {
    let id = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    let sent_ns = u64::from_be_bytes(value.get(8..HEADER_BYTES)?.try_into().ok()?);
    Some((
        (id >> SEQ_BITS) as usize,
        id & ((1 << SEQ_BITS) - 1),
        sent_ns,
    ))
}

/// Nanoseconds since a run's start: what values carry as their send time (never 0).
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Self {
        Self(Instant::now())
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX) | 1
    }

    pub fn at_ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.0).as_nanos()).unwrap_or(u64::MAX) | 1
    }
}

/// One bit per record each producer may send, set as consumers see records: counts distinct
/// deliveries, duplicates and (from what producers report they sent) losses. Shared by all
/// consumer threads; a bit is set with one atomic OR. A value whose length or filler bytes
/// differ from what was sent is not ticked off: a corrupted record counts as lost.
pub struct Ledger {
    filler: Vec<u8>,
    producers: Vec<Vec<AtomicU64>>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    strangers: AtomicU64,
}

impl Ledger {
    /// `capacity[p]` is the most records producer `p` may send, each `record_bytes` long.
    pub fn new(capacity: &[u64], record_bytes: usize) -> Self {
        Self {
            filler: filler(record_bytes),
            producers: capacity
                .iter()
                .map(|&n| (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            strangers: AtomicU64::new(0),
        }
    }

    /// Ticks off one delivered record into `tally` (a value that is not one of ours counts as
    /// a stranger); returns the record's send time. Counts reach the ledger at [`Ledger::add`],
    /// once per poll, so the shared counters are not touched per record.
    pub fn mark(&self, value: Option<&[u8]>, tally: &mut Tally) -> Option<u64> {
        let value = value.filter(|v| v.get(HEADER_BYTES..) == self.filler.get(HEADER_BYTES..));
        let Some((producer, seq, sent_ns)) = value.and_then(parse) else {
            tally.strangers += 1;
            return None;
        };
        let Some(word) = self
            .producers
            .get(producer)
            .and_then(|words| words.get((seq / 64) as usize))
        else {
            tally.strangers += 1;
            return None;
        };
        let bit = 1u64 << (seq % 64);
        if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            tally.delivered += 1;
        } else {
            tally.duplicates += 1;
        }
        Some(sent_ns)
    }

    /// Adds a poll's tally to the shared counts.
    pub fn add(&self, tally: Tally) {
        self.delivered.fetch_add(tally.delivered, Ordering::Relaxed);
        self.duplicates
            .fetch_add(tally.duplicates, Ordering::Relaxed);
        self.strangers.fetch_add(tally.strangers, Ordering::Relaxed);
    }

    /// Distinct records delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Records that were sent (`sent[p]` by producer `p`, sequence numbers `0..sent[p]`) but
    /// never delivered, plus values that were not ours at all (a corrupted record is lost).
    pub fn lost(&self, sent: &[u64]) -> u64 {
        let missing: u64 = self
            .producers
            .iter()
            .zip(sent)
            .map(|(words, &n)| n - count_set(words, n))
            .sum();
        missing + self.strangers.load(Ordering::Relaxed)
    }
}

/// What one consumer saw since it last added to the [`Ledger`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub delivered: u64,
    pub duplicates: u64,
    pub strangers: u64,
}

/// Set bits among the first `n` of `words`.
fn count_set(words: &[AtomicU64], n: u64) -> u64 {
    let full = (n / 64) as usize;
    let mut count: u64 = words[..full.min(words.len())]
        .iter()
        .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
        .sum();
    if let Some(last) = words.get(full) {
        let mask = (1u64 << (n % 64)) - 1;
        count += u64::from((last.load(Ordering::Relaxed) & mask).count_ones());
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_identity_and_time() {
        let mut payload = Payload::new(3, 100);
        let value = payload.stamp(41, 12345).to_vec();
        assert_eq!(value.len(), 100);
        assert_eq!(parse(&value), Some((3, 41, 12345)));
    }

    #[test]
    fn ledger_counts_losses_duplicates_and_strangers() {
        let ledger = Ledger::new(&[100, 100], 32);
        let mut a = Payload::new(0, 32);
        let mut b = Payload::new(1, 32);
        let mut tally = Tally::default();
        for seq in 0..100 {
            ledger.mark(Some(a.stamp(seq, 0)), &mut tally);
        }
        for seq in (0..70).chain(10..20) {
            ledger.mark(Some(b.stamp(seq, 0)), &mut tally);
        }
        ledger.mark(Some(b"short"), &mut tally);
        let mut corrupt = b.stamp(75, 0).to_vec();
        corrupt[20] ^= 1;
        ledger.mark(Some(&corrupt), &mut tally);
        assert_eq!(ledger.delivered(), 0, "counts arrive with add");
        ledger.add(tally);
        assert_eq!(ledger.delivered(), 170);
        assert_eq!(ledger.duplicates(), 10);
        // Producer 1 sent 80: 70..80 never arrived (75 came back corrupted); plus the short
        // value and the corrupted one as strangers.
        assert_eq!(ledger.lost(&[100, 80]), 12);
    }

    #[test]
    fn out_of_range_sequence_is_a_stranger() {
        let ledger = Ledger::new(&[10], 32);
        let mut a = Payload::new(0, 32);
        let mut tally = Tally::default();
        assert_eq!(ledger.mark(Some(a.stamp(640, 0)), &mut tally), None);
        ledger.add(tally);
        assert_eq!(ledger.lost(&[0]), 1);
    }
}
