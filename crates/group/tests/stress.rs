//! Churn: four producers write 24 partitions while members join and leave at random and
//! commit synchronously after every poll. Afterwards every record was delivered at least once
//! (so none was skipped), and an independent ownership checker, driven by the rebalance
//! listeners and consulted on every delivered record, never saw a partition with two owners.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_engine::Seek;
use rill_engine::{Engine, EngineConfig};
use rill_engine::{ProducerConfig, ProducerRecord};
use rill_group::{
    Group, GroupConfig, GroupError, MemberConfig, MemberId, RebalanceListener, StartFrom,
    TopicPartition,
};

const PARTITIONS: u32 = 24;
const PRODUCERS: u32 = 4;
const PER_PRODUCER: u32 = 12_000;
const WORKERS: u64 = 5;
const CHURN: Duration = Duration::from_millis(2500);

/// Who the listeners say owns each partition (0: nobody). Entered after a member's CAS took
/// the partition and left before it releases it, so with exclusive ownership words a CAS here
/// never fails.
struct Checker {
    owner: Vec<AtomicU64>,
    violations: AtomicU64,
}

impl Checker {
    fn enter(&self, member: MemberId, tp: &TopicPartition) {
        let slot = &self.owner[tp.partition as usize];
        if let Err(other) = slot.compare_exchange(0, member.0, Ordering::SeqCst, Ordering::SeqCst) {
            eprintln!("{tp} assigned to {member} while {other} holds it");
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn exit(&self, member: MemberId, tp: &TopicPartition) {
        let slot = &self.owner[tp.partition as usize];
        if slot
            .compare_exchange(member.0, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn holds(&self, member: MemberId, partition: u32) -> bool {
        self.owner[partition as usize].load(Ordering::SeqCst) == member.0
    }
}

struct Listener(Arc<Checker>);

impl RebalanceListener for Listener {
    fn on_partitions_revoked(&mut self, member: MemberId, partitions: &[TopicPartition]) {
        partitions.iter().for_each(|tp| self.0.exit(member, tp));
    }
    fn on_partitions_assigned(&mut self, member: MemberId, partitions: &[TopicPartition]) {
        partitions.iter().for_each(|tp| self.0.enter(member, tp));
    }
    fn on_partitions_lost(&mut self, member: MemberId, partitions: &[TopicPartition]) {
        partitions.iter().for_each(|tp| self.0.exit(member, tp));
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn churning_members_deliver_everything_with_exclusive_ownership() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig {
        shards: 2,
        pin_shards: false,
        ..EngineConfig::new(dir.path())
    })
    .unwrap();
    engine.create_topic("s", PARTITIONS).unwrap();
    let group = Group::new(
        &engine,
        "stress",
        GroupConfig {
            start: StartFrom::Earliest,
            session_timeout: Duration::from_secs(30),
            ..GroupConfig::default()
        },
    )
    .unwrap();
    let checker = Arc::new(Checker {
        owner: (0..PARTITIONS).map(|_| AtomicU64::new(0)).collect(),
        violations: AtomicU64::new(0),
    });
    let delivered: Mutex<Vec<Vec<u32>>> = Mutex::new(vec![Vec::new(); PARTITIONS as usize]);
    let stop = AtomicBool::new(false);
    let (joins, commits, records) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();

    std::thread::scope(|scope| {
        for id in 0..PRODUCERS {
            let engine = &engine;
            scope.spawn(move || {
                let mut producer = engine
                    .producer_with(
                        "s",
                        ProducerConfig {
                            batch_bytes: 4096,
                            ..ProducerConfig::default()
                        },
                    )
                    .unwrap();
                // Spread over the churn window so records arrive while ownership moves.
                let pause = CHURN / (PER_PRODUCER / 200);
                for seq in 0..PER_PRODUCER {
                    let value = [id.to_be_bytes(), seq.to_be_bytes()].concat();
                    producer
                        .send(ProducerRecord {
                            partition: Some((seq + id) % PARTITIONS),
                            ..ProducerRecord::new(None, &value)
                        })
                        .unwrap();
                    if seq % 200 == 199 {
                        producer.flush().unwrap();
                        std::thread::sleep(pause);
                    }
                }
                producer.flush().unwrap();
            });
        }
        for worker in 0..WORKERS {
            let (group, checker, delivered, stop) = (&group, &checker, &delivered, &stop);
            let (joins, commits, records) = (&joins, &commits, &records);
            scope.spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((worker + 1) * 0x1234_5678_9abc));
                // Worker 0 stays to the end and, with the others, drains what is left.
                while !stop.load(Ordering::SeqCst) || worker == 0 {
                    let mut member = group
                        .join(MemberConfig::new(["s"]).with_listener(Listener(checker.clone())))
                        .unwrap();
                    joins.fetch_add(1, Ordering::Relaxed);
                    let lifetime = Duration::from_millis(50 + rng.below(600));
                    let born = Instant::now();
                    let me = member.id();
                    while born.elapsed() < lifetime || stop.load(Ordering::SeqCst) {
                        if stop.load(Ordering::SeqCst) && worker != 0 {
                            break;
                        }
                        if worker == 0 && stop.load(Ordering::SeqCst) && drained(group) {
                            return;
                        }
                        let polled = member.poll(Duration::from_millis(10)).unwrap();
                        let mut seen = Vec::new();
                        polled
                            .for_each_record(|_, partition, record| {
                                if !checker.holds(me, partition) {
                                    eprintln!("{me} read s-{partition} it does not hold");
                                    checker.violations.fetch_add(1, Ordering::SeqCst);
                                }
                                seen.push((partition, record.offset));
                            })
                            .unwrap();
                        records.fetch_add(seen.len() as u64, Ordering::Relaxed);
                        {
                            let mut delivered = delivered.lock().unwrap();
                            for (p, offset) in seen {
                                let list = &mut delivered[p as usize];
                                let offset = offset as usize;
                                if list.len() <= offset {
                                    list.resize(offset + 1, 0);
                                }
                                list[offset] += 1;
                            }
                        }
                        match member.commit_sync(polled.offsets()) {
                            Ok(()) => {
                                commits.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e @ GroupError::FencedMemberEpoch { .. }) => panic!("{e}"),
                            Err(e) => panic!("commit failed: {e}"),
                        }
                    }
                    if rng.below(2) == 0 {
                        member.leave().unwrap();
                    } else {
                        drop(member);
                    }
                    if worker == 0 && stop.load(Ordering::SeqCst) && drained(group) {
                        return;
                    }
                }
            });
        }
        std::thread::sleep(CHURN + Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
    });

    let elapsed = started.elapsed();
    // The produced end of each partition, from a plain consumer.
    let mut consumer = engine.consumer("s").unwrap();
    consumer.assign_all().unwrap();
    let delivered = delivered.into_inner().unwrap();
    let mut total = 0u64;
    let mut redelivered = 0u64;
    for p in 0..PARTITIONS {
        let end = consumer.seek(p, Seek::Latest).unwrap() as usize;
        total += end as u64;
        let list = &delivered[p as usize];
        assert_eq!(list.len(), end, "s-{p}: delivered past or short of the end");
        if let Some(missing) = list.iter().position(|&n| n == 0) {
            panic!("s-{p}: offset {missing} was never delivered");
        }
        redelivered += list.iter().map(|&n| u64::from(n) - 1).sum::<u64>();
        assert_eq!(
            group.committed("s", p),
            Some(end as i64),
            "s-{p} fully committed"
        );
    }
    assert_eq!(total, u64::from(PRODUCERS * PER_PRODUCER));
    assert_eq!(checker.violations.load(Ordering::SeqCst), 0);
    eprintln!(
        "stress: {total} records in {elapsed:.2?}, {} delivered ({redelivered} redelivered), \
         {} joins, {} group epochs, {} sync commits",
        records.load(Ordering::Relaxed),
        joins.load(Ordering::Relaxed),
        group.epoch(),
        commits.load(Ordering::Relaxed),
    );
}

/// Every partition committed up to its end once producers are done.
fn drained(group: &Group) -> bool {
    let expected = u64::from(PRODUCERS * PER_PRODUCER);
    let committed: i64 = group.committed_offsets().values().sum();
    committed as u64 == expected
}
