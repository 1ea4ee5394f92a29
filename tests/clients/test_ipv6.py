"""IPv6 loopback: a broker on [::1] advertises an address clients can parse and reach (librdkafka
resolves `localhost` to ::1 first on many systems, so the issue has the broker listen there too)."""

from __future__ import annotations

import pytest

from clients import CLIENTS, Record, all_delivered, consume_all, create_topic, produce


@pytest.mark.parametrize("client", list(CLIENTS))
def test_ipv6_loopback(broker_v6, topic_name, client):
    create_topic(broker_v6.bootstrap, topic_name, partitions=1)
    records = [Record(b"over ipv6 %d" % i, partition=0) for i in range(10)]
    all_delivered(produce(client, broker_v6.bootstrap, topic_name, records))
    got = consume_all(client, broker_v6.bootstrap, topic_name, [0], len(records))
    assert [c.value for c in got] == [r.value for r in records]
