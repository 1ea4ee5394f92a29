"""kcat, as Debian ships it: librdkafka 2.0.2, an older client whose ApiVersions handling broke
other Kafka-compatible brokers (Tansu 0.6: "ApiVersionRequest failed: Read underflow")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from clients import CODEC_IDS, Record, all_delivered, consume_all, create_topic, produce
from segments import stored_batches

KCAT = shutil.which("kcat")
pytestmark = pytest.mark.skipif(
    KCAT is None,
    reason=os.environ.get("RILL_KCAT_SKIP_REASON")
    or "kcat is not installed (apt-get install kcat)",
)

# librdkafka's defaults wait a minute or more on a broker that does not answer; these bound each
# kcat run to seconds (-m is kcat's own metadata timeout, in seconds).
KCAT_BOUNDS = ["-m", "8", "-X", "socket.timeout.ms=8000", "-X", "message.timeout.ms=10000"]
RUN_TIMEOUT_S = 30


def kcat(broker, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        [KCAT, "-b", broker.bootstrap, *KCAT_BOUNDS, *args],
        input=stdin,
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"kcat {' '.join(args)} exited {done.returncode}\nstderr: {stderr}"
    return done.stdout.decode()


def test_kcat_lists_topics(broker, topic_name):
    create_topic(broker.bootstrap, f"{topic_name}.a", partitions=3)
    create_topic(broker.bootstrap, f"{topic_name}.b", partitions=1)
    listing = json.loads(kcat(broker, "-L", "-J"))

    brokers = listing["brokers"]
    assert len(brokers) == 1 and brokers[0]["name"] == broker.bootstrap, brokers
    leader = brokers[0]["id"]
    topics = {t["topic"]: t for t in listing["topics"]}
    for name, count in [(f"{topic_name}.a", 3), (f"{topic_name}.b", 1)]:
        assert name in topics, f"{name} not listed: {sorted(topics)}"
        parts = topics[name]["partitions"]
        assert sorted(p["partition"] for p in parts) == list(range(count))
        assert all(p["leader"] == leader for p in parts), parts


def test_kcat_produce_then_python_consumes(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=2)
    lines = [f"key-{i}:value {i} " + "x" * 100 for i in range(50)]
    kcat(
        broker,
        "-P",
        "-t",
        topic_name,
        "-p",
        "1",
        "-K",
        ":",
        "-z",
        "lz4",
        stdin=("\n".join(lines) + "\n").encode(),
    )

    got = consume_all("kafka-python", broker.bootstrap, topic_name, [0, 1], len(lines))
    assert [(c.partition, c.offset) for c in got] == [(1, i) for i in range(len(lines))]
    assert [f"{c.key.decode()}:{c.value.decode()}" for c in got] == lines
    # Stored as kcat sent them. Debian's kcat links librdkafka 2.0.2, which compresses with lz4
    # (and gzip, snappy) only when the broker also advertises Produce v0, and neither rill nor
    # Kafka 4 does (KIP-896 removed Produce v0-v2): librdkafka issue 4956, fixed in later
    # releases (the confluent-kafka wheel's librdkafka compresses; test_produce_consume checks
    # its lz4 batches on disk). So an old kcat's batches are stored uncompressed, as Kafka 4
    # would store them; anything else than none or lz4 would be a broker that rewrote them.
    batches = stored_batches(broker.data_dir, topic_name, 1)
    assert batches, "nothing stored"
    assert {b.codec for b in batches} <= {CODEC_IDS["none"], CODEC_IDS["lz4"]}, f"{batches}"


def test_python_produce_then_kcat_consumes(broker, topic_name):
    create_topic(broker.bootstrap, topic_name, partitions=1)
    records = [
        Record(f"value {i} ".encode() + b"y" * 100, key=f"k{i}".encode(), partition=0)
        for i in range(50)
    ]
    all_delivered(produce("aiokafka", broker.bootstrap, topic_name, records, codec="zstd"))

    out = kcat(broker, "-C", "-t", topic_name, "-p", "0", "-o", "beginning", "-e", "-J")
    got = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [(m["offset"], m["key"], m["payload"]) for m in got] == [
        (i, r.key.decode(), r.value.decode()) for i, r in enumerate(records)
    ]
