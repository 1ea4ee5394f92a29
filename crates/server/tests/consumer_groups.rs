//! KIP-848 consumer groups through a socket: the ConsumerGroupHeartbeat state machine (join,
//! epoch bumps, revocation before reassignment, fencing, leave, session and rebalance
//! timeouts), commits under member epochs in the one offset store, and random heartbeats that
//! must neither panic the server nor ever give a partition to two members.
//!
//! Real clients' behaviour is proved by the real-client suite (tests/clients).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiVersionsRequest, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, GroupId, ListGroupsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_engine::EngineConfig;
use rill_server::client::Client;
use rill_server::{Server, ServerConfig};
use uuid::Uuid;

const TOPIC: &str = "events";
const PARTITIONS: u32 = 6;

fn open(dir: &std::path::Path, session: Duration) -> (Server, String) {
    let mut engine = EngineConfig::new(dir);
    engine.shards = 1;
    engine.pin_shards = false;
    let mut config = ServerConfig::new(vec!["127.0.0.1:0".parse().unwrap()]);
    config.default_partitions = PARTITIONS;
    config.groups.consumer_session_timeout = session;
    let server = Server::open(engine, config, &[]).unwrap();
    let addr = server.local_addrs()[0].to_string();
    (server, addr)
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Creates the topic; returns its id.
fn create_topic(client: &mut Client) -> Uuid {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(text(TOPIC)))),
        ]))
        .with_allow_auto_topic_creation(true);
    let response = client.send(12, &request).unwrap();
    assert_eq!(response.topics[0].error_code, 0);
    response.topics[0].topic_id
}

type Owned = BTreeSet<i32>;

fn heartbeat(
    client: &mut Client,
    group: &str,
    member: &str,
    epoch: i32,
    owned: Option<(Uuid, &Owned)>,
) -> ConsumerGroupHeartbeatResponse {
    let mut request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_member_id(text(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
        .with_topic_partitions(owned.map(|(id, parts)| {
            vec![
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_partitions(parts.iter().copied().collect()),
            ]
        }));
    if epoch == 0 {
        request = request
            .with_rebalance_timeout_ms(1_000)
            .with_subscribed_topic_names(Some(vec![TopicName(text(TOPIC))]))
            .with_topic_partitions(Some(Vec::new()));
    }
    client.send(1, &request).unwrap()
}

fn assigned(response: &ConsumerGroupHeartbeatResponse) -> Option<Owned> {
    response.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().copied())
            .collect()
    })
}

/// A simulated well-behaved member: owns what it was last told, heartbeats with it.
struct Sim {
    id: String,
    epoch: i32,
    owned: Owned,
}

impl Sim {
    fn join(client: &mut Client, group: &str, id: &str) -> Self {
        let answer = heartbeat(client, group, id, 0, None);
        assert_eq!(answer.error_code, 0, "{answer:?}");
        Self {
            id: id.to_owned(),
            epoch: answer.member_epoch,
            owned: assigned(&answer).unwrap(),
        }
    }

    fn beat(&mut self, client: &mut Client, group: &str, topic: Uuid) -> i16 {
        let answer = heartbeat(
            client,
            group,
            &self.id,
            self.epoch,
            Some((topic, &self.owned)),
        );
        if answer.error_code == 0 {
            self.epoch = answer.member_epoch;
            if let Some(now) = assigned(&answer) {
                self.owned = now;
            }
        }
        answer.error_code
    }
}

/// Heartbeats every member in turn until each owns its share; fails after a bound.
fn settle(client: &mut Client, group: &str, topic: Uuid, sims: &mut [Sim]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for sim in sims.iter_mut() {
            assert_eq!(sim.beat(client, group, topic), 0);
        }
        assert_disjoint(sims.iter().map(|s| &s.owned));
        let total: usize = sims.iter().map(|s| s.owned.len()).sum();
        let (lo, hi) = (
            sims.iter().map(|s| s.owned.len()).min().unwrap_or(0),
            sims.iter().map(|s| s.owned.len()).max().unwrap_or(0),
        );
        if total == PARTITIONS as usize && hi - lo <= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "the group never settled");
    }
}

fn assert_disjoint<'a>(sets: impl Iterator<Item = &'a Owned>) {
    let mut seen = BTreeSet::new();
    for set in sets {
        for p in set {
            assert!(seen.insert(*p), "partition {p} given to two members");
        }
    }
}

#[test]
fn consumer_group_apis_are_advertised() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = open(dir.path(), Duration::from_secs(45));
    let mut client = Client::connect(&addr, Duration::from_secs(10)).unwrap();
    let versions = client.send(3, &ApiVersionsRequest::default()).unwrap();
    for key in [68, 69] {
        let range = versions.api_keys.iter().find(|k| k.api_key == key).unwrap();
        assert_eq!((range.min_version, range.max_version), (0, 1));
    }
    drop(client);
    server.shutdown().unwrap();
}

#[test]
fn joins_bump_epochs_and_partitions_move_only_after_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = open(dir.path(), Duration::from_secs(45));
    let mut client = Client::connect(&addr, Duration::from_secs(10)).unwrap();
    let topic = create_topic(&mut client);
    let group = "g";
    let mut a = Sim::join(&mut client, group, "a");
    assert_eq!(a.epoch, 1);
    assert_eq!(a.owned.len(), PARTITIONS as usize);

    // b joins: the group epoch bumps, but b gets nothing a still holds.
    let mut b = Sim::join(&mut client, group, "b");
    assert_eq!(b.epoch, 2);
    assert!(b.owned.is_empty());
    // a is told to give half back, under its old epoch, and keeps it until it says so.
    let before = a.owned.clone();
    assert_eq!(a.beat(&mut client, group, topic), 0);
    assert_eq!(
        a.epoch, 1,
        "the epoch moves only once the revocation is acknowledged"
    );
    assert_eq!(a.owned.len(), 3);
    let revoked: Owned = before.difference(&a.owned).copied().collect();
    assert_eq!(b.beat(&mut client, group, topic), 0);
    assert!(
        b.owned.is_empty(),
        "b got {:?} before a released it",
        b.owned
    );
    // a acknowledges; then b takes them.
    assert_eq!(a.beat(&mut client, group, topic), 0);
    assert_eq!(a.epoch, 2);
    assert_eq!(b.beat(&mut client, group, topic), 0);
    assert_eq!(b.owned, revoked);

    // A third member, then one leaves: always disjoint, always balanced in the end.
    let mut c = Sim::join(&mut client, group, "c");
    let mut sims = vec![a, b];
    sims.push(std::mem::replace(
        &mut c,
        Sim {
            id: String::new(),
            epoch: 0,
            owned: Owned::new(),
        },
    ));
    settle(&mut client, group, topic, &mut sims);
    let leaving = sims.remove(0);
    let left = heartbeat(&mut client, group, &leaving.id, -1, None);
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    settle(&mut client, group, topic, &mut sims);

    // ConsumerGroupDescribe agrees with the members.
    let described = client
        .send(
            1,
            &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(text(group))]),
        )
        .unwrap();
    let g = &described.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.assignor_name.as_str(), "uniform");
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.members.len(), 2);
    for m in &g.members {
        let sim = sims.iter().find(|s| s.id == m.member_id.as_str()).unwrap();
        assert_eq!(m.member_epoch, sim.epoch);
        let listed: Owned = m.assignment.topic_partitions[0]
            .partitions
            .iter()
            .copied()
            .collect();
        assert_eq!(listed, sim.owned);
    }
    let listed = client.send(5, &ListGroupsRequest::default()).unwrap();
    assert_eq!(listed.groups[0].group_type.as_str(), "consumer");
    drop(client);
    server.shutdown().unwrap();
}

#[test]
fn stale_future_and_unknown_epochs_are_fenced_and_a_fenced_member_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = open(dir.path(), Duration::from_secs(45));
    let mut client = Client::connect(&addr, Duration::from_secs(10)).unwrap();
    let topic = create_topic(&mut client);
    let group = "g";
    let mut a = Sim::join(&mut client, group, "a");
    let code = |r: ConsumerGroupHeartbeatResponse| r.error_code;
    assert_eq!(
        code(heartbeat(&mut client, group, "a", a.epoch + 1, None)),
        ResponseError::FencedMemberEpoch.code()
    );
    assert_eq!(
        code(heartbeat(&mut client, group, "zed", 4, None)),
        ResponseError::UnknownMemberId.code()
    );
    let mut b = Sim::join(&mut client, group, "b");
    let mut sims = vec![a, b];
    settle(&mut client, group, topic, &mut sims);
    b = sims.pop().unwrap();
    a = sims.pop().unwrap();
    // a's previous epoch with partitions it no longer owns is fenced.
    let all: Owned = (0..PARTITIONS as i32).collect();
    assert_eq!(
        code(heartbeat(
            &mut client,
            group,
            "a",
            a.epoch - 1,
            Some((topic, &all))
        )),
        ResponseError::FencedMemberEpoch.code()
    );
    // A fenced member rejoins under its id with epoch 0 and owns nothing until reassigned.
    let mut a = Sim::join(&mut client, group, "a");
    let mut sims = vec![a, b];
    settle(&mut client, group, topic, &mut sims);
    a = sims.remove(0);
    assert!(!a.owned.is_empty());
    drop(client);
    server.shutdown().unwrap();
}

#[test]
fn silent_members_expire_and_their_partitions_move() {
    let dir = tempfile::tempdir().unwrap();
    let session = Duration::from_millis(400);
    let (server, addr) = open(dir.path(), session);
    let mut client = Client::connect(&addr, Duration::from_secs(10)).unwrap();
    let topic = create_topic(&mut client);
    let group = "g";
    let silent = Sim::join(&mut client, group, "silent");
    assert_eq!(silent.owned.len(), PARTITIONS as usize);
    let joined = Instant::now();
    let mut live = Sim::join(&mut client, group, "live");
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.owned.len() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "the silent member never expired");
        assert_eq!(live.beat(&mut client, group, topic), 0);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        joined.elapsed() >= session,
        "moved before the session ran out"
    );
    assert_eq!(
        heartbeat(&mut client, group, "silent", silent.epoch, None).error_code,
        ResponseError::UnknownMemberId.code()
    );
    drop(client);
    server.shutdown().unwrap();
}

#[test]
fn commits_are_checked_against_member_epochs_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let commit = |client: &mut Client, member: &str, epoch: i32, offset: i64| {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(text("g")))
            .with_generation_id_or_member_epoch(epoch)
            .with_member_id(text(member))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(text(TOPIC)))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset),
                    ]),
            ]);
        let response = client.send(9, &request).unwrap();
        response.topics[0].partitions[0].error_code
    };
    {
        let (server, addr) = open(dir.path(), Duration::from_secs(45));
        let mut client = Client::connect(&addr, Duration::from_secs(10)).unwrap();
        create_topic(&mut client);
        let a = Sim::join(&mut client, "g", "a");
        assert_eq!(
            commit(&mut client, "a", a.epoch + 1, 5),
            ResponseError::StaleMemberEpoch.code()
        );
        assert_eq!(
            commit(&mut client, "ghost", a.epoch, 5),
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(commit(&mut client, "a", a.epoch, 7), 0);
        let fetch = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(text("g")))
                .with_member_id(Some(text("a")))
                .with_member_epoch(a.epoch + 3),
        ]);
        let fetched = client.send(9, &fetch).unwrap();
        assert_eq!(
            fetched.groups[0].error_code,
            ResponseError::StaleMemberEpoch.code()
        );
        drop(client);
        server.shutdown().unwrap();
    }
    // After a restart the group is empty (membership is not persisted) and its offsets remain.
    let (server, addr) = open(dir.path(), Duration::from_secs(45));
    let mut client = Client::connect(&addr, Duration::from_secs(10)).unwrap();
    let fetch = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text("g")))
            .with_topics(None),
    ]);
    let fetched = client.send(9, &fetch).unwrap();
    let offsets: Vec<i64> = fetched.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(offsets, vec![7]);
    drop(client);
    server.shutdown().unwrap();
}

/// splitmix64, so a failing case is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_heartbeats_never_panic_nor_give_a_partition_to_two_members() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = open(dir.path(), Duration::from_millis(300));
    let mut client = Client::connect(&addr, Duration::from_secs(10)).unwrap();
    let topic = create_topic(&mut client);
    let mut rng = Rng(0x05ee_d848);
    let members = ["m0", "m1", "m2", "m3", ""];
    let mut epochs: BTreeMap<&str, i32> = BTreeMap::new();
    // What each member was last given: mostly echoed back, as a real member would.
    let mut given: BTreeMap<&str, Owned> = BTreeMap::new();
    // What the run reached, so it cannot pass by refusing everything.
    let (mut accepted, mut most_held) = (0, 0);
    for step in 0..600 {
        let member = members[rng.below(members.len() as u64) as usize];
        let known = epochs.get(member).copied().unwrap_or(0);
        let epoch = match rng.below(8) {
            0 => 0,
            1 => -1,
            2 => -2,
            3 => rng.below(20) as i32 - 5,
            _ => known,
        };
        let well_formed = rng.below(4) != 0;
        let owned: Owned = if well_formed {
            if epoch == 0 {
                Owned::new()
            } else {
                given.get(member).cloned().unwrap_or_default()
            }
        } else {
            (0..PARTITIONS as i32 + 2)
                .filter(|_| rng.below(3) == 0)
                .collect()
        };
        let id = if rng.below(10) == 0 {
            Uuid::from_u128(u128::from(rng.next()))
        } else {
            topic
        };
        let subscribe = (epoch == 0 && well_formed) || rng.below(2) == 0;
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(text("g")))
            .with_member_id(text(member))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(if well_formed {
                1_000
            } else {
                rng.below(2_000) as i32 - 1
            })
            .with_instance_id((rng.below(4) == 0).then(|| text("static")))
            .with_server_assignor(match rng.below(6) {
                0 => Some(text("range")),
                1 if !well_formed => Some(text("bogus")),
                2 => Some(text("uniform")),
                _ => None,
            })
            .with_subscribed_topic_names(
                subscribe.then(|| vec![TopicName(text(TOPIC)), TopicName(text("nope"))]),
            )
            .with_topic_partitions((well_formed || rng.below(4) != 0).then(|| {
                vec![
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(owned.iter().copied().collect()),
                ]
            }));
        let request = if rng.below(20) == 0 {
            request.with_group_id(GroupId(text("")))
        } else {
            request
        };
        let answer = client.send(1, &request).unwrap();
        if answer.error_code == 0 {
            epochs.insert(member, answer.member_epoch);
            if let Some(now) = assigned(&answer) {
                given.insert(member, now);
            }
            accepted += 1;
        }
        if step % 25 == 24 {
            std::thread::sleep(Duration::from_millis(40));
        }
        // The coordinator's own view: no partition held by two members.
        let described = client
            .send(
                1,
                &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(text("g"))]),
            )
            .unwrap();
        let sets: Vec<Owned> = described.groups[0]
            .members
            .iter()
            .map(|m| {
                m.assignment
                    .topic_partitions
                    .iter()
                    .flat_map(|t| t.partitions.iter().copied())
                    .collect()
            })
            .collect();
        assert_disjoint(sets.iter());
        most_held = most_held.max(sets.iter().map(BTreeSet::len).sum::<usize>());
    }
    assert!(accepted >= 100, "only {accepted} heartbeats were accepted");
    assert_eq!(
        most_held, PARTITIONS as usize,
        "the members never held every partition"
    );
    // Still serving: a well-behaved pair settles.
    let mut sims = vec![
        Sim::join(&mut client, "after", "x"),
        Sim::join(&mut client, "after", "y"),
    ];
    settle(&mut client, "after", topic, &mut sims);
    drop(client);
    server.shutdown().unwrap();
}
