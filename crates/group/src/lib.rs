//! Consumer groups for rill: members share topics' partitions, reassigned by epochs.
//!
//! Groups follow the KIP-848 model. The coordinator bumps a *group epoch* on every change of
//! members or subscriptions and computes the target assignment for it once, with a pluggable
//! [`assignor`]. Each [`Member`] reconciles on its own, with no group-wide stop: it releases
//! what the new target takes away (committing first if auto-commit is on), then takes what it
//! gains. A partition's owner is one atomic (member, epoch) word changed only by
//! compare-and-swap, so two members never own a partition at once; commits are checked
//! against that word, so a member that lost a partition cannot overwrite its new owner's
//! offset ([`GroupError::FencedMemberEpoch`], [`GroupError::StaleMemberEpoch`]). A member
//! that stops polling for longer than the session timeout is removed and its partitions move.
//! Committed offsets live in the engine's `__consumer_offsets` topic and survive restarts.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use rill_engine::{Engine, EngineConfig};
//! use rill_group::{Group, GroupConfig, MemberConfig};
//!
//! let engine = Engine::open(EngineConfig::new("data"))?;
//! engine.create_topic("orders", 12)?;
//! let group = Group::new(&engine, "billing", GroupConfig::default())?;
//! let mut member = group.join(MemberConfig::new(["orders"]))?;
//! loop {
//!     let polled = member.poll(Duration::from_millis(100))?;
//!     polled.for_each_record(|topic, partition, record| {
//!         let _ = (topic, partition, record.value);
//!     })?;
//!     member.commit_sync(polled.offsets())?;
//! }
//! # }
//! ```
//!
//! Every public type is a root name of this crate (and of the facade `rill`); partitions are
//! the engine's [`TopicPartition`]. How groups fit the engine is described in the project's
//! design document, `docs/design.md` in the repository.
//!
//! Static membership (a member rejoining under a stable instance id without a rebalance) is
//! not implemented.

#![deny(missing_docs)]

pub mod assignor;
mod error;
mod group;
mod member;
mod offsets;
mod ownership;
mod sync;

pub use assignor::{
    Assignor, MemberId, RangeAssignor, RoundRobinAssignor, TopicPartition, UniformAssignor,
};
pub use error::{GroupError, Result};
pub use group::{Group, GroupConfig, MemberConfig, RebalanceListener};
pub use member::{Member, MemberPolled};
pub use offsets::{CommittedOffsets, OFFSETS_TOPIC};
pub use ownership::{Claim, Fence, OwnershipTable, Take};
pub use rill_engine::StartFrom;

// The handles' thread-safety is part of the API: a change that loses it must not compile.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Group>();
    send_sync::<GroupError>();
    send::<Member>();
    send::<MemberPolled>();
};
