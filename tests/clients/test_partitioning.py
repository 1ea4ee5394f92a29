"""Keyed records land on the partition the client's partitioner picks, and come back there, in
order. The broker does not choose partitions: these tests prove it advertises the partitions the
topic has, stores each batch in the partition the client named, and serves it from there.

The expected partition is computed here, independently of the clients: Kafka's murmur2 (the Java
client's default, which kafka-python and aiokafka copy, and librdkafka's `murmur2_random`), and
CRC-32 (librdkafka's default `consistent_random`). All clients agreeing with one reference is
the cross-client comparison: the same key goes to the same partition whichever murmur2 client
sends it.
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import pytest

from clients import Record, all_delivered, consume_all, create_topic, produce

PARTITIONS = 6
KEYS = [f"customer-{i:03d}".encode() for i in range(40)]
PER_KEY = 4


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as org.apache.kafka.common.utils.Utils.murmur2."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    # Utils.toPositive(murmur2(key)) % numPartitions
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def crc32_partition(key: bytes, partitions: int) -> int:
    # librdkafka's consistent partitioner: rd_crc32(key) % partition_cnt
    return zlib.crc32(key) % partitions


def test_murmur2_reference_matches_kafka_vectors():
    # Values from Kafka's own UtilsTest.testMurmur2, so the reference itself is checked.
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, signed in cases.items():
        assert murmur2(key) == signed & 0xFFFFFFFF, key


def keyed_records(tag: str) -> list[Record]:
    # Interleaved keys, so each partition's order mixes keys and each key's order is tested.
    return [
        Record(f"{tag}:{k.decode()}:{seq}".encode(), key=k) for seq in range(PER_KEY) for k in KEYS
    ]


def check_placed_and_ordered(consumed, expected_partition) -> None:
    """Every record on its key's partition; per partition, offsets dense and increasing, and
    each key's records in the order they were sent."""
    by_partition = defaultdict(list)
    for c in consumed:
        assert c.partition == expected_partition(c.key), (
            f"{c.key!r} consumed from partition {c.partition}"
        )
        by_partition[c.partition].append(c)
    for p, records in by_partition.items():
        offsets = [c.offset for c in records]
        assert offsets == list(range(len(records))), f"partition {p}: offsets {offsets[:20]}..."
        last_seq: dict[tuple[str, bytes], int] = {}
        for c in records:
            tag, _, seq = c.value.decode().split(":")
            key = (tag, c.key)
            assert last_seq.get(key, -1) == int(seq) - 1, f"partition {p}: {c.value!r} out of order"
            last_seq[key] = int(seq)


DEFAULT_PARTITIONERS = {
    "kafka-python": (java_partition, {}),
    "aiokafka": (java_partition, {}),
    "confluent-kafka": (crc32_partition, {}),
}


@pytest.mark.parametrize("client", list(DEFAULT_PARTITIONERS))
def test_keyed_records_follow_default_partitioner(broker, topic_name, client):
    reference, config = DEFAULT_PARTITIONERS[client]
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    records = keyed_records(client)

    delivered = all_delivered(produce(client, broker.bootstrap, topic_name, records, **config))
    for r, d in zip(records, delivered):
        assert d.partition == reference(r.key, PARTITIONS), (
            f"{client} put {r.key!r} on {d.partition}"
        )
    assert len({d.partition for d in delivered}) == PARTITIONS, (
        "the keys should cover every partition"
    )

    got = consume_all(client, broker.bootstrap, topic_name, range(PARTITIONS), len(records))
    assert len(got) == len(records)
    check_placed_and_ordered(got, lambda key: reference(key, PARTITIONS))
    # Where each producer was told a record went is where the consumer found it.
    assert {(d.partition, d.offset) for d in delivered} == {(c.partition, c.offset) for c in got}


def test_same_key_same_partition_across_clients(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=PARTITIONS)
    placed: dict[str, dict[bytes, set[int]]] = {}
    total = 0
    for client, config in [
        ("kafka-python", {}),
        ("aiokafka", {}),
        # librdkafka's Java-compatible partitioner, named explicitly (its default is CRC-32).
        ("confluent-kafka", {"partitioner": "murmur2_random"}),
    ]:
        records = keyed_records(client)
        delivered = all_delivered(produce(client, broker.bootstrap, topic_name, records, **config))
        placed[client] = defaultdict(set)
        for r, d in zip(records, delivered):
            placed[client][r.key].add(d.partition)
        total += len(records)

    for key in KEYS:
        per_client = {client: sorted(parts[key]) for client, parts in placed.items()}
        assert len({tuple(v) for v in per_client.values()}) == 1 and all(
            len(v) == 1 for v in per_client.values()
        ), f"{key!r} placed differently: {per_client}"

    for consumer in ["kafka-python", "aiokafka", "confluent-kafka"]:
        got = consume_all(consumer, broker.bootstrap, topic_name, range(PARTITIONS), total)
        assert len(got) == total, f"{consumer} consumed {len(got)} of {total}"
        check_placed_and_ordered(got, lambda key: java_partition(key, PARTITIONS))
