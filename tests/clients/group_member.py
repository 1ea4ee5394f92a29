"""One consumer-group member in a process of its own, for the group tests.

    python group_member.py CLIENT PROTOCOL BOOTSTRAP TOPIC GROUP NAME [INSTANCE]

CLIENT is kafka-python or confluent-kafka; PROTOCOL is classic or consumer (KIP-848, librdkafka
only). The member subscribes to TOPIC in GROUP and polls until its stdin closes, then closes the
consumer (which commits and leaves, or for a static member only commits). It prints one JSON
line per event, each with `time.monotonic()` (CLOCK_MONOTONIC, the same clock in every process
of the machine, so the test can order events across members):

    ["assigned", t, [partitions]]      a rebalance callback gave it partitions
    ["revoked", t, [partitions]]       a rebalance callback (revoked or lost) took them
    ["record", t, partition, offset, value-as-latin-1]
    ["stopped", t, []]                 it stopped polling (it reads nothing after this)
    ["error", t, "message"]

Callbacks give the partitions that change: with the eager classic assignors a revocation of
everything and a new whole set; with KIP-848 (and cooperative assignors) only the difference.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from clients import REQUEST_TIMEOUT_MS, confluent_common

SESSION_MS = 6000
HEARTBEAT_MS = 300
MAX_POLL_MS = 10_000

_out = threading.Lock()


def emit(kind: str, *fields) -> None:
    with _out:
        sys.stdout.write(json.dumps([kind, time.monotonic(), *fields]) + "\n")
        sys.stdout.flush()


def watch_stdin(stop: threading.Event) -> None:
    """The parent closes our stdin to stop us (or dies, which closes it too)."""
    sys.stdin.read()
    stop.set()


def kafka_python(bootstrap, topic, group, name, instance, stop) -> None:
    from kafka import KafkaConsumer
    from kafka.consumer.subscription_state import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit("revoked", sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            emit("assigned", sorted(tp.partition for tp in assigned))

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=name,
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
        # metadata that has changed since (here: before its first metadata response, so with
        # no partitions), it rejoins on that metadata change alone, and its assignment of the
        # new generation makes `need_rejoin()` false again while its SyncGroup is still in
        # flight. If `poll(timeout_ms=100)` gives up then, no later poll awaits the join
        # (unlike Java's `rejoinNeededOrPending`): the member never applies the SyncGroup answer
        # nor heartbeats again, and its session runs out. A full metadata update after
        # subscribing means the leader's snapshot never changes on this fixed topic, so only
        # rebalances the coordinator asks for happen, and those keep `need_rejoin()` true until
        # the join completes. A metadata failure still ends the test in its waits.
        consumer.topics()
        while not stop.is_set():
            for tp, records in consumer.poll(timeout_ms=100).items():
                for r in records:
                    emit("record", tp.partition, r.offset, r.value.decode("latin-1"))
        emit("stopped", [])
    finally:
        consumer.close(autocommit=True)


def confluent(bootstrap, topic, group, name, instance, stop, protocol) -> None:
    from confluent_kafka import Consumer

    config = {
        **confluent_common(bootstrap),
        "group.id": group,
        "client.id": name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 200,
        "max.poll.interval.ms": MAX_POLL_MS,
        "fetch.wait.max.ms": 100,
        **({"group.instance.id": instance} if instance else {}),
    }
    if protocol == "consumer":
        # KIP-848: the coordinator assigns and sets the heartbeat interval and session timeout;
        # librdkafka refuses the classic protocol's settings for them.
        config["group.protocol"] = "consumer"
    else:
        config |= {"session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": HEARTBEAT_MS}
    consumer = Consumer(config)

    def on_assign(c, partitions):
        emit("assigned", sorted(tp.partition for tp in partitions))

    def on_revoke(c, partitions):
        emit("revoked", sorted(tp.partition for tp in partitions))

    try:
        consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
        while not stop.is_set():
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error() is not None:
                emit("error", str(msg.error()))
                continue
            emit("record", msg.partition(), msg.offset(), msg.value().decode("latin-1"))
        emit("stopped", [])
    finally:
        consumer.close()


def main() -> None:
    client, protocol, bootstrap, topic, group, name = sys.argv[1:7]
    instance = sys.argv[7] if len(sys.argv) > 7 else None
    stop = threading.Event()
    threading.Thread(target=watch_stdin, args=(stop,), daemon=True).start()
    try:
        if client == "kafka-python":
            kafka_python(bootstrap, topic, group, name, instance, stop)
        else:
            confluent(bootstrap, topic, group, name, instance, stop, protocol)
    except BaseException as e:  # the test reports it
        emit("error", repr(e))
        raise


if __name__ == "__main__":
    main()
