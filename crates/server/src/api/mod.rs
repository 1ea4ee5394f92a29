//! One module per Kafka API served.

pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod fetch;
pub mod group;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod topics;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// A topic name for a response.
pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A string for a response.
pub(crate) fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}
