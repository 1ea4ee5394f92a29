//! DescribeConfigs: a topic's settings and the broker's, read-only, as admin tools expect.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use rill_engine::LogConfig;

use super::text;
use crate::broker::{Broker, Context, respond};
use crate::codes::code_of;
use crate::error::ConnectionError;
use crate::response::Encoded;
use crate::topic_config::{self, Type};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Kafka's `ConfigSource.DYNAMIC_TOPIC_CONFIG`: the topic's own value.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
/// Kafka's `ConfigSource.DEFAULT_CONFIG`: nothing overrides these values.
const DEFAULT_CONFIG: i8 = 5;

pub fn describe(
    broker: &Broker,
    cx: Context,
    request: DescribeConfigsRequest,
) -> Result<Encoded, ConnectionError> {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.as_str().to_owned();
            let entries = match resource.resource_type {
                TOPIC => broker
                    .engine
                    .topic_config(&name)
                    .map(|c| topic_entries(broker, &c))
                    .map_err(|e| code_of(&e)),
                BROKER if name.is_empty() || name == broker.config.node_id.to_string() => {
                    Ok(broker_entries(broker))
                }
                BROKER => Err(ResponseError::InvalidRequest.code()),
                _ => Err(ResponseError::InvalidRequest.code()),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            match entries {
                Ok(entries) => {
                    // Null or empty both mean every key, as Kafka's broker reads it.
                    let keys = resource.configuration_keys.filter(|k| !k.is_empty());
                    let configs = entries
                        .into_iter()
                        .filter(|(key, ..)| {
                            keys.as_ref()
                                .is_none_or(|k| k.iter().any(|w| w.as_str() == *key))
                        })
                        .map(|(key, value, kind, own)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(text(key))
                                .with_value(Some(text(value)))
                                .with_read_only(true)
                                .with_config_source(if own {
                                    DYNAMIC_TOPIC_CONFIG
                                } else {
                                    DEFAULT_CONFIG
                                })
                                .with_config_type(kind as i8)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                Err(code) => result.with_error_code(code),
            }
        })
        .collect();
    respond(
        cx,
        &DescribeConfigsResponse::default().with_results(results),
    )
}

/// The topic's values; those that differ from the broker's default are the topic's own (set
/// when it was created).
fn topic_entries(broker: &Broker, config: &LogConfig) -> Vec<(&'static str, String, Type, bool)> {
    topic_config::describe(config, broker.engine.default_topic_config())
}

/// The broker's values: all defaults (a broker has no overrides).
fn broker_entries(broker: &Broker) -> Vec<(&'static str, String, Type, bool)> {
    let config = &broker.config;
    let entries = vec![
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            Type::Boolean,
        ),
        ("broker.id", config.node_id.to_string(), Type::Int),
        ("delete.topic.enable", "true".into(), Type::Boolean),
        (
            "message.max.bytes",
            broker
                .engine
                .default_topic_config()
                .limits
                .max_batch_bytes
                .to_string(),
            Type::Int,
        ),
        (
            "num.partitions",
            config.default_partitions.to_string(),
            Type::Int,
        ),
        (
            "socket.request.max.bytes",
            config.max_request_bytes.to_string(),
            Type::Int,
        ),
    ];
    entries
        .into_iter()
        .map(|(key, value, kind)| (key, value, kind, false))
        .collect()
}
