"""The camera node: one process serving one or more cameras over RPC.

:class:`CameraNodeServer` implements both interfaces of :mod:`plantimager.commons.cameradevice`:
``CameraNode`` (PEPI's camera-server operations, synchronised capture into the on-disk spool,
retrieval, release, configuration, health) and the upstream ``Camera`` (whose members act on the
node's first camera), so an upstream controller and our rig can both drive it.

:class:`~plantimager.camera.percamera.PerCameraMembers` holds the members that act on one camera,
:class:`~plantimager.camera.handover.HandoverMembers` those that retrieve and release stored captures.
:func:`plantimager.camera.runner.run_node` builds a node from options (backend, number of cameras, spool,
registry...), serves it until it is stopped and cleans everything up; ``plantimager camera`` is a thin
wrapper around it.
"""

from __future__ import annotations

import inspect
import logging
import secrets
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq

from plantimager.commons.cameradevice import CameraMode, CameraNode
from plantimager.commons.RPC import RPCServer
from plantimager.commons.security import KeyRing

from ..commons.mjpeg import MJPEGServer
from .backend import CameraBackend
from .capture import DEFAULT_SETTLE_MS, FIRE_PRIORITY, STORE_NICE, CaptureRunner, check_settle_ms
from .clock import ClockWatch
from .handover import HandoverMembers
from .identity import node_identity
from .percamera import PerCameraMembers
from .previews import PreviewMembers, start_previews
from .slot import CameraSlot, apply_settings, check_camera_names, check_quality, plan_settings
from .spool import Spool

__all__ = ["DEFAULT_POWEROFF_COMMAND", "MAX_LATE_S", "CameraNodeServer"]

logger = logging.getLogger(__name__)

#: What ``shutdown()`` runs after stopping, when the node was started with ``allow_poweroff``.
DEFAULT_POWEROFF_COMMAND: tuple[str, ...] = ("systemctl", "poweroff")
_MAX_AHEAD_S = 60.0
#: How late a capture instant may be by default (it then fires at once), seconds.
MAX_LATE_S = 5.0


class CameraNodeServer(PreviewMembers, PerCameraMembers, HandoverMembers, CameraNode, RPCServer):
    """Serve the cameras of this host over RPC.

    Parameters
    ----------
    context : zmq.Context
        Context of the RPC sockets.
    url : str
        Where to listen, ``tcp://host:port`` (port 0: picked by the system).
    backends : sequence of CameraBackend
        The cameras, in order; the node closes them in :meth:`close`.
    spool : Spool
        Where captures are kept until released; owned by the caller.
    state_dir : pathlib.Path, optional
        The node's state folder, where its id is kept (see
        :func:`~plantimager.camera.identity.node_identity`).
    node_id : str, optional
        Use this id instead of the host's.
    camera_names : sequence of str, optional
        Names of the cameras in the spool and in stream URLs; ``cam0``, ``cam1``... by default.
    stream_port : int or None
        Port of the MJPEG preview server (0: picked by the system); None runs no previews.
    stream_host : str, optional
        Interface of the preview server; defaults to the RPC host (``0.0.0.0`` for a wildcard), and to
        127.0.0.1 with ``keys`` (see :mod:`~plantimager.camera.previews`).
    quality : int
        JPEG quality of stills, 1-100.
    allow_poweroff : bool
        Let :meth:`shutdown` power the host off after stopping the node.
    poweroff_command : sequence of str
        The command that powers the host off.
    max_ahead, max_late : float
        How far ahead, and how late, a capture instant may be, in seconds.
    settle_ms : float
        How long after the instant of a synchronised capture the node waits before encoding and
        storing, in ms (0 to 1000; 0: as soon as every camera has fired).
    store_nice : int
        How much lower the OS priority of the threads encoding and storing is (0: the same).
    fire_priority : int
        Real-time (FIFO) priority of the threads that fire the cameras, where the system allows it
        (0: ordinary scheduling).
    alive_timeout : int
        Seconds the registry may wait for a heartbeat.
    keys : KeyRing, optional
        Serve with CurveZMQ: only trusted keys connect, viewers may only read and watch (see
        :mod:`plantimager.commons.rpc.access`); None: plaintext.

    Raises
    ------
    ValidationError
        If there is no camera, a camera name is invalid or repeated, or ``quality`` or
        ``settle_ms`` is out of range.
    """

    def __init__(
        self,
        context: zmq.Context,
        url: str = "tcp://127.0.0.1:0",
        *,
        backends: Sequence[CameraBackend],
        spool: Spool,
        state_dir: Path | None = None,
        node_id: str | None = None,
        camera_names: Sequence[str] | None = None,
        stream_port: int | None = 0,
        stream_host: str | None = None,
        quality: int = 90,
        allow_poweroff: bool = False,
        poweroff_command: Sequence[str] = DEFAULT_POWEROFF_COMMAND,
        max_ahead: float = _MAX_AHEAD_S,
        max_late: float = MAX_LATE_S,
        settle_ms: float = DEFAULT_SETTLE_MS,
        store_nice: int = STORE_NICE,
        fire_priority: int = FIRE_PRIORITY,
        alive_timeout: int = 60,
        keys: KeyRing | None = None,
    ) -> None:
        backends = list(backends)
        names = check_camera_names(camera_names, len(backends))
        check_quality(quality)
        check_settle_ms(settle_ms)
        self.node_id = node_id or node_identity(state_dir)
        RPCServer.__init__(self, context, url, alive_timeout, keys=keys)
        self.started_at = time.monotonic()
        self.spool = spool
        self.allow_poweroff = bool(allow_poweroff)
        self.poweroff_command = tuple(poweroff_command)
        self.slots = [
            CameraSlot(i, n, b, quality=quality) for i, (n, b) in enumerate(zip(names, backends, strict=True))
        ]
        self._mode = CameraMode.STILL
        self._video_url = ""
        self._settings_lock = threading.RLock()
        self._boot = secrets.token_hex(4)  # a restarted node's revisions never match the old ones
        self._revision = 0
        self._shutdown_lock = threading.Lock()
        self._shutdown_thread: threading.Thread | None = None
        self._shutdown_done = threading.Event()
        self._closed = False
        self._streams: MJPEGServer | None = None
        simulated = [b.simulated_clock_offset_ms() for b in backends]
        self._clock = ClockWatch(next((o for o in simulated if o is not None), None))
        try:
            self._runner = CaptureRunner(
                self.slots,
                spool,
                self.node_id,
                max_ahead=max_ahead,
                max_late=max_late,
                settle_ms=settle_ms,
                store_nice=store_nice,
                fire_priority=fire_priority,
            )
            if stream_port is not None:
                self._streams = start_previews(
                    self.slots, url, stream_host, stream_port, secured=keys is not None
                )
        except BaseException:
            self.close()
            raise

    # -- PEPI CameraServer -----------------------------------------------------------------------
    @RPCServer.register_method_json(role="viewer")
    def ping(self) -> bool:
        """Return ``True``: the node is up and answering."""
        return True

    @RPCServer.register_method_json(role="viewer")
    def identify(self) -> str:
        """The node's id, stable across restarts (see :func:`~plantimager.camera.identity.node_identity`)."""
        return self.node_id

    @RPCServer.register_method_json
    def shutdown(self) -> None:
        """Stop the node once this call has been answered; power the host off only if allowed.

        The node stops serving from another thread right after the reply. When the node was started
        with ``allow_poweroff``, the power-off command runs after that.
        """
        with self._shutdown_lock:
            if self._shutdown_thread is not None:
                return
            self._shutdown_thread = threading.Thread(
                target=self._shutdown_sequence, name="node-shutdown", daemon=True
            )
            self._shutdown_thread.start()

    def _shutdown_sequence(self) -> None:
        try:
            logger.info("node %s shutting down on request", self.node_id)
            self.stop_server()
            if self.allow_poweroff:
                logger.warning("powering the host off: %s", " ".join(self.poweroff_command))
                try:
                    result = subprocess.run(
                        list(self.poweroff_command), stdin=subprocess.DEVNULL, timeout=60, check=False
                    )
                    if result.returncode:
                        logger.error("power-off command exited with status %d", result.returncode)
                except (OSError, subprocess.SubprocessError) as exc:
                    logger.error("power-off command failed: %s", exc)
        finally:
            self._shutdown_done.set()

    def wait_shutdown(self, timeout: float | None = None) -> bool:
        """Wait until a :meth:`shutdown` has stopped the node (and run the power-off command if allowed).

        Returns
        -------
        bool
            True once that is done, False on timeout or if no shutdown was asked for.
        """
        if self._shutdown_thread is None:
            return False
        return self._shutdown_done.wait(timeout)

    @RPCServer.register_method_json(timeout=120_000)
    def start_capture(self, data_code: str, at: float | None = None) -> dict:
        """Fire every camera at the instant ``at`` and store the images under ``data_code``.

        Parameters
        ----------
        data_code : str
            Name of the capture, 1 to 128 of ``[A-Za-z0-9._-]``, not starting with ``.`` or ``-``.
            An existing capture of the same code is replaced.
        at : float, optional
            Wall-clock instant, seconds since the epoch, at most 60 s ahead and 5 s late (a late
            instant fires at once); None fires now. With an instant, the node encodes and stores
            the images only once its settle time has passed after it.

        Returns
        -------
        dict
            ``{"data_code", "node", "requested_at", "requested_ns", "settle_ms", "cameras",
            "failures", "clock_offset_ms", "ready_at"}``; ``ready_at`` is when the last of this
            node's firing threads began to wait for the instant (wall clock, seconds: the
            controller learns from it how far ahead to set the instant); each entry of ``cameras``
            is the stored metadata (``camera``, ``camera_index``, ``captured_at``,
            ``captured_ns``, ``store_started_ns``, ``size``, ``sha256``, ``resolution``, ...);
            ``clock_offset_ms`` is this host's clock offset as in :meth:`status`, when last
            measured (capture times are on this clock).

        Raises
        ------
        ValidationError
            If the data code or the instant is not acceptable; nothing is fired.
        RigError
            If every camera failed.
        """
        record = self._runner.capture(data_code, at)
        record["clock_offset_ms"] = self._clock.offset_ms
        stored = record["cameras"]
        self.captureStored.emit(
            {
                "data_code": data_code,
                "cameras": [meta["camera_index"] for meta in stored],
                "captured_ns": [meta["captured_ns"] for meta in stored],
            }
        )
        return record

    @RPCServer.register_method_json(role="viewer")
    def enumerate_methods(self) -> dict[str, list[str]]:
        """The node's remote methods: name -> argument names (PEPI's introspection call)."""
        inventory = self.inventory()
        out: dict[str, list[str]] = {}
        for name in sorted({*inventory["json_methods"], *inventory["buffer_methods"]}):
            params = inspect.signature(getattr(self, name)).parameters.values()
            out[name] = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return out

    # -- rig operations --------------------------------------------------------------------------
    @RPCServer.register_method_json(role="viewer")
    def cameras(self) -> list[dict]:
        """The cameras in order, with their settings and preview URL.

        Returns
        -------
        list of dict
            ``{"name", "index", "backend", "resolution", "max_resolution", "encoding", "quality",
            "rotation", "controls", "stream_url"}`` per camera.
        """
        urls = self.stream_urls() or [""] * len(self.slots)
        return [{**slot.settings(), "stream_url": url} for slot, url in zip(self.slots, urls, strict=True)]

    @RPCServer.register_method_json
    def configure(self, settings: dict, camera: int | None = None) -> list[dict]:
        """Apply settings to one camera (``camera`` index) or to all (None).

        Parameters
        ----------
        settings : dict
            Any of ``resolution`` (``[width, height]``, clamped), ``encoding`` (``"jpeg"`` or
            ``"png"``), ``rotation`` (0, 90, 180, 270), ``quality`` (JPEG, 1-100) and ``controls``
            (control name -> value). Everything is checked before anything is applied.

        Returns
        -------
        list of dict
            The resulting settings of each camera configured.

        Raises
        ------
        ValidationError
            Naming the first setting that is not acceptable.
        """
        slots = self.slots if camera is None else [self.slot_at(camera)]
        with self._settings_lock:
            plans = [(slot, plan_settings(slot, settings)) for slot in slots]
            before = self.slots[0].settings()
            for slot, plan in plans:
                apply_settings(slot, plan)
            self._revision += 1
            after = self.slots[0].settings()
        if any(slot.index == 0 for slot in slots):
            self._emit_changes(before, after, "controls" in settings)
        return [slot.settings() for slot in slots]

    @RPCServer.register_method_json(role="viewer")
    def settings_revision(self) -> str:
        """A token that changes whenever a camera's settings may have changed (and at every start).

        A controller keeping the cameras' settings calls it instead of ``ping`` when it checks on
        an idle node, and asks for :meth:`cameras` again when the token is not the one it saw:
        settings changed by another controller (a command line beside a web page) show.
        """
        with self._settings_lock:
            return f"{self._boot}-{self._revision}"

    def _emit_changes(self, before: dict[str, Any], after: dict[str, Any], controls: bool) -> None:
        if before["resolution"] != after["resolution"]:
            self.resolutionChanged.emit(tuple(after["resolution"]))
        if before["encoding"] != after["encoding"]:
            self.encodingChanged.emit(after["encoding"])
        if before["rotation"] != after["rotation"]:
            self.rotationChanged.emit(after["rotation"])
        if controls:
            self.configChanged.emit(after["controls"])

    @RPCServer.register_method_json(role="viewer")
    def status(self) -> dict:
        """Health of the node.

        Returns
        -------
        dict
            ``{"id", "name", "address", "mode", "cameras", "spool": {"root", "usage_bytes",
            "max_bytes", "pending_codes", "pending_captures"}, "captures", "settle_ms",
            "uptime_s", "allow_poweroff", "clock_offset_ms"}``; ``clock_offset_ms`` is this host's
            clock minus NTP time as chrony reports it (positive: ahead), measured every few
            seconds, None without a synchronised chrony (see :mod:`plantimager.camera.clock`; a
            simulated camera may report a fixed one).
        """
        pending = self.spool.pending()
        return {
            "id": self.node_id,
            "name": self.name,
            "address": self.address,
            "mode": str(self._mode),
            "cameras": self.cameras(),
            "spool": {
                "root": str(self.spool.root),
                "usage_bytes": self.spool.usage_bytes(),
                "max_bytes": self.spool.max_bytes,
                "pending_codes": len(pending),
                "pending_captures": sum(len(v) for v in pending.values()),
            },
            "captures": self._runner.count,
            "settle_ms": self._runner.settle_ms,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "allow_poweroff": self.allow_poweroff,
            "clock_offset_ms": self._clock.offset_ms,
        }

    # -- life cycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving, wait for a requested shutdown to finish, stop previews, workers and cameras.

        The spool is left open: it belongs to the caller. Safe to call more than once.
        """
        if self._closed:
            return
        self._closed = True
        self.stop_server()
        thread = self._shutdown_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(90)
        if self._streams is not None:
            self._streams.stop()
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.close()
        self._clock.close()
        for slot in self.slots:
            try:
                slot.backend.close()
            except Exception:
                logger.exception("closing camera %s failed", slot.name)
