//! Request dispatch: one decoded request in, a response (now or later) out.
//!
//! [`Broker::handle`] runs on a connection's reading thread: it decodes the request and does
//! what must happen in request order (a produce's batches are handed to the shards here).
//! What may wait (a produce's acknowledgement, a fetch's long poll) is returned as [`Pending`]
//! and finished by [`Broker::finish`] on the connection's writing thread, in request order,
//! while the reading thread goes on with the requests behind it.
//!
//! It lives beside the handlers, not in `broker`, so that the broker's state knows nothing of
//! the APIs: the handlers depend on the broker, never the other way round.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, decode_request_header_from_buffer};

use crate::api;
use crate::broker::{Broker, Context, Session};
use crate::error::ConnectionError;
use crate::frame::MIN_REQUEST_BYTES;
use crate::response::Encoded;
use crate::versions;

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

impl Broker {
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
