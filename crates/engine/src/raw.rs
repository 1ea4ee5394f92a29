//! The raw path: whole Kafka batches in and out, for a front end that already speaks Kafka's
//! format (the wire-protocol server).
//!
//! - [`RawAppender`] appends batches encoded elsewhere (by a Kafka client) exactly as they are:
//!   validated as any outside batch must be, never re-encoded; the log stamps the base offset
//!   into the first 8 bytes, which the CRC does not cover.
//! - [`RawPartition`] reads whole batches in place ([`LogSlice`]: a view of a segment's map or
//!   of the in-memory tail), and reports the log start offset, the high watermark (the offset
//!   visible to consumers) and offsets by timestamp.
//! - [`Engine::wait_for_data`] parks a long-polling reader until a watermark passes a point,
//!   with a deadline.
//!
//! A raw appender is a producer of its own: one ring per partition it writes to, drained by
//! the partition's shard like any producer's, so its batches keep their order per partition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{AckLevel, BatchAck, Engine, Inner, PartitionEntry, Request, Ticket};
use crate::error::{Error, Result};
use crate::log::{LogConfig, LogSlice, Origin};
use crate::record::{Batch, RecordError};
use crate::recycle::{BatchBuf, Recycler};
use crate::ring;
use crate::topic::TopicPartition;

/// Batches one raw lane may have waiting in its ring before an append waits for room.
const RING_BATCHES: usize = 64;

/// Spare batch buffers a lane keeps for reuse (see `recycle`).
const RECYCLED_BATCHES: usize = 16;

/// One partition, as the raw path reads it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RawPartition {
    entry: Arc<PartitionEntry>,
    config: LogConfig,
}

impl RawPartition {
    /// The topic and partition.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.entry.tp
    }

    /// The first offset still in the log (Kafka's log start offset).
    pub fn start_offset(&self) -> i64 {
        self.entry.reader.start_offset()
    }

    /// The offset after the last record consumers may see (Kafka's high watermark): the
    /// written or the durable watermark, as the topic's visibility says.
    pub fn high_watermark(&self) -> i64 {
        self.entry.reader.end_offset()
    }

    /// Whole batches from the one holding `offset`, up to about `max_bytes` (at least one
    /// batch, however large), viewed in place. Empty at the high watermark; an offset outside
    /// `[start, high watermark]` is [`Error::OffsetOutOfRange`].
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<LogSlice> {
        self.entry.reader.read(offset, max_bytes)
    }

    /// The offset of the first visible record with a timestamp at or after `timestamp_ms`.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<i64>> {
        self.entry.reader.offset_for_timestamp(timestamp_ms)
    }

    /// The topic's log configuration (batch size limit, retention, segment size...).
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
}

/// A raw batch on its way: resolves to the batch's base offset once it reaches its ack level.
#[derive(Clone, Debug)]
pub struct RawTicket {
    /// The ticket of the batch's last record: it reaches a level only when the whole batch has.
    last: Ticket,
    records: i32,
}

impl RawTicket {
    /// Waits up to `timeout` for the batch to reach its ack level: `Ok(Some(base offset))`,
    /// `Ok(None)` if the time ran out, or the error that failed the batch.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<i64>> {
        let last = self.last.wait_timeout(timeout)?;
        Ok(last.map(|offset| offset - i64::from(self.records - 1)))
    }

    /// The base offset once assigned (whatever the ack level), without waiting.
    pub fn base_offset(&self) -> Option<i64> {
        self.last
            .offset()
            .map(|offset| offset - i64::from(self.records - 1))
    }
}

/// What the raw path holds per partition it appends to.
struct Lane {
    entry: Arc<PartitionEntry>,
    ring: ring::Producer<Request>,
    home: Arc<Recycler>,
}

/// Appends client-encoded batches, as they are, to any partition of the engine.
///
/// Not shared between threads: each connection of a server has its own, so its batches keep
/// their order per partition and connections never contend.
pub struct RawAppender {
    engine: Arc<Inner>,
    lanes: HashMap<TopicPartition, Lane>,
    /// Longest an append waits for room in a full ring.
    send_timeout: Duration,
}

impl std::fmt::Debug for RawAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAppender")
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl RawAppender {
    /// Validates `batch` (exactly one RecordBatch v2) and hands a copy of it to the
    /// partition's shard; the returned ticket resolves at `level`.
    ///
    /// Checked here, before anything is queued, so the caller gets a precise reason:
    /// framing and length ([`RecordError::Truncated`], [`RecordError::InvalidLength`]), size
    /// within the topic's batch limit ([`RecordError::BatchTooLarge`]), magic 2, CRC-32C,
    /// nothing after the batch, and every record (decompressed if need be, within the
    /// decompression limit) with a record count and offset deltas that agree with the header.
    /// Errors are [`Error::InvalidBatch`] or [`Error::SparseBatch`] naming the partition;
    /// a transactional or control batch is [`Error::TransactionalBatch`].
    ///
    /// A batch with a producer id is then checked by the shard against the partition's
    /// idempotent producer state: its ticket fails with [`Error::OutOfOrderSequence`] or
    /// [`Error::ProducerFenced`], or resolves to the first offsets of the batch it repeats.
    pub fn append(
        &mut self,
        partition: &RawPartition,
        batch: &[u8],
        level: AckLevel,
    ) -> Result<RawTicket> {
        if self.engine.is_closed() {
            return Err(Error::EngineClosed);
        }
        if partition.entry.is_deleted() {
            return Err(partition.entry.gone());
        }
        let records = validate(partition, batch)?;
        let timeout = self.send_timeout;
        let lane = self.lane(partition);
        let mut bytes = lane.home.take().unwrap_or_default();
        bytes.extend_from_slice(batch);
        let ack = BatchAck::new(lane.entry.clone());
        let request = Request {
            batch: BatchBuf::new(bytes, lane.home.clone()),
            ack: ack.clone(),
            sync: level == AckLevel::Durable,
            // Checked above, but the shard checks bytes that did not come from its own
            // builder again: the log never trusts a caller's batch.
            origin: Origin::Outside,
        };
        lane.entry
            .push_blocking(&mut lane.ring, request, Some(timeout))?;
        ack.mark_submitted();
        lane.entry.wake_shard();
        Ok(RawTicket {
            last: Ticket::new(ack, (records - 1) as u32, level),
            records,
        })
    }

    fn lane(&mut self, partition: &RawPartition) -> &mut Lane {
        let tp = &partition.entry.tp;
        // A lane of a deleted topic's partition is not the lane of a topic re-created with its
        // name: its ring leads to a partition no shard owns any more.
        if self
            .lanes
            .get(tp)
            .is_some_and(|lane| !Arc::ptr_eq(&lane.entry, &partition.entry))
        {
            self.lanes.remove(tp);
        }
        self.lanes.entry(tp.clone()).or_insert_with(|| {
            let entry = partition.entry.clone();
            let (ring, input) = ring::channel(RING_BATCHES);
            entry.shard.add_input(entry.tp.clone(), input);
            Lane {
                entry,
                ring,
                home: Recycler::new(RECYCLED_BATCHES),
            }
        })
    }
}

/// Checks one client batch completely; returns its record count.
fn validate(partition: &RawPartition, batch: &[u8]) -> Result<i32> {
    let tp = &partition.entry.tp;
    let limits = &partition.config.limits;
    let invalid = |source| Error::InvalidBatch {
        partition: tp.clone(),
        source,
    };
    let parsed = Batch::parse(batch, limits).map_err(invalid)?;
    if parsed.size_bytes() != batch.len() {
        return Err(invalid(RecordError::TrailingBytes {
            trailing: batch.len() - parsed.size_bytes(),
        }));
    }
    let header = parsed.header();
    if header.is_transactional() || header.is_control() {
        return Err(Error::TransactionalBatch {
            partition: tp.clone(),
            producer_id: header.producer_id.get(),
            control: header.is_control(),
        });
    }
    let declared = header.record_count.get();
    let last_delta = header.last_offset_delta.get();
    if declared <= 0 || last_delta != declared - 1 {
        return Err(Error::SparseBatch {
            partition: tp.clone(),
            records: declared,
            last_offset_delta: last_delta,
        });
    }
    // The iterator checks each record's framing, that deltas increase within the header's
    // last delta, that the count matches, and that no bytes trail: with `declared` records
    // and a last delta of `declared - 1`, the deltas are exactly 0..declared.
    let records = parsed.records(limits).map_err(invalid)?;
    for record in records.iter() {
        record.map_err(invalid)?;
    }
    Ok(declared)
}

impl Engine {
    /// One partition of a topic, for raw reads and appends.
    pub fn raw_partition(&self, topic: &str, partition: u32) -> Result<RawPartition> {
        let entry = self.inner.topic(topic)?;
        let found =
            entry
                .partitions
                .get(partition as usize)
                .ok_or_else(|| Error::UnknownPartition {
                    partition: TopicPartition::new(entry.name.clone(), partition),
                })?;
        Ok(RawPartition {
            entry: found.clone(),
            config: entry.config.clone(),
        })
    }

    /// The configuration topics get when created without one.
    pub fn default_topic_config(&self) -> &LogConfig {
        &self.inner.config.log
    }

    /// A raw appender whose appends wait at most `send_timeout` for room in a full ring.
    pub fn raw_appender(&self, send_timeout: Duration) -> RawAppender {
        RawAppender {
            engine: self.inner.clone(),
            lanes: HashMap::new(),
            send_timeout,
        }
    }

    /// Waits until some partition of `waits` has its high watermark past the given offset, or
    /// `deadline` passes, or the engine closes, or `cancelled` says so; returns whether data
    /// arrived.
    ///
    /// Parks on the partition's own notifier when there is one partition, else on the first
    /// partition's topic notifier, so with every partition in one topic (the common fetch) a
    /// write wakes the waiter at once; a write to another topic, and a cancellation, are seen
    /// at the notifier's next bounded nap (at most 100 ms). Never spins.
    pub fn wait_for_data(
        &self,
        waits: &[(RawPartition, i64)],
        deadline: Instant,
        cancelled: impl Fn() -> bool,
    ) -> bool {
        let arrived = || {
            waits
                .iter()
                .any(|(partition, offset)| partition.high_watermark() > *offset)
        };
        let Some((first, _)) = waits.first() else {
            return false;
        };
        let closed = || {
            self.inner.is_closed()
                || !first.entry.shard.is_alive()
                || first.entry.is_deleted()
                || cancelled()
        };
        let notifier = match waits {
            [_] => &first.entry.notifier,
            _ => &*first.entry.topic_notifier,
        };
        notifier
            .wait_until(Some(deadline), || {
                if arrived() {
                    Some(true)
                } else if closed() {
                    Some(false)
                } else {
                    None
                }
            })
            .unwrap_or(false)
    }
}
