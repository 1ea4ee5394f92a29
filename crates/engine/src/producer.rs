//! Producer handles: records in, batches out, one ring per partition.
//!
//! A producer accumulates records per partition in a Kafka batch of its own. A batch is
//! handed to the partition's shard when it reaches `batch_bytes`, when it has waited `linger`
//! (checked at each send), or on [`Producer::flush`]. The hand-off is a push into a ring that
//! belongs to this producer and this partition alone, so producers on different threads never
//! contend, and order is kept per producer and partition. A full ring is back-pressure:
//! [`Producer::send`] waits (up to `send_timeout`), [`Producer::try_send`] returns the record.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{
    AckLevel, AckPool, BatchAck, Engine, Inner, PartitionEntry, Request, Ticket, TopicEntry,
};
use crate::error::{Error, Result};
use crate::log::Origin;
use crate::partitioner::{PartitionChooser, Partitioner};
use crate::record::{BatchBuilder, Compression, HEADER_LEN, Header};
use crate::recycle::{BatchBuf, Recycler};
use crate::ring;

/// Spare batch buffers a lane keeps for reuse. Buffers in flight, in the ring and in the
/// partition's in-memory tail are not counted: this only absorbs the jitter between buffers
/// coming back and new batches starting, and bounds what an idle lane holds on to.
const RECYCLED_BATCHES: usize = 16;

/// How a [`Producer`] batches, compresses and acknowledges. Checked when the producer is made.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// A batch is handed over once it holds this many bytes.
    pub batch_bytes: usize,
    /// A batch that has not filled is handed over after waiting this long (checked at each
    /// send; `flush` hands everything over at once).
    pub linger: Duration,
    /// The codec of every batch this producer builds.
    pub compression: Compression,
    /// What a [`Ticket`] waits for.
    pub ack: AckLevel,
    /// Batches that may wait in one partition's ring before `send` blocks.
    pub ring_batches: usize,
    /// How keyless records pick a partition (keyed records use Kafka's key hash).
    pub partitioner: Partitioner,
    /// Longest `send` waits for room in a full ring; `None` waits as long as it takes.
    pub send_timeout: Option<Duration>,
    /// Stamp every batch with a producer id (allocated durably when the producer is made, see
    /// [`Engine::init_producer_id`]), its epoch and per-partition sequences, as Kafka's
    /// idempotent producer does: the partition then refuses a gap in the sequence and answers
    /// a repeated batch with its first offsets. Off by default: the embedded producer hands
    /// each batch over once, so it only matters to a caller that re-sends batches itself.
    pub idempotent: bool,
}

impl ProducerConfig {
    /// Refuses values the producer cannot work with, naming the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str| {
            Err(Error::InvalidConfig {
                field,
                reason: "must be positive".into(),
            })
        };
        if self.ring_batches == 0 {
            return invalid("ProducerConfig::ring_batches");
        }
        if self.batch_bytes == 0 {
            return invalid("ProducerConfig::batch_bytes");
        }
        Ok(())
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batch_bytes: 64 * 1024,
            linger: Duration::from_millis(5),
            compression: Compression::None,
            ack: AckLevel::Written,
            ring_batches: 64,
            partitioner: Partitioner::default(),
            send_timeout: Some(Duration::from_secs(30)),
            idempotent: false,
        }
    }
}

/// One record to send. Borrowed: the producer copies it into its batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProducerRecord<'a> {
    /// The key; `None` is Kafka's null key (the partitioner then picks the partition).
    pub key: Option<&'a [u8]>,
    /// The value; `None` is Kafka's null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Headers, in order.
    pub headers: &'a [Header<'a>],
    /// Milliseconds since the epoch; now when `None`.
    pub timestamp: Option<i64>,
    /// The partition; chosen by the partitioner when `None`.
    pub partition: Option<u32>,
}

impl<'a> ProducerRecord<'a> {
    /// A record with a key (or none) and a value, no headers, stamped now, partitioned by the
    /// producer's partitioner.
    pub fn new(key: Option<&'a [u8]>, value: &'a [u8]) -> Self {
        Self {
            key,
            value: Some(value),
            ..Self::default()
        }
    }
}

/// The sequence after `count` records from `sequence`: Kafka's sequences wrap to 0 after
/// `i32::MAX`.
fn following_sequence(sequence: i32, count: u32) -> i32 {
    let next = (i64::from(sequence) + i64::from(count)) % (i64::from(i32::MAX) + 1);
    next as i32
}

/// Why [`Producer::try_send`] did not take a record.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError<'a> {
    /// The partition's ring is full: the record, handed back untouched.
    #[error("the partition's ring is full")]
    WouldBlock(ProducerRecord<'a>),
    /// The send failed for another reason.
    #[error(transparent)]
    Failed(#[from] Error),
}

struct OpenBatch {
    builder: BatchBuilder,
    ack: Arc<BatchAck>,
    opened: Instant,
}

/// What the producer keeps per partition it has written to.
struct Lane {
    entry: Arc<PartitionEntry>,
    ring: ring::Producer<Request>,
    /// Where this lane's batch buffers come back to once the engine is done with them.
    home: Arc<Recycler>,
    /// This lane's acks, reused once their batches are done with.
    acks: AckPool,
    open: Option<OpenBatch>,
    /// The last record handed over, for `flush` to wait on.
    last: Option<Ticket>,
    /// The sequence of the next batch's first record (idempotent producers only).
    next_sequence: i32,
}

/// Appends records to one topic; made by [`Engine::producer`](crate::Engine::producer).
///
/// Use one producer per thread (`send` takes `&mut self`); the producer is `Send`, so it may
/// move between threads. Records of one producer to one partition keep their order.
pub struct Producer {
    engine: Arc<Inner>,
    topic: Arc<TopicEntry>,
    config: ProducerConfig,
    chooser: PartitionChooser,
    lanes: Vec<Option<Lane>>,
    partition_count: NonZeroU32,
    max_batch_bytes: usize,
    /// When the oldest open batch's linger runs out, so linger costs one comparison per send:
    /// computed when a batch opens (adding the linger to an instant on every send was a tenth
    /// of a send's instructions at 1 KiB records).
    linger_due: Option<Instant>,
    clock: SendClock,
    /// The producer id and epoch stamped in every batch, if idempotent.
    identity: Option<crate::ProducerIdentity>,
}

/// One clock read per send serves both linger and record timestamps: reading the clock was
/// over half of a send's cost for 100-byte records. Wall time is derived from a monotonic
/// anchor, re-anchored every second so it follows the system clock.
struct SendClock {
    anchor: Instant,
    anchor_ms: i64,
}

impl SendClock {
    const REANCHOR: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self {
            anchor: Instant::now(),
            anchor_ms: crate::time::unix_millis(),
        }
    }

    /// Now, as an instant and as milliseconds since the epoch.
    fn now(&mut self) -> (Instant, i64) {
        let now = Instant::now();
        let since = now.saturating_duration_since(self.anchor);
        if since >= Self::REANCHOR {
            *self = Self::new();
            return (self.anchor, self.anchor_ms);
        }
        (now, self.anchor_ms + since.as_millis() as i64)
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("topic", &self.topic.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Producers are made here, where they are defined, so that the engine module does not depend
/// on the producer module (which depends on it).
impl Engine {
    /// A producer for `topic` with the default configuration.
    pub fn producer(&self, topic: &str) -> Result<Producer> {
        Producer::new(
            self.inner.clone(),
            self.inner.topic(topic)?,
            Default::default(),
        )
    }

    /// A producer for `topic` with `config` (checked here, naming the field it refuses).
    pub fn producer_with(&self, topic: &str, config: ProducerConfig) -> Result<Producer> {
        Producer::new(self.inner.clone(), self.inner.topic(topic)?, config)
    }
}

impl Producer {
    pub(crate) fn new(
        engine: Arc<Inner>,
        topic: Arc<TopicEntry>,
        config: ProducerConfig,
    ) -> Result<Self> {
        let partition_count =
            NonZeroU32::new(topic.partitions.len() as u32).ok_or(Error::UnknownTopic {
                topic: topic.name.to_string(),
            })?;
        config.validate()?;
        let identity = match config.idempotent {
            true => Some(engine.producer_ids.allocate()?),
            false => None,
        };
        Ok(Self {
            identity,
            lanes: (0..partition_count.get()).map(|_| None).collect(),
            chooser: PartitionChooser::new(config.partitioner),
            max_batch_bytes: topic.config.limits.max_batch_bytes,
            engine,
            topic,
            config,
            partition_count,
            linger_due: None,
            clock: SendClock::new(),
        })
    }

    /// Sends a record; waits for room when the partition's ring is full (at most
    /// `send_timeout`).
    ///
    /// `producer.send(record)?.wait()` hands the record's batch over and waits for its offset;
    /// [`Sent::into_ticket`] keeps a [`Ticket`] to wait on later, after more sends.
    pub fn send(&mut self, record: ProducerRecord<'_>) -> Result<Sent<'_>> {
        match self.send_inner(record, true) {
            Ok(ticket) => Ok(Sent {
                producer: self,
                ticket,
            }),
            Err(TrySendError::Failed(error)) => Err(error),
            // Only try_send refuses: a blocking send waits for room and ends in SendTimeout.
            Err(TrySendError::WouldBlock(_)) => unreachable!("a blocking send never refuses"),
        }
    }

    /// Sends a record, or hands it back at once when its partition's ring is full.
    pub fn try_send<'a>(
        &mut self,
        record: ProducerRecord<'a>,
    ) -> std::result::Result<Sent<'_>, TrySendError<'a>> {
        let ticket = self.send_inner(record, false)?;
        Ok(Sent {
            producer: self,
            ticket,
        })
    }

    /// Hands every open batch to its shard and waits until every record sent so far reaches
    /// the ack level.
    pub fn flush(&mut self) -> Result<()> {
        for partition in 0..self.lanes.len() {
            self.submit(partition, true)?;
        }
        self.linger_due = None;
        for lane in self.lanes.iter().flatten() {
            if let Some(ticket) = &lane.last {
                ticket.wait()?;
            }
        }
        Ok(())
    }

    /// The topic's partition count.
    pub fn partitions(&self) -> u32 {
        self.partition_count.get()
    }

    /// Hands over the open batch of `ticket`'s partition if the ticket's record is still in it.
    fn hand_over(&mut self, ticket: &Ticket) -> Result<()> {
        if ticket.is_submitted() {
            return Ok(());
        }
        self.submit(ticket.partition() as usize, true)
    }

    fn send_inner<'a>(
        &mut self,
        record: ProducerRecord<'a>,
        block: bool,
    ) -> std::result::Result<Ticket, TrySendError<'a>> {
        if self.engine.is_closed() {
            return Err(Error::EngineClosed.into());
        }
        let partition = match record.partition {
            Some(p) if p < self.partition_count.get() => p,
            Some(p) => {
                return Err(Error::UnknownPartition {
                    partition: crate::topic::TopicPartition::new(self.topic.name.clone(), p),
                }
                .into());
            }
            None => self.chooser.choose(record.key, self.partition_count),
        };
        let index = partition as usize;
        // Fail-stop: a partition whose write or sync failed refuses sends at once, with the
        // failure that stopped it (one load of a set-once cell).
        let entry = &self.topic.partitions[index];
        if let Some(poison) = entry.reader.poison() {
            return Err(poison.error(&entry.tp).into());
        }
        let size = record_size(&record);
        if size + HEADER_LEN > self.max_batch_bytes {
            return Err(Error::RecordTooLarge {
                partition: crate::topic::TopicPartition::new(self.topic.name.clone(), partition),
                size,
                max: self.max_batch_bytes - HEADER_LEN,
            }
            .into());
        }
        self.lane(index)?;
        let open_bytes = self.open_bytes(index);
        let would_overflow =
            open_bytes > 0 && open_bytes + size > self.config.batch_bytes.min(self.max_batch_bytes);
        if would_overflow {
            if !block && self.lane_full(index) {
                return Err(TrySendError::WouldBlock(record));
            }
            self.submit(index, block)?;
        }
        let (now, now_ms) = self.clock.now();
        let ticket = self.append(index, &record, now, now_ms)?;
        self.chooser.record_appended(partition, size);
        if self.open_bytes(index) >= self.config.batch_bytes {
            self.submit(index, block)?;
        }
        self.submit_lingering(block, now)?;
        Ok(ticket)
    }

    /// Creates the partition's ring on first use and registers it with the owning shard.
    fn lane(&mut self, index: usize) -> Result<()> {
        if self.lanes[index].is_some() {
            return Ok(());
        }
        let entry = self.topic.partitions[index].clone();
        let (ring, input) = ring::channel(self.config.ring_batches);
        entry.shard.add_input(entry.tp.clone(), input);
        self.lanes[index] = Some(Lane {
            entry,
            ring,
            home: Recycler::new(RECYCLED_BATCHES),
            acks: AckPool::new(),
            open: None,
            last: None,
            next_sequence: 0,
        });
        Ok(())
    }

    fn open_bytes(&self, index: usize) -> usize {
        self.lanes[index]
            .as_ref()
            .and_then(|lane| lane.open.as_ref())
            .map_or(0, |open| open.builder.size_bytes())
    }

    fn lane_full(&self, index: usize) -> bool {
        self.lanes[index]
            .as_ref()
            .is_some_and(|lane| lane.ring.free_slots() == 0)
    }

    fn append(
        &mut self,
        index: usize,
        record: &ProducerRecord<'_>,
        now: Instant,
        now_ms: i64,
    ) -> Result<Ticket> {
        let level = self.config.ack;
        let compression = self.config.compression;
        let capacity = self.config.batch_bytes.min(self.max_batch_bytes);
        let Some(lane) = self.lanes[index].as_mut() else {
            return Err(Error::EngineClosed);
        };
        if lane.entry.is_deleted() {
            return Err(lane.entry.gone());
        }
        let opens = lane.open.is_none();
        let open = lane.open.get_or_insert_with(|| OpenBatch {
            builder: BatchBuilder::with_buffer(
                compression,
                lane.home.take().unwrap_or_default(),
                capacity,
            ),
            ack: lane.acks.take(&lane.entry),
            opened: now,
        });
        let timestamp = record.timestamp.unwrap_or(now_ms);
        open.builder
            .append(timestamp, record.key, record.value, record.headers)
            .map_err(|source| Error::InvalidBatch {
                partition: lane.entry.tp.clone(),
                source,
            })?;
        let record_index = (open.builder.len() - 1) as u32;
        let ticket = Ticket::new(open.ack.clone(), record_index, level);
        if opens {
            self.linger_due_at(now + self.config.linger);
        }
        Ok(ticket)
    }

    /// Hands the partition's open batch to its shard. Without `block`, a full ring leaves the
    /// batch open for a later send to hand over: nothing already accepted is dropped.
    fn submit(&mut self, index: usize, block: bool) -> Result<()> {
        let timeout = self.config.send_timeout;
        let level = self.config.ack;
        let Some(lane) = self.lanes[index].as_mut() else {
            return Ok(());
        };
        if !block && lane.ring.free_slots() == 0 {
            return Ok(());
        }
        let Some(open) = lane.open.take() else {
            return Ok(());
        };
        let count = open.builder.len() as u32;
        let builder = match self.identity {
            Some(identity) => {
                open.builder
                    .producer(identity.id, identity.epoch, lane.next_sequence)
            }
            None => open.builder,
        };
        let batch = builder.build().map_err(|source| Error::InvalidBatch {
            partition: lane.entry.tp.clone(),
            source,
        })?;
        let request = Request {
            batch: BatchBuf::new(batch, lane.home.clone()),
            ack: open.ack.clone(),
            sync: level == AckLevel::Durable,
            // Just encoded by `build`, which computed the CRC over these bytes.
            origin: Origin::Builder,
        };
        lane.entry.push_blocking(&mut lane.ring, request, timeout)?;
        // Only a batch handed over uses up its sequences: one that never reached the ring
        // must not leave a gap.
        lane.next_sequence = following_sequence(lane.next_sequence, count);
        open.ack.mark_submitted();
        lane.entry.wake_shard();
        lane.last = Some(Ticket::new(open.ack, count - 1, level));
        self.chooser.batch_completed(index as u32);
        Ok(())
    }

    /// Notes that an open batch's linger runs out at `due`.
    fn linger_due_at(&mut self, due: Instant) {
        self.linger_due = Some(self.linger_due.map_or(due, |earliest| earliest.min(due)));
    }

    /// Hands over batches whose linger ran out.
    fn submit_lingering(&mut self, block: bool, now: Instant) -> Result<()> {
        if self.linger_due.is_none_or(|due| now < due) {
            return Ok(());
        }
        self.linger_due = None;
        for index in 0..self.lanes.len() {
            let opened = self.lanes[index]
                .as_ref()
                .and_then(|l| l.open.as_ref())
                .map(|o| o.opened);
            match opened {
                Some(opened) if now >= opened + self.config.linger => self.submit(index, block)?,
                Some(opened) => self.linger_due_at(opened + self.config.linger),
                None => {}
            }
        }
        Ok(())
    }
}

/// One record just sent, still tied to its producer: [`Sent::wait`] hands the record's batch
/// over (without waiting for the batch to fill or linger) and waits for its offset.
///
/// To send more before waiting, keep [`Sent::into_ticket`]: the batch is then handed over when
/// it fills, when it has lingered, or on [`Producer::flush`].
#[derive(Debug)]
pub struct Sent<'p> {
    producer: &'p mut Producer,
    ticket: Ticket,
}

impl Sent<'_> {
    /// The partition the record went to.
    pub fn partition(&self) -> u32 {
        self.ticket.partition()
    }

    /// Hands the record's batch to its shard now and waits until the record reaches the
    /// producer's ack level; returns its offset.
    pub fn wait(self) -> Result<i64> {
        self.producer.hand_over(&self.ticket)?;
        self.ticket.wait()
    }

    /// As [`Sent::wait`], giving up after `timeout` with `Ok(None)`.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Option<i64>> {
        self.producer.hand_over(&self.ticket)?;
        self.ticket.wait_timeout(timeout)
    }

    /// The record's ticket, detached from the producer so more records can be sent first.
    pub fn into_ticket(self) -> Ticket {
        self.ticket
    }
}

impl Drop for Producer {
    /// Hands over what is still open so no sent record is silently dropped; does not wait.
    fn drop(&mut self) {
        for index in 0..self.lanes.len() {
            if let Err(error) = self.submit(index, true) {
                log::warn!("rill: producer dropped with unsent records: {error}");
            }
        }
    }
}

/// Bytes a record adds to a batch, a little over: enough to refuse what cannot fit.
fn record_size(record: &ProducerRecord<'_>) -> usize {
    let fields = record.key.map_or(0, <[u8]>::len) + record.value.map_or(0, <[u8]>::len);
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 10)
        .sum();
    fields + headers + 32
}
