//! Groups end to end over a real engine: assignment, rebalance on join and leave, fencing,
//! session expiry, listeners, and resuming from committed offsets after a restart.
#![cfg(not(loom))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_engine::LogConfig;
use rill_engine::{Engine, EngineConfig};
use rill_engine::{ProducerConfig, ProducerRecord};
use rill_group::{
    Group, GroupConfig, GroupError, Member, MemberConfig, MemberId, RebalanceListener, StartFrom,
    TopicPartition,
};

fn engine(dir: &std::path::Path) -> Engine {
    Engine::open(EngineConfig {
        shards: 1,
        pin_shards: false,
        log: LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        },
        ..EngineConfig::new(dir)
    })
    .unwrap()
}

fn config() -> GroupConfig {
    GroupConfig {
        start: StartFrom::Earliest,
        offsets_topic_partitions: 2,
        ..GroupConfig::default()
    }
}

fn produce(engine: &Engine, topic: &str, partitions: u32, per_partition: u32) {
    let mut producer = engine
        .producer_with(topic, ProducerConfig::default())
        .unwrap();
    for p in 0..partitions {
        for i in 0..per_partition {
            let value = [p.to_be_bytes(), i.to_be_bytes()].concat();
            producer
                .send(ProducerRecord {
                    partition: Some(p),
                    ..ProducerRecord::new(None, &value)
                })
                .unwrap();
        }
    }
    producer.flush().unwrap();
}

/// Heartbeats every member until the group has settled on its current target.
fn settle(group: &Group, members: &mut [&mut Member]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for m in members.iter_mut() {
            m.heartbeat().unwrap();
        }
        if members.iter().all(|m| m.is_reconciled()) && group.is_settled() {
            return;
        }
        assert!(Instant::now() < deadline, "group did not settle");
    }
}

#[test]
fn members_split_partitions_and_rebalance_on_join_and_leave() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.create_topic("t", 6).unwrap();
    let group = Group::new(&engine, "g", config()).unwrap();
    let mut a = group.join(MemberConfig::new(["t"])).unwrap();
    settle(&group, &mut [&mut a]);
    assert_eq!(a.assignment().len(), 6);
    let epoch_one = group.epoch();

    let mut b = group.join(MemberConfig::new(["t"])).unwrap();
    assert!(group.epoch() > epoch_one, "a join bumps the group epoch");
    settle(&group, &mut [&mut a, &mut b]);
    assert_eq!(a.assignment().len(), 3);
    assert_eq!(b.assignment().len(), 3);
    let owned_a: BTreeSet<_> = a.assignment().into_iter().collect();
    assert!(b.assignment().iter().all(|tp| !owned_a.contains(tp)));
    for tp in a.assignment() {
        assert_eq!(group.owner("t", tp.partition), Some((a.id(), a.epoch())));
    }

    b.leave().unwrap();
    settle(&group, &mut [&mut a]);
    assert_eq!(a.assignment().len(), 6);
    assert_eq!(group.members(), vec![a.id()]);
}

#[test]
fn poll_reads_owned_partitions_and_commit_resumes_a_successor() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.create_topic("t", 2).unwrap();
    produce(&engine, "t", 2, 10);
    let group = Group::new(&engine, "g", config()).unwrap();
    let mut a = group.join(MemberConfig::new(["t"])).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let polled = a.poll(Duration::from_millis(100)).unwrap();
        polled
            .for_each_record(|topic, partition, record| {
                assert_eq!(topic, "t");
                seen.push((partition, record.offset));
            })
            .unwrap();
        a.commit_sync(polled.offsets()).unwrap();
    }
    assert_eq!(group.committed("t", 0), Some(10));
    assert_eq!(group.committed("t", 1), Some(10));
    // Rewind partition 0's commit; a successor must start exactly there.
    a.commit_sync([(tp(0), 4)]).unwrap();
    drop(a);
    // Auto-commit on leave wrote the position (10) back over the rewind.
    assert_eq!(group.committed("t", 0), Some(10));

    let mut b = group.join(MemberConfig::new(["t"])).unwrap();
    produce(&engine, "t", 1, 3);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.len() < 3 && Instant::now() < deadline {
        b.poll(Duration::from_millis(50))
            .unwrap()
            .for_each_record(|_, p, r| seen.push((p, r.offset)))
            .unwrap();
    }
    assert_eq!(seen, vec![(0, 10), (0, 11), (0, 12)]);
}

#[test]
fn stale_and_fenced_commits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.create_topic("t", 2).unwrap();
    let group = Group::new(
        &engine,
        "g",
        GroupConfig {
            session_timeout: Duration::from_millis(200),
            ..config()
        },
    )
    .unwrap();
    let mut a = group.join(MemberConfig::new(["t"])).unwrap();
    settle(&group, &mut [&mut a]);
    let old_epoch = a.epoch();
    let mut b = group.join(MemberConfig::new(["t"])).unwrap();
    settle(&group, &mut [&mut a, &mut b]);
    assert!(a.epoch() > old_epoch);

    let kept = a.assignment()[0].clone();
    let lost = b.assignment()[0].clone();
    match a.commit_sync_at(old_epoch, [(kept.clone(), 1)]) {
        Err(GroupError::StaleMemberEpoch { epoch, current, .. }) => {
            assert_eq!((epoch, current), (old_epoch, a.epoch()));
        }
        other => panic!("expected StaleMemberEpoch, got {other:?}"),
    }
    match a.commit_sync([(lost.clone(), 1)]) {
        Err(GroupError::NotOwner { partition, .. }) => assert_eq!(partition, lost.partition),
        other => panic!("expected NotOwner, got {other:?}"),
    }
    a.commit_sync([(kept.clone(), 1)]).unwrap();

    // `a` stops heartbeating; `b` keeps going, notices the expiry and takes everything.
    b.commit_sync([(lost.clone(), 7)]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while group.members().len() > 1 || !b.is_reconciled() || b.assignment().len() < 2 {
        assert!(Instant::now() < deadline, "expired member was not removed");
        b.poll(Duration::from_millis(20)).unwrap();
    }
    assert_eq!(group.members(), vec![b.id()]);
    // The zombie's commit is fenced and does not touch b's offset.
    match a.commit_sync([(lost.clone(), 1)]) {
        Err(GroupError::FencedMemberEpoch { member, .. }) => assert_eq!(member, a.id()),
        other => panic!("expected FencedMemberEpoch, got {other:?}"),
    }
    assert!(matches!(
        a.poll(Duration::ZERO),
        Err(GroupError::FencedMemberEpoch { .. })
    ));
    assert_eq!(group.committed(&lost.topic, lost.partition), Some(7));
}

/// (event, member, partitions) in the order the listeners heard them.
type Event = (&'static str, MemberId, Vec<u32>);

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&mut self, member: MemberId, partitions: &[TopicPartition]) {
        let list = partitions.iter().map(|tp| tp.partition).collect();
        self.0.lock().unwrap().push(("revoked", member, list));
    }
    fn on_partitions_assigned(&mut self, member: MemberId, partitions: &[TopicPartition]) {
        let list = partitions.iter().map(|tp| tp.partition).collect();
        self.0.lock().unwrap().push(("assigned", member, list));
    }
}

#[test]
fn listener_hears_revocations_before_the_new_owner_assigns() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    engine.create_topic("t", 4).unwrap();
    let group = Group::new(&engine, "g", config()).unwrap();
    let recorder = Recorder::default();
    let mut a = group
        .join(MemberConfig::new(["t"]).with_listener(recorder.clone()))
        .unwrap();
    settle(&group, &mut [&mut a]);
    let mut b = group
        .join(MemberConfig::new(["t"]).with_listener(recorder.clone()))
        .unwrap();
    // b first: it can take nothing until a lets go.
    b.heartbeat().unwrap();
    assert!(b.assignment().is_empty());
    settle(&group, &mut [&mut a, &mut b]);
    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(events[0], ("assigned", a.id(), vec![0, 1, 2, 3]));
    assert_eq!(events[1].0, "revoked");
    assert_eq!(events[1].1, a.id());
    assert_eq!(events[2], ("assigned", b.id(), events[1].2.clone()));
}

#[test]
fn a_restarted_group_resumes_at_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = engine(dir.path());
        engine.create_topic("t", 3).unwrap();
        produce(&engine, "t", 3, 20);
        // Without auto-commit, leaving keeps the explicit commits below rather than the
        // member's positions (it never polled, so they are all 0).
        let group = Group::new(
            &engine,
            "g",
            GroupConfig {
                auto_commit: false,
                ..config()
            },
        )
        .unwrap();
        let mut m = group.join(MemberConfig::new(["t"])).unwrap();
        settle(&group, &mut [&mut m]);
        m.commit_sync([(tp(0), 5), (tp(1), 17), (tp(2), 20)])
            .unwrap();
        // Overwritten: the last value per key wins on reload.
        m.commit_sync([(tp(0), 6)]).unwrap();
        // A second group's commits share the offsets topic and must not leak into "g".
        let other = Group::new(
            &engine,
            "other",
            GroupConfig {
                auto_commit: false,
                ..config()
            },
        )
        .unwrap();
        let mut o = other.join(MemberConfig::new(["t"])).unwrap();
        settle(&other, &mut [&mut o]);
        o.commit_sync([(tp(0), 1)]).unwrap();
        drop(o);
        drop(m);
        drop(other);
        drop(group);
        engine.shutdown().unwrap();
    }
    let engine = engine(dir.path());
    let group = Group::new(&engine, "g", config()).unwrap();
    let expected: BTreeMap<TopicPartition, i64> =
        [(tp(0), 6), (tp(1), 17), (tp(2), 20)].into_iter().collect();
    assert_eq!(group.committed_offsets(), expected);
    let mut m = group.join(MemberConfig::new(["t"])).unwrap();
    let mut first: BTreeMap<u32, i64> = BTreeMap::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while count < (20 - 6) + (20 - 17) && Instant::now() < deadline {
        m.poll(Duration::from_millis(50))
            .unwrap()
            .for_each_record(|_, p, r| {
                first.entry(p).or_insert(r.offset);
                count += 1;
            })
            .unwrap();
    }
    assert_eq!(count, 17);
    assert_eq!(first, BTreeMap::from([(0, 6), (1, 17)]));
}

/// Partition `partition` of the tests' topic "t".
fn tp(partition: u32) -> TopicPartition {
    TopicPartition::new(rill_engine::TopicName::new("t").unwrap(), partition)
}
