"""The systemd watchdog: fed while the serve loops are healthy, starved when one is wedged.

Each test plays systemd: it binds a Unix datagram socket, points ``NOTIFY_SOCKET`` at it, sets
``WATCHDOG_USEC`` to 0.2 s and reads what the server sends. Tests synchronise on the datagrams
received; a silence is asserted by waiting a few feeding periods for a datagram that must not come.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from helpers.process import LAUNCH, Child
from plantimager.commons import watchdog as wd
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.RPC import RPCServer
from plantimager.testing.fixtures import serve_in_thread

pytestmark = pytest.mark.timeout(60)

WATCHDOG_USEC = 200_000  # systemd's WatchdogSec=0.2: WATCHDOG=1 every 0.1 s
PERIOD = WATCHDOG_USEC / 2e6
SILENCE = 6 * PERIOD  # no datagram for this long: the watchdog is not being fed
BUDGET_MS = 300  # advertised timeout of the hanging method


class Systemd:
    """The receiving end of ``NOTIFY_SOCKET``."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    def next(self, timeout: float) -> str | None:
        """The next datagram, or None if none arrives within ``timeout`` seconds."""
        self.sock.settimeout(timeout)  # 0: only what is already queued
        try:
            return self.sock.recv(4096).decode()
        except (TimeoutError, BlockingIOError):
            return None

    def wait_for(self, message: str, timeout: float = 5.0) -> list[str]:
        """Read until ``message`` arrives; return what came before it. Fail at the deadline."""
        deadline = time.monotonic() + timeout
        before: list[str] = []
        while (remaining := deadline - time.monotonic()) > 0:
            got = self.next(remaining)
            if got == message:
                return before
            if got is not None:
                before.append(got)
        raise AssertionError(f"no {message!r} within {timeout} s; received {before}")

    def silent_for(self, seconds: float) -> bool:
        """True if nothing at all arrives for ``seconds``."""
        return self.next(seconds) is None


@pytest.fixture
def systemd(monkeypatch: pytest.MonkeyPatch) -> Iterator[Systemd]:
    """An abstract-namespace datagram socket named in ``NOTIFY_SOCKET``, with the watchdog on."""
    name = f"plantimager-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield Systemd(sock, "@" + name)
    finally:
        sock.close()
    assert not _watchdog_threads(), "a watchdog thread outlived its servers"


def _watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "systemd-watchdog" and t.is_alive()]


class Stalling(RPCServer):
    """A server whose methods hang until released (``stall`` advertises a short timeout)."""

    def __init__(self, context: zmq.Context) -> None:
        super().__init__(context, "tcp://127.0.0.1:0")
        self.entered = threading.Event()
        self.release = threading.Event()

    @RPCServer.register_method_json(timeout=BUDGET_MS)
    def stall(self) -> bool:
        """Hang (bounded) until released; its budget is 0.3 s."""
        self.entered.set()
        return self.release.wait(20)

    @RPCServer.register_method_json(timeout=60_000)
    def long_job(self) -> bool:
        """Hang (bounded) until released; its budget is a minute."""
        self.entered.set()
        return self.release.wait(20)


class Caller:
    """Sends one request without waiting for its reply (a plain REQ socket)."""

    def __init__(self, context: zmq.Context, port: int, method: str) -> None:
        self.sock = context.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.sock.send(json.dumps({"event": "METHOD_CALL", "method": method, "params": {}}).encode())

    def reply(self, timeout_ms: int = 5000) -> dict:
        assert self.sock.poll(timeout_ms), "no reply"
        return json.loads(self.sock.recv())

    def close(self) -> None:
        self.sock.close()


# -- sd_watchdog_enabled --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "4242"}, 0.2),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "4243"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "me"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert wd.watchdog_interval(environ, pid=4242) == expected


def test_monitor_budgets() -> None:
    monitor = wd.LoopMonitor("loop", {"quick": 300, "endless": None, "slow": 120_000}, idle_bound_s=5.0)
    monitor.beat()
    now = time.monotonic()
    assert monitor.healthy(now + 4.9) and not monitor.healthy(now + 5.1)  # loop stuck outside a handler
    monitor.enter({"event": "METHOD_CALL", "method": "quick"})
    start = time.monotonic()
    assert monitor.healthy(start + 0.29)
    assert "method 'quick' has run" in (monitor.problem(start + 0.31) or "")
    monitor.enter({"event": "METHOD_CALL", "method": "endless"})  # no limit advertised: capped
    start = time.monotonic()
    assert monitor.healthy(start + wd.MAX_HANDLER_BUDGET_S - 1)
    assert not monitor.healthy(start + wd.MAX_HANDLER_BUDGET_S + 1)
    monitor.enter({"event": "METHOD_CALL", "method": "slow"})
    assert monitor.healthy(time.monotonic() + 119)
    monitor.enter({"event": "PROPERTY_GET", "property": "x"})  # other requests: default budget
    start = time.monotonic()
    assert monitor.healthy(start + wd.DEFAULT_HANDLER_BUDGET_S - 0.1)
    assert not monitor.healthy(start + wd.DEFAULT_HANDLER_BUDGET_S + 0.1)
    monitor.beat()  # the handler returned: idle again
    assert monitor.healthy()


def test_watchdog_thread_needs_a_positive_timeout() -> None:
    with pytest.raises(ValueError, match="> 0"):
        wd.Watchdog(0)


# -- a server under systemd -------------------------------------------------------------------------
def test_fed_while_idle_and_starved_when_a_handler_hangs(ctx: zmq.Context, systemd: Systemd) -> None:
    server = Stalling(ctx)
    with serve_in_thread(server) as served:
        systemd.wait_for("WATCHDOG=1")
        systemd.wait_for("WATCHDOG=1")  # and again: it keeps feeding an idle loop
        caller = Caller(ctx, served.server.port, "stall")
        try:
            assert server.entered.wait(5)
            entered = time.monotonic()
            last = None
            while (message := systemd.next(SILENCE)) is not None:
                assert message == "WATCHDOG=1"
                last = time.monotonic()
                assert last - entered < 5, "the watchdog kept feeding a wedged loop"
            # fed while the handler was within its 0.3 s budget, then silent for SILENCE seconds
            assert last is not None, "the watchdog was not fed while the handler was within its budget"
            assert last - entered < BUDGET_MS / 1000 + 2 * PERIOD
            server.release.set()
            systemd.wait_for("WATCHDOG=1")  # the loop is healthy again: feeding resumes
            assert caller.reply()["result"] is True
        finally:
            server.release.set()
            caller.close()
    assert systemd.silent_for(SILENCE), "still fed after the server stopped"


def test_fed_during_a_long_handler_within_its_budget(ctx: zmq.Context, systemd: Systemd) -> None:
    """Unlike upstream, a long legitimate handler does not get the service killed (D26)."""
    server = Stalling(ctx)
    with serve_in_thread(server) as served:
        caller = Caller(ctx, served.server.port, "long_job")
        try:
            assert server.entered.wait(5)
            entered = time.monotonic()
            for _ in range(6):  # 6 feeds: 3 times WatchdogSec while the handler runs
                systemd.wait_for("WATCHDOG=1")
            assert time.monotonic() - entered >= 2 * WATCHDOG_USEC / 1e6
            assert not server.release.is_set()
        finally:
            server.release.set()
        assert caller.reply()["result"] is True
        caller.close()


def test_every_loop_must_be_healthy(ctx: zmq.Context, systemd: Systemd) -> None:
    """Two servers in one process: one wedged loop starves the watchdog although the other is fine."""
    wedged, healthy = Stalling(ctx), Stalling(ctx)
    with serve_in_thread(wedged) as served, serve_in_thread(healthy):
        assert len(_watchdog_threads()) == 1, "one watchdog thread per process"
        systemd.wait_for("WATCHDOG=1")
        caller = Caller(ctx, served.server.port, "stall")
        try:
            assert wedged.entered.wait(5)
            deadline = time.monotonic() + 5
            while systemd.next(SILENCE) is not None:
                assert time.monotonic() < deadline, "the watchdog kept feeding with one loop wedged"
        finally:
            wedged.release.set()
        systemd.wait_for("WATCHDOG=1")
        caller.reply()
        caller.close()
    assert not _watchdog_threads()


@pytest.mark.parametrize("unset", ["WATCHDOG_USEC", "NOTIFY_SOCKET"])
def test_no_watchdog_unless_asked(
    ctx: zmq.Context, systemd: Systemd, monkeypatch: pytest.MonkeyPatch, unset: str
) -> None:
    monkeypatch.delenv(unset)
    with serve_in_thread(Stalling(ctx)):
        assert not _watchdog_threads()
        assert systemd.silent_for(SILENCE)


def test_notify_socket_path_in_the_file_system(
    ctx: zmq.Context, systemd: Systemd, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "notify"
    if len(str(path)) > 100:  # sun_path holds 108 bytes
        pytest.skip("temporary path too long for a Unix socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        with serve_in_thread(Stalling(ctx)):
            assert Systemd(sock, str(path)).wait_for("WATCHDOG=1") == []


# -- the camera command under systemd ------------------------------------------------------------------
def test_camera_command_reports_ready_watchdog_and_stopping(
    ctx: zmq.Context, systemd: Systemd, tmp_path: Path
) -> None:
    """READY=1 once serving and registered, WATCHDOG=1 while healthy, STOPPING=1 on SIGTERM."""
    registry = DeviceRegistry(ctx, "127.0.0.1", 0)
    registry.start()
    node = Child(
        [sys.executable, "-c", "from plantimager.cli.camera import camera; camera()",
         "--registry", f"tcp://127.0.0.1:{registry.port}", "--bind", "tcp://127.0.0.1:0",
         "--spool", str(tmp_path / "spool"), "--state-dir", str(tmp_path / "state"), "--name", "sd-node"],
        env={"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)},
    )  # fmt: skip
    try:
        before = systemd.wait_for("READY=1", timeout=20)
        assert "STOPPING=1" not in before
        devices = registry.get_devices()
        assert list(devices) == ["sd-node"] and devices["sd-node"][0] == "camera", (
            f"READY=1 came before the node registered: {devices}"
        )
        systemd.wait_for("WATCHDOG=1")
        node.wait_for(r"registered as sd-node")
        os.kill(node.pid, signal.SIGTERM)
        systemd.wait_for("STOPPING=1", timeout=20)
        assert node.popen.wait(20) == 0
        node.wait_for("node stopped")
    finally:
        node.kill()
        registry.stop()


# -- the registry under systemd ---------------------------------------------------------------------
def test_registry_feeds_the_watchdog_while_it_serves(ctx: zmq.Context, systemd: Systemd) -> None:
    registry = DeviceRegistry(ctx, "127.0.0.1", 0)
    registry.start()
    try:
        systemd.wait_for("WATCHDOG=1")
        systemd.wait_for("WATCHDOG=1")  # and again: an idle registry keeps feeding
        assert len(_watchdog_threads()) == 1
    finally:
        registry.stop()
    assert not _watchdog_threads()
    while systemd.next(0) is not None:  # fed before the registry stopped
        pass
    assert systemd.silent_for(SILENCE), "still fed after the registry stopped"


def test_registry_command_reports_ready_watchdog_and_stopping(systemd: Systemd) -> None:
    """What the registry's unit (Type=notify, WatchdogSec=) relies on."""
    command = Child(
        [*LAUNCH, "registry", "--bind", "tcp://127.0.0.1:0"],
        env={"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)},
    )  # fmt: skip
    try:
        before = systemd.wait_for("READY=1", timeout=20)
        assert "STOPPING=1" not in before
        command.wait_for(r"registry listening on tcp://127\.0\.0\.1:\d+")
        systemd.wait_for("WATCHDOG=1")
        systemd.wait_for("WATCHDOG=1")
        os.kill(command.pid, signal.SIGTERM)
        systemd.wait_for("STOPPING=1", timeout=20)
        assert command.popen.wait(20) == 0
    finally:
        command.kill()
