"""A child process whose output lines tests can wait on, and a free loopback port."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time

#: Runs the ``plantimager`` command line with this interpreter.
LAUNCH = [sys.executable, "-c", "from plantimager.cli.main import main; main()"]
WAIT = 15.0


class Child:
    """A child process whose stdout (and stderr) is read line by line by a thread.

    Tests synchronise on printed lines with :meth:`wait_for`, never on sleeps; :meth:`kill`
    stops the process by its pid and reaps it.
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Return the first new line matching ``pattern``; fail at the deadline or end of output."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no line matching {pattern!r}; output so far:\n" + "\n".join(self.seen))
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def kill(self) -> None:
        """Kill the process by its pid if still running, and reap it."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(WAIT)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (nothing listens on it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dummy_node_args(
    name: str, registry_url: str, home, cameras: int = 1, resolution: str = "320x240"
) -> list[str]:
    """Arguments of ``plantimager camera`` for a dummy node on loopback, its folders under ``home``."""
    return [
        "camera",
        "--backend",
        "dummy",
        "--cameras",
        str(cameras),
        "--registry",
        registry_url,
        "--spool",
        str(home / "spool"),
        "--state-dir",
        str(home / "state"),
        "--bind",
        "tcp://127.0.0.1:0",
        "--stream-port",
        "0",
        "--name",
        name,
        "--resolution",
        resolution,
    ]
