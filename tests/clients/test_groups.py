"""Consumer groups (Kafka's classic protocol) through real clients, unchanged.

A group of consumers drains a topic with several partitions while a member joins and another
leaves. What each member was assigned (from its rebalance callbacks) and each record it saw are
logged with a monotonic clock, all members being threads of this process. The checks:

- every record produced is delivered to some member;
- no partition is owned by two members at once: ownership intervals, from assignment to
  revocation (or to the moment a leaving member stops polling), never overlap across members;
- every record a member saw came from a partition it owned at that moment;
- the offsets the group committed survive a broker restart: a new member of the same group gets
  only the records produced after the restart.

Timeouts are small (session 6 s, heartbeat 300 ms) so a rebalance takes well under a second;
every wait is bounded.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from clients import REQUEST_TIMEOUT_MS, Record, all_delivered, confluent_common, create_topic, produce

PARTITIONS = 6
PER_PHASE = 60  # records per partition per phase
SESSION_MS = 6000
HEARTBEAT_MS = 300
MAX_POLL_MS = 10_000
# Bound on each wait for the group to make progress.
WAIT_S = 30.0


@dataclass
class Log:
    """What one member saw: rebalance events and records, each with its time."""

    name: str
    events: list = field(default_factory=list)  # (t, "assigned"|"revoked"|"stopped", {partitions})
    records: list = field(default_factory=list)  # (t, partition, offset, value)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event(self, kind: str, partitions) -> None:
        with self.lock:
            self.events.append((time.monotonic(), kind, set(partitions)))

    def record(self, partition: int, offset: int, value: bytes) -> None:
        with self.lock:
            self.records.append((time.monotonic(), partition, offset, value))


class Member(threading.Thread):
    """A consumer of one client library in its own thread, polling until told to stop."""

    def __init__(self, make, name: str):
        super().__init__(name=name, daemon=True)
        self.make = make
        self.log = Log(name)
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.make(self)
        except BaseException as e:  # reported by the test
            self.error = e

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(WAIT_S)
        assert not self.is_alive(), f"{self.name} did not stop within {WAIT_S}s"
        assert self.error is None, f"{self.name} failed: {self.error!r}"


def kafka_python_member(bootstrap: str, topic: str, group: str, instance: str | None = None):
    from kafka import KafkaConsumer
    from kafka.consumer.subscription_state import ConsumerRebalanceListener

    def run(member: Member) -> None:
        log = member.log

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                log.event("revoked", [tp.partition for tp in revoked])

            def on_partitions_assigned(self, assigned):
                log.event("assigned", [tp.partition for tp in assigned])

        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=member.name,
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            auto_commit_interval_ms=200,
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
            max_poll_interval_ms=MAX_POLL_MS,
            request_timeout_ms=REQUEST_TIMEOUT_MS + SESSION_MS,
            fetch_max_wait_ms=100,
            group_instance_id=instance,
        )
        try:
            consumer.subscribe([topic], listener=Listener())
            # Learn the topic's partitions before the first poll (which joins the group).
            # kafka-python 3.0.12 has a race a leader can lose otherwise: when it assigned on
            # metadata that has changed since (here: before its first metadata response, so
            # with no partitions), it rejoins on that metadata change alone, and its
            # assignment of the new generation makes `need_rejoin()` false again while its
            # SyncGroup is still in flight. If `poll(timeout_ms=100)` gives up then, no later
            # poll awaits the join (unlike Java's `rejoinNeededOrPending`): the member never
            # applies the SyncGroup answer nor heartbeats again, and its session runs out. A
            # full metadata update after subscribing (the coordinator's snapshot is refreshed
            # on it) means the leader's snapshot never changes on this fixed topic, so only
            # rebalances the coordinator asks for happen, and those keep `need_rejoin()` true
            # until the join completes. A metadata failure still ends the test in its waits.
            consumer.topics()
            while not member.stop_flag.is_set():
                for tp, records in consumer.poll(timeout_ms=100).items():
                    for r in records:
                        log.record(tp.partition, r.offset, r.value)
            log.event("stopped", [])
        finally:
            consumer.close(autocommit=True)

    return run


def confluent_member(bootstrap: str, topic: str, group: str, instance: str | None = None):
    from confluent_kafka import Consumer

    def run(member: Member) -> None:
        log = member.log
        consumer = Consumer({
            **confluent_common(bootstrap),
            "group.id": group,
            "client.id": member.name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": HEARTBEAT_MS,
            "max.poll.interval.ms": MAX_POLL_MS,
            "fetch.wait.max.ms": 100,
            **({"group.instance.id": instance} if instance else {}),
        })

        def on_assign(c, partitions):
            log.event("assigned", [tp.partition for tp in partitions])

        def on_revoke(c, partitions):
            log.event("revoked", [tp.partition for tp in partitions])

        try:
            consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
            while not member.stop_flag.is_set():
                msg = consumer.poll(0.1)
                if msg is None:
                    continue
                assert msg.error() is None, f"{member.name}: {msg.error()}"
                log.record(msg.partition(), msg.offset(), msg.value())
            log.event("stopped", [])
        finally:
            consumer.close()

    return run


MEMBERS = {"kafka-python": kafka_python_member, "confluent-kafka": confluent_member}


def phase_records(phase: int) -> list[Record]:
    return [
        Record(f"{phase}-{p}-{i}".encode(), partition=p)
        for p in range(PARTITIONS)
        for i in range(PER_PHASE)
    ]


def seen_values(members) -> set[bytes]:
    values = set()
    for m in members:
        with m.log.lock:
            values.update(v for _, _, _, v in m.log.records)
    return values


def wait_for(condition, what: str, timeout: float = WAIT_S, broker=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    server = f"\nserver log:\n{broker.log_tail(300)}" if broker is not None else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}{server}")


def ownership(log: Log) -> dict[int, list[tuple[float, float]]]:
    """Per partition, the intervals this member owned it."""
    owned: dict[int, float] = {}
    intervals: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for t, kind, partitions in log.events:
        if kind == "assigned":
            for p in partitions:
                owned.setdefault(p, t)
        elif kind == "revoked":
            for p in partitions:
                if p in owned:
                    intervals[p].append((owned.pop(p), t))
        elif kind == "stopped":
            for p, start in owned.items():
                intervals[p].append((start, t))
            owned.clear()
    for p, start in owned.items():
        intervals[p].append((start, float("inf")))
    return intervals


def check_exclusive(members) -> None:
    """No two members owned a partition at once, and each record came from an owned partition."""
    per_member = {m.name: ownership(m.log) for m in members}
    for p in range(PARTITIONS):
        spans = sorted(
            (start, end, name)
            for name, intervals in per_member.items()
            for start, end in intervals.get(p, [])
        )
        for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
            assert e1 <= s2, f"partition {p}: {n1} owned it until {e1}, {n2} from {s2}"
    for m in members:
        for t, p, offset, _ in m.log.records:
            spans = per_member[m.name].get(p, [])
            assert any(s <= t <= e for s, e in spans), (
                f"{m.name} saw {p}@{offset} at {t} outside its ownership {spans}"
            )


@pytest.mark.timeout(150)
@pytest.mark.parametrize("client", list(MEMBERS))
def test_group_drains_topic_across_join_leave_and_restart(broker, topic_name, client):
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    group = f"{topic_name}-group"
    make = MEMBERS[client](broker.bootstrap, topic_name, group)
    expected: set[bytes] = set()

    def produce_phase(phase: int) -> None:
        records = phase_records(phase)
        all_delivered(produce("confluent-kafka", broker.bootstrap, topic_name, records))
        expected.update(r.value for r in records)

    produce_phase(1)
    a, b = Member(make, "member-a"), Member(make, "member-b")
    members = [a, b]
    for m in members:
        m.start()
    try:
        wait_for(lambda: assigned(a) and assigned(b), "a and b to share the partitions", broker=broker)
        wait_for(lambda: seen_values(members) >= expected, "a and b to drain phase 1")

        c = Member(make, "member-c")
        members.append(c)
        c.start()
        wait_for(lambda: all(assigned(m) for m in members), "a, b and c to share the partitions")
        produce_phase(2)
        wait_for(lambda: seen_values(members) >= expected, "a, b and c to drain phase 2")

        a.stop()  # a leaves the group; b and c take its partitions
        produce_phase(3)
        wait_for(lambda: seen_values(members) >= expected, "b and c to drain phase 3")
        # Auto-commit catches up within its interval; close commits what is left.
    finally:
        for m in members:
            if m.is_alive():
                m.stop()

    check_exclusive(members)
    assert seen_values(members) == expected
    owners = {m.name for m in members if any(k == "assigned" and ps for _, k, ps in m.log.events)}
    assert owners == {"member-a", "member-b", "member-c"}, f"only {owners} were ever assigned"

    # The group's committed offsets survive a restart: a new member starts after them.
    broker.restart()
    produce_phase(4)
    late = Member(make, "member-d")
    late.start()
    try:
        after = {r.value for r in phase_records(4)}
        wait_for(lambda: seen_values([late]) >= after, "d to read what was produced after the restart", broker=broker)
        time.sleep(0.5)  # anything older would arrive with or before these
    finally:
        late.stop()
    assert seen_values([late]) == after, "a new member re-read records its group had committed"


def assigned(member: Member) -> set[int]:
    """The partitions of the member's latest assignment (eager protocol: the whole set)."""
    with member.log.lock:
        sets = [ps for _, kind, ps in member.log.events if kind == "assigned"]
    return sets[-1] if sets else set()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("client", list(MEMBERS))
def test_static_member_restart_keeps_its_partitions_without_a_rebalance(broker, topic_name, client):
    """A static member (group.instance.id) that restarts within its session timeout gets its
    partitions back, and the other member is not rebalanced (it sees no revocation).

    The restarted member is a follower: a is started first, so it leads every generation. (A
    restarted static *leader* is answered without a rebalance too, but kafka-python, which does
    not know JoinGroup v9's skip_assignment, then assigns on stale metadata and rejoins on its
    own, as it would against Kafka.)"""
    create_topic(broker.bootstrap, topic_name, partitions=4)
    group = f"{topic_name}-group"
    make_a = MEMBERS[client](broker.bootstrap, topic_name, group, instance="static-a")
    make_b = MEMBERS[client](broker.bootstrap, topic_name, group, instance="static-b")
    a, b = Member(make_a, "static-a"), Member(make_b, "static-b-1")
    started = [a]
    a.start()
    try:
        wait_for(lambda: assigned(a) == set(range(4)), "the first member's partitions")
        started.append(b)
        b.start()
        wait_for(
            lambda: assigned(a) and assigned(b) and assigned(a) | assigned(b) == set(range(4)),
            "both static members to be assigned",
        )
        # Let any second join round of the start-up settle before watching b.
        time.sleep(1.0)
        before_a = assigned(a)
        events_a = len(a.log.events)
        owned_b = assigned(b)
        b.stop()  # a static member's close does not leave the group
        again = Member(make_b, "static-b-2")
        started.append(again)
        again.start()
        wait_for(lambda: assigned(again), "the restarted static member's partitions")
        assert assigned(again) == owned_b
        time.sleep(1.0)
        with a.log.lock:
            later = a.log.events[events_a:]
        assert later == [], f"a was rebalanced by b's restart: {later}"
        assert assigned(a) == before_a
    finally:
        for m in started:
            if m.is_alive():
                m.stop()
