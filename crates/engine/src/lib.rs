//! rill-engine: the storage engine of rill.
//!
//! - [`record`]: Kafka's RecordBatch v2 format, the bytes of every log.
//! - [`log`]: a partition's segmented log: append, read in place, recover.
//! - [`store`]: a data directory of topics and partitions, locked against a second opener.
//! - [`io`]: the I/O backends the log writes through.
//! - [`inspect`]: read-only checks of a data directory (`rill verify`, `rill topics`).

pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod inspect;
pub mod io;
mod lock;
pub mod log;
pub mod record;
pub mod store;
pub mod topic;

pub use error::{Error, Result};
