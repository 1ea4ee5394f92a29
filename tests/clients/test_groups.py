"""Consumer groups through real clients, unchanged: Kafka's classic protocol (kafka-python and
confluent-kafka) and KIP-848 (confluent-kafka with `group.protocol=consumer`).

A group of consumer processes drains a topic with several partitions while a member joins and
another leaves. Each member is a process of its own (group_member.py) that reports what its
rebalance callbacks assigned and revoked and each record it saw, with CLOCK_MONOTONIC, which all
processes of the machine share. The checks:

- every record produced is delivered to some member;
- no partition is owned by two members at once: ownership intervals, from assignment to
  revocation (or to the moment a leaving member stops polling), never overlap across members;
- every record a member saw came from a partition it owned at that moment;
- the offsets the group committed survive a broker restart: a new member of the same group gets
  only the records produced after the restart.

Classic timeouts are small (session 6 s, heartbeat 300 ms) so a rebalance takes well under a
second; KIP-848 members heartbeat at the broker's interval (100 ms). Every wait is bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clients import Record, all_delivered, create_topic, produce

HERE = Path(__file__).resolve().parent
PARTITIONS = 6
PER_PHASE = 60  # records per partition per phase
# Bound on each wait for the group to make progress.
WAIT_S = 30.0


@dataclass
class Log:
    """What one member saw: rebalance events and records, each with its time."""

    name: str
    events: list = field(default_factory=list)  # (t, "assigned"|"revoked"|"stopped", {partitions})
    records: list = field(default_factory=list)  # (t, partition, offset, value)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Member:
    """A consumer of one client library in a process of its own, polling until told to stop."""

    def __init__(self, client: str, protocol: str, bootstrap: str, topic: str, group: str,
                 name: str, instance: str | None = None):
        self.name = name
        self.args = [client, protocol, bootstrap, topic, group, name] + ([instance] if instance else [])
        self.log = Log(name)
        self.errors: list[str] = []
        self.stderr: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.readers: list[threading.Thread] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "group_member.py"), *self.args],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_events(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, t, *rest = json.loads(line)
            with self.log.lock:
                if kind == "record":
                    partition, offset, value = rest
                    self.log.records.append((t, partition, offset, value.encode("latin-1")))
                elif kind == "error":
                    self.errors.append(rest[0])
                else:
                    self.log.events.append((t, kind, set(rest[0])))

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Closes its stdin: it stops polling, closes its consumer (commit, leave) and exits."""
        assert self.proc is not None
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            code = self.proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail(f"{self.name} did not stop within {WAIT_S}s:\n" + "\n".join(self.stderr[-20:]))
        for reader in self.readers:
            reader.join(5)
        assert code == 0 and not self.errors, (
            f"{self.name} exited {code} with errors {self.errors}:\n" + "\n".join(self.stderr[-20:])
        )


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


# (client, group protocol): the classic protocol in both libraries, KIP-848 in librdkafka
# (kafka-python does not speak it).
DRAINERS = [("kafka-python", "classic"), ("confluent-kafka", "classic"), ("confluent-kafka", "consumer")]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("client,protocol", DRAINERS, ids=[f"{c}-{p}" for c, p in DRAINERS])
def test_group_drains_topic_across_join_leave_and_restart(broker, topic_name, client, protocol):
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    group = f"{topic_name}-group"

    def make(name: str) -> Member:
        return Member(client, protocol, broker.bootstrap, topic_name, group, name)
    expected: set[bytes] = set()

    def produce_phase(phase: int) -> None:
        records = phase_records(phase)
        all_delivered(produce("confluent-kafka", broker.bootstrap, topic_name, records))
        expected.update(r.value for r in records)

    produce_phase(1)
    a, b = make("member-a"), make("member-b")
    members = [a, b]
    for m in members:
        m.start()
    try:
        wait_for(lambda: assigned(a) and assigned(b), "a and b to share the partitions", broker=broker)
        wait_for(lambda: seen_values(members) >= expected, "a and b to drain phase 1")

        c = make("member-c")
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
    late = make("member-d")
    late.start()
    try:
        after = {r.value for r in phase_records(4)}
        wait_for(lambda: seen_values([late]) >= after, "d to read what was produced after the restart", broker=broker)
        time.sleep(0.5)  # anything older would arrive with or before these
    finally:
        late.stop()
    assert seen_values([late]) == after, "a new member re-read records its group had committed"


def assigned(member: Member) -> set[int]:
    """The partitions the member owns now, from its callbacks: eager protocols revoke all and
    assign the whole new set; KIP-848 and cooperative ones assign and revoke the difference."""
    owned: set[int] = set()
    with member.log.lock:
        for _, kind, partitions in member.log.events:
            if kind == "assigned":
                owned |= partitions
            elif kind == "revoked":
                owned -= partitions
            elif kind == "stopped":
                owned = set()
    return owned


@pytest.mark.timeout(90)
@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_static_member_restart_keeps_its_partitions_without_a_rebalance(broker, topic_name, client):
    """A static member (group.instance.id) that restarts within its session timeout gets its
    partitions back, and the other member is not rebalanced (it sees no revocation).

    The restarted member is a follower: a is started first, so it leads every generation. (A
    restarted static *leader* is answered without a rebalance too, but kafka-python, which does
    not know JoinGroup v9's skip_assignment, then assigns on stale metadata and rejoins on its
    own, as it would against Kafka.)"""
    create_topic(broker.bootstrap, topic_name, partitions=4)
    group = f"{topic_name}-group"
    def make(name: str, instance: str) -> Member:
        return Member(client, "classic", broker.bootstrap, topic_name, group, name, instance)

    a, b = make("static-a", "static-a"), make("static-b-1", "static-b")
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
        again = make("static-b-2", "static-b")
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
