"""The controller's side of one camera node: its RPC client, its cameras, round trips and state.

Each node gets one :class:`NodeClient` (thread-safe: calls from several threads are sent one after
the other). The rig bounds how long it waits for each kind of call (:class:`CallLimits`) below what
the node advertises, so a node that died without unregistering costs seconds, not minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from plantimager.commons.cameradevice import CameraNode
from plantimager.commons.errors import InterfaceError, RemoteError, RPCTimeoutError
from plantimager.commons.number import finite
from plantimager.commons.registry import DeviceInfo
from plantimager.commons.RPC import RPCClient
from plantimager.commons.security import KeyRing

from .dataset import UNKNOWN_RESULT_GRACE_S
from .record import CameraInfo, NodeInfo, camera_key
from .timing import RoundTrips, clock_flag

__all__ = ["CallLimits", "NodeClient", "RigNode", "describe_error", "is_connection_error"]

logger = logging.getLogger(__name__)

#: Methods a device must serve to be used as a camera node.
_REQUIRED = ("ping", "identify", "cameras", "start_capture", "retrieve_still", "release", "configure")


@dataclass(frozen=True, slots=True)
class CallLimits:
    """Longest waits of the rig's calls to nodes, in milliseconds.

    Attributes
    ----------
    connect : int
        Inventory when connecting.
    call : int
        Short calls (ping, identify, cameras, configure, release, status...).
    capture : int
        ``start_capture``, beyond the lead (firing, encoding and storing every camera).
    transfer : int
        ``retrieve_still`` (one image).
    unknown_result : int
        How long a download asks for an image whose capture result never reached the rig (its
        node died or hung during the capture) before a node that does not hold it is taken as never
        having captured it.
    straggler : int or None
        Once some nodes have answered a capture, how long a node that has not may still take
        before it is taken as hung (its images stay owed, and nothing waits for it any more), or
        twice as long as the others took if that is longer; None (the default) waits for it up to
        ``capture``. From outside, a node busy with a long capture (many cameras, a slow encoder)
        looks like a stopped one until then: set it only where the nodes' capture times are alike.
    """

    connect: int = 2000
    call: int = 5000
    capture: int = 60_000
    transfer: int = 30_000
    unknown_result: int = round(UNKNOWN_RESULT_GRACE_S * 1000)
    straggler: int | None = None


class _NodeInterface(CameraNode):
    """``CameraNode`` without its signal: the rig does not subscribe to nodes' signals."""

    captureStored = None  # type: ignore[assignment]


@RPCClient.register_interface(_NodeInterface)
class NodeClient(_NodeInterface, RPCClient):
    """A client of a camera node whose waits are bounded by :class:`CallLimits`.

    Parameters
    ----------
    context : zmq.Context
        Context of the client's socket.
    url : str
        The node's address.
    limits : CallLimits
        Longest waits.
    keys : KeyRing, optional
        Talk CurveZMQ with these keys to a node whose public key is ``server_key``.
    server_key : str, optional
        The node's public key (from its registry entry).
    """

    def __init__(
        self,
        context: zmq.Context,
        url: str,
        limits: CallLimits,
        keys: KeyRing | None = None,
        server_key: str | None = None,
    ) -> None:
        super().__init__(context, url, timeout=limits.connect, keys=keys, server_key=server_key)
        # A client waits as long as the server advertises; a rig waits less (see CallLimits).
        self.limit_waits(limits.call, {"start_capture": limits.capture, "retrieve_still": limits.transfer})

    def serves(self, method: str) -> bool:
        """Whether the node advertises the remote method ``method``."""
        return method in self._json_methods or method in self._buffer_methods


def is_connection_error(exc: BaseException) -> bool:
    """True if ``exc`` means the node could not be reached (as opposed to a refusal it sent)."""
    if isinstance(exc, RemoteError):
        return False
    return isinstance(exc, (RPCTimeoutError, zmq.ZMQError, InterfaceError, OSError))


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed call, as shown to users."""
    if isinstance(exc, RPCTimeoutError):
        return f"no answer in time ({exc}); is the node running?"
    if isinstance(exc, RemoteError):
        return exc.error.splitlines()[0] if exc.error else type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RigNode:
    """One camera node as the rig knows it.

    Parameters
    ----------
    device : DeviceInfo
        Its registry entry.
    client : NodeClient
        The connected client (owned by this object from now on).
    node_id : str
        What ``identify()`` returned.
    cameras : list of dict
        What ``cameras()`` returned.
    round_trips : RoundTrips
        Round trips measured so far.
    on_state : callable, optional
        Called with ``(node, state, reason)`` when the node becomes unreachable or ready again,
        and with ``(node, "clock", flag)`` when its clock goes beyond the skew budget (``flag``
        says how far) or back within it (``flag`` empty).

    Attributes
    ----------
    name, address : str
        Registry name and RPC address.
    state : str
        ``ready`` or ``unreachable``.
    error : str
        Why it is unreachable.
    last_contact : float
        ``time.monotonic()`` of the last answer.
    clock_offset_ms : float or None
        The node's clock offset from NTP time as it last reported it, ms; None when unknown.
    """

    def __init__(
        self,
        device: DeviceInfo,
        client: NodeClient,
        node_id: str,
        cameras: list[dict[str, Any]],
        round_trips: RoundTrips,
        on_state: Callable[[RigNode, str, str], None] | None = None,
    ) -> None:
        self.device = device
        self.name = device.name
        self.address = device.addr
        self.client = client
        self.node_id = node_id
        self.round_trips = round_trips
        self.state = "ready"
        self.error = ""
        self.last_contact = time.monotonic()
        self.clock_offset_ms: float | None = None
        self.settings_revision: str | None = None  # the node's, when its cameras were last read
        self._fresh = True
        self._cameras = list(cameras)
        self._on_state = on_state
        self._lock = threading.Lock()
        self._busy = 0
        self._reconnect: Callable[[], NodeClient] | None = None  # makes a second client, for previews
        self._preview_client: NodeClient | None = None
        self._preview_lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        context: zmq.Context,
        device: DeviceInfo,
        limits: CallLimits,
        pings: int = 3,
        keys: KeyRing | None = None,
    ) -> RigNode:
        """Connect to the node of ``device``: inventory, a few pings, ``identify()`` and ``cameras()``.

        With ``keys``, over CurveZMQ, expecting the node to hold the key it registered with.

        Raises
        ------
        PlantImagerError, zmq.ZMQError
            If the node does not answer or is not a camera node.
        """
        if keys is not None and not device.public_key:
            raise InterfaceError(f"{device.name} registered without a key: a secured rig cannot reach it")
        client = NodeClient(context, device.addr, limits, keys, device.public_key or None)
        try:
            missing = [m for m in _REQUIRED if not client.serves(m)]
            if missing:
                raise InterfaceError(f"not a camera node: it does not serve {', '.join(missing)}")
            round_trips = RoundTrips()
            for _ in range(pings):
                started = time.perf_counter()
                client.ping()
                round_trips.add(time.perf_counter() - started)
            node_id = str(client.identify())
            revision = client.settings_revision() if client.serves("settings_revision") else None
            cameras = client.cameras()
            if not isinstance(cameras, list) or not all(isinstance(c, dict) for c in cameras):
                raise InterfaceError(f"cameras() returned {type(cameras).__name__}, not a list of dicts")
            status = client.status() if client.serves("status") else {}
        except BaseException:
            client.close()
            raise
        node = cls(device, client, node_id, cameras, round_trips)
        node.settings_revision = None if revision is None else str(revision)
        node._reconnect = lambda: NodeClient(context, device.addr, limits, keys, device.public_key or None)
        node.note_clock(status.get("clock_offset_ms") if isinstance(status, dict) else None)
        return node

    # -- calls -----------------------------------------------------------------------------------
    def call(self, method: str, *args: Any, timed: bool = False) -> Any:
        """Call a remote method, keeping the node's state and round trips up to date.

        Parameters
        ----------
        method : str
            The remote method.
        *args
            Its arguments.
        timed : bool
            Count the call's duration as a round trip: only for calls that do no work on the node
            (``ping``, ``status``). A call that stores, deletes, reconfigures or sends images
            takes as long as that work, which says nothing of how soon a capture request arrives,
            and would lengthen the lead of every capture after it.

        Raises
        ------
        PlantImagerError, zmq.ZMQError
            What the call raised; a failure to reach the node also marks it unreachable.
        """
        with self._lock:
            self._busy += 1
        started = time.perf_counter()
        try:
            result = getattr(self.client, method)(*args)
        except BaseException as exc:
            if is_connection_error(exc):
                self._set_state("unreachable", f"{method}: {describe_error(exc)}")
            elif isinstance(exc, RemoteError):
                self._alive()
            raise
        finally:
            with self._lock:
                self._busy -= 1
        if timed:
            self.round_trips.add(time.perf_counter() - started)
        self._alive()
        return result

    @property
    def busy(self) -> bool:
        """Whether a call is in progress."""
        with self._lock:
            return self._busy > 0

    def take_fresh(self) -> bool:
        """True the first time it is called for this connection to the node, False after.

        A download asks a node it (re)connected to what it holds, once, to release again what the
        node was told to delete but kept (after losing power).
        """
        with self._lock:
            fresh, self._fresh = self._fresh, False
        return fresh

    def note_clock(self, offset_ms: object) -> None:
        """Keep the clock offset the node reported (ms; anything but a number means unknown)."""
        offset = finite(offset_ms)
        with self._lock:
            before, self.clock_offset_ms = clock_flag(self.clock_offset_ms), offset
        after = clock_flag(offset)
        if bool(after) != bool(before):  # once when it goes wrong, once when it is right again
            if after:
                logger.warning("node %s: %s", self.name, after)
            if self._on_state is not None:
                self._on_state(self, "clock", after)

    def mark_unreachable(self, reason: str) -> None:
        """Take the node as unreachable (it stopped answering a call still running); ``reason`` says why.

        The rig does not wait for it until it answers again (a health ping, or that call).
        """
        self._set_state("unreachable", reason)

    def _alive(self) -> None:
        self.last_contact = time.monotonic()
        if self.state != "ready":
            self._set_state("ready", "")

    def _set_state(self, state: str, reason: str) -> None:
        with self._lock:
            changed = self.state != state
            self.state, self.error = state, reason
        if changed:
            if state == "unreachable":
                logger.warning("node %s at %s is unreachable: %s", self.name, self.address, reason)
            if self._on_state is not None:
                self._on_state(self, state, reason)

    # -- cameras ---------------------------------------------------------------------------------
    def check_settings(self) -> bool:
        """Read the cameras again if the node's settings revision changed; True if it did.

        Call it on an idle node (it is the health check's call, timed like ``ping``); a node that
        serves no revision is pinged. Settings changed by another controller so show here too.
        """
        if not self.client.serves("settings_revision"):
            self.call("ping", timed=True)
            return False
        revision = str(self.call("settings_revision", timed=True))
        if revision == self.settings_revision:
            return False
        cameras = self.call("cameras")
        if isinstance(cameras, list) and all(isinstance(c, dict) for c in cameras):
            with self._lock:
                self._cameras = [dict(c) for c in cameras]
        self.settings_revision = revision
        return True

    def update_cameras(self, settings: list[dict[str, Any]]) -> None:
        """Merge the settings returned by ``configure()`` into the cameras' description."""
        with self._lock:
            by_index = {c.get("index"): c for c in self._cameras}
            for item in settings:
                if item.get("index") in by_index:
                    by_index[item["index"]].update(item)

    def cameras(self) -> list[CameraInfo]:
        """The node's cameras."""
        with self._lock:
            cameras = [dict(c) for c in self._cameras]
        out = []
        for position, cam in enumerate(cameras):
            name = str(cam.get("name", f"cam{position}"))
            resolution = cam.get("resolution")
            width, height = resolution if isinstance(resolution, list) and len(resolution) == 2 else (0, 0)
            out.append(
                CameraInfo(
                    key=camera_key(self.name, name),
                    node=self.name,
                    node_id=self.node_id,
                    index=int(cam.get("index", position)),
                    name=name,
                    address=self.address,
                    resolution=(int(width), int(height)),
                    encoding=str(cam.get("encoding", "jpeg")),
                    quality=cam.get("quality"),
                    rotation=int(cam.get("rotation", 0) or 0),
                    controls=dict(cam.get("controls") or {}),
                    stream_url=str(cam.get("stream_url", "")),
                    backend=str(cam.get("backend", "")),
                )
            )
        return out

    def index_of(self, camera_name: str) -> int | None:
        """The current index of a camera on this node, by name."""
        for cam in self.cameras():
            if cam.name == camera_name:
                return cam.index
        return None

    def info(self) -> NodeInfo:
        """A snapshot for display."""
        worst = self.round_trips.worst()
        return NodeInfo(
            name=self.name,
            address=self.address,
            state=self.state,
            node_id=self.node_id,
            cameras=tuple(c.key for c in self.cameras()),
            rtt_ms=None if worst is None else round(worst * 1e3, 3),
            error=self.error,
            clock_offset_ms=self.clock_offset_ms,
            clock_flag=clock_flag(self.clock_offset_ms),
        )

    def preview(self, camera: int, after: int) -> tuple[int, bytes | None]:
        """The newest preview frame of camera index ``camera`` over RPC: its number and JPEG (None when
        not newer than ``after``).

        Uses a client of its own, so previews never queue behind (or delay) captures and downloads.

        Raises
        ------
        PlantImagerError, zmq.ZMQError
            If the node does not answer or does not serve preview frames.
        """
        with self._preview_lock:
            if self._preview_client is None:
                if self._reconnect is None:
                    raise InterfaceError(f"{self.name}: no preview connection")
                self._preview_client = self._reconnect()
            client = self._preview_client
            try:
                data, info = client.preview_frame(camera, after)
            except BaseException as exc:
                if is_connection_error(exc):  # a fresh client next time
                    self._preview_client = None
                    client.close()
                raise
        seq = info.get("seq") if isinstance(info, dict) else None
        return (seq if isinstance(seq, int) else 0), (bytes(data) if len(data) else None)

    def close(self) -> None:
        """Close the clients (waits for a call in progress to end)."""
        self.client.close()
        with self._preview_lock:
            if self._preview_client is not None:
                self._preview_client.close()
                self._preview_client = None
