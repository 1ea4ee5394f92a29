//! One KIP-848 consumer group (`ConsumerGroupHeartbeat`), served by rill-group's model.
//!
//! The group epoch bumps on every change of members, subscriptions or subscribed topics'
//! partition counts, and the target assignment is computed once per bump by rill-group's
//! server-side assignors (`uniform`, the default, and `range`, as Kafka names them). Each member
//! then converges on its own, heartbeat by heartbeat, with no group-wide barrier:
//!
//! ```text
//! member epoch E, owns A ──target T at group epoch G──▶ A∖T not empty: told to keep A∩T,
//!   epoch stays E (revoking) ──heartbeat that no longer owns A∖T──▶ released; epoch G;
//!   takes each partition of T∖A as soon as its previous owner has released it
//! ```
//!
//! A member still waiting for part of its target is told to heartbeat sooner (20 ms rather
//! than the configured interval), so a released partition finds its next owner within that.
//!
//! Who holds a partition is rill-group's [`OwnershipTable`]: one word per partition, taken only
//! from "unowned" and given back only by its holder (an acknowledged revocation, a leave) or by
//! the coordinator fencing it (session or rebalance timeout), so no partition is ever assigned to
//! two members at once, the rule in-process groups follow. A member's epoch in a request is
//! checked as Kafka checks it: newer than the coordinator's is FENCED_MEMBER_EPOCH; older is
//! accepted only if it is the member's previous epoch and the partitions it says it owns are
//! still its own (its last answer was lost), and is FENCED_MEMBER_EPOCH otherwise. A fenced
//! member rejoins with epoch 0. Every transition happens under the coordinator's lock, with
//! the time passed in, so the machine never waits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use rill_engine::TopicName;
use rill_group::assignor::{Assignment, AssignmentSpec};
use rill_group::{
    Assignor, Claim, Fence, MemberId, OwnershipTable, RangeAssignor, Take, TopicPartition,
    UniformAssignor,
};

type Code = ResponseError;

/// The server-side assignors, by the names clients ask for; the first is the default.
const ASSIGNORS: [&dyn Assignor; 2] = [&UniformAssignor, &RangeAssignor];

/// The assignor called `name`, if this coordinator has it.
pub(crate) fn assignor_named(name: &str) -> Option<&'static dyn Assignor> {
    ASSIGNORS.into_iter().find(|a| a.name() == name)
}

/// The heartbeat interval of a member waiting for partitions their previous owners are
/// releasing. Clients take the interval from every answer, and such a member learns of each
/// release only at its next heartbeat, so this bounds how long a released partition has no
/// consumer; it costs a few short heartbeats per member and rebalance.
const WAITING_HEARTBEAT: Duration = Duration::from_millis(20);

/// How consumer groups behave, from the server's configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConsumerTiming {
    /// A member that does not heartbeat for this long is removed.
    pub session: Duration,
    /// How often members are told to heartbeat.
    pub heartbeat: Duration,
}

/// A ConsumerGroupHeartbeat, decoded: topic ids are already names.
#[derive(Debug, Default)]
pub(crate) struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// `None`: unchanged since the last heartbeat (-1 on the wire).
    pub rebalance_timeout: Option<Duration>,
    pub subscription: Option<BTreeSet<String>>,
    pub assignor: Option<String>,
    /// The partitions the member owns now; `None`: unchanged.
    pub owned: Option<BTreeSet<TopicPartition>>,
    pub client_id: String,
    pub client_host: String,
}

impl HeartbeatRequest {
    /// Every field a (re)joining member must send, as Kafka requires them.
    fn is_full(&self) -> bool {
        self.rebalance_timeout.is_some() && self.subscription.is_some() && self.owned.is_some()
    }
}

/// What a ConsumerGroupHeartbeat is answered with.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HeartbeatAnswer {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval: Duration,
    /// The member's whole assignment, when it changed or the request was a full one.
    pub assignment: Option<Vec<TopicPartition>>,
}

impl HeartbeatAnswer {
    pub fn error(code: Code, member_id: &str, message: impl Into<String>) -> Self {
        Self {
            error: code.code(),
            message: Some(message.into()),
            member_id: member_id.to_owned(),
            member_epoch: -1,
            ..Self::default()
        }
    }
}

/// A member as ConsumerGroupDescribe shows it.
#[derive(Debug)]
pub(crate) struct MemberView {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscription: Vec<String>,
    pub assigned: Vec<TopicPartition>,
    pub target: Vec<TopicPartition>,
}

/// A consumer group as ConsumerGroupDescribe shows it.
#[derive(Debug)]
pub(crate) struct GroupView {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<MemberView>,
}

#[derive(Debug)]
struct Member {
    /// The id in the ownership words and the assignment (ids start at 1).
    num: u32,
    fence: Fence,
    epoch: i32,
    previous_epoch: i32,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    subscription: BTreeSet<String>,
    assignor: Option<String>,
    rebalance_timeout: Duration,
    /// Held in the ownership table and given to the client.
    assigned: BTreeSet<TopicPartition>,
    /// Held in the table, taken from the client, not yet acknowledged as released.
    revoking: BTreeSet<TopicPartition>,
    /// The member is removed if it has not released `revoking` by then.
    revoke_deadline: Option<Instant>,
    last_seen: Instant,
    /// A static member that left with epoch -2: its partitions wait for its instance to come
    /// back, until its session runs out.
    away: bool,
}

impl Member {
    fn new(num: u32, now: Instant) -> Self {
        Self {
            num,
            fence: Fence::new(),
            epoch: 0,
            previous_epoch: 0,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscription: BTreeSet::new(),
            assignor: None,
            rebalance_timeout: Duration::ZERO,
            assigned: BTreeSet::new(),
            revoking: BTreeSet::new(),
            revoke_deadline: None,
            last_seen: now,
            away: false,
        }
    }

    fn deadline(&self, session: Duration) -> Instant {
        let expiry = self.last_seen + session;
        self.revoke_deadline.map_or(expiry, |r| r.min(expiry))
    }

    /// Updates what a heartbeat may change; `true` if the subscription or assignor changed.
    fn update(&mut self, request: &HeartbeatRequest) -> bool {
        let mut changed = false;
        if let Some(topics) = &request.subscription
            && *topics != self.subscription
        {
            self.subscription = topics.clone();
            changed = true;
        }
        if let Some(name) = &request.assignor
            && self.assignor.as_ref() != Some(name)
        {
            self.assignor = Some(name.clone());
            changed = true;
        }
        if let Some(timeout) = request.rebalance_timeout {
            self.rebalance_timeout = timeout;
        }
        if request.rack_id.is_some() {
            self.rack_id = request.rack_id.clone();
        }
        // Like the rack, the instance id is sent when it is new and left null after.
        if request.instance_id.is_some() {
            self.instance_id = request.instance_id.clone();
        }
        self.client_id = request.client_id.clone();
        self.client_host = request.client_host.clone();
        changed
    }
}

/// One KIP-848 consumer group.
#[derive(Debug)]
pub(crate) struct ConsumerGroup {
    epoch: i32,
    assignment_epoch: i32,
    /// The assignor of the current target, an index into [`ASSIGNORS`].
    assignor: usize,
    members: BTreeMap<String, Member>,
    /// Static members: instance id to member id.
    instances: HashMap<String, String>,
    next_num: u32,
    target: Assignment,
    /// Partition counts of the subscribed topics the target was computed for.
    topics: BTreeMap<TopicName, u32>,
    tables: HashMap<TopicName, OwnershipTable>,
    timing: ConsumerTiming,
}

impl ConsumerGroup {
    pub fn new(timing: ConsumerTiming) -> Self {
        Self {
            epoch: 0,
            assignment_epoch: 0,
            assignor: 0,
            members: BTreeMap::new(),
            instances: HashMap::new(),
            next_num: 1,
            target: Assignment::new(),
            topics: BTreeMap::new(),
            tables: HashMap::new(),
            timing,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Handles a heartbeat (join, leave, or a member's regular one). `known` is every topic of
    /// the engine and its partition count; `fresh_id` names a v0 member that joins without one.
    pub fn heartbeat(
        &mut self,
        mut request: HeartbeatRequest,
        known: &HashMap<String, u32>,
        now: Instant,
        fresh_id: impl FnOnce() -> String,
    ) -> HeartbeatAnswer {
        if let -1 | -2 = request.member_epoch {
            return self.leave(&request, now);
        }
        if let Err(answer) = validate(&request) {
            return answer;
        }
        if request.member_epoch == 0 && request.member_id.is_empty() {
            request.member_id = fresh_id();
        }
        let mut member = match self.locate(&request, now) {
            Ok(member) => member,
            Err(answer) => return answer,
        };
        member.last_seen = now;
        member.away = false;
        let before = member.assigned.clone();
        let changed = member.update(&request) || request.member_epoch == 0 && member.epoch == 0;
        let id = request.member_id.clone();
        self.members.insert(id.clone(), member);
        // Both run: the topics are brought up to date whether or not the member changed.
        if changed | self.refresh_topics(known) {
            self.bump();
        }
        let Some(mut member) = self.members.remove(&id) else {
            return HeartbeatAnswer::error(Code::UnknownMemberId, &id, "the member vanished");
        };
        self.reconcile(&mut member, request.owned.as_ref(), now);
        let send = request.member_epoch == 0 || request.is_full() || member.assigned != before;
        let answer = HeartbeatAnswer {
            error: 0,
            message: None,
            member_id: id.clone(),
            member_epoch: member.epoch,
            heartbeat_interval: self.interval_for(&member),
            assignment: send.then(|| member.assigned.iter().cloned().collect()),
        };
        self.members.insert(id, member);
        answer
    }

    /// The member a (non-leave) heartbeat is from, taken out of the map: joined if its epoch is
    /// 0, else known and at an epoch Kafka's rules accept.
    fn locate(
        &mut self,
        request: &HeartbeatRequest,
        now: Instant,
    ) -> Result<Member, HeartbeatAnswer> {
        let id = &request.member_id;
        if request.member_epoch == 0 {
            return self.join(request, now);
        }
        let Some(member) = self.members.remove(id) else {
            return Err(HeartbeatAnswer::error(
                Code::UnknownMemberId,
                id,
                "the member is not in the group",
            ));
        };
        match check_epoch(&member, request) {
            Ok(()) => Ok(member),
            Err(code) => {
                let message = format!(
                    "member epoch {} is fenced: the coordinator's is {}",
                    request.member_epoch, member.epoch
                );
                self.members.insert(id.clone(), member);
                Err(HeartbeatAnswer::error(code, id, message))
            }
        }
    }

    /// Sooner for a member still waiting for part of its target (see [`WAITING_HEARTBEAT`]).
    fn interval_for(&self, member: &Member) -> Duration {
        let waiting = self
            .target
            .get(&MemberId(u64::from(member.num)))
            .is_some_and(|target| !target.is_subset(&member.assigned));
        if waiting {
            self.timing.heartbeat.min(WAITING_HEARTBEAT)
        } else {
            self.timing.heartbeat
        }
    }

    /// A member joining (epoch 0): new, a static member's instance coming back, or a member
    /// that rejoins under its id after it was fenced (it owns nothing now).
    fn join(
        &mut self,
        request: &HeartbeatRequest,
        now: Instant,
    ) -> Result<Member, HeartbeatAnswer> {
        let id = &request.member_id;
        if let Some(instance) = &request.instance_id
            && let Some(current) = self.instances.get(instance).cloned()
            && current != *id
        {
            let away = self.members.get(&current).is_some_and(|m| m.away);
            if !away {
                return Err(HeartbeatAnswer::error(
                    Code::UnreleasedInstanceId,
                    id,
                    format!("instance {instance:?} is still used by member {current}"),
                ));
            }
            // The instance's new incarnation takes its place, its epoch and its partitions.
            if let Some(mut member) = self.members.remove(&current) {
                member.away = false;
                self.instances.insert(instance.clone(), id.clone());
                return Ok(member);
            }
        }
        if let Some(mut member) = self.members.remove(id) {
            // It says it owns nothing: whatever it held is free again.
            self.release_all(&mut member);
            member.epoch = 0;
            member.previous_epoch = 0;
            member.away = false;
            return Ok(member);
        }
        let num = self.next_num;
        if num == u32::MAX {
            return Err(HeartbeatAnswer::error(
                Code::GroupMaxSizeReached,
                id,
                "member ids exhausted",
            ));
        }
        self.next_num += 1;
        if let Some(instance) = &request.instance_id {
            self.instances.insert(instance.clone(), id.clone());
        }
        log::info!("consumer group member {id} joined");
        Ok(Member::new(num, now))
    }

    /// Epoch -1 (leave) or -2 (a static member leaving for a while).
    fn leave(&mut self, request: &HeartbeatRequest, now: Instant) -> HeartbeatAnswer {
        let id = &request.member_id;
        let Some(member) = self.members.get_mut(id) else {
            return HeartbeatAnswer::error(
                Code::UnknownMemberId,
                id,
                "the member is not in the group",
            );
        };
        if request.member_epoch == -2 && member.instance_id.is_some() {
            member.away = true;
            member.last_seen = now;
        } else {
            log::info!("consumer group member {id} left");
            self.remove(id);
        }
        HeartbeatAnswer {
            member_id: id.clone(),
            member_epoch: request.member_epoch,
            heartbeat_interval: self.timing.heartbeat,
            ..HeartbeatAnswer::default()
        }
    }

    /// Removes a member (left, or fenced by a timeout): its partitions are freed at once.
    fn remove(&mut self, id: &str) {
        if let Some(mut member) = self.members.remove(id) {
            member.fence.fence();
            self.release_all(&mut member);
            if let Some(instance) = &member.instance_id
                && self.instances.get(instance).map(String::as_str) == Some(id)
            {
                self.instances.remove(instance);
            }
            self.bump();
        }
    }

    fn release_all(&mut self, member: &mut Member) {
        for table in self.tables.values() {
            table.release_member(member.num);
        }
        member.assigned.clear();
        member.revoking.clear();
        member.revoke_deadline = None;
    }

    /// Bumps the group epoch and computes the new target with the assignor most members ask
    /// for (the default when none asks).
    fn bump(&mut self) {
        self.epoch = self.epoch.wrapping_add(1).max(1);
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = &member.assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        // The most asked for; on a tie, the first in `ASSIGNORS`.
        self.assignor = ASSIGNORS
            .iter()
            .enumerate()
            .max_by_key(|(i, a)| (votes.get(a.name()).copied().unwrap_or(0), usize::MAX - i))
            .map_or(0, |(i, _)| i);
        let assignor = ASSIGNORS
            .get(self.assignor)
            .copied()
            .unwrap_or(&UniformAssignor);
        let spec = AssignmentSpec {
            members: self
                .members
                .values()
                .map(|m| {
                    let topics = m
                        .subscription
                        .iter()
                        .filter_map(|t| TopicName::new(t).ok())
                        .collect();
                    (MemberId(u64::from(m.num)), topics)
                })
                .collect(),
            topics: self.topics.clone(),
            previous: std::mem::take(&mut self.target),
        };
        self.target = assignor.assign(&spec);
        self.assignment_epoch = self.epoch;
    }

    /// Brings the subscribed topics' partition counts up to date; `true` if they changed (the
    /// target must be computed again). A topic that vanished or changed size is dropped from
    /// every member's holdings, and its table rebuilt.
    fn refresh_topics(&mut self, known: &HashMap<String, u32>) -> bool {
        let subscribed: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| &m.subscription)
            .collect();
        let wanted: BTreeMap<TopicName, u32> = subscribed
            .into_iter()
            .filter_map(|name| Some((TopicName::new(name).ok()?, *known.get(name)?)))
            .collect();
        if wanted == self.topics {
            return false;
        }
        let stale: Vec<TopicName> = self
            .tables
            .iter()
            .filter(|(topic, table)| known.get(&***topic).is_none_or(|&n| n != table.len()))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in stale {
            self.tables.remove(&topic);
            for member in self.members.values_mut() {
                member.assigned.retain(|tp| tp.topic != topic);
                member.revoking.retain(|tp| tp.topic != topic);
            }
        }
        for (topic, &count) in &wanted {
            self.tables
                .entry(topic.clone())
                .or_insert_with(|| OwnershipTable::new(count));
        }
        self.topics = wanted;
        true
    }

    /// Moves a member one step towards its target: first the revocation it owes, then the new
    /// epoch and whatever of its target is free.
    fn reconcile(
        &mut self,
        m: &mut Member,
        owned: Option<&BTreeSet<TopicPartition>>,
        now: Instant,
    ) {
        if !m.revoking.is_empty() {
            let released = owned.is_some_and(|o| m.revoking.iter().all(|tp| !o.contains(tp)));
            if !released {
                return;
            }
            for tp in std::mem::take(&mut m.revoking) {
                if let Some(table) = self.tables.get(&tp.topic) {
                    table.release(tp.partition, m.num);
                }
            }
            m.revoke_deadline = None;
        }
        let target = self
            .target
            .get(&MemberId(u64::from(m.num)))
            .cloned()
            .unwrap_or_default();
        let lost: BTreeSet<TopicPartition> = m.assigned.difference(&target).cloned().collect();
        if !lost.is_empty() {
            m.assigned.retain(|tp| target.contains(tp));
            m.revoking = lost;
            m.revoke_deadline = Some(now + m.rebalance_timeout);
            return;
        }
        let epoch = u32::try_from(self.assignment_epoch).unwrap_or(0);
        if m.epoch != self.assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = self.assignment_epoch;
            for tp in &m.assigned {
                if let Some(table) = self.tables.get(&tp.topic) {
                    table.confirm(tp.partition, m.num, epoch);
                }
            }
        }
        let claim = Claim {
            member: m.num,
            epoch,
        };
        for tp in target.difference(&m.assigned.clone()) {
            let taken = self
                .tables
                .get(&tp.topic)
                .is_some_and(|t| t.take(tp.partition, claim, &m.fence) == Take::Taken);
            if taken {
                m.assigned.insert(tp.clone());
            }
        }
    }

    /// Checks an OffsetCommit from this group's member, as Kafka does for consumer groups:
    /// `Ok` carries the epoch stored with the commit.
    pub fn check_commit(
        &mut self,
        epoch: i32,
        id: &str,
        version: i16,
        now: Instant,
    ) -> Result<u32, i16> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(0);
        }
        let Some(member) = self.members.get_mut(id) else {
            return Err(Code::UnknownMemberId.code());
        };
        // Member epochs travel in OffsetCommit from v9 on; an older commit cannot carry one.
        if version < 9 {
            return Err(Code::UnsupportedVersion.code());
        }
        if epoch != member.epoch {
            return Err(Code::StaleMemberEpoch.code());
        }
        member.last_seen = now;
        Ok(u32::try_from(epoch).unwrap_or(0))
    }

    /// Checks an OffsetFetch that names a member (v9+): unknown or stale members are refused.
    pub fn check_fetch(&self, id: Option<&str>, epoch: i32) -> Result<(), i16> {
        let Some(id) = id.filter(|_| epoch >= 0) else {
            return Ok(());
        };
        match self.members.get(id) {
            None => Err(Code::UnknownMemberId.code()),
            Some(member) if member.epoch != epoch => Err(Code::StaleMemberEpoch.code()),
            Some(_) => Ok(()),
        }
    }

    /// Removes members whose session or revocation ran out. Returns when it next needs a tick.
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        let session = self.timing.session;
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now >= m.deadline(session))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            log::info!(
                "consumer group member {id} missed its session or rebalance timeout; removed"
            );
            self.remove(&id);
        }
        self.next_deadline()
    }

    /// The earliest instant at which `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let session = self.timing.session;
        self.members.values().map(|m| m.deadline(session)).min()
    }

    /// The group as ConsumerGroupDescribe shows it.
    pub fn view(&self) -> GroupView {
        let reconciling = self.members.values().any(|m| {
            let target = self.target.get(&MemberId(u64::from(m.num)));
            m.epoch != self.assignment_epoch
                || !m.revoking.is_empty()
                || target.is_some_and(|t| *t != m.assigned)
        });
        let state = if self.members.is_empty() {
            "Empty"
        } else if reconciling {
            "Reconciling"
        } else {
            "Stable"
        };
        GroupView {
            state,
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: ASSIGNORS.get(self.assignor).map_or("", |a| a.name()),
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscription: m.subscription.iter().cloned().collect(),
                    assigned: m.assigned.iter().cloned().collect(),
                    target: self
                        .target
                        .get(&MemberId(u64::from(m.num)))
                        .map(|t| t.iter().cloned().collect())
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// What Kafka refuses in any heartbeat but a leave, before looking at the member.
fn validate(request: &HeartbeatRequest) -> Result<(), HeartbeatAnswer> {
    let invalid = |message: &str| {
        Err(HeartbeatAnswer::error(
            Code::InvalidRequest,
            &request.member_id,
            message,
        ))
    };
    if request.member_epoch < 0 {
        return invalid("MemberEpoch is invalid");
    }
    if request.member_epoch == 0 {
        if request.subscription.is_none() {
            return invalid("SubscribedTopicNames must be set in the first request");
        }
        if request.rebalance_timeout.is_none() {
            return invalid("RebalanceTimeoutMs must be set in the first request");
        }
        if request.owned.as_ref().is_some_and(|o| !o.is_empty()) {
            return invalid("TopicPartitions must be empty when (re-)joining");
        }
    }
    if let Some(name) = &request.assignor
        && assignor_named(name).is_none()
    {
        return Err(HeartbeatAnswer::error(
            Code::UnsupportedAssignor,
            &request.member_id,
            format!("no server-side assignor {name:?} (there are uniform and range)"),
        ));
    }
    Ok(())
}

/// Kafka's rule for the epoch a heartbeat carries (see the module docs).
fn check_epoch(member: &Member, request: &HeartbeatRequest) -> Result<(), Code> {
    let received = request.member_epoch;
    if received > member.epoch {
        return Err(Code::FencedMemberEpoch);
    }
    if received < member.epoch {
        let owns_only_its_own = request
            .owned
            .as_ref()
            .is_none_or(|owned| owned.is_subset(&member.assigned));
        if received != member.previous_epoch || !owns_only_its_own {
            return Err(Code::FencedMemberEpoch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TIMING: ConsumerTiming = ConsumerTiming {
        session: Duration::from_secs(1),
        heartbeat: Duration::from_millis(100),
    };

    fn known(partitions: u32) -> HashMap<String, u32> {
        HashMap::from([("t".to_owned(), partitions)])
    }

    fn tps(list: &[u32]) -> BTreeSet<TopicPartition> {
        let topic = TopicName::new("t").unwrap();
        list.iter()
            .map(|&p| TopicPartition::new(topic.clone(), p))
            .collect()
    }

    fn join(id: &str, instance: Option<&str>, assignor: Option<&str>) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: id.into(),
            member_epoch: 0,
            instance_id: instance.map(Into::into),
            rebalance_timeout: Some(Duration::from_secs(1)),
            subscription: Some(BTreeSet::from(["t".to_owned()])),
            assignor: assignor.map(Into::into),
            owned: Some(BTreeSet::new()),
            ..HeartbeatRequest::default()
        }
    }

    fn beat(id: &str, epoch: i32, owned: &[u32]) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: id.into(),
            member_epoch: epoch,
            owned: Some(tps(owned)),
            ..HeartbeatRequest::default()
        }
    }

    fn partitions(answer: &HeartbeatAnswer) -> Vec<u32> {
        answer
            .assignment
            .as_ref()
            .unwrap()
            .iter()
            .map(|tp| tp.partition)
            .collect()
    }

    #[test]
    fn a_static_member_that_steps_away_gets_its_partitions_back_without_a_new_epoch() {
        let mut group = ConsumerGroup::new(TIMING);
        let now = Instant::now();
        let k = known(4);
        let a = group.heartbeat(join("a", Some("i"), None), &k, now, String::new);
        let b = group.heartbeat(join("b", None, None), &k, now, String::new);
        // a is told to give two back, acknowledges, and moves to the new epoch.
        let told = group.heartbeat(
            beat("a", a.member_epoch, &[0, 1, 2, 3]),
            &k,
            now,
            String::new,
        );
        let held = partitions(&told);
        assert_eq!(held.len(), 2);
        let a = group.heartbeat(beat("a", told.member_epoch, &held), &k, now, String::new);
        assert!(
            a.assignment.is_none(),
            "unchanged assignments are not sent again"
        );
        assert!(a.member_epoch > told.member_epoch);
        let epoch = group.epoch;
        let away = HeartbeatRequest {
            member_epoch: -2,
            ..beat("a", a.member_epoch, &held)
        };
        assert_eq!(group.heartbeat(away, &k, now, String::new).member_epoch, -2);
        // While it is away its instance is reserved and its partitions stay with it.
        let taken = group.heartbeat(join("c", Some("i"), None), &k, now, String::new);
        assert_eq!(taken.member_epoch, a.member_epoch);
        assert_eq!(partitions(&taken), held);
        assert_eq!(
            group.epoch, epoch,
            "a returning static member is no rebalance"
        );
        let clash = group.heartbeat(join("d", Some("i"), None), &k, now, String::new);
        assert_eq!(clash.error, Code::UnreleasedInstanceId.code());
        let b = group.heartbeat(beat("b", b.member_epoch, &[]), &k, now, String::new);
        assert_eq!(b.error, 0);
    }

    #[test]
    fn the_assignor_most_members_ask_for_is_used() {
        let mut group = ConsumerGroup::new(TIMING);
        let now = Instant::now();
        let k = known(4);
        group.heartbeat(join("a", None, Some("range")), &k, now, String::new);
        group.heartbeat(join("b", None, Some("range")), &k, now, String::new);
        let view = group.view();
        assert_eq!(view.assignor, "range");
        let targets: Vec<Vec<u32>> = view
            .members
            .iter()
            .map(|m| m.target.iter().map(|tp| tp.partition).collect())
            .collect();
        assert_eq!(targets, vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn a_deleted_topic_leaves_every_assignment_and_a_silent_member_expires() {
        let mut group = ConsumerGroup::new(TIMING);
        let now = Instant::now();
        let a = group.heartbeat(join("a", None, None), &known(3), now, String::new);
        assert_eq!(partitions(&a), vec![0, 1, 2]);
        let gone = group.heartbeat(
            beat("a", a.member_epoch, &[0, 1, 2]),
            &HashMap::new(),
            now,
            String::new,
        );
        assert_eq!(gone.error, 0);
        assert_eq!(partitions(&gone), Vec::<u32>::new());
        assert_eq!(
            group.tick(now + Duration::from_millis(999)),
            Some(now + TIMING.session)
        );
        group.tick(now + TIMING.session);
        assert!(group.is_empty());
        let late = group.heartbeat(
            beat("a", gone.member_epoch, &[]),
            &known(3),
            now,
            String::new,
        );
        assert_eq!(late.error, Code::UnknownMemberId.code());
    }
}
