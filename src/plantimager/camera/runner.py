"""Run a camera node from options: build it, serve it until stopped, clean everything up."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import zmq

from plantimager.commons.errors import ValidationError
from plantimager.commons.registry.message import normalise_url
from plantimager.commons.security import KeyRing, check_exposure, default_bind

from .backend import CameraBackend, get_backend_factory
from .capture import DEFAULT_SETTLE_MS, FIRE_PRIORITY
from .names import validate_name
from .node import DEFAULT_POWEROFF_COMMAND, MAX_LATE_S, CameraNodeServer
from .spool import Spool

__all__ = ["DEFAULT_REGISTRY_URL", "default_spool_dir", "run_node"]

logger = logging.getLogger(__name__)

#: Where a node looks for the device registry by default.
DEFAULT_REGISTRY_URL = "tcp://127.0.0.1:5555"


def default_spool_dir() -> Path:
    """Return the default spool folder: ``$XDG_DATA_HOME/plantimager/spool``.

    ``XDG_DATA_HOME`` defaults to ``~/.local/share``.
    """
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "plantimager" / "spool"


def run_node(
    spool_dir: str | os.PathLike[str] | None = None,
    *,
    backend: str = "dummy",
    cameras: int = 1,
    registry: str | None = DEFAULT_REGISTRY_URL,
    bind: str | None = None,
    stream_port: int | None = 0,
    state_dir: str | os.PathLike[str] | None = None,
    allow_poweroff: bool = False,
    name: str | None = None,
    resolution: tuple[int, int] | None = None,
    backend_options: Mapping[str, Any] | None = None,
    poweroff_command: Sequence[str] = DEFAULT_POWEROFF_COMMAND,
    settle_ms: float = DEFAULT_SETTLE_MS,
    max_late: float = MAX_LATE_S,
    fire_priority: int = FIRE_PRIORITY,
    stop: threading.Event | None = None,
    on_ready: Callable[[CameraNodeServer], None] | None = None,
    on_registered: Callable[[str], None] | None = None,
    keys: KeyRing | None = None,
    insecure: bool = False,
) -> None:
    """Serve a camera node until ``stop`` is set or the node is stopped remotely.

    The node serves before it registers, and keeps serving (and retrying in the background) when
    the registry cannot be reached. On return every thread, socket and camera of the node is
    stopped and the spool is closed; stored captures stay on disk.

    Parameters
    ----------
    spool_dir : path, optional
        The spool folder; :func:`default_spool_dir` when None.
    backend : str
        Name of the camera backend (see :func:`~plantimager.camera.backend.available_backends`).
    cameras : int
        How many cameras of that backend the node serves.
    registry : str or None
        URL of the device registry; None registers nowhere.
    bind : str, optional
        Where the node listens, ``tcp://host:port``; by default a port picked by the system, on
        every interface with keys (or ``insecure``), else on loopback only.
    stream_port : int or None
        Port of the MJPEG previews (0: picked by the system); None runs no previews.
    state_dir : path, optional
        The node's state folder, where its id is kept (one per node; see
        :func:`~plantimager.camera.identity.node_identity`).
    allow_poweroff : bool
        Let a remote ``shutdown()`` power the host off.
    name : str, optional
        Name proposed to the registry (checked by :func:`~plantimager.camera.names.validate_name`);
        the node id by default. The node takes it over from a stale registration (``overwrite``),
        so a restarted node gets its name back.
    resolution : tuple of int, optional
        Initial still resolution of every camera.
    backend_options : mapping, optional
        More keyword arguments for the backend factory.
    poweroff_command : sequence of str
        What powering off runs.
    settle_ms : float
        How long after the instant of a synchronised capture the node waits before encoding and
        storing, in ms (0: as soon as every camera has fired).
    max_late : float
        How late a capture instant may be and still fire (at once), seconds; a later one is
        refused.
    fire_priority : int
        Real-time priority of the threads firing the cameras, where allowed (0: ordinary).
    stop : threading.Event, optional
        Set it (e.g. from a signal handler) to stop the node.
    on_ready : callable, optional
        Called with the node once it serves, before it registers.
    on_registered : callable, optional
        Called with the name the registry accepted, or ``""`` when the registry did not answer.
    keys : KeyRing, optional
        Serve and register with CurveZMQ: only keys trusted by ``keys`` connect, each with its role;
        previews are served on loopback and relayed over RPC. None: plaintext.
    insecure : bool
        Listen beyond loopback without keys (logged as a warning at every start).

    Raises
    ------
    ValidationError
        If an option is not acceptable (unknown backend, camera count, node name, settle time, a
        registry address that is not ``tcp://HOST:PORT``...), or ``bind`` is not a loopback
        address while there are no keys and ``insecure`` is false.
    PlantImagerError
        If the spool is used by another process or the backend cannot be loaded.
    """
    if isinstance(cameras, bool) or not isinstance(cameras, int) or cameras < 1:
        raise ValidationError(f"cameras must be an int >= 1, got {cameras!r}")
    if name is not None:
        validate_name(name, kind="node name")
    if registry:
        registry = normalise_url(registry)  # before anything listens
    factory = get_backend_factory(backend)
    options = dict(backend_options or {})
    if resolution is not None:
        options["resolution"] = tuple(resolution)
    if options.get("turntable") and registry:
        options.setdefault("turntable_registry", registry)  # a turntable named in the node's registry
        if keys is not None:
            options.setdefault("turntable_keys", keys)
    stop = stop if stop is not None else threading.Event()
    context = zmq.Context()
    backends: list[CameraBackend] = []
    spool: Spool | None = None
    node: CameraNodeServer | None = None
    thread: threading.Thread | None = None
    try:
        for index in range(cameras):
            backends.append(factory(index, **options))
        # Checked once the options are known good, before anything listens.
        if bind is None:
            bind = default_bind(0, secured=keys is not None, insecure=insecure)
        check_exposure(bind, secured=keys is not None, insecure=insecure, what="camera node")
        spool = Spool(Path(spool_dir).expanduser() if spool_dir is not None else default_spool_dir())
        node = CameraNodeServer(
            context,
            bind,
            backends=backends,
            spool=spool,
            state_dir=Path(state_dir) if state_dir is not None else None,
            stream_port=stream_port,
            allow_poweroff=allow_poweroff,
            poweroff_command=poweroff_command,
            settle_ms=settle_ms,
            keys=keys,
            max_late=max_late,
            fire_priority=fire_priority,
        )
        backends = []  # the node owns them now

        def serve() -> None:
            try:
                node.serve_forever()
            finally:
                stop.set()

        thread = threading.Thread(target=serve, name="camera-node", daemon=True)
        thread.start()
        if on_ready is not None:
            on_ready(node)
        if registry:
            accepted = node.register_to_registry("camera", name or node.node_id, registry, overwrite=True)
            if on_registered is not None:
                on_registered(accepted)
        while not stop.wait(1.0):
            pass
    finally:
        if node is not None:
            node.close()
        if thread is not None:
            thread.join(10)
        for camera in backends:
            camera.close()
        if spool is not None:
            spool.close()
        context.destroy(linger=0)
