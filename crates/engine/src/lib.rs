//! rill-engine

pub mod partitioner;
