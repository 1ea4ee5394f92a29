//! The registry of an open engine: its topics and their partitions, as producers, consumers
//! and shards reach them. Control path: looked up when a handle is made, not per record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::{EngineConfig, Notifier, Request, ShardControl};
use crate::error::{Error, Result};
use crate::log::{LogConfig, LogReader};
use crate::ring::{self, PushError};
use crate::store::Store;
use crate::topic::{TopicId, TopicName, TopicPartition};

/// A partition as producers and consumers see it.
#[derive(Debug)]
pub(crate) struct PartitionEntry {
    pub tp: TopicPartition,
    pub reader: LogReader,
    pub shard: Arc<ShardControl>,
    /// This partition's own: tickets, and consumers of this partition alone, wait on it, so
    /// a write to another partition does not wake them.
    pub notifier: Notifier,
    /// Shared by the topic's partitions: consumers of several partitions wait on it.
    pub topic_notifier: Arc<Notifier>,
    /// Set when the topic is deleted: handles made before then fail instead of using it.
    pub deleted: AtomicBool,
    /// Set by the shard while this partition's batches are parked behind its writes: it takes
    /// nothing from the partition's rings until a completion lets them go, so a producer
    /// handing over a batch need not wake it (a wake-up per batch was a pass that could only
    /// park again).
    pub parked: AtomicBool,
}

impl PartitionEntry {
    /// Wakes whoever waits on this partition, alone or with others of its topic; costs a fence
    /// and two loads while nobody waits.
    pub fn notify(&self) {
        self.notifier.notify();
        self.topic_notifier.notify();
    }

    /// Wakes the shard after a batch was pushed, unless the shard parked this partition's
    /// batches: it then looks at the partition's rings after the completion that lets them go.
    /// No wake-up is lost: the shard clears `parked`, fences, then pops the rings; the producer
    /// pushed, fences, then reads `parked`: one of them sees the other.
    pub fn wake_shard(&self) {
        fence(Ordering::SeqCst);
        if !self.parked.load(Ordering::Relaxed) {
            self.shard.wake();
        }
    }

    /// Whether the partition's topic was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// The error a handle gets once the topic is deleted.
    pub fn gone(&self) -> Error {
        Error::UnknownTopic {
            topic: self.tp.topic.to_string(),
        }
    }

    /// Pushes `request` into this partition's `ring`, backing off while it is full: the shard
    /// frees room at its own pace, so the sender sleeps in growing steps (never spins for
    /// long) until there is room, the shard or the topic is gone, or `timeout` passes. The
    /// request's ack is failed whenever it is not pushed, so no ticket waits for it.
    pub fn push_blocking(
        &self,
        ring: &mut ring::Producer<Request>,
        request: Request,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let started = Instant::now();
        let mut request = request;
        let mut nap = Duration::from_micros(20);
        loop {
            match ring.push(request) {
                Ok(()) => return Ok(()),
                Err(PushError::Full(back)) => request = back,
            }
            if !self.shard.is_alive() {
                request.ack.fail(Arc::new(Error::EngineClosed));
                return Err(Error::EngineClosed);
            }
            if self.is_deleted() {
                request.ack.fail(Arc::new(self.gone()));
                return Err(self.gone());
            }
            self.shard.wake();
            if timeout.is_some_and(|limit| started.elapsed() >= limit) {
                request.ack.fail(Arc::new(Error::SendTimeout {
                    partition: self.tp.clone(),
                }));
                return Err(Error::SendTimeout {
                    partition: self.tp.clone(),
                });
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(2));
        }
    }
}

/// A topic: its identity, partitions and the configuration they run with.
#[derive(Debug)]
pub(crate) struct TopicEntry {
    pub id: TopicId,
    pub name: TopicName,
    pub partitions: Vec<Arc<PartitionEntry>>,
    pub notifier: Arc<Notifier>,
    pub config: LogConfig,
}

/// What every handle of one engine shares: the data directory, the topics, the shards.
#[derive(Debug)]
pub(crate) struct Inner {
    pub store: Store,
    pub config: EngineConfig,
    pub(super) topics: RwLock<HashMap<TopicName, Arc<TopicEntry>>>,
    /// Serializes topic creation, so two threads creating one new topic do not both open its
    /// partitions.
    pub(super) creating: Mutex<()>,
    pub(super) shards: Vec<Arc<ShardControl>>,
    pub(super) closed: AtomicBool,
    pub(super) backend: &'static str,
    /// How the io_uring backend opens segments, and why.
    pub(super) write_mode: super::WriteMode,
    /// Hands out idempotent producers' ids.
    pub producer_ids: crate::producer_ids::ProducerIds,
}

impl Inner {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn topic(&self, name: &str) -> Result<Arc<TopicEntry>> {
        if self.is_closed() {
            return Err(Error::EngineClosed);
        }
        let name = TopicName::new(name)?;
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        topics.get(&name).cloned().ok_or(Error::UnknownTopic {
            topic: name.to_string(),
        })
    }
}
