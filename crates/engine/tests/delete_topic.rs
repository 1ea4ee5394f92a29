//! Deleting a topic: its records and id are gone, handles made before fail with a typed error
//! (never a hang or a panic), and a topic re-created with the name starts empty.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::path::Path;
use std::time::{Duration, Instant};

use rill_engine::{
    AckLevel, ConsumerConfig, Engine, EngineConfig, Error, ProducerRecord, StartFrom,
};

mod support;

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        io: support::io_from_env(),
        shards: 2,
        pin_shards: false,
        ..EngineConfig::new(dir)
    }
}

fn earliest() -> ConsumerConfig {
    ConsumerConfig {
        start: StartFrom::Earliest,
        ..ConsumerConfig::default()
    }
}

/// Every value in the topic, read from the start until a poll comes back empty.
fn values(engine: &Engine, topic: &str) -> Vec<Vec<u8>> {
    let mut consumer = engine.consumer_with(topic, earliest()).unwrap();
    consumer.assign_all().unwrap();
    let mut out = Vec::new();
    loop {
        let polled = consumer.poll(Duration::from_millis(200)).unwrap();
        if polled.is_empty() {
            return out;
        }
        polled
            .for_each_record(|_, record| out.push(record.value.unwrap().to_vec()))
            .unwrap();
    }
}

fn produce(engine: &Engine, topic: &str, count: u32) {
    let mut producer = engine.producer(topic).unwrap();
    for i in 0..count {
        producer
            .send(ProducerRecord::new(None, &i.to_be_bytes()))
            .unwrap()
            .wait()
            .unwrap();
    }
}

fn is_unknown_topic(error: &Error, topic: &str) -> bool {
    matches!(error, Error::UnknownTopic { topic: t } if t == topic)
}

#[test]
fn a_deleted_topic_re_created_is_empty_with_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic("doomed", 3).unwrap();
    engine.create_topic("bystander", 2).unwrap();
    produce(&engine, "doomed", 20);
    produce(&engine, "bystander", 5);
    let old_id = engine.topic_id("doomed").unwrap();
    assert_eq!(values(&engine, "doomed").len(), 20);

    engine.delete_topic("doomed").unwrap();
    assert!(is_unknown_topic(
        &engine.topic_id("doomed").unwrap_err(),
        "doomed"
    ));
    assert!(engine.topics().iter().all(|(name, _)| name != "doomed"));
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("doomed")),
        "files of the deleted topic are left"
    );

    engine.create_topic("doomed", 2).unwrap();
    assert_ne!(engine.topic_id("doomed").unwrap(), old_id);
    assert!(values(&engine, "doomed").is_empty());
    produce(&engine, "doomed", 3);
    assert_eq!(values(&engine, "doomed").len(), 3);
    // The other topic (sharing the shards, whose partition lists shifted) is untouched.
    assert_eq!(values(&engine, "bystander").len(), 5);
    produce(&engine, "bystander", 5);
    assert_eq!(values(&engine, "bystander").len(), 10);

    // And it all survives a restart: the new id, the new records, no trace of the old ones.
    let new_id = engine.topic_id("doomed").unwrap();
    engine.shutdown().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.topic_id("doomed").unwrap(), new_id);
    assert_eq!(values(&engine, "doomed").len(), 3);
}

#[test]
fn deleting_an_unknown_topic_is_unknown_topic() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    assert!(is_unknown_topic(
        &engine.delete_topic("never").unwrap_err(),
        "never"
    ));
    engine.create_topic("once", 1).unwrap();
    engine.delete_topic("once").unwrap();
    assert!(is_unknown_topic(
        &engine.delete_topic("once").unwrap_err(),
        "once"
    ));
}

#[test]
fn handles_made_before_the_delete_fail_typed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic("gone", 1).unwrap();
    produce(&engine, "gone", 2);
    let mut producer = engine.producer("gone").unwrap();
    let raw = engine.raw_partition("gone", 0).unwrap();
    let mut appender = engine.raw_appender(Duration::from_secs(5));
    let mut consumer = engine.consumer_with("gone", earliest()).unwrap();
    consumer.assign_all().unwrap();
    assert!(
        !consumer
            .poll(Duration::from_millis(500))
            .unwrap()
            .is_empty()
    );

    // A consumer parked at the end of the log wakes when the topic is deleted.
    let parked = std::thread::spawn(move || {
        let started = Instant::now();
        let outcome = consumer.poll(Duration::from_secs(20));
        (outcome, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    engine.delete_topic("gone").unwrap();
    let (outcome, waited) = parked.join().unwrap();
    assert!(is_unknown_topic(&outcome.unwrap_err(), "gone"));
    assert!(
        waited < Duration::from_secs(10),
        "the parked consumer slept {waited:?}"
    );

    let sent = producer.send(ProducerRecord::new(None, b"late"));
    assert!(is_unknown_topic(&sent.err().unwrap(), "gone"));

    // A raw batch built for the old partition is refused, not written anywhere.
    let mut builder = rill_engine::record::BatchBuilder::new(rill_engine::Compression::None);
    builder.append(0, None, Some(b"raw"), &[]).unwrap();
    let batch = builder.build().unwrap();
    let appended = appender.append(&raw, &batch, AckLevel::Written);
    assert!(is_unknown_topic(&appended.unwrap_err(), "gone"));

    // The same appender writes to a topic re-created with the name.
    engine.create_topic("gone", 1).unwrap();
    let fresh = engine.raw_partition("gone", 0).unwrap();
    let ticket = appender.append(&fresh, &batch, AckLevel::Written).unwrap();
    assert_eq!(
        ticket.wait_timeout(Duration::from_secs(10)).unwrap(),
        Some(0)
    );
    assert_eq!(values(&engine, "gone"), vec![b"raw".to_vec()]);
}
