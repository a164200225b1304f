"""Child processes of the soak: started, signalled, restarted and stopped by their pid.

Each :class:`Proc` keeps its output (stdout and stderr) in a log file that outlives restarts, and lets
the soak wait for a line of the current run with a deadline: a thread reads the pipe and wakes the
waiters, so nothing polls.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["PLANTIMAGER", "Proc"]

#: Runs the ``plantimager`` command line with this interpreter.
PLANTIMAGER = (sys.executable, "-c", "from plantimager.cli.main import main; main()")
#: Longest wait for a process to exit after SIGTERM before it is killed, seconds.
STOP_WAIT = 10.0


class Proc:
    """One child process (and its later restarts) whose output lines go to ``log`` and can be awaited.

    Parameters
    ----------
    name : str
        What the soak calls it (``node07``, ``registry``...).
    args : sequence of str
        The command.
    log : pathlib.Path
        Its output, appended to across restarts.
    env : dict, optional
        Extra environment variables.
    on_line : callable, optional
        Called with every line of output (on the thread that reads it).
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.on_line = on_line
        self.args = list(args)
        self.log = log
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen: subprocess.Popen[str] | None = None
        self.starts = 0
        self.stopped = False  # SIGSTOP sent and no SIGCONT yet
        self._terminated = False
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._cursor = 0
        self._ended = False
        self._pump: threading.Thread | None = None
        #: Exceptions raised by ``on_line``.
        self.errors: list[str] = []

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> Proc:
        """Start the process (again); the previous run must have ended."""
        if self.alive:
            raise RuntimeError(f"{self.name} is still running (pid {self.pid})")
        self._reap()
        self.popen = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=self.env,
        )
        self.starts += 1
        self.stopped = self._terminated = False
        with self._cond:
            self._lines, self._cursor, self._ended = [], 0, False
        self._pump = threading.Thread(
            target=self._read, args=(self.popen,), name=f"soak-pump-{self.name}", daemon=True
        )
        self._pump.start()
        return self

    def _read(self, popen: subprocess.Popen[str]) -> None:
        assert popen.stdout is not None
        with open(self.log, "a", encoding="utf-8") as log:
            log.write(f"=== {self.name}: start {self.starts}, pid {popen.pid}\n")
            for line in popen.stdout:
                log.write(line)
                log.flush()
                text = line.rstrip("\n")
                if self.on_line is not None:
                    try:
                        self.on_line(text)
                    except Exception as exc:  # the soak's own bug: kept, and the output still read
                        self.errors.append(f"{self.name}: handling {text[:80]!r}: {exc!r}")
                with self._cond:
                    self._lines.append(text)
                    self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        """The pid of the current run (0 if never started)."""
        return self.popen.pid if self.popen is not None else 0

    @property
    def alive(self) -> bool:
        """Whether the current run has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def send(self, signum: int) -> None:
        """Send a signal to the current run, by its pid."""
        if self.alive:
            os.kill(self.pid, signum)
            if signum == signal.SIGSTOP:
                self.stopped = True
            elif signum == signal.SIGCONT:
                self.stopped = False

    def kill(self) -> int | None:
        """SIGKILL the current run by its pid and reap it; returns its exit status."""
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        return self._reap()

    def terminate(self) -> None:
        """Ask the current run to stop (SIGCONT, then SIGTERM, by pid) without waiting.

        Sent once per run: a second SIGTERM could reach a process that, stopping, has already put
        back the default action of the signal.
        """
        if self.alive and not self._terminated:
            self._terminated = True
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGTERM)

    def stop(self, timeout: float = STOP_WAIT) -> int | None:
        """SIGCONT and SIGTERM by pid, wait up to ``timeout``, then SIGKILL; returns the exit status.

        Before the SIGKILL, a process that is still there gets SIGUSR1 (our processes print their
        threads' stacks on it, so the log shows where it was stuck).
        """
        if self.alive:
            self.terminate()
            assert self.popen is not None
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGUSR1)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(2.0)
                if self.alive:
                    os.kill(self.pid, signal.SIGKILL)
        return self._reap()

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` for the current run to exit by itself; its status, None if it did not."""
        if self.popen is None:
            return None
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self._reap()

    def _reap(self) -> int | None:
        popen = self.popen
        if popen is None:
            return None
        code = popen.wait(STOP_WAIT)
        self.stopped = False
        if self._pump is not None and self._pump is not threading.current_thread():
            self._pump.join(STOP_WAIT)
        if popen.stdout is not None:
            popen.stdout.close()
        return code

    # -- output ----------------------------------------------------------------------------------
    def wait_for(self, pattern: str, timeout: float) -> re.Match[str] | None:
        """The first line of this run, after those already matched, matching ``pattern``.

        Returns None at the deadline or when the process ended without printing one.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._cursor < len(self._lines):
                    line = self._lines[self._cursor]
                    self._cursor += 1
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    return None
                self._cond.wait(left)

    def lines(self) -> list[str]:
        """The lines of the current run so far."""
        with self._cond:
            return list(self._lines)

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid {self.pid} {'alive' if self.alive else 'ended'}>"
