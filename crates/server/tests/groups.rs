//! Classic consumer groups through a socket: the rebalance protocol's error paths (what hostile
//! or confused members get, and that the group recovers), and one offset store shared with
//! rill-group's in-process groups across restarts.
//!
//! Real clients' group behaviour is proved by the real-client suite (tests/clients).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_engine::{Engine, EngineConfig};
use rill_group::{Group, GroupConfig, MemberConfig, TopicPartition};
use rill_server::client::Client;
use rill_server::{Server, ServerConfig};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 3;

fn engine_config(dir: &std::path::Path) -> EngineConfig {
    let mut engine = EngineConfig::new(dir);
    engine.shards = 1;
    engine.pin_shards = false;
    engine
}

fn open(dir: &std::path::Path) -> (Server, String) {
    let mut config = ServerConfig::new(vec!["127.0.0.1:0".parse().unwrap()]);
    config.default_partitions = PARTITIONS;
    let server = Server::open(engine_config(dir), config, &[]).unwrap();
    let addr = server.local_addrs()[0].to_string();
    (server, addr)
}

fn connect(addr: &str) -> Client {
    Client::connect(addr, Duration::from_secs(10)).unwrap()
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn gid(s: &str) -> GroupId {
    GroupId(text(s))
}

fn create_topic(client: &mut Client) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(text(TOPIC)))),
        ]))
        .with_allow_auto_topic_creation(true);
    let response = client.send(12, &request).unwrap();
    assert_eq!(response.topics[0].error_code, 0);
}

fn join_request(group: &str, member: &str, session_ms: i32, rebalance_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_member_id(text(member))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(rebalance_ms)
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::from_static(b"meta")),
        ])
}

/// Joins as a new member (v5: MEMBER_ID_REQUIRED first, then with the id) and returns the
/// JoinGroup answer.
fn join_new(
    client: &mut Client,
    group: &str,
    session_ms: i32,
    rebalance_ms: i32,
) -> JoinGroupResponse {
    let first: JoinGroupResponse = client
        .send(5, &join_request(group, "", session_ms, rebalance_ms))
        .unwrap();
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    assert!(!first.member_id.is_empty());
    client
        .send(
            5,
            &join_request(group, &first.member_id, session_ms, rebalance_ms),
        )
        .unwrap()
}

fn sync(
    client: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, &'static [u8])],
) -> SyncGroupResponse {
    let request = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(text(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(id, bytes)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(text(id))
                        .with_assignment(Bytes::from_static(bytes))
                })
                .collect(),
        );
    client.send(3, &request).unwrap()
}

fn heartbeat(client: &mut Client, group: &str, generation: i32, member: &str) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(text(member));
    client.send(3, &request).unwrap().error_code
}

fn commit(
    client: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let request = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(text(TOPIC)))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                        })
                        .collect(),
                ),
        ]);
    let response = client.send(8, &request).unwrap();
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

fn fetch_offsets(client: &mut Client, group: &str) -> Vec<i64> {
    let request = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(text(TOPIC)))
                .with_partition_indexes((0..PARTITIONS as i32).collect()),
        ]));
    let response = client.send(7, &request).unwrap();
    assert_eq!(response.error_code, 0);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

fn state(client: &mut Client, group: &str) -> (String, usize) {
    let request = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
    let response = client.send(5, &request).unwrap();
    let described = &response.groups[0];
    (
        described.group_state.as_str().to_owned(),
        described.members.len(),
    )
}

#[test]
fn this_broker_coordinates_every_group_and_no_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = open(dir.path());
    let mut client = connect(&addr);
    let group = client
        .send(3, &FindCoordinatorRequest::default().with_key(text("g")))
        .unwrap();
    assert_eq!(group.error_code, 0);
    assert_eq!(group.port.to_string(), addr.rsplit(':').next().unwrap());
    let batched = client
        .send(
            4,
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![text("txn")]),
        )
        .unwrap();
    assert_eq!(
        batched.coordinators[0].error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code(),
        "a non-retriable refusal, not one a client retries until it times out"
    );
    drop(client);
    server.shutdown().unwrap();
}

#[test]
fn stale_and_unknown_members_get_kafkas_codes_and_the_group_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = open(dir.path());
    let mut a = connect(&addr);
    create_topic(&mut a);

    // A lone member: leader of generation 1 once the first-join delay passes.
    let joined = join_new(&mut a, "g", 10_000, 2_000);
    assert_eq!(joined.error_code, 0);
    let (gen1, id_a) = (joined.generation_id, joined.member_id.to_string());
    assert_eq!(joined.leader.as_str(), id_a);
    assert_eq!(joined.members.len(), 1);

    // Unknown member, wrong generation: refused with Kafka's codes.
    assert_eq!(
        sync(&mut a, "g", gen1, "nobody", &[]).error_code,
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        sync(&mut a, "g", gen1 + 7, &id_a, &[]).error_code,
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        heartbeat(&mut a, "g", gen1, "nobody"),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        heartbeat(&mut a, "no-such-group", 1, "nobody"),
        ResponseError::UnknownMemberId.code()
    );
    // A JoinGroup naming an id the group never gave out.
    let bogus: JoinGroupResponse = a
        .send(5, &join_request("g", "forged-id", 10_000, 2_000))
        .unwrap();
    assert_eq!(bogus.error_code, ResponseError::UnknownMemberId.code());

    // The leader's assignment names a member that is not in the group: ignored.
    let synced = sync(
        &mut a,
        "g",
        gen1,
        &id_a,
        &[(&id_a, b"mine"), ("ghost", b"theirs")],
    );
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"mine");
    assert_eq!(state(&mut a, "g"), ("Stable".into(), 1));
    assert_eq!(heartbeat(&mut a, "g", gen1, &id_a), 0);

    // A commit at a stale generation is refused; at the current one it lands.
    assert_eq!(
        commit(&mut a, "g", gen1 - 1, &id_a, &[(0, 5)]),
        vec![ResponseError::IllegalGeneration.code()]
    );
    assert_eq!(
        commit(&mut a, "g", gen1, "nobody", &[(0, 5)]),
        vec![ResponseError::UnknownMemberId.code()]
    );
    assert_eq!(
        commit(&mut a, "g", gen1, &id_a, &[(0, 5), (1, 9), (7, 1)]),
        vec![0, 0, ResponseError::UnknownTopicOrPartition.code()]
    );
    assert_eq!(fetch_offsets(&mut a, "g"), vec![5, 9, -1]);

    // A second member joins; the first never rejoins (it stops sending anything). The join
    // phase ends at the rebalance timeout without it, and it is out of the group.
    let started = Instant::now();
    let mut b = connect(&addr);
    let joined_b = join_new(&mut b, "g", 10_000, 2_000);
    let waited = started.elapsed();
    assert_eq!(joined_b.error_code, 0);
    assert!(joined_b.generation_id > gen1);
    assert_eq!(
        joined_b.leader, joined_b.member_id,
        "the only member left leads"
    );
    assert_eq!(joined_b.members.len(), 1);
    assert!(
        waited >= Duration::from_millis(1_900) && waited < Duration::from_secs(8),
        "the join phase waited {waited:?} for a member with a 2 s rebalance timeout"
    );
    assert_eq!(
        heartbeat(&mut a, "g", gen1, &id_a),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        commit(&mut a, "g", gen1, &id_a, &[(0, 6)]),
        vec![ResponseError::UnknownMemberId.code()]
    );
    let gen2 = joined_b.generation_id;
    let id_b = joined_b.member_id.to_string();
    assert_eq!(
        sync(&mut b, "g", gen2, &id_b, &[(&id_b, b"all")]).error_code,
        0
    );
    assert_eq!(commit(&mut b, "g", gen2, &id_b, &[(0, 6)]), vec![0]);
    assert_eq!(fetch_offsets(&mut b, "g"), vec![6, 9, -1]);

    // It leaves: the group is empty, and a standalone commit (no member, generation -1) is
    // accepted again, as Kafka accepts it for an empty group.
    let left = b
        .send(
            3,
            &LeaveGroupRequest::default()
                .with_group_id(gid("g"))
                .with_members(vec![
                    kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                        .with_member_id(text(&id_b)),
                ]),
        )
        .unwrap();
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(state(&mut b, "g").0, "Empty");
    assert_eq!(commit(&mut b, "g", -1, "", &[(2, 3)]), vec![0]);
    assert_eq!(fetch_offsets(&mut b, "g"), vec![6, 9, 3]);
    let listed = b.send(4, &ListGroupsRequest::default()).unwrap();
    assert!(
        listed
            .groups
            .iter()
            .any(|g| g.group_id.as_str() == "g" && g.group_state.as_str() == "Empty")
    );
    drop((a, b));
    server.shutdown().unwrap();
}

#[test]
fn a_member_that_never_heartbeats_is_removed_after_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = open(dir.path());
    let mut a = connect(&addr);
    let joined = join_new(&mut a, "quiet", 300, 1_000);
    let id = joined.member_id.to_string();
    assert_eq!(
        sync(&mut a, "quiet", joined.generation_id, &id, &[(&id, b"x")]).error_code,
        0
    );
    assert_eq!(state(&mut a, "quiet"), ("Stable".into(), 1));
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(&mut a, "quiet").0 != "Empty" {
        assert!(
            Instant::now() < deadline,
            "the silent member was never removed"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        heartbeat(&mut a, "quiet", joined.generation_id, &id),
        ResponseError::UnknownMemberId.code()
    );
    // It comes back as a new member and the group works again.
    let again = join_new(&mut a, "quiet", 10_000, 1_000);
    assert_eq!(again.error_code, 0);
    assert!(again.generation_id > joined.generation_id);
    drop(a);
    server.shutdown().unwrap();
}

#[test]
fn two_members_share_a_generation_and_a_follower_waits_for_the_leaders_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = open(dir.path());
    let addr2 = addr.clone();
    let first = thread::spawn(move || {
        let mut client = connect(&addr2);
        let joined = join_new(&mut client, "pair", 10_000, 5_000);
        (client, joined)
    });
    let mut b = connect(&addr);
    let joined_b = join_new(&mut b, "pair", 10_000, 5_000);
    let (a, joined_a) = first.join().unwrap();
    assert_eq!(joined_a.error_code, 0);
    assert_eq!(joined_a.generation_id, joined_b.generation_id);
    assert_eq!(joined_a.leader, joined_b.leader);
    let (leader, follower, mut leader_client, mut follower_client) =
        if joined_a.leader == joined_a.member_id {
            (joined_a, joined_b, a, b)
        } else {
            (joined_b, joined_a, b, a)
        };
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());
    let generation = leader.generation_id;
    let follower_id = follower.member_id.to_string();
    let waiting = thread::spawn(move || {
        let answer = sync(&mut follower_client, "pair", generation, &follower_id, &[]);
        (follower_client, answer)
    });
    thread::sleep(Duration::from_millis(100));
    let leader_id = leader.member_id.to_string();
    let f_id = follower.member_id.to_string();
    let synced = sync(
        &mut leader_client,
        "pair",
        generation,
        &leader_id,
        &[(&leader_id, b"L"), (&f_id, b"F")],
    );
    assert_eq!(&synced.assignment[..], b"L");
    let (_follower_client, answer) = waiting.join().unwrap();
    assert_eq!(answer.error_code, 0);
    assert_eq!(&answer.assignment[..], b"F");
    server.shutdown().unwrap();
}

#[test]
fn committed_offsets_are_one_store_with_in_process_groups_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    // Over the wire: a standalone commit of group "shared".
    {
        let (server, addr) = open(dir.path());
        let mut client = connect(&addr);
        create_topic(&mut client);
        assert_eq!(
            commit(&mut client, "shared", -1, "", &[(0, 4), (2, 8)]),
            vec![0, 0]
        );
        drop(client);
        server.shutdown().unwrap();
    }
    // In process: the same group id sees them, and commits more.
    {
        let engine = Engine::open(engine_config(dir.path())).unwrap();
        // No auto-commit: leaving would commit the member's positions (the topic is empty).
        let config = GroupConfig {
            auto_commit: false,
            ..GroupConfig::default()
        };
        let group = Group::new(&engine, "shared", config).unwrap();
        assert_eq!(group.committed(TOPIC, 0), Some(4));
        assert_eq!(group.committed(TOPIC, 1), None);
        assert_eq!(group.committed(TOPIC, 2), Some(8));
        let mut member = group.join(MemberConfig::new([TOPIC])).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while group.owner(TOPIC, 1).is_none() {
            assert!(
                Instant::now() < deadline,
                "the member never took its partitions"
            );
            member.poll(Duration::from_millis(10)).unwrap();
        }
        member
            .commit_sync([(
                TopicPartition::new(rill_engine::TopicName::new(TOPIC).unwrap(), 1),
                11,
            )])
            .unwrap();
        member.leave().unwrap();
        drop(group);
        engine.shutdown().unwrap();
    }
    // Over the wire again, after both restarts.
    let (server, addr) = open(dir.path());
    let mut client = connect(&addr);
    assert_eq!(fetch_offsets(&mut client, "shared"), vec![4, 11, 8]);
    drop(client);
    server.shutdown().unwrap();
}
