"""One small interface over the three Python Kafka clients, so each test runs the same steps
through kafka-python, aiokafka and confluent-kafka (librdkafka) and compares what each saw.

Nothing here encodes Kafka's protocol: every byte on the wire is the client library's own.

Timeouts: every client's defaults are sized for clusters (30 s to 5 min); against one broker on
loopback an answer takes milliseconds, so each is cut to seconds. A broker that stops answering
then fails the test in seconds instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Iterable

# Bounds shared by every client (milliseconds unless named _S).
REQUEST_TIMEOUT_MS = 8_000
DELIVERY_TIMEOUT_MS = 15_000
CONSUME_TIMEOUT_S = 15.0
# A short linger so several records share a batch (compression works on batches), without
# making tests wait.
LINGER_MS = 20
# Fetch long-poll wait: short, so a consumer that is waiting for the last records asks again soon.
FETCH_WAIT_MS = 200

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# The attribute bits (0-2) of a RecordBatch that name each codec.
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

MESSAGE_TOO_LARGE = 10


@dataclass(frozen=True)
class Record:
    """A record to send; partition None lets the client's partitioner choose."""

    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Delivered:
    partition: int
    offset: int


@dataclass(frozen=True)
class Failed:
    """A delivery the client reported failed: Kafka's error code when it gave one."""

    code: int | None
    text: str


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def _codec_for_python_clients(codec: str) -> str | None:
    return None if codec == "none" else codec


# ---------------------------------------------------------------------------------------------
# kafka-python


class KafkaPythonProducer:
    def __init__(self, bootstrap: str, *, codec: str = "none", acks="all", **extra):
        from kafka import KafkaProducer

        config = dict(
            bootstrap_servers=bootstrap,
            acks=acks,
            compression_type=_codec_for_python_clients(codec),
            linger_ms=LINGER_MS,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
            # How long send() may block for metadata, and how long the first connection may take.
            max_block_ms=REQUEST_TIMEOUT_MS,
            bootstrap_timeout_ms=REQUEST_TIMEOUT_MS,
            # kafka-python 3's default, as the Java client's, is an idempotent producer: every
            # test runs with it, so producer ids and sequences go through the whole suite.
            # After the broker restarts, reconnect at once rather than after growing back-offs.
            reconnect_backoff_max_ms=500,
        )
        config.update(extra)
        self._producer = KafkaProducer(**config)

    def send_all(self, topic: str, records: Iterable[Record]) -> list[Delivered | Failed]:
        from kafka.errors import KafkaError

        futures = []
        for r in records:
            try:
                futures.append(
                    self._producer.send(
                        topic,
                        value=r.value,
                        key=r.key,
                        partition=r.partition,
                        timestamp_ms=r.timestamp_ms,
                    )
                )
            except KafkaError as e:  # refused before it reached the wire
                futures.append(e)
        self._producer.flush(timeout=DELIVERY_TIMEOUT_MS / 1000)
        results: list[Delivered | Failed] = []
        for f in futures:
            if isinstance(f, KafkaError):
                results.append(Failed(getattr(f, "errno", None), repr(f)))
                continue
            try:
                meta = f.get(timeout=1)
                results.append(Delivered(meta.partition, meta.offset))
            except KafkaError as e:
                results.append(Failed(getattr(e, "errno", None), repr(e)))
        return results

    def close(self) -> None:
        self._producer.close(timeout=5)


class KafkaPythonConsumer:
    def __init__(self, bootstrap: str, topic: str, partitions: Iterable[int], **extra):
        from kafka import KafkaConsumer, TopicPartition

        config = dict(
            bootstrap_servers=bootstrap,
            # No group: partitions are assigned by hand, so no coordinator is involved.
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            bootstrap_timeout_ms=REQUEST_TIMEOUT_MS,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            reconnect_backoff_max_ms=500,
        )
        config.update(extra)
        self._consumer = KafkaConsumer(**config)
        self._tps = {p: TopicPartition(topic, p) for p in partitions}
        self._consumer.assign(list(self._tps.values()))

    def seek_earliest(self) -> dict[int, int]:
        self._consumer.seek_to_beginning(*self._tps.values())
        # position() resolves the reset now (ListOffsets), not lazily at the first poll.
        return {p: self._consumer.position(tp) for p, tp in self._tps.items()}

    def seek_latest(self) -> dict[int, int]:
        self._consumer.seek_to_end(*self._tps.values())
        # Resolved now: a lazy reset at the first poll would skip records produced meanwhile.
        return {p: self._consumer.position(tp) for p, tp in self._tps.items()}

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(self._tps[partition], offset)

    def offsets_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        found = self._consumer.offsets_for_times({self._tps[partition]: timestamp_ms})
        hit = found[self._tps[partition]]
        return None if hit is None else hit.offset

    def poll_until(self, count: int, timeout_s: float = CONSUME_TIMEOUT_S) -> list[Consumed]:
        out: list[Consumed] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for tp, msgs in self._consumer.poll(timeout_ms=200).items():
                out.extend(
                    Consumed(tp.partition, m.offset, m.key, m.value, m.timestamp) for m in msgs
                )
        return out

    def close(self) -> None:
        self._consumer.close()


# ---------------------------------------------------------------------------------------------
# aiokafka: the same steps, each run to completion on the client's own event loop.


class AioKafkaProducer:
    def __init__(self, bootstrap: str, *, codec: str = "none", acks="all", **extra):
        from aiokafka import AIOKafkaProducer

        self._loop = asyncio.new_event_loop()
        config = dict(
            bootstrap_servers=bootstrap,
            acks=acks,
            compression_type=_codec_for_python_clients(codec),
            linger_ms=LINGER_MS,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            retry_backoff_ms=50,
        )
        config.update(extra)

        async def start():
            producer = AIOKafkaProducer(**config)
            await producer.start()
            return producer

        self._producer = self._run(start())

    def _run(self, coro):
        return self._loop.run_until_complete(asyncio.wait_for(coro, DELIVERY_TIMEOUT_MS / 1000))

    def send_all(self, topic: str, records: Iterable[Record]) -> list[Delivered | Failed]:
        from aiokafka.errors import KafkaError

        async def go():
            futures = []
            for r in records:
                try:
                    futures.append(
                        await self._producer.send(
                            topic,
                            value=r.value,
                            key=r.key,
                            partition=r.partition,
                            timestamp_ms=r.timestamp_ms,
                        )
                    )
                except KafkaError as e:
                    futures.append(e)
            results: list[Delivered | Failed] = []
            for f in futures:
                if isinstance(f, KafkaError):
                    results.append(Failed(getattr(f, "errno", None), repr(f)))
                    continue
                try:
                    meta = await f
                    results.append(Delivered(meta.partition, meta.offset))
                except KafkaError as e:
                    results.append(Failed(getattr(e, "errno", None), repr(e)))
            return results

        return self._run(go())

    def close(self) -> None:
        try:
            self._run(self._producer.stop())
        finally:
            self._loop.close()


class AioKafkaConsumer:
    def __init__(self, bootstrap: str, topic: str, partitions: Iterable[int], **extra):
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._loop = asyncio.new_event_loop()
        config = dict(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            retry_backoff_ms=50,
        )
        config.update(extra)
        self._tps = {p: TopicPartition(topic, p) for p in partitions}

        async def start():
            consumer = AIOKafkaConsumer(**config)
            await consumer.start()
            consumer.assign(list(self._tps.values()))
            return consumer

        self._consumer = self._run(start())

    def _run(self, coro):
        return self._loop.run_until_complete(asyncio.wait_for(coro, CONSUME_TIMEOUT_S + 5))

    def seek_earliest(self) -> dict[int, int]:
        async def go():
            await self._consumer.seek_to_beginning(*self._tps.values())
            return {p: await self._consumer.position(tp) for p, tp in self._tps.items()}

        return self._run(go())

    def seek_latest(self) -> dict[int, int]:
        async def go():
            await self._consumer.seek_to_end(*self._tps.values())
            return {p: await self._consumer.position(tp) for p, tp in self._tps.items()}

        return self._run(go())

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(self._tps[partition], offset)

    def offsets_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        tp = self._tps[partition]
        found = self._run(self._consumer.offsets_for_times({tp: timestamp_ms}))
        return None if found[tp] is None else found[tp].offset

    def poll_until(self, count: int, timeout_s: float = CONSUME_TIMEOUT_S) -> list[Consumed]:
        async def go():
            out: list[Consumed] = []
            deadline = time.monotonic() + timeout_s
            while len(out) < count and time.monotonic() < deadline:
                batches = await self._consumer.getmany(timeout_ms=200)
                for tp, msgs in batches.items():
                    out.extend(
                        Consumed(tp.partition, m.offset, m.key, m.value, m.timestamp) for m in msgs
                    )
            return out

        return self._run(go())

    def close(self) -> None:
        try:
            self._run(self._consumer.stop())
        finally:
            self._loop.close()


# ---------------------------------------------------------------------------------------------
# confluent-kafka (librdkafka)


def confluent_common(bootstrap: str) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        # librdkafka's socket timeout is 60 s and its reconnect back-off grows to 10 s: against a
        # restarted loopback broker, reconnect at once and give up on a silent socket in seconds.
        "socket.timeout.ms": REQUEST_TIMEOUT_MS,
        "reconnect.backoff.ms": 20,
        "reconnect.backoff.max.ms": 500,
        "api.version.request.timeout.ms": REQUEST_TIMEOUT_MS,
    }


class ConfluentProducer:
    def __init__(self, bootstrap: str, *, codec: str = "none", acks="all", **extra):
        from confluent_kafka import Producer

        config = confluent_common(bootstrap) | {
            "acks": acks,
            "compression.type": codec,
            "linger.ms": LINGER_MS,
            # The default is 300 s: a delivery that cannot succeed is reported in seconds.
            "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            "request.timeout.ms": REQUEST_TIMEOUT_MS,
        }
        config.update(extra)
        self._producer = Producer(config)

    def send_all(self, topic: str, records: Iterable[Record]) -> list[Delivered | Failed]:
        from confluent_kafka import KafkaException

        results: list[Delivered | Failed | None] = []

        def on_delivery(index):
            def report(err, msg):
                if err is None:
                    results[index] = Delivered(msg.partition(), msg.offset())
                else:
                    results[index] = Failed(err.code(), f"{err.name()}: {err.str()}")

            return report

        for i, r in enumerate(records):
            results.append(None)
            kwargs = dict(value=r.value, key=r.key, on_delivery=on_delivery(i))
            if r.partition is not None:
                kwargs["partition"] = r.partition
            if r.timestamp_ms is not None:
                kwargs["timestamp"] = r.timestamp_ms
            try:
                self._producer.produce(topic, **kwargs)
            except (KafkaException, BufferError) as e:
                results[i] = Failed(None, repr(e))
            self._producer.poll(0)
        left = self._producer.flush(DELIVERY_TIMEOUT_MS / 1000 + 5)
        assert left == 0, f"librdkafka still holds {left} undelivered messages after its timeout"
        return [r if r is not None else Failed(None, "no delivery report") for r in results]

    def close(self) -> None:
        self._producer.flush(5)
        # Dropping the last reference destroys the librdkafka handle now; one kept alive by a
        # failed test's traceback would go on reconnecting (and logging) after its broker is gone.
        self._producer = None


class ConfluentConsumer:
    def __init__(self, bootstrap: str, topic: str, partitions: Iterable[int], **extra):
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        config = confluent_common(bootstrap) | {
            # librdkafka refuses to create a consumer without a group id; this consumer never
            # subscribes or commits (partitions are assigned by hand), so the group is unused.
            "group.id": "rill-client-tests",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": FETCH_WAIT_MS,
            # The client verifies each batch's CRC-32C as it reads it.
            "check.crcs": True,
        }
        config.update(extra)
        self._consumer = Consumer(config)
        self._topic = topic
        self._partitions = list(partitions)
        self._tp = TopicPartition
        self._assign_at({p: OFFSET_BEGINNING for p in self._partitions})

    def _watermarks(self, partition: int) -> tuple[int, int]:
        return self._consumer.get_watermark_offsets(
            self._tp(self._topic, partition), timeout=REQUEST_TIMEOUT_MS / 1000
        )

    def _assign_at(self, offsets: dict[int, int]) -> dict[int, int]:
        self._consumer.assign([self._tp(self._topic, p, o) for p, o in offsets.items()])
        self._offsets = dict(offsets)
        return offsets

    def seek_earliest(self) -> dict[int, int]:
        return self._assign_at({p: self._watermarks(p)[0] for p in self._partitions})

    def seek_latest(self) -> dict[int, int]:
        # The high watermark fetched now (ListOffsets latest), rather than OFFSET_END, which
        # librdkafka resolves later and would skip records produced meanwhile.
        return self._assign_at({p: self._watermarks(p)[1] for p in self._partitions})

    def seek(self, partition: int, offset: int) -> None:
        # Re-assigning is librdkafka's reliable seek before the first fetch has started.
        self._assign_at(self._offsets | {partition: offset})

    def offsets_for_time(self, partition: int, timestamp_ms: int) -> int | None:
        [found] = self._consumer.offsets_for_times(
            [self._tp(self._topic, partition, timestamp_ms)], timeout=REQUEST_TIMEOUT_MS / 1000
        )
        assert found.error is None, f"offsets_for_times: {found.error}"
        return None if found.offset < 0 else found.offset

    def poll_until(self, count: int, timeout_s: float = CONSUME_TIMEOUT_S) -> list[Consumed]:
        out: list[Consumed] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for m in self._consumer.consume(num_messages=1000, timeout=0.2):
                assert m.error() is None, f"consume error: {m.error()}"
                _, ts = m.timestamp()
                out.append(Consumed(m.partition(), m.offset(), m.key(), m.value(), ts))
        return out

    def close(self) -> None:
        self._consumer.close()
        self._consumer = None  # destroys the handle now, as ConfluentProducer.close does


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    name: str
    producer: type
    consumer: type


CLIENTS = {
    "kafka-python": Client("kafka-python", KafkaPythonProducer, KafkaPythonConsumer),
    "aiokafka": Client("aiokafka", AioKafkaProducer, AioKafkaConsumer),
    "confluent-kafka": Client("confluent-kafka", ConfluentProducer, ConfluentConsumer),
}


def produce(client: str, bootstrap: str, topic: str, records, **config) -> list[Delivered | Failed]:
    producer = CLIENTS[client].producer(bootstrap, **config)
    try:
        return producer.send_all(topic, records)
    finally:
        producer.close()


def consume_all(
    client: str, bootstrap: str, topic: str, partitions: Iterable[int], count: int, **config
) -> list[Consumed]:
    """Everything from the earliest offset of each partition, until `count` records arrived
    (or the bound passed: the caller's assertions then say what is missing)."""
    consumer = CLIENTS[client].consumer(bootstrap, topic, partitions, **config)
    try:
        consumer.seek_earliest()
        return consumer.poll_until(count)
    finally:
        consumer.close()


def create_topic(
    bootstrap: str, topic: str, partitions: int = 1, config: dict | None = None
) -> None:
    """CreateTopics through librdkafka's admin client; fails the test on any error."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(confluent_common(bootstrap))
    try:
        # One broker, so one replica.
        new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
        futures = admin.create_topics([new], request_timeout=REQUEST_TIMEOUT_MS / 1000)
        futures[topic].result(timeout=REQUEST_TIMEOUT_MS / 1000 + 2)
    finally:
        del admin  # no handle outlives the call, even through a traceback


def all_delivered(results: list[Delivered | Failed]) -> list[Delivered]:
    failed = [r for r in results if isinstance(r, Failed)]
    assert not failed, f"{len(failed)} of {len(results)} deliveries failed, first: {failed[0]}"
    return results  # type: ignore[return-value]
