"""Fetch as clients rely on it: the long poll wakes on new data and otherwise waits (an idle
consumer costs the broker nothing), a partition limit smaller than a batch still makes progress,
an offset past the end is OFFSET_OUT_OF_RANGE (the client resets), and acks=0 still lands."""

from __future__ import annotations

import os
import threading
import time

from clients import (
    ConfluentConsumer,
    KafkaPythonConsumer,
    KafkaPythonProducer,
    Record,
    all_delivered,
    consume_all,
    create_topic,
    produce,
)


def cpu_seconds(pid: int) -> float:
    # utime and stime, fields 14 and 15 of /proc/PID/stat, in clock ticks.
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_long_poll_wakes_on_produce(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    # The broker may hold each fetch 3 s; a record produced meanwhile must end the wait early.
    consumer = ConfluentConsumer(broker.bootstrap, topic_name, [0], **{"fetch.wait.max.ms": 3000})
    producer = KafkaPythonProducer(broker.bootstrap)
    try:
        consumer.seek_latest()
        consumer.poll_until(1, timeout_s=1.0)  # the first, empty, long poll is under way
        produced_at = []

        def later():
            time.sleep(0.5)
            produced_at.append(time.monotonic())
            all_delivered(producer.send_all(topic_name, [Record(b"wake", partition=0)]))

        thread = threading.Thread(target=later)
        thread.start()
        got = consumer.poll_until(1, timeout_s=15)
        received_at = time.monotonic()
        thread.join(15)
    finally:
        consumer.close()
        producer.close()
    assert [c.value for c in got] == [b"wake"]
    waited = received_at - produced_at[0]
    print(f"long poll woke {waited:.3f}s after the send")
    # The send includes an fsync (acks=all); the bound is well below the 3 s long poll.
    assert waited < 1.5, f"the record reached the waiting consumer {waited:.2f}s after it was sent"


def test_idle_broker_and_idle_consumer_cost_no_cpu(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    pid = broker.pid()
    time.sleep(0.3)
    before = cpu_seconds(pid)
    time.sleep(1.0)
    idle = cpu_seconds(pid) - before
    assert idle <= 0.03, f"an idle broker used {idle:.3f}s of CPU in 1s"

    # A consumer waiting at the end of the log: fetch after fetch, each parked up to 500 ms.
    consumer = KafkaPythonConsumer(broker.bootstrap, topic_name, [0], fetch_max_wait_ms=500)
    try:
        consumer.seek_latest()
        before = cpu_seconds(pid)
        assert consumer.poll_until(1, timeout_s=2.0) == []
        waiting = cpu_seconds(pid) - before
    finally:
        consumer.close()
    print(f"broker CPU: {idle:.3f}s idle for 1s, {waiting:.3f}s serving an idle consumer for 2s")
    assert waiting <= 0.1, f"the broker used {waiting:.3f}s of CPU in 2s serving one idle consumer"


def test_partition_limit_smaller_than_a_batch_still_progresses(broker, topic_name):
    """KIP-74: the first batch is returned whole even when it exceeds the fetch limits, so a
    consumer with small limits makes progress instead of asking forever."""
    create_topic(broker.bootstrap, topic_name, partitions=1)
    records = [Record((b"%05d " % i) * 2000, partition=0) for i in range(40)]
    all_delivered(
        produce("confluent-kafka", broker.bootstrap, topic_name, records, **{"batch.size": 200_000})
    )
    for client, limits in [
        ("kafka-python", {"max_partition_fetch_bytes": 1024, "fetch_max_bytes": 1024}),
        # librdkafka wants fetch.max.bytes >= message.max.bytes, whose minimum is 1000.
        (
            "confluent-kafka",
            {"max.partition.fetch.bytes": 1024, "fetch.max.bytes": 1024, "message.max.bytes": 1000},
        ),
    ]:
        got = consume_all(client, broker.bootstrap, topic_name, [0], len(records), **limits)
        assert [c.value for c in got] == [r.value for r in records], client


def test_offset_past_the_end_is_out_of_range_and_the_client_resets(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    records = [Record(b"r%d" % i, partition=0) for i in range(10)]
    all_delivered(produce("kafka-python", broker.bootstrap, topic_name, records))
    # Only an OFFSET_OUT_OF_RANGE answer makes the client apply auto_offset_reset=earliest.
    consumer = KafkaPythonConsumer(broker.bootstrap, topic_name, [0], auto_offset_reset="earliest")
    try:
        consumer.seek(0, 1000)
        got = consumer.poll_until(10)
    finally:
        consumer.close()
    assert [(c.offset, c.value) for c in got] == [(i, r.value) for i, r in enumerate(records)]


def test_acks_zero_lands_without_waiting(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    records = [Record(b"fire-and-forget %d" % i, partition=0) for i in range(50)]
    all_delivered(produce("confluent-kafka", broker.bootstrap, topic_name, records, acks=0))
    got = consume_all("aiokafka", broker.bootstrap, topic_name, [0], len(records))
    assert [c.value for c in got] == [r.value for r in records]


def test_sigterm_does_not_wait_for_parked_fetches(broker, topic_name):
    """A consumer parked in a long poll must not hold up a clean shutdown until its wait expires."""
    create_topic(broker.bootstrap, topic_name, partitions=1)
    consumer = ConfluentConsumer(broker.bootstrap, topic_name, [0], **{"fetch.wait.max.ms": 10_000})
    try:
        consumer.seek_latest()
        consumer.poll_until(1, timeout_s=0.5)  # a fetch is now parked at the end of the log
        began = time.monotonic()
        broker.stop()  # SIGTERM, and exit 0
        took = time.monotonic() - began
    finally:
        consumer.close()
    assert took < 2.0, f"SIGTERM took {took:.2f}s with a fetch parked for up to 10s"
