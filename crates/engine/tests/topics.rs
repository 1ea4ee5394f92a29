//! The public surface's promises: topics keep their configuration and id across restarts,
//! configuration is refused at open with the field named, and `send(..)?.wait()` needs no
//! flush.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;

use rill_engine::{
    Engine, EngineConfig, Error, FsyncPolicy, LogConfig, ProducerConfig, ProducerRecord, Visibility,
};

mod support;

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        io: support::io_from_env(),
        shards: 1,
        pin_shards: false,
        ..EngineConfig::new(dir)
    }
}

/// Far from every default, so a reopen that fell back to defaults is seen.
fn custom() -> LogConfig {
    LogConfig {
        segment_bytes: 3 << 20,
        segment_age: None,
        retention_bytes: Some(7 << 20),
        retention_age: Some(Duration::from_millis(123_456)),
        index_interval_bytes: 1234,
        fsync: FsyncPolicy::Interval(Duration::from_micros(2_500)),
        visibility: Visibility::Durable,
        tail_bytes: 0,
        ..LogConfig::default()
    }
}

#[test]
fn a_topic_reopens_with_its_own_configuration_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic_with("custom", 2, custom()).unwrap();
    engine.create_topic("plain", 1).unwrap();
    let custom_id = engine.topic_id("custom").unwrap();
    let plain_id = engine.topic_id("plain").unwrap();
    assert_ne!(custom_id, plain_id);
    assert_ne!(custom_id.as_bytes(), &[0; 16]);
    engine.shutdown().unwrap();

    // Reopened under another default: the custom topic keeps its own, the plain one follows.
    let other_default = LogConfig {
        segment_bytes: 5 << 20,
        ..LogConfig::default()
    };
    let engine = Engine::open(EngineConfig {
        log: other_default.clone(),
        ..config(dir.path())
    })
    .unwrap();
    assert_eq!(engine.topic_config("custom").unwrap(), custom());
    assert_eq!(engine.topic_config("plain").unwrap(), other_default);
    assert_eq!(engine.topic_id("custom").unwrap(), custom_id);
    assert_eq!(engine.topic_id("plain").unwrap(), plain_id);

    // Changing it is an explicit call, and it lasts.
    let altered = LogConfig {
        retention_bytes: None,
        ..custom()
    };
    engine.alter_topic("custom", Some(altered.clone())).unwrap();
    engine.shutdown().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.topic_config("custom").unwrap(), altered);
    assert_eq!(engine.topic_id("custom").unwrap(), custom_id);
}

#[test]
fn a_data_directory_without_topic_metadata_opens_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic_with("old", 1, custom()).unwrap();
    let mut producer = engine.producer("old").unwrap();
    producer.send(ProducerRecord::new(None, b"kept")).unwrap();
    producer.flush().unwrap();
    drop(producer);
    engine.shutdown().unwrap();
    // As a data directory written before the metadata file existed.
    std::fs::remove_file(dir.path().join("old.topic")).unwrap();

    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.topic_config("old").unwrap(), LogConfig::default());
    let id = engine.topic_id("old").unwrap();
    engine.shutdown().unwrap();
    // The id given then is written down, so it stays.
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.topic_id("old").unwrap(), id);
}

#[test]
fn a_damaged_metadata_file_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic_with("t", 1, custom()).unwrap();
    engine.shutdown().unwrap();
    let path = dir.path().join("t.topic");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("index_interval_bytes 1234", "index_interval_bytes 1235"),
    )
    .unwrap();
    match Engine::open(config(dir.path())) {
        Err(Error::CorruptFile { path: at, reason }) => {
            assert_eq!(at, path);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected CorruptFile, got {other:?}"),
    }
}

#[test]
fn configuration_is_refused_at_open_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let never_visible = LogConfig {
        visibility: Visibility::Durable,
        fsync: FsyncPolicy::Never,
        ..LogConfig::default()
    };
    let field_of = |result: Result<Engine, Error>| match result {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let open = |config: EngineConfig| Engine::open(config);
    assert_eq!(
        field_of(open(EngineConfig {
            log: never_visible.clone(),
            ..config(dir.path())
        })),
        "LogConfig::visibility"
    );
    assert_eq!(
        field_of(open(EngineConfig {
            retention_check_interval: Duration::ZERO,
            ..config(dir.path())
        })),
        "EngineConfig::retention_check_interval"
    );
    assert_eq!(
        field_of(open(EngineConfig {
            log: LogConfig {
                segment_bytes: 1024,
                ..LogConfig::default()
            },
            ..config(dir.path())
        })),
        "LogConfig::segment_bytes"
    );

    let engine = Engine::open(config(dir.path())).unwrap();
    match engine.create_topic_with("t", 1, never_visible) {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "LogConfig::visibility"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    engine.create_topic("t", 1).unwrap();
    match engine.producer_with(
        "t",
        ProducerConfig {
            ring_batches: 0,
            ..ProducerConfig::default()
        },
    ) {
        Err(Error::InvalidConfig { field, .. }) => {
            assert_eq!(field, "ProducerConfig::ring_batches")
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn send_then_wait_needs_no_flush() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    engine.create_topic("t", 1).unwrap();
    // A batch that would neither fill nor linger out during the test: only `wait` hands it over.
    let mut producer = engine
        .producer_with(
            "t",
            ProducerConfig {
                batch_bytes: 1 << 20,
                linger: Duration::from_secs(3600),
                ..ProducerConfig::default()
            },
        )
        .unwrap();
    let first = producer
        .send(ProducerRecord::new(None, b"a"))
        .unwrap()
        .wait()
        .unwrap();
    let second = producer
        .send(ProducerRecord::new(None, b"b"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!((first, second), (0, 1));

    // A detached ticket still says plainly that its record was never handed over.
    let ticket = producer
        .send(ProducerRecord::new(None, b"c"))
        .unwrap()
        .into_ticket();
    assert!(matches!(ticket.wait(), Err(Error::NotSubmitted { .. })));
    producer.flush().unwrap();
    assert_eq!(ticket.wait().unwrap(), 2);
}

/// The handles an embedder shares between threads must stay shareable.
#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Engine>();
    send_sync::<rill_engine::Ticket>();
    send_sync::<Error>();
    send::<rill_engine::Producer>();
    send::<rill_engine::Consumer>();
    send::<rill_engine::Polled>();
}
