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
pub(crate) struct Claim {
    pub member: u32,
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
pub(crate) struct Fence(AtomicBool);

impl Fence {
    pub fn new() -> Self {
        Self(AtomicBool::new(false))
    }

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
pub(crate) enum Take {
    /// The partition is now the caller's.
    Taken,
    /// Someone else still holds it; try again once they have reconciled.
    Busy(Claim),
    /// The caller has been removed from the group and holds nothing.
    Fenced,
}

/// The owners of one topic's partitions.
#[derive(Debug)]
pub(crate) struct OwnershipTable {
    words: Box<[AtomicU64]>,
}

impl OwnershipTable {
    pub fn new(partitions: u32) -> Self {
        Self {
            words: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn len(&self) -> u32 {
        self.words.len() as u32
    }

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

/// Exhaustive interleavings of members reconciling against a changing target.
///
/// ```text
/// RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
///     cargo test --release -p rill-group --lib ownership
/// ```
#[cfg(all(test, loom))]
mod loom_models {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    /// The application's view: bumped when a member starts treating a partition as its own,
    /// dropped before it gives it back. Two members at once would push a count to 2.
    /// Not strict when a member gets fenced: a fenced member's claim ends when the
    /// coordinator sweeps it, before the member itself notices (its commits are refused).
    struct Held(Vec<AtomicUsize>, bool);

    impl Held {
        fn new(n: usize) -> Self {
            Self((0..n).map(|_| AtomicUsize::new(0)).collect(), true)
        }
        fn lenient(n: usize) -> Self {
            Self((0..n).map(|_| AtomicUsize::new(0)).collect(), false)
        }
        fn enter(&self, p: u32) {
            let before = self.0[p as usize].fetch_add(1, Ordering::SeqCst);
            assert!(!self.1 || before == 0, "partition {p} held by two members");
        }
        fn exit(&self, p: u32) {
            self.0[p as usize].fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// `targets[e][p]` is the member partition `p` should go to at group epoch `e`.
    type Targets = &'static [&'static [u32]];

    #[allow(clippy::too_many_arguments)]
    /// A member's reconcile loop, as `Member` runs it: release what the current target takes
    /// away, confirm what it keeps, take what it gains once the previous owner let go. Runs
    /// until it has caught up with `last_epoch`, or until it is fenced.
    fn member(
        me: u32,
        table: &OwnershipTable,
        fence: &Fence,
        epoch: &AtomicUsize,
        targets: Targets,
        last_epoch: usize,
        held: &Held,
        mut owned: Vec<u32>,
    ) {
        let mut seen = usize::MAX;
        let mut pending: Vec<u32> = Vec::new();
        loop {
            let e = epoch.load(Ordering::SeqCst);
            if e != seen {
                seen = e;
                let target = targets[e];
                owned.retain(|&p| {
                    if target[p as usize] == me {
                        return true;
                    }
                    held.exit(p);
                    table.release(p, me);
                    false
                });
                owned.retain(|&p| {
                    let kept = table.confirm(p, me, e as u32);
                    if !kept {
                        held.exit(p);
                    }
                    kept
                });
                pending = (0..table.len())
                    .filter(|&p| target[p as usize] == me && !owned.contains(&p))
                    .collect();
            }
            let mut fenced = false;
            pending.retain(|&p| {
                match table.take(
                    p,
                    Claim {
                        member: me,
                        epoch: e as u32,
                    },
                    fence,
                ) {
                    Take::Taken => {
                        held.enter(p);
                        owned.push(p);
                        false
                    }
                    Take::Busy(_) => true,
                    Take::Fenced => {
                        fenced = true;
                        true
                    }
                }
            });
            if fenced || fence.is_fenced() {
                for p in owned.drain(..) {
                    held.exit(p);
                }
                return;
            }
            if seen == last_epoch && pending.is_empty() {
                return;
            }
            thread::yield_now();
        }
    }

    /// Members spin (yielding) while a previous owner lets go, which costs loom branches.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.max_branches = 100_000;
        builder.check(f);
    }

    fn check_final(table: &OwnershipTable, target: &[u32]) {
        for (p, &owner) in target.iter().enumerate() {
            assert_eq!(
                table.owner(p as u32).map(|c| c.member),
                Some(owner),
                "partition {p} must end with its target owner"
            );
        }
    }

    /// Member 2 joins: member 1 must hand over partitions 1 and 2 while member 2 grabs them.
    #[test]
    fn join_moves_partitions_without_overlap() {
        model(|| {
            static TARGETS: &[&[u32]] = &[&[1, 1, 1], &[1, 2, 2]];
            let table = Arc::new(OwnershipTable::new(3));
            let held = Arc::new(Held::new(3));
            let fence1 = Arc::new(Fence::new());
            for p in 0..3 {
                assert_eq!(
                    table.take(
                        p,
                        Claim {
                            member: 1,
                            epoch: 0
                        },
                        &fence1
                    ),
                    Take::Taken
                );
                held.enter(p);
            }
            let epoch = Arc::new(AtomicUsize::new(1));
            let t1 = {
                let (table, fence, epoch, held) =
                    (table.clone(), fence1.clone(), epoch.clone(), held.clone());
                thread::spawn(move || {
                    member(1, &table, &fence, &epoch, TARGETS, 1, &held, vec![0, 1, 2])
                })
            };
            let fence2 = Fence::new();
            member(2, &table, &fence2, &epoch, TARGETS, 1, &held, Vec::new());
            t1.join().unwrap();
            check_final(&table, TARGETS[1]);
        });
    }

    /// The target changes again while members are still reconciling the previous change:
    /// epoch 1 moves partition 1 to member 2, epoch 2 swaps both partitions. The coordinator
    /// publishes epoch 2 at any point of member 1's and member 2's reconciliation.
    // Ignored for now: the members' yield-spin while waiting for the epoch store makes loom
    // exceed its branch budget (or run for many minutes); the model needs the wait expressed
    // without a spin (e.g. a bounded number of reconcile rounds) before it can run in CI.
    #[ignore]
    #[test]
    fn target_changes_mid_reconcile() {
        model(|| {
            static TARGETS: &[&[u32]] = &[&[1, 1], &[1, 2], &[2, 1]];
            let table = Arc::new(OwnershipTable::new(2));
            let held = Arc::new(Held::new(2));
            let fence = Arc::new(Fence::new());
            for p in 0..2 {
                assert_eq!(
                    table.take(
                        p,
                        Claim {
                            member: 1,
                            epoch: 0
                        },
                        &fence
                    ),
                    Take::Taken
                );
                held.enter(p);
            }
            let epoch = Arc::new(AtomicUsize::new(1));
            let t1 = {
                let (table, fence, epoch, held) =
                    (table.clone(), fence.clone(), epoch.clone(), held.clone());
                thread::spawn(move || {
                    member(1, &table, &fence, &epoch, TARGETS, 2, &held, vec![0, 1])
                })
            };
            let t2 = {
                let epoch = epoch.clone();
                thread::spawn(move || epoch.store(2, Ordering::SeqCst))
            };
            member(
                2,
                &table,
                &Fence::new(),
                &epoch,
                TARGETS,
                2,
                &held,
                Vec::new(),
            );
            t1.join().unwrap();
            t2.join().unwrap();
            check_final(&table, TARGETS[2]);
        });
    }

    /// Member 1 is removed (session timeout) while it is still reconciling and taking: the
    /// coordinator fences it and sweeps its words; member 2 must end up with everything, and
    /// member 1 must never keep a partition it took behind the sweep's back.
    // Ignored for now: the members' yield-spin while waiting for the epoch store makes loom
    // exceed its branch budget (or run for many minutes); the model needs the wait expressed
    // without a spin (e.g. a bounded number of reconcile rounds) before it can run in CI.
    #[ignore]
    #[test]
    fn fenced_member_keeps_nothing() {
        model(|| {
            // Epoch 1 gives member 1 partition 1 (free) and member 2 partition 0; epoch 2 is
            // after member 1's removal.
            static TARGETS: &[&[u32]] = &[&[2, 0], &[2, 1], &[2, 2]];
            let table = Arc::new(OwnershipTable::new(2));
            let held = Arc::new(Held::lenient(2));
            let fence1 = Arc::new(Fence::new());
            let epoch = Arc::new(AtomicUsize::new(1));
            let t1 = {
                let (table, fence, epoch, held) =
                    (table.clone(), fence1.clone(), epoch.clone(), held.clone());
                thread::spawn(move || {
                    member(1, &table, &fence, &epoch, TARGETS, 2, &held, Vec::new())
                })
            };
            let t2 = {
                let (table, epoch, held) = (table.clone(), epoch.clone(), held.clone());
                thread::spawn(move || {
                    member(
                        2,
                        &table,
                        &Fence::new(),
                        &epoch,
                        TARGETS,
                        2,
                        &held,
                        Vec::new(),
                    )
                })
            };
            // The coordinator: fence, sweep, then publish the target without member 1.
            fence1.fence();
            table.release_member(1);
            epoch.store(2, Ordering::SeqCst);
            t1.join().unwrap();
            t2.join().unwrap();
            check_final(&table, TARGETS[2]);
        });
    }
}
