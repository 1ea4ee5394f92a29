"""Raw TCP for the hostile tests, and for two ApiVersions checks no client can make.

Only the frame and request header are built here (Kafka's documented layout), never a message
body a client would send: the clients stay the judge of compatibility; this is the adversary.
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
