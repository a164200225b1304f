"""Downloading what the cameras owe a dataset: in parallel, verified, durable, resumable.

For every image the dataset's ledger says a node still owes, the node's ``retrieve_still`` is
called; the bytes are checked against the size and SHA-256 the node recorded (and those it reported
at capture time), written durably into the dataset, recorded, and only then does the node get
``release`` for that camera. A node that stops answering fails its remaining images at once (they
stay owed for the next download) while the other nodes carry on. At most ``jobs`` nodes transfer at
the same time; the images of one node come one after the other (a node answers one request at a
time anyway).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from plantimager.commons.errors import ImageUnavailable, PlantImagerError, RigError

from .dataset import UNKNOWN_RESULT_GRACE_S, Dataset
from .node import RigNode, describe_error, is_connection_error
from .record import DownloadProgress, DownloadReport
from .roster import Roster
from .shot import ShotState, shots_by_node

__all__ = ["Download", "TransferGate"]

logger = logging.getLogger(__name__)

#: Attempts at fetching one image whose bytes do not match what the node recorded.
_FETCH_ATTEMPTS = 2
#: Longest wait of a transfer for a capture to finish, seconds.
_GATE_WAIT_S = 300.0


class TransferGate:
    """Lets captures go first: a capture waits for the transfers in progress, none starts during one.

    A node answers one request at a time, so a transfer running when a capture command arrives
    would make that node fire late.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._transfers = 0
        self._captures = 0

    @contextlib.contextmanager
    def transfer(self) -> Iterator[None]:
        """Hold the gate for one transfer (waits while a capture runs)."""
        with self._cond:
            self._cond.wait_for(lambda: self._captures == 0, _GATE_WAIT_S)
            self._transfers += 1
        try:
            yield
        finally:
            with self._cond:
                self._transfers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def capture(self, timeout: float) -> Iterator[None]:
        """Hold the gate for a capture: new transfers wait; those running finish first (bounded)."""
        with self._cond:
            self._captures += 1
            if not self._cond.wait_for(lambda: self._transfers == 0, timeout):
                logger.warning("a transfer is still running as a capture starts")
        try:
            yield
        finally:
            with self._cond:
                self._captures -= 1
                self._cond.notify_all()


class _NodeDownError(Exception):
    """The node stopped answering: its remaining images wait for the next download."""


class Download:
    """One download of everything a dataset is owed.

    Parameters
    ----------
    roster : Roster
        The live nodes.
    dataset : Dataset
        The dataset to complete.
    jobs : int
        How many nodes transfer at the same time.
    gate : TransferGate
        Shared with captures.
    progress : callable, optional
        Called with a :class:`~plantimager.rig.record.DownloadProgress` after each image is
        settled, on a worker thread.
    """

    def __init__(
        self,
        roster: Roster,
        dataset: Dataset,
        *,
        jobs: int,
        gate: TransferGate,
        progress: Callable[[DownloadProgress], Any] | None = None,
    ) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
        self.roster = roster
        self.dataset = dataset
        self.jobs = jobs
        self.gate = gate
        self.progress = progress
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._done = 0
        self._total = 0
        self._files: list[str] = []
        self._released = 0
        self._bytes = 0
        self._failures: dict[str, list[str]] = {}

    def run(self) -> DownloadReport:
        """Fetch, verify, write and release every owed image.

        Returns
        -------
        DownloadReport
            What was written, and what is still owed.

        Raises
        ------
        RigError
            If some cameras could not deliver; ``failures`` maps each to its reason, and the
            exception's ``report`` attribute holds the DownloadReport of what did succeed.
        """
        started = time.monotonic()
        work = shots_by_node(self.dataset.owed())
        self._total = sum(1 for shots in work.values() for s in shots if s.wanted and s.status != "received")
        if work:
            pool = ThreadPoolExecutor(
                max_workers=min(self.jobs, len(work)), thread_name_prefix="rig-download"
            )
            try:
                futures = [pool.submit(self._node_task, name, shots) for name, shots in work.items()]
                for future in futures:
                    future.result()
            except BaseException:
                self._cancel.set()  # e.g. Ctrl-C: workers stop after their current image
                raise
            finally:
                pool.shutdown(wait=True)
        self.dataset.flush()
        failures = {camera: self._reason(reasons) for camera, reasons in self._failures.items()}
        owed = sum(1 for s in self.dataset.owed() if s.wanted and s.status != "received")
        report = DownloadReport(
            dataset=self.dataset.root,
            files=tuple(self._files),
            released=self._released,
            bytes=self._bytes,
            seconds=time.monotonic() - started,
            failures=failures,
            owed=owed,
        )
        if failures:
            error = RigError(
                f"download into {self.dataset.root}: {len(failures)} camera(s) still owe images "
                f"({owed} image(s) in all); they will be fetched by the next download",
                failures,
            )
            error.report = report  # type: ignore[attr-defined]
            raise error
        return report

    @staticmethod
    def _reason(reasons: list[str]) -> str:
        first = reasons[0]
        return first if len(reasons) == 1 else f"{first} ({len(reasons)} images)"

    # -- per node --------------------------------------------------------------------------------
    def _node_task(self, name: str, shots: list[ShotState]) -> None:
        node = self.roster.node(name)
        down = "" if node is not None else f"node {name} is not in the rig (offline, or not registered yet)"
        for shot in shots:
            if self._cancel.is_set():
                return
            if down:
                self._fail(shot, down)
                continue
            assert node is not None
            if node.node_id != shot.node_id:
                self._fail(
                    shot, f"node {name} is now machine {node.node_id}, not {shot.node_id}: not fetched"
                )
                continue
            index = node.index_of(shot.camera_name)
            if index is None:
                self._fail(shot, f"node {name} has no camera named {shot.camera_name} any more")
                continue
            try:
                self._settle(node, shot, index)
            except _NodeDownError as exc:
                down = str(exc)
                if shot.wanted and shot.status != "received":
                    self._fail(shot, down)
            except PlantImagerError as exc:  # this image only (a disk error, a refused file...)
                self._fail(shot, describe_error(exc))

    def _settle(self, node: RigNode, shot: ShotState, index: int) -> None:
        if shot.wanted and shot.status in ("sent", "stored"):
            if not self._fetch(node, shot, index):
                return
            shot.status = "received"  # as the dataset now says: a failed release owes nothing more
        self._release(node, shot, index)  # only once the image is safely in the dataset

    def _fetch(self, node: RigNode, shot: ShotState, index: int) -> bool:
        """Fetch, verify and store one image; False if it failed (already reported)."""
        expected = shot.meta.get("sha256")
        for attempt in range(1, _FETCH_ATTEMPTS + 1):
            try:
                with self.gate.transfer():
                    data, info = node.call("retrieve_still", shot.data_code, index, timed=False)
            except ImageUnavailable as exc:
                self._unavailable(shot, describe_error(exc))
                return False
            except Exception as exc:
                if is_connection_error(exc):
                    raise _NodeDownError(f"node {node.name}: {describe_error(exc)}") from exc
                self._fail(shot, describe_error(exc))
                return False
            problem = self._check(data, info, expected)
            if not problem:
                name = self.dataset.store_image(shot, data, info)
                with self._lock:
                    self._files.append(name)
                    self._bytes += len(data)
                self._report(shot, name, len(data), ok=True)
                return True
            logger.warning("%s, capture %d: %s (attempt %d)", shot.camera, shot.capture_no, problem, attempt)
        self._fail(shot, problem)
        return False

    @staticmethod
    def _check(data: memoryview, info: dict[str, Any], expected: str | None) -> str:
        size, sha = info.get("size"), info.get("sha256")
        if not isinstance(size, int) or not isinstance(sha, str):
            return "the node sent no size or checksum with the image"
        if len(data) != size:
            return f"received {len(data)} bytes, the node recorded {size}"
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            return f"checksum mismatch: received {actual[:12]}..., the node recorded {sha[:12]}..."
        if expected and expected != sha:
            return f"the node now holds other bytes ({sha[:12]}...) than it captured ({expected[:12]}...)"
        return ""

    def _unavailable(self, shot: ShotState, reason: str) -> None:
        young = shot.status == "sent" and time.time() - shot.sent_at < UNKNOWN_RESULT_GRACE_S
        if young:
            self._fail(shot, f"not stored on the node yet ({reason})")
            return
        why = (
            "the node no longer holds it" if shot.status == "stored" else "the capture never reached the node"
        )
        self.dataset.mark_lost(shot, f"{why}: {reason}")
        self._fail(shot, f"lost: {why} ({reason})")

    def _release(self, node: RigNode, shot: ShotState, index: int) -> None:
        try:
            node.call("release", shot.data_code, [index])
        except ImageUnavailable:
            pass  # released before (the record of it was lost), or never stored
        except Exception as exc:
            if is_connection_error(exc):
                raise _NodeDownError(f"node {node.name}: {describe_error(exc)}") from exc
            logger.warning("%s: release of capture %d failed: %s", shot.camera, shot.capture_no, exc)
            return
        self.dataset.mark_released(shot)
        with self._lock:
            self._released += 1

    # -- reporting -------------------------------------------------------------------------------
    def _fail(self, shot: ShotState, reason: str) -> None:
        if not shot.wanted or shot.status == "received":  # nothing owed to the dataset: retried later
            logger.warning("%s: could not release capture %d: %s", shot.camera, shot.capture_no, reason)
            return
        with self._lock:
            self._failures.setdefault(shot.camera, []).append(reason)
        self._report(shot, shot.file, 0, ok=False, reason=reason)

    def _report(self, shot: ShotState, file: str, size: int, *, ok: bool, reason: str = "") -> None:
        with self._lock:
            self._done += 1
            event = DownloadProgress(
                shot.camera, shot.capture_no, file, size, self._done, self._total, ok, reason
            )
        if self.progress is not None:
            try:
                self.progress(event)
            except Exception:
                logger.exception("download progress callback failed")
