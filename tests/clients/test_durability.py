"""What a client saw acknowledged survives a restart, and a SIGKILL."""

from __future__ import annotations

import time

from clients import (
    ConfluentConsumer,
    Record,
    all_delivered,
    confluent_common,
    consume_all,
    create_topic,
    produce,
)

PARTITIONS = 3


def test_restart_keeps_everything_acknowledged(broker, restart_broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    acked = {}
    # acks=all (durable) from librdkafka, acks=1 (written) from kafka-python, gzip from aiokafka:
    # a clean stop must keep all of them.
    for client, config, tag in [
        ("confluent-kafka", {"acks": "all"}, "c"),
        ("kafka-python", {"acks": 1}, "k"),
        ("aiokafka", {"acks": 1, "codec": "gzip"}, "a"),
    ]:
        records = [Record(f"{tag}-{i}".encode(), key=f"{i % 11}".encode()) for i in range(200)]
        for r, d in zip(
            records, all_delivered(produce(client, broker.bootstrap, topic_name, records, **config))
        ):
            acked[(d.partition, d.offset)] = r.value

    restart_broker()

    total = len(acked)
    got = consume_all("confluent-kafka", broker.bootstrap, topic_name, range(PARTITIONS), total)
    assert {(c.partition, c.offset): c.value for c in got} == acked

    # The log goes on where it stopped: the next offsets follow the recovered ones.
    ends = {p: 1 + max(o for (q, o) in acked if q == p) for p in range(PARTITIONS)}
    more = all_delivered(
        produce(
            "kafka-python",
            broker.bootstrap,
            topic_name,
            [Record(b"next", partition=p) for p in range(PARTITIONS)],
        )
    )
    assert {d.partition: d.offset for d in more} == ends


def test_topic_id_survives_restart(broker, restart_broker, topic_name):
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AdminClient

    create_topic(broker.bootstrap, topic_name, partitions=2)

    def describe():
        admin = AdminClient(confluent_common(broker.bootstrap))
        futures = admin.describe_topics(TopicCollection([topic_name]), request_timeout=8)
        return futures[topic_name].result(timeout=10)

    before = describe()
    assert len(before.partitions) == 2
    assert str(before.topic_id) != "AAAAAAAAAAAAAAAAAAAAAA", "the topic has no id (all zero)"
    restart_broker()
    after = describe()
    assert str(after.topic_id) == str(before.topic_id)
    assert len(after.partitions) == 2


def test_sigkill_during_acks_all_loses_nothing_acknowledged(broker, kill_broker, topic_name):
    """librdkafka produces as fast as it can with acks=all; the broker is SIGKILLed while requests
    are in flight. Every record whose delivery report said "acknowledged" must be there after a
    restart, at the offset the report gave."""
    create_topic(broker.bootstrap, topic_name, partitions=2)
    from confluent_kafka import Producer

    raw = Producer(
        confluent_common(broker.bootstrap)
        | {
            "acks": "all",
            "linger.ms": 2,
            # Reports for records in flight at the kill come back as failures within seconds.
            "message.timeout.ms": 3000,
            "socket.timeout.ms": 2000,
            # No retries: the claim under test is about records reported acknowledged, and a retry
            # after the restart would only blur which attempt the report was for.
            "retries": 0,
        }
    )
    acked: dict[bytes, tuple[int, int]] = {}
    failed = 0

    def report(err, msg):
        nonlocal failed
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            failed += 1

    sent = 0
    killed_at = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            raw.produce(topic_name, value=b"rec-%08d" % sent + b"." * 200, on_delivery=report)
            sent += 1
        except BufferError:
            raw.poll(0.01)
        raw.poll(0)
        # Kill once a good number are acknowledged, with production still going on.
        if killed_at is None and len(acked) >= 3000:
            kill_broker()
            killed_at = time.monotonic()
        if killed_at is not None and time.monotonic() - killed_at > 0.3:
            break
    assert killed_at is not None, f"only {len(acked)} acknowledgements in 20 s"
    left = raw.flush(15)
    assert left == 0, f"{left} records without a delivery report"
    acknowledged = len(acked)
    assert failed > 0, "no delivery failed: the kill did not interrupt production"
    del raw

    broker.start()
    consumer = ConfluentConsumer(broker.bootstrap, topic_name, range(2))
    try:
        ends = consumer.seek_latest()
        consumer.seek_earliest()
        got = consumer.poll_until(sum(ends.values()), timeout_s=30)
    finally:
        consumer.close()
    print(f"sent {sent}, acknowledged {acknowledged}, failed {failed}, stored after restart {ends}")
    stored = {(c.partition, c.offset): c.value for c in got}
    missing = [(v, at) for v, at in acked.items() if stored.get(at) != v]
    assert not missing, (
        f"{len(missing)} of {acknowledged} acknowledged records are missing or different after "
        f"the restart, e.g. {missing[:3]}; stored per partition {ends}"
    )
