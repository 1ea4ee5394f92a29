//! A minimal blocking Kafka client over `kafka-protocol`: one connection, one request at a
//! time. The `rill` tool uses it to reach a running server (`--bootstrap`), and the tests use
//! it to talk to the server as a client would.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// Largest response accepted: a fetch answers at most what it asked for, plus headers.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Why a request through [`Client`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("{addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode the request: {0}")]
    Encode(String),
    #[error("cannot decode the response: {0}")]
    Decode(String),
    #[error("response of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("response to request {got} arrived for request {expected}")]
    Correlation { expected: i32, got: i32 },
}

/// One connection to a Kafka broker.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    next_correlation: i32,
}

impl Client {
    /// Connects to the first address of `addr` that answers within `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let failed = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let mut last = std::io::Error::other("no address");
        for candidate in addr.to_socket_addrs().map_err(failed)? {
            match TcpStream::connect_timeout(&candidate, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(failed)?;
                    return Ok(Client {
                        stream,
                        next_correlation: 1,
                    });
                }
                Err(error) => last = error,
            }
        }
        Err(failed(last))
    }

    /// Sends `request` at `version` and waits for its response.
    pub fn send<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, ClientError> {
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("rill")));
        let header_version = ApiKey::try_from(R::KEY)
            .map_err(|()| ClientError::Encode(format!("unknown api key {}", R::KEY)))?
            .request_header_version(version);
        let mut body = BytesMut::new();
        header
            .encode(&mut body, header_version)
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| ClientError::Encode(format!("{e:#}")))?;
        self.write_frame(&body)?;
        let mut response = self.read_frame()?;
        let header = ResponseHeader::decode(&mut response, R::Response::header_version(version))
            .map_err(|e| ClientError::Decode(format!("{e:#}")))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Correlation {
                expected: correlation_id,
                got: header.correlation_id,
            });
        }
        R::Response::decode(&mut response, version)
            .map_err(|e| ClientError::Decode(format!("{e:#}")))
    }

    /// Writes `body` with its size prefix.
    pub fn write_frame(&mut self, body: &[u8]) -> Result<(), ClientError> {
        let size = i32::try_from(body.len()).map_err(|_| ClientError::TooLarge(body.len()))?;
        self.stream.write_all(&size.to_be_bytes())?;
        self.stream.write_all(body)?;
        Ok(())
    }

    /// Reads one size-prefixed frame.
    pub fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = usize::try_from(i32::from_be_bytes(size)).unwrap_or(usize::MAX);
        if size > MAX_RESPONSE_BYTES {
            return Err(ClientError::TooLarge(size));
        }
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// The socket, for tests that need to misbehave on purpose.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
