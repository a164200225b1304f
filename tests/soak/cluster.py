"""The processes of a soak: a registry, camera nodes and the controller, and what the controller says.

Every process is a :class:`~soak.procs.Proc`, started, signalled, restarted and stopped by its pid;
:meth:`Cluster.close` stops whatever is still running. All of them listen on 127.0.0.1, on ports the
system picks, except the registry, whose port is picked once (free at the time) so that it comes
back at the same address after a restart.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from helpers.process import dummy_node_args, free_port
from plantimager.commons.registry import RegistryWatcher

from .procs import PLANTIMAGER, Proc

__all__ = ["Cluster", "ControllerState"]

#: Starts a camera node with its spool's log lines (what it stored) and a stack dump on SIGUSR1.
NODE_LAUNCH = (
    sys.executable,
    "-c",
    "import faulthandler, logging, signal; faulthandler.register(signal.SIGUSR1, all_threads=True); "
    "logging.getLogger('plantimager.camera.spool').setLevel(logging.DEBUG); "
    "from plantimager.cli.main import main; main()",
)
#: The folder holding the ``soak`` package, for the controller's ``PYTHONPATH``.
TESTS_DIR = Path(__file__).resolve().parent.parent
#: Longest wait for a process to start serving, seconds.
START_WAIT = 120.0


@dataclass
class ControllerState:
    """What the controller process has said so far (all its runs), updated as it prints."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    counts: Counter[str] = field(default_factory=Counter)
    last_event: float = field(default_factory=time.monotonic)
    cameras: int = 0
    cameras_at: float = 0.0
    cameras_low: int = 0  # the fewest cameras since the last mark_cameras()
    downloads: int = 0
    images_in_download: int = 0
    in_download: bool = False
    triggers: list[tuple[Callable[[ControllerState], bool], Callable[[], None]]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    drained: dict[str, Any] | None = None

    def feed(self, line: str) -> None:
        """Take one line of the controller's output into account."""
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        with self.cond:
            self.last_event = time.monotonic()
            if not isinstance(event, dict) or "event" not in event:
                self.cond.notify_all()
                return
            kind = event["event"]
            self.counts[kind] += 1
            if kind == "download":
                self.downloads += 1
                self.images_in_download = 0
                self.in_download = True
            elif kind == "image":
                self.images_in_download = int(event.get("n", 0))
            elif kind in ("downloaded", "ready", "stopped"):
                self.in_download = False
            if kind in ("ready", "cameras"):
                self.cameras = int(event.get("cameras", event.get("n", 0)))
                self.cameras_at = time.monotonic()
                self.cameras_low = min(self.cameras_low, self.cameras)
            elif kind == "error":
                self.errors.append(event)
            elif kind == "unexpected":
                self.unexpected.append(event)
            elif kind == "drained":
                self.drained = event
            for trigger in [t for t in self.triggers if t[0](self)]:
                self.triggers.remove(trigger)
                trigger[1]()
            self.cond.notify_all()

    def when(self, predicate: Callable[[ControllerState], bool], action: Callable[[], None]) -> None:
        """Run ``action`` once, as soon as a line makes ``predicate(self)`` true (on the reading thread).

        Unlike :meth:`wait_until`, no line can go by unseen between two checks.
        """
        with self.cond:
            self.triggers.append((predicate, action))

    def cancel(self, action: Callable[[], None]) -> bool:
        """Forget a :meth:`when` whose action has not run; False if it ran already."""
        with self.cond:
            for trigger in self.triggers:
                if trigger[1] is action:
                    self.triggers.remove(trigger)
                    return True
            return False

    def mark_cameras(self) -> int:
        """Start counting the fewest cameras the controller has from now; returns how many it has."""
        with self.cond:
            self.cameras_low = self.cameras
            return self.cameras

    def restarted(self) -> None:
        """The controller was killed: no download is in progress any more."""
        with self.cond:
            self.in_download = False
            self.last_event = time.monotonic()
            self.cond.notify_all()

    def wait_until(self, predicate: Any, timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds (re-checked on every line); False at the deadline."""
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)


class Cluster:
    """A registry, ``nodes`` camera nodes and a controller, each a process, under ``work``.

    Parameters
    ----------
    work : pathlib.Path
        Folder of the logs and of the nodes' spools and state folders.
    dataset : pathlib.Path
        The controller's dataset.
    nodes : int
        How many camera nodes.
    resolution : str
        Still resolution of the nodes' dummy cameras (``WxH``).
    """

    def __init__(self, work: Path, dataset: Path, nodes: int, resolution: str = "160x120") -> None:
        self.work = Path(work)
        self.dataset = Path(dataset)
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.registry_url = f"tcp://127.0.0.1:{free_port()}"
        self.context = zmq.Context()
        self.registry = Proc(
            "registry", [*PLANTIMAGER, "registry", "--bind", self.registry_url], self.logs / "registry.log"
        )
        self.nodes: dict[str, Proc] = {}
        for number in range(1, nodes + 1):
            name = f"node{number:02d}"
            home = self.work / "nodes" / name
            args = [*NODE_LAUNCH, *dummy_node_args(name, self.registry_url, home, 1, resolution)]
            self.nodes[name] = Proc(name, args, self.logs / f"{name}.log")
        self.state = ControllerState()
        env = {"PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
        self._controller_env = env
        self.controller: Proc | None = None
        #: The longest a capturing controller runs, seconds (a bound of its own, beside SIGTERM).
        self.capture_seconds = 3600.0
        self.lock = threading.Lock()  # held by a fault that needs every node to stay as it is

    def spool_of(self, name: str) -> Path:
        """The spool folder of a node."""
        return self.work / "nodes" / name / "spool"

    # -- registry --------------------------------------------------------------------------------
    def start_registry(self) -> None:
        """Start the registry and wait until it listens."""
        self.registry.start()
        if self.registry.wait_for(r"registry listening on", START_WAIT) is None:
            raise RuntimeError(f"the registry did not start; see {self.registry.log}")

    def registered(self, expected: set[str], timeout: float) -> float | None:
        """Seconds until the registry lists every node of ``expected`` (None at the deadline).

        A new watcher is used, so that nothing it remembers of an earlier registry counts.
        """
        started = time.monotonic()
        watcher = RegistryWatcher(self.context, self.registry_url, device_type="camera")
        watcher.start()
        try:
            if watcher.wait_for(lambda devices: expected <= set(devices), timeout):
                return time.monotonic() - started
            return None
        finally:
            watcher.stop()

    # -- nodes -----------------------------------------------------------------------------------
    def start_nodes(self) -> None:
        """Start every node, then wait until each serves."""
        for proc in self.nodes.values():
            proc.start()
        for proc in self.nodes.values():
            if proc.wait_for(r"listening on tcp://", START_WAIT) is None:
                raise RuntimeError(f"{proc.name} did not start; see {proc.log}")

    def running_nodes(self) -> set[str]:
        """Names of the nodes that run and are not stopped."""
        return {name for name, proc in self.nodes.items() if proc.alive and not proc.stopped}

    # -- controller ------------------------------------------------------------------------------
    def start_controller(self, *, drain: float | None = None, wait: float = 60.0) -> Proc:
        """Start the controller on the dataset: capturing (for at most :attr:`capture_seconds`), or
        with ``drain`` only downloading (for at most that long); ``wait``: its longest wait for every
        camera at the start.
        """
        args = [
            sys.executable,
            "-m",
            "soak.controller",
            "--registry",
            self.registry_url,
            "--dataset",
            str(self.dataset),
            "--cameras",
            str(len(self.nodes)),
            "--wait",
            str(wait),
        ]
        if drain is not None:
            args += ["--drain", str(drain)]
        else:
            args += ["--seconds", str(self.capture_seconds)]
        if self.controller is None:
            self.controller = Proc(
                "controller", args, self.logs / "controller.log", self._controller_env, self.state.feed
            )
        else:
            self.controller.args = args
        self.controller.start()
        return self.controller

    # -- the end ---------------------------------------------------------------------------------
    def heal(self) -> None:
        """Let every stopped node go on and restart every node that is not running."""
        for proc in self.nodes.values():
            if proc.stopped:
                proc.send(signal.SIGCONT)
            if not proc.alive:
                proc.start()
        if not self.registry.alive:
            self.start_registry()

    def close(self) -> dict[str, int | None]:
        """Stop every process still running, by its pid (SIGTERM, then SIGKILL).

        Returns
        -------
        dict
            Name -> exit status of each process that was still running.
        """
        running = [
            p for p in (self.controller, *self.nodes.values(), self.registry) if p is not None and p.alive
        ]
        for proc in running:
            proc.terminate()  # all at once; then each is waited for
        statuses = {proc.name: proc.stop() for proc in running}
        self.context.destroy(linger=0)
        return statuses
