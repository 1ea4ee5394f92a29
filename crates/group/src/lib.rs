//! Consumer groups for rill: members share a topic's partitions, reassigned by epochs.
//!
//! The epoch protocol lands with the consumer-group work; this crate currently exposes nothing.
