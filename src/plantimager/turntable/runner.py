"""Run a turntable from options: build it, serve it until stopped, clean everything up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from plantimager.commons.registry.message import normalise_url
from plantimager.commons.security import KeyRing, check_exposure, default_bind
from plantimager.commons.turntabledevice import DEVICE_TYPE

from .backend import get_backend_factory
from .dummy import DEFAULT_SPEED
from .server import TurntableServer

__all__ = ["DEFAULT_NAME", "DEFAULT_REGISTRY_URL", "run_turntable"]

logger = logging.getLogger(__name__)

#: Where a turntable looks for the device registry by default.
DEFAULT_REGISTRY_URL = "tcp://127.0.0.1:5555"
#: Name a turntable proposes to the registry by default.
DEFAULT_NAME = "turntable"


def run_turntable(
    *,
    backend: str = "dummy",
    speed: float = DEFAULT_SPEED,
    registry: str | None = DEFAULT_REGISTRY_URL,
    bind: str | None = None,
    name: str = DEFAULT_NAME,
    backend_options: Mapping[str, Any] | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[TurntableServer], None] | None = None,
    on_registered: Callable[[str], None] | None = None,
    keys: KeyRing | None = None,
    insecure: bool = False,
) -> None:
    """Serve a turntable until ``stop`` is set or the server is stopped remotely.

    The turntable serves before it registers (as type ``"turntable"``), and keeps serving (and
    retrying in the background) while the registry cannot be reached.

    Parameters
    ----------
    backend : str
        Name of the backend (see :func:`~plantimager.turntable.backend.available_backends`).
    speed : float
        Turning speed in degrees per second.
    registry : str or None
        URL of the device registry; None registers nowhere.
    bind : str, optional
        Where to listen, ``tcp://host:port``; by default a port picked by the system, on every
        interface with keys (or ``insecure``), else on loopback only.
    name : str
        Name proposed to the registry; taken over from a stale registration (``overwrite``).
    backend_options : mapping, optional
        Keyword arguments of the backend.
    stop : threading.Event, optional
        Set it (e.g. from a signal handler) to stop.
    on_ready : callable, optional
        Called with the server once it serves, before it registers.
    on_registered : callable, optional
        Called with the name the registry accepted, or ``""`` when the registry did not answer.
    keys : KeyRing, optional
        Serve and register with CurveZMQ (see :class:`~plantimager.turntable.server.TurntableServer`).
    insecure : bool
        Listen beyond loopback without keys (logged as a warning).

    Raises
    ------
    ValidationError
        If the backend, the speed, a backend option or the registry's address is not acceptable,
        or ``bind`` is not a loopback address while there are no keys and ``insecure`` is false.
    """
    if registry:
        registry = normalise_url(registry)  # before anything listens
    if bind is None:
        bind = default_bind(0, secured=keys is not None, insecure=insecure)
    check_exposure(bind, secured=keys is not None, insecure=insecure, what="turntable")
    factory = get_backend_factory(backend)
    stop = stop if stop is not None else threading.Event()
    context = zmq.Context()
    server: TurntableServer | None = None
    thread: threading.Thread | None = None
    try:
        motor = factory(**dict(backend_options or {}))
        try:
            server = TurntableServer(context, bind, backend=motor, speed=speed, keys=keys)
        except BaseException:
            motor.close()
            raise

        def serve() -> None:
            try:
                server.serve_forever()
            finally:
                stop.set()

        thread = threading.Thread(target=serve, name="turntable", daemon=True)
        thread.start()
        if on_ready is not None:
            on_ready(server)
        if registry:
            accepted = server.register_to_registry(DEVICE_TYPE, name, registry, overwrite=True)
            if on_registered is not None:
                on_registered(accepted)
        while not stop.wait(1.0):
            pass
    finally:
        if server is not None:
            server.close()
        if thread is not None:
            thread.join(10)
        context.destroy(linger=0)
