//! Acknowledgements: how a producer learns a record's offset, at the level it asked for.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::PartitionEntry;
use crate::error::{Error, Result};
use crate::log::Poison;

/// How far a record must get before its ticket resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum AckLevel {
    /// The shard assigned the record its offset.
    Appended,
    /// The record's bytes are in the file (the page cache), readable by consumers.
    #[default]
    Written,
    /// The record's bytes are synced to disk.
    Durable,
}

impl AckLevel {
    /// Every level, weakest first.
    pub const ALL: [AckLevel; 3] = [AckLevel::Appended, AckLevel::Written, AckLevel::Durable];

    /// The level's name as rill's tools spell it: `appended`, `written` or `durable`.
    pub fn name(self) -> &'static str {
        match self {
            AckLevel::Appended => "appended",
            AckLevel::Written => "written",
            AckLevel::Durable => "durable",
        }
    }
}

/// Writes [`AckLevel::name`].
impl std::fmt::Display for AckLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses [`AckLevel::name`]: the one spelling rill's command-line tools accept.
impl std::str::FromStr for AckLevel {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        AckLevel::ALL
            .into_iter()
            .find(|level| level.name() == text)
            .ok_or_else(|| Error::InvalidConfig {
                field: "ProducerConfig::ack",
                reason: format!("{text:?} is not appended, written or durable"),
            })
    }
}

const PENDING: i64 = -1;

/// The shared fate of one batch: pending, appended at a base offset, failed, or appended and
/// then failed (its write or its sync failed after it got its offset).
///
/// It also names the batch's partition, so a [`Ticket`] needs no reference of its own: a
/// ticket is made per record, and cloning the partition's `Arc` per record was a quarter of a
/// producer's CPU at 1 KiB records, its reference count sharing a cache line with fields the
/// shard and the consumers read.
#[derive(Debug)]
pub(crate) struct BatchAck {
    /// The base offset once appended, else `PENDING`.
    state: AtomicI64,
    /// Set (after `failure`) when the batch failed; a record that already reached its ack
    /// level before that still resolves.
    failed: AtomicBool,
    submitted: AtomicBool,
    failure: OnceLock<Failure>,
    partition: Arc<PartitionEntry>,
}

/// A producer lane's recent acks, reused once nothing else holds them: an ack per batch was an
/// allocation per batch. The oldest is checked when a batch opens; an ack still held (a
/// ticket kept by the caller, a batch still in flight) is let go once the list is full, and
/// the batch gets a new one.
#[derive(Debug)]
pub(crate) struct AckPool {
    recent: std::collections::VecDeque<Arc<BatchAck>>,
}

impl AckPool {
    /// Acks kept per lane: more than the batches a lane usually has in flight between its
    /// open batch and the shard's completion of the one before.
    const KEPT: usize = 8;

    pub fn new() -> Self {
        Self {
            recent: std::collections::VecDeque::with_capacity(Self::KEPT),
        }
    }

    /// A pending ack for a new batch of `partition`: the oldest kept one if nothing else
    /// holds it any more, else a new one.
    pub fn take(&mut self, partition: &Arc<PartitionEntry>) -> Arc<BatchAck> {
        let reusable = self
            .recent
            .front_mut()
            .is_some_and(|oldest| Arc::get_mut(oldest).is_some());
        let ack = match reusable {
            true => self.recent.pop_front().map(|mut ack| {
                if let Some(unique) = Arc::get_mut(&mut ack) {
                    unique.reset();
                }
                ack
            }),
            false => None,
        };
        let ack = ack.unwrap_or_else(|| BatchAck::new(partition.clone()));
        if self.recent.len() == Self::KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(ack.clone());
        ack
    }
}

/// Why a batch failed. A full disk is told apart because callers handle it differently (free
/// space and send again, no restart), and a stopped partition because every ticket must name
/// the I/O error and the offsets it cost. Any other cause is kept typed, shared by every
/// batch it failed.
#[derive(Debug)]
enum Failure {
    Error(Arc<Error>),
    StorageFull,
    Poisoned(Poison),
}

impl BatchAck {
    pub fn new(partition: Arc<PartitionEntry>) -> Arc<Self> {
        Arc::new(Self {
            state: AtomicI64::new(PENDING),
            failed: AtomicBool::new(false),
            submitted: AtomicBool::new(false),
            failure: OnceLock::new(),
            partition,
        })
    }

    /// Makes a finished ack pending again, for a new batch of the same partition: only its
    /// last owner can, so no ticket of the old batch sees the change.
    fn reset(&mut self) {
        *self.state.get_mut() = PENDING;
        *self.failed.get_mut() = false;
        *self.submitted.get_mut() = false;
        self.failure = OnceLock::new();
    }

    /// The producer handed the batch to its shard.
    pub fn mark_submitted(&self) {
        self.submitted.store(true, Ordering::Release);
    }

    /// The shard appended the batch at `base_offset`.
    pub fn appended(&self, base_offset: i64) {
        self.state.store(base_offset, Ordering::Release);
    }

    /// Fails the batch with `error`. A full disk and the stop of the partition are kept as
    /// such (see [`Failure`]); any other error is kept as it is, for the ticket to hand on.
    pub fn fail(&self, error: Arc<Error>) {
        let failure = match &*error {
            Error::StorageFull { .. } => Failure::StorageFull,
            Error::PartitionFailed(_) => match self.partition.reader.poison() {
                Some(poison) => Failure::Poisoned(poison.clone()),
                None => Failure::Error(error),
            },
            _ => Failure::Error(error),
        };
        self.set_failure(failure);
    }

    /// Fails the batch with an error its caller keeps: the stop of the partition or a full
    /// disk, the only errors the io_uring path fails batches with. Any other error cannot be
    /// shared without owning it, and reaching here with one is a bug, reported as such.
    pub fn fail_with(&self, error: &Error) {
        let poison = self.partition.reader.poison();
        let failure = match (error, poison) {
            (Error::StorageFull { .. }, _) => Failure::StorageFull,
            (Error::PartitionFailed(_), Some(poison)) => Failure::Poisoned(poison.clone()),
            (other, _) => Failure::Error(Arc::new(Error::Invariant {
                what: format!("a batch failed with an unshared error: {other}"),
            })),
        };
        self.set_failure(failure);
    }

    fn set_failure(&self, failure: Failure) {
        let _ = self.failure.set(failure);
        self.failed.store(true, Ordering::Release);
    }

    /// The base offset, if the batch was appended.
    fn base(&self) -> Option<i64> {
        match self.state.load(Ordering::Acquire) {
            PENDING => None,
            base => Some(base),
        }
    }

    /// Why the batch failed, if it did.
    fn failure(&self) -> Option<&Failure> {
        if self.failed.load(Ordering::Acquire) {
            self.failure.get()
        } else {
            None
        }
    }
}

/// A claim on one sent record: resolves to its offset once the record reaches the ack level.
///
/// Tickets of one partition resolve in offset order. A record still waiting in a producer's
/// batch has no offset yet: [`Ticket::wait`] then fails with [`Error::NotSubmitted`] at once
/// instead of waiting for a batch nobody will send; `Producer::flush` submits it, and
/// [`Sent::wait`](crate::Sent::wait) hands it over itself.
///
/// A ticket is `Send` and `Sync`, and cheap to clone: any thread may wait on it.
#[derive(Clone, Debug)]
pub struct Ticket {
    ack: Arc<BatchAck>,
    index: u32,
    level: AckLevel,
}

impl Ticket {
    pub(crate) fn new(ack: Arc<BatchAck>, index: u32, level: AckLevel) -> Self {
        Self { ack, index, level }
    }

    /// Whether the record's batch has left the producer's open batch.
    pub(crate) fn is_submitted(&self) -> bool {
        self.ack.submitted.load(Ordering::Acquire)
    }

    fn entry(&self) -> &PartitionEntry {
        &self.ack.partition
    }

    /// The partition the record went to.
    pub fn partition(&self) -> u32 {
        self.entry().tp.partition
    }

    /// The record's offset, once assigned (whatever the ack level); `None` once its batch
    /// failed without the record reaching its level.
    pub fn offset(&self) -> Option<i64> {
        self.poll()
            .ok()
            .flatten()
            .or_else(|| match self.ack.failure() {
                None => Some(self.ack.base()? + i64::from(self.index)),
                Some(_) => None,
            })
    }

    /// The offset if the record has reached the ack level, `None` if not yet.
    ///
    /// A record that reached its level before its partition stopped (written, then a sync
    /// failed) still resolves at the level it reached: a stopped partition never hands its
    /// offsets out again, so its watermarks speak only for this record. Any other failure is
    /// final: the offsets of a batch refused for lack of space are assigned again, and the
    /// watermark passing them then says nothing about this record.
    pub fn poll(&self) -> Result<Option<i64>> {
        // The watermark first, the failure after: a failure that made the offsets reusable was
        // stored before any reuse was published, so seeing the one means seeing the other.
        let reached = self
            .ack
            .base()
            .map(|base| base + i64::from(self.index))
            .filter(|&offset| self.reached(offset));
        let tp = &self.entry().tp;
        match (self.ack.failure(), reached) {
            (None | Some(Failure::Poisoned(_)), Some(offset)) => Ok(Some(offset)),
            (None, None) => self.stopped_short(),
            (Some(Failure::StorageFull), _) => Err(Error::StorageFull {
                path: tp.dir_name().into(),
            }),
            (Some(Failure::Poisoned(poison)), None) => Err(poison.error(tp)),
            (Some(Failure::Error(error)), _) => Err(Error::ProduceFailed {
                partition: tp.clone(),
                source: error.clone(),
            }),
        }
    }

    /// A record appended but short of its level when nothing failed its batch: it may still
    /// get there, unless its partition stopped meanwhile (a roll's sync failed after the
    /// record's own write and sync had succeeded), since a stopped partition's watermarks never
    /// move again. The watermark is read again after the stop is seen: it may have moved just
    /// before, and the record then reached its level.
    fn stopped_short(&self) -> Result<Option<i64>> {
        let Some(poison) = self.entry().reader.poison() else {
            return Ok(None);
        };
        match self.ack.base().map(|base| base + i64::from(self.index)) {
            Some(offset) if self.reached(offset) => Ok(Some(offset)),
            _ => Err(poison.error(&self.entry().tp)),
        }
    }

    fn reached(&self, offset: i64) -> bool {
        let reader = &self.entry().reader;
        match self.level {
            AckLevel::Appended => true,
            AckLevel::Written => reader.written_offset() > offset,
            AckLevel::Durable => reader.durable_offset() > offset,
        }
    }

    /// Waits until the record reaches the ack level and returns its offset.
    pub fn wait(&self) -> Result<i64> {
        self.wait_until(None)?.ok_or_else(|| Error::Closed {
            partition: self.entry().tp.clone(),
        })
    }

    /// As [`Ticket::wait`], giving up after `timeout` with `Ok(None)`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<i64>> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<Option<i64>> {
        // A batch's fate (appended or failed) answers first, whether or not it was handed over.
        if let Some(offset) = self.poll()? {
            return Ok(Some(offset));
        }
        if !self.ack.submitted.load(Ordering::Acquire) {
            return Err(Error::NotSubmitted {
                partition: self.entry().tp.clone(),
            });
        }
        let outcome = self
            .entry()
            .notifier
            .wait_until(deadline, || match self.poll() {
                Ok(Some(offset)) => Some(Ok(Some(offset))),
                Ok(None) if !self.entry().shard.is_alive() => Some(Err(Error::Closed {
                    partition: self.entry().tp.clone(),
                })),
                // The shard dropped the partition: a batch it had not appended never will be.
                Ok(None) if self.entry().is_deleted() => Some(Err(self.entry().gone())),
                Ok(None) => None,
                Err(error) => Some(Err(error)),
            });
        outcome.unwrap_or(Ok(None))
    }
}
