//! One module per Kafka API served.

pub mod api_versions;
pub mod cluster;
pub mod configs;
mod dispatch;
pub mod fetch;
pub mod group;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod topics;

pub use dispatch::Pending;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// A topic name for a response.
pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A topic's id as the wire carries it: its persisted id, or the zero id (Kafka's "no id")
/// when the topic is gone.
pub(crate) fn topic_id(broker: &crate::broker::Broker, name: &str) -> uuid::Uuid {
    broker
        .engine
        .topic_id(name)
        .map_or(uuid::Uuid::nil(), |id| {
            uuid::Uuid::from_bytes(*id.as_bytes())
        })
}

/// The topic (and its partition count) whose id is `id`, if any; the zero id names none.
pub(crate) fn topic_by_id(broker: &crate::broker::Broker, id: uuid::Uuid) -> Option<(String, u32)> {
    if id.is_nil() {
        return None;
    }
    broker
        .engine
        .topics()
        .into_iter()
        .find(|(name, _)| topic_id(broker, name) == id)
}

/// The first version of Produce and Fetch that names topics by id only.
pub(crate) const BY_ID_FROM: i16 = 13;

/// The topic a Produce or Fetch names: by name before [`BY_ID_FROM`], by id from it on.
/// An id no topic has is UNKNOWN_TOPIC_ID, as Kafka answers it.
pub(crate) fn requested_topic(
    broker: &crate::broker::Broker,
    version: i16,
    name: &TopicName,
    id: uuid::Uuid,
) -> Result<String, i16> {
    if version < BY_ID_FROM {
        return Ok(name.0.as_str().to_owned());
    }
    topic_by_id(broker, id)
        .map(|(name, _)| name)
        .ok_or(kafka_protocol::ResponseError::UnknownTopicId.code())
}

/// A string for a response.
pub(crate) fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}
