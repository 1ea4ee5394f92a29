//! rill-engine: the storage engine of rill.
//!
//! - [`record`]: Kafka's RecordBatch v2 format, the bytes of every log.

pub mod record;
