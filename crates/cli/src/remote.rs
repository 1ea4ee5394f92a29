//! `--bootstrap HOST:PORT`: `rill produce`, `consume` and `topics` as Kafka clients of a
//! running broker (`rill serve`, or any Kafka), through `rill_server::client`.

use std::io::{self, BufRead, BufWriter, Write};
use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_engine::partitioner::key_partition;
use rill_engine::record::{BatchBuilder, Batches, Compression, Limits};
use rill_server::client::Client;

use crate::dump::write_record;

/// Versions this client speaks: ones every broker since Kafka 2.1 serves, `rill serve` too.
const METADATA: i16 = 7;
const PRODUCE: i16 = 7;
const FETCH: i16 = 10;
const LIST_OFFSETS: i16 = 4;
const CREATE_TOPICS: i16 = 3;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of records per produce request, per partition.
const BATCH_BYTES: usize = 64 * 1024;
/// Longest a fetch waits at the end of the log: how late an interrupt is noticed.
const FETCH_WAIT_MS: i32 = 200;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn kafka_error(code: i16, what: &str) -> anyhow::Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => bail!("{what}: {error} (Kafka error {code})"),
    }
}

fn connect(bootstrap: &str) -> anyhow::Result<Client> {
    Client::connect(bootstrap, CONNECT_TIMEOUT).with_context(|| format!("cannot reach {bootstrap}"))
}

/// The topic's partition count, creating it with `create` partitions if asked and missing.
fn partitions(client: &mut Client, topic: &str, create: Option<i32>) -> anyhow::Result<u32> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic))),
        ]))
        .with_allow_auto_topic_creation(false);
    let response = client.send(METADATA, &request)?;
    let found = response
        .topics
        .first()
        .context("metadata answered no topic")?;
    if found.error_code == ResponseError::UnknownTopicOrPartition.code()
        && let Some(count) = create
    {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(name(topic))
                    .with_num_partitions(count)
                    .with_replication_factor(-1),
            ]);
        let response = client.send(CREATE_TOPICS, &request)?;
        let created = response
            .topics
            .first()
            .context("create answered no topic")?;
        kafka_error(
            created.error_code,
            &format!("cannot create topic {topic:?}"),
        )?;
        return partitions(client, topic, None);
    }
    kafka_error(found.error_code, &format!("topic {topic:?}"))?;
    Ok(found.partitions.len() as u32)
}

/// One offset per partition: earliest (-2) or latest (-1).
fn offsets(client: &mut Client, topic: &str, count: u32, which: i64) -> anyhow::Result<Vec<i64>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(
                    (0..count)
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p as i32)
                                .with_timestamp(which)
                        })
                        .collect(),
                ),
        ]);
    let response = client.send(LIST_OFFSETS, &request)?;
    let mut found = vec![0; count as usize];
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        kafka_error(
            partition.error_code,
            &format!("{topic}-{}", partition.partition_index),
        )?;
        if let Some(slot) = usize::try_from(partition.partition_index)
            .ok()
            .and_then(|i| found.get_mut(i))
        {
            *slot = partition.offset;
        }
    }
    Ok(found)
}

/// `rill topics --bootstrap`: every topic's partitions with first and next offsets.
pub fn topics(bootstrap: &str) -> anyhow::Result<()> {
    let mut client = connect(bootstrap)?;
    let response = client.send(METADATA, &MetadataRequest::default().with_topics(None))?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{:<40} {:>9} {:>14} {:>14}",
        "TOPIC", "PARTITION", "FIRST", "NEXT"
    )?;
    let mut topics: Vec<(String, u32)> = response
        .topics
        .iter()
        .filter_map(|t| {
            Some((
                t.name.as_ref()?.0.as_str().to_owned(),
                t.partitions.len() as u32,
            ))
        })
        .collect();
    topics.sort();
    for (topic, count) in topics {
        let first = offsets(&mut client, &topic, count, -2)?;
        let next = offsets(&mut client, &topic, count, -1)?;
        for partition in 0..count as usize {
            writeln!(
                out,
                "{topic:<40} {partition:>9} {:>14} {:>14}",
                first[partition], next[partition]
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// What `rill produce --bootstrap` needs from its arguments.
pub struct ProduceOptions<'a> {
    pub topic: &'a str,
    pub partitions: Option<u32>,
    pub key_sep: Option<&'a [u8]>,
    pub durable: bool,
    pub print_offsets: bool,
}

/// Records of one partition waiting to be sent, and their input positions.
struct Pending {
    builder: BatchBuilder,
    lines: Vec<usize>,
}

/// `rill produce --bootstrap`: each stdin line a record, sent whenever input pauses or a batch
/// fills, so typed lines go out at once and piped input in batches.
pub fn produce(bootstrap: &str, options: &ProduceOptions<'_>) -> anyhow::Result<()> {
    let mut client = connect(bootstrap)?;
    let create = Some(options.partitions.map_or(-1, |p| p as i32));
    let count = NonZeroU32::new(partitions(&mut client, options.topic, create)?)
        .context("topic has no partitions")?;
    let mut pending: Vec<Option<Pending>> = (0..count.get()).map(|_| None).collect();
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    let (mut next_line, mut keyless) = (0usize, 0u32);
    loop {
        line.clear();
        if stdin.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let (key, value) = split(text, options.key_sep);
        let partition = match key {
            Some(key) => key_partition(key, count),
            None => {
                keyless = (keyless + 1) % count.get();
                keyless
            }
        };
        let slot = pending[partition as usize].get_or_insert_with(|| Pending {
            builder: BatchBuilder::new(Compression::None),
            lines: Vec::new(),
        });
        slot.builder.append(now_ms(), key, Some(value), &[])?;
        slot.lines.push(next_line);
        next_line += 1;
        let full = slot.builder.size_bytes() >= BATCH_BYTES;
        if full || stdin.fill_buf()?.is_empty() {
            send(&mut client, options, &mut pending)?;
        }
    }
    send(&mut client, options, &mut pending)?;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn split<'a>(line: &'a [u8], separator: Option<&[u8]>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(sep) = separator else {
        return (None, line);
    };
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
        None => (None, line),
    }
}

/// Sends every pending batch in one request and reports offsets in input order.
fn send(
    client: &mut Client,
    options: &ProduceOptions<'_>,
    pending: &mut [Option<Pending>],
) -> anyhow::Result<()> {
    let mut data = Vec::new();
    let mut lines = Vec::new();
    for (partition, slot) in pending.iter_mut().enumerate() {
        if let Some(batch) = slot.take() {
            data.push(
                PartitionProduceData::default()
                    .with_index(partition as i32)
                    .with_records(Some(Bytes::from(batch.builder.build()?))),
            );
            lines.push((partition as u32, batch.lines));
        }
    }
    if data.is_empty() {
        return Ok(());
    }
    let request = ProduceRequest::default()
        .with_acks(if options.durable { -1 } else { 1 })
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(options.topic))
                .with_partition_data(data),
        ]);
    let response = client.send(PRODUCE, &request)?;
    let mut bases = std::collections::HashMap::new();
    for partition in response
        .responses
        .iter()
        .flat_map(|t| &t.partition_responses)
    {
        kafka_error(
            partition.error_code,
            &format!("{}-{}", options.topic, partition.index),
        )?;
        bases.insert(partition.index as u32, partition.base_offset);
    }
    if options.print_offsets {
        let mut numbered: Vec<(usize, u32, i64)> = lines
            .iter()
            .flat_map(|(partition, lines)| {
                let base = bases.get(partition).copied().unwrap_or(-1);
                lines
                    .iter()
                    .enumerate()
                    .map(move |(i, line)| (*line, *partition, base + i as i64))
            })
            .collect();
        numbered.sort_unstable();
        let mut out = io::stdout().lock();
        for (_, partition, offset) in numbered {
            writeln!(out, "{partition} {offset}")?;
        }
        out.flush()?;
    }
    Ok(())
}

/// `rill consume --bootstrap`: every partition from the earliest or latest offset, to the end
/// seen at the start (or on with `follow`), as `rill consume` prints them.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    from_beginning: bool,
    follow: bool,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let mut client = connect(bootstrap)?;
    let count = partitions(&mut client, topic, None)?;
    let mut positions = offsets(
        &mut client,
        topic,
        count,
        if from_beginning { -2 } else { -1 },
    )?;
    let ends = offsets(&mut client, topic, count, -1)?;
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let limits = Limits::default();
    loop {
        if !follow && positions.iter().zip(&ends).all(|(p, e)| p >= e) {
            return Ok(());
        }
        if stop() {
            if follow {
                return Ok(());
            }
            bail!("interrupted before the end of the log");
        }
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(FETCH_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(
                        positions
                            .iter()
                            .enumerate()
                            .map(|(p, offset)| {
                                FetchPartition::default()
                                    .with_partition(p as i32)
                                    .with_fetch_offset(*offset)
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    ),
            ]);
        let response = client.send(FETCH, &request)?;
        for data in response.responses.iter().flat_map(|t| &t.partitions) {
            kafka_error(
                data.error_code,
                &format!("{topic}-{}", data.partition_index),
            )?;
            let Some(position) = usize::try_from(data.partition_index)
                .ok()
                .and_then(|i| positions.get_mut(i))
            else {
                continue;
            };
            let records = data.records.clone().unwrap_or_default();
            for item in Batches::new(&records, limits) {
                let Ok((_, batch)) = item else {
                    // A batch cut by the response's size limit: fetched again next time.
                    break;
                };
                for record in batch.records(&limits)?.iter() {
                    let record = record?;
                    if record.offset >= *position {
                        write_record(&mut out, Some(data.partition_index as u32), &record)?;
                    }
                }
                *position = (*position).max(batch.next_offset());
            }
        }
        out.flush()?;
    }
}
