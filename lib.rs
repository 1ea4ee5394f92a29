//! rill: an embeddable, lock-free, Kafka-style log engine.
//!
//! This facade re-exports the engine (record format, partition logs) and the consumer-group
//! crate so that an application depends on one package.

pub use rill_engine as engine;
pub use rill_group as group;
