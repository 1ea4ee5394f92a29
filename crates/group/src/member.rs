//! A member of a group: a consumer whose partitions follow the group's target assignment.
//!
//! A member reconciles on its own thread, inside `poll` and `heartbeat`, with no group-wide
//! barrier: when the group epoch moves it first gives up what the new target takes away
//! (committing their positions first if auto-commit is on), then takes what it gains, each
//! partition as soon as its previous owner has let go.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_engine::Record;
use rill_engine::Ticket;
use rill_engine::{Consumer, Polled, Seek};

use crate::assignor::{MemberId, Topic, TopicPartition};
use crate::error::{GroupError, Result};
use crate::group::{Group, Joined, Liveness, MemberConfig, RebalanceListener, Shared, raw_id};
use crate::ownership::{Claim, OwnershipTable, Take};

/// One member of a [`Group`](crate::Group). Leaves the group when dropped.
pub struct Member {
    shared: Arc<Shared>,
    id: MemberId,
    liveness: Arc<Liveness>,
    /// The member epoch: the target epoch it has finished releasing for.
    epoch: u32,
    /// The group epoch it last reconciled against (0: never).
    seen: u64,
    owned: BTreeSet<TopicPartition>,
    /// In the target but still held by their previous owner.
    pending: BTreeSet<TopicPartition>,
    consumers: BTreeMap<Topic, Consumer>,
    tables: HashMap<Topic, Arc<OwnershipTable>>,
    listener: Option<Box<dyn RebalanceListener>>,
    gone: bool,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("group", &self.shared.group_id)
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .field("owned", &self.owned.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// What one [`Member::poll`] returned: batches from the member's partitions, read in place.
#[derive(Debug, Default)]
pub struct MemberPolled {
    epoch: u32,
    topics: Vec<(Topic, Polled)>,
}

impl MemberPolled {
    /// Whether the poll returned no batch.
    pub fn is_empty(&self) -> bool {
        self.topics.iter().all(|(_, p)| p.is_empty())
    }

    /// The member epoch these batches were read under; pass it to
    /// [`Member::commit_sync_at`] to have the commit fenced if the group moved on.
    pub fn member_epoch(&self) -> u32 {
        self.epoch
    }

    /// The engine's batches, per topic.
    pub fn topics(&self) -> impl Iterator<Item = (&str, &Polled)> {
        self.topics.iter().map(|(t, p)| (&**t, p))
    }

    /// Calls `f` with every record, in offset order per partition; returns how many.
    pub fn for_each_record(
        &self,
        mut f: impl FnMut(&str, u32, Record<'_>),
    ) -> std::result::Result<u64, rill_engine::Error> {
        let mut count = 0;
        for (topic, polled) in &self.topics {
            count += polled.for_each_record(|partition, record| f(topic, partition, record))?;
        }
        Ok(count)
    }

    /// The offset after the last record returned, per partition: what to commit once those
    /// records are processed.
    pub fn offsets(&self) -> Vec<(TopicPartition, i64)> {
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for (topic, polled) in &self.topics {
            for slice in polled.slices() {
                let entry = next
                    .entry(TopicPartition::new(topic.clone(), slice.partition()))
                    .or_insert(i64::MIN);
                *entry = (*entry).max(slice.next_offset());
            }
        }
        next.into_iter().collect()
    }
}

/// Members are made here, where they are defined, so that the group module does not depend on
/// the member module (which depends on it).
impl Group {
    /// Adds a member subscribed to `config.topics`. This bumps the group epoch; the member
    /// takes its partitions on its first `poll` or `heartbeat`, as their previous owners let
    /// them go.
    pub fn join(&self, config: MemberConfig) -> Result<Member> {
        self.register(config).map(Member::new)
    }
}

impl Member {
    fn new(joined: Joined) -> Self {
        let Joined {
            shared,
            id,
            liveness,
            consumers,
            tables,
            listener,
        } = joined;
        Self {
            shared,
            id,
            liveness,
            epoch: 0,
            seen: 0,
            owned: BTreeSet::new(),
            pending: BTreeSet::new(),
            consumers,
            tables,
            listener,
            gone: false,
        }
    }

    /// The member's id within its group.
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// The member epoch: the group epoch whose target this member has reconciled with.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    /// Whether the member has caught up with the current group epoch and owns all of its
    /// target (nothing waiting for a previous owner).
    pub fn is_reconciled(&self) -> bool {
        !self.gone && self.seen == self.shared.epoch() && self.pending.is_empty()
    }

    /// The next offset the member reads from a partition it owns.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.consumers.get(topic)?.position(partition)
    }

    /// Tells the group the member is alive and reconciles with the current target, without
    /// reading. Call it when processing takes a while between polls.
    pub fn heartbeat(&mut self) -> Result<()> {
        self.check_fenced()?;
        let now = self.shared.now_micros();
        self.liveness.touch(now);
        self.shared.maybe_expire(now);
        if self.shared.epoch() != self.seen {
            self.reconcile()?;
        }
        if !self.pending.is_empty() {
            self.take_pending()?;
        }
        Ok(())
    }

    /// Returns batches from the member's partitions, waiting up to `timeout` for some.
    /// Reconciles with the group first, and again every `rebalance_check_interval` while it
    /// waits, so a rebalance never waits a whole poll timeout on this member.
    pub fn poll(&mut self, timeout: Duration) -> Result<MemberPolled> {
        let deadline = Instant::now() + timeout;
        loop {
            self.heartbeat()?;
            let now = Instant::now();
            let mut slice = deadline
                .saturating_duration_since(now)
                .min(self.shared.config.rebalance_check_interval);
            if !self.pending.is_empty() {
                slice = slice.min(Duration::from_millis(1));
            }
            let polled = self.poll_consumers(slice)?;
            // A member fenced while it read must not hand out what may now be another's.
            self.check_fenced()?;
            if !polled.is_empty() || Instant::now() >= deadline {
                return Ok(polled);
            }
        }
    }

    fn poll_consumers(&mut self, wait: Duration) -> Result<MemberPolled> {
        let mut polled = MemberPolled {
            epoch: self.epoch,
            topics: Vec::with_capacity(self.consumers.len()),
        };
        // Several topics share the wait; one topic's notifier cannot wake a wait on another's.
        let share = wait / (self.consumers.len().max(1) as u32);
        for (topic, consumer) in &mut self.consumers {
            let batches = consumer.poll(share).map_err(|e| {
                GroupError::engine(&self.shared.group_id, format!("polling {topic:?}"), e)
            })?;
            if !batches.is_empty() {
                polled.topics.push((topic.clone(), batches));
            }
        }
        if self.consumers.is_empty() {
            std::thread::sleep(wait);
        }
        Ok(polled)
    }

    /// Commits offsets (the next offset to read, per partition) under the member's current
    /// epoch, without waiting for them to be durable.
    pub fn commit(
        &mut self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Result<()> {
        let offsets: Vec<_> = offsets.into_iter().collect();
        self.commit_inner(self.epoch, &offsets).map(drop)
    }

    /// Commits offsets under the member's current epoch and waits until they are durable.
    pub fn commit_sync(
        &mut self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Result<()> {
        let epoch = self.epoch;
        self.commit_sync_at(epoch, offsets)
    }

    /// Commits offsets read under member epoch `epoch` and waits until they are durable. A
    /// stale epoch is refused with [`GroupError::StaleMemberEpoch`].
    pub fn commit_sync_at(
        &mut self,
        epoch: u32,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Result<()> {
        let offsets: Vec<_> = offsets.into_iter().collect();
        if let Some((ticket, tp)) = self.commit_inner(epoch, &offsets)? {
            ticket.wait().map_err(|e| {
                GroupError::engine(&self.shared.group_id, format!("committing {tp}"), e)
            })?;
        }
        Ok(())
    }

    /// Commits the member's current position in every partition it owns, and waits.
    pub fn commit_positions_sync(&mut self) -> Result<()> {
        let offsets = self.positions(self.owned.iter());
        self.commit_sync(offsets)
    }

    fn positions<'a>(
        &self,
        partitions: impl Iterator<Item = &'a TopicPartition>,
    ) -> Vec<(TopicPartition, i64)> {
        partitions
            .filter_map(|tp| Some((tp.clone(), self.position(&tp.topic, tp.partition)?)))
            .collect()
    }

    /// Checks every partition's owner word against (epoch, this member) and appends, all under
    /// the offsets lock. A new owner takes a partition with one CAS and reads its committed
    /// offset under the same lock afterwards, so a commit from a member that has lost the
    /// partition either lands before the new owner reads (it was still the owner) or is
    /// refused: it can never overwrite the newer owner's offset.
    fn commit_inner(
        &mut self,
        epoch: u32,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<Option<(Ticket, TopicPartition)>> {
        let group = &self.shared.group_id;
        if offsets.is_empty() {
            return self.check_fenced().map(|()| None);
        }
        let mut entries = Vec::with_capacity(offsets.len());
        for (tp, offset) in offsets {
            if *offset < 0 {
                return Err(GroupError::InvalidOffset {
                    group: group.clone(),
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    offset: *offset,
                });
            }
            entries.push((tp.topic.clone(), tp.partition, *offset));
        }
        let mut store = self.shared.offsets();
        if self.gone || self.liveness.fence.is_fenced() {
            return Err(self.fenced_error());
        }
        if epoch != self.epoch {
            return Err(GroupError::StaleMemberEpoch {
                group: group.clone(),
                member: self.id,
                epoch,
                current: self.epoch,
            });
        }
        let me = raw_id(self.id);
        for (tp, _) in offsets {
            let table = self
                .tables
                .get(&tp.topic)
                .ok_or_else(|| GroupError::NotOwner {
                    group: group.clone(),
                    member: self.id,
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                })?;
            if tp.partition >= table.len() {
                return Err(GroupError::UnknownPartition {
                    group: group.clone(),
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                });
            }
            match table.owner(tp.partition) {
                Some(claim) if claim == (Claim { member: me, epoch }) => {}
                Some(claim) if claim.member == me => {
                    return Err(GroupError::StaleMemberEpoch {
                        group: group.clone(),
                        member: self.id,
                        epoch,
                        current: claim.epoch,
                    });
                }
                _ => {
                    return Err(GroupError::NotOwner {
                        group: group.clone(),
                        member: self.id,
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                    });
                }
            }
        }
        let ticket = store.append(&entries, epoch)?;
        drop(store);
        Ok(ticket.zip(offsets.last().map(|(tp, _)| tp.clone())))
    }

    /// Leaves the group: commits positions (if auto-commit is on), gives up every partition
    /// and lets the group rebalance without this member.
    pub fn leave(mut self) -> Result<()> {
        self.leave_inner()
    }

    fn leave_inner(&mut self) -> Result<()> {
        if self.gone {
            return Ok(());
        }
        if self.liveness.fence.is_fenced() {
            return self.check_fenced();
        }
        let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
        let committed = if self.shared.config.auto_commit {
            self.commit_positions_sync()
        } else {
            Ok(())
        };
        if let Some(listener) = &mut self.listener {
            listener.on_partitions_revoked(self.id, &owned);
        }
        self.release(&owned);
        self.gone = true;
        self.pending.clear();
        self.shared.remove(self.id);
        committed
    }

    fn check_fenced(&mut self) -> Result<()> {
        if self.gone {
            return Err(self.fenced_error());
        }
        if !self.liveness.fence.is_fenced() {
            return Ok(());
        }
        // The coordinator swept our partitions already; drop our view of them.
        self.gone = true;
        let lost: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
        self.pending.clear();
        for consumer in self.consumers.values_mut() {
            let _ = consumer.assign([]);
        }
        if let Some(listener) = &mut self.listener
            && !lost.is_empty()
        {
            listener.on_partitions_lost(self.id, &lost);
        }
        Err(self.fenced_error())
    }

    fn fenced_error(&self) -> GroupError {
        GroupError::FencedMemberEpoch {
            group: self.shared.group_id.clone(),
            member: self.id,
        }
    }

    /// Catches up with the published target: release, confirm, and note what to take.
    fn reconcile(&mut self) -> Result<()> {
        let (target, member) = {
            let control = self.shared.control();
            (control.target.clone(), control.contains(self.id))
        };
        if !member {
            // Removed between our fence check and now: the fence is set, or about to be.
            self.liveness.fence.fence();
            return self.check_fenced();
        }
        let empty = BTreeSet::new();
        let mine = target.assignment.get(&self.id).unwrap_or(&empty);
        let revoked: Vec<TopicPartition> = self.owned.difference(mine).cloned().collect();
        if !revoked.is_empty() {
            if self.shared.config.auto_commit {
                let offsets = self.positions(revoked.iter());
                match self.commit_sync(offsets) {
                    Ok(()) => {}
                    Err(e @ GroupError::FencedMemberEpoch { .. }) => return Err(e),
                    // Giving the partition up matters more than the commit: the new owner
                    // re-reads from the last committed offset, which is at-least-once.
                    Err(e) => log::warn!(
                        "rill-group {:?}: {} could not commit before revocation: {e}",
                        self.shared.group_id,
                        self.id
                    ),
                }
            }
            if let Some(listener) = &mut self.listener {
                listener.on_partitions_revoked(self.id, &revoked);
            }
            self.release(&revoked);
        }
        self.epoch = target.epoch;
        let me = raw_id(self.id);
        let mut swept = false;
        for tp in &self.owned {
            let confirmed = self
                .tables
                .get(&tp.topic)
                .is_some_and(|t| t.confirm(tp.partition, me, target.epoch));
            swept |= !confirmed;
        }
        if swept {
            self.liveness.fence.fence();
            return self.check_fenced();
        }
        self.pending = mine.difference(&self.owned).cloned().collect();
        self.seen = u64::from(target.epoch);
        if !revoked.is_empty() {
            self.reassign(&BTreeSet::new())?;
        }
        Ok(())
    }

    /// Gives partitions back and stops reading them.
    fn release(&mut self, partitions: &[TopicPartition]) {
        let me = raw_id(self.id);
        for tp in partitions {
            if let Some(table) = self.tables.get(&tp.topic) {
                table.release(tp.partition, me);
            }
            self.owned.remove(tp);
        }
    }

    fn take_pending(&mut self) -> Result<()> {
        let claim = Claim {
            member: raw_id(self.id),
            epoch: self.epoch,
        };
        let mut gained = BTreeSet::new();
        let mut fenced = false;
        for tp in &self.pending {
            let Some(table) = self.tables.get(&tp.topic) else {
                continue;
            };
            match table.take(tp.partition, claim, &self.liveness.fence) {
                Take::Taken => {
                    gained.insert(tp.clone());
                }
                Take::Busy(_) => {}
                Take::Fenced => {
                    fenced = true;
                    break;
                }
            }
        }
        if fenced {
            // Whatever we took in this pass may have escaped the sweep; hand it back.
            let me = raw_id(self.id);
            for tp in &gained {
                if let Some(table) = self.tables.get(&tp.topic) {
                    table.release(tp.partition, me);
                }
            }
            return self.check_fenced();
        }
        if gained.is_empty() {
            return Ok(());
        }
        for tp in &gained {
            self.pending.remove(tp);
            self.owned.insert(tp.clone());
        }
        self.reassign(&gained)?;
        if let Some(listener) = &mut self.listener {
            let gained: Vec<TopicPartition> = gained.into_iter().collect();
            listener.on_partitions_assigned(self.id, &gained);
        }
        Ok(())
    }

    /// Points each topic's consumer at the owned partitions: kept ones where they were, new
    /// ones (`gained`) at the committed offset, or the configured start without one.
    fn reassign(&mut self, gained: &BTreeSet<TopicPartition>) -> Result<()> {
        let group = self.shared.group_id.clone();
        let committed: HashMap<&TopicPartition, i64> = {
            let store = self.shared.offsets();
            gained
                .iter()
                .filter_map(|tp| Some((tp, store.committed(&tp.topic, tp.partition)?)))
                .collect()
        };
        for (topic, consumer) in &mut self.consumers {
            let wanted: Vec<u32> = self
                .owned
                .iter()
                .filter(|tp| tp.topic == *topic)
                .map(|tp| tp.partition)
                .collect();
            let kept: Vec<(u32, i64)> = wanted
                .iter()
                .filter_map(|&p| Some((p, consumer.position(p)?)))
                .collect();
            let err = |e| GroupError::engine(&group, format!("assigning {topic:?}"), e);
            consumer.assign(wanted.iter().copied()).map_err(err)?;
            for (partition, position) in kept {
                consumer
                    .seek(partition, Seek::Offset(position))
                    .map_err(err)?;
            }
            for (tp, &offset) in committed.iter().filter(|(tp, _)| tp.topic == *topic) {
                if consumer.seek(tp.partition, Seek::Offset(offset)).is_err() {
                    // Out of the log's range: retention removed it (start from what is left)
                    // or the log lost an unsynced tail (start from its end).
                    let fallback = match consumer.seek(tp.partition, Seek::Earliest) {
                        Ok(start) if start > offset => Seek::Earliest,
                        _ => Seek::Latest,
                    };
                    consumer.seek(tp.partition, fallback).map_err(err)?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        match self.leave_inner() {
            Ok(()) | Err(GroupError::FencedMemberEpoch { .. }) => {}
            Err(e) => log::warn!(
                "rill-group {:?}: {} left with an error: {e}",
                self.shared.group_id,
                self.id
            ),
        }
    }
}
