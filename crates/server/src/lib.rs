//! rill-server: a single-node Kafka broker on the rill engine (`rill serve`).
//!
//! Kafka clients in any language produce to and consume from a rill data directory through
//! Kafka's own wire protocol. The codec is `kafka-protocol`, generated from Kafka's JSON
//! message schemas; this crate never hand-encodes a message.
//!
//! ```text
//! client ──TCP──▶ frame (size checked first) ──▶ decode ──▶ Broker::handle ──▶ Pending
//!                                                     (reading thread)          │ in order
//! client ◀── vectored write (batches spliced, not copied) ◀── Broker::finish ◀──┘
//!                                                     (writing thread)
//! ```
//!
//! # Runtime: a thread pair per connection, blocking I/O
//!
//! Each connection has a reading thread and a writing thread (see the `connection` module). The engine
//! already owns the disk I/O on its pinned shards; what the network side does per request is
//! decode, hand batches to a ring, wait on the engine's watermark notifier (a condition
//! variable) and write. Those waits are blocking by design, so an async runtime would have to
//! move every long poll and every ack wait to a blocking pool anyway: one thread per waiting
//! request instead of one per connection. Plain threads keep the path short (no task wakeups
//! between the notifier and the socket), idle threads sleep in the kernel (no CPU), and start
//! in microseconds. The cost is a thread pair (two small stacks) per connection: fine for the
//! tens of connections a single-node broker serves (each Kafka client opens one or two), not
//! for tens of thousands.
//!
//! Measured on the 2-core development machine (release build, empty data directory): the
//! "listening on" line 20 ms after `exec` with the portable I/O backend, 82 ms with io_uring
//! (the engine's probe and staging buffers dominate, not the listeners); 0 CPU ticks in 10 s
//! idle with a client connected (every thread sleeps in `accept`, `read`, a condition variable
//! or the shard's park); kcat (librdkafka 2.0.2) producing 200,000 1 KiB records over loopback
//! with `acks=1` in 3.2 s and reading them back in 2.0 s, process start-up included, with the
//! client, not the server, the busy side.
//!
//! # Copies per fetched byte: one
//!
//! A fetched batch is never copied in user space: the engine hands out views of its segment
//! maps or of its in-memory tail ([`rill_engine::LogSlice`]), the encoder splices them into
//! the response ([`response`]), and one `writev` sends the encoded fields and the batches
//! together. The kernel copies each byte once, from the mapped page (or tail buffer) into the
//! socket buffer. A produced byte is copied once from the request frame into the batch buffer
//! handed to the shard (the frame is shared and read-only; the log stamps the base offset
//! into the batch).
//!
//! # Limits
//!
//! Every frame's size is checked against [`ServerConfig::max_request_bytes`] before the frame
//! is read. A request that does not decode, or asks for an API or version not served, closes
//! that connection with a log line naming the peer; other connections are not affected.
//! `kafka-protocol` sizes arrays from the count the peer sends before decoding any element, so
//! a small frame can ask for a huge allocation; a process serving untrusted peers installs
//! [`ReserveLazily`] as its global allocator (`rill serve` does), which turns that into a
//! reservation of address space that is released as soon as the decoder fails.

pub mod alloc;
mod api;
pub mod broker;
pub mod client;
mod codes;
mod config;
mod connection;
pub mod coordinator;
mod error;
mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod holder;
pub mod response;
mod server;
mod topic_config;
pub mod versions;

pub use alloc::ReserveLazily;
pub use api::Pending;
pub use broker::{Broker, Session};
pub use config::{DEFAULT_MAX_REQUEST_BYTES, DEFAULT_PORT, ServerConfig};
pub use coordinator::GroupsConfig;
pub use error::{ConnectionError, Error};
pub use holder::Holder;
pub use server::Server;
