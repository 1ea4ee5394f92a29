//! Fetch: whole batches from an offset, long-polled on the watermarks.
//!
//! - A fetch at an offset inside a batch returns that whole batch; the client skips the
//!   records before its offset (cutting batches made some consumers hang).
//! - The response holds at most `max_bytes`, each partition at most its `partition_max_bytes`,
//!   except that the first batch found is returned whole however large, as Kafka does, so a
//!   consumer always progresses.
//! - With less than `min_bytes` available, the fetch waits for data until `max_wait_ms`,
//!   parked on the engine's watermark notifier (no polling loop).
//! - Batches are not copied into the response: they are spliced from the segment maps or the
//!   in-memory tail into a vectored write (see `response`).
//! - Fetch sessions (KIP-227) are not kept: session id 0 tells clients to send full requests.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use rill_engine::{LogSlice, RawPartition};

use crate::api::Pending;
use crate::broker::{Broker, Context};
use crate::codes::code_of;
use crate::error::ConnectionError;
use crate::response::{Encoded, MAX_PLACEHOLDER, Splice, encode};

/// A fetch to be answered on the connection's writing thread.
#[derive(Debug)]
pub struct Waiting {
    cx: Context,
    request: FetchRequest,
    deadline: Instant,
}

pub fn handle(broker: &Broker, cx: Context, request: FetchRequest) -> Pending {
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0))
        .min(broker.config.max_fetch_wait);
    Pending::Fetch(Waiting {
        cx,
        request,
        deadline: Instant::now() + wait,
    })
}

/// One requested partition and what was found for it.
struct Slot {
    partition: Option<RawPartition>,
    fetch_offset: i64,
    max_bytes: usize,
    error: i16,
    /// Consecutive runs of whole batches, in offset order.
    records: Vec<LogSlice>,
}

impl Waiting {
    /// Reads, waits for data if there is less than `min_bytes`, reads again, and encodes.
    pub fn finish(self, broker: &Broker) -> Result<Encoded, ConnectionError> {
        let Waiting {
            cx,
            request,
            deadline,
        } = self;
        if request.session_id != 0 {
            // An incremental fetch of a session this server never created.
            let response = FetchResponse::default()
                .with_error_code(ResponseError::FetchSessionIdNotFound.code());
            return encode(cx.correlation_id, cx.version, &response, &[]);
        }
        let mut slots: Vec<Vec<Slot>> = request
            .topics
            .iter()
            .map(|topic| {
                let name = super::requested_topic(broker, cx.version, &topic.topic, topic.topic_id);
                topic
                    .partitions
                    .iter()
                    .map(|p| {
                        slot(
                            broker,
                            name.as_deref(),
                            p.partition,
                            p.fetch_offset,
                            p.partition_max_bytes,
                        )
                    })
                    .collect()
            })
            .collect();
        let max_bytes = usize::try_from(request.max_bytes).unwrap_or(0);
        let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
        loop {
            let found = read_all(&mut slots, max_bytes);
            let errors = slots.iter().flatten().any(|s| s.error != 0);
            if found >= min_bytes.max(1)
                || errors
                || broker.is_stopping()
                || Instant::now() >= deadline
            {
                break;
            }
            let waits: Vec<(RawPartition, i64)> = slots
                .iter()
                .flatten()
                .filter_map(|s| Some((s.partition.clone()?, s.fetch_offset.max(high(s)))))
                .collect();
            if waits.is_empty()
                || !broker
                    .engine
                    .wait_for_data(&waits, deadline, || broker.is_stopping())
            {
                read_all(&mut slots, max_bytes);
                break;
            }
        }
        let isolation_committed = request.isolation_level == 1;
        let mut borrowed = Vec::new();
        let responses = request
            .topics
            .iter()
            .zip(slots)
            .map(|(topic, slots)| {
                let partitions = topic
                    .partitions
                    .iter()
                    .zip(slots)
                    .map(|(p, slot)| {
                        partition_data(p.partition, slot, isolation_committed, &mut borrowed)
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(topic.topic.clone())
                    .with_topic_id(topic.topic_id)
                    .with_partitions(partitions)
            })
            .collect();
        let response = FetchResponse::default().with_responses(responses);
        encode(cx.correlation_id, cx.version, &response, &borrowed)
    }
}

/// The slot of one requested partition of `topic` (or the code naming it failed with).
fn slot(
    broker: &Broker,
    topic: Result<&str, &i16>,
    partition: i32,
    fetch_offset: i64,
    max_bytes: i32,
) -> Slot {
    let found = topic
        .map_err(|code| *code)
        .and_then(|topic| {
            u32::try_from(partition)
                .map(|index| (topic, index))
                .map_err(|_| ResponseError::UnknownTopicOrPartition.code())
        })
        .and_then(|(topic, index)| {
            broker
                .engine
                .raw_partition(topic, index)
                .map_err(|e| code_of(&e))
        });
    let (partition, error) = match found {
        Ok(partition) => (Some(partition), 0),
        Err(code) => (None, code),
    };
    Slot {
        partition,
        fetch_offset,
        max_bytes: usize::try_from(max_bytes).unwrap_or(0),
        error,
        records: Vec::new(),
    }
}

fn high(slot: &Slot) -> i64 {
    slot.partition
        .as_ref()
        .map_or(0, RawPartition::high_watermark)
}

/// Reads every partition within the response budget; returns the bytes found.
fn read_all(slots: &mut [Vec<Slot>], max_bytes: usize) -> usize {
    let mut total = 0usize;
    for slot in slots.iter_mut().flatten() {
        slot.records.clear();
        if slot.error == 0 {
            total += read_partition(slot, max_bytes.saturating_sub(total), total == 0);
        }
    }
    total
}

/// Reads runs of batches from one partition until its budget, the response's, or the high
/// watermark; returns the bytes read. A read gives one run (one segment's worth, or one
/// in-memory batch), so a partition's answer may take several.
fn read_partition(slot: &mut Slot, response_left: usize, first_in_response: bool) -> usize {
    let Some(partition) = &slot.partition else {
        return 0;
    };
    let mut left = slot.max_bytes.min(response_left).min(MAX_PLACEHOLDER);
    let mut offset = slot.fetch_offset;
    let mut taken = 0;
    loop {
        // Only the response's very first batch may exceed the budget, so a consumer facing
        // a batch larger than its limits still progresses (as with Kafka).
        let may_exceed = first_in_response && taken == 0;
        if left == 0 && !may_exceed {
            break;
        }
        match partition.read(offset, left.max(1)) {
            Ok(run) if run.is_empty() => break,
            Ok(run) if run.bytes().len() > left && !may_exceed => break,
            Ok(run) => {
                let len = run.bytes().len();
                taken += len;
                left = left.saturating_sub(len);
                offset = run.next_offset();
                slot.records.push(run);
            }
            Err(error) => {
                // Later runs failing (retention removed a segment meanwhile) end the answer;
                // an unreadable first position is the partition's error.
                if taken == 0 {
                    slot.error = code_of(&error);
                }
                break;
            }
        }
    }
    taken
}

fn partition_data(
    index: i32,
    slot: Slot,
    isolation_committed: bool,
    borrowed: &mut Vec<Splice>,
) -> PartitionData {
    let (high_watermark, log_start) = slot
        .partition
        .as_ref()
        .map_or((-1, -1), |p| (p.high_watermark(), p.start_offset()));
    let parts: Vec<Bytes> = slot
        .records
        .into_iter()
        .map(|run| Bytes::from_owner(SliceBytes(run)))
        .collect();
    // `read_partition` keeps a partition within one placeholder, so `of` always succeeds.
    let records = match Splice::of(parts) {
        Some(splice) => {
            let field = splice.field.clone();
            borrowed.push(splice);
            field
        }
        None => Bytes::new(),
    };
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(slot.error)
        .with_high_watermark(high_watermark)
        // No transactions: everything below the high watermark is stable.
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(log_start)
        .with_aborted_transactions(isolation_committed.then(Vec::new))
        .with_preferred_read_replica((-1).into())
        .with_records(Some(records))
}

/// A slice of the log as the owner of `Bytes`, so batches travel without a copy.
struct SliceBytes(LogSlice);

impl AsRef<[u8]> for SliceBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}
