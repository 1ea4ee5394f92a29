"""Each client produces through `rill serve` with each codec, and every client consumes it."""

from __future__ import annotations

import pytest

from clients import (
    CLIENTS,
    CODEC_IDS,
    CODECS,
    Record,
    all_delivered,
    consume_all,
    create_topic,
    produce,
)
from segments import stored_batches

COUNT = 300


def compressible_value(i: int) -> bytes:
    # Mostly repeated text: every codec shrinks it several times over, so a batch that reached
    # the disk uncompressed, or re-encoded, shows in its size and codec bits.
    return f"record {i:06d} ".encode() + b"the quick brown fox jumps over the lazy dog; " * 12


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("client", list(CLIENTS))
def test_produce_and_consume(broker, topic_name, client, codec):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    records = [
        Record(compressible_value(i), key=f"k{i % 7}".encode(), partition=0) for i in range(COUNT)
    ]

    delivered = all_delivered(produce(client, broker.bootstrap, topic_name, records, codec=codec))
    assert [d.offset for d in delivered] == list(range(COUNT)), "offsets are not dense from 0"

    # Every client reads what this one wrote: its own batches, and another library's codec.
    for consumer in CLIENTS:
        got = consume_all(consumer, broker.bootstrap, topic_name, [0], COUNT)
        assert len(got) == COUNT, f"{consumer} consumed {len(got)} of {COUNT} records"
        assert [c.offset for c in got] == list(range(COUNT)), consumer
        assert [(c.key, c.value) for c in got] == [(r.key, r.value) for r in records], consumer

    # From the middle of a (compressed) batch: the broker sends the whole batch, the client skips
    # the records before the offset it asked for.
    middle = COUNT // 2 + 1
    consumer = CLIENTS[client].consumer(broker.bootstrap, topic_name, [0])
    try:
        consumer.seek(0, middle)
        got = consumer.poll_until(COUNT - middle)
    finally:
        consumer.close()
    assert [c.offset for c in got] == list(range(middle, COUNT))
    assert [c.value for c in got] == [r.value for r in records[middle:]]

    # The client's batches are on disk as it built them: its codec, and smaller than the values.
    batches = stored_batches(broker.data_dir, topic_name, 0)
    assert sum(b.records for b in batches) == COUNT
    assert {b.codec for b in batches} == {CODEC_IDS[codec]}, f"stored codecs {batches}"
    stored = sum(b.size for b in batches)
    raw = sum(len(r.value) for r in records)
    if codec == "none":
        assert stored > raw
    else:
        assert stored * 3 < raw, f"{codec}: {stored} bytes stored for {raw} bytes of values"
