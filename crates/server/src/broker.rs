//! Request dispatch: one decoded request in, a response (now or later) out.
//!
//! [`Broker::handle`] runs on a connection's reading thread: it decodes the request and does
//! what must happen in request order (a produce's batches are handed to the shards here).
//! What may wait (a produce's acknowledgement, a fetch's long poll) is returned as [`Pending`]
//! and finished by [`Broker::finish`] on the connection's writing thread, in request order,
//! while the reading thread goes on with the requests behind it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, decode_request_header_from_buffer,
};
use rill_engine::{Engine, RawAppender};

use crate::api;
use crate::config::ServerConfig;
use crate::error::ConnectionError;
use crate::frame::MIN_REQUEST_BYTES;
use crate::response::{Encoded, encode};
use crate::versions;

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

/// A response, or what it still waits for.
#[derive(Debug)]
pub enum Pending {
    /// Encoded, ready to write.
    Ready(Encoded),
    /// Nothing is sent back (a produce with `acks=0`).
    Nothing,
    /// A produce waiting for its batches to reach the ack level.
    Produce(api::produce::Waiting),
    /// A fetch to answer, waiting for data up to its deadline.
    Fetch(api::fetch::Waiting),
    /// A JoinGroup or SyncGroup waiting for its rebalance step.
    Group(api::group::Waiting),
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

    /// Decodes and dispatches one request frame (without its size prefix).
    ///
    /// An error means the connection must be closed: the frame did not decode, or asked for
    /// an API or version this server does not serve (Kafka closes such connections too, except
    /// for a too-new ApiVersions, which gets its answer).
    pub fn handle(&self, session: &mut Session, frame: Bytes) -> Result<Pending, ConnectionError> {
        if frame.len() < MIN_REQUEST_BYTES {
            return Err(ConnectionError::Decode {
                reason: format!("{} bytes cannot hold a request header", frame.len()),
            });
        }
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if api_key == ApiKey::ApiVersions as i16 && !versions::is_supported(api_key, version) {
            return api::api_versions::unsupported(correlation_id).map(Pending::Ready);
        }
        if !versions::is_supported(api_key, version) {
            return Err(ConnectionError::Unsupported { api_key, version });
        }
        let mut body = frame;
        let header = decode_request_header_from_buffer(&mut body).map_err(decode_error)?;
        let cx = Context {
            correlation_id,
            version,
        };
        self.dispatch(session, &header, cx, body)
    }

    fn dispatch(
        &self,
        session: &mut Session,
        header: &RequestHeader,
        cx: Context,
        mut body: Bytes,
    ) -> Result<Pending, ConnectionError> {
        let key = ApiKey::try_from(header.request_api_key).map_err(|()| {
            ConnectionError::Unsupported {
                api_key: header.request_api_key,
                version: cx.version,
            }
        })?;
        let ready = |encoded: Result<Encoded, ConnectionError>| encoded.map(Pending::Ready);
        match key {
            ApiKey::ApiVersions => ready(api::api_versions::handle(cx, decode(&mut body, cx)?)),
            ApiKey::Metadata => ready(api::metadata::handle(self, cx, decode(&mut body, cx)?)),
            ApiKey::Produce => Ok(api::produce::handle(
                self,
                session,
                cx,
                decode(&mut body, cx)?,
            )),
            ApiKey::Fetch => Ok(api::fetch::handle(self, cx, decode(&mut body, cx)?)),
            ApiKey::ListOffsets => {
                ready(api::list_offsets::handle(self, cx, decode(&mut body, cx)?))
            }
            ApiKey::CreateTopics => ready(api::topics::create(
                self,
                session,
                cx,
                decode(&mut body, cx)?,
            )),
            ApiKey::DeleteTopics => ready(api::topics::delete(
                self,
                session,
                cx,
                decode(&mut body, cx)?,
            )),
            ApiKey::DescribeConfigs => {
                ready(api::configs::describe(self, cx, decode(&mut body, cx)?))
            }
            ApiKey::DescribeCluster => {
                ready(api::cluster::describe(self, cx, decode(&mut body, cx)?))
            }
            ApiKey::FindCoordinator => {
                ready(api::group::find::handle(self, cx, decode(&mut body, cx)?))
            }
            ApiKey::JoinGroup => api::group::membership::join(
                self,
                cx,
                header.client_id.as_ref(),
                session.peer,
                decode(&mut body, cx)?,
            ),
            ApiKey::SyncGroup => api::group::membership::sync(self, cx, decode(&mut body, cx)?),
            ApiKey::Heartbeat => ready(api::group::membership::heartbeat(
                self,
                cx,
                decode(&mut body, cx)?,
            )),
            ApiKey::LeaveGroup => ready(api::group::membership::leave(
                self,
                cx,
                decode(&mut body, cx)?,
            )),
            ApiKey::OffsetCommit => ready(api::group::offsets::commit(
                self,
                cx,
                decode(&mut body, cx)?,
            )),
            ApiKey::OffsetFetch => {
                ready(api::group::offsets::fetch(self, cx, decode(&mut body, cx)?))
            }
            ApiKey::DescribeGroups => ready(api::group::describe::describe(
                self,
                cx,
                decode(&mut body, cx)?,
            )),
            ApiKey::InitProducerId => ready(api::init_producer_id::handle(
                self,
                cx,
                decode(&mut body, cx)?,
            )),
            ApiKey::ListGroups => {
                ready(api::group::describe::list(self, cx, decode(&mut body, cx)?))
            }
            ApiKey::ConsumerGroupHeartbeat => ready(api::group::consumer::heartbeat(
                self,
                cx,
                header.client_id.as_ref(),
                session.peer,
                decode(&mut body, cx)?,
            )),
            ApiKey::ConsumerGroupDescribe => ready(api::group::consumer::describe(
                self,
                cx,
                decode(&mut body, cx)?,
            )),
            _ => Err(ConnectionError::Unsupported {
                api_key: header.request_api_key,
                version: cx.version,
            }),
        }
    }

    /// Finishes a pending response: waits for what it needs (bounded), then encodes it.
    /// `None` when nothing is to be sent.
    pub fn finish(&self, pending: Pending) -> Result<Option<Encoded>, ConnectionError> {
        match pending {
            Pending::Ready(encoded) => Ok(Some(encoded)),
            Pending::Nothing => Ok(None),
            Pending::Produce(waiting) => waiting.finish().map(Some),
            Pending::Fetch(waiting) => waiting.finish(self).map(Some),
            Pending::Group(waiting) => waiting.finish().map(Some),
        }
    }
}

/// Decodes a request body; trailing bytes are allowed, as Kafka's parser allows them.
fn decode<T: Decodable>(body: &mut Bytes, cx: Context) -> Result<T, ConnectionError> {
    T::decode(body, cx.version).map_err(decode_error)
}

fn decode_error(error: anyhow::Error) -> ConnectionError {
    ConnectionError::Decode {
        reason: format!("{error:#}"),
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
