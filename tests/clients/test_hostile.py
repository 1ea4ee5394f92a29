"""Hostile and broken connections cost only themselves: afterwards the broker still serves a real
client, on a connection opened before the trouble and on new ones."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import rawwire
from clients import ConfluentProducer, Record, all_delivered, consume_all, create_topic

MAX_FRAME = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes, the default


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc status")


class RealClient:
    """A producer connected before the hostile part, used again after it, and a fresh consumer
    reading everything back."""

    def __init__(self, broker, topic):
        self.broker, self.topic = broker, topic
        create_topic(broker.bootstrap, topic, partitions=1)
        self.producer = ConfluentProducer(broker.bootstrap)
        self.sent: list[bytes] = []
        self.produce(b"before")

    def produce(self, tag: bytes) -> None:
        values = [b"%s-%d" % (tag, i) for i in range(20)]
        all_delivered(self.producer.send_all(self.topic, [Record(v, partition=0) for v in values]))
        self.sent += values

    def prove_still_served(self) -> None:
        self.broker.assert_alive()
        self.produce(b"after")
        got = consume_all("kafka-python", self.broker.bootstrap, self.topic, [0], len(self.sent))
        assert [c.value for c in got] == self.sent
        self.producer.close()


def test_raw_framing_is_understood(broker):
    """The raw helpers speak valid Kafka: without this, the hostile tests could pass vacuously."""
    with rawwire.connect(broker.bootstrap) as sock:
        sock.sendall(rawwire.api_versions_v0(7))
        correlation, error, ranges = rawwire.parse_api_versions_v0(rawwire.read_frame(sock))
    assert (correlation, error) == (7, 0)
    assert rawwire.API_VERSIONS in ranges


def test_too_new_api_versions_gets_error_35_with_ranges(broker):
    """Kafka answers an ApiVersions version it does not know with UNSUPPORTED_VERSION, in a v0
    response carrying its ranges, so the client can retry at a version both support."""
    with rawwire.connect(broker.bootstrap) as sock:
        sock.sendall(
            rawwire.frame(
                rawwire.request_header(rawwire.API_VERSIONS, 127, 9, flexible=True) + b"\x00"
            )
        )
        correlation, error, ranges = rawwire.parse_api_versions_v0(rawwire.read_frame(sock))
    assert (correlation, error) == (9, rawwire.UNSUPPORTED_VERSION)
    lo, hi = ranges[rawwire.API_VERSIONS]
    assert lo == 0 and hi >= 3, f"ApiVersions range {lo}..{hi}"


GARBAGE = {
    # A frame whose header names no API and no version.
    "unknown api": rawwire.frame(b"\xff" * 40),
    # A valid header (Metadata v9, flexible) followed by a body that is not Metadata.
    "bad body": rawwire.frame(rawwire.request_header(3, 9, 1, flexible=True) + b"\xfe" * 64),
    # A header whose client_id length runs past the frame.
    "truncated header": rawwire.frame(struct.pack(">hhih", 18, 0, 1, 500) + b"x" * 10),
    # Not Kafka at all: "GET " read as a length is about 1.1 GiB.
    "http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
}


def test_garbage_closes_only_that_connection(broker, topic_name):
    client = RealClient(broker, topic_name)
    for name, data in GARBAGE.items():
        with rawwire.connect(broker.bootstrap) as sock:
            sock.sendall(data)
            try:
                rawwire.wait_closed(sock)
            except AssertionError as e:
                raise AssertionError(f"{name}: {e}") from None
    client.prove_still_served()


@pytest.mark.parametrize(
    "length",
    [0x8000_0000, 0x7FFF_FFFF, MAX_FRAME + 1],
    ids=["2GiB-negative-i32", "2GiB-minus-1", "limit-plus-1"],
)
def test_oversized_frame_is_refused_before_allocating(broker, topic_name, length):
    client = RealClient(broker, topic_name)
    rss_before = rss_bytes(broker.pid())
    with rawwire.connect(broker.bootstrap) as sock:
        # The length alone must be enough for the server to refuse: no body follows it.
        sock.sendall(struct.pack(">I", length) + b"\x00" * 16)
        rawwire.wait_closed(sock)
    grown = rss_bytes(broker.pid()) - rss_before
    assert grown < 32 * 1024 * 1024, f"RSS grew by {grown} bytes for a refused frame"
    client.prove_still_served()


def test_disconnect_mid_request(broker, topic_name):
    client = RealClient(broker, topic_name)

    # Half a length prefix.
    with rawwire.connect(broker.bootstrap) as sock:
        sock.sendall(b"\x00\x00")
    # A frame cut short, closed cleanly and by reset.
    for close in (lambda s: s.close(), rawwire.abort):
        sock = rawwire.connect(broker.bootstrap)
        sock.sendall(struct.pack(">i", 100) + rawwire.request_header(18, 0, 1, flexible=False)[:10])
        close(sock)
    # A large frame, within the limit, abandoned after its first MiB.
    sock = rawwire.connect(broker.bootstrap)
    sock.sendall(struct.pack(">i", 50 * 1024 * 1024) + b"\x00" * (1024 * 1024))
    rawwire.abort(sock)
    # Whole requests whose answers nobody reads: the server's writes fail on a reset socket.
    for _ in range(20):
        sock = rawwire.connect(broker.bootstrap)
        sock.sendall(b"".join(rawwire.api_versions_v0(i) for i in range(50)))
        rawwire.abort(sock)

    client.prove_still_served()
