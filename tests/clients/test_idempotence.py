"""Idempotent producers: a retried batch is appended once, across restarts and SIGKILLs.

The raw tests send Produce and InitProducerId frames by hand (the request layout is Kafka's
documented one) around record batches built by kafka-python's own record builder, so the
batches are a real client's bytes, not this suite's.
"""

from __future__ import annotations

import struct
import time

from clients import ConfluentConsumer, confluent_common, create_topic
from rawwire import connect, frame, read_frame, request_header

PRODUCE = 0
INIT_PRODUCER_ID = 22
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_TXN_STATE = 48
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53


def kafka_string(text: str | None) -> bytes:
    if text is None:
        return struct.pack(">h", -1)
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def init_producer_id(sock, correlation_id: int, transactional_id: str | None = None):
    """InitProducerId v0: (error code, producer id, epoch)."""
    body = kafka_string(transactional_id) + struct.pack(">i", 60_000)
    sock.sendall(frame(request_header(INIT_PRODUCER_ID, 0, correlation_id, flexible=False) + body))
    response = read_frame(sock)
    got, _throttle, error, producer_id, epoch = struct.unpack(">iihqh", response)
    assert got == correlation_id
    return error, producer_id, epoch


def produce(sock, correlation_id: int, topic: str, batch: bytes) -> tuple[int, int]:
    """Produce v3, acks=-1, one batch to partition 0: (error code, base offset)."""
    body = (
        kafka_string(None)  # transactional id
        + struct.pack(">hi", -1, 10_000)
        + struct.pack(">i", 1)
        + kafka_string(topic)
        + struct.pack(">i", 1)
        + struct.pack(">ii", 0, len(batch))
        + batch
    )
    sock.sendall(frame(request_header(PRODUCE, 3, correlation_id, flexible=False) + body))
    response = read_frame(sock)
    got, topics = struct.unpack_from(">ii", response, 0)
    assert got == correlation_id and topics == 1
    (name_len,) = struct.unpack_from(">h", response, 8)
    at = 10 + name_len
    partitions, index, error, base = struct.unpack_from(">iihq", response, at)
    assert partitions == 1 and index == 0
    return error, base


def kafka_python_batch(
    producer_id: int, epoch: int, sequence: int, values: list[bytes], transactional=False
) -> bytes:
    from kafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=transactional,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
        batch_size=1 << 20,
    )
    now = int(time.time() * 1000)
    for i, value in enumerate(values):
        builder.append(i, timestamp=now, key=None, value=value, headers=[])
    return bytes(builder.build())


def stored(bootstrap: str, topic: str, partitions: int) -> dict[int, list[bytes]]:
    """Every record of the topic, per partition in offset order."""
    consumer = ConfluentConsumer(bootstrap, topic, range(partitions))
    try:
        ends = consumer.seek_latest()
        consumer.seek_earliest()
        got = consumer.poll_until(sum(ends.values()), timeout_s=30)
    finally:
        consumer.close()
    out: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for record in sorted(got, key=lambda c: (c.partition, c.offset)):
        assert record.offset == len(out[record.partition]), "offsets must be dense"
        out[record.partition].append(record.value)
    assert {p: len(v) for p, v in out.items()} == ends, f"read {len(got)} of {ends}"
    return out


def test_a_replayed_batch_gets_its_first_offsets_and_appends_nothing(
    broker, restart_broker, kill_broker, topic_name
):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    with connect(broker.bootstrap) as sock:
        error, pid, epoch = init_producer_id(sock, 1)
        assert (error, epoch) == (0, 0) and pid >= 0, (error, pid, epoch)
        first = kafka_python_batch(pid, 0, 0, [b"a", b"b", b"c"])
        second = kafka_python_batch(pid, 0, 3, [b"d", b"e"])
        assert produce(sock, 2, topic_name, first) == (0, 0)
        assert produce(sock, 3, topic_name, second) == (0, 3)
        # The replay of an acknowledged batch: success, with the offsets it got the first time.
        assert produce(sock, 4, topic_name, first) == (0, 0)
        assert produce(sock, 5, topic_name, second) == (0, 3)
        gap = kafka_python_batch(pid, 0, 9, [b"x"])
        assert produce(sock, 6, topic_name, gap)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        txn = kafka_python_batch(pid, 0, 5, [b"t"], transactional=True)
        assert produce(sock, 7, topic_name, txn)[0] == INVALID_TXN_STATE
        refused = init_producer_id(sock, 8, transactional_id="txn")
        assert refused == (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1), refused
    # The state comes back after a clean restart and after a SIGKILL.
    restart_broker()
    with connect(broker.bootstrap) as sock:
        assert produce(sock, 1, topic_name, first) == (0, 0)
        assert init_producer_id(sock, 2)[1] > pid, "a producer id was handed out twice"
    kill_broker()
    broker.start()
    with connect(broker.bootstrap) as sock:
        assert produce(sock, 1, topic_name, second) == (0, 3)
        third = kafka_python_batch(pid, 0, 5, [b"f"])
        assert produce(sock, 2, topic_name, third) == (0, 5)
    assert stored(broker.bootstrap, topic_name, 1) == {0: [b"a", b"b", b"c", b"d", b"e", b"f"]}


RESTARTS = 8
PARTITIONS = 3
# Seconds of production between two kills.
KILL_EVERY_S = 0.7
# Records of 1 KiB and a 20 ms linger make requests of a few hundred KiB, whose write and fsync
# take long enough that a kill often lands after a batch is stored but before it is answered:
# exactly the batches librdkafka then retries.
PADDING = b"." * 1024


def test_idempotent_librdkafka_across_sigkills_stores_each_record_once_in_order(
    broker, kill_broker, topic_name
):
    """librdkafka with enable.idempotence and acks=all produces while the broker is SIGKILLed
    and restarted several times; its retries after each restart must not duplicate anything,
    and each partition must hold its records in send order."""
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    from confluent_kafka import Producer

    producer = Producer(
        confluent_common(broker.bootstrap)
        | {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            # Long enough for every record to outlive a restart and be retried to success.
            "message.timeout.ms": 120_000,
            "request.timeout.ms": 5_000,
        }
    )
    acked: dict[bytes, tuple[int, int]] = {}
    failures: list[str] = []

    def report(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            failures.append(str(err))

    sent = 0
    restarts = 0
    next_kill = time.monotonic() + KILL_EVERY_S
    deadline = time.monotonic() + 60
    while restarts < RESTARTS and time.monotonic() < deadline:
        try:
            producer.produce(
                topic_name,
                value=b"%08d" % sent + PADDING,
                partition=sent % PARTITIONS,
                on_delivery=report,
            )
            sent += 1
        except BufferError:
            producer.poll(0.01)
        producer.poll(0)
        if time.monotonic() >= next_kill:
            kill_broker()
            # Keep producing into librdkafka's queue while the broker is down.
            down_until = time.monotonic() + 0.3
            while time.monotonic() < down_until:
                producer.poll(0.05)
            broker.start()
            restarts += 1
            next_kill = time.monotonic() + KILL_EVERY_S
    assert restarts == RESTARTS, f"only {restarts} restarts in 60 s"
    left = producer.flush(120)
    assert left == 0, f"{left} records without a delivery report"
    del producer

    log = stored(broker.bootstrap, topic_name, PARTITIONS)
    counts: dict[bytes, int] = {}
    for values in log.values():
        for value in values:
            counts[value] = counts.get(value, 0) + 1
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    losses = [v for v in acked if counts.get(v, 0) == 0]
    moved = [
        (v, at) for v, at in acked.items() if counts.get(v) and log[at[0]][at[1]] != v
    ]
    print(
        f"restarts {restarts}, sent {sent}, acknowledged {len(acked)}, failed {len(failures)}, "
        f"duplicates {duplicates}, losses {len(losses)}"
    )
    assert duplicates == 0, f"{duplicates} duplicated records"
    assert not losses, f"{len(losses)} acknowledged records lost, e.g. {losses[:3]}"
    assert not moved, f"{len(moved)} records not at their acknowledged offset, e.g. {moved[:3]}"
    for partition, values in log.items():
        numbers = [int(v[:8]) for v in values]
        assert numbers == sorted(numbers), f"partition {partition} is not in send order"
        assert all(n % PARTITIONS == partition for n in numbers)
    assert not failures, f"{len(failures)} deliveries failed, first: {failures[0]}"
    assert len(acked) == sent


def test_a_transactional_librdkafka_producer_is_refused_at_once(broker):
    """Transactions are not offered: init_transactions fails fast with a fatal error instead of
    retrying a coordinator lookup until its timeout."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer({**confluent_common(broker.bootstrap), "transactional.id": "tx-1"})
    started = time.monotonic()
    try:
        producer.init_transactions(30)
    except KafkaException as raised:
        error = raised.args[0]
    else:
        raise AssertionError("init_transactions succeeded against a broker without transactions")
    took = time.monotonic() - started
    assert error.fatal() or not error.retriable(), error
    assert took < 10, f"refused only after {took:.1f} s: {error}"
