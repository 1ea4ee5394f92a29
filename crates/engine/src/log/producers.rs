//! Idempotent producers: per partition, each producer's epoch and its last five batches.
//!
//! A batch that carries a producer id (>= 0) is checked, by the partition's single writer at
//! the moment offsets are assigned, with Kafka's rules (`ProducerAppendInfo` and
//! `ProducerStateEntry` in Kafka's broker):
//!
//! - a batch with the producer's current epoch whose first and last sequences equal one of the
//!   last five batches is a retry: it is answered with that batch's offsets, not appended;
//! - an epoch older than the current one is fenced;
//! - a newer epoch must start at sequence 0 (a producer the partition knows nothing of may
//!   start anywhere: Kafka accepts any sequence then, since its records may have been removed
//!   by retention);
//! - otherwise the first sequence must follow the last one (`i32::MAX` is followed by 0).
//!
//! Batches without a producer id never reach this module. The state is rebuilt on open from
//! a snapshot (written when a segment rolls and on a clean close) plus the batch headers after
//! it, and producers idle for longer than the topic's `producer_id_expiration` are forgotten.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::record::BatchHeader;
use crate::topic::TopicPartition;

/// Batches remembered per producer, as Kafka does (and as many as a producer may have in
/// flight with `max.in.flight.requests.per.connection` at 5).
pub(crate) const BATCHES_KEPT: usize = 5;

/// The producer fields of a batch that has a producer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

impl ProducerBatch {
    /// The producer fields of `header`, if the batch has a producer id.
    pub fn of(header: &BatchHeader) -> Option<Self> {
        let id = header.producer_id.get();
        if id < 0 {
            return None;
        }
        let first_seq = header.base_sequence.get();
        Some(Self {
            id,
            epoch: header.producer_epoch.get(),
            first_seq,
            last_seq: next_sequence(first_seq, header.last_offset_delta.get()),
        })
    }
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0 as Kafka's sequences do.
fn next_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence < 0 || increment < 0 {
        return sequence;
    }
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// Whether `next` may follow `last`.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// Where one of a producer's batches landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// What the partition knows of one producer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    /// Its last batches of `epoch`, oldest first, at most [`BATCHES_KEPT`].
    batches: VecDeque<BatchMeta>,
    /// When it last appended (Unix ms): the wall clock when live, the batch's max timestamp
    /// when rebuilt from the log. Drives expiry.
    last_timestamp: i64,
}

/// What to do with a producer's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Append it.
    Append,
    /// A retry of a batch already in the log, at these offsets: do not append it again.
    Duplicate(BatchMeta),
}

/// Every producer a partition knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, Producer>,
}

impl ProducerStates {
    /// Checks `batch` against what the partition knows of its producer (see the module).
    pub fn check(&self, partition: &TopicPartition, batch: &ProducerBatch) -> Result<Verdict> {
        if batch.epoch < 0 || batch.first_seq < 0 {
            return Err(Error::InvalidProducerFields {
                partition: partition.clone(),
                producer_id: batch.id,
                epoch: batch.epoch,
                sequence: batch.first_seq,
            });
        }
        let Some(known) = self.producers.get(&batch.id) else {
            return Ok(Verdict::Append);
        };
        if batch.epoch == known.epoch
            && let Some(meta) = known
                .batches
                .iter()
                .find(|m| m.first_seq == batch.first_seq && m.last_seq == batch.last_seq)
        {
            return Ok(Verdict::Duplicate(*meta));
        }
        let out_of_order = |expected: i32| Error::OutOfOrderSequence {
            partition: partition.clone(),
            producer_id: batch.id,
            epoch: batch.epoch,
            sequence: batch.first_seq,
            expected,
        };
        if batch.epoch < known.epoch {
            return Err(Error::ProducerFenced {
                partition: partition.clone(),
                producer_id: batch.id,
                epoch: batch.epoch,
                current: known.epoch,
            });
        }
        if batch.epoch > known.epoch {
            return if batch.first_seq == 0 {
                Ok(Verdict::Append)
            } else {
                Err(out_of_order(0))
            };
        }
        match known.batches.back() {
            Some(last) if !in_sequence(last.last_seq, batch.first_seq) => {
                Err(out_of_order(next_sequence(last.last_seq, 1)))
            }
            _ => Ok(Verdict::Append),
        }
    }

    /// Remembers that `batch` was appended at `base_offset..=last_offset`.
    pub fn record(&mut self, batch: &ProducerBatch, base_offset: i64, last_offset: i64, now: i64) {
        let known = self.producers.entry(batch.id).or_insert_with(|| Producer {
            epoch: batch.epoch,
            batches: VecDeque::with_capacity(BATCHES_KEPT),
            last_timestamp: now,
        });
        if batch.epoch != known.epoch {
            known.epoch = batch.epoch;
            known.batches.clear();
        }
        if known.batches.len() == BATCHES_KEPT {
            known.batches.pop_front();
        }
        known.batches.push_back(BatchMeta {
            first_seq: batch.first_seq,
            last_seq: batch.last_seq,
            base_offset,
            last_offset,
        });
        known.last_timestamp = known.last_timestamp.max(now);
    }

    /// Forgets every batch at or after `offset` (their offsets are handed out again), and the
    /// producers left with none.
    pub fn truncate_from(&mut self, offset: i64) {
        self.producers.retain(|_, known| {
            known.batches.retain(|meta| meta.base_offset < offset);
            !known.batches.is_empty()
        });
    }

    /// Forgets producers that appended nothing for `max_idle` before `now_ms`.
    pub fn expire(&mut self, now_ms: i64, max_idle: Duration) {
        let idle_ms = i64::try_from(max_idle.as_millis()).unwrap_or(i64::MAX);
        self.producers
            .retain(|_, known| now_ms.saturating_sub(known.last_timestamp) < idle_ms);
    }
}

// Snapshots: `<offset>.snapshot`, the state after every batch below `offset`.

/// File suffix of producer state snapshots.
pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";
const MAGIC: &[u8; 8] = b"RILLPRS1";
/// Snapshots kept per partition: the newest, and one before it in case it is ahead of a log
/// that recovery cut.
const SNAPSHOTS_KEPT: usize = 2;
const PRODUCER_LEN: usize = 8 + 2 + 8 + 1;
const BATCH_LEN: usize = 4 + 4 + 8 + 8;

impl ProducerStates {
    fn encode(&self, offset: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            8 + 8 + 4 + self.producers.len() * (PRODUCER_LEN + BATCHES_KEPT * BATCH_LEN) + 4,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (id, known) in &self.producers {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&known.epoch.to_be_bytes());
            out.extend_from_slice(&known.last_timestamp.to_be_bytes());
            out.push(known.batches.len() as u8);
            for meta in &known.batches {
                out.extend_from_slice(&meta.first_seq.to_be_bytes());
                out.extend_from_slice(&meta.last_seq.to_be_bytes());
                out.extend_from_slice(&meta.base_offset.to_be_bytes());
                out.extend_from_slice(&meta.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// The offset and state a snapshot holds; `None` for anything damaged.
    fn decode(bytes: &[u8]) -> Option<(i64, Self)> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut reader = Reader(body.strip_prefix(MAGIC)?);
        let offset = i64::from_be_bytes(reader.take()?);
        let count = u32::from_be_bytes(reader.take()?) as usize;
        // Bounded by the bytes present, whatever the count claims.
        if count > reader.0.len() / PRODUCER_LEN {
            return None;
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            let id = i64::from_be_bytes(reader.take()?);
            let epoch = i16::from_be_bytes(reader.take()?);
            let last_timestamp = i64::from_be_bytes(reader.take()?);
            let [batches] = reader.take::<1>()?;
            if usize::from(batches) > BATCHES_KEPT || batches == 0 {
                return None;
            }
            let mut kept = VecDeque::with_capacity(BATCHES_KEPT);
            for _ in 0..batches {
                let meta = BatchMeta {
                    first_seq: i32::from_be_bytes(reader.take()?),
                    last_seq: i32::from_be_bytes(reader.take()?),
                    base_offset: i64::from_be_bytes(reader.take()?),
                    last_offset: i64::from_be_bytes(reader.take()?),
                };
                // Offsets as the log assigns them, or the file is not one this code wrote.
                if meta.base_offset < 0 || meta.last_offset < meta.base_offset {
                    return None;
                }
                kept.push_back(meta);
            }
            let known = Producer {
                epoch,
                batches: kept,
                last_timestamp,
            };
            producers.insert(id, known);
        }
        reader.0.is_empty().then_some((offset, Self { producers }))
    }

    /// Writes the state as of `offset` (everything below it appended) into `dir`, atomically,
    /// and deletes all but the newest snapshots.
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<()> {
        let (path, bytes) = self.snapshot(dir, offset);
        store_snapshot(dir, &path, &bytes)
    }

    /// The snapshot of the state as of `offset` and where it goes in `dir`, not yet written
    /// (a roll writes it later, on another thread).
    pub fn snapshot(&self, dir: &Path, offset: i64) -> (PathBuf, Vec<u8>) {
        (snapshot_path(dir, offset), self.encode(offset))
    }
}

/// Writes a snapshot made by [`ProducerStates::snapshot`] atomically and deletes all but the
/// newest snapshots in `dir`.
pub(super) fn store_snapshot(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    super::segment::write_synced(path, bytes)?;
    prune_snapshots(dir)
}

/// Deletes all but the newest snapshots in `dir`.
pub(super) fn prune_snapshots(dir: &Path) -> Result<()> {
    let snapshots = snapshot_paths(dir)?;
    let doomed = snapshots.len().saturating_sub(SNAPSHOTS_KEPT);
    for (_, old) in snapshots.into_iter().take(doomed) {
        remove(&old)?;
    }
    Ok(())
}

/// Reads fixed-size fields front to back.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(super::segment::file_name(offset, SNAPSHOT_SUFFIX))
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("remove producer snapshot", path, e))
        }
        _ => Ok(()),
    }
}

/// The snapshots of a partition directory, oldest first.
fn snapshot_paths(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list partition", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list partition", dir, e))?;
        let name = entry.file_name();
        let offset = name
            .to_str()
            .and_then(|name| name.strip_suffix(SNAPSHOT_SUFFIX)?.strip_suffix('.'))
            .filter(|digits| digits.len() == 20)
            .and_then(|digits| digits.parse::<i64>().ok());
        if let Some(offset) = offset {
            found.push((offset, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(offset, _)| *offset);
    Ok(found)
}

/// The newest intact snapshot at or below `end` (the log's next offset), with its offset.
/// Snapshots past `end` (the log was cut below them) and damaged ones are deleted, with a
/// warning for the damaged: the log is scanned instead.
pub(crate) fn load_snapshot(dir: &Path, end: i64) -> Result<Option<(i64, ProducerStates)>> {
    let mut snapshots = snapshot_paths(dir)?;
    while let Some((offset, path)) = snapshots.pop() {
        if offset > end {
            remove(&path)?;
            continue;
        }
        let decoded = fs::read(&path).ok().and_then(|b| ProducerStates::decode(&b));
        match decoded {
            Some((stored, states)) if stored == offset => return Ok(Some((offset, states))),
            _ => {
                log::warn!(
                    "{}: damaged producer snapshot ignored; the log is scanned instead",
                    path.display()
                );
                remove(&path)?;
            }
        }
    }
    Ok(None)
}

/// The producer state of a log whose segments are `segments` and whose next offset is `end`:
/// the newest usable snapshot, then the headers of every batch after it (the whole log when no
/// snapshot is usable), then expiry as of now.
pub(crate) fn rebuild(
    dir: &Path,
    segments: &[std::sync::Arc<super::segment::Segment>],
    end: i64,
    max_idle: Duration,
) -> Result<ProducerStates> {
    let (from, mut states) = load_snapshot(dir, end)?.unwrap_or_default();
    for segment in segments.iter().filter(|s| s.next_offset() > from) {
        let bytes = segment.bytes();
        let mut position = if from > segment.base_offset() {
            segment.position_of(from)
        } else {
            0
        };
        while let Some((header, len)) = super::segment::header_at(bytes, position) {
            position += len;
            let base = header.base_offset.get();
            if base < from {
                continue;
            }
            if let Some(batch) = ProducerBatch::of(header) {
                let timestamp = header.max_timestamp.get();
                states.record(&batch, base, header.last_offset(), timestamp);
            }
        }
    }
    states.expire(crate::time::unix_millis(), max_idle);
    Ok(states)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::topic::TopicName;

    fn tp() -> TopicPartition {
        TopicPartition::new(TopicName::new("t").unwrap(), 0)
    }

    fn batch(epoch: i16, first_seq: i32, records: i32) -> ProducerBatch {
        ProducerBatch {
            id: 7,
            epoch,
            first_seq,
            last_seq: next_sequence(first_seq, records - 1),
        }
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(next_sequence(i32::MAX, 1), 0);
        assert_eq!(next_sequence(i32::MAX - 1, 3), 1);
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(i32::MAX, 1));
        let mut states = ProducerStates::default();
        let near = batch(0, i32::MAX - 1, 2);
        states.record(&near, 0, 1, 0);
        assert_eq!(states.check(&tp(), &batch(0, 0, 1)).unwrap(), Verdict::Append);
        assert!(states.check(&tp(), &batch(0, 1, 1)).is_err());
    }

    #[test]
    fn only_the_last_five_batches_are_duplicates() {
        let mut states = ProducerStates::default();
        for i in 0..6 {
            states.record(&batch(0, i * 2, 2), i64::from(i) * 2, i64::from(i) * 2 + 1, 0);
        }
        assert!(matches!(
            states.check(&tp(), &batch(0, 2, 2)).unwrap(),
            Verdict::Duplicate(BatchMeta { base_offset: 2, .. })
        ));
        // The first batch fell out of the window: it is now a sequence error.
        assert!(matches!(
            states.check(&tp(), &batch(0, 0, 2)),
            Err(Error::OutOfOrderSequence { expected: 12, .. })
        ));
    }

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let mut states = ProducerStates::default();
        states.record(&batch(3, 0, 4), 10, 13, 99);
        let bytes = states.encode(14);
        assert_eq!(ProducerStates::decode(&bytes), Some((14, states.clone())));
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(ProducerStates::decode(&bytes[..cut]), None);
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert_eq!(ProducerStates::decode(&flipped), None);
    }
}
