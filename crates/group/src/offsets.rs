//! Committed offsets, kept in the engine's internal `__consumer_offsets` topic.
//!
//! Every commit appends one record per partition, keyed by (group, topic, partition) with the
//! next offset to read as the value; the log is the source of truth and the in-memory map is
//! its last-value-per-key view, rebuilt by reading the log from the start when a group opens.
//! A group's records all go to one partition of the topic (picked by a stable hash of the
//! group id), so their order in the log is the order commits were accepted in.
//!
//! Encoding (big-endian, versioned so it can change without breaking old logs):
//! key `0u8, u16 group_len, group, u16 topic_len, topic, u32 partition`; value
//! `0u8, i64 offset, u32 member_epoch`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rill_engine::{AckLevel, Engine, Ticket};
use rill_engine::{ConsumerConfig, Seek, StartFrom};
use rill_engine::{Producer, ProducerConfig, ProducerRecord};

use crate::assignor::{Topic, TopicPartition};
use crate::error::{GroupError, Result};

/// The internal topic holding every group's committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

const VERSION: u8 = 0;

/// How long loading waits for the offsets log to show records it says it has before giving up
/// on them; only a log whose visible end lags its reported end could need it.
const LOAD_IDLE_LIMIT: Duration = Duration::from_secs(5);

pub(crate) struct OffsetStore {
    group: String,
    partition: u32,
    producer: Producer,
    committed: HashMap<(Topic, u32), i64>,
}

impl std::fmt::Debug for OffsetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetStore")
            .field("group", &self.group)
            .field("partition", &self.partition)
            .field("committed", &self.committed.len())
            .finish_non_exhaustive()
    }
}

impl OffsetStore {
    /// Creates the offsets topic if it is missing and loads this group's committed offsets.
    pub fn open(engine: &Engine, group: &str, partitions_if_created: u32) -> Result<Self> {
        let err = |context: &str, e| GroupError::engine(group, context, e);
        let existing = engine
            .topics()
            .into_iter()
            .find(|(name, _)| name == OFFSETS_TOPIC)
            .map(|(_, n)| n);
        let partitions = match existing {
            Some(n) => n,
            None => {
                engine
                    .create_topic(OFFSETS_TOPIC, partitions_if_created.max(1))
                    .map_err(|e| err("creating the offsets topic", e))?;
                partitions_if_created.max(1)
            }
        };
        let partition = fnv1a(group.as_bytes()) % partitions.max(1);
        let committed = load(engine, group, partition)?;
        // One record per batch: a commit's records are then submitted as soon as they are
        // sent, so the lock that orders commits is never held across a wait.
        let producer = engine
            .producer_with(
                OFFSETS_TOPIC,
                ProducerConfig {
                    ack: AckLevel::Durable,
                    batch_bytes: 1,
                    linger: Duration::ZERO,
                    ..ProducerConfig::default()
                },
            )
            .map_err(|e| err("opening the offsets producer", e))?;
        Ok(Self {
            group: group.to_owned(),
            partition,
            producer,
            committed,
        })
    }

    pub fn committed(&self, topic: &Topic, partition: u32) -> Option<i64> {
        self.committed.get(&(topic.clone(), partition)).copied()
    }

    pub fn all(&self) -> &HashMap<(Topic, u32), i64> {
        &self.committed
    }

    /// Appends the commit to the log and applies it to the map; returns the ticket of the
    /// last record (durable in order, so it covers the others). The caller holds the lock
    /// that orders commits, which makes log order and map order agree.
    pub fn append(&mut self, entries: &[(Topic, u32, i64)], epoch: u32) -> Result<Option<Ticket>> {
        let mut last = None;
        for (topic, partition, offset) in entries {
            let key = encode_key(&self.group, topic, *partition);
            let mut value = Vec::with_capacity(13);
            value.push(VERSION);
            value.extend_from_slice(&offset.to_be_bytes());
            value.extend_from_slice(&epoch.to_be_bytes());
            let record = ProducerRecord {
                partition: Some(self.partition),
                ..ProducerRecord::new(Some(&key), &value)
            };
            let ticket = self
                .producer
                .send(record)
                .map_err(|e| {
                    GroupError::engine(
                        &self.group,
                        format!("committing {topic}-{partition} to the offsets log"),
                        e,
                    )
                })?
                .into_ticket();
            self.committed.insert((topic.clone(), *partition), *offset);
            last = Some(ticket);
        }
        Ok(last)
    }
}

/// One group's committed offsets without the rest of a [`Group`](crate::Group): for a
/// coordinator outside this crate (the Kafka front end's classic groups) that must keep them in
/// the very store in-process groups use, so both see the same offsets, before and after a
/// restart.
///
/// The caller orders commits (it holds this value behind its own lock) and checks the
/// committer's generation first, as [`Member::commit_sync`](crate::Member::commit_sync) checks
/// its member epoch. As with [`Group`](crate::Group), only one handle per group id should be open
/// on an engine at a time.
#[derive(Debug)]
pub struct CommittedOffsets {
    store: OffsetStore,
}

impl CommittedOffsets {
    /// Opens group `group`'s offsets: creates the offsets topic (with `partitions_if_created`
    /// partitions) if it is missing, and loads what the group committed.
    pub fn open(engine: &Engine, group: &str, partitions_if_created: u32) -> Result<Self> {
        if group.is_empty() || group.len() > usize::from(u16::MAX) {
            return Err(GroupError::InvalidConfig {
                group: group.to_owned(),
                reason: "group ids are 1 to 65535 bytes".to_owned(),
            });
        }
        OffsetStore::open(engine, group, partitions_if_created).map(|store| Self { store })
    }

    /// The committed offset (the next offset to read) of `topic`-`partition`.
    pub fn committed(&self, topic: &str, partition: u32) -> Option<i64> {
        // A name that is not a valid topic name was never committed.
        let topic = Topic::new(topic).ok()?;
        self.store.committed(&topic, partition)
    }

    /// Every committed offset of the group.
    pub fn all(&self) -> BTreeMap<TopicPartition, i64> {
        self.store
            .all()
            .iter()
            .map(|((topic, partition), &offset)| {
                (TopicPartition::new(topic.clone(), *partition), offset)
            })
            .collect()
    }

    /// Appends a commit made under `epoch` (a member epoch, or a classic generation) and
    /// applies it at once; returns the ticket of its last record, which turns durable after
    /// the others. Negative offsets are refused before anything is appended.
    pub fn append(
        &mut self,
        offsets: &[(TopicPartition, i64)],
        epoch: u32,
    ) -> Result<Option<Ticket>> {
        let mut entries = Vec::with_capacity(offsets.len());
        for (tp, offset) in offsets {
            if *offset < 0 {
                return Err(GroupError::InvalidOffset {
                    group: self.store.group.clone(),
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    offset: *offset,
                });
            }
            entries.push((tp.topic.clone(), tp.partition, *offset));
        }
        self.store.append(&entries, epoch)
    }
}

/// Reads the group's partition of the offsets topic from the beginning; the last value per key
/// wins.
fn load(engine: &Engine, group: &str, partition: u32) -> Result<HashMap<(Topic, u32), i64>> {
    let err = |context: &str, e| GroupError::engine(group, context, e);
    let mut consumer = engine
        .consumer_with(
            OFFSETS_TOPIC,
            ConsumerConfig {
                start: StartFrom::Earliest,
                ..ConsumerConfig::default()
            },
        )
        .map_err(|e| err("reading the offsets topic", e))?;
    consumer
        .assign([partition])
        .map_err(|e| err("reading the offsets topic", e))?;
    let end = consumer
        .seek(partition, Seek::Latest)
        .map_err(|e| err("reading the offsets topic", e))?;
    consumer
        .seek(partition, Seek::Earliest)
        .map_err(|e| err("reading the offsets topic", e))?;
    let mut committed = HashMap::new();
    let mut idle = Duration::ZERO;
    while consumer.position(partition).is_some_and(|p| p < end) && idle < LOAD_IDLE_LIMIT {
        let step = Duration::from_millis(50);
        let polled = consumer
            .poll(step)
            .map_err(|e| err("reading the offsets topic", e))?;
        if polled.is_empty() {
            idle += step;
            continue;
        }
        idle = Duration::ZERO;
        polled
            .for_each_record(|_, record| {
                let (Some(key), Some(value)) = (record.key, record.value) else {
                    return;
                };
                match (decode_key(key), decode_value(value)) {
                    (Some((g, topic, p)), Some(offset)) if g == group.as_bytes() => {
                        match Topic::new(topic) {
                            Ok(topic) => {
                                committed.insert((topic, p), offset);
                            }
                            Err(error) => log::warn!(
                                "rill-group {group:?}: skipping a commit for an invalid topic name at {OFFSETS_TOPIC}-{partition}: {error}"
                            ),
                        }
                    }
                    (Some(_), Some(_)) => {}
                    _ => log::warn!(
                        "rill-group {group:?}: skipping an unreadable record at offset {} of {OFFSETS_TOPIC}-{partition}",
                        record.offset
                    ),
                }
            })
            .map_err(|e| err("reading the offsets topic", e))?;
    }
    Ok(committed)
}

fn encode_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + group.len() + topic.len());
    key.push(VERSION);
    // Group ids are checked to fit in u16 when the group opens; topic names are at most 249.
    key.extend_from_slice(&(group.len() as u16).to_be_bytes());
    key.extend_from_slice(group.as_bytes());
    key.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    key.extend_from_slice(topic.as_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

fn decode_key(key: &[u8]) -> Option<(&[u8], &str, u32)> {
    let (&version, rest) = key.split_first()?;
    if version != VERSION {
        return None;
    }
    let (group, rest) = take_str(rest)?;
    let (topic, rest) = take_str(rest)?;
    let partition = u32::from_be_bytes(rest.try_into().ok()?);
    Some((group, std::str::from_utf8(topic).ok()?, partition))
}

fn take_str(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_at_checked(2)?;
    let len = usize::from(u16::from_be_bytes(len.try_into().ok()?));
    rest.split_at_checked(len)
}

fn decode_value(value: &[u8]) -> Option<i64> {
    let (&version, rest) = value.split_first()?;
    if version != VERSION {
        return None;
    }
    Some(i64::from_be_bytes(rest.get(..8)?.try_into().ok()?))
}

/// FNV-1a: tiny and stable across releases and platforms, which is all the placement of a
/// group's records needs (it must not change between restarts).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = encode_key("g1", "orders", 7);
        assert_eq!(decode_key(&key), Some((&b"g1"[..], "orders", 7)));
        assert_eq!(decode_key(&key[..key.len() - 1]), None);
        assert_eq!(decode_key(&[1]), None);
        let mut value = vec![VERSION];
        value.extend_from_slice(&42i64.to_be_bytes());
        assert_eq!(decode_value(&value), Some(42));
        assert_eq!(decode_value(&value[..5]), None);
    }
}
