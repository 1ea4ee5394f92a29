//! Consumer groups for rill: members share a topic's partitions, reassigned by epochs.
//!
//! Groups follow the KIP-848 model: the coordinator bumps a group epoch on every membership
//! or subscription change and computes a target assignment for it. The epoch protocol and
//! fenced offset commits are still in progress; the partition [`assignor`]s, which compute
//! that target assignment, are available now.

pub mod assignor;
