//! rill-engine: an embeddable, Kafka-style log engine.
//!
//! Topics split into partitions; each partition is an append-only log of Kafka RecordBatch v2
//! batches on disk, served by pinned shard threads. A [`Producer`] appends records from any
//! thread and gets a [`Ticket`] per record that resolves at the [`AckLevel`] it asked for; a
//! [`Consumer`] reads batches in place up to the partition's visible watermark.
//!
//! ```no_run
//! # fn main() -> rill_engine::Result<()> {
//! use std::time::Duration;
//! use rill_engine::{Engine, EngineConfig, ProducerRecord};
//!
//! let engine = Engine::open(EngineConfig::new("data"))?;
//! engine.create_topic("orders", 4)?;
//! let mut producer = engine.producer("orders")?;
//! let offset = producer.send(ProducerRecord::new(Some(b"k"), b"v"))?.wait()?;
//! let mut consumer = engine.consumer("orders")?;
//! consumer.assign_all()?;
//! let polled = consumer.poll(Duration::from_millis(100))?;
//! polled.for_each_record(|partition, record| {
//!     let _ = (partition, record.offset, record.value, offset);
//! })?;
//! # Ok(()) }
//! ```
//!
//! Everything an embedder needs is a root name of this crate. How the engine works (threads,
//! the data path, watermarks, the on-disk format, the failure model) is described in the
//! project's design document, `docs/design.md` in the repository.
//!
//! # Unstable internals
//!
//! With the `unstable` feature the building blocks (`record`, `log`, `store`, `ring`, `io`,
//! `inspect`) are public too, for rill's own tools (the CLI, the load harness, the benches and
//! the fuzz targets). They carry no stability promise: do not build on them.
#![cfg_attr(not(feature = "unstable"), deny(missing_docs))]

mod consumer;
mod engine;
mod error;
mod partitioner;
mod producer;
mod producer_ids;
mod topic;
mod topic_meta;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

// The internals: public only to rill's own tools, through the `unstable` feature. Without it
// some of their items are used only by those tools, hence the `dead_code` allowance.
macro_rules! internal_modules {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "unstable")]
        pub mod $name;
        #[cfg(not(feature = "unstable"))]
        #[allow(dead_code, unused_imports)]
        mod $name;
    )*};
}
internal_modules!(inspect, io, log, record, ring, store);

mod lock;
mod raw;
mod recycle;
pub(crate) mod sync;
mod time;

pub use self::log::{FsyncPolicy, LogConfig, LogSlice, Visibility};
pub use self::record::{Compression, Header, Headers, Limits, Record, RecordError};
pub use consumer::{Consumer, ConsumerConfig, Polled, PolledSlice, Seek, StartFrom};
pub use engine::Ticket;
pub use engine::{AckLevel, DirectIo, Engine, EngineConfig, IoMode, WriteMode};
pub use error::{Error, Result};
pub use partitioner::{Partitioner, key_partition, murmur2};
pub use producer::{Producer, ProducerConfig, ProducerRecord, Sent, TrySendError};
pub use producer_ids::ProducerIdentity;
pub use raw::{RawAppender, RawPartition, RawTicket};
pub use topic::{InvalidTopicName, MAX_TOPIC_NAME_LEN, TopicId, TopicName, TopicPartition};

// The handles' thread-safety is part of the API: a change that loses it must not compile.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Engine>();
    send_sync::<Ticket>();
    send_sync::<Error>();
    send::<Producer>();
    send::<Consumer>();
    send::<Polled>();
};
