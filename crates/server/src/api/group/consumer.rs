//! ConsumerGroupHeartbeat and ConsumerGroupDescribe: KIP-848 groups, whose assignment the
//! coordinator computes (see [`crate::coordinator::consumer`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member,
    TopicPartitions as DescribedPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
};
use kafka_protocol::protocol::StrBytes;
use rill_group::TopicPartition;

use crate::api::{text, topic_id, topic_name};
use crate::broker::{Broker, Context, respond};
use crate::coordinator::consumer::{HeartbeatAnswer, HeartbeatRequest, MemberView};
use crate::error::ConnectionError;
use crate::response::Encoded;

/// The `member_type` ConsumerGroupDescribe v1 gives a member of the consumer protocol.
const CONSUMER_MEMBER: i8 = 1;

/// Topic names and ids both ways, and partition counts, from one look at the engine.
struct Topics {
    counts: HashMap<String, u32>,
    ids: HashMap<String, uuid::Uuid>,
    names: HashMap<uuid::Uuid, String>,
}

impl Topics {
    fn of(broker: &Broker) -> Self {
        let counts: HashMap<String, u32> = broker.engine.topics().into_iter().collect();
        let ids: HashMap<String, uuid::Uuid> = counts
            .keys()
            .map(|name| (name.clone(), topic_id(broker, name)))
            .collect();
        let names = ids.iter().map(|(name, id)| (*id, name.clone())).collect();
        Self { counts, ids, names }
    }

    fn id(&self, name: &str) -> uuid::Uuid {
        self.ids.get(name).copied().unwrap_or_else(uuid::Uuid::nil)
    }

    /// (topic id, partitions) groups of an assignment, in topic order.
    fn by_id<'a>(&self, partitions: &'a [TopicPartition]) -> Vec<(uuid::Uuid, &'a str, Vec<i32>)> {
        let mut grouped: Vec<(uuid::Uuid, &'a str, Vec<i32>)> = Vec::new();
        for tp in partitions {
            let index = i32::try_from(tp.partition).unwrap_or(i32::MAX);
            match grouped.last_mut() {
                Some((_, name, list)) if *name == &*tp.topic => list.push(index),
                _ => grouped.push((self.id(&tp.topic), &tp.topic, vec![index])),
            }
        }
        grouped
    }
}

/// ConsumerGroupHeartbeat: join, leave, or keep a member's session and move it one step
/// towards its target assignment.
pub fn heartbeat(
    broker: &Broker,
    cx: Context,
    client_id: Option<&StrBytes>,
    peer: SocketAddr,
    request: ConsumerGroupHeartbeatRequest,
) -> Result<Encoded, ConnectionError> {
    let group_id = request.group_id.0.as_str().to_owned();
    let topics = Topics::of(broker);
    let member_id = request.member_id.as_str().to_owned();
    let answer = if group_id.is_empty() {
        HeartbeatAnswer::error(
            ResponseError::InvalidGroupId,
            &member_id,
            "GroupId can't be empty",
        )
    } else if member_id.is_empty() && (cx.version >= 1 || request.member_epoch != 0) {
        // From v1 on the client names itself (KIP-1082); v0 gets a name on its first join.
        HeartbeatAnswer::error(ResponseError::InvalidRequest, "", "MemberId can't be empty")
    } else if request
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|regex| !regex.is_empty())
        && request.member_epoch >= 0
    {
        // librdkafka sends an empty one when it subscribes by name.
        HeartbeatAnswer::error(
            ResponseError::InvalidRequest,
            &member_id,
            "subscriptions by regular expression are not supported by this broker",
        )
    } else {
        let decoded = decode(&request, &topics, client_id, peer, member_id.clone());
        match broker.groups.lock() {
            Err(code) => HeartbeatAnswer {
                error: code,
                member_id,
                member_epoch: -1,
                ..HeartbeatAnswer::default()
            },
            Ok(mut groups) => {
                let fresh = groups.new_member_id(decoded.client_id.as_str());
                match groups.touch_consumer(&group_id) {
                    None => HeartbeatAnswer::error(
                        ResponseError::GroupIdNotFound,
                        &member_id,
                        format!("group {group_id:?} is not a consumer group"),
                    ),
                    Some(group) => {
                        group.heartbeat(decoded, &topics.counts, Instant::now(), || fresh)
                    }
                }
            }
        }
    };
    log::debug!(
        "ConsumerGroupHeartbeat v{} group {group_id:?} member {:?} epoch {} -> epoch {} error {} {:?}",
        cx.version,
        answer.member_id,
        request.member_epoch,
        answer.member_epoch,
        answer.error,
        answer.message
    );
    let assignment = answer.assignment.map(|partitions| {
        Assignment::default().with_topic_partitions(
            topics
                .by_id(&partitions)
                .into_iter()
                .map(|(id, _, list)| {
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(list)
                })
                .collect(),
        )
    });
    let response = ConsumerGroupHeartbeatResponse::default()
        .with_error_code(answer.error)
        .with_error_message(answer.message.map(text))
        .with_member_id((answer.error == 0).then(|| text(answer.member_id)))
        .with_member_epoch(answer.member_epoch)
        .with_heartbeat_interval_ms(millis_i32(answer.heartbeat_interval))
        .with_assignment(assignment);
    respond(cx, &response)
}

fn millis_i32(value: Duration) -> i32 {
    i32::try_from(value.as_millis()).unwrap_or(i32::MAX)
}

/// The request with topic ids turned into names (ids no topic has are dropped: the client
/// owns nothing there any more).
fn decode(
    request: &ConsumerGroupHeartbeatRequest,
    topics: &Topics,
    client_id: Option<&StrBytes>,
    peer: SocketAddr,
    member_id: String,
) -> HeartbeatRequest {
    let owned = request.topic_partitions.as_ref().map(|list| {
        let mut owned = BTreeSet::new();
        for entry in list {
            let Some(name) = topics.names.get(&entry.topic_id) else {
                continue;
            };
            let Ok(topic) = rill_engine::TopicName::new(name) else {
                continue;
            };
            for &p in &entry.partitions {
                if let Ok(p) = u32::try_from(p) {
                    owned.insert(TopicPartition::new(topic.clone(), p));
                }
            }
        }
        owned
    });
    HeartbeatRequest {
        member_id,
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|s| s.as_str().to_owned()),
        rack_id: request.rack_id.as_ref().map(|s| s.as_str().to_owned()),
        rebalance_timeout: u64::try_from(request.rebalance_timeout_ms)
            .ok()
            .map(Duration::from_millis),
        subscription: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.0.as_str().to_owned()).collect()),
        assignor: request
            .server_assignor
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        owned,
        client_id: client_id.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
    }
}

/// ConsumerGroupDescribe: epochs, assignor and members (with their current and target
/// assignments) of each group; an unknown or classic group is GROUP_ID_NOT_FOUND.
pub fn describe(
    broker: &Broker,
    cx: Context,
    request: ConsumerGroupDescribeRequest,
) -> Result<Encoded, ConnectionError> {
    let topics = Topics::of(broker);
    let locked = broker.groups.lock();
    let groups = request
        .group_ids
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            let groups = match &locked {
                Ok(groups) => groups,
                Err(code) => return described.with_error_code(*code),
            };
            let Some(group) = groups.consumer(id.0.as_str()) else {
                return described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(text(format!(
                        "group {:?} is not a consumer group",
                        id.0.as_str()
                    ))))
                    .with_group_state(text("Dead"));
            };
            let view = group.view();
            described
                .with_group_state(text(view.state))
                .with_group_epoch(view.epoch)
                .with_assignment_epoch(view.assignment_epoch)
                .with_assignor_name(text(view.assignor))
                .with_members(
                    view.members
                        .into_iter()
                        .map(|m| member(&topics, m, cx.version))
                        .collect(),
                )
        })
        .collect();
    drop(locked);
    respond(
        cx,
        &ConsumerGroupDescribeResponse::default().with_groups(groups),
    )
}

fn member(topics: &Topics, m: MemberView, version: i16) -> Member {
    let assignment = |partitions: &[TopicPartition]| {
        DescribedAssignment::default().with_topic_partitions(
            topics
                .by_id(partitions)
                .into_iter()
                .map(|(id, name, list)| {
                    DescribedPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(topic_name(name))
                        .with_partitions(list)
                })
                .collect(),
        )
    };
    Member::default()
        .with_member_id(text(m.id))
        .with_instance_id(m.instance_id.map(text))
        .with_rack_id(m.rack_id.map(text))
        .with_member_epoch(m.epoch)
        .with_client_id(text(m.client_id))
        .with_client_host(text(m.client_host))
        .with_subscribed_topic_names(m.subscription.iter().map(|t| topic_name(t)).collect())
        .with_assignment(assignment(&m.assigned))
        .with_target_assignment(assignment(&m.target))
        .with_member_type(if version >= 1 { CONSUMER_MEMBER } else { -1 })
}
