//! One classic group's state machine, as Kafka's group coordinator runs it.
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all known members rejoined, or rebalance timeout──▶
//!   CompletingRebalance ──leader's SyncGroup──▶ Stable ──join of a new member, leave, expiry,
//!   changed metadata──▶ PreparingRebalance …
//! ```
//!
//! Every transition happens under the coordinator's lock, in a request handler or in the
//! timer (`tick`), with the time passed in, so the machine itself never waits. Answers that
//! must wait (a JoinGroup until the join phase ends, a follower's SyncGroup until the leader's
//! assignment arrives) are [`Reply`] slots the machine fills when the step completes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::reply::Reply;

/// Where a group is in its rebalance cycle; the names are Kafka's (DescribeGroups shows them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// What a JoinGroup is answered with.
#[derive(Clone, Debug, Default)]
pub(crate) struct JoinAnswer {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member's metadata for the chosen protocol: for the leader only.
    pub members: Vec<JoinedMember>,
    /// A static leader that came back to a stable group: it must not assign again (KIP-814,
    /// JoinGroup v9), only watch the members' metadata.
    pub skip_assignment: bool,
}

impl JoinAnswer {
    fn error(code: ResponseError, member_id: &str) -> Self {
        Self {
            error: code.code(),
            generation: -1,
            member_id: member_id.to_owned(),
            ..Self::default()
        }
    }
}

/// One member as the leader sees it in its JoinGroup answer.
#[derive(Clone, Debug)]
pub(crate) struct JoinedMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What a SyncGroup is answered with.
#[derive(Clone, Debug, Default)]
pub(crate) struct SyncAnswer {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncAnswer {
    fn error(code: ResponseError) -> Self {
        Self {
            error: code.code(),
            ..Self::default()
        }
    }
}

/// A JoinGroup, decoded and version-independent.
#[derive(Debug)]
pub(crate) struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets its id with MEMBER_ID_REQUIRED.
    pub require_known_id: bool,
}

/// A SyncGroup, decoded.
#[derive(Debug)]
pub(crate) struct SyncRequest {
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// A member as DescribeGroups shows it.
#[derive(Debug)]
pub(crate) struct MemberView {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// Its JoinGroup waits for the join phase to end.
    join: Option<Arc<Reply<JoinAnswer>>>,
    /// Its SyncGroup waits for the leader's assignment.
    sync: Option<Arc<Reply<SyncAnswer>>>,
    last_seen: Instant,
}

impl Member {
    fn metadata(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| Some(name.as_str()) == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    /// Whether its session has run out: a member waiting in a JoinGroup or SyncGroup is alive.
    fn expired(&self, now: Instant) -> bool {
        self.join.is_none() && self.sync.is_none() && now >= self.last_seen + self.session_timeout
    }
}

/// How groups behave, from the server's configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub initial_delay: Duration,
    pub min_session: Duration,
    pub max_session: Duration,
}

/// One classic group.
#[derive(Debug)]
pub(crate) struct ClassicGroup {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they lapse if not used.
    pending: HashMap<String, Instant>,
    /// Static members: instance id to current member id.
    instances: HashMap<String, String>,
    /// The join phase ends by then even if some members have not rejoined.
    join_deadline: Option<Instant>,
    /// The first-join delay of a group that was empty: it waits for more members until then.
    delay_until: Option<Instant>,
    /// Members that have not sent SyncGroup by then are removed (a leader that never
    /// assigns cannot hold the group up).
    sync_deadline: Option<Instant>,
}

type Code = ResponseError;

impl ClassicGroup {
    pub fn new() -> Self {
        Self {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            join_deadline: None,
            delay_until: None,
            sync_deadline: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or("")
    }

    pub fn protocol(&self) -> &str {
        self.protocol.as_deref().unwrap_or("")
    }

    pub fn members(&self) -> Vec<MemberView> {
        let stable = self.state == State::Stable;
        self.members
            .iter()
            .map(|(id, m)| MemberView {
                id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(self.protocol.as_deref())
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect()
    }

    /// Handles a JoinGroup; `fresh_id` is the member id a new member gets.
    pub fn join(
        &mut self,
        request: JoinRequest,
        timing: &Timing,
        now: Instant,
        fresh_id: String,
    ) -> Arc<Reply<JoinAnswer>> {
        let session = request.session_timeout;
        if session < timing.min_session || session > timing.max_session {
            return Reply::ready(JoinAnswer::error(
                Code::InvalidSessionTimeout,
                &request.member_id,
            ));
        }
        if !self.supports(&request) {
            return Reply::ready(JoinAnswer::error(
                Code::InconsistentGroupProtocol,
                &request.member_id,
            ));
        }
        if request.member_id.is_empty() {
            if let Some(instance) = &request.instance_id {
                let id = fresh_id;
                return match self.instances.get(instance).cloned() {
                    Some(old) => self.replace_static(&old, id, request, timing, now),
                    None => self.add_member(id, request, timing, now),
                };
            }
            let id = fresh_id;
            if request.require_known_id {
                self.pending.insert(id.clone(), now + session);
                return Reply::ready(JoinAnswer::error(Code::MemberIdRequired, &id));
            }
            return self.add_member(id, request, timing, now);
        }
        let id = request.member_id.clone();
        if self.pending.remove(&id).is_some() {
            return self.add_member(id, request, timing, now);
        }
        if let Some(code) = self.fenced(&id, request.instance_id.as_deref()) {
            return Reply::ready(JoinAnswer::error(code, &id));
        }
        self.rejoin(id, request, timing, now)
    }

    /// A known member joins again.
    fn rejoin(
        &mut self,
        id: String,
        request: JoinRequest,
        timing: &Timing,
        now: Instant,
    ) -> Arc<Reply<JoinAnswer>> {
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let Some(member) = self.members.get_mut(&id) else {
            return Reply::ready(JoinAnswer::error(Code::UnknownMemberId, &id));
        };
        let unchanged = member.protocols == request.protocols;
        let steady = match self.state {
            State::CompletingRebalance => unchanged,
            State::Stable => unchanged && !is_leader,
            _ => false,
        };
        member.last_seen = now;
        if steady {
            return Reply::ready(self.current_answer(&id));
        }
        let reply = Reply::new();
        update(member, request);
        if let Some(old) = member.join.replace(reply.clone()) {
            old.fill(JoinAnswer::error(Code::RebalanceInProgress, &id));
        }
        if self.state != State::PreparingRebalance {
            self.prepare_rebalance(timing, now);
        }
        self.maybe_complete_join(now);
        reply
    }

    /// A static member comes back under a new member id: the old id is fenced, the member
    /// keeps its place and its assignment. As in Kafka, there is no rebalance unless the
    /// protocol the group would choose changes (its metadata bytes may differ: they carry what
    /// the old incarnation owned).
    fn replace_static(
        &mut self,
        old: &str,
        id: String,
        request: JoinRequest,
        timing: &Timing,
        now: Instant,
    ) -> Arc<Reply<JoinAnswer>> {
        let Some(mut member) = self.members.remove(old) else {
            return self.add_member(id, request, timing, now);
        };
        if let Some(waiting) = member.join.take() {
            waiting.fill(JoinAnswer::error(Code::FencedInstanceId, old));
        }
        if let Some(waiting) = member.sync.take() {
            waiting.fill(SyncAnswer::error(Code::FencedInstanceId));
        }
        if let Some(instance) = &request.instance_id {
            self.instances.insert(instance.clone(), id.clone());
        }
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(id.clone());
        }
        member.last_seen = now;
        update(&mut member, request);
        self.members.insert(id.clone(), member);
        let steady = matches!(self.state, State::Stable | State::CompletingRebalance)
            && self.select_protocol() == self.protocol;
        if steady {
            let mut answer = self.current_answer(&id);
            answer.skip_assignment = self.leader.as_deref() == Some(id.as_str());
            return Reply::ready(answer);
        }
        let reply = Reply::new();
        if let Some(member) = self.members.get_mut(&id) {
            member.join = Some(reply.clone());
        }
        if self.state != State::PreparingRebalance {
            self.prepare_rebalance(timing, now);
        }
        self.maybe_complete_join(now);
        reply
    }

    fn add_member(
        &mut self,
        id: String,
        request: JoinRequest,
        timing: &Timing,
        now: Instant,
    ) -> Arc<Reply<JoinAnswer>> {
        let reply = Reply::new();
        if let Some(instance) = &request.instance_id {
            self.instances.insert(instance.clone(), id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        self.members.insert(
            id,
            Member {
                instance_id: request.instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                session_timeout: request.session_timeout,
                rebalance_timeout: request.rebalance_timeout,
                protocols: request.protocols,
                assignment: Bytes::new(),
                join: Some(reply.clone()),
                sync: None,
                last_seen: now,
            },
        );
        if self.state == State::PreparingRebalance {
            // A member arriving during the first-join delay extends it, up to the deadline.
            if let (Some(delay), Some(deadline)) = (self.delay_until.as_mut(), self.join_deadline) {
                *delay = (now + timing.initial_delay).min(deadline);
            }
        } else {
            self.prepare_rebalance(timing, now);
        }
        self.maybe_complete_join(now);
        reply
    }

    /// Whether the member's protocol type and protocols fit the group's.
    fn supports(&self, request: &JoinRequest) -> bool {
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .iter()
            .filter(|(id, _)| **id != request.member_id)
            .map(|(_, m)| m)
            .collect();
        if others.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(request.protocol_type.as_str())
            && request.protocols.iter().any(|(name, _)| {
                others
                    .iter()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// The error a request from `id` (with `instance`) gets before anything else: a static
    /// member's old id is fenced, an unknown id is unknown.
    fn fenced(&self, id: &str, instance: Option<&str>) -> Option<Code> {
        if let Some(instance) = instance
            && let Some(current) = self.instances.get(instance)
            && current != id
        {
            return Some(Code::FencedInstanceId);
        }
        if !self.members.contains_key(id) {
            return Some(Code::UnknownMemberId);
        }
        None
    }

    fn current_answer(&self, id: &str) -> JoinAnswer {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == id {
            self.joined_members()
        } else {
            Vec::new()
        };
        JoinAnswer {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: id.to_owned(),
            members,
            skip_assignment: false,
        }
    }

    fn joined_members(&self) -> Vec<JoinedMember> {
        self.members
            .iter()
            .map(|(id, m)| JoinedMember {
                id: id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(self.protocol.as_deref()),
            })
            .collect()
    }

    /// Starts a rebalance: waiting syncs are told to rejoin, members get until the join
    /// deadline (the largest rebalance timeout among them) to rejoin.
    fn prepare_rebalance(&mut self, timing: &Timing, now: Instant) {
        if self.state == State::CompletingRebalance {
            for member in self.members.values_mut() {
                if let Some(waiting) = member.sync.take() {
                    waiting.fill(SyncAnswer::error(Code::RebalanceInProgress));
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        let deadline = now + timeout;
        self.delay_until = (self.state == State::Empty && !timing.initial_delay.is_zero())
            .then(|| (now + timing.initial_delay).min(deadline));
        self.join_deadline = Some(deadline);
        self.sync_deadline = None;
        self.state = State::PreparingRebalance;
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        if let Some(until) = self.delay_until {
            if now < until {
                return;
            }
            self.delay_until = None;
        }
        let all_joined = self.pending.is_empty() && self.members.values().all(|m| m.join.is_some());
        if all_joined || self.join_deadline.is_some_and(|d| now >= d) {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin (and are not static) are dropped, the
    /// generation advances, a protocol is chosen, and every waiting member gets its answer.
    fn complete_join(&mut self, now: Instant) {
        let absent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join.is_none() && m.instance_id.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in absent {
            log::info!("group member {id} did not rejoin in time; removed");
            self.drop_member(&id);
        }
        self.join_deadline = None;
        self.delay_until = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self
                .members
                .iter()
                .find(|(_, m)| m.join.is_some())
                .or_else(|| self.members.iter().next())
                .map(|(id, _)| id.clone());
        }
        self.state = State::CompletingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.sync_deadline = Some(now + timeout);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let answer = self.current_answer(&id);
            if let Some(member) = self.members.get_mut(&id) {
                member.assignment = Bytes::new();
                member.last_seen = now;
                if let Some(waiting) = member.join.take() {
                    waiting.fill(answer);
                }
            }
        }
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let mut members = self.members.values();
        let first = members.next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n))
            {
                *votes.entry(name).or_default() += 1;
            }
        }
        let best = candidates.iter().copied().max_by_key(|name| {
            (
                votes.get(name).copied().unwrap_or(0),
                usize::MAX - rank(&candidates, name),
            )
        });
        best.or_else(|| first.protocols.first().map(|(n, _)| n))
            .cloned()
    }

    /// Handles a SyncGroup.
    pub fn sync(&mut self, request: SyncRequest, now: Instant) -> Arc<Reply<SyncAnswer>> {
        let id = request.member_id.as_str();
        if let Some(code) = self.fenced(id, request.instance_id.as_deref()) {
            return Reply::ready(SyncAnswer::error(code));
        }
        if request.generation != self.generation {
            return Reply::ready(SyncAnswer::error(Code::IllegalGeneration));
        }
        let mismatched =
            |asked: &Option<String>, ours: &Option<String>| asked.is_some() && asked != ours;
        if mismatched(&request.protocol_type, &self.protocol_type)
            || mismatched(&request.protocol_name, &self.protocol)
        {
            return Reply::ready(SyncAnswer::error(Code::InconsistentGroupProtocol));
        }
        let answer = |assignment: Bytes, group: &Self| SyncAnswer {
            error: 0,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            assignment,
        };
        match self.state {
            State::Empty => Reply::ready(SyncAnswer::error(Code::UnknownMemberId)),
            State::PreparingRebalance => Reply::ready(SyncAnswer::error(Code::RebalanceInProgress)),
            State::Stable => {
                let assignment = self.members.get_mut(id).map(|m| {
                    m.last_seen = now;
                    m.assignment.clone()
                });
                Reply::ready(answer(assignment.unwrap_or_default(), self))
            }
            State::CompletingRebalance => {
                let reply = Reply::new();
                if let Some(member) = self.members.get_mut(id) {
                    member.last_seen = now;
                    if let Some(old) = member.sync.replace(reply.clone()) {
                        old.fill(SyncAnswer::error(Code::RebalanceInProgress));
                    }
                }
                if self.leader.as_deref() == Some(id) {
                    self.apply_assignment(request.assignments, now);
                }
                reply
            }
        }
    }

    /// The leader's assignment: members it names that are not in the group are ignored, and
    /// members it leaves out get an empty assignment (both as Kafka does); the assignment bytes
    /// are the clients' business.
    fn apply_assignment(&mut self, assignments: Vec<(String, Bytes)>, now: Instant) {
        let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
        for (id, member) in &mut self.members {
            member.assignment = given.remove(id).unwrap_or_default();
            member.last_seen = now;
        }
        if !given.is_empty() {
            log::info!(
                "the leader's assignment names {} members not in the group; ignored",
                given.len()
            );
        }
        self.state = State::Stable;
        self.sync_deadline = None;
        let (protocol_type, protocol_name) = (self.protocol_type.clone(), self.protocol.clone());
        for member in self.members.values_mut() {
            if let Some(waiting) = member.sync.take() {
                waiting.fill(SyncAnswer {
                    error: 0,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: member.assignment.clone(),
                });
            }
        }
    }

    /// Handles a Heartbeat; returns its error code.
    pub fn heartbeat(
        &mut self,
        generation: i32,
        id: &str,
        instance: Option<&str>,
        now: Instant,
    ) -> i16 {
        if self.state == State::Empty {
            return Code::UnknownMemberId.code();
        }
        if let Some(code) = self.fenced(id, instance) {
            return code.code();
        }
        if generation != self.generation {
            return Code::IllegalGeneration.code();
        }
        if let Some(member) = self.members.get_mut(id) {
            member.last_seen = now;
        }
        match self.state {
            State::PreparingRebalance => Code::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    /// Handles one member of a LeaveGroup; returns its error code.
    pub fn leave(
        &mut self,
        id: &str,
        instance: Option<&str>,
        timing: &Timing,
        now: Instant,
    ) -> i16 {
        let target = match instance {
            Some(instance) => match self.instances.get(instance) {
                Some(current) if id.is_empty() || id == current => current.clone(),
                Some(_) => return Code::FencedInstanceId.code(),
                None => return Code::UnknownMemberId.code(),
            },
            None => {
                if self.pending.remove(id).is_some() {
                    return 0;
                }
                if !self.members.contains_key(id) {
                    return Code::UnknownMemberId.code();
                }
                id.to_owned()
            }
        };
        log::info!("group member {target} left");
        self.remove_member(&target, timing, now);
        0
    }

    /// Removes a member and rebalances what is left.
    fn remove_member(&mut self, id: &str, timing: &Timing, now: Instant) {
        self.drop_member(id);
        match self.state {
            State::Stable | State::CompletingRebalance => {
                self.prepare_rebalance(timing, now);
                self.maybe_complete_join(now);
            }
            State::PreparingRebalance => self.maybe_complete_join(now),
            State::Empty => {}
        }
    }

    fn drop_member(&mut self, id: &str) {
        if let Some(member) = self.members.remove(id) {
            if let Some(waiting) = member.join {
                waiting.fill(JoinAnswer::error(Code::UnknownMemberId, id));
            }
            if let Some(waiting) = member.sync {
                waiting.fill(SyncAnswer::error(Code::UnknownMemberId));
            }
            if let Some(instance) = member.instance_id {
                self.instances.remove(&instance);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// Checks an OffsetCommit's member and generation; `Ok` carries the generation to store
    /// with the commit. A commit with no member and a negative generation is a standalone
    /// consumer's, allowed while the group has no members (as in Kafka).
    pub fn check_commit(
        &mut self,
        generation: i32,
        id: &str,
        instance: Option<&str>,
        now: Instant,
    ) -> Result<u32, i16> {
        if generation < 0 && id.is_empty() && self.state == State::Empty {
            return Ok(0);
        }
        if let Some(code) = self.fenced(id, instance) {
            return Err(code.code());
        }
        if generation != self.generation {
            return Err(Code::IllegalGeneration.code());
        }
        // A current member that commits before the leader's assignment arrived: it must wait
        // for its SyncGroup answer (Kafka's answer too).
        if self.state == State::CompletingRebalance {
            return Err(Code::RebalanceInProgress.code());
        }
        if let Some(member) = self.members.get_mut(id) {
            member.last_seen = now;
        }
        Ok(u32::try_from(generation).unwrap_or(0))
    }

    /// Advances the group's timers to `now`: lapsed member ids, expired sessions, the end of
    /// the join phase, members that never synced. Returns when it next needs a tick.
    pub fn tick(&mut self, timing: &Timing, now: Instant) -> Option<Instant> {
        self.pending.retain(|_, until| *until > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.expired(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            log::info!("group member {id} missed its session timeout; removed");
            self.remove_member(&id, timing, now);
        }
        if self.state == State::CompletingRebalance && self.sync_deadline.is_some_and(|d| now >= d)
        {
            let silent: Vec<String> = self
                .members
                .iter()
                .filter(|(_, m)| m.sync.is_none())
                .map(|(id, _)| id.clone())
                .collect();
            for id in silent {
                log::info!("group member {id} sent no SyncGroup in time; removed");
                self.drop_member(&id);
            }
            self.prepare_rebalance(timing, now);
        }
        self.maybe_complete_join(now);
        self.next_deadline()
    }

    /// The earliest instant at which `tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.join.is_none() && m.sync.is_none())
            .map(|m| m.last_seen + m.session_timeout);
        let phase = match self.state {
            State::PreparingRebalance => self.delay_until.or(self.join_deadline),
            State::CompletingRebalance => self.sync_deadline,
            _ => None,
        };
        sessions
            .chain(self.pending.values().copied())
            .chain(phase)
            .min()
    }

    /// Answers every waiting request with `code` (the server is stopping).
    pub fn abort_waiting(&mut self, code: Code) {
        for (id, member) in &mut self.members {
            if let Some(waiting) = member.join.take() {
                waiting.fill(JoinAnswer::error(code, id));
            }
            if let Some(waiting) = member.sync.take() {
                waiting.fill(SyncAnswer::error(code));
            }
        }
    }
}

fn rank(candidates: &[&String], name: &String) -> usize {
    candidates
        .iter()
        .position(|c| *c == name)
        .unwrap_or(usize::MAX)
}

fn update(member: &mut Member, request: JoinRequest) {
    member.protocols = request.protocols;
    member.session_timeout = request.session_timeout;
    member.rebalance_timeout = request.rebalance_timeout;
    member.client_id = request.client_id;
    member.client_host = request.client_host;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TIMING: Timing = Timing {
        initial_delay: Duration::ZERO,
        min_session: Duration::from_millis(1),
        max_session: Duration::from_secs(60),
    };

    fn request(member: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member.into(),
            instance_id: instance.map(Into::into),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(1),
            rebalance_timeout: Duration::from_secs(2),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| ((*p).to_owned(), Bytes::new()))
                .collect(),
            require_known_id: false,
        }
    }

    fn answer(reply: &Arc<Reply<JoinAnswer>>) -> JoinAnswer {
        reply.wait(Instant::now()).unwrap()
    }

    #[test]
    fn a_member_without_a_common_protocol_is_refused() {
        let mut group = ClassicGroup::new();
        let now = Instant::now();
        let first = answer(&group.join(request("", None, &["range"]), &TIMING, now, "m1".into()));
        assert_eq!((first.error, first.generation), (0, 1));
        let other = group.join(
            request("", None, &["roundrobin"]),
            &TIMING,
            now,
            "m2".into(),
        );
        assert_eq!(answer(&other).error, Code::InconsistentGroupProtocol.code());
        assert_eq!(group.state(), State::CompletingRebalance);
    }

    #[test]
    fn the_protocol_most_members_prefer_among_common_ones_wins() {
        let mut group = ClassicGroup::new();
        let now = Instant::now();
        let a = group.join(
            request("", None, &["sticky", "range"]),
            &TIMING,
            now,
            "a".into(),
        );
        let a = answer(&a);
        // b and c prefer range; all three support it.
        let b = group.join(
            request("", None, &["range", "sticky"]),
            &TIMING,
            now,
            "b".into(),
        );
        let c = group.join(request("", None, &["range"]), &TIMING, now, "c".into());
        // a must rejoin for the phase to end.
        let a2 = group.join(
            request(&a.member_id, None, &["sticky", "range"]),
            &TIMING,
            now,
            "x".into(),
        );
        for reply in [&b, &c, &a2] {
            assert_eq!(answer(reply).protocol_name.as_deref(), Some("range"));
        }
    }

    #[test]
    fn a_static_members_old_id_is_fenced_and_a_silent_member_expires() {
        let mut group = ClassicGroup::new();
        let now = Instant::now();
        let old = answer(&group.join(
            request("", Some("i"), &["range"]),
            &TIMING,
            now,
            "old".into(),
        ));
        assert_eq!(old.member_id, "old");
        let sync = SyncRequest {
            generation: old.generation,
            member_id: "old".into(),
            instance_id: Some("i".into()),
            protocol_type: None,
            protocol_name: None,
            assignments: vec![("old".into(), Bytes::from_static(b"p0"))],
        };
        group.sync(sync, now);
        assert_eq!(group.state(), State::Stable);
        let new = answer(&group.join(
            request("", Some("i"), &["range"]),
            &TIMING,
            now,
            "new".into(),
        ));
        assert_eq!(new.error, 0);
        assert_eq!(
            new.generation, old.generation,
            "no rebalance for a returning static member"
        );
        assert_eq!(
            group.heartbeat(old.generation, "old", Some("i"), now),
            Code::FencedInstanceId.code()
        );
        assert_eq!(group.heartbeat(new.generation, "new", Some("i"), now), 0);
        // Nothing more from it: past its session it is removed and the group empties.
        let later = now + Duration::from_millis(1_100);
        group.tick(&TIMING, later);
        assert_eq!(group.state(), State::Empty);
        assert_eq!(
            group.heartbeat(new.generation, "new", Some("i"), later),
            Code::UnknownMemberId.code()
        );
    }
}
