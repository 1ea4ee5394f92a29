//! Typed errors of consumer groups: each names the group, and the member, topic and partition
//! when there is one.

use crate::assignor::MemberId;

/// What a group operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The member was removed from the group (session timeout, or it left): its epoch is no
    /// longer valid, its partitions may already belong to others, and its commits are refused.
    /// Join again to get a new member.
    #[error("group {group:?}: {member} was removed from the group; its epoch is fenced")]
    FencedMemberEpoch {
        /// The group.
        group: String,
        /// The member.
        member: MemberId,
    },

    /// A commit or poll carried a member epoch older than the member's current one: the
    /// partitions it read may have moved since.
    #[error(
        "group {group:?}: {member} used member epoch {epoch}, but its current epoch is {current}"
    )]
    StaleMemberEpoch {
        /// The group.
        group: String,
        /// The member.
        member: MemberId,
        /// The epoch the request carried.
        epoch: u32,
        /// The member's current epoch.
        current: u32,
    },

    /// A commit for a partition the member does not own (at its current epoch).
    #[error("group {group:?}: {member} does not own {topic}-{partition}")]
    NotOwner {
        /// The group.
        group: String,
        /// The member.
        member: MemberId,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },

    /// A subscription or commit names a topic the engine does not have.
    #[error("group {group:?}: topic {topic:?} does not exist")]
    UnknownTopic {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
    },

    /// A commit names a partition the topic does not have.
    #[error("group {group:?}: topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },

    /// A commit of a negative offset.
    #[error("group {group:?}: invalid offset {offset} for {topic}-{partition}")]
    InvalidOffset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset offered.
        offset: i64,
    },

    /// The group's configuration or name cannot be used.
    #[error("group {group:?}: invalid configuration: {reason}")]
    InvalidConfig {
        /// The group.
        group: String,
        /// Why it was refused.
        reason: String,
    },

    /// More members joined over the group's life than member ids exist (2^32 - 1).
    #[error("group {group:?}: member ids exhausted")]
    MemberIdsExhausted {
        /// The group.
        group: String,
    },

    /// The engine failed underneath: reading or writing the offsets log, or reading a
    /// partition.
    #[error("group {group:?}: {context}: {source}")]
    Engine {
        /// The group.
        group: String,
        /// What the group was doing.
        context: String,
        /// The engine's error.
        #[source]
        source: rill_engine::Error,
    },
}

impl GroupError {
    pub(crate) fn engine(
        group: &str,
        context: impl Into<String>,
        source: rill_engine::Error,
    ) -> Self {
        Self::Engine {
            group: group.to_owned(),
            context: context.into(),
            source,
        }
    }
}

/// Results of group operations.
pub type Result<T, E = GroupError> = std::result::Result<T, E>;
