//! rill-engine: the storage engine of rill.
//!
//! - [`record`]: Kafka's RecordBatch v2 format, the bytes of every log.
//! - [`log`]: a partition's segmented log: append, read in place, recover.
//! - [`store`]: a data directory of topics and partitions, locked against a second opener.
//! - [`engine`]: shard threads serving a data directory; [`producer`] and [`consumer`] handles.
//! - [`ring`]: the bounded lock-free SPSC ring between producers and shards.
//! - [`partitioner`]: which partition a record goes to, as Kafka's clients choose.
//! - [`io`]: the I/O backends the log writes through.
//! - [`raw`]: whole client-encoded batches in and out, for the Kafka wire front end.
//! - [`inspect`]: read-only checks of a data directory (`rill verify`, `rill topics`).

pub mod consumer;
pub mod engine;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod io;
mod lock;
pub mod log;
pub mod partitioner;
pub mod producer;
pub mod raw;
pub mod record;
mod recycle;
pub mod ring;
pub mod store;
pub(crate) mod sync;
mod time;
pub mod topic;

pub use engine::{AckLevel, Engine, EngineConfig};
pub use error::{Error, Result};
pub use log::{LogConfig, LogSlice};
pub use raw::{RawAppender, RawPartition, RawTicket};
pub use record::RecordError;
