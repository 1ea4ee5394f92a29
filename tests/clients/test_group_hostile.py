"""Hostile group input: unknown members, stale generations and epochs, members that never
heartbeat or never give partitions back, a leader whose assignment names partitions that do not
exist. Each gets Kafka's typed error code, and afterwards the group still works for a real
client.

Classic requests are encoded by kafka-python's protocol classes; ConsumerGroupHeartbeat, which
no Python client exposes, by rawwire (from Kafka's schema). Neither is the broker's own codec.
"""

from __future__ import annotations

import itertools
import time

import pytest

import rawwire
from clients import Record, all_delivered, confluent_common, create_topic, produce
from conftest import Broker, free_port, rill_binary, running

UNKNOWN_TOPIC_OR_PARTITION = 3
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
INVALID_REQUEST = 42
GROUP_ID_NOT_FOUND = 69
MEMBER_ID_REQUIRED = 79
FENCED_MEMBER_EPOCH = 110
UNSUPPORTED_ASSIGNOR = 112
STALE_MEMBER_EPOCH = 113

PARTITIONS = 4
SESSION_MS = 1500  # the short-session broker's KIP-848 session timeout
WAIT_S = 30.0

_correlation = itertools.count(1)


@pytest.fixture
def short_session_broker(tmp_path):
    """A broker whose KIP-848 members expire after SESSION_MS without a heartbeat."""
    args = ["--group-consumer-session-timeout-ms", str(SESSION_MS)]
    yield from running(Broker(rill_binary(), tmp_path / "data", free_port(), extra_args=args))


def kp(sock, request_class, version: int, **fields):
    """Sends a kafka-python-encoded request and decodes its answer."""
    from kafka.protocol.api_header import ResponseClassRegistry  # noqa: F401 (registers classes)

    request = request_class[version](**fields)
    request.with_header(correlation_id=next(_correlation), client_id="hostile")
    body = rawwire.call(sock, request.encode(header=True, framed=True))
    response_class = request._header.get_response_class()
    return response_class.decode(body, header=True)


def heartbeat(sock, group, member, epoch, **kw) -> dict:
    frame = rawwire.consumer_group_heartbeat(next(_correlation), group, member, epoch, **kw)
    return rawwire.parse_consumer_group_heartbeat(rawwire.call(sock, frame))


def join(sock, group, member, topic, **kw) -> dict:
    kw.setdefault("rebalance_timeout_ms", 5000)
    return heartbeat(sock, group, member, 0, topics=[topic], owned=[], **kw)


def owned(answer: dict) -> list[tuple[bytes, list[int]]]:
    return list((answer["assignment"] or {}).items())


def count(answer: dict) -> int:
    return sum(len(ps) for ps in (answer["assignment"] or {}).values())


def fill(broker, topic: str) -> set[bytes]:
    records = [Record(f"{p}-{i}".encode(), partition=p) for p in range(PARTITIONS) for i in range(25)]
    all_delivered(produce("confluent-kafka", broker.bootstrap, topic, records))
    return {r.value for r in records}


def drain_with_kip848(broker, topic: str, group: str, expected: set[bytes]) -> None:
    """A real librdkafka KIP-848 consumer joins the group and reads every record."""
    from confluent_kafka import Consumer

    consumer = Consumer({
        **confluent_common(broker.bootstrap),
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
    })
    seen: set[bytes] = set()
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + WAIT_S
        while seen < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.add(msg.value())
    finally:
        consumer.close()
    assert seen >= expected, f"the group read {len(seen)} of {len(expected)}:\n{broker.log_tail()}"


def wait_until(condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {WAIT_S}s waiting for {what}")


def test_kip848_heartbeats_out_of_turn_get_typed_errors(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    expected = fill(broker, topic_name)
    group = f"{topic_name}-g"
    with rawwire.connect(broker.bootstrap) as sock:
        assert heartbeat(sock, group, "nobody", 3)["error"] == UNKNOWN_MEMBER_ID
        assert heartbeat(sock, group, "nobody", -1)["error"] == UNKNOWN_MEMBER_ID
        assert heartbeat(sock, group, "", 0, topics=[topic_name], owned=[], rebalance_timeout_ms=1)[
            "error"
        ] == INVALID_REQUEST, "v1 members name themselves"
        assert heartbeat(sock, group, "m1", -7)["error"] == INVALID_REQUEST
        assert heartbeat(sock, group, "m1", 0, topics=None, owned=[])["error"] == INVALID_REQUEST
        assert join(sock, group, "m1", topic_name, assignor="no-such")["error"] == UNSUPPORTED_ASSIGNOR

        first = join(sock, group, "m1", topic_name)
        assert first["error"] == 0 and first["epoch"] >= 1 and count(first) == PARTITIONS, first
        epoch = first["epoch"]
        # Joining again while claiming partitions is malformed; an epoch from the future is fenced.
        assert heartbeat(sock, group, "m1", 0, topics=[topic_name], owned=owned(first),
                         rebalance_timeout_ms=5000)["error"] == INVALID_REQUEST
        assert heartbeat(sock, group, "m1", epoch + 5)["error"] == FENCED_MEMBER_EPOCH
        # Claims of partitions of a topic id nobody has are ignored, not trusted.
        bogus = heartbeat(sock, group, "m1", epoch, owned=owned(first) + [(b"\x01" * 16, [0, 99])])
        assert bogus["error"] == 0 and bogus["epoch"] == epoch

        # A second member moves the group on: m1 must give partitions back before its epoch moves.
        second = join(sock, group, "m2", topic_name)
        assert second["error"] == 0 and count(second) == 0, "m2 got partitions m1 still holds"
        told = heartbeat(sock, group, "m1", epoch, owned=owned(first))
        assert told["error"] == 0 and told["epoch"] == epoch and count(told) == PARTITIONS // 2
        acked = heartbeat(sock, group, "m1", epoch, owned=owned(told))
        assert acked["epoch"] > epoch
        # Its previous epoch is accepted only with partitions it still owns (a lost answer);
        # with more, it is fenced.
        replay = heartbeat(sock, group, "m1", epoch, owned=owned(told))
        assert replay["error"] == 0 and replay["epoch"] == acked["epoch"], replay
        assert heartbeat(sock, group, "m1", epoch, owned=owned(first))["error"] == FENCED_MEMBER_EPOCH
        got = heartbeat(sock, group, "m2", second["epoch"], owned=[])
        assert got["error"] == 0 and count(got) == PARTITIONS // 2, got

        # Commits and fetches from stale or unknown members are refused, current ones accepted.
        from kafka.protocol.consumer.group import OffsetCommitRequest, OffsetFetchRequest

        Topic = OffsetCommitRequest.OffsetCommitRequestTopic
        Part = Topic.OffsetCommitRequestPartition

        def commit(member, member_epoch, partition=0):
            response = kp(sock, OffsetCommitRequest, 9, group_id=group,
                          generation_id_or_member_epoch=member_epoch, member_id=member,
                          group_instance_id=None,
                          topics=[Topic(name=topic_name, partitions=[
                              Part(partition_index=partition, committed_offset=1,
                                   committed_leader_epoch=-1, committed_metadata="")])])
            return response.topics[0].partitions[0].error_code

        assert commit("m1", epoch) == STALE_MEMBER_EPOCH
        assert commit("ghost", 1) == UNKNOWN_MEMBER_ID
        assert commit("m1", acked["epoch"]) == 0
        assert commit("m1", acked["epoch"], partition=PARTITIONS + 3) == UNKNOWN_TOPIC_OR_PARTITION
        Group = OffsetFetchRequest.OffsetFetchRequestGroup
        fetched = kp(sock, OffsetFetchRequest, 9, require_stable=False, groups=[
            Group(group_id=group, member_id="m1", member_epoch=epoch, topics=None)])
        assert fetched.groups[0].error_code == STALE_MEMBER_EPOCH

        # One protocol per group id: a classic JoinGroup here is refused while members are in.
        from kafka.protocol.consumer.group import JoinGroupRequest

        Protocol = JoinGroupRequest.JoinGroupRequestProtocol
        classic = kp(sock, JoinGroupRequest, 5, group_id=group, session_timeout_ms=6000,
                     rebalance_timeout_ms=6000, member_id="", group_instance_id=None,
                     protocol_type="consumer", protocols=[Protocol(name="range", metadata=b"")])
        assert classic.error_code == INCONSISTENT_GROUP_PROTOCOL

        for member in ("m1", "m2"):
            left = heartbeat(sock, group, member, -1)
            assert (left["error"], left["epoch"]) == (0, -1)
        assert heartbeat(sock, group, "m1", -1)["error"] == UNKNOWN_MEMBER_ID

        # A body cut short closes this connection only.
        frame = rawwire.consumer_group_heartbeat(99, group, "m3", 0, topics=[topic_name], owned=[])
        cut = frame[4:-10]
        sock.sendall(len(cut).to_bytes(4, "big") + cut)
        rawwire.wait_closed(sock)

    # The group recovers: a real KIP-848 consumer reads everything (nothing was committed past
    # offset 1 of partition 0, so it may skip that one record).
    drain_with_kip848(broker, topic_name, group, {v for v in expected if v != b"0-0"})


def test_kip848_silent_member_expires_and_its_partitions_move(short_session_broker, topic_name):
    broker = short_session_broker
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    expected = fill(broker, topic_name)
    group = f"{topic_name}-g"
    with rawwire.connect(broker.bootstrap) as sock:
        silent = join(sock, group, "silent", topic_name)
        assert count(silent) == PARTITIONS
        began = time.monotonic()
        other = join(sock, group, "other", topic_name)
        assert count(other) == 0, "a partition was given while its owner still held it"

        def everything():
            answer = heartbeat(sock, group, "other", other["epoch"], owned=owned(other))
            assert answer["error"] == 0, answer
            other.update(epoch=answer["epoch"], assignment=answer["assignment"] or other["assignment"])
            return count(answer) == PARTITIONS

        wait_until(everything, "the silent member's partitions to move")
        assert time.monotonic() - began >= SESSION_MS / 1000 * 0.8, "moved before the session ran out"
        assert heartbeat(sock, group, "silent", silent["epoch"])["error"] == UNKNOWN_MEMBER_ID
        assert heartbeat(sock, group, "other", -1)["error"] == 0
    drain_with_kip848(broker, topic_name, group, expected)


def test_kip848_member_that_never_revokes_is_removed_after_its_rebalance_timeout(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    group = f"{topic_name}-g"
    with rawwire.connect(broker.bootstrap) as sock:
        stubborn = join(sock, group, "stubborn", topic_name, rebalance_timeout_ms=1000)
        held = owned(stubborn)
        other = join(sock, group, "other", topic_name)
        began = time.monotonic()

        def removed():
            # Keeps claiming everything it was told to give back.
            answer = heartbeat(sock, group, "stubborn", stubborn["epoch"], owned=held)
            return answer["error"] == UNKNOWN_MEMBER_ID

        wait_until(removed, "the stubborn member's removal")
        assert time.monotonic() - began >= 0.8
        answer = heartbeat(sock, group, "other", other["epoch"], owned=[])
        assert answer["error"] == 0 and count(answer) == PARTITIONS, answer


def test_kip848_and_classic_keep_to_their_own_group_ids(broker, topic_name):
    """A KIP-848 heartbeat for a classic group that has members is GROUP_ID_NOT_FOUND."""
    from kafka.protocol.consumer.group import JoinGroupRequest

    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    group = f"{topic_name}-g"
    Protocol = JoinGroupRequest.JoinGroupRequestProtocol
    with rawwire.connect(broker.bootstrap) as sock:
        fields = dict(group_id=group, session_timeout_ms=6000, rebalance_timeout_ms=6000,
                      group_instance_id=None, protocol_type="consumer",
                      protocols=[Protocol(name="range", metadata=b"")])
        first = kp(sock, JoinGroupRequest, 5, member_id="", **fields)
        assert first.error_code == MEMBER_ID_REQUIRED
        joined = kp(sock, JoinGroupRequest, 5, member_id=first.member_id, **fields)
        assert joined.error_code == 0
        assert join(sock, group, "m1", topic_name)["error"] == GROUP_ID_NOT_FOUND


def test_classic_out_of_turn_requests_and_a_bad_leader(broker, topic_name):
    """Unknown members and stale generations get typed errors; a leader whose assignment names
    partitions that do not exist, then goes silent, holds the group up only until its session
    runs out: a real consumer then gets the partitions and reads everything."""
    from kafka.protocol.consumer.group import (
        HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest, SyncGroupRequest,
    )
    from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription

    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    expected = fill(broker, topic_name)
    group = f"{topic_name}-g"
    Protocol = JoinGroupRequest.JoinGroupRequestProtocol
    subscription = ConsumerProtocolSubscription(version=0, topics=[topic_name], user_data=None).encode()
    bad = ConsumerProtocolAssignment(
        version=0,
        assigned_partitions=[
            ConsumerProtocolAssignment.TopicPartition(topic=topic_name, partitions=[0, 77]),
            ConsumerProtocolAssignment.TopicPartition(topic="no-such-topic", partitions=[5]),
        ],
        user_data=None,
    ).encode()
    with rawwire.connect(broker.bootstrap) as sock:
        fields = dict(group_id=group, session_timeout_ms=1000, rebalance_timeout_ms=1000,
                      group_instance_id=None, protocol_type="consumer",
                      protocols=[Protocol(name="range", metadata=subscription)])
        member = kp(sock, JoinGroupRequest, 5, member_id="", **fields).member_id
        joined = kp(sock, JoinGroupRequest, 5, member_id=member, **fields)
        assert joined.error_code == 0 and joined.leader == member
        generation = joined.generation_id

        assert kp(sock, HeartbeatRequest, 3, group_id=group, generation_id=generation,
                  member_id="ghost", group_instance_id=None).error_code == UNKNOWN_MEMBER_ID
        assert kp(sock, HeartbeatRequest, 3, group_id=group, generation_id=generation + 3,
                  member_id=member, group_instance_id=None).error_code == ILLEGAL_GENERATION
        Assignment = SyncGroupRequest.SyncGroupRequestAssignment
        stale = kp(sock, SyncGroupRequest, 3, group_id=group, generation_id=generation - 1,
                   member_id=member, group_instance_id=None, assignments=[])
        assert stale.error_code == ILLEGAL_GENERATION
        synced = kp(sock, SyncGroupRequest, 3, group_id=group, generation_id=generation,
                    member_id=member, group_instance_id=None,
                    assignments=[Assignment(member_id=member, assignment=bad),
                                 Assignment(member_id="not-a-member", assignment=bad)])
        assert synced.error_code == 0 and synced.assignment == bad

        Topic = OffsetCommitRequest.OffsetCommitRequestTopic
        Part = Topic.OffsetCommitRequestPartition

        def commit(generation_id, member_id, partition):
            response = kp(sock, OffsetCommitRequest, 7, group_id=group,
                          generation_id_or_member_epoch=generation_id, member_id=member_id,
                          group_instance_id=None,
                          topics=[Topic(name=topic_name, partitions=[
                              Part(partition_index=partition, committed_offset=0,
                                   committed_leader_epoch=-1, committed_metadata="")])])
            return response.topics[0].partitions[0].error_code

        assert commit(generation - 1, member, 0) == ILLEGAL_GENERATION
        assert commit(generation, "ghost", 0) == UNKNOWN_MEMBER_ID
        assert commit(generation, member, 77) == UNKNOWN_TOPIC_OR_PARTITION
        assert commit(generation, member, 0) == 0
        # From here on the leader is silent.

    # A real consumer joins: the rebalance waits for the silent leader only until its session
    # (1 s) runs out, then the newcomer leads, assigns every partition and reads every record.
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest",
        session_timeout_ms=6000, heartbeat_interval_ms=300, enable_auto_commit=False,
    )
    seen: set[bytes] = set()
    try:
        consumer.subscribe([topic_name])
        consumer.topics()
        deadline = time.monotonic() + WAIT_S
        while seen < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                seen.update(r.value for r in records)
        assignment = {tp.partition for tp in consumer.assignment()}
    finally:
        consumer.close(autocommit=False)
    assert seen >= expected, f"read {len(seen)} of {len(expected)}:\n{broker.log_tail()}"
    assert assignment == set(range(PARTITIONS))
