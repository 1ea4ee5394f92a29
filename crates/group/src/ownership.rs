//! Who owns each partition right now: one atomic word per partition, changed only by
//! compare-and-swap.
//!
//! The target assignment says who *should* own a partition; this table says who *does*. A
//! word packs the owner's member id (low 32 bits) and the member epoch under which it took or
//! last confirmed the partition (high 32 bits). Member ids start at 1, so 0 always means
//! "unowned" whatever the epoch. Because ownership is a single word and every change is a CAS
//! from an exact expected value, two members can never own one partition at once: a member
//! takes only from 0, and only the owner (or the coordinator fencing it) puts a 0 back.
//!
//! A member removed by the coordinator (session timeout) is *fenced*: its [`Fence`] is set and
//! its words are cleared, whatever epoch they carry (the member may be confirming one under a
//! new epoch at that very moment). A member that races with its own removal may still win a
//! CAS from 0 after the coordinator's sweep; it therefore re-checks its fence after every take
//! and gives the partition back. Each side puts a `SeqCst` fence between its store and its
//! load (the coordinator between setting the fence and sweeping, the member between its CAS
//! and the re-check), which is what makes that store-then-load pattern sound: with weaker
//! orderings each side could miss the other's write, and a fenced member would keep a
//! partition nobody releases. The accesses are `SeqCst` as well, which on its own suffices in
//! the language's memory model; the fences make the pairing explicit, and they are what loom
//! can check (it treats `SeqCst` accesses as acquire/release).
//!
//! The atomics come from the `sync` shim so the protocol can be model-checked under loom.

use crate::sync::{self, AtomicBool, AtomicU64, Ordering};

/// The owner of a partition: a member and the member epoch it holds the partition under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The owning member's id (1 or more; 0 is never a member).
    pub member: u32,
    /// The member epoch it took or last confirmed the partition under.
    pub epoch: u32,
}

impl Claim {
    fn pack(self) -> u64 {
        (u64::from(self.epoch) << 32) | u64::from(self.member)
    }

    fn unpack(word: u64) -> Option<Self> {
        (word != 0).then_some(Self {
            member: word as u32,
            epoch: (word >> 32) as u32,
        })
    }
}

/// Set once, when the coordinator removes a member; never cleared (a member that comes back
/// joins under a new id).
#[derive(Debug, Default)]
pub struct Fence(AtomicBool);

impl Fence {
    /// A fence that is not set.
    pub fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Whether the coordinator has removed the member.
    pub fn is_fenced(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Must happen before the coordinator sweeps the member's words (see the module docs);
    /// the `SeqCst` fence orders this store before the sweep's loads.
    pub fn fence(&self) {
        self.0.store(true, Ordering::SeqCst);
        sync::fence(Ordering::SeqCst);
    }
}

/// What [`OwnershipTable::take`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// The partition is now the caller's.
    Taken,
    /// Someone else still holds it; try again once they have reconciled.
    Busy(Claim),
    /// The caller has been removed from the group and holds nothing.
    Fenced,
}

/// The owners of one topic's partitions.
///
/// Public so that a coordinator outside this crate (the Kafka front end's KIP-848 groups, whose
/// members are remote) hands partitions over under the same rule in-process members follow: a
/// partition is taken only from "unowned", and only its owner (or the coordinator fencing it)
/// gives it back.
#[derive(Debug)]
pub struct OwnershipTable {
    words: Box<[AtomicU64]>,
}

impl OwnershipTable {
    /// A table of `partitions` unowned partitions.
    pub fn new(partitions: u32) -> Self {
        Self {
            words: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// How many partitions the table covers.
    pub fn len(&self) -> u32 {
        self.words.len() as u32
    }

    /// Whether the table covers no partition.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The current owner of `partition`; `None` if unowned or out of range.
    pub fn owner(&self, partition: u32) -> Option<Claim> {
        let word = self.words.get(partition as usize)?;
        Claim::unpack(word.load(Ordering::SeqCst))
    }

    /// Takes an unowned partition for `claim.member`. Never takes one another member holds.
    pub fn take(&self, partition: u32, claim: Claim, fence: &Fence) -> Take {
        let Some(word) = self.words.get(partition as usize) else {
            return Take::Busy(claim);
        };
        if fence.is_fenced() {
            return Take::Fenced;
        }
        if let Err(current) =
            word.compare_exchange(0, claim.pack(), Ordering::SeqCst, Ordering::SeqCst)
        {
            return match Claim::unpack(current) {
                Some(owner) if owner.member != claim.member => Take::Busy(owner),
                // Already ours (a retry after a lost race with our own re-epoch cannot happen:
                // only this member's thread changes its words besides the coordinator's sweep).
                Some(_) => Take::Taken,
                None => Take::Busy(claim),
            };
        }
        // The coordinator may have swept our words just before this CAS; if so it fenced us
        // first, and we must not keep what it could not see. The fence pairs with the one in
        // `Fence::fence`: either the sweep sees our CAS, or we see the fence.
        sync::fence(Ordering::SeqCst);
        if fence.is_fenced() {
            self.release(partition, claim.member);
            return Take::Fenced;
        }
        Take::Taken
    }

    /// Gives a partition back if `member` holds it, under any epoch; `false` if it did not
    /// (already released or swept).
    pub fn release(&self, partition: u32, member: u32) -> bool {
        let Some(word) = self.words.get(partition as usize) else {
            return false;
        };
        let mut current = word.load(Ordering::SeqCst);
        while Claim::unpack(current).is_some_and(|owner| owner.member == member) {
            match word.compare_exchange(current, 0, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return true,
                // The coordinator's sweep can race with the member confirming the partition
                // under a new epoch; the word is still the member's and must still be cleared,
                // or the fenced member (which never releases after noticing its fence) would
                // hold it forever. Each retry follows a change by the member, so this ends.
                Err(now) => current = now,
            }
        }
        false
    }

    /// Moves a partition `member` keeps across a rebalance to its new member epoch, so a
    /// commit can be checked against the exact (epoch, member) that owns the partition.
    /// `false` if the member no longer holds it (it was fenced and swept).
    pub fn confirm(&self, partition: u32, member: u32, epoch: u32) -> bool {
        let Some(word) = self.words.get(partition as usize) else {
            return false;
        };
        let current = word.load(Ordering::SeqCst);
        match Claim::unpack(current) {
            Some(owner) if owner.member == member => word
                .compare_exchange(
                    current,
                    Claim { member, epoch }.pack(),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok(),
            _ => false,
        }
    }

    /// Clears every word `member` holds: the coordinator's sweep after fencing it.
    pub fn release_member(&self, member: u32) -> usize {
        (0..self.len())
            .filter(|&partition| self.release(partition, member))
            .count()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn take_release_confirm() {
        let table = OwnershipTable::new(3);
        let fence = Fence::new();
        let a = Claim {
            member: 1,
            epoch: 7,
        };
        let b = Claim {
            member: 2,
            epoch: 8,
        };
        assert_eq!(table.take(0, a, &fence), Take::Taken);
        assert_eq!(table.take(0, b, &fence), Take::Busy(a));
        assert!(!table.release(0, 2), "only the owner releases");
        assert!(table.confirm(0, 1, 9));
        assert_eq!(
            table.owner(0),
            Some(Claim {
                member: 1,
                epoch: 9
            })
        );
        assert!(table.release(0, 1));
        assert_eq!(table.take(0, b, &fence), Take::Taken);
        assert_eq!(table.take(7, b, &fence), Take::Busy(b), "out of range");
        assert_eq!(table.release_member(2), 1);
        assert_eq!(table.owner(0), None);
        fence.fence();
        assert_eq!(table.take(1, a, &fence), Take::Fenced);
        assert_eq!(table.owner(1), None);
    }
}

/// Exhaustive interleavings of members joining, leaving, being fenced and reconciling
/// against a changing target.
///
/// Each simulated member makes a bounded number of polls (one reconcile round each, as
/// `Member::heartbeat` runs it) with a yield between them, so loom can explore every
/// interleaving to the end. A member that has not caught up by then finishes in a final
/// single-threaded pass after the threads are joined: the surviving members' next polls. Two
/// properties are checked:
/// - while the threads run, no partition is treated as owned by two members at once, unless
///   one of them has been fenced (the coordinator's sweep ended its claim and its commits are
///   refused; it just has not noticed yet);
/// - after the final pass every partition is owned by its target member, and a member that
///   left or was fenced owns nothing, in the table or in its own view.
///
/// ```text
/// RUSTFLAGS="--cfg loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=4 CARGO_TARGET_DIR=target/loom \
///     cargo test --release -p rill-group --lib ownership
/// ```
///
/// CI uses a preemption bound of 4 (seconds in all); 2 already runs every model, in well
/// under a second, but misses interleavings a third preemption reaches.
#[cfg(all(test, loom))]
mod loom_models {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread::{self, JoinHandle};

    /// Member ids in the models are 1 to 3.
    const MEMBERS: u32 = 3;
    const M1: usize = 1 << 1;
    const M2: usize = 1 << 2;
    const M3: usize = 1 << 3;
    /// The group word packs the member set (one bit per member id, low byte) and the group
    /// epoch (above it), so a join or a leave changes both in one step, as the coordinator
    /// does under its lock.
    const MASK: usize = 0xff;
    const EPOCH: usize = 0x100;
    /// Polls each member makes while the threads run. One is enough to race a release with a
    /// take; the second lets a member act on what it saw change during the first.
    const ROUNDS: usize = 2;

    fn bit(member: u32) -> usize {
        1 << member
    }

    fn epoch_of(group: usize) -> u32 {
        (group / EPOCH) as u32
    }

    /// The targets of the join and leave models, by member set (two partitions). Chosen so
    /// that every join or leave moves a partition, and the order of two concurrent changes
    /// matters: `{1}` to `{1, 2, 3}` moves partition 1 through member 2 or member 3 first.
    fn by_members(group: usize) -> &'static [u32] {
        match group & MASK {
            M1 => &[1, 1],
            M2 => &[2, 2],
            m if m == M1 | M2 => &[1, 2],
            m if m == M1 | M3 => &[1, 3],
            m if m == M2 | M3 => &[3, 2],
            m if m == M1 | M2 | M3 => &[3, 2],
            m => panic!("no target for member set {m:#b}"),
        }
    }

    /// What the threads share.
    struct World {
        table: OwnershipTable,
        /// The published group word (member set and epoch).
        group: AtomicUsize,
        /// `target(group)[p]` is the member partition `p` should go to.
        target: fn(usize) -> &'static [u32],
        /// By member id.
        fences: Vec<Fence>,
        /// The application's view, per partition: one bit per member treating the partition
        /// as its own. Set once a take has succeeded; cleared before the member gives the
        /// partition back (where it commits and calls the revocation listener).
        held: Vec<AtomicUsize>,
    }

    impl World {
        fn new(partitions: u32, group: usize, target: fn(usize) -> &'static [u32]) -> Arc<Self> {
            Arc::new(Self {
                table: OwnershipTable::new(partitions),
                group: AtomicUsize::new(group),
                target,
                fences: (0..=MEMBERS).map(|_| Fence::new()).collect(),
                held: (0..partitions).map(|_| AtomicUsize::new(0)).collect(),
            })
        }

        fn fence(&self, member: u32) -> &Fence {
            &self.fences[member as usize]
        }

        /// `me` starts treating `p` as its own. If another member still does, one of the two
        /// must be fenced: its claim ended with the sweep (or its take came after it), and
        /// its commits are refused.
        fn enter(&self, p: u32, me: u32) {
            let before = self.held[p as usize].fetch_or(bit(me), Ordering::SeqCst);
            for other in (1..=MEMBERS).filter(|&m| m != me && before & bit(m) != 0) {
                assert!(
                    self.fence(me).is_fenced() || self.fence(other).is_fenced(),
                    "partition {p} held by members {other} and {me} at once"
                );
            }
        }

        fn exit(&self, p: u32, me: u32) {
            self.held[p as usize].fetch_and(!bit(me), Ordering::SeqCst);
        }

        /// `Group::join`: add the member and publish the next epoch's target.
        fn join(&self, me: u32) {
            self.group.fetch_add(EPOCH + bit(me), Ordering::SeqCst);
        }

        /// `Shared::remove`: drop the member and publish the next epoch's target. (The real
        /// one does nothing for a member already expired; no model both fences and leaves the
        /// same member, so here it must still be in the group.)
        fn remove(&self, me: u32) {
            let before = self.group.fetch_add(EPOCH - bit(me), Ordering::SeqCst);
            assert_ne!(before & bit(me), 0, "member {me} removed twice");
        }

        /// `Shared::expire`: fence the member, sweep its partitions, then publish the target
        /// without it.
        fn expire(&self, me: u32) {
            self.fence(me).fence();
            self.table.release_member(me);
            self.remove(me);
        }
    }

    /// A simulated member: the state `Member` keeps between polls.
    struct Sim {
        me: u32,
        /// The member epoch takes and confirms are made under.
        epoch: u32,
        /// The group word last reconciled against.
        seen: Option<usize>,
        owned: Vec<u32>,
        /// In the target but still held by their previous owner.
        pending: Vec<u32>,
        /// Left or fenced: polls nothing more.
        gone: bool,
    }

    impl Sim {
        /// A member that has just joined and owns nothing yet.
        fn new(me: u32) -> Self {
            Self {
                me,
                epoch: 0,
                seen: None,
                owned: Vec::new(),
                pending: Vec::new(),
                gone: false,
            }
        }

        /// A member that finished reconciling with `group` before the model starts.
        fn settled(w: &World, me: u32, group: usize, owned: &[u32]) -> Self {
            let epoch = epoch_of(group);
            for &p in owned {
                let claim = Claim { member: me, epoch };
                assert_eq!(w.table.take(p, claim, w.fence(me)), Take::Taken);
                w.enter(p, me);
            }
            Self {
                epoch,
                seen: Some(group),
                owned: owned.to_vec(),
                ..Self::new(me)
            }
        }

        /// One `Member::heartbeat`: notice a fence, reconcile if the group moved (release
        /// what the target takes away, confirm what it keeps, note what to take), then take
        /// what is pending, giving back this pass's takes if the member turns out fenced.
        fn poll(&mut self, w: &World) {
            let me = self.me;
            if self.gone {
                return;
            }
            if w.fence(me).is_fenced() {
                return self.lose(w);
            }
            let group = w.group.load(Ordering::SeqCst);
            if self.seen != Some(group) {
                if group & bit(me) == 0 {
                    // Removed between the fence check and now: the fence is set, or about to be.
                    w.fence(me).fence();
                    return self.lose(w);
                }
                let target = (w.target)(group);
                self.owned.retain(|&p| {
                    if target[p as usize] == me {
                        return true;
                    }
                    w.exit(p, me);
                    w.table.release(p, me);
                    false
                });
                self.epoch = epoch_of(group);
                let mut swept = false;
                for &p in &self.owned {
                    swept |= !w.table.confirm(p, me, self.epoch);
                }
                if swept {
                    w.fence(me).fence();
                    return self.lose(w);
                }
                self.pending = (0..w.table.len())
                    .filter(|&p| target[p as usize] == me && !self.owned.contains(&p))
                    .collect();
                self.seen = Some(group);
            }
            let claim = Claim {
                member: me,
                epoch: self.epoch,
            };
            let mut gained = Vec::new();
            for &p in &self.pending {
                match w.table.take(p, claim, w.fence(me)) {
                    Take::Taken => gained.push(p),
                    Take::Busy(_) => {}
                    Take::Fenced => {
                        // Whatever this pass took may have escaped the sweep; hand it back.
                        for &p in &gained {
                            w.table.release(p, me);
                        }
                        return self.lose(w);
                    }
                }
            }
            for p in gained {
                w.enter(p, me);
                self.pending.retain(|&q| q != p);
                self.owned.push(p);
            }
        }

        /// `Member::leave`: stop using and give back everything, then leave the group.
        fn leave(&mut self, w: &World) {
            if self.gone {
                return;
            }
            if w.fence(self.me).is_fenced() {
                return self.lose(w);
            }
            for p in self.owned.drain(..) {
                w.exit(p, self.me);
                w.table.release(p, self.me);
            }
            self.pending.clear();
            self.gone = true;
            w.remove(self.me);
        }

        /// Noticed it was fenced: the coordinator swept its words already, so it only drops
        /// its own view (`Member::check_fenced`).
        fn lose(&mut self, w: &World) {
            for p in self.owned.drain(..) {
                w.exit(p, self.me);
            }
            self.pending.clear();
            self.gone = true;
        }

        /// The member's polls while the threads run: bounded, yielding between them.
        fn run(mut self, w: &World) -> Self {
            for round in 0..ROUNDS {
                if round > 0 {
                    thread::yield_now();
                }
                self.poll(w);
            }
            self
        }
    }

    fn spawn(w: &Arc<World>, f: impl FnOnce(&World) -> Sim + Send + 'static) -> JoinHandle<Sim> {
        let w = w.clone();
        thread::spawn(move || f(&w))
    }

    /// After the threads are joined: every member's next polls, one at a time, then the end
    /// state. Two passes: in the first every member releases what it lost, so in the second
    /// every take finds its partition free.
    fn settle(w: &World, sims: &mut [Sim]) {
        for _ in 0..2 {
            for sim in sims.iter_mut() {
                sim.poll(w);
            }
        }
        let group = w.group.load(Ordering::SeqCst);
        let target = (w.target)(group);
        for p in 0..w.table.len() {
            let want = target[p as usize];
            assert_eq!(
                w.table.owner(p).map(|c| c.member),
                Some(want),
                "partition {p} must end owned by member {want}"
            );
            assert_eq!(
                w.held[p as usize].load(Ordering::SeqCst),
                bit(want),
                "partition {p} must end used by member {want} alone"
            );
        }
        for sim in sims.iter() {
            let mut owned = sim.owned.clone();
            owned.sort_unstable();
            if group & bit(sim.me) == 0 {
                assert!(
                    sim.gone && owned.is_empty(),
                    "member {} kept {owned:?}",
                    sim.me
                );
                continue;
            }
            let mine: Vec<u32> = (0..w.table.len())
                .filter(|&p| target[p as usize] == sim.me)
                .collect();
            assert!(!sim.gone, "member {} dropped out", sim.me);
            assert_eq!(owned, mine, "member {} must own its target", sim.me);
            assert!(sim.pending.is_empty());
        }
    }

    /// Members 2 and 3 join at once while member 1 polls: partition 1 goes from member 1 to
    /// whichever joins first, then to member 2, and partition 0 from member 1 to member 3,
    /// each handed over while its next owner tries to take it.
    #[test]
    fn joins_move_partitions_without_overlap() {
        loom::model(|| {
            let w = World::new(2, EPOCH | M1, by_members);
            let s1 = Sim::settled(&w, 1, EPOCH | M1, &[0, 1]);
            let t1 = spawn(&w, move |w| s1.run(w));
            let t3 = spawn(&w, |w| {
                w.join(3);
                Sim::new(3).run(w)
            });
            w.join(2);
            let s2 = Sim::new(2).run(&w);
            let mut sims = [t1.join().unwrap(), s2, t3.join().unwrap()];
            settle(&w, &mut sims);
        });
    }

    /// The target changes again while members are still reconciling the previous change:
    /// epoch 1 moves partition 1 to member 2, epoch 2 swaps both partitions. The coordinator
    /// publishes epoch 2 at any point of member 1's and member 2's reconciliation.
    #[test]
    fn target_changes_mid_reconcile() {
        fn by_epoch(group: usize) -> &'static [u32] {
            [&[1, 1][..], &[1, 2], &[2, 1]][epoch_of(group) as usize]
        }
        loom::model(|| {
            let w = World::new(2, EPOCH | M1 | M2, by_epoch);
            let s1 = Sim::settled(&w, 1, M1 | M2, &[0, 1]);
            let t1 = spawn(&w, move |w| s1.run(w));
            let coordinator = {
                let w = w.clone();
                thread::spawn(move || {
                    w.group.fetch_add(EPOCH, Ordering::SeqCst);
                })
            };
            let s2 = Sim::new(2).run(&w);
            let mut sims = [t1.join().unwrap(), s2];
            coordinator.join().unwrap();
            settle(&w, &mut sims);
        });
    }

    /// Member 1 leaves halfway through handing partition 1 to member 2: it polls once, then
    /// gives back everything and leaves, while member 2 reconciles first to the target that
    /// gives it partition 1, then to the one that gives it both.
    #[test]
    fn leaver_hands_over_mid_reconcile() {
        loom::model(|| {
            let w = World::new(2, EPOCH | M1 | M2, by_members);
            let s1 = Sim::settled(&w, 1, M1, &[0, 1]);
            let t1 = spawn(&w, move |w| {
                let mut s1 = s1;
                s1.poll(w);
                s1.leave(w);
                s1
            });
            let s2 = Sim::new(2).run(&w);
            let mut sims = [t1.join().unwrap(), s2];
            settle(&w, &mut sims);
        });
    }

    /// Three members at once: member 3 joins while member 1 leaves and member 2 polls.
    /// Partition 0 ends with member 3 either way, but if the leave lands first it passes
    /// through member 2 on the way, which must let go of it as soon as the join lands.
    #[test]
    fn join_and_leave_concurrently() {
        loom::model(|| {
            let w = World::new(2, EPOCH | M1 | M2, by_members);
            let s1 = Sim::settled(&w, 1, EPOCH | M1 | M2, &[0]);
            let s2 = Sim::settled(&w, 2, EPOCH | M1 | M2, &[1]);
            let t1 = spawn(&w, move |w| {
                let mut s1 = s1;
                s1.poll(w);
                s1.leave(w);
                s1
            });
            let t3 = spawn(&w, |w| {
                w.join(3);
                Sim::new(3).run(w)
            });
            let s2 = s2.run(&w);
            let mut sims = [t1.join().unwrap(), s2, t3.join().unwrap()];
            settle(&w, &mut sims);
        });
    }

    /// Member 1 is removed (session timeout) halfway through a rebalance: epoch 1 moves
    /// partition 0 from member 2 to member 1 and keeps partition 1 with member 1, and while
    /// member 1 confirms partition 1 and takes partition 0 (as soon as member 2 lets go), the
    /// coordinator fences it, sweeps its words and publishes epoch 2 without it. Member 2 must
    /// end up with everything, and member 1 must never keep a partition it took behind the
    /// sweep's back.
    #[test]
    fn fenced_member_keeps_nothing() {
        fn by_epoch(group: usize) -> &'static [u32] {
            [&[2, 1][..], &[1, 1], &[2, 2]][epoch_of(group) as usize]
        }
        loom::model(|| {
            let w = World::new(2, EPOCH | M1 | M2, by_epoch);
            let s1 = Sim::settled(&w, 1, M1 | M2, &[1]);
            let s2 = Sim::settled(&w, 2, M1 | M2, &[0]);
            let t1 = spawn(&w, move |w| s1.run(w));
            let t2 = spawn(&w, move |w| s2.run(w));
            w.expire(1);
            let mut sims = [t1.join().unwrap(), t2.join().unwrap()];
            settle(&w, &mut sims);
        });
    }
}
