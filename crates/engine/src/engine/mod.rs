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
mod registry;
// `ShardControl::hold` serves only the `unstable` test hook `Engine::hold_shards`.
#[cfg_attr(not(feature = "unstable"), allow(dead_code))]
mod shard;
mod write_mode;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

pub use ack::{AckLevel, Ticket};
pub(crate) use ack::{AckPool, BatchAck};
// The storage simulator keys its fault streams by partition, which a write's token names.
#[cfg(feature = "fuzzing")]
pub(crate) use direct::partition_of;
pub(crate) use notify::{Notifier, next_spin};
pub(crate) use registry::{Inner, PartitionEntry, TopicEntry};
pub(crate) use shard::{Request, ShardControl};
pub use write_mode::{DirectIo, WriteMode};

use crate::error::{Error, IoContext, Result};
use crate::log::LogConfig;
use crate::store::Store;
use crate::topic::{TopicId, TopicName};
use crate::topic_meta::{self, TopicMeta};

/// Which I/O backend the shards write through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IoMode {
    /// The best backend this machine allows: io_uring where it can be set up, else the
    /// portable one (said once in the log).
    #[default]
    Auto,
    /// Portable `pwrite`/`fdatasync`, whatever the machine offers.
    Sync,
}

/// Parses `auto` or `sync`, the spellings rill's tools accept (the library itself reads no
/// environment variable; the `rill` tool and the tests map `RILL_IO` through this).
impl std::str::FromStr for IoMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "auto" => Ok(IoMode::Auto),
            "sync" => Ok(IoMode::Sync),
            _ => Err(Error::InvalidConfig {
                field: "EngineConfig::io",
                reason: format!("{text:?} is neither \"auto\" nor \"sync\""),
            }),
        }
    }
}

/// How an [`Engine`] runs: where its data lives, its threads, and the default configuration of
/// its topics. Checked by [`Engine::open`], which names the field it refuses.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The data directory; created if missing, locked while the engine is open.
    pub data_dir: PathBuf,
    /// Shard threads; 0 means one per available core.
    pub shards: usize,
    /// Pin each shard to its own core.
    pub pin_shards: bool,
    /// Configuration of topics created without one of their own (and of topics found on disk
    /// without a metadata file).
    pub log: LogConfig,
    /// Which I/O backend to use.
    pub io: IoMode,
    /// Whether the io_uring backend writes segments with `O_DIRECT` or through the page cache.
    /// Both go through the same staging buffers and batched submissions; only the open flag
    /// differs. [`DirectIo::Auto`] (the default) measures both on the data directory's file
    /// system at the first open and records the outcome there for later opens;
    /// [`Engine::write_mode`] says what was chosen and why.
    ///
    /// `O_DIRECT` skips the copy into the page cache and its writeback throttling, which on
    /// fast disks is the difference between the device's rate and the kernel's flusher's, and
    /// it leaves the page cache to the applications around the engine. Consumers that keep up
    /// read the in-memory tail either way. Through the page cache, small bursts are
    /// acknowledged at memory speed, read-back of older data is served from memory, and some
    /// virtual disks take the kernel's large merged writeback faster. A file system that
    /// refuses `O_DIRECT` (tmpfs, for one) gets the page cache whatever this says. The portable
    /// backend always writes through the page cache.
    pub direct_io: DirectIo,
    /// The longest an idle shard keeps polling its rings before it sleeps. The shard adapts
    /// its window below this to the gaps between batches: it grows while batches come soon
    /// after a park, and shrinks to nothing for a trickle, which then costs no CPU between
    /// batches.
    pub idle_spin: Duration,
    /// How often shards enforce retention.
    pub retention_check_interval: Duration,
    /// The storage the partitions write through; `None` is the real one. Tests put the
    /// storage simulator here.
    #[doc(hidden)]
    pub storage: Option<Arc<dyn crate::io::Storage>>,
}

/// Longest `idle_spin` accepted: a shard spinning longer burns a core for nothing.
const MAX_IDLE_SPIN: Duration = Duration::from_secs(1);

/// How long a topic deletion waits for a shard to close one of its partitions (it first
/// finishes the writes in flight, bounded by the device).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(30);

impl EngineConfig {
    /// The defaults for a data directory: one shard per core, pinned, io_uring where possible.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            shards: 0,
            pin_shards: true,
            log: LogConfig::default(),
            io: IoMode::Auto,
            direct_io: DirectIo::Auto,
            idle_spin: Duration::from_micros(50),
            retention_check_interval: Duration::from_secs(60),
            storage: None,
        }
    }

    /// Refuses values the engine cannot run with, naming the field; [`Engine::open`] calls it.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |field: &'static str, reason: String| Err(Error::InvalidConfig { field, reason });
        if self.data_dir.as_os_str().is_empty() {
            return invalid("EngineConfig::data_dir", "empty path".into());
        }
        if self.idle_spin > MAX_IDLE_SPIN {
            return invalid(
                "EngineConfig::idle_spin",
                format!("{:?} exceeds {MAX_IDLE_SPIN:?}", self.idle_spin),
            );
        }
        if self.retention_check_interval.is_zero() {
            return invalid(
                "EngineConfig::retention_check_interval",
                "must be positive".into(),
            );
        }
        self.log.validate()
    }
}

/// An open data directory and the shard threads that serve it.
///
/// `Engine` is a cheap handle (two reference counts): clones share one engine, and it is `Send`
/// and `Sync`, so threads and consumer groups each hold their own clone. Producers and
/// consumers it makes fail with [`Error::EngineClosed`] once it has shut down.
///
/// The engine shuts down on [`Engine::shutdown`], or when its last clone drops (logging any
/// error then).
#[derive(Clone, Debug)]
pub struct Engine {
    /// Shared with every producer and consumer the engine makes (they are made in their own
    /// modules, which reach the registry through this).
    pub(crate) inner: Arc<Inner>,
    threads: Arc<Threads>,
}

/// The shard threads, joined once: by `shutdown`, or when the last `Engine` clone drops.
#[derive(Debug)]
struct Threads {
    inner: Arc<Inner>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Engine {
    /// Opens the data directory (locking it), recovers every partition found in it, and starts
    /// the shard threads.
    ///
    /// The configuration is checked first ([`Error::InvalidConfig`] names the field); each
    /// topic reopens with the configuration it was created with.
    pub fn open(mut config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        let store = Store::open(&config.data_dir, config.log.clone())?;
        let producer_ids = crate::producer_ids::ProducerIds::open(store.root())?;
        let shard_count = match config.shards {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let backend = shard::choose_backend(config.io, config.log.limits.max_batch_bytes);
        let write_mode = if backend == shard::URING {
            write_mode::choose(
                store.root(),
                config.direct_io,
                config.storage.is_none(),
                config.log.preallocate,
            )
        } else {
            write_mode::portable()
        };
        log::info!(
            "rill: {} ({})",
            if write_mode.direct {
                "segments written with O_DIRECT"
            } else {
                "segments written through the page cache"
            },
            write_mode.reason
        );
        // The shards read the decision from the configuration.
        config.direct_io = if write_mode.direct {
            DirectIo::On
        } else {
            DirectIo::Off
        };
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
        let inner = Arc::new(Inner {
            store,
            config,
            topics: RwLock::new(HashMap::new()),
            creating: Mutex::new(()),
            shards,
            closed: AtomicBool::new(false),
            backend,
            write_mode,
            producer_ids,
        });
        let engine = Engine {
            threads: Arc::new(Threads {
                inner: inner.clone(),
                handles: Mutex::new(threads),
            }),
            inner,
        };
        for (topic, partitions) in engine.inner.store.topics()? {
            let meta = engine.metadata(&topic, partitions, None)?;
            engine.load_topic(&topic, meta)?;
        }
        Ok(engine)
    }

    /// A fresh idempotent producer identity (epoch 0), never handed out before in this data
    /// directory, crashes included: the reservation is on disk before the id is returned.
    /// [`ProducerConfig::idempotent`](crate::ProducerConfig::idempotent) producers get theirs
    /// here; a front end hands them to its clients (Kafka's `InitProducerId`).
    pub fn init_producer_id(&self) -> Result<crate::ProducerIdentity> {
        if self.inner.is_closed() {
            return Err(Error::EngineClosed);
        }
        self.inner.producer_ids.allocate()
    }

    /// The topic's metadata from its file; a topic from before the file existed gets a fresh
    /// id and `config`, written down so the id stays.
    fn metadata(
        &self,
        topic: &TopicName,
        partitions: u32,
        config: Option<LogConfig>,
    ) -> Result<TopicMeta> {
        let root = self.inner.store.root();
        if let Some(meta) = topic_meta::read(root, topic)? {
            if meta.partitions != partitions {
                return Err(Error::CorruptFile {
                    path: topic_meta::path(root, topic),
                    reason: format!(
                        "records {} partitions, the directory holds {partitions}",
                        meta.partitions
                    ),
                });
            }
            return Ok(meta);
        }
        let meta = TopicMeta {
            id: TopicId::random().context("read random bytes", "/dev/urandom")?,
            partitions,
            config,
        };
        topic_meta::write(root, topic, &meta)?;
        Ok(meta)
    }

    /// Creates a topic that follows the engine's default configuration
    /// ([`EngineConfig::log`], whatever it is at each open); see [`Engine::create_topic_with`].
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        self.create_topic_as(name, partitions, None)
    }

    /// Creates a topic with its own configuration, or does nothing if it exists with this many
    /// partitions (keeping the configuration it has).
    ///
    /// The configuration is written to the topic's metadata file with a fresh random
    /// [`TopicId`]; the topic reopens with both. [`Engine::alter_topic`] changes it.
    pub fn create_topic_with(&self, name: &str, partitions: u32, config: LogConfig) -> Result<()> {
        self.create_topic_as(name, partitions, Some(config))
    }

    fn create_topic_as(
        &self,
        name: &str,
        partitions: u32,
        config: Option<LogConfig>,
    ) -> Result<()> {
        if self.inner.is_closed() {
            return Err(Error::EngineClosed);
        }
        if let Some(config) = &config {
            config.validate()?;
        }
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
            let meta = self.metadata(&topic, partitions, config)?;
            self.load_topic(&topic, meta)?;
        }
        Ok(())
    }

    /// Replaces a topic's own configuration (`None`: follow the engine's default), durably.
    ///
    /// The new configuration is checked first, and takes effect when the engine next opens the
    /// data directory: partitions that are open keep the configuration they opened with.
    pub fn alter_topic(&self, name: &str, config: Option<LogConfig>) -> Result<()> {
        if let Some(config) = &config {
            config.validate()?;
        }
        let topic = self.inner.topic(name)?;
        let root = self.inner.store.root();
        let meta = TopicMeta {
            config,
            ..self.metadata(&topic.name, topic.partitions.len() as u32, None)?
        };
        topic_meta::write(root, &topic.name, &meta)
    }

    /// Deletes a topic: its records, its partitions and its metadata.
    ///
    /// Producers, consumers and raw handles made before fail from their next call with
    /// [`Error::UnknownTopic`] (records they had sent and not yet seen appended fail with it
    /// too); reads under way finish on memory the engine keeps until they drop. A topic
    /// created again with the name starts empty, with a new id. Errors: [`Error::UnknownTopic`],
    /// or the error closing a partition or removing its files (the topic is gone from the
    /// engine either way; files left are removed by the next delete or open).
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let _creating = self
            .inner
            .creating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let topic = self.inner.topic(name)?;
        self.inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&topic.name);
        for partition in &topic.partitions {
            partition.deleted.store(true, Ordering::Release);
        }
        // Consumers parked on the topic or a partition look again, and see it deleted.
        for partition in &topic.partitions {
            partition.notify();
        }
        let outcomes: Vec<_> = topic
            .partitions
            .iter()
            .map(|p| (p, p.shard.remove_partition(p.tp.clone())))
            .collect();
        let mut first_error = None;
        for (partition, outcome) in outcomes {
            let closed = match outcome.recv_timeout(REMOVE_TIMEOUT) {
                Ok(closed) => closed,
                // A stopped shard has closed its partitions already.
                Err(_) if !partition.shard.is_alive() => Ok(()),
                Err(_) => Err(Error::Closed {
                    partition: partition.tp.clone(),
                }),
            };
            if let Err(error) = closed {
                log::error!("rill: deleting {}: {error}", partition.tp);
                first_error.get_or_insert(error);
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let root = self.inner.store.root();
        self.inner.store.delete_topic(
            &topic.name,
            topic.partitions.len() as u32,
            &topic_meta::path(root, &topic.name),
        )
    }

    /// The topic's id, random at creation and kept for its life.
    pub fn topic_id(&self, name: &str) -> Result<TopicId> {
        Ok(self.inner.topic(name)?.id)
    }

    /// The configuration the topic's partitions run with now.
    pub fn topic_config(&self, name: &str) -> Result<LogConfig> {
        Ok(self.inner.topic(name)?.config.clone())
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

    /// Whether segments are written with `O_DIRECT` or through the page cache, and why (the
    /// configuration, or what [`DirectIo::Auto`] measured). Meaningful for the io_uring
    /// backend; the portable one always writes through the page cache.
    pub fn write_mode(&self) -> &WriteMode {
        &self.inner.write_mode
    }

    /// How many shard threads serve the data directory.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// Stops (`true`) or resumes (`false`) the shards' draining of their rings, so tests can
    /// fill rings and observe back-pressure. A test hook, only with the `unstable` feature.
    #[cfg(feature = "unstable")]
    pub fn hold_shards(&self, held: bool) {
        for shard in &self.inner.shards {
            shard.hold(held);
        }
    }

    /// Stops accepting sends, lets every shard append what its rings hold, syncs, and closes
    /// every partition cleanly (so the next open needs no recovery scan). Other clones of the
    /// engine see it closed.
    pub fn shutdown(self) -> Result<()> {
        self.threads.shutdown()
    }

    fn load_topic(&self, topic: &TopicName, meta: TopicMeta) -> Result<()> {
        let config = meta.config.unwrap_or_else(|| self.inner.config.log.clone());
        let count = self.inner.store.partitions(topic)?;
        let notifier = Arc::new(Notifier::default());
        // Every partition is opened before any is handed to a shard: if one fails, dropping
        // the opened logs releases their locks, instead of shards holding them until restart.
        let mut logs = Vec::with_capacity(count as usize);
        for partition in 0..count {
            // The log's own backend syncs the partition (a producer's retried batch, closing);
            // its writes go through the shard's pipeline (engine::direct).
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
                notifier: Notifier::default(),
                topic_notifier: notifier.clone(),
                deleted: AtomicBool::new(false),
                parked: AtomicBool::new(false),
            });
            shard.add_partition(log, entry.clone());
            partitions.push(entry);
        }
        let entry = Arc::new(TopicEntry {
            id: meta.id,
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

impl Threads {
    fn shutdown(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        for shard in &self.inner.shards {
            shard.request_shutdown();
        }
        let handles =
            std::mem::take(&mut *self.handles.lock().unwrap_or_else(PoisonError::into_inner));
        let mut first_error = None;
        for thread in handles {
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
            for partition in &topic.partitions {
                partition.notify();
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
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
