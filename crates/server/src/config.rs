//! How a server listens and what it allows.

use std::net::SocketAddr;
use std::time::Duration;

/// Kafka's `socket.request.max.bytes` default: the largest request frame accepted.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// The port Kafka brokers listen on by default.
pub const DEFAULT_PORT: u16 = 9092;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Addresses to listen on (at least one).
    pub listen: Vec<SocketAddr>,
    /// Host and port clients are told to connect to (Metadata, DescribeCluster); the first
    /// listener's when `None`.
    pub advertise: Option<(String, u16)>,
    /// This broker's id in Metadata responses.
    pub node_id: i32,
    /// Largest request frame, checked before the frame is read.
    pub max_request_bytes: usize,
    /// Create a topic a client asks Metadata about, as Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics asking for the default.
    pub default_partitions: u32,
    /// Most partitions one topic may be created with: each costs directories, files and maps.
    pub max_partitions: u32,
    /// Requests of one connection read ahead of their responses (clients pipeline).
    pub max_in_flight: usize,
    /// Longest a produce waits for its acknowledgement, whatever the request's timeout says.
    pub max_produce_wait: Duration,
    /// Longest a fetch waits for data, whatever the request's `max_wait_ms` says.
    pub max_fetch_wait: Duration,
    /// Consumer groups: first-join delay and session timeout bounds.
    pub groups: crate::coordinator::GroupsConfig,
}

impl ServerConfig {
    /// Kafka's defaults, listening on `listen`.
    pub fn new(listen: Vec<SocketAddr>) -> Self {
        Self {
            listen,
            advertise: None,
            node_id: 1,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            auto_create_topics: true,
            default_partitions: 1,
            max_partitions: 10_000,
            max_in_flight: 64,
            max_produce_wait: Duration::from_secs(300),
            max_fetch_wait: Duration::from_secs(300),
            groups: crate::coordinator::GroupsConfig::default(),
        }
    }
}
