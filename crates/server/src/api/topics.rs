//! CreateTopics and DeleteTopics.
//!
//! A topic created with configs gets its own log configuration (persisted by the engine with
//! the topic); an unknown or unsupported key is refused (INVALID_CONFIG) naming it. DeleteTopics removes a topic and its records
//! (by name, or from v6 by id).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};

use super::text;
use crate::broker::{Broker, Context, Session, respond};
use crate::codes::code_of;
use crate::error::ConnectionError;
use crate::response::Encoded;
use crate::topic_config;

pub fn create(
    broker: &Broker,
    session: &Session,
    cx: Context,
    request: CreateTopicsRequest,
) -> Result<Encoded, ConnectionError> {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.clone();
            let result = CreatableTopicResult::default()
                .with_name(name)
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            match create_one(broker, &topic, request.validate_only) {
                Ok(partitions) => {
                    if !request.validate_only {
                        log::info!(
                            "{} created topic {:?} with {partitions} partitions",
                            session.peer,
                            topic.name.0.as_str()
                        );
                    }
                    let id = if request.validate_only {
                        uuid::Uuid::nil()
                    } else {
                        super::topic_id(broker, topic.name.0.as_str())
                    };
                    result
                        .with_topic_id(id)
                        .with_num_partitions(partitions as i32)
                        .with_replication_factor(1)
                }
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(text(message))),
            }
        })
        .collect();
    respond(cx, &CreateTopicsResponse::default().with_topics(topics))
}

/// Checks and (unless only validating) creates one topic; returns its partition count.
fn create_one(
    broker: &Broker,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<u32, (i16, String)> {
    let name = topic.name.0.as_str();
    let partitions = match topic.num_partitions {
        -1 => broker.config.default_partitions,
        n if n >= 1 && n as u32 <= broker.config.max_partitions => n as u32,
        n => {
            return Err((
                ResponseError::InvalidPartitions.code(),
                format!(
                    "{n} partitions: 1 to {} allowed",
                    broker.config.max_partitions
                ),
            ));
        }
    };
    if !matches!(topic.replication_factor, -1 | 1) {
        return Err((
            ResponseError::InvalidReplicationFactor.code(),
            format!(
                "replication factor {}: this broker is the only one",
                topic.replication_factor
            ),
        ));
    }
    if !topic.assignments.is_empty() {
        return Err((
            ResponseError::InvalidRequest.code(),
            "manual replica assignment is not supported".into(),
        ));
    }
    // Kafka's broker-wide default for a topic's limit is the broker's; a topic may lower it
    // but not raise it, because the shards size their write buffers by the broker's.
    let default = broker.engine.default_topic_config();
    let config = topic_config::apply(
        default,
        topic
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
    )
    .map_err(|refused| (ResponseError::InvalidConfig.code(), refused.to_string()))?;
    if config.limits.max_batch_bytes > default.limits.max_batch_bytes {
        return Err((
            ResponseError::InvalidConfig.code(),
            format!(
                "config max.message.bytes: {} exceeds the broker's message.max.bytes {}",
                config.limits.max_batch_bytes, default.limits.max_batch_bytes
            ),
        ));
    }
    config
        .validate()
        .map_err(|e| (code_of(&e), e.to_string()))?;
    if broker
        .engine
        .topics()
        .iter()
        .any(|(existing, _)| existing == name)
    {
        return Err((
            ResponseError::TopicAlreadyExists.code(),
            format!("topic {name:?} already exists"),
        ));
    }
    if validate_only {
        rill_engine::TopicName::new(name).map_err(|e| {
            let error = rill_engine::Error::from(e);
            (code_of(&error), error.to_string())
        })?;
        return Ok(partitions);
    }
    let created = if topic.configs.is_empty() {
        // No configs: the topic follows the broker's default, whatever it is at each start.
        broker.engine.create_topic(name, partitions)
    } else {
        broker.engine.create_topic_with(name, partitions, config)
    };
    created.map_err(|e| (code_of(&e), e.to_string()))?;
    Ok(partitions)
}

pub fn delete(
    broker: &Broker,
    session: &Session,
    cx: Context,
    request: DeleteTopicsRequest,
) -> Result<Encoded, ConnectionError> {
    // Up to v5 topics are named in `topic_names`; v6 lists them in `topics`, by name or id.
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if cx.version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), uuid::Uuid::nil()))
            .collect()
    };
    let responses = wanted
        .into_iter()
        .map(|(name, id)| delete_one(broker, session, name, id))
        .collect();
    respond(
        cx,
        &DeleteTopicsResponse::default().with_responses(responses),
    )
}

/// Deletes one topic named by name or (v6) by id.
fn delete_one(
    broker: &Broker,
    session: &Session,
    name: Option<TopicName>,
    id: uuid::Uuid,
) -> DeletableTopicResult {
    let name = match name {
        Some(name) => name.0.as_str().to_owned(),
        None => match super::topic_by_id(broker, id) {
            Some((name, _)) => name,
            None => {
                return DeletableTopicResult::default()
                    .with_topic_id(id)
                    .with_error_code(ResponseError::UnknownTopicId.code())
                    .with_error_message(Some(text("no topic has this id")));
            }
        },
    };
    let id = super::topic_id(broker, &name);
    let result = DeletableTopicResult::default()
        .with_name(Some(super::topic_name(&name)))
        .with_topic_id(id);
    match broker.engine.delete_topic(&name) {
        Ok(()) => {
            log::info!("{} deleted topic {name:?}", session.peer);
            result
        }
        Err(error) => result
            .with_error_code(code_of(&error))
            .with_error_message(Some(text(error.to_string()))),
    }
}
