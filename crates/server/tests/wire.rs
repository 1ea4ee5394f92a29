//! The server through a TCP socket, spoken to with kafka-protocol's encoders: framing limits,
//! ApiVersions quirks, produce then fetch, long polls, bad batches, bad peers, topic admin.
//!
//! These are our own tests; compatibility with real clients is proved by the real-client
//! suite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rill_engine::EngineConfig;
use rill_engine::record::{BatchBuilder, Batches, Compression, Limits};
use rill_server::client::Client;
use rill_server::{Server, ServerConfig};

/// The broker process would install it; so does this test binary, for the forged-count test.
#[global_allocator]
static ALLOC: rill_server::ReserveLazily = rill_server::ReserveLazily;

struct Running {
    server: Option<Server>,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().unwrap();
        }
    }
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = EngineConfig::new(dir.path());
    engine.shards = 1;
    engine.pin_shards = false;
    let config = ServerConfig::new(vec!["127.0.0.1:0".parse().unwrap()]);
    let server = Server::open(engine, config, &[]).unwrap();
    let addr = server.local_addrs()[0].to_string();
    Running {
        server: Some(server),
        addr,
        _dir: dir,
    }
}

fn client(running: &Running) -> Client {
    Client::connect(&running.addr, Duration::from_secs(5)).unwrap()
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.into()))
}

/// Creates `topic` through Metadata's auto-creation.
fn create(client: &mut Client, topic: &str) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic))),
        ]))
        .with_allow_auto_topic_creation(true);
    let response = client.send(12, &request).unwrap();
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].partitions.len(), 1);
}

fn batch(values: &[&[u8]], timestamp: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(Compression::None);
    for value in values {
        builder.append(timestamp, None, Some(value), &[]).unwrap();
    }
    builder.build().unwrap()
}

fn produce(client: &mut Client, topic: &str, records: Vec<u8>, acks: i16) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(records))),
                ]),
        ]);
    let response = client.send(9, &request).unwrap();
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

/// (base offset, record count) of every batch in a fetched partition.
fn batches_of(response: &FetchResponse) -> Vec<(i64, i32)> {
    let records = response.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    Batches::new(&records, Limits::default())
        .map(|b| {
            let (_, batch) = b.unwrap();
            (batch.base_offset(), batch.record_count())
        })
        .collect()
}

#[test]
fn produce_then_fetch_round_trips_whole_batches() {
    let running = start();
    let mut client = client(&running);
    create(&mut client, "orders");
    assert_eq!(
        produce(&mut client, "orders", batch(&[b"a", b"b", b"c"], 1_000), -1),
        (0, 0)
    );
    assert_eq!(
        produce(&mut client, "orders", batch(&[b"d", b"e"], 2_000), 1),
        (0, 3)
    );

    // An offset inside the first batch gets that whole batch, then the next.
    let response = client.send(12, &fetch_request("orders", 1, 0)).unwrap();
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 5);
    assert_eq!(partition.log_start_offset, 0);
    assert_eq!(batches_of(&response), vec![(0, 3), (3, 2)]);

    // Older versions (no flexible encoding) read the same.
    let response = client.send(4, &fetch_request("orders", 3, 0)).unwrap();
    assert_eq!(batches_of(&response), vec![(3, 2)]);

    // Past the high watermark: OFFSET_OUT_OF_RANGE with the log's bounds.
    let response = client.send(12, &fetch_request("orders", 6, 0)).unwrap();
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, ResponseError::OffsetOutOfRange.code());
    assert_eq!(partition.high_watermark, 5);

    // ListOffsets: earliest, latest, and by timestamp.
    let list = |timestamp| {
        ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("orders"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(timestamp),
                    ]),
            ])
    };
    for (timestamp, offset) in [(-2, 0), (-1, 5), (1_500, 3), (2_000, 3), (9_999, -1)] {
        for version in [1, 6] {
            let response = client.send(version, &list(timestamp)).unwrap();
            let partition = &response.topics[0].partitions[0];
            assert_eq!(
                (partition.error_code, partition.offset),
                (0, offset),
                "ts {timestamp} v{version}"
            );
        }
    }
}

#[test]
fn fetch_long_polls_until_data_arrives_or_max_wait() {
    let running = start();
    let mut consumer = client(&running);
    create(&mut consumer, "poll");

    let started = Instant::now();
    let response = consumer.send(12, &fetch_request("poll", 0, 300)).unwrap();
    let waited = started.elapsed();
    assert!(batches_of(&response).is_empty());
    assert!(
        waited >= Duration::from_millis(280),
        "returned after {waited:?}"
    );

    let addr = running.addr.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let mut producer = Client::connect(&addr, Duration::from_secs(5)).unwrap();
        produce(&mut producer, "poll", batch(&[b"late"], 1), 1)
    });
    let started = Instant::now();
    let response = consumer
        .send(12, &fetch_request("poll", 0, 10_000))
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(producer.join().unwrap(), (0, 0));
    assert_eq!(batches_of(&response), vec![(0, 1)]);
    assert!(waited < Duration::from_secs(5), "woke after {waited:?}");
}

#[test]
fn bad_batches_get_kafka_errors_and_nothing_is_written() {
    let running = start();
    let mut client = client(&running);
    create(&mut client, "strict");
    let mut corrupt = batch(&[b"x"], 1);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce(&mut client, "strict", corrupt, 1).0,
        ResponseError::CorruptMessage.code()
    );
    let big = vec![7u8; Limits::DEFAULT_MAX_BATCH_BYTES + 1];
    assert_eq!(
        produce(&mut client, "strict", batch(&[&big], 1), 1).0,
        ResponseError::MessageTooLarge.code()
    );
    let mut two = batch(&[b"x"], 1);
    two.extend(batch(&[b"y"], 1));
    assert_eq!(
        produce(&mut client, "strict", two, 1).0,
        ResponseError::InvalidRecord.code()
    );
    assert_eq!(
        produce(&mut client, "missing", batch(&[b"x"], 1), 1).0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let response = client.send(12, &fetch_request("strict", 0, 0)).unwrap();
    assert_eq!(response.responses[0].partitions[0].high_watermark, 0);
    assert_eq!(
        produce(&mut client, "strict", batch(&[b"ok"], 1), 1),
        (0, 0)
    );
}

#[test]
fn api_versions_header_has_no_tagged_fields_and_too_new_gets_error_35() {
    let running = start();
    let mut client = client(&running);
    for version in [0, 3] {
        let response = client
            .send(version, &ApiVersionsRequest::default())
            .unwrap();
        assert_eq!(response.error_code, 0);
        let served: Vec<_> = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        let expected: Vec<_> = rill_server::versions::SUPPORTED
            .iter()
            .map(|(k, a, b)| (*k as i16, *a, *b))
            .collect();
        assert_eq!(served, expected);
    }
    // A v3 request whose response is read by hand: correlation id, then the body at once.
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(3)
        .with_correlation_id(77);
    let mut frame = BytesMut::new();
    header.encode(&mut frame, 2).unwrap();
    ApiVersionsRequest::default().encode(&mut frame, 3).unwrap();
    client.write_frame(&frame).unwrap();
    let mut raw = client.read_frame().unwrap();
    assert_eq!(&raw[..4], &77i32.to_be_bytes());
    assert_eq!(
        &raw[4..6],
        &0i16.to_be_bytes(),
        "error code right after the correlation id"
    );
    ResponseHeader::decode(&mut raw, 0).unwrap();
    ApiVersionsResponse::decode(&mut raw, 3).unwrap();

    // Version 9 does not exist yet: error 35 in a v0 response, with the ranges.
    let mut frame = Vec::new();
    frame.extend(18i16.to_be_bytes());
    frame.extend(9i16.to_be_bytes());
    frame.extend(5i32.to_be_bytes());
    frame.extend((-1i16).to_be_bytes());
    frame.push(0);
    client.write_frame(&frame).unwrap();
    let mut raw = client.read_frame().unwrap();
    let header = ResponseHeader::decode(&mut raw, 0).unwrap();
    assert_eq!(header.correlation_id, 5);
    let response = ApiVersionsResponse::decode(&mut raw, 0).unwrap();
    assert_eq!(
        response.error_code,
        ResponseError::UnsupportedVersion.code()
    );
    assert!(
        response
            .api_keys
            .iter()
            .any(|k| k.api_key == 18 && k.max_version == 3)
    );
}

/// True when the server closed `stream` (end of stream or reset) within a few seconds.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => {
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut
        }
    }
}

#[test]
fn bad_peers_lose_their_connection_and_others_are_served() {
    let running = start();
    let mut good = client(&running);
    create(&mut good, "shared");

    // A frame claiming 2 GiB: refused from its size alone.
    let mut huge = TcpStream::connect(&running.addr).unwrap();
    huge.write_all(&i32::MAX.to_be_bytes()).unwrap();
    huge.write_all(b"tiny").unwrap();
    assert!(closed_by_server(&mut huge));

    // Garbage.
    let mut garbage = TcpStream::connect(&running.addr).unwrap();
    garbage.write_all(&[0, 0, 0, 12]).unwrap();
    garbage.write_all(b"\x7f\x7fnot kafka!").unwrap();
    assert!(closed_by_server(&mut garbage));

    // A Metadata v0 claiming 2^31 topics in a 12-byte request.
    let mut forged = TcpStream::connect(&running.addr).unwrap();
    let mut frame = Vec::new();
    frame.extend(3i16.to_be_bytes());
    frame.extend(0i16.to_be_bytes());
    frame.extend(1i32.to_be_bytes());
    frame.extend((-1i16).to_be_bytes());
    frame.extend(i32::MAX.to_be_bytes());
    forged
        .write_all(&(frame.len() as i32).to_be_bytes())
        .unwrap();
    forged.write_all(&frame).unwrap();
    assert!(closed_by_server(&mut forged));

    // An API this server does not serve (FindCoordinator).
    let mut unsupported = TcpStream::connect(&running.addr).unwrap();
    let mut frame = Vec::new();
    frame.extend(10i16.to_be_bytes());
    frame.extend(0i16.to_be_bytes());
    frame.extend(1i32.to_be_bytes());
    frame.extend((-1i16).to_be_bytes());
    unsupported
        .write_all(&(frame.len() as i32).to_be_bytes())
        .unwrap();
    unsupported.write_all(&frame).unwrap();
    assert!(closed_by_server(&mut unsupported));

    // Half a request, then gone.
    let mut vanished = TcpStream::connect(&running.addr).unwrap();
    vanished.write_all(&[0, 0, 1, 0, 0, 3]).unwrap();
    drop(vanished);

    assert_eq!(
        produce(&mut good, "shared", batch(&[b"still here"], 1), 1),
        (0, 0)
    );
    let response = good.send(12, &fetch_request("shared", 0, 0)).unwrap();
    assert_eq!(batches_of(&response), vec![(0, 1)]);
}

#[test]
fn acks_zero_gets_no_response_but_is_written() {
    let running = start();
    let mut client = client(&running);
    create(&mut client, "fire");
    let request = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(1_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name("fire"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(batch(&[b"f"], 1)))),
                ]),
        ]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(8)
        .with_correlation_id(1000);
    let mut frame = BytesMut::new();
    header.encode(&mut frame, 1).unwrap();
    request.encode(&mut frame, 8).unwrap();
    client.write_frame(&frame).unwrap();
    // The next response on the connection is the fetch's: none was sent for acks=0.
    let response = client.send(12, &fetch_request("fire", 0, 2_000)).unwrap();
    assert_eq!(batches_of(&response), vec![(0, 1)]);
}

#[test]
fn shutdown_ends_long_polls_and_closes_the_engine_cleanly() {
    let mut running = start();
    let mut consumer = client(&running);
    create(&mut consumer, "idle");
    let waiting = std::thread::spawn(move || {
        let started = Instant::now();
        let _ = consumer.send(12, &fetch_request("idle", 0, 60_000));
        started.elapsed()
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    running.server.take().unwrap().shutdown().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(waiting.join().unwrap() < Duration::from_secs(5));
    // A clean stop leaves the directory unlocked and without the server's note.
    assert!(rill_server::holder::read(running._dir.path()).is_none());
    let engine = rill_engine::Engine::open(EngineConfig::new(running._dir.path())).unwrap();
    assert_eq!(engine.topics(), vec![("idle".to_owned(), 1)]);
    engine.shutdown().unwrap();
}

/// CreateTopics v7 of `topic` with `configs`: (error code, error message, topic id).
fn create_with(
    client: &mut Client,
    topic: &str,
    configs: &[(&str, &str)],
) -> (i16, Option<String>, uuid::Uuid) {
    use kafka_protocol::messages::CreateTopicsRequest;
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    let configs = configs
        .iter()
        .map(|(key, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string((*key).into()))
                .with_value(Some(StrBytes::from_string((*value).into())))
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(configs),
        ]);
    let response = client.send(7, &request).unwrap();
    let result = &response.topics[0];
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
        result.topic_id,
    )
}

/// DescribeConfigs v4 of a topic: (name, value, source) of every key.
fn topic_configs(client: &mut Client, topic: &str) -> Vec<(String, String, i8)> {
    use kafka_protocol::messages::DescribeConfigsRequest;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.into())),
    ]);
    let response = client.send(4, &request).unwrap();
    assert_eq!(response.results[0].error_code, 0);
    response.results[0]
        .configs
        .iter()
        .map(|c| {
            let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            (c.name.to_string(), value, c.config_source)
        })
        .collect()
}

/// DeleteTopics v6 by id (`None` name) or by name: the result's error code.
fn delete(client: &mut Client, topic: Option<&str>, id: uuid::Uuid) -> i16 {
    use kafka_protocol::messages::DeleteTopicsRequest;
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            DeleteTopicState::default()
                .with_name(topic.map(name))
                .with_topic_id(id),
        ]);
    client.send(6, &request).unwrap().responses[0].error_code
}

#[test]
fn topics_are_created_with_configs_described_and_deleted_by_id() {
    let running = start();
    let mut client = client(&running);

    // Unknown keys and values rill does not implement are refused, naming the key.
    for (key, value) in [("no.such.key", "1"), ("cleanup.policy", "compact")] {
        let (code, message, _) = create_with(&mut client, "refused", &[(key, value)]);
        assert_eq!(code, ResponseError::InvalidConfig.code(), "{key}");
        assert!(message.unwrap().contains(key), "{key}");
    }
    let metadata = client
        .send(12, &MetadataRequest::default().with_topics(None))
        .unwrap();
    assert!(metadata.topics.is_empty(), "a refused topic was created");

    let (code, _, id) = create_with(
        &mut client,
        "small",
        &[("max.message.bytes", "2048"), ("retention.ms", "60000")],
    );
    assert_eq!(code, 0);
    assert!(!id.is_nil());

    // Metadata carries the same id, and resolves it back to the name.
    let by_id = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(id),
    ]));
    let metadata = client.send(12, &by_id).unwrap();
    assert_eq!(metadata.topics[0].error_code, 0);
    assert_eq!(metadata.topics[0].topic_id, id);
    assert_eq!(metadata.topics[0].name, Some(name("small")));

    // The topic's own values are DYNAMIC_TOPIC_CONFIG (1), the rest DEFAULT_CONFIG (5).
    let configs = topic_configs(&mut client, "small");
    let find = |key: &str| configs.iter().find(|c| c.0 == key).unwrap().clone();
    assert_eq!(
        find("max.message.bytes"),
        ("max.message.bytes".into(), "2048".into(), 1)
    );
    assert_eq!(
        find("retention.ms"),
        ("retention.ms".into(), "60000".into(), 1)
    );
    assert_eq!(find("segment.bytes").2, 5);

    // Its limit is enforced, and nothing of the refused batch is written.
    let big = batch(&[&[7u8; 4096]], 0);
    let (code, _) = produce(&mut client, "small", big, -1);
    assert_eq!(code, ResponseError::MessageTooLarge.code());
    assert_eq!(
        produce(&mut client, "small", batch(&[b"ok"], 0), -1),
        (0, 0)
    );

    // Produce 13 and Fetch 13 name the topic by id; an id no topic has is UNKNOWN_TOPIC_ID.
    let unknown = (
        uuid::Uuid::from_u128(42),
        ResponseError::UnknownTopicId.code(),
    );
    for (topic_id, expected) in [(id, 0), unknown] {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_topic_id(topic_id)
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from(batch(&[b"by id"], 0)))),
                    ]),
            ]);
        let response = client.send(13, &request).unwrap();
        assert_eq!(response.responses[0].topic_id, topic_id);
        let produced = &response.responses[0].partition_responses[0];
        assert_eq!(produced.error_code, expected);
        let mut request = fetch_request("", 1, 0);
        request.topics[0].topic_id = topic_id;
        let response = client.send(13, &request).unwrap();
        assert_eq!(response.responses[0].topic_id, topic_id);
        assert_eq!(response.responses[0].partitions[0].error_code, expected);
        if expected == 0 {
            assert_eq!(produced.base_offset, 1);
            assert_eq!(batches_of(&response), vec![(1, 1)]);
        }
    }

    assert_eq!(delete(&mut client, None, id), 0);
    assert_eq!(
        delete(&mut client, None, id),
        ResponseError::UnknownTopicId.code()
    );
    assert_eq!(
        delete(&mut client, Some("small"), uuid::Uuid::nil()),
        ResponseError::UnknownTopicOrPartition.code()
    );

    // Re-created, it is empty and has a new id.
    let (code, _, again) = create_with(&mut client, "small", &[]);
    assert_eq!(code, 0);
    assert_ne!(again, id);
    assert_eq!(
        produce(&mut client, "small", batch(&[b"new"], 0), -1),
        (0, 0)
    );
}
