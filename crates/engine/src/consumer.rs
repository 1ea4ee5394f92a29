//! Consumer handles: read assigned partitions in place, waiting with a brief adaptive spin,
//! then parked.
//!
//! [`Consumer::poll`] returns batches as views of the segment files' maps (the page cache, for
//! a consumer at the tail): no copy is made. A view keeps its segment mapped, so it stays valid
//! even if the log rolls past it or retention deletes the file meanwhile. Many consumers may
//! read one partition at once; each keeps its own positions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{Engine, PartitionEntry, TopicEntry, next_spin};
use crate::error::{Error, Result};
use crate::log::LogSlice;
use crate::record::{Limits, Record};
use crate::topic::TopicPartition;

/// Checks of the watermarks between two clock reads while a poll spins.
const SPIN_CHECKS: u32 = 64;

/// Where a consumer starts in a partition it has no position in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The log's first record still held (retention may have deleted older ones).
    Earliest,
    /// Only records sent after the assignment (Kafka's default).
    #[default]
    Latest,
}

/// How a [`Consumer`] starts and how much one poll reads.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Where a newly assigned partition starts.
    pub start: StartFrom,
    /// Bytes one poll reads from one partition (at least one whole batch).
    pub max_bytes_per_partition: usize,
    /// Bytes one poll returns in all, across partitions (at least one batch).
    pub max_bytes: usize,
    /// The longest a poll that finds nothing keeps checking before it sleeps. The consumer
    /// adapts its window below this to how soon records come, as a shard does: it grows while
    /// a sleep ends sooner than this, and shrinks to nothing when sleeps are long, so an idle
    /// consumer sleeps at once and costs no CPU. Zero never spins.
    pub spin: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            start: StartFrom::Latest,
            max_bytes_per_partition: 1 << 20,
            max_bytes: 8 << 20,
            spin: Duration::from_micros(50),
        }
    }
}

/// Where to move a partition's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seek {
    /// The log's first record.
    Earliest,
    /// The end of the log: the next record appended.
    Latest,
    /// This offset; it must be within the log's `[start, end]`.
    Offset(i64),
    /// The first record with a timestamp at or after this (ms); the end if none is.
    Timestamp(i64),
}

struct Assigned {
    entry: Arc<PartitionEntry>,
    position: i64,
}

/// Reads assigned partitions of one topic; made by [`Engine::consumer`](crate::Engine::consumer).
///
/// A consumer sees only records below each partition's visible watermark (which the topic's
/// [`Visibility`](crate::Visibility) ties to appended, written or durable), in offset order, each once
/// per pass. It is `Send`: use it from one thread at a time.
pub struct Consumer {
    topic: Arc<TopicEntry>,
    config: ConsumerConfig,
    assigned: Vec<Assigned>,
    /// Partition to poll first next time, so one busy partition cannot starve the others.
    next: usize,
    /// The spin window in use, adapted to the gaps between records (see
    /// [`ConsumerConfig::spin`]).
    spin: Duration,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("topic", &self.topic.name)
            .field(
                "assigned",
                &self
                    .assigned
                    .iter()
                    .map(|a| (a.entry.tp.partition, a.position))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Consumers are made here, where they are defined, so that the engine module does not depend
/// on the consumer module (which depends on it).
impl Engine {
    /// A consumer of `topic`; assign it partitions before polling.
    pub fn consumer(&self, topic: &str) -> Result<Consumer> {
        Consumer::new(self.inner.topic(topic)?, Default::default())
    }

    /// A consumer of `topic` with `config`; assign it partitions before polling.
    pub fn consumer_with(&self, topic: &str, config: ConsumerConfig) -> Result<Consumer> {
        Consumer::new(self.inner.topic(topic)?, config)
    }
}

impl Consumer {
    pub(crate) fn new(topic: Arc<TopicEntry>, config: ConsumerConfig) -> Result<Self> {
        Ok(Self {
            topic,
            spin: config.spin,
            config,
            assigned: Vec::new(),
            next: 0,
        })
    }

    /// The topic's partition count.
    pub fn partitions(&self) -> u32 {
        self.topic.partitions.len() as u32
    }

    /// Reads these partitions from now on (replacing the previous assignment), each from the
    /// configured start.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = u32>) -> Result<()> {
        let mut assigned = Vec::new();
        for partition in partitions {
            let entry = self.entry(partition)?.clone();
            let position = match self.config.start {
                StartFrom::Earliest => entry.reader.start_offset(),
                StartFrom::Latest => entry.reader.end_offset(),
            };
            if !assigned
                .iter()
                .any(|a: &Assigned| a.entry.tp.partition == partition)
            {
                assigned.push(Assigned { entry, position });
            }
        }
        self.assigned = assigned;
        self.next = 0;
        Ok(())
    }

    /// Assigns every partition of the topic.
    pub fn assign_all(&mut self) -> Result<()> {
        self.assign(0..self.partitions())
    }

    /// The partitions assigned, in assignment order.
    pub fn assignment(&self) -> Vec<u32> {
        self.assigned.iter().map(|a| a.entry.tp.partition).collect()
    }

    /// The next offset this consumer reads from `partition`.
    pub fn position(&self, partition: u32) -> Option<i64> {
        self.assigned
            .iter()
            .find(|a| a.entry.tp.partition == partition)
            .map(|a| a.position)
    }

    /// Moves an assigned partition's position; returns the new position. An offset outside
    /// the log's `[start, end]` is refused with [`Error::OffsetOutOfRange`].
    pub fn seek(&mut self, partition: u32, to: Seek) -> Result<i64> {
        let assigned = self
            .assigned
            .iter_mut()
            .find(|a| a.entry.tp.partition == partition)
            .ok_or_else(|| Error::UnknownPartition {
                partition: TopicPartition::new(self.topic.name.clone(), partition),
            })?;
        let reader = &assigned.entry.reader;
        let (start, end) = (reader.start_offset(), reader.end_offset());
        let position = match to {
            Seek::Earliest => start,
            Seek::Latest => end,
            Seek::Offset(offset) if (start..=end).contains(&offset) => offset,
            Seek::Offset(offset) => {
                return Err(Error::OffsetOutOfRange {
                    partition: assigned.entry.tp.clone(),
                    offset,
                    start,
                    end,
                });
            }
            Seek::Timestamp(timestamp) => reader.offset_for_timestamp(timestamp)?.unwrap_or(end),
        };
        assigned.position = position;
        Ok(position)
    }

    /// Returns the batches readable now from the assigned partitions, waiting up to `timeout`
    /// when there are none: a brief spin first (see [`ConsumerConfig::spin`]), then parked.
    /// An empty result means the timeout passed.
    pub fn poll(&mut self, timeout: Duration) -> Result<Polled> {
        let polled = self.read_available()?;
        if !polled.is_empty() {
            return Ok(polled);
        }
        let deadline = Instant::now() + timeout;
        if self.spin_until_news(deadline) {
            let polled = self.read_available()?;
            if !polled.is_empty() {
                return Ok(polled);
            }
        }
        let parked_at = Instant::now();
        let polled = self.park_until_available(deadline);
        self.spin = next_spin(self.spin, self.config.spin, parked_at.elapsed());
        polled
    }

    /// Checks for records for up to the spin window (or `deadline`); returns whether any came.
    /// The clock is read once per round of checks: a read per check would cost more than the
    /// check itself.
    fn spin_until_news(&self, deadline: Instant) -> bool {
        if self.spin.is_zero() {
            return false;
        }
        let until = (Instant::now() + self.spin).min(deadline);
        loop {
            for _ in 0..SPIN_CHECKS {
                if self.has_news() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= until {
                return false;
            }
        }
    }

    /// Whether an assigned partition's readable end moved past this consumer's position (one
    /// load per partition).
    fn has_news(&self) -> bool {
        self.assigned
            .iter()
            .any(|a| a.entry.reader.end_offset() > a.position)
    }

    /// Sleeps until records are readable or `deadline` passes (then an empty result).
    fn park_until_available(&mut self, deadline: Instant) -> Result<Polled> {
        // One partition: sleep on its own notifier, so other partitions' writes do not wake
        // this consumer. Several: on the topic's, which every partition of it rings.
        let single = match self.assigned.as_slice() {
            [one] => Some(one.entry.clone()),
            _ => None,
        };
        let topic = self.topic.notifier.clone();
        let notifier = single.as_ref().map_or(&*topic, |entry| &entry.notifier);
        let mut outcome = None;
        notifier.wait_until(Some(deadline), || match self.read_available() {
            Ok(polled) if polled.is_empty() => None,
            other => {
                outcome = Some(other);
                Some(())
            }
        });
        outcome.unwrap_or_else(|| Ok(Polled::default()))
    }

    fn read_available(&mut self) -> Result<Polled> {
        if let Some(gone) = self.topic.partitions.iter().find(|p| p.is_deleted()) {
            return Err(gone.gone());
        }
        let mut polled = Polled::default();
        let mut budget = self.config.max_bytes;
        let count = self.assigned.len();
        for step in 0..count {
            let index = (self.next + step) % count;
            let assigned = &mut self.assigned[index];
            let reader = &assigned.entry.reader;
            if assigned.position < reader.start_offset() {
                // Retention removed records this consumer had not read: skip to what is left,
                // as Kafka's `auto.offset.reset=earliest` would.
                assigned.position = reader.start_offset();
            }
            let end = reader.end_offset();
            // One read stops where its source does (a segment's end, or the one batch an
            // in-memory tail chunk holds), so the partition is read until its share of the
            // budget is used or it has nothing more.
            let mut share = self.config.max_bytes_per_partition.min(budget);
            let mut first = true;
            while assigned.position < end && share > 0 {
                let slice = reader.read(assigned.position, share)?;
                let len = slice.bytes().len();
                // At least one batch per poll, however large; after that, nothing over budget.
                if slice.is_empty() || (!first && len > share) {
                    break;
                }
                first = false;
                budget = budget.saturating_sub(len);
                share = share.saturating_sub(len);
                let from = assigned.position;
                assigned.position = slice.next_offset();
                polled.batches.push(PolledSlice {
                    partition: assigned.entry.tp.partition,
                    from,
                    slice,
                });
            }
            if budget == 0 {
                self.next = (index + 1) % count;
                return Ok(polled);
            }
        }
        self.next = (self.next + 1) % count.max(1);
        Ok(polled)
    }

    fn entry(&self, partition: u32) -> Result<&Arc<PartitionEntry>> {
        self.topic
            .partitions
            .get(partition as usize)
            .ok_or_else(|| Error::UnknownPartition {
                partition: TopicPartition::new(self.topic.name.clone(), partition),
            })
    }
}

/// What one poll returned: whole batches per partition, viewed in place.
#[derive(Debug, Default)]
pub struct Polled {
    batches: Vec<PolledSlice>,
}

impl Polled {
    /// Whether the poll returned nothing (its timeout passed first).
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The batches, per partition.
    pub fn slices(&self) -> &[PolledSlice] {
        &self.batches
    }

    /// Calls `f` with every record at or after the consumer's position, in offset order per
    /// partition; decompresses compressed batches, checks every CRC of what was read from a
    /// file (batches from the in-memory tail, built and checked by this process, are not
    /// checked again). Returns how many records it saw.
    pub fn for_each_record(&self, mut f: impl FnMut(u32, Record<'_>)) -> Result<u64> {
        let mut count = 0;
        for slice in &self.batches {
            count += slice.for_each_record(|record| f(slice.partition, record))?;
        }
        Ok(count)
    }
}

/// Batches of one partition from one poll.
#[derive(Clone, Debug)]
pub struct PolledSlice {
    partition: u32,
    /// The consumer's position when read: records before it (in the first batch) are skipped.
    from: i64,
    slice: LogSlice,
}

impl PolledSlice {
    /// The partition the batches are from.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The raw batches, exactly as stored (Kafka's format).
    pub fn bytes(&self) -> &[u8] {
        self.slice.bytes()
    }

    /// The offset after the last record of this slice.
    pub fn next_offset(&self) -> i64 {
        self.slice.next_offset()
    }

    /// Whether the batches were read from the in-memory tail rather than a segment file's map.
    pub fn is_from_memory(&self) -> bool {
        self.slice.is_from_memory()
    }

    /// Calls `f` with every record of the slice at or after the consumer's position, in
    /// offset order; returns how many records it saw.
    pub fn for_each_record(&self, mut f: impl FnMut(Record<'_>)) -> Result<u64> {
        let limits = Limits::default();
        let mut count = 0;
        for item in self.slice.batches() {
            let (position, batch) =
                item.map_err(|invalid| self.corrupt(invalid.position, invalid.source))?;
            let records = batch
                .records(&limits)
                .map_err(|e| self.corrupt(position, e))?;
            for record in records.iter() {
                let record = record.map_err(|e| self.corrupt(position, e))?;
                if record.offset >= self.from {
                    f(record);
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// A batch that fails its checks on the way out: named by file and byte position.
    fn corrupt(&self, offset_in_slice: u64, source: crate::record::RecordError) -> Error {
        Error::Corrupt {
            path: self.slice.file().map(Into::into).unwrap_or_default(),
            position: self.slice.position() + offset_in_slice,
            source,
        }
    }
}
