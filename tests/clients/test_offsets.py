"""Consuming from the earliest offset, the latest, and a timestamp (ListOffsets), per client.

Kafka's semantics, which clients build on: earliest is the log start offset; latest is the high
watermark (the next offset to be written); a timestamp resolves to the first offset whose record
timestamp is at or after it, even inside a batch, and to "none" past the last record.
"""

from __future__ import annotations

import time

import pytest

from clients import CLIENTS, Record, all_delivered, create_topic

# Two batches with distinct timestamps: A at BASE+0..40 ms, B at BASE+1000..1040 ms. Recent,
# so no time-based retention can apply to them.
BASE = int(time.time() * 1000) - 60_000
BATCH_A = [BASE + i * 10 for i in range(5)]
BATCH_B = [BASE + 1000 + i * 10 for i in range(5)]


@pytest.mark.parametrize("client", list(CLIENTS))
def test_earliest_latest_and_timestamp(broker, topic_name, client):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    impl = CLIENTS[client]
    producer = impl.producer(broker.bootstrap)
    consumer = impl.consumer(broker.bootstrap, topic_name, [0])
    try:
        assert consumer.seek_earliest() == {0: 0}
        assert consumer.seek_latest() == {0: 0}, "an empty partition's latest offset is 0"

        for stamps in (BATCH_A, BATCH_B):
            all_delivered(
                producer.send_all(
                    topic_name,
                    [
                        Record(f"t{ts - BASE}".encode(), partition=0, timestamp_ms=ts)
                        for ts in stamps
                    ],
                )
            )

        assert consumer.seek_earliest() == {0: 0}
        assert consumer.seek_latest() == {0: 10}

        # Inside batch A, between the batches, at B's first record, and past the end.
        assert consumer.offsets_for_time(0, BASE + 20) == 2
        assert consumer.offsets_for_time(0, BASE + 25) == 3
        assert consumer.offsets_for_time(0, BASE + 500) == 5
        assert consumer.offsets_for_time(0, BASE + 1000) == 5
        assert consumer.offsets_for_time(0, BASE) == 0
        assert consumer.offsets_for_time(0, BASE + 5000) is None

        # From a timestamp: the consumer starts at the record it resolved to, not its batch.
        consumer.seek(0, consumer.offsets_for_time(0, BASE + 1020))
        got = consumer.poll_until(3)
        assert [(c.offset, c.timestamp_ms, c.value) for c in got] == [
            (7 + i, BASE + 1020 + i * 10, f"t{1020 + i * 10}".encode()) for i in range(3)
        ]

        # From latest: only records produced after positioning arrive.
        assert consumer.seek_latest() == {0: 10}
        all_delivered(
            producer.send_all(topic_name, [Record(b"new-%d" % i, partition=0) for i in range(3)])
        )
        got = consumer.poll_until(3)
        assert [(c.offset, c.value) for c in got] == [(10 + i, b"new-%d" % i) for i in range(3)]

        # From earliest: all of it, with the timestamps the producer set (CreateTime).
        consumer.seek_earliest()
        got = consumer.poll_until(13)
        assert [c.offset for c in got] == list(range(13))
        assert [c.timestamp_ms for c in got[:10]] == BATCH_A + BATCH_B
    finally:
        consumer.close()
        producer.close()
