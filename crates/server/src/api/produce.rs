//! Produce: each partition's batch appended exactly as the client encoded it.
//!
//! The batches are validated and handed to the shards on the connection's reading thread, in
//! request order; the acknowledgement is awaited on its writing thread: `acks=0` sends no
//! response, `acks=1` waits until the batch is written, `acks=-1` until it is durable (one
//! node: the only replica is this disk, so "all replicas" means synced; group commit shares
//! the fsync between connections).

use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use rill_engine::{AckLevel, RawPartition, RawTicket};

use crate::api::Pending;
use crate::broker::{Broker, Context, Session, respond};
use crate::codes::code_of;
use crate::error::ConnectionError;
use crate::response::Encoded;

/// A produce whose batches are queued; its response is built once they are acknowledged.
#[derive(Debug)]
pub struct Waiting {
    cx: Context,
    deadline: Instant,
    topics: Vec<TopicWaiting>,
}

/// One topic of a produce: its name and id as the request gave them, and per partition its
/// index and fate.
#[derive(Debug)]
struct TopicWaiting {
    name: kafka_protocol::messages::TopicName,
    id: uuid::Uuid,
    partitions: Vec<(i32, Outcome)>,
}

#[derive(Debug)]
enum Outcome {
    Queued(RawTicket, RawPartition),
    Failed(i16, Option<String>),
}

pub fn handle(
    broker: &Broker,
    session: &mut Session,
    cx: Context,
    request: ProduceRequest,
) -> Pending {
    let level = match request.acks {
        0 | 1 => Some(AckLevel::Written),
        -1 => Some(AckLevel::Durable),
        _ => None,
    };
    let wait = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0))
        .min(broker.config.max_produce_wait);
    let topics = request
        .topic_data
        .into_iter()
        .map(|topic| {
            let name = super::requested_topic(broker, cx.version, &topic.name, topic.topic_id);
            let partitions = topic
                .partition_data
                .into_iter()
                .map(|data| {
                    let outcome = match (level, &name) {
                        (None, _) => {
                            Outcome::Failed(ResponseError::InvalidRequiredAcks.code(), None)
                        }
                        (_, Err(code)) => Outcome::Failed(*code, None),
                        (Some(level), Ok(name)) => append(
                            broker,
                            session,
                            name,
                            data.index,
                            data.records.as_deref(),
                            level,
                        ),
                    };
                    (data.index, outcome)
                })
                .collect();
            TopicWaiting {
                name: topic.name,
                id: topic.topic_id,
                partitions,
            }
        })
        .collect();
    if request.acks == 0 {
        return Pending::Nothing;
    }
    Pending::Produce(Waiting {
        cx,
        deadline: Instant::now() + wait,
        topics,
    })
}

fn append(
    broker: &Broker,
    session: &mut Session,
    topic: &str,
    partition: i32,
    records: Option<&[u8]>,
    level: AckLevel,
) -> Outcome {
    let Ok(index) = u32::try_from(partition) else {
        return Outcome::Failed(ResponseError::UnknownTopicOrPartition.code(), None);
    };
    let Some(records) = records else {
        return Outcome::Failed(
            ResponseError::InvalidRecord.code(),
            Some("no records".into()),
        );
    };
    let partition = match broker.engine.raw_partition(topic, index) {
        Ok(partition) => partition,
        Err(error) => return Outcome::Failed(code_of(&error), None),
    };
    match session.appender.append(&partition, records, level) {
        Ok(ticket) => Outcome::Queued(ticket, partition),
        Err(error) => {
            log::debug!("produce from {} refused: {error}", session.peer);
            Outcome::Failed(code_of(&error), Some(error.to_string()))
        }
    }
}

impl Waiting {
    /// Waits (until the request's timeout at most) for every batch, then encodes the response.
    pub fn finish(self) -> Result<Encoded, ConnectionError> {
        let deadline = self.deadline;
        let responses = self
            .topics
            .into_iter()
            .map(
                |TopicWaiting {
                     name,
                     id,
                     partitions,
                 }| {
                    let partitions = partitions
                        .into_iter()
                        .map(|(index, outcome)| resolve(index, outcome, deadline))
                        .collect();
                    TopicProduceResponse::default()
                        .with_name(name)
                        .with_topic_id(id)
                        .with_partition_responses(partitions)
                },
            )
            .collect();
        respond(
            self.cx,
            &ProduceResponse::default().with_responses(responses),
        )
    }
}

fn resolve(index: i32, outcome: Outcome, deadline: Instant) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    let (ticket, partition) = match outcome {
        Outcome::Queued(ticket, partition) => (ticket, partition),
        Outcome::Failed(code, message) => {
            return response
                .with_error_code(code)
                .with_error_message(message.map(super::text));
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let response = response.with_log_start_offset(partition.start_offset());
    match ticket.wait_timeout(left) {
        Ok(Some(base)) => response.with_base_offset(base),
        Ok(None) => response.with_error_code(ResponseError::RequestTimedOut.code()),
        Err(error) => response
            .with_error_code(code_of(&error))
            .with_error_message(Some(super::text(error.to_string()))),
    }
}
