//! The broker's shared state: the engine, how to describe this broker, the group coordinator,
//! and what each connection keeps ([`Session`]). Requests are dispatched to the APIs by
//! `api::dispatch`, which depends on this module and not the other way round.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::protocol::{Encodable, HeaderVersion};
use rill_engine::{Engine, RawAppender};

use crate::config::ServerConfig;
use crate::error::ConnectionError;
use crate::response::{Encoded, encode};

/// How long an appender waits for room in a shard's ring before the produce fails.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What every connection shares: the engine and how to describe this broker.
#[derive(Debug)]
pub struct Broker {
    pub(crate) engine: Engine,
    pub(crate) config: ServerConfig,
    pub(crate) cluster_id: String,
    /// Host and port clients are told to use.
    pub(crate) advertised: (String, i32),
    /// The group coordinator (classic protocol) and the groups' committed offsets.
    pub(crate) groups: crate::coordinator::Coordinator,
    /// Set when the server stops: long polls end at once instead of holding the stop up.
    stopping: std::sync::atomic::AtomicBool,
}

/// One connection's state: its peer and its own appender (its own rings to the shards).
#[derive(Debug)]
pub struct Session {
    pub(crate) peer: SocketAddr,
    pub(crate) appender: RawAppender,
}

/// The parts of a request header every handler needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Context {
    pub correlation_id: i32,
    pub version: i16,
}

impl Broker {
    /// A broker serving `engine`.
    pub fn new(engine: Engine, config: ServerConfig, cluster_id: String) -> Self {
        let advertised = match &config.advertise {
            Some((host, port)) => (host.clone(), i32::from(*port)),
            None => {
                let first = config.listen.first().copied();
                let host = first.map_or_else(|| "localhost".into(), |a| a.ip().to_string());
                (host, first.map_or(0, |a| i32::from(a.port())))
            }
        };
        let groups = crate::coordinator::Coordinator::new(config.groups);
        Self {
            engine,
            groups,
            config,
            cluster_id,
            advertised,
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Ends waiting fetches (within the engine's 100 ms nap) and keeps new ones from waiting.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.groups.stop();
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The engine this broker serves.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// State for a new connection from `peer`.
    pub fn session(&self, peer: SocketAddr) -> Session {
        Session {
            peer,
            appender: self.engine.raw_appender(SEND_TIMEOUT),
        }
    }
}

/// Encodes a response body for `cx` with nothing spliced.
pub(crate) fn respond<T: Encodable + HeaderVersion>(
    cx: Context,
    body: &T,
) -> Result<Encoded, ConnectionError> {
    encode(cx.correlation_id, cx.version, body, &[])
}

/// Shared handle type for connection threads.
pub type SharedBroker = Arc<Broker>;
