"""Runs the thermostat example of ``docs/rpc.md`` for real: registry, server and client processes."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
STARTUP_TIMEOUT = 5.0
CLIENT_TIMEOUT = 10.0

pytestmark = pytest.mark.timeout(30)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process whose output lines are read by a thread, so it can be waited on line by line.

    Parameters
    ----------
    args : list of str
        The command line.
    stream : str
        ``"stdout"`` or ``"stderr"``: the stream to follow (the other one is collected as well);
        ``"both"``: the two as one (what it prints and what it logs).
    """

    def __init__(self, args: list[str], stream: str = "stdout") -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        errors = subprocess.STDOUT if stream == "both" else subprocess.PIPE
        self.popen = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=errors, text=True, env=env, cwd=EXAMPLES.parents[1]
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.other: list[str] = []
        followed, other = self.popen.stdout, self.popen.stderr
        if stream == "stderr":
            followed, other = other, followed
        pumps = [(followed, self.lines.put), (other, self.other.append)]
        self._readers = [
            threading.Thread(target=self._pump, args=pump, daemon=True)
            for pump in pumps
            if pump[0] is not None  # None: merged into the stream followed
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in stream:
            sink(line.rstrip("\n"))
        sink(None)

    def wait_for(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """Read lines until one matches ``pattern``; fail after ``timeout`` seconds or at end of output."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.0, left))
            except queue.Empty:
                line = None
                left = 0.0
            if line is not None:
                self.seen.append(line)
                match = re.search(pattern, line)
                if match:
                    return match
                continue
            pytest.fail(
                f"{'no line' if left <= 0 else 'end of output'} matching {pattern!r} from {self.popen.args}; "
                f"saw {self.seen} and {[o for o in self.other if o is not None]}"
            )

    def output(self) -> str:
        """Everything the followed stream printed so far (after the process ended, all of it)."""
        for reader in self._readers:
            reader.join(timeout=2)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return "\n".join(self.seen)

    def stop(self) -> int:
        """SIGINT, then wait (up to 5 s), then kill; return the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        return self.popen.returncode


def run_client(*args: str) -> Process:
    client = Process([sys.executable, str(EXAMPLES / "thermostat_client.py"), *args])
    try:
        client.popen.wait(timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the client did not finish within {CLIENT_TIMEOUT} s; printed {client.output()!r}")
    return client


def test_thermostat_example_through_a_registry():
    port = free_port()
    registry_url = f"tcp://127.0.0.1:{port}"
    processes: list[Process] = []
    try:
        registry = Process(
            [
                sys.executable,
                "-c",
                "from plantimager.cli.main import main; main()",
                "registry",
                "--bind",
                registry_url,
            ],
            stream="both",  # it prints its address and logs the devices
        )
        processes.append(registry)
        registry.wait_for(r"registry listening on tcp://127\.0\.0\.1:\d+")

        server = Process([sys.executable, str(EXAMPLES / "thermostat_server.py"), "--registry", registry_url])
        processes.append(server)
        address = server.wait_for(r"^serving on (tcp://127\.0\.0\.1:\d+)$")[1]
        server.wait_for(rf"^registered as thermostat with {re.escape(registry_url)}$")
        registry.wait_for(rf"device arrived: thermostat \(thermostat\) at {re.escape(address)}")

        # Found through the registry, as docs/rpc.md shows.
        client = run_client("--registry", registry_url)
        processes.append(client)
        out = client.output()
        assert client.popen.returncode == 0, (out, client.other)
        assert f"found thermostat at {address}" in out
        assert "echo: Echo: hello" in out
        assert "read_sensor: 4 readings" in out
        assert "target: 20.0 celsius" in out
        assert "signal targetChanged: 21.5" in out
        assert "refused: target must be between -50 and 100 degrees" in out

        # Straight to the address; the server kept the value the first client set.
        client = run_client("--url", address)
        processes.append(client)
        out = client.output()
        assert client.popen.returncode == 0, (out, client.other)
        assert "target: 21.5 celsius" in out
        assert "signal targetChanged: 23.0" in out

        # Ctrl-C stops the server cleanly, and it unregisters on the way out.
        assert server.stop() == 0
        assert "stopped" in server.output()
        registry.wait_for(rf"device left: thermostat \(thermostat\) at {re.escape(address)}")
    finally:
        for process in reversed(processes):
            process.stop()
