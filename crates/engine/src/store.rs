//! A data directory: topics made of partition logs, locked against a second opener.
//!
//! ```
//! use rill_engine::record::{BatchBuilder, Compression};
//! use rill_engine::store::Store;
//! use rill_engine::log::LogConfig;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), LogConfig::default())?;
//! let topic = store.create_topic("orders", 3)?;
//!
//! let mut log = store.open_partition(&topic, 0)?;
//! let mut builder = BatchBuilder::new(Compression::None);
//! builder.append(1_700_000_000_000, Some(b"k"), Some(b"hello"), &[])?;
//! let mut batch = builder.build()?;
//! let appended = log.append(&mut batch)?;
//! assert_eq!(appended.base_offset, 0);
//!
//! let slice = log.reader().read(0, 1 << 20)?;
//! let (_, batch) = slice.batches().next().unwrap()?;
//! assert_eq!(batch.record_count(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::io::PortableIo;
use crate::lock::{DirLock, LockMode};
use crate::log::{LogConfig, PartitionLog};
use crate::topic::{TopicName, TopicPartition};

/// Most partitions one topic may have: a bound on directories created by one call.
pub const MAX_PARTITIONS: u32 = 100_000;

/// An open data directory. Holding it holds the directory's exclusive lock.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    config: LogConfig,
    _lock: DirLock,
}

impl Store {
    /// Opens (creating if needed) a data directory. A second open of the same directory, from
    /// this process or another, fails with [`Error::DirectoryLocked`] until this one drops.
    pub fn open(root: impl AsRef<Path>, config: LogConfig) -> Result<Self> {
        let root = root.as_ref().to_owned();
        config.validate()?;
        fs::create_dir_all(&root).context("create data directory", &root)?;
        let lock = DirLock::acquire(&root, LockMode::Exclusive, |path| Error::DirectoryLocked {
            path,
        })?;
        remove_deleted(&root)?;
        Ok(Self {
            root,
            config,
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Creates a topic with `partitions` partitions. Creating an existing topic with the same
    /// count succeeds and changes nothing; with another count it is an error.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<TopicName> {
        let topic = TopicName::new(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(Error::InvalidConfig {
                field: "partitions",
                reason: format!("a topic needs 1 to {MAX_PARTITIONS} partitions, not {partitions}"),
            });
        }
        let existing = partition_count(&self.root, &topic)?;
        if existing == partitions {
            return Ok(topic);
        }
        if existing != 0 {
            return Err(Error::TopicExists {
                topic: topic.to_string(),
                existing,
                requested: partitions,
            });
        }
        for partition in 0..partitions {
            let dir = self
                .root
                .join(TopicPartition::new(topic.clone(), partition).dir_name());
            fs::create_dir_all(&dir).context("create partition directory", &dir)?;
        }
        fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .context("sync data directory", &self.root)?;
        Ok(topic)
    }

    /// Removes a deleted topic's partition directories and its metadata file (`meta_file`).
    ///
    /// The metadata file goes first, then the directories are renamed out of the topic's
    /// namespace from the last partition down, then removed. A crash part way leaves either
    /// the whole topic, or its first partitions as a topic with a fresh id: never a partition
    /// directory that a topic re-created with the name would adopt. Renamed leftovers are
    /// removed by [`Store::open`].
    pub(crate) fn delete_topic(
        &self,
        topic: &TopicName,
        partitions: u32,
        meta_file: &Path,
    ) -> Result<()> {
        match fs::remove_file(meta_file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove topic metadata", meta_file, error));
            }
            _ => {}
        }
        self.sync_root()?;
        let mut renamed = Vec::with_capacity(partitions as usize);
        for partition in (0..partitions).rev() {
            let name = TopicPartition::new(topic.clone(), partition).dir_name();
            let dir = self.root.join(&name);
            let gone = self.root.join(format!("{name}{DELETED}"));
            match fs::rename(&dir, &gone) {
                Ok(()) => renamed.push(gone),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io("rename deleted partition", &dir, error)),
            }
        }
        self.sync_root()?;
        for dir in renamed {
            fs::remove_dir_all(&dir).context("remove deleted partition", &dir)?;
        }
        Ok(())
    }

    fn sync_root(&self) -> Result<()> {
        fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .context("sync data directory", &self.root)
    }

    /// Every topic in the directory with its partition count, sorted by name.
    pub fn topics(&self) -> Result<Vec<(TopicName, u32)>> {
        list_topics(&self.root)
    }

    /// The number of partitions of `topic`; an error if it does not exist.
    pub fn partitions(&self, topic: &TopicName) -> Result<u32> {
        match partition_count(&self.root, topic)? {
            0 => Err(Error::UnknownTopic {
                topic: topic.to_string(),
            }),
            n => Ok(n),
        }
    }

    /// Opens one partition's log for writing with the store's configuration and the portable
    /// backend.
    pub fn open_partition(&self, topic: &TopicName, partition: u32) -> Result<PartitionLog> {
        self.open_partition_with(topic, partition, self.config.clone(), Box::new(PortableIo))
    }

    pub fn open_partition_with(
        &self,
        topic: &TopicName,
        partition: u32,
        config: LogConfig,
        io: Box<dyn crate::io::IoBackend>,
    ) -> Result<PartitionLog> {
        let tp = TopicPartition::new(topic.clone(), partition);
        let dir = self.root.join(tp.dir_name());
        if !dir.is_dir() {
            return Err(Error::UnknownPartition { partition: tp });
        }
        PartitionLog::open(&dir, tp, config, io)
    }
}

/// The suffix of a deleted partition's directory until it is removed: not a partition
/// directory name (those end in digits).
const DELETED: &str = ".deleted";

/// Removes partition directories a deletion renamed but did not remove before a crash.
fn remove_deleted(root: &Path) -> Result<()> {
    for entry in fs::read_dir(root).context("list data directory", root)? {
        let path = entry.context("list data directory", root)?.path();
        if path.is_dir() && path.to_str().is_some_and(|p| p.ends_with(DELETED)) {
            fs::remove_dir_all(&path).context("remove deleted partition", &path)?;
        }
    }
    Ok(())
}

/// Topics found in a data directory, from its partition directories.
pub(crate) fn list_topics(root: &Path) -> Result<Vec<(TopicName, u32)>> {
    let mut names = std::collections::BTreeSet::new();
    for entry in fs::read_dir(root).context("list data directory", root)? {
        let entry = entry.context("list data directory", root)?;
        if let Some(tp) = entry
            .file_name()
            .to_str()
            .and_then(TopicPartition::from_dir_name)
        {
            names.insert(tp.topic);
        }
    }
    names
        .into_iter()
        .map(|topic| partition_count(root, &topic).map(|count| (topic, count)))
        .filter(|found| !matches!(found, Ok((_, 0))))
        .collect()
}

/// Partitions are numbered densely from 0; the count is the first missing number.
fn partition_count(root: &Path, topic: &TopicName) -> Result<u32> {
    let mut count = 0;
    while count < MAX_PARTITIONS
        && root
            .join(TopicPartition::new(topic.clone(), count).dir_name())
            .is_dir()
    {
        count += 1;
    }
    Ok(count)
}
