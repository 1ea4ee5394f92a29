//! OffsetCommit and OffsetFetch, on rill-group's offset store (the one in-process groups use).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use rill_group::{GroupError, TopicPartition};

use crate::api::{text, topic_name};
use crate::broker::{Broker, Context, respond};
use crate::codes::code_of;
use crate::error::ConnectionError;
use crate::response::Encoded;

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

/// How long a commit waits for its records to be durable before it answers REQUEST_TIMED_OUT.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The Kafka code for a failed group operation.
fn group_code(error: &GroupError) -> i16 {
    match error {
        GroupError::Engine { source, .. } => code_of(source),
        GroupError::InvalidConfig { .. } => ResponseError::InvalidGroupId.code(),
        GroupError::UnknownTopic { .. } | GroupError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        _ => ResponseError::UnknownServerError.code(),
    }
}

/// OffsetCommit: checked against the member's generation (a stale one is ILLEGAL_GENERATION)
/// or, in a KIP-848 group, its member epoch (a stale one is STALE_MEMBER_EPOCH), appended to the offsets log, answered once durable.
pub fn commit(
    broker: &Broker,
    cx: Context,
    request: OffsetCommitRequest,
) -> Result<Encoded, ConnectionError> {
    let group_id = request.group_id.0.as_str().to_owned();
    let topics: HashMap<String, u32> = broker.engine.topics().into_iter().collect();
    // Per partition: the code it is answered with if it is not committed.
    let mut answers: Vec<(String, Vec<(i32, i16)>)> = Vec::new();
    let mut entries = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.as_str().to_owned();
        let count = topics.get(&name).copied();
        let mut codes = Vec::new();
        for p in &topic.partitions {
            let in_range = u32::try_from(p.partition_index)
                .ok()
                .filter(|i| count.is_some_and(|n| *i < n));
            let code = match in_range {
                None => ResponseError::UnknownTopicOrPartition.code(),
                Some(_)
                    if p.committed_metadata
                        .as_ref()
                        .is_some_and(|m| m.len() > MAX_METADATA_BYTES) =>
                {
                    ResponseError::OffsetMetadataTooLarge.code()
                }
                Some(_) if p.committed_offset < 0 => ResponseError::InvalidCommitOffsetSize.code(),
                // The topic exists (it has a partition count), so its name is valid.
                Some(index) => match rill_engine::TopicName::new(&name) {
                    Ok(topic) => {
                        entries.push((TopicPartition::new(topic, index), p.committed_offset));
                        0
                    }
                    Err(_) => ResponseError::UnknownTopicOrPartition.code(),
                },
            };
            codes.push((p.partition_index, code));
        }
        answers.push((name, codes));
    }
    let failure = if group_id.is_empty() {
        Some(ResponseError::InvalidGroupId.code())
    } else {
        store_commit(broker, cx.version, &group_id, &request, &entries).err()
    };
    let response = OffsetCommitResponse::default().with_topics(
        answers
            .into_iter()
            .map(|(name, codes)| {
                OffsetCommitResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(
                        codes
                            .into_iter()
                            .map(|(index, code)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(if code == 0 {
                                        failure.unwrap_or(0)
                                    } else {
                                        code
                                    })
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    respond(cx, &response)
}

/// Checks the committer under the coordinator's lock and takes the group's store lock before
/// letting go of it, so commits reach the log in the order they were checked; the append
/// (which may wait for room in a shard's ring) and the wait for durability hold only the
/// store lock and nothing, so other groups' requests and heartbeats are never held up.
fn store_commit(
    broker: &Broker,
    version: i16,
    group_id: &str,
    request: &OffsetCommitRequest,
    entries: &[(TopicPartition, i64)],
) -> Result<(), i16> {
    let store = broker
        .groups
        .offsets(&broker.engine, group_id)
        .map_err(|e| group_code(&e))?;
    let ticket = {
        let mut groups = broker.groups.lock()?;
        let epoch = match groups.consumer_mut(group_id) {
            // A KIP-848 group's members commit under their member epoch.
            Some(group) => group.check_commit(
                request.generation_id_or_member_epoch,
                request.member_id.as_str(),
                version,
                Instant::now(),
            )?,
            None => groups.touch(group_id).check_commit(
                request.generation_id_or_member_epoch,
                request.member_id.as_str(),
                request.group_instance_id.as_ref().map(|s| s.as_str()),
                Instant::now(),
            )?,
        };
        if entries.is_empty() {
            return Ok(());
        }
        let mut store = store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(groups);
        store.append(entries, epoch).map_err(|e| group_code(&e))?
    };
    match ticket.map(|t| t.wait_timeout(COMMIT_TIMEOUT)) {
        None | Some(Ok(Some(_))) => Ok(()),
        Some(Ok(None)) => Err(ResponseError::RequestTimedOut.code()),
        Some(Err(e)) => Err(code_of(&e)),
    }
}

/// Committed offsets by topic: (partition, offset) pairs, -1 where there is none.
type Found = Vec<(String, Vec<(i32, i64)>)>;

/// What OffsetFetch asks of one group: its id and the partitions (all when `None`).
type Asked = (String, Option<Vec<(String, Vec<i32>)>>);

/// OffsetFetch: one group (v1-7) or several (v8+); all of a group's partitions when the topics
/// are null.
pub fn fetch(
    broker: &Broker,
    cx: Context,
    request: OffsetFetchRequest,
) -> Result<Encoded, ConnectionError> {
    // v9+: a KIP-848 member names itself and its epoch; an unknown or stale one is refused.
    let members: Vec<(Option<String>, i32)> = if cx.version >= 9 {
        request
            .groups
            .iter()
            .map(|g| {
                (
                    g.member_id.as_ref().map(|m| m.as_str().to_owned()),
                    g.member_epoch,
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let asked: Vec<Asked> = if cx.version >= 8 {
        request
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes))
                        .collect()
                });
                (g.group_id.0.as_str().to_owned(), topics)
            })
            .collect()
    } else {
        let topics = request.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes))
                .collect()
        });
        vec![(request.group_id.0.as_str().to_owned(), topics)]
    };
    let mut answered: Vec<(String, i16, Found)> = asked
        .into_iter()
        .enumerate()
        .map(|(i, (group, topics))| {
            let (member, epoch) = members.get(i).cloned().unwrap_or((None, -1));
            if let Err(code) = check_fetcher(broker, &group, member.as_deref(), epoch) {
                return (group, code, Vec::new());
            }
            let (code, topics) = lookup(broker, &group, topics);
            (group, code, topics)
        })
        .collect();
    let mut response = OffsetFetchResponse::default();
    if cx.version >= 8 {
        response.groups = answered
            .into_iter()
            .map(|(group, code, topics)| {
                OffsetFetchResponseGroup::default()
                    .with_group_id(kafka_protocol::messages::GroupId(text(group)))
                    .with_error_code(code)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(topic_name(&name))
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|(index, offset)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(index)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(-1)
                                                    .with_metadata(Some(text("")))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
    } else if let Some((_, code, topics)) = answered.pop() {
        if cx.version >= 2 {
            response.error_code = code;
        }
        response.topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(index, offset)| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(-1)
                                    .with_metadata(Some(text("")))
                                    // Before v2 the group's error travels in every partition.
                                    .with_error_code(if cx.version < 2 { code } else { 0 })
                            })
                            .collect(),
                    )
            })
            .collect();
    }
    respond(cx, &response)
}

/// Checks the member an OffsetFetch names against its KIP-848 group, if the group is one.
fn check_fetcher(
    broker: &Broker,
    group: &str,
    member: Option<&str>,
    epoch: i32,
) -> Result<(), i16> {
    let groups = broker.groups.lock()?;
    groups
        .consumer(group)
        .map_or(Ok(()), |g| g.check_fetch(member, epoch))
}

/// A group's committed offsets for the asked partitions (-1 where none), or all of them.
fn lookup(broker: &Broker, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> (i16, Found) {
    if group.is_empty() {
        return (ResponseError::InvalidGroupId.code(), Vec::new());
    }
    let store = match broker.groups.offsets(&broker.engine, group) {
        Ok(store) => store,
        Err(e) => return (group_code(&e), Vec::new()),
    };
    let store = store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let answer = match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, indexes)| {
                let offsets = indexes
                    .into_iter()
                    .map(|index| {
                        let offset = u32::try_from(index)
                            .ok()
                            .and_then(|i| store.committed(&name, i))
                            .unwrap_or(-1);
                        (index, offset)
                    })
                    .collect();
                (name, offsets)
            })
            .collect(),
        None => {
            let mut by_topic: Found = Vec::new();
            for (tp, offset) in store.all() {
                let index = i32::try_from(tp.partition).unwrap_or(i32::MAX);
                match by_topic.last_mut() {
                    Some((name, partitions)) if **name == *tp.topic => {
                        partitions.push((index, offset));
                    }
                    _ => by_topic.push((tp.topic.to_string(), vec![(index, offset)])),
                }
            }
            by_topic
        }
    };
    (0, answer)
}
