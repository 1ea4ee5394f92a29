//! The group coordinator: membership, the group epoch and the target assignment.
//!
//! Everything that changes membership (join, leave, session expiry) is control path: it takes
//! one mutex, bumps the group epoch, runs the assignor once and publishes the new target,
//! then stores the epoch in an atomic. Members compare that atomic with the epoch they last
//! reconciled against on every poll, which is the only cost a stable group pays; the mutex is
//! taken only when it differs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rill_engine::Engine;
use rill_engine::{ConsumerConfig, StartFrom};

use crate::assignor::{
    Assignment, AssignmentSpec, Assignor, MemberId, Topic, TopicPartition, UniformAssignor,
};
use crate::error::{GroupError, Result};
use crate::offsets::OffsetStore;
use crate::ownership::{Fence, OwnershipTable};

/// How a group behaves; shared by all its members.
#[derive(Clone)]
pub struct GroupConfig {
    /// Computes the target assignment at every group epoch.
    pub assignor: Arc<dyn Assignor>,
    /// A member that neither polls nor heartbeats for this long is removed and its partitions
    /// move. Members must poll (or heartbeat) more often than this.
    pub session_timeout: Duration,
    /// Where a member starts in a partition the group has no committed offset for.
    pub start: StartFrom,
    /// Commit a partition's position before giving it up in a rebalance or on leaving.
    pub auto_commit: bool,
    /// How often a member waiting in `poll` checks for a new group epoch: the longest a
    /// rebalance waits on a member blocked in a poll.
    pub rebalance_check_interval: Duration,
    /// Partitions of `__consumer_offsets` if the group has to create it.
    pub offsets_topic_partitions: u32,
    /// Per-member consumer settings (its `start` is replaced by [`GroupConfig::start`]).
    pub consumer: ConsumerConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            assignor: Arc::new(UniformAssignor),
            session_timeout: Duration::from_secs(45),
            start: StartFrom::Latest,
            auto_commit: true,
            rebalance_check_interval: Duration::from_millis(5),
            offsets_topic_partitions: 8,
            consumer: ConsumerConfig::default(),
        }
    }
}

impl std::fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConfig")
            .field("assignor", &self.assignor.name())
            .field("session_timeout", &self.session_timeout)
            .field("start", &self.start)
            .field("auto_commit", &self.auto_commit)
            .field("rebalance_check_interval", &self.rebalance_check_interval)
            .field("offsets_topic_partitions", &self.offsets_topic_partitions)
            .finish_non_exhaustive()
    }
}

/// Told when a member's partitions change. Called on the member's own thread, from inside
/// `poll`, `heartbeat`, `leave` or drop.
pub trait RebalanceListener: Send {
    /// The member is about to give these up (after auto-commit, before releasing them).
    fn on_partitions_revoked(&mut self, member: MemberId, partitions: &[TopicPartition]) {
        let _ = (member, partitions);
    }

    /// The member now owns these, positioned at their committed offsets.
    fn on_partitions_assigned(&mut self, member: MemberId, partitions: &[TopicPartition]) {
        let _ = (member, partitions);
    }

    /// The member was fenced: these were taken from it without a chance to commit.
    fn on_partitions_lost(&mut self, member: MemberId, partitions: &[TopicPartition]) {
        let _ = (member, partitions);
    }
}

/// What a member asks for when it joins.
#[derive(Default)]
pub struct MemberConfig {
    /// Topics to consume; they must exist in the engine.
    pub topics: Vec<String>,
    /// Called as partitions are revoked, assigned or lost; none by default.
    pub listener: Option<Box<dyn RebalanceListener>>,
}

impl MemberConfig {
    /// Subscribes to `topics`, with no listener.
    pub fn new<S: Into<String>>(topics: impl IntoIterator<Item = S>) -> Self {
        Self {
            topics: topics.into_iter().map(Into::into).collect(),
            listener: None,
        }
    }

    /// Adds a listener for rebalance events.
    pub fn with_listener(mut self, listener: impl RebalanceListener + 'static) -> Self {
        self.listener = Some(Box::new(listener));
        self
    }
}

impl std::fmt::Debug for MemberConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberConfig")
            .field("topics", &self.topics)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

/// The target assignment of one group epoch. Immutable once published.
#[derive(Debug)]
pub(crate) struct Target {
    pub epoch: u32,
    pub assignment: Assignment,
}

/// What the coordinator knows about a member besides its subscription; the member's handle
/// shares it.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// Microseconds since the group opened, at the member's last poll or heartbeat.
    last_seen: AtomicU64,
    pub fence: Fence,
}

impl Liveness {
    pub fn touch(&self, now: u64) {
        self.last_seen.store(now, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct MemberEntry {
    subscription: BTreeSet<Topic>,
    liveness: Arc<Liveness>,
}

#[derive(Debug)]
pub(crate) struct Control {
    members: BTreeMap<MemberId, MemberEntry>,
    topics: BTreeMap<Topic, u32>,
    tables: HashMap<Topic, Arc<OwnershipTable>>,
    pub target: Arc<Target>,
    next_member: u32,
}

impl Control {
    pub fn contains(&self, member: MemberId) -> bool {
        self.members.contains_key(&member)
    }
}

/// The state members and the [`Group`] handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub group_id: String,
    pub config: GroupConfig,
    /// The published group epoch: the one atomic a stable member reads per poll.
    epoch: AtomicU64,
    control: Mutex<Control>,
    /// Also the lock that orders commits against each other (see `Member::commit_inner`).
    pub offsets: Mutex<OffsetStore>,
    started: Instant,
    /// When the next session-expiry scan is due, in the `now_micros` clock.
    next_expiry_check: AtomicU64,
}

impl Shared {
    pub fn now_micros(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn offsets(&self) -> MutexGuard<'_, OffsetStore> {
        self.offsets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bumps the group epoch and publishes a new target computed from the current members.
    fn rebalance(&self, control: &mut Control) {
        let epoch = control.target.epoch.wrapping_add(1).max(1);
        let spec = AssignmentSpec {
            members: control
                .members
                .iter()
                .map(|(&id, m)| (id, m.subscription.clone()))
                .collect(),
            topics: control.topics.clone(),
            previous: control.target.assignment.clone(),
        };
        let assignment = self.config.assignor.assign(&spec);
        control.target = Arc::new(Target { epoch, assignment });
        self.epoch.store(u64::from(epoch), Ordering::Release);
    }

    /// Removes a member that leaves on its own; its partitions were released already.
    pub fn remove(&self, member: MemberId) {
        let mut control = self.control();
        if control.members.remove(&member).is_some() {
            self.rebalance(&mut control);
        }
    }

    /// Removes members whose session expired, if a scan is due. Cheap when it is not: one
    /// relaxed load and a comparison.
    pub fn maybe_expire(&self, now: u64) {
        let due = self.next_expiry_check.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let interval = (self.session_timeout_micros() / 4).max(1_000);
        if self
            .next_expiry_check
            .compare_exchange(due, now + interval, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.expire(now);
        }
    }

    fn session_timeout_micros(&self) -> u64 {
        u64::try_from(self.config.session_timeout.as_micros()).unwrap_or(u64::MAX)
    }

    /// Fences and removes every member not seen within the session timeout, then sweeps their
    /// partitions free so the new target's owners can take them.
    pub fn expire(&self, now: u64) -> Vec<MemberId> {
        let timeout = self.session_timeout_micros();
        let mut control = self.control();
        let expired: Vec<MemberId> = control
            .members
            .iter()
            .filter(|(_, m)| {
                now.saturating_sub(m.liveness.last_seen.load(Ordering::Relaxed)) > timeout
            })
            .map(|(&id, _)| id)
            .collect();
        if expired.is_empty() {
            return expired;
        }
        for id in &expired {
            if let Some(entry) = control.members.remove(id) {
                // Fence before sweeping: a take racing with the sweep re-checks the fence.
                entry.liveness.fence.fence();
                for table in control.tables.values() {
                    table.release_member(raw_id(*id));
                }
                log::info!(
                    "rill-group {:?}: {id} missed its session timeout; removed",
                    self.group_id
                );
            }
        }
        self.rebalance(&mut control);
        expired
    }
}

/// A member just registered: everything a `Member` is made of.
pub(crate) struct Joined {
    pub shared: Arc<Shared>,
    pub id: MemberId,
    pub liveness: Arc<Liveness>,
    pub consumers: BTreeMap<Topic, rill_engine::Consumer>,
    pub tables: HashMap<Topic, Arc<OwnershipTable>>,
    pub listener: Option<Box<dyn RebalanceListener>>,
}

/// Member ids are handed out below 2^32 so they fit the ownership word.
pub(crate) fn raw_id(member: MemberId) -> u32 {
    member.0 as u32
}

/// A consumer group over an engine. Share it between threads by reference; each member is a
/// handle of its own, used by one thread at a time.
///
/// Only one `Group` per group id should be open on an engine at a time: two would each
/// believe they coordinate the group, and their commits would interleave in the offsets log.
#[derive(Debug)]
pub struct Group {
    /// A clone of the caller's engine handle: the group keeps the engine open while it lives.
    engine: Engine,
    shared: Arc<Shared>,
}

impl Group {
    /// Opens group `group_id`: creates the offsets topic if missing and loads the group's
    /// committed offsets from it, so a restarted group resumes where it committed.
    pub fn new(engine: &Engine, group_id: &str, config: GroupConfig) -> Result<Self> {
        let invalid = |reason: &str| GroupError::InvalidConfig {
            group: group_id.to_owned(),
            reason: reason.to_owned(),
        };
        if group_id.is_empty() || group_id.len() > usize::from(u16::MAX) {
            return Err(invalid("group ids are 1 to 65535 bytes"));
        }
        if config.session_timeout.is_zero() {
            return Err(invalid("session_timeout must be positive"));
        }
        let offsets = OffsetStore::open(engine, group_id, config.offsets_topic_partitions)?;
        Ok(Self {
            engine: engine.clone(),
            shared: Arc::new(Shared {
                group_id: group_id.to_owned(),
                config,
                epoch: AtomicU64::new(0),
                control: Mutex::new(Control {
                    members: BTreeMap::new(),
                    topics: BTreeMap::new(),
                    tables: HashMap::new(),
                    target: Arc::new(Target {
                        epoch: 0,
                        assignment: Assignment::new(),
                    }),
                    next_member: 1,
                }),
                offsets: Mutex::new(offsets),
                started: Instant::now(),
                next_expiry_check: AtomicU64::new(0),
            }),
        })
    }

    /// The group's id.
    pub fn id(&self) -> &str {
        &self.shared.group_id
    }

    /// Registers a new member subscribed to `config.topics` and bumps the group epoch; what
    /// the member is made of. `Group::join` (in the member module) wraps it in a `Member`.
    pub(crate) fn register(&self, config: MemberConfig) -> Result<Joined> {
        let group = &self.shared.group_id;
        let known: HashMap<String, u32> = self.engine.topics().into_iter().collect();
        let mut subscription = BTreeMap::new();
        for topic in &config.topics {
            let partitions = *known.get(topic).ok_or_else(|| GroupError::UnknownTopic {
                group: group.clone(),
                topic: topic.clone(),
            })?;
            let consumer = self
                .engine
                .consumer_with(
                    topic,
                    ConsumerConfig {
                        start: self.shared.config.start,
                        ..self.shared.config.consumer.clone()
                    },
                )
                .map_err(|e| GroupError::engine(group, format!("consuming {topic:?}"), e))?;
            // The engine just opened a consumer of this name, so it is a valid topic name.
            let name = Topic::new(topic)
                .map_err(|e| GroupError::engine(group, format!("naming {topic:?}"), e.into()))?;
            subscription.insert(name, (partitions, consumer));
        }
        let liveness = Arc::new(Liveness {
            last_seen: AtomicU64::new(self.shared.now_micros()),
            fence: Fence::new(),
        });
        let mut control = self.shared.control();
        let raw = control.next_member;
        if raw == u32::MAX {
            return Err(GroupError::MemberIdsExhausted {
                group: group.clone(),
            });
        }
        control.next_member += 1;
        let id = MemberId(u64::from(raw));
        let mut consumers = BTreeMap::new();
        let mut tables = HashMap::new();
        for (topic, (partitions, consumer)) in subscription {
            control.topics.entry(topic.clone()).or_insert(partitions);
            let table = control
                .tables
                .entry(topic.clone())
                .or_insert_with(|| Arc::new(OwnershipTable::new(partitions)))
                .clone();
            tables.insert(topic.clone(), table);
            consumers.insert(topic, consumer);
        }
        control.members.insert(
            id,
            MemberEntry {
                subscription: consumers.keys().cloned().collect(),
                liveness: liveness.clone(),
            },
        );
        self.shared.rebalance(&mut control);
        drop(control);
        Ok(Joined {
            shared: self.shared.clone(),
            id,
            liveness,
            consumers,
            tables,
            listener: config.listener,
        })
    }

    /// The current group epoch.
    pub fn epoch(&self) -> u32 {
        self.shared.epoch() as u32
    }

    /// The members, in id order.
    pub fn members(&self) -> Vec<MemberId> {
        self.shared.control().members.keys().copied().collect()
    }

    /// The target assignment of the current epoch.
    pub fn target(&self) -> Assignment {
        self.shared.control().target.assignment.clone()
    }

    /// Who owns a partition right now, and under which member epoch.
    pub fn owner(&self, topic: &str, partition: u32) -> Option<(MemberId, u32)> {
        let control = self.shared.control();
        let claim = control.tables.get(topic)?.owner(partition)?;
        Some((MemberId(u64::from(claim.member)), claim.epoch))
    }

    /// Whether every partition of the current target is owned by its target member: the end
    /// of a rebalance.
    pub fn is_settled(&self) -> bool {
        let control = self.shared.control();
        control
            .target
            .assignment
            .iter()
            .all(|(member, partitions)| {
                partitions.iter().all(|tp| {
                    control
                        .tables
                        .get(&tp.topic)
                        .and_then(|t| t.owner(tp.partition))
                        .is_some_and(|c| u64::from(c.member) == member.0)
                })
            })
    }

    /// The group's committed offset for a partition (the next offset to read).
    pub fn committed(&self, topic: &str, partition: u32) -> Option<i64> {
        let topic = Topic::new(topic).ok()?;
        self.shared.offsets().committed(&topic, partition)
    }

    /// Every committed offset of the group.
    pub fn committed_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.shared
            .offsets()
            .all()
            .iter()
            .map(|((topic, partition), &offset)| {
                (TopicPartition::new(topic.clone(), *partition), offset)
            })
            .collect()
    }

    /// Removes members whose session timed out now, rather than at the next member's poll.
    /// Returns the removed members.
    pub fn expire_sessions(&self) -> Vec<MemberId> {
        self.shared.expire(self.shared.now_micros())
    }
}
