"""Synchronised capture of every camera of a node into the spool.

Each camera has a firing thread and a storing thread, started once and kept. A capture hands every
firing thread the same wall-clock instant ``at``; each sleeps until 1 ms before it, then in turns
of 50 us (the thread's timer slack is lowered so that sleeps end on time), spins the last 50 us on
``time.time_ns()`` and fires its camera. Where the system allows it, firing threads run under the
real-time FIFO policy, so no ordinary process (another node, anything else on the host) keeps one
from its CPU at the instant. The frame then goes to the camera's storing thread, which
waits until every camera of the node has fired and ``settle_ms`` have passed since ``at``, then
encodes the frame and stores it durably in the spool. The storing threads run at a lower OS priority
(best effort), so encoding never takes a CPU from a camera about to fire, on this node or on a
neighbour sharing the host. The cameras of a node thus fire together, and nodes whose clocks agree
fire together too. Each capture records the requested instant and each camera's actual one, so the
controller can report the skew.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from plantimager.commons.errors import RigError, ValidationError
from plantimager.commons.number import is_finite

from .backend import Frame
from .exif import exif_bytes, with_exif
from .names import validate_name
from .optics import rotate_optics
from .pacing import (
    lower_thread_priority,
    ordinary_thread,
    realtime_thread,
    sleep_until,
    tighten_timer_slack,
    wait_until,
)
from .slot import EXTENSIONS, CameraSlot, encode_image, rotate, transcode
from .spool import Spool

__all__ = [
    "CAPTURE_BUDGET_S",
    "DEFAULT_SETTLE_MS",
    "FIRE_PRIORITY",
    "MAX_SETTLE_MS",
    "STORE_NICE",
    "CameraWorker",
    "CaptureRunner",
    "check_capture_time",
    "check_settle_ms",
    "collect_stills",
]

logger = logging.getLogger(__name__)

#: Default time after the capture instant before a node starts encoding and storing, in ms.
DEFAULT_SETTLE_MS = 5.0
#: Longest settle time accepted, in ms.
MAX_SETTLE_MS = 1000.0
#: How much lower the OS priority (higher nice value) of the storing threads is.
STORE_NICE = 10
#: Real-time (FIFO) priority of the firing threads, where allowed (root, CAP_SYS_NICE, or an
#: RLIMIT_RTPRIO at least this high: ``LimitRTPRIO=`` of a systemd unit); 0: ordinary scheduling.
FIRE_PRIORITY = 10
#: How long a camera waits for the others to fire before encoding anyway, in seconds.
FIRE_BARRIER_S = 5.0
#: Longest time a capture may take once fired (frame, encode, fsync), in seconds.
CAPTURE_BUDGET_S = 60.0


# -- timing --------------------------------------------------------------------------------------
def check_capture_time(at: float | None, max_ahead: float, max_late: float) -> int:
    """Validate a requested capture instant and return it in ns (now when ``at`` is None).

    Parameters
    ----------
    at : float or None
        Seconds since the epoch.
    max_ahead, max_late : float
        How far in the future, and in the past, ``at`` may lie, in seconds. An instant in the
        past but within ``max_late`` fires at once.

    Raises
    ------
    ValidationError
        If ``at`` is not a finite number or lies outside the window.
    """
    now_ns = time.time_ns()
    if at is None:
        return now_ns
    if not is_finite(at):
        raise ValidationError(
            f"capture time 'at' must be a finite number of seconds since the epoch, got {at!r}"
        )
    at_ns = round(at * 1e9)
    ahead = (at_ns - now_ns) / 1e9
    if ahead > max_ahead:
        raise ValidationError(
            f"capture time at={at:.6f} is {ahead:.3f} s in the future; at most {max_ahead:g} s is allowed "
            "(is the controller's clock right?)"
        )
    if -ahead > max_late:
        raise ValidationError(
            f"capture time at={at:.6f} is {-ahead:.3f} s in the past; at most {max_late:g} s late is "
            "accepted (is the controller's clock right?)"
        )
    return at_ns


def check_settle_ms(value: float) -> float:
    """Validate a settle time in ms (0 to :data:`MAX_SETTLE_MS`) and return it as a float.

    Raises
    ------
    ValidationError
        If ``value`` is not a finite number in range.
    """
    if not is_finite(value):
        raise ValidationError(f"settle_ms must be a number of milliseconds, got {value!r}")
    if not 0 <= value <= MAX_SETTLE_MS:
        raise ValidationError(f"settle_ms must be between 0 and {MAX_SETTLE_MS:g}, got {value!r}")
    return float(value)


# -- per-camera worker ---------------------------------------------------------------------------
class CameraWorker(threading.Thread):
    """A thread of one camera (firing, or storing); jobs run one after the other.

    Parameters
    ----------
    name : str
        Thread name.
    setup : callable, optional
        Run first on the thread (e.g. :func:`tighten_timer_slack`).
    """

    def __init__(self, name: str, setup: Callable[[], None] | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self._setup = setup
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()

    def submit(self, job: Callable[[], Any]) -> Future[Any]:
        """Queue ``job``; its result or exception arrives in the returned future."""
        future: Future[Any] = Future()
        self._jobs.put((job, future))
        return future

    def run(self) -> None:
        """Run queued jobs until :meth:`stop`."""
        if self._setup is not None:
            self._setup()
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)

    def stop(self, timeout: float = 5.0) -> None:
        """Let the queued jobs finish, then end the thread (waits up to ``timeout`` seconds)."""
        self._jobs.put(None)
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)


# -- capture -------------------------------------------------------------------------------------
class CaptureRunner:
    """Fires the cameras of a node together and stores their images in the spool.

    Parameters
    ----------
    slots : sequence of CameraSlot
        The node's cameras, in order.
    spool : Spool
        Where captures are stored.
    node_id : str
        Recorded in every capture's metadata.
    max_ahead, max_late : float
        Window accepted for the capture instant, seconds (see :func:`check_capture_time`).
    settle_ms : float
        In a capture at a given instant, how long after it the node waits before encoding and
        storing, in ms (0: as soon as every camera of the node has fired). On a host shared by
        several nodes this keeps one node's encoding from delaying another's firing.
    store_nice : int
        How much to lower the OS priority of the storing threads (0: not at all); best effort.
    fire_priority : int
        Real-time priority of the firing threads (0: ordinary scheduling); best effort, see
        :func:`realtime_thread`.

    Raises
    ------
    ValidationError
        If ``settle_ms`` is out of range.
    """

    def __init__(
        self,
        slots: Sequence[CameraSlot],
        spool: Spool,
        node_id: str,
        *,
        max_ahead: float,
        max_late: float,
        settle_ms: float = DEFAULT_SETTLE_MS,
        store_nice: int = STORE_NICE,
        fire_priority: int = FIRE_PRIORITY,
    ) -> None:
        self.slots = list(slots)
        self.spool = spool
        self.node_id = node_id
        self.max_ahead = float(max_ahead)
        self.max_late = float(max_late)
        self.settle_ms = check_settle_ms(settle_ms)
        self.count = 0
        self._lock = threading.Lock()
        self.fire_priority = fire_priority
        self._firing = [CameraWorker(f"fire-{slot.name}", tighten_timer_slack) for slot in self.slots]
        self._storing = [
            CameraWorker(f"store-{slot.name}", functools.partial(lower_thread_priority, store_nice))
            for slot in self.slots
        ]
        for worker in (*self._firing, *self._storing):
            worker.start()

    def capture(self, data_code: str, at: float | None = None) -> dict[str, Any]:
        """Fire every camera at ``at`` and store the images under ``data_code``.

        Captures are serialised: a second call waits for the first. Cameras that fail are listed
        under ``failures``; the others are stored. With ``at`` given, encoding and storing start
        :attr:`settle_ms` after it.

        Returns
        -------
        dict
            ``{"data_code", "node", "requested_at", "requested_ns", "settle_ms", "cameras":
            [metadata of each stored image, in camera order], "failures": {camera name: reason},
            "ready_at"}``; the metadata of an image holds ``store_started_ns``, when its encoding
            began; ``ready_at`` is when the last firing thread began to wait for the instant
            (wall clock, seconds): the lead the request needed.

        Raises
        ------
        ValidationError
            If ``data_code`` or ``at`` is not acceptable (nothing is fired).
        RigError
            If every camera failed.
        """
        validate_name(data_code, kind="data code")
        with self._lock:
            at_ns = check_capture_time(at, self.max_ahead, self.max_late)
            settle_ns = round(self.settle_ms * 1e6) if at is not None else 0
            fired = threading.Barrier(len(self.slots))
            ready: list[int] = []  # when each firing thread began to wait for the instant, ns
            futures = []
            for slot, firing, storing in zip(self.slots, self._firing, self._storing, strict=True):
                # Both jobs are queued now: at the instant only the firing threads wake up; the
                # storing thread, already asleep until the settle time, then finds the frame ready.
                frame: Future[Frame] = Future()
                encoding, quality, rotation = slot.snapshot()
                firing.submit(
                    functools.partial(self._fire, slot, at_ns, fired, frame, self.fire_priority, ready)
                )
                job = functools.partial(
                    self._store, slot, data_code, at_ns, settle_ns, frame, encoding, quality, rotation
                )
                futures.append(storing.submit(job))
            ahead = max(0.0, (at_ns + settle_ns - time.time_ns()) / 1e9)
            deadline = time.monotonic() + ahead + CAPTURE_BUDGET_S
            stored: list[dict[str, Any]] = []
            failures: dict[str, str] = {}
            for slot, future in zip(self.slots, futures, strict=True):
                try:
                    stored.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
                except FutureTimeout:
                    failures[slot.name] = f"did not finish within {CAPTURE_BUDGET_S:g} s of the capture time"
                except Exception as exc:
                    logger.exception("camera %s failed to capture %s", slot.name, data_code)
                    failures[slot.name] = f"{type(exc).__name__}: {exc}"
            self.count += 1
        if not stored:
            raise RigError(f"capture {data_code!r} failed on every camera of node {self.node_id}", failures)
        return {
            "data_code": data_code,
            "node": self.node_id,
            "requested_at": at_ns / 1e9,
            "requested_ns": at_ns,
            "settle_ms": settle_ns / 1e6,
            "cameras": stored,
            "failures": failures,
            "ready_at": max(ready) / 1e9 if ready else None,
        }

    @staticmethod
    def _fire(
        slot: CameraSlot,
        at_ns: int,
        fired: threading.Barrier,
        frame: Future[Frame],
        priority: int,
        ready: list[int],
    ) -> None:
        # On the camera's firing thread, real-time from its wait until its camera's shot (where
        # allowed). Nobody waits on ``frame`` until the settle time has passed, so handing it over
        # wakes no other thread at the instant.
        realtime = realtime_thread(priority)
        ready.append(time.time_ns())  # list.append is atomic: one entry per firing thread
        try:
            wait_until(at_ns)
            taken = slot.backend.capture()
        except BaseException as exc:
            frame.set_exception(exc)
            raise
        finally:
            if realtime:
                ordinary_thread()
            # Nothing is encoded before every camera has fired, so encoding never delays one.
            with contextlib.suppress(threading.BrokenBarrierError):
                fired.wait(FIRE_BARRIER_S)
        frame.set_result(taken)

    def _store(
        self,
        slot: CameraSlot,
        data_code: str,
        at_ns: int,
        settle_ns: int,
        frame_future: Future[Frame],
        encoding: str,
        quality: int,
        rotation: int,
    ) -> dict[str, Any]:
        # On the camera's storing thread (lower priority): wait for the settle time, then for the
        # frame, then encode and store it.
        sleep_until(at_ns + settle_ns)
        ahead = max(0.0, (at_ns - time.time_ns()) / 1e9)
        frame = frame_future.result(timeout=ahead + CAPTURE_BUDGET_S)
        started_ns = time.time_ns()
        image = rotate(frame.image, rotation)
        data = encode_image(image, encoding, quality)
        width, height = frame.resolution
        optics = slot.backend.optics((width, height))
        if optics is not None:
            optics = rotate_optics(optics, rotation)
        meta = {
            "camera_index": slot.index,
            "node": self.node_id,
            "backend": slot.backend.name,
            "requested_at": at_ns / 1e9,
            "requested_ns": at_ns,
            "captured_at": frame.captured_ns / 1e9,
            "captured_ns": frame.captured_ns,
            "sensor_timestamp_ns": frame.sensor_timestamp_ns,
            "store_started_ns": started_ns,
            "resolution": [width, height],
            "shape": list(image.shape),
            "encoding": encoding,
            "quality": quality if encoding == "jpeg" else None,
            "rotation": rotation,
            "controls": _jsonable(frame.metadata),
            "camera_model": None if optics is None else {k: optics.get(k) for k in ("make", "model")},
            "intrinsics": None if optics is None else optics.get("intrinsics"),
            "pose": None if optics is None else optics.get("pose"),
        }
        if encoding == "jpeg":
            name = f"{self.node_id}/{slot.name}"
            data = with_exif(data, exif_bytes(meta, optics, camera=name, serial=name))
        return self.spool.put(data_code, slot.name, data, meta, ext=EXTENSIONS[encoding]).meta

    def close(self) -> None:
        """Stop the worker threads (a capture in progress finishes first)."""
        for worker in (*self._firing, *self._storing):
            worker.stop()


def collect_stills(spool: Spool, data_code: str, target: str) -> tuple[bytes, dict[str, Any]]:
    """Every image stored under ``data_code``, in camera order, as ``target`` files, concatenated.

    Images stored in the other encoding are converted; the stored files are not changed.

    Returns
    -------
    tuple of (bytes, dict)
        The files one after the other, and ``{"data_code", "names", "sizes", "format"}``.

    Raises
    ------
    ImageUnavailable
        If nothing is stored under ``data_code``.
    """
    names = spool.cameras(data_code)
    parts: list[bytes | memoryview] = []
    for name in names:
        view = spool.read(data_code, name)
        meta = spool.get(data_code, name).meta
        if meta.get("size") != len(view):  # replaced between the two calls: read what is described
            view = spool.read(data_code, name)
        quality = meta.get("quality") or 90
        parts.append(transcode(view, str(meta.get("encoding", "jpeg")), target, quality))
    info = {
        "data_code": data_code,
        "names": names,
        "sizes": [memoryview(p).nbytes for p in parts],
        "format": target,
    }
    return b"".join(parts), info


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Keep the JSON-friendly entries of a backend's frame metadata."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        with contextlib.suppress(TypeError, ValueError):
            if isinstance(value, (bool, int, float, str)) or value is None:
                out[str(key)] = value
            elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
                out[str(key)] = list(value)
    return out
