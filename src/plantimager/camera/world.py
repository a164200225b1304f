"""The simulated world as a simulated camera sees it: the angle of the turntable under the plant.

A real camera knows nothing of the turntable: it sees the object as it stands when the shutter
opens. A simulated camera has to be told, so it asks the simulated turntable (the world's state
lives there) for its angle at the instant it fired (``position_at``: the table answers from the
record of its moves, however late the question comes). Every camera of a capture fires at the same
instant, so every camera sees the plant turned by the same angle, and no controller needs to
pass the angle along.

The turntable is named either by its URL (``tcp://host:port``) or by its name in the device
registry; it is looked up on first use, and again after it stops answering, so cameras may start
before the turntable does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import zmq

from plantimager.commons.errors import PlantImagerError, RPCTimeoutError, ValidationError
from plantimager.commons.registry import list_devices
from plantimager.commons.security import KeyRing
from plantimager.commons.turntabledevice import DEVICE_TYPE, TurntableClient

__all__ = ["DEFAULT_REGISTRY_URL", "TurntableLink"]

logger = logging.getLogger(__name__)

#: Where a turntable named without URL is looked up by default.
DEFAULT_REGISTRY_URL = "tcp://127.0.0.1:5555"
_TIMEOUT_MS = 2000


class TurntableLink:
    """A simulated camera's view of the simulated turntable.

    Parameters
    ----------
    turntable : str
        ``tcp://host:port`` of the turntable, or its name in the registry.
    registry : str
        The registry to look the name up in.
    timeout_ms : int
        Longest wait for the registry or the turntable to answer.
    keys : KeyRing, optional
        Reach a secured registry and turntable with these keys (the turntable must then be named
        by its registry name, which gives its public key too).
    on_target : callable, optional
        Called with the angle of each move the turntable starts (on a receiver thread), so the
        camera can prepare the view it will need.
    """

    def __init__(
        self,
        turntable: str,
        registry: str = DEFAULT_REGISTRY_URL,
        *,
        timeout_ms: int = _TIMEOUT_MS,
        keys: KeyRing | None = None,
        on_target: Callable[[float], None] | None = None,
    ) -> None:
        if not isinstance(turntable, str) or not turntable.strip():
            raise PlantImagerError(
                f"a turntable must be named by a URL or a registry name, got {turntable!r}"
            )
        self.turntable = turntable.strip()
        self.registry = registry
        self.timeout_ms = timeout_ms
        self.keys = keys
        if keys is not None and self.turntable.startswith("tcp://"):
            raise PlantImagerError(
                "with keys, name the turntable by its registry name (the registry gives its public key)"
            )
        self._on_target = on_target
        self._context = zmq.Context()
        self._lock = threading.Lock()
        self._client: TurntableClient | None = None
        self._closed = False
        self._looker: threading.Thread | None = None

    def _url(self) -> tuple[str, str]:
        if self.turntable.startswith("tcp://"):
            return self.turntable, ""
        devices = list_devices(
            self._context, self.registry, device_type=DEVICE_TYPE, timeout=self.timeout_ms, keys=self.keys
        )
        for device in devices:
            if device.name == self.turntable:
                return device.addr, device.public_key
        found = ", ".join(d.name for d in devices) or "none"
        raise PlantImagerError(
            f"no turntable named {self.turntable!r} is registered with {self.registry} (turntables: {found})"
        )

    def _connect(self) -> TurntableClient:
        # Lock held.
        if self._closed:
            raise PlantImagerError("the turntable link is closed")
        if self._client is None:
            url, public_key = self._url()
            client = TurntableClient(
                self._context, url, timeout=self.timeout_ms, keys=self.keys, server_key=public_key or None
            )
            client.limit_waits(self.timeout_ms)
            if self._on_target is not None:
                client.targetChanged.connect(self._on_target)
            self._client = client
            logger.info("simulated camera follows turntable %s at %s", self.turntable, client.url)
        return self._client

    def angle(self, when: float | None = None) -> float:
        """The turntable's angle at wall-clock time ``when`` (now if None), in degrees.

        A camera asks for the angle at its exposure after it fired: the table answers from the
        record of its moves (``position_at``), so a move begun in between does not turn the view.
        If the table does not remember that time (it was restarted since), the angle now.

        Raises
        ------
        PlantImagerError
            If the turntable cannot be found or does not answer (the next call looks again).
        """
        with self._lock:
            client = self._connect()
            try:
                if when is not None:
                    try:
                        return float(client.position_at(when))
                    except ValidationError as exc:
                        logger.warning("turntable %s: %s; taking its angle now", self.turntable, exc)
                return float(client.position)
            except (RPCTimeoutError, PlantImagerError) as exc:
                self._drop()
                raise PlantImagerError(f"turntable {self.turntable!r} did not answer: {exc}") from None

    def look_ahead(self) -> None:
        """Find the turntable now, in the background, and announce its angle to ``on_target``.

        A camera that starts beside a resting turntable can so prepare the view of its first
        capture instead of rendering it when it fires. A turntable not there yet is looked for
        again at the first capture.
        """
        if self._on_target is None or self._looker is not None:
            return
        self._looker = threading.Thread(target=self._look, name="turntable-look", daemon=True)
        self._looker.start()

    def _look(self) -> None:
        try:
            angle = self.angle()
        except PlantImagerError as exc:
            logger.debug("turntable %s not found yet: %s", self.turntable, exc)
            return
        if self._on_target is not None:
            self._on_target(angle)

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def close(self) -> None:
        """Disconnect. Safe to call twice."""
        with self._lock:
            self._closed = True
            self._drop()
        if self._looker is not None and self._looker is not threading.current_thread():
            self._looker.join(3 * self.timeout_ms / 1000)  # its calls end within their timeouts
        self._context.destroy(linger=0)
