//! ListOffsets: the earliest offset (-2), the latest (-1, the high watermark), or the first
//! offset at or after a timestamp.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use rill_engine::RawPartition;

use crate::broker::{Broker, Context, respond};
use crate::codes::code_of;
use crate::error::ConnectionError;
use crate::response::Encoded;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub fn handle(
    broker: &Broker,
    cx: Context,
    request: ListOffsetsRequest,
) -> Result<Encoded, ConnectionError> {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.as_str().to_owned();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        // The field exists from v4; the encoder refuses a value it cannot send.
                        .with_leader_epoch(if cx.version >= 4 { 0 } else { -1 });
                    let found = u32::try_from(p.partition_index)
                        .map_err(|_| ResponseError::UnknownTopicOrPartition.code())
                        .and_then(|i| {
                            broker
                                .engine
                                .raw_partition(&name, i)
                                .map_err(|e| code_of(&e))
                        })
                        .and_then(|partition| lookup(&partition, p.timestamp));
                    match found {
                        Ok((offset, timestamp)) => {
                            response.with_offset(offset).with_timestamp(timestamp)
                        }
                        Err(code) => response.with_error_code(code),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    respond(cx, &ListOffsetsResponse::default().with_topics(topics))
}

/// (offset, timestamp) for a query; Kafka answers -1, -1 when no record is that recent.
fn lookup(partition: &RawPartition, timestamp: i64) -> Result<(i64, i64), i16> {
    match timestamp {
        LATEST => Ok((partition.high_watermark(), -1)),
        EARLIEST => Ok((partition.start_offset(), -1)),
        // Max timestamp (-3) and the tiered-storage queries need versions not advertised.
        t if t < 0 => Err(ResponseError::UnsupportedVersion.code()),
        t => match partition.offset_for_timestamp(t).map_err(|e| code_of(&e))? {
            Some(offset) => Ok((offset, record_timestamp(partition, offset).unwrap_or(t))),
            None => Ok((-1, -1)),
        },
    }
}

/// The timestamp of the record at `offset`, read from its batch.
fn record_timestamp(partition: &RawPartition, offset: i64) -> Option<i64> {
    let slice = partition.read(offset, 1).ok()?;
    let limits = partition.config().limits;
    for item in slice.batches() {
        let (_, batch) = item.ok()?;
        if batch.last_offset() < offset {
            continue;
        }
        let records = batch.records(&limits).ok()?;
        for record in records.iter() {
            let record = record.ok()?;
            if record.offset == offset {
                return Some(record.timestamp);
            }
        }
    }
    None
}
