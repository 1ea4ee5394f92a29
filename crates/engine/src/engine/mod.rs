//! The engine: a data directory served by pinned shard threads, with producer and consumer
//! handles for any thread.
//!
//! ```text
//! Producer ──batch──▶ SPSC ring ──▶ shard thread ──▶ partition log ──▶ segment file
//! (any thread)        one per producer   assigns offsets, group commit, watermarks
//!                     per partition
//! Consumer ◀── batches viewed in place, up to the visible watermark
//! ```
//!
//! Each partition belongs to exactly one shard, which alone writes its files. Producers never
//! lock on the data path: a batch goes into the producer's own ring for that partition, and
//! the shard is woken only if it parked. Creating topics, producers and rings is control path
//! and may lock.

mod ack;
mod direct;
mod notify;
mod shard;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) use ack::BatchAck;
pub use ack::{AckLevel, Ticket};
pub(crate) use notify::Notifier;
pub(crate) use shard::{Request, ShardControl};

use crate::error::{Error, Result};
use crate::log::{LogConfig, LogReader};
use crate::store::Store;
use crate::topic::{TopicName, TopicPartition};

/// Which I/O backend the shards write through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoMode {
    /// The best backend this machine allows.
    #[default]
    Auto,
    /// Portable `pwrite`/`fdatasync`, whatever the machine offers. `RILL_IO=sync` forces it.
    Sync,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Shard threads; 0 means one per available core.
    pub shards: usize,
    /// Pin each shard to its own core.
    pub pin_shards: bool,
    /// Configuration of topics opened from disk and of topics created without one.
    pub log: LogConfig,
    pub io: IoMode,
    /// Whether the io_uring backend writes segments with `O_DIRECT` (the default), or through
    /// the page cache. Both go through the same staging buffers and batched submissions; only
    /// the open flag differs.
    ///
    /// `O_DIRECT` skips the copy into the page cache and its writeback throttling, which on
    /// fast disks is the difference between the device's rate and the kernel's flusher's, and
    /// it leaves the page cache to the applications around the engine. Consumers that keep up
    /// read the in-memory tail either way. Through the page cache, small bursts are
    /// acknowledged at memory speed and read-back of older data is served from memory; a file
    /// system that refuses `O_DIRECT` (tmpfs, for one) gets the page cache whatever this says.
    /// The portable backend always writes through the page cache.
    pub direct_io: bool,
    /// How long an idle shard keeps polling its rings before it parks.
    pub idle_spin: Duration,
    /// How often shards enforce retention.
    pub retention_check_interval: Duration,
    /// The storage the partitions write through; `None` is the real one. Tests put the
    /// storage simulator here.
    #[doc(hidden)]
    pub storage: Option<Arc<dyn crate::io::Storage>>,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            shards: 0,
            pin_shards: true,
            log: LogConfig::default(),
            io: IoMode::Auto,
            direct_io: true,
            idle_spin: Duration::from_micros(50),
            retention_check_interval: Duration::from_secs(60),
            storage: None,
        }
    }
}

/// A partition as producers and consumers see it.
#[derive(Debug)]
pub(crate) struct PartitionEntry {
    pub tp: TopicPartition,
    pub reader: LogReader,
    pub shard: Arc<ShardControl>,
    /// Shared by the topic's partitions: consumers of several partitions wait on one.
    pub notifier: Arc<Notifier>,
}

#[derive(Debug)]
pub(crate) struct TopicEntry {
    pub name: TopicName,
    pub partitions: Vec<Arc<PartitionEntry>>,
    pub notifier: Arc<Notifier>,
    pub config: LogConfig,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub store: Store,
    pub config: EngineConfig,
    topics: RwLock<HashMap<TopicName, Arc<TopicEntry>>>,
    /// Serializes topic creation, so two threads creating one new topic do not both open its
    /// partitions.
    creating: Mutex<()>,
    shards: Vec<Arc<ShardControl>>,
    closed: AtomicBool,
    backend: &'static str,
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

/// An open data directory and the shard threads that serve it.
///
/// Dropping the engine shuts it down as [`Engine::shutdown`] does, logging any error.
#[derive(Debug)]
pub struct Engine {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Opens the data directory (locking it), recovers every partition found in it, and starts
    /// the shard threads.
    pub fn open(config: EngineConfig) -> Result<Engine> {
        let store = Store::open(&config.data_dir, config.log.clone())?;
        let shard_count = match config.shards {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let backend = shard::choose_backend(config.io, config.log.limits.max_batch_bytes);
        let cores = if config.pin_shards {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut shards: Vec<Arc<ShardControl>> = Vec::with_capacity(shard_count);
        let mut threads = Vec::with_capacity(shard_count);
        for id in 0..shard_count {
            let control = Arc::new(ShardControl::new(id));
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            match shard::spawn(control.clone(), core, &config, backend) {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    // The shards already started own nothing yet; stop them, not leak them.
                    for started in &shards {
                        started.request_shutdown();
                    }
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(error);
                }
            }
            shards.push(control);
        }
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                config,
                topics: RwLock::new(HashMap::new()),
                creating: Mutex::new(()),
                shards,
                closed: AtomicBool::new(false),
                backend,
            }),
            threads,
        };
        for (topic, _) in engine.inner.store.topics()? {
            let config = engine.inner.config.log.clone();
            engine.load_topic(&topic, config)?;
        }
        Ok(engine)
    }

    /// Creates a topic with the engine's default log configuration; see
    /// [`Engine::create_topic_with`].
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        self.create_topic_with(name, partitions, self.inner.config.log.clone())
    }

    /// Creates a topic, or does nothing if it exists with this many partitions.
    ///
    /// `config` applies from now until the engine closes; a topic reopened from disk gets the
    /// engine's default configuration.
    pub fn create_topic_with(&self, name: &str, partitions: u32, config: LogConfig) -> Result<()> {
        if self.inner.is_closed() {
            return Err(Error::EngineClosed);
        }
        config.validate()?;
        let _creating = self
            .inner
            .creating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let topic = self.inner.store.create_topic(name, partitions)?;
        let loaded = self
            .inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&topic);
        if !loaded {
            self.load_topic(&topic, config)?;
        }
        Ok(())
    }

    /// Names and partition counts of every topic.
    pub fn topics(&self) -> Vec<(String, u32)> {
        let topics = self
            .inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<(String, u32)> = topics
            .values()
            .map(|t| (t.name.to_string(), t.partitions.len() as u32))
            .collect();
        list.sort();
        list
    }

    /// The I/O backend the shards write through (after any fallback).
    pub fn backend(&self) -> &'static str {
        self.inner.backend
    }

    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// Stops (`true`) or resumes (`false`) the shards' draining of their rings, so tests can
    /// fill rings and observe back-pressure. Not for production use.
    #[doc(hidden)]
    pub fn hold_shards(&self, held: bool) {
        for shard in &self.inner.shards {
            shard.hold(held);
        }
    }

    /// A producer for `topic` with the default configuration.
    pub fn producer(&self, topic: &str) -> Result<crate::producer::Producer> {
        crate::producer::Producer::new(
            self.inner.clone(),
            self.inner.topic(topic)?,
            Default::default(),
        )
    }

    pub fn producer_with(
        &self,
        topic: &str,
        config: crate::producer::ProducerConfig,
    ) -> Result<crate::producer::Producer> {
        crate::producer::Producer::new(self.inner.clone(), self.inner.topic(topic)?, config)
    }

    /// A consumer of `topic`; assign it partitions before polling.
    pub fn consumer(&self, topic: &str) -> Result<crate::consumer::Consumer> {
        crate::consumer::Consumer::new(self.inner.topic(topic)?, Default::default())
    }

    pub fn consumer_with(
        &self,
        topic: &str,
        config: crate::consumer::ConsumerConfig,
    ) -> Result<crate::consumer::Consumer> {
        crate::consumer::Consumer::new(self.inner.topic(topic)?, config)
    }

    /// Stops accepting sends, lets every shard append what its rings hold, syncs, and closes
    /// every partition cleanly (so the next open needs no recovery scan).
    pub fn shutdown(mut self) -> Result<()> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        for shard in &self.inner.shards {
            shard.request_shutdown();
        }
        let mut first_error = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() && first_error.is_none() {
                first_error = Some(Error::Invariant {
                    what: "a shard thread panicked".into(),
                });
            }
        }
        for shard in &self.inner.shards {
            if let Some(error) = shard.take_close_error()
                && first_error.is_none()
            {
                first_error = Some(error);
            }
        }
        for topic in self
            .inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            topic.notifier.notify();
        }
        first_error.map_or(Ok(()), Err)
    }

    fn load_topic(&self, topic: &TopicName, config: LogConfig) -> Result<()> {
        let count = self.inner.store.partitions(topic)?;
        let notifier = Arc::new(Notifier::default());
        // Every partition is opened before any is handed to a shard: if one fails, dropping
        // the opened logs releases their locks, instead of shards holding them until restart.
        let mut logs = Vec::with_capacity(count as usize);
        for partition in 0..count {
            // The log's own backend writes partitions on the portable path and syncs all of
            // them; with io_uring the shard writes staged batches itself (engine::direct).
            let backend = match &self.inner.config.storage {
                Some(storage) => storage.backend(),
                None => Box::new(crate::io::PortableIo),
            };
            logs.push(self.inner.store.open_partition_with(
                topic,
                partition,
                config.clone(),
                backend,
            )?);
        }
        let mut partitions = Vec::with_capacity(count as usize);
        for (partition, log) in (0..count).zip(logs) {
            let shard =
                self.inner.shards[shard_of(topic, partition, self.inner.shards.len())].clone();
            let entry = Arc::new(PartitionEntry {
                tp: log.partition().clone(),
                reader: log.reader(),
                shard: shard.clone(),
                notifier: notifier.clone(),
            });
            shard.add_partition(log, entry.clone());
            partitions.push(entry);
        }
        let entry = Arc::new(TopicEntry {
            name: topic.clone(),
            partitions,
            notifier,
            config,
        });
        self.inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.clone(), entry);
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown_inner() {
            log::error!("engine shutdown on drop: {error}");
        }
    }
}

/// Spreads a topic's partitions over the shards, starting at a shard picked by the topic's
/// name so that many small topics do not all land on shard 0.
fn shard_of(topic: &TopicName, partition: u32, shards: usize) -> usize {
    let start = crate::partitioner::murmur2(topic.as_str().as_bytes()) as u32 as usize;
    (start.wrapping_add(partition as usize)) % shards.max(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Instant;

    use super::*;

    /// If starting shard k fails, the shards 0..k that did start are stopped, not left
    /// running (and holding their partitions) until the process exits.
    #[test]
    fn a_failed_shard_start_stops_the_shards_started_before() {
        let dir = tempfile::tempdir().unwrap();
        shard::start_hook::fail_at(2);
        let opened = Engine::open(EngineConfig {
            shards: 3,
            pin_shards: false,
            ..EngineConfig::new(dir.path())
        });
        assert!(matches!(opened, Err(Error::ShardStart { shard: 2, .. })));
        let started = shard::start_hook::started();
        assert_eq!(started.len(), 2, "shards 0 and 1 started");
        let deadline = Instant::now() + Duration::from_secs(5);
        while started.iter().any(|s| s.strong_count() > 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            started.iter().all(|s| s.strong_count() == 0),
            "the shards started before the failure are still running"
        );
    }
}
