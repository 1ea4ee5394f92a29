#![doc = include_str!("README.md")]
#![deny(missing_docs)]

/// The storage engine crate, `rill-engine`: the same names as this crate's root.
pub use rill_engine as engine;
/// The consumer-group crate, `rill-group`: the same names as this crate's root.
pub use rill_group as group;

pub use rill_engine::{
    AckLevel, Compression, Consumer, ConsumerConfig, DirectIo, Engine, EngineConfig, Error,
    FsyncPolicy, Header, Headers, IoMode, Limits, LogConfig, Partitioner, Polled, PolledSlice,
    Producer, ProducerConfig, ProducerRecord, Record, RecordError, Result, Seek, Sent, StartFrom,
    Ticket, TopicId, TopicName, TopicPartition, TrySendError, Visibility, WriteMode,
};
pub use rill_group::{
    Assignor, Group, GroupConfig, GroupError, Member, MemberConfig, MemberId, MemberPolled,
    RangeAssignor, RebalanceListener, RoundRobinAssignor, UniformAssignor,
};
