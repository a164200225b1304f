"""Synchronised capture of every camera of a node into the spool.

Each camera has its own worker thread, started once and kept. A capture hands every worker the same
wall-clock instant ``at``; each sleeps until about 2 ms before it, then spins on ``time.time_ns()``
(yielding the interpreter lock on every turn, so the workers of one node spin side by side), fires
its camera, encodes the frame and stores it durably in the spool. The cameras of a node thus fire
together, and nodes whose clocks agree fire together too. Each capture records the requested
instant and each camera's actual one, so the controller can report the skew.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from plantimager.commons.errors import RigError, ValidationError

from .names import validate_name
from .slot import EXTENSIONS, CameraSlot, encode_image, rotate, transcode
from .spool import Spool

__all__ = [
    "CAPTURE_BUDGET_S",
    "SPIN_NS",
    "CameraWorker",
    "CaptureRunner",
    "check_capture_time",
    "collect_stills",
    "wait_until",
]

logger = logging.getLogger(__name__)

#: How long before the instant a worker stops sleeping and starts spinning, in ns.
SPIN_NS = 2_000_000
_BUSY_NS = 200_000
_SPIN_SLEEP_S = 20e-6
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
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
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


def wait_until(at_ns: int) -> None:
    """Return at wall-clock instant ``at_ns``: sleep until ~2 ms before, then spin.

    The first part of the spin sleeps 20 us per turn, which leaves the interpreter lock free for
    the other cameras' workers spinning beside this one; only the last 0.2 ms is a busy loop. An
    instant in the past returns at once. The caller bounds how far ahead it lies.
    """
    while True:
        remaining = at_ns - time.time_ns()
        if remaining <= 0:
            return
        if remaining > SPIN_NS:
            time.sleep(min((remaining - SPIN_NS) / 1e9, 0.25))
        elif remaining > _BUSY_NS:
            time.sleep(_SPIN_SLEEP_S)


# -- per-camera worker ---------------------------------------------------------------------------
class CameraWorker(threading.Thread):
    """The thread that fires one camera; jobs run one after the other.

    Parameters
    ----------
    name : str
        Thread name.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()

    def submit(self, job: Callable[[], Any]) -> Future[Any]:
        """Queue ``job``; its result or exception arrives in the returned future."""
        future: Future[Any] = Future()
        self._jobs.put((job, future))
        return future

    def run(self) -> None:
        """Run queued jobs until :meth:`stop`."""
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
    """

    def __init__(
        self, slots: Sequence[CameraSlot], spool: Spool, node_id: str, *, max_ahead: float, max_late: float
    ) -> None:
        self.slots = list(slots)
        self.spool = spool
        self.node_id = node_id
        self.max_ahead = float(max_ahead)
        self.max_late = float(max_late)
        self.count = 0
        self._lock = threading.Lock()
        self._workers = [CameraWorker(f"capture-{slot.name}") for slot in self.slots]
        for worker in self._workers:
            worker.start()

    def capture(self, data_code: str, at: float | None = None) -> dict[str, Any]:
        """Fire every camera at ``at`` and store the images under ``data_code``.

        Captures are serialised: a second call waits for the first. Cameras that fail are listed
        under ``failures``; the others are stored.

        Returns
        -------
        dict
            ``{"data_code", "node", "requested_at", "requested_ns", "cameras": [metadata of each
            stored image, in camera order], "failures": {camera name: reason}}``.

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
            futures = []
            fired = threading.Barrier(len(self.slots))
            for slot, worker in zip(self.slots, self._workers, strict=True):
                settings = slot.snapshot()
                futures.append(worker.submit(self._job(slot, data_code, at_ns, fired, *settings)))
            deadline = time.monotonic() + max(0.0, (at_ns - time.time_ns()) / 1e9) + CAPTURE_BUDGET_S
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
            "cameras": stored,
            "failures": failures,
        }

    def _job(
        self,
        slot: CameraSlot,
        data_code: str,
        at_ns: int,
        fired: threading.Barrier,
        encoding: str,
        quality: int,
        rotation: int,
    ) -> Callable[[], dict[str, Any]]:
        def shoot() -> dict[str, Any]:
            wait_until(at_ns)
            try:
                frame = slot.backend.capture()
            finally:
                # Encoding waits until every camera has fired, so it never delays another camera.
                with contextlib.suppress(threading.BrokenBarrierError):
                    fired.wait(FIRE_BARRIER_S)
            image = rotate(frame.image, rotation)
            data = encode_image(image, encoding, quality)
            width, height = frame.resolution
            meta = {
                "camera_index": slot.index,
                "node": self.node_id,
                "backend": slot.backend.name,
                "requested_at": at_ns / 1e9,
                "requested_ns": at_ns,
                "captured_at": frame.captured_ns / 1e9,
                "captured_ns": frame.captured_ns,
                "sensor_timestamp_ns": frame.sensor_timestamp_ns,
                "resolution": [width, height],
                "shape": list(image.shape),
                "encoding": encoding,
                "quality": quality if encoding == "jpeg" else None,
                "rotation": rotation,
                "controls": _jsonable(frame.metadata),
            }
            return self.spool.put(data_code, slot.name, data, meta, ext=EXTENSIONS[encoding]).meta

        return shoot

    def close(self) -> None:
        """Stop the worker threads (a capture in progress finishes first)."""
        for worker in self._workers:
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
