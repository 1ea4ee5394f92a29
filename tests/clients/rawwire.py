"""Raw TCP for the hostile tests, and for two ApiVersions checks no client can make.

Only the frame and request header are built here (Kafka's documented layout), and the body of
one API no Python client exposes (ConsumerGroupHeartbeat, below), never a body a client in these
tests sends: the clients stay the judge of compatibility; this is the adversary.
"""

from __future__ import annotations

import socket
import struct
import time

API_VERSIONS = 18
UNSUPPORTED_VERSION = 35
CLOSE_TIMEOUT_S = 5.0


def connect(bootstrap: str) -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=CLOSE_TIMEOUT_S)


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def request_header(api_key: int, version: int, correlation_id: int, flexible: bool) -> bytes:
    # Header v1: api_key i16, api_version i16, correlation_id i32, client_id nullable string.
    # Header v2 adds an empty tagged-field section (one zero byte).
    client_id = b"rill-raw"
    head = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    return head + (b"\x00" if flexible else b"")


def api_versions_v0(correlation_id: int) -> bytes:
    # ApiVersions v0 has an empty body.
    return frame(request_header(API_VERSIONS, 0, correlation_id, flexible=False))


def read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> bytes:
    (length,) = struct.unpack(">i", read_exact(sock, 4))
    assert 0 <= length < 16 * 1024 * 1024, f"response frame length {length}"
    return read_exact(sock, length)


def parse_api_versions_v0(body: bytes) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """correlation_id, error_code, {api_key: (min, max)} of an ApiVersions v0 response, whose
    header is v0 (no tagged fields) whatever the request's version was."""
    correlation_id, error, count = struct.unpack_from(">ihi", body, 0)
    ranges = {}
    pos = 10
    for _ in range(count):
        key, lo, hi = struct.unpack_from(">hhh", body, pos)
        ranges[key] = (lo, hi)
        pos += 6
    assert pos == len(body), f"{len(body) - pos} bytes after the api_versions array"
    return correlation_id, error, ranges


def wait_closed(sock: socket.socket, timeout_s: float = CLOSE_TIMEOUT_S) -> bytes:
    """Reads until the server closes; fails if it keeps the connection open past the bound.
    Returns whatever it sent before closing."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"the server kept the connection open {timeout_s}s (sent {len(data)} bytes)"
            )
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except TimeoutError:
            continue
        if not chunk:
            return data
        data += chunk


def abort(sock: socket.socket) -> None:
    """Close with a RST instead of a FIN (SO_LINGER 0): the server's next read or write fails."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ---------------------------------------------------------------------------------------------
# ConsumerGroupHeartbeat (KIP-848), for the hostile group tests. No Python client exposes this
# API, so its request is built here from Kafka's published schema (flexible encoding: unsigned
# varint lengths plus one, empty tagged-field sections). librdkafka judges compatibility; this
# is the adversary, sending what a client never would.

CONSUMER_GROUP_HEARTBEAT = 68


def uvarint(n: int) -> bytes:
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def compact_string(s: str | None) -> bytes:
    if s is None:
        return b"\x00"
    data = s.encode()
    return uvarint(len(data) + 1) + data


def compact_array(items: list[bytes] | None) -> bytes:
    if items is None:
        return b"\x00"
    return uvarint(len(items) + 1) + b"".join(items)


def consumer_group_heartbeat(
    correlation_id: int,
    group: str,
    member_id: str,
    epoch: int,
    *,
    topics: list[str] | None = None,
    owned: list[tuple[bytes, list[int]]] | None = None,
    rebalance_timeout_ms: int = -1,
    assignor: str | None = None,
    instance: str | None = None,
    version: int = 1,
) -> bytes:
    """A ConsumerGroupHeartbeat v0/v1 request frame; `owned` is (16-byte topic id, partitions)."""
    body = (
        compact_string(group)
        + compact_string(member_id)
        + struct.pack(">i", epoch)
        + compact_string(instance)
        + compact_string(None)  # rack id
        + struct.pack(">i", rebalance_timeout_ms)
        + compact_array(None if topics is None else [compact_string(t) for t in topics])
        + (compact_string(None) if version >= 1 else b"")  # topic regex
        + compact_string(assignor)
        + compact_array(
            None
            if owned is None
            else [
                tid + compact_array([struct.pack(">i", p) for p in parts]) + b"\x00"
                for tid, parts in owned
            ]
        )
        + b"\x00"
    )
    return frame(request_header(CONSUMER_GROUP_HEARTBEAT, version, correlation_id, True) + body)


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        assert self.pos + n <= len(self.data), "response ends early"
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def parse_consumer_group_heartbeat(body: bytes) -> dict:
    """A ConsumerGroupHeartbeat response (header v1); `assignment` is {topic id: [partitions]}
    or None when the coordinator left it out."""
    r = Reader(body)
    answer = {"correlation_id": r.unpack(">i")}
    r.skip_tags()
    answer["throttle_ms"] = r.unpack(">i")
    answer["error"] = r.unpack(">h")
    answer["message"] = r.compact_string()
    answer["member_id"] = r.compact_string()
    answer["epoch"] = r.unpack(">i")
    answer["interval_ms"] = r.unpack(">i")
    answer["assignment"] = None
    if r.unpack(">b") >= 0:
        assignment = {}
        for _ in range(r.uvarint() - 1):
            tid = r.take(16)
            assignment[tid] = [r.unpack(">i") for _ in range(r.uvarint() - 1)]
            r.skip_tags()
        r.skip_tags()
        answer["assignment"] = assignment
    r.skip_tags()
    assert r.pos == len(body), f"{len(body) - r.pos} bytes after the response"
    return answer


def call(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    return read_frame(sock)
