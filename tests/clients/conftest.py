"""Fixtures that run a real `rill serve` for each test.

Every test gets its own broker on a fresh data directory and a free loopback port, so a crash or a
wedged connection in one test cannot leak into the next. The binary is `$RILL_BIN`, or the release
build in the repository's `target/` (`.ci/clients` builds it and sets the variable).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Bounds on the broker's lifecycle. The target is ready within 50 ms; these are far
# looser so a loaded 2-core CI machine does not flake, yet a hung server fails the test quickly.
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
READY_MARKER = "listening on"
# Seconds from spawning `rill serve` to its ready line, for every start in the session.
STARTUPS: list[float] = []


def rill_binary() -> Path:
    path = Path(os.environ.get("RILL_BIN") or REPO / "target" / "release" / "rill")
    if not path.is_file():
        pytest.fail(
            f"no rill binary at {path}: run `cargo build --release -p rill-cli` "
            "or .ci/clients, or set RILL_BIN",
            pytrace=False,
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on loopback; the broker binds it right after."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Broker:
    """One `rill serve` process over a data directory that outlives restarts."""

    def __init__(
        self, binary: Path, data_dir: Path, port: int, host: str = "127.0.0.1", extra_args=()
    ):
        self.binary = binary
        # More `rill serve` options (e.g. shorter group timeouts), given on every start.
        self.extra_args = list(extra_args)
        self.data_dir = data_dir
        self.port = port
        self.host = host
        self.proc: subprocess.Popen[str] | None = None
        # Every line the server printed, over all its runs: attached to failures.
        self.log: list[str] = []
        self.startup_seconds: list[float] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log[-lines:]) or "(the server printed nothing)"

    def start(self) -> None:
        assert self.proc is None, "start() on a broker that is already running"
        self._ready.clear()
        self.log.append(f"--- rill serve {self.data_dir} --listen {self.bootstrap}")
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", str(self.data_dir), "--listen", self.bootstrap]
            + self.extra_args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            # One pipe for both streams: the ready line is on stderr, and whatever the server
            # says on either belongs in a failure report, in order.
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            # Its own process group: a Ctrl-C aimed at pytest does not stop the broker under the
            # test's feet; teardown stops it.
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._drain, args=(self.proc,), daemon=True)
        self._reader.start()
        while not self._ready.wait(0.01):
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._reader.join(1.0)
                self.proc = None
                pytest.fail(
                    f"rill serve exited with {code} before it was ready:\n{self.log_tail()}"
                )
            if time.monotonic() - began > READY_TIMEOUT_S:
                self.proc.kill()
                self.proc.wait(5)
                self.proc = None
                pytest.fail(
                    f"rill serve printed no '{READY_MARKER}' line within {READY_TIMEOUT_S}s:\n"
                    f"{self.log_tail()}"
                )
        self.startup_seconds.append(time.monotonic() - began)
        STARTUPS.append(self.startup_seconds[-1])

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        # Reading until EOF also keeps the pipe from filling and blocking the server.
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log.append(line.rstrip("\n"))
            if READY_MARKER in line.lower():
                self._ready.set()

    def assert_alive(self) -> None:
        assert self.proc is not None, "the broker is not running"
        code = self.proc.poll()
        assert code is None, f"rill serve died with {code}:\n{self.log_tail()}"

    def pid(self) -> int:
        self.assert_alive()
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM, then the server must exit 0 within the bound (a clean shutdown)."""
        self.assert_alive()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self._forget()
            pytest.fail(
                f"rill serve did not exit within {STOP_TIMEOUT_S}s of SIGTERM:\n{self.log_tail()}"
            )
        self._forget()
        assert code == 0, f"rill serve exited with {code} after SIGTERM:\n{self.log_tail()}"

    def kill(self) -> None:
        """SIGKILL: no chance to sync or mark anything clean."""
        self.assert_alive()
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(STOP_TIMEOUT_S)
        self._forget()

    def restart(self) -> None:
        """A clean stop, then a new process on the same data directory and port."""
        self.stop()
        self.start()

    def _forget(self) -> None:
        if self._reader is not None:
            self._reader.join(2.0)
        self.proc = None

    def close(self) -> None:
        """Teardown: never leave a process behind, even when the test failed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._forget()


def running(server: Broker):
    """Starts `server` for a test and stops it after with SIGTERM, which must exit 0."""
    server.start()
    try:
        yield server
        # A test that killed the broker and did not restart it leaves nothing to stop. One that
        # left it running must see it alive and stopping cleanly: a crash during the test, or a
        # shutdown that hangs or fails, is a failure of that test.
        if server.proc is not None:
            server.stop()
    finally:
        server.close()


@pytest.fixture
def broker(tmp_path: Path):
    """A running broker on a fresh data directory and a free port on 127.0.0.1."""
    yield from running(Broker(rill_binary(), tmp_path / "data", free_port()))


@pytest.fixture
def broker_v6(tmp_path: Path):
    """A running broker listening on IPv6 loopback only, so clients must use what it advertises."""
    try:
        port = free_port("::1")
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    yield from running(Broker(rill_binary(), tmp_path / "data", port, host="::1"))


@pytest.fixture
def restart_broker(broker: Broker):
    """Restarts the test's broker on the same data directory and port (SIGTERM, exit 0, start)."""
    return broker.restart


@pytest.fixture
def kill_broker(broker: Broker):
    """SIGKILLs the test's broker; call `broker.start()` to bring it back on the same directory."""
    return broker.kill


@pytest.fixture
def topic_name(request) -> str:
    """A topic name unique to the test (Kafka's rules: letters, digits, '.', '_', '-')."""
    name = request.node.name
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
    return cleaned.strip("-")[:200]


def pytest_terminal_summary(terminalreporter):
    if STARTUPS:
        ordered = sorted(STARTUPS)
        terminalreporter.write_line(
            f"rill serve: {len(ordered)} starts, ready line after median "
            f"{ordered[len(ordered) // 2] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms "
            "(spawn to line, through a pipe)"
        )
