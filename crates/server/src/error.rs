//! The server's errors: what failed, and for which listener, peer or request.

use std::io;
use std::net::SocketAddr;

/// Why the server could not start, or why it dropped one connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },

    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("{path}: {source}")]
    StateFile {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Engine(#[from] rill_engine::Error),

    #[error("invalid configuration: {reason}")]
    Config { reason: String },
}

/// Why a connection was closed; logged with the peer's address.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("request frame of {claimed} bytes is outside [{min}, {max}]")]
    FrameSize {
        claimed: i64,
        min: usize,
        max: usize,
    },

    #[error("request could not be decoded: {reason}")]
    Decode { reason: String },

    #[error("api key {api_key} version {version} is not served")]
    Unsupported { api_key: i16, version: i16 },

    #[error("response could not be encoded: {reason}")]
    Encode { reason: String },

    #[error(transparent)]
    Io(#[from] io::Error),
}
