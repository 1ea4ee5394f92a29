//! Metadata: this broker, and the topics asked for (all of them when the request says so),
//! creating unknown ones when the server and the request allow it, as Kafka's
//! `auto.create.topics.enable` does.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{text, topic_id, topic_name};
use crate::broker::{Broker, Context, respond};
use crate::codes::code_of;
use crate::error::ConnectionError;
use crate::response::Encoded;

pub fn handle(
    broker: &Broker,
    cx: Context,
    request: MetadataRequest,
) -> Result<Encoded, ConnectionError> {
    // v0 has no null array: an empty list means every topic. From v1 on, null means every
    // topic and an empty list none.
    let wanted = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && cx.version == 0 => None,
        Some(topics) => Some(topics),
    };
    // The field exists from v4; before it, Kafka created topics whenever the broker allowed.
    let may_create =
        broker.config.auto_create_topics && (cx.version < 4 || request.allow_auto_topic_creation);
    let topics = match wanted {
        None => broker
            .engine
            .topics()
            .into_iter()
            .map(|(name, partitions)| describe(broker, &name, partitions))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|topic| match topic.name {
                Some(name) => lookup(broker, name.0.as_str(), may_create),
                None => match super::topic_by_id(broker, topic.topic_id) {
                    Some((name, partitions)) => describe(broker, &name, partitions),
                    None => MetadataResponseTopic::default()
                        .with_topic_id(topic.topic_id)
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                },
            })
            .collect(),
    };
    let (host, port) = &broker.advertised;
    let response = MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker.config.node_id))
                .with_host(text(host.clone()))
                .with_port(*port),
        ])
        .with_cluster_id(Some(text(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_topics(topics);
    respond(cx, &response)
}

/// A named topic: described, created then described, or an error.
fn lookup(broker: &Broker, name: &str, may_create: bool) -> MetadataResponseTopic {
    let existing = broker.engine.raw_partition(name, 0).map(|_| ());
    let found = match existing {
        Err(rill_engine::Error::UnknownTopic { .. }) if may_create => broker
            .engine
            .create_topic(name, broker.config.default_partitions)
            .map(|()| log::info!("created topic {name:?} on a metadata request")),
        other => other,
    };
    let partitions = broker
        .engine
        .topics()
        .into_iter()
        .find(|(topic, _)| topic == name)
        .map(|(_, count)| count);
    match (found, partitions) {
        (Ok(()), Some(count)) => describe(broker, name, count),
        (Err(error), _) => failed(name, code_of(&error)),
        (Ok(()), None) => failed(name, ResponseError::UnknownTopicOrPartition.code()),
    }
}

fn failed(name: &str, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(code)
}

/// A topic whose every partition is led by this broker, its only replica.
fn describe(broker: &Broker, name: &str, partitions: u32) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let partitions = (0..partitions)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_topic_id(topic_id(broker, name))
        .with_is_internal(name.starts_with("__"))
        .with_partitions(partitions)
}
