//! DescribeConfigs: a topic's settings and the broker's, read-only, as admin tools expect.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use rill_engine::FsyncPolicy;
use rill_engine::LogConfig;

use super::text;
use crate::broker::{Broker, Context, respond};
use crate::codes::code_of;
use crate::error::ConnectionError;
use crate::response::Encoded;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// Kafka's `ConfigSource.DEFAULT_CONFIG`: nothing overrides these values.
const DEFAULT_CONFIG: i8 = 5;

/// Kafka's config types (v3+).
#[derive(Clone, Copy)]
enum Type {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

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
                    .map(|c| topic_entries(&c))
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
                        .map(|(key, value, kind)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(text(key))
                                .with_value(Some(text(value)))
                                .with_read_only(true)
                                .with_config_source(DEFAULT_CONFIG)
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

fn millis(duration: Option<std::time::Duration>) -> String {
    duration.map_or("-1".into(), |d| d.as_millis().to_string())
}

fn topic_entries(config: &LogConfig) -> Vec<(&'static str, String, Type)> {
    let (flush_messages, flush_ms) = match config.fsync {
        FsyncPolicy::EveryAppend => ("1".to_owned(), i64::MAX.to_string()),
        FsyncPolicy::Interval(every) => (i64::MAX.to_string(), every.as_millis().to_string()),
        _ => (i64::MAX.to_string(), i64::MAX.to_string()),
    };
    vec![
        ("cleanup.policy", "delete".into(), Type::List),
        ("compression.type", "producer".into(), Type::String),
        ("flush.messages", flush_messages, Type::Long),
        ("flush.ms", flush_ms, Type::Long),
        (
            "index.interval.bytes",
            config.index_interval_bytes.to_string(),
            Type::Int,
        ),
        (
            "max.message.bytes",
            config.limits.max_batch_bytes.to_string(),
            Type::Int,
        ),
        ("message.timestamp.type", "CreateTime".into(), Type::String),
        ("min.insync.replicas", "1".into(), Type::Int),
        (
            "retention.bytes",
            config
                .retention_bytes
                .map_or("-1".into(), |b| b.to_string()),
            Type::Long,
        ),
        ("retention.ms", millis(config.retention_age), Type::Long),
        ("segment.bytes", config.segment_bytes.to_string(), Type::Int),
        ("segment.ms", millis(config.segment_age), Type::Long),
    ]
}

fn broker_entries(broker: &Broker) -> Vec<(&'static str, String, Type)> {
    let config = &broker.config;
    vec![
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            Type::Boolean,
        ),
        ("broker.id", config.node_id.to_string(), Type::Int),
        ("delete.topic.enable", "false".into(), Type::Boolean),
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
    ]
}
