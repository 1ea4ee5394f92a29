"""A record over the topic's size limit gets MESSAGE_TOO_LARGE, and nothing of it is written.

Each producer's own request-size limit is raised well above the broker's, so the record reaches
the broker and the broker is what refuses it (a client refusing locally would prove nothing).
Values are random, so no codec could bring them under the limit.
"""

from __future__ import annotations

import random

import pytest

from clients import (
    MESSAGE_TOO_LARGE,
    Failed,
    Record,
    all_delivered,
    consume_all,
    create_topic,
    produce,
)

CLIENT_LIMIT = 8 * 1024 * 1024
# Per-client names of the producer's own limit on a request or message.
RAISED_LIMITS = {
    "kafka-python": {"max_request_size": CLIENT_LIMIT},
    "aiokafka": {"max_request_size": CLIENT_LIMIT},
    "confluent-kafka": {"message.max.bytes": CLIENT_LIMIT},
}
# Kafka's default max.message.bytes is 1048588; rill's engine default is 1 MiB. Either way a
# 2 MiB record is over it.
OVER_DEFAULT = 2 * 1024 * 1024
TOPIC_LIMIT = 64 * 1024


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def check_refused_then_nothing_written(broker, topic, client, size):
    big = Record(random_bytes(size, size), partition=0)
    [result] = produce(client, broker.bootstrap, topic, [big], acks="all", **RAISED_LIMITS[client])
    assert isinstance(result, Failed), f"a {size}-byte record was accepted: {result}"
    assert result.code == MESSAGE_TOO_LARGE, f"expected MESSAGE_TOO_LARGE (10), got {result}"

    # Nothing was written: the next record takes offset 0, and it is all a consumer finds.
    [after] = all_delivered(
        produce(client, broker.bootstrap, topic, [Record(b"small", partition=0)])
    )
    assert after.offset == 0, f"the refused record moved the log to offset {after.offset}"
    got = consume_all(client, broker.bootstrap, topic, [0], 1)
    assert [(c.offset, c.value) for c in got] == [(0, b"small")]


@pytest.mark.parametrize("client", list(RAISED_LIMITS))
def test_over_default_limit_is_message_too_large(broker, topic_name, client):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    check_refused_then_nothing_written(broker, topic_name, client, OVER_DEFAULT)


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_over_topic_max_message_bytes_is_message_too_large(broker, topic_name, client):
    create_topic(
        broker.bootstrap, topic_name, partitions=1, config={"max.message.bytes": str(TOPIC_LIMIT)}
    )
    check_refused_then_nothing_written(broker, topic_name, client, 2 * TOPIC_LIMIT)
    # Under the topic's limit is accepted: the limit is the topic's, not something smaller.
    [ok] = all_delivered(
        produce(
            client,
            broker.bootstrap,
            topic_name,
            [Record(random_bytes(TOPIC_LIMIT // 2, 1), partition=0)],
            **RAISED_LIMITS[client],
        )
    )
    assert ok.offset == 1
