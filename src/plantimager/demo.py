"""The demo: a registry, simulated camera nodes (one process each) and a controller, on 127.0.0.1.

Secured (``secure``), every part gets a key pair of its own in a temporary folder, as the hosts of a
real rig would: the controller's (also the registry's and the turntable's) trusts each node's key as
a device, each node trusts the controller's as an operator, and everything talks CurveZMQ.

:class:`Demo` owns everything it starts and stops all of it: each node process by its pid (SIGTERM,
a bounded wait, then SIGKILL), then the controller and the registry. Each node keeps its spool and
state under ``<captures>/.demo/<node>/``, so images not yet downloaded survive a restart of the demo;
the pids are written to ``<captures>/.demo/pids.json``, so a demo that was killed outright leaves no
stray node behind the next time it starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.errors import PlantImagerError, RegistryError, ValidationError
from plantimager.commons.security import KeyRing, Role
from plantimager.rig import Rig, RigEvent
from plantimager.rig.session import prepare_folder
from plantimager.rig.storage import write_atomically

__all__ = ["Demo"]

logger = logging.getLogger(__name__)

#: Seconds a node gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
_LAUNCH = ("-c", "from plantimager.cli.main import main; main()")


class Demo:
    """Run a registry, ``nodes`` simulated camera nodes and a controller on this machine.

    Parameters
    ----------
    captures : path
        Where captures go; the nodes' spools live in ``<captures>/.demo``.
    nodes : int
        Number of camera node processes.
    cameras_per_node : int
        Cameras of each node.
    registry_port : int
        Port of the registry on 127.0.0.1 (0: picked by the system).
    resolution : tuple of int, optional
        Still resolution of every camera (the dummy backend's default otherwise).
    web_port : int, optional
        Serve the web page on 127.0.0.1 at this port (0: picked by the system); None: no page.
    say : callable
        Where the demo writes what it does (one line per call).
    turntable : str, optional
        Registry name of a simulated turntable the plant stands on: the simulated cameras then
        show the plant turned by its angle (the turntable itself is started by the caller).
    secure : bool
        Run everything over CurveZMQ with keys made for this run in a temporary folder (removed by
        :meth:`stop`); the controller's keys are :attr:`keys`.

    Raises
    ------
    ValidationError
        If a count is out of range or ``captures`` cannot be written.
    """

    def __init__(
        self,
        captures: str | os.PathLike[str],
        *,
        nodes: int = 8,
        cameras_per_node: int = 1,
        registry_port: int = 5555,
        resolution: tuple[int, int] | None = None,
        web_port: int | None = None,
        say: Callable[[str], Any] = print,
        turntable: str | None = None,
        secure: bool = False,
    ) -> None:
        if not 1 <= nodes <= 64 or not 1 <= cameras_per_node <= 8:
            raise ValidationError(
                f"the demo runs 1 to 64 nodes of 1 to 8 cameras, got {nodes} x {cameras_per_node}"
            )
        self.captures = Path(captures).expanduser().absolute()
        self.home = self.captures / ".demo"
        self.node_count = nodes
        self.cameras_per_node = cameras_per_node
        self.registry_port = registry_port
        self.resolution = resolution
        self.web_port = web_port
        self.say = say
        self.turntable = turntable
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.registry_url = ""
        self.rig: Rig | None = None
        self._context: zmq.Context | None = None
        self._registry: DeviceRegistry | None = None
        self._stop_web: Callable[[], None] | None = None
        self._logs: list[Any] = []
        self._started = time.monotonic()
        self._lock_fd: int | None = None
        self.secure = secure
        self.keys: KeyRing | None = None
        self.keys_home: Path | None = None

    # -- start -----------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Start everything and wait until every camera is in the rig.

        Raises
        ------
        PlantImagerError
            If another demo runs with the same captures folder, the registry port or the web
            page's port is taken, or the cameras are not all up within ``timeout`` seconds
            (everything started is stopped again).
        """
        prepare_folder(self.home, "demo folder")
        self._take_folder()
        self._stop_strays()
        try:
            if self.secure:
                self.keys_home = Path(tempfile.mkdtemp(prefix="plantimager-demo-keys-"))
                self.keys = KeyRing.init(self.keys_home / "controller")
                self.say(f"keys in {self.keys_home} (controller key {self.keys.key_id})")
            self._context = zmq.Context()
            try:
                self._registry = DeviceRegistry(
                    self._context, "127.0.0.1", self.registry_port, keys=self.keys
                )
            except RegistryError as exc:
                raise PlantImagerError(
                    f"{exc}; is another registry or demo running? (--registry-port 0 picks a free port)"
                ) from None
            self._registry.start()
            self.registry_url = self._registry.url
            self.say(f"registry {self.registry_url}")
            for number in range(1, self.node_count + 1):
                self._spawn(f"node{number}", first_view=(number - 1) * self.cameras_per_node)
            self.rig = Rig(self.registry_url, context=self._context, keys=self.keys).start()
            self.rig.on_event(self._report)
            expected = self.node_count * self.cameras_per_node
            if not self.rig.wait_for_cameras(expected, timeout):
                raise PlantImagerError(
                    f"only {len(self.rig.cameras())} of {expected} cameras came up within {timeout:g} s; "
                    f"see the node logs in {self.home}"
                )
            if self.web_port is not None:
                from plantimager.web import start_web  # the web stack loads only when asked for

                try:
                    self._stop_web = start_web(self.rig, self.captures, port=self.web_port, say=self.say)
                except OSError as exc:
                    raise PlantImagerError(
                        f"cannot serve the web page on 127.0.0.1:{self.web_port}: {exc.strerror or exc}; "
                        "is another demo or `plantimager web` running? (--web-port 0 picks a free port)"
                    ) from None
        except BaseException:
            self.stop()
            raise

    def _take_folder(self) -> None:
        """Hold ``.demo/lock`` while running: a second demo on the same folder is refused."""
        fd = os.open(self.home / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise PlantImagerError(
                f"another demo (pid {holder}) is running with {self.captures}; "
                "stop it, or give this one other --captures"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _spawn(self, name: str, first_view: int) -> None:
        # Each node's cameras look at the plant from their own sides: node 1 sees views 0, 1...,
        # node 2 the next ones, as cameras placed side by side around a plant would.
        folder = self.home / name
        folder.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            *_LAUNCH,
            "camera",
            "--backend",
            "dummy",
            "--cameras",
            str(self.cameras_per_node),
            "--registry",
            self.registry_url,
            "--spool",
            str(folder / "spool"),
            "--state-dir",
            str(folder / "state"),
            "--bind",
            "tcp://127.0.0.1:0",
            "--stream-port",
            "0",
            "--name",
            name,
            "--backend-option",
            f"first_view={first_view}",
        ]
        if self.resolution is not None:
            args += ["--resolution", f"{self.resolution[0]}x{self.resolution[1]}"]
        if self.turntable is not None:
            args += ["--backend-option", f"turntable={self.turntable}"]
        if self.keys is not None and self.keys_home is not None:
            node_keys = KeyRing.init(self.keys_home / name)
            node_keys.trust(self.keys.public_key.decode(), Role.OPERATOR, "controller")
            self.keys.trust(node_keys.public_key.decode(), Role.DEVICE, name)
            args += ["--keys", str(node_keys.folder), "--registry-key", "controller"]
        log = open(folder / "node.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.processes[name] = process
        pids = {node: child.pid for node, child in self.processes.items()}
        write_atomically(self.home / "pids.json", json.dumps(pids, indent=1).encode())
        self.say(f"node {name} pid {process.pid} log {folder / 'node.log'}")

    def _report(self, event: RigEvent) -> None:
        if event.kind in ("camera_added", "camera_removed"):
            verb = "arrived" if event.kind == "camera_added" else "left"
            self.say(f"{time.monotonic() - self._started:8.3f} s  camera {event.camera} {verb}")
        elif event.kind in ("node_failed", "node_unreachable"):
            self.say(f"{time.monotonic() - self._started:8.3f} s  node {event.node}: {event.detail}")

    # -- running ---------------------------------------------------------------------------------
    def watch(self, stop: threading.Event) -> None:
        """Return when ``stop`` is set; report node processes that exit meanwhile."""
        gone: set[str] = set()
        while not stop.wait(0.5):
            for name, process in self.processes.items():
                if name not in gone and process.poll() is not None:
                    gone.add(name)
                    self.say(f"node {name} (pid {process.pid}) exited with status {process.returncode}")

    # -- stop ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the web page, the controller, every node process (by pid) and the registry."""
        if self._stop_web is not None:
            with contextlib.suppress(Exception):
                self._stop_web()
            self._stop_web = None
        if self.rig is not None:
            self.rig.close()
            self.rig = None
        _stop_processes({name: p.pid for name, p in self.processes.items()}, self.processes, self.say)
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._registry is not None:
            self._registry.stop()
            self._registry = None
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None
        if self.keys_home is not None:
            shutil.rmtree(self.keys_home, ignore_errors=True)
            self.keys_home = None
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.home / "pids.json").unlink()
            os.close(self._lock_fd)
            self._lock_fd = None

    def _stop_strays(self) -> None:
        """Stop node processes a previous demo left running (it was killed outright)."""
        try:
            recorded = json.loads((self.home / "pids.json").read_text())
        except (OSError, ValueError):
            return
        strays = {}
        for name, pid in recorded.items() if isinstance(recorded, dict) else []:
            try:
                cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if str(self.home / str(name) / "spool").encode() in cmdline:  # really our node, not a reused pid
                strays[str(name)] = int(pid)
        if strays:
            self.say(f"stopping {len(strays)} node(s) left by an earlier demo")
            _stop_processes(strays, {}, self.say)


def _stop_processes(
    pids: dict[str, int], children: dict[str, subprocess.Popen[bytes]], say: Callable[[str], Any]
) -> None:
    """SIGTERM every pid, wait up to STOP_TIMEOUT for all, SIGKILL the rest; reap our children."""
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for name, pid in pids.items():
        if not _wait_gone(pid, children.get(name), deadline):
            say(f"node {name} (pid {pid}) did not stop within {STOP_TIMEOUT:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, children.get(name), time.monotonic() + STOP_TIMEOUT)


def _wait_gone(pid: int, child: subprocess.Popen[bytes] | None, deadline: float) -> bool:
    if child is not None:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
            return True
        except subprocess.TimeoutExpired:
            return False
    while time.monotonic() < deadline:  # not our child: watch the pid
        if not _running(pid):
            return True
        time.sleep(0.05)
    return False


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
