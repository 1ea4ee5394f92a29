//! The request path as the fuzz target drives it (`fuzz/fuzz_targets/wire_request.rs`):
//! arbitrary bytes as what a peer sends on one connection. Not part of the server's API.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use rill_engine::{Engine, EngineConfig};

use crate::broker::Broker;
use crate::config::ServerConfig;
use crate::frame::read_frame;

/// Frames are capped low so one input cannot ask for more than this (the real default is
/// 100 MiB, bounded the same way).
const MAX_FRAME: usize = 1 << 20;

/// One broker for every input: opening an engine per input would fuzz the file system.
fn broker() -> Option<&'static Broker> {
    static BROKER: OnceLock<Option<(tempfile::TempDir, Broker)>> = OnceLock::new();
    BROKER
        .get_or_init(|| {
            let dir = tempfile::tempdir().ok()?;
            let mut engine = EngineConfig::new(dir.path());
            engine.shards = 1;
            engine.pin_shards = false;
            let engine = Engine::open(engine).ok()?;
            engine.create_topic("fuzz", 2).ok()?;
            let mut config = ServerConfig::new(vec![SocketAddr::from(([127, 0, 0, 1], 9092))]);
            config.max_request_bytes = MAX_FRAME;
            config.max_partitions = 4;
            // Inputs must not sleep: long polls end at once, acks wait briefly.
            config.max_fetch_wait = Duration::ZERO;
            config.max_produce_wait = Duration::from_millis(200);
            config.auto_create_topics = false;
            Some((dir, Broker::new(engine, config, "fuzz".into())))
        })
        .as_ref()
        .map(|(_, broker)| broker)
}

/// Reads `data` as a connection's byte stream: frames, each decoded, dispatched and answered,
/// until the stream ends or the connection would be closed. Must never panic.
pub fn wire_request(data: &[u8]) {
    let Some(broker) = broker() else {
        return;
    };
    let mut session = broker.session(SocketAddr::from(([127, 0, 0, 1], 1)));
    let mut stream = Cursor::new(data);
    while let Ok(Some(frame)) = read_frame(&mut stream, MAX_FRAME) {
        let Ok(pending) = broker.handle(&mut session, Bytes::from(frame)) else {
            return;
        };
        match broker.finish(pending) {
            Ok(Some(response)) => {
                let mut sink = Vec::new();
                if response.write_to(&mut sink).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}
