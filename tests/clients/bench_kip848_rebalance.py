"""How long KIP-848 partitions are ownerless when a member joins or leaves, over the wire.

(`--classic ASSIGNOR` measures the classic protocol the same way, for comparison.)

Not part of the test suite (pytest collects only test_*.py): a measurement, run by hand.

    python bench_kip848_rebalance.py [--rill target/release/rill] [--partitions 1000]
                                     [--members 10] [--heartbeat-ms 100]

It starts `rill serve` on a temporary directory, creates one topic, and starts MEMBERS
librdkafka consumers with `group.protocol=consumer` (threads of this process, each polling its
own consumer). Once the group has settled, one member joins, then one leaves. For every
partition that changes owner, the *handover gap* is the time from its revocation callback at
the old owner to its assignment callback at the new one: how long nobody consumes it (the pause
a consumer of that partition sees, less the fetch that follows). Also reported: from the change
(subscribe or close) to the last assignment callback, when the whole group has settled. All
times are CLOCK_MONOTONIC in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import free_port  # noqa: E402

WAIT_S = 120.0


class Member(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, group: str, name: str, events: list, lock,
                 protocol: dict):
        super().__init__(name=name, daemon=True)
        self.protocol = protocol
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.events, self.lock = events, lock
        self.owned: set[int] = set()
        self.stop_flag = threading.Event()
        self.started_at = 0.0

    def event(self, kind: str, partitions) -> None:
        t = time.monotonic()
        with self.lock:
            if kind == "assigned":
                self.owned |= partitions
            else:
                self.owned -= partitions
            self.events.append((t, self.name, kind, partitions))

    def run(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            **self.protocol,
            "client.id": self.name,
            "enable.auto.commit": False,
        })
        consumer.subscribe(
            [self.topic],
            on_assign=lambda c, ps: self.event("assigned", {p.partition for p in ps}),
            on_revoke=lambda c, ps: self.event("revoked", {p.partition for p in ps}),
            on_lost=lambda c, ps: self.event("revoked", {p.partition for p in ps}),
        )
        self.started_at = time.monotonic()
        while not self.stop_flag.is_set():
            consumer.poll(0.02)
        consumer.close()


def settled(members, partitions: int, lock) -> bool:
    with lock:
        sets = [m.owned for m in members]
    union = set().union(*sets)
    sizes = [len(s) for s in sets]
    return (
        len(union) == partitions
        and sum(sizes) == partitions
        and max(sizes) - min(sizes) <= 1
    )


def wait_settled(members, partitions: int, lock, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not settled(members, partitions, lock):
        if time.monotonic() > deadline:
            raise SystemExit(f"the group did not settle after {what} within {WAIT_S}s")
        time.sleep(0.01)


def handovers(events: list, since: float) -> dict:
    """Per moved partition, revocation at the old owner to assignment at the new one."""
    revoked_at: dict[int, float] = {}
    gaps: list[float] = []
    last = since
    for t, _, kind, partitions in sorted(events):
        if t < since:
            continue
        last = max(last, t)
        for p in partitions:
            if kind == "revoked":
                revoked_at[p] = t
            elif p in revoked_at:
                gaps.append(t - revoked_at.pop(p))
    return {
        "moved": len(gaps),
        "gap_max_ms": round(max(gaps) * 1000, 1) if gaps else None,
        "gap_median_ms": round(statistics.median(gaps) * 1000, 1) if gaps else None,
        "settled_after_ms": round((last - since) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rill", default=os.environ.get("RILL_BIN", str(HERE.parents[1] / "target/release/rill")))
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--heartbeat-ms", type=int, default=100)
    parser.add_argument(
        "--classic",
        metavar="ASSIGNOR",
        help="measure the classic protocol with this client-side assignor instead "
        "(e.g. cooperative-sticky or range), for comparison",
    )
    parser.add_argument("--server-log", help="append the server's log here (RILL_LOG sets its level)")
    args = parser.parse_args()

    from confluent_kafka.admin import AdminClient, NewTopic

    protocol = (
        {"group.protocol": "consumer"}
        if args.classic is None
        else {
            "group.protocol": "classic",
            "partition.assignment.strategy": args.classic,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": args.heartbeat_ms,
        }
    )

    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        bootstrap = f"127.0.0.1:{port}"
        server = subprocess.Popen(
            [args.rill, "serve", data, "--listen", bootstrap,
             "--group-consumer-heartbeat-interval-ms", str(args.heartbeat_ms)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert server.stderr is not None
            log = open(args.server_log, "a") if args.server_log else None

            def copy(line: str) -> None:
                if log is not None:
                    log.write(f"{time.monotonic():.3f} {line}")

            for line in server.stderr:
                copy(line)
                if "listening on" in line:
                    break

            def drain() -> None:
                for line in server.stderr:
                    copy(line)

            threading.Thread(target=drain, daemon=True).start()
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for future in admin.create_topics([NewTopic("rebalance", args.partitions, 1)]).values():
                future.result(30)
            events: list = []
            lock = threading.Lock()
            members = [
                Member(bootstrap, "rebalance", "bench", f"m{i}", events, lock, protocol)
                for i in range(args.members)
            ]
            for m in members:
                m.start()
            wait_settled(members, args.partitions, lock, "the start")
            time.sleep(1.0)

            joined = Member(bootstrap, "rebalance", "bench", f"m{args.members}", events, lock, protocol)
            t_join = time.monotonic()
            print(f"join at {t_join:.3f}", file=sys.stderr)
            joined.start()
            members.append(joined)
            wait_settled(members, args.partitions, lock, "the join")
            time.sleep(1.0)
            join = handovers(events, t_join)

            leaver = members.pop(0)
            t_leave = time.monotonic()
            leaver.stop_flag.set()
            leaver.join(WAIT_S)
            wait_settled(members, args.partitions, lock, "the leave")
            time.sleep(1.0)
            leave = handovers(events, t_leave)

            for m in members:
                m.stop_flag.set()
            for m in members:
                m.join(WAIT_S)
        finally:
            # A clean stop syncs and marks every partition clean: with a thousand of them on a
            # busy disk that takes a while, which is not what is measured here.
            stopping = time.monotonic()
            server.terminate()
            server.wait(WAIT_S)
            print(f"rill serve stopped in {time.monotonic() - stopping:.1f}s", file=sys.stderr)
    print(json.dumps({
        "partitions": args.partitions,
        "members": args.members,
        "heartbeat_ms": args.heartbeat_ms,
        "protocol": "consumer (KIP-848)" if args.classic is None else f"classic {args.classic}",
        "join": join,
        "leave": leave,
    }, indent=2))


if __name__ == "__main__":
    main()
