"""Downloading what the cameras owe a dataset: in parallel, verified, durable, resumable.

For every image the dataset's ledger says a node still owes, the node's ``retrieve_still`` is
called; the bytes are checked against the size and checksum the node recorded when it stored them
(XXH3-128 when the node sent one, else SHA-256), and against the SHA-256 it reported at capture
time. Three stages overlap, so that the network, the CPUs and the disk all work at once, each a
lane of the rig's thread pool (:mod:`.lane`), whose threads are kept from one download to the next:

1. At most ``jobs`` transfer workers, one node each (a node answers one request at a time anyway),
   fetch, verify and write each image to a temporary file, and go on with the next image at once.
2. As many fsync each temporary file and link it to its final name.
3. One recorder records, in one batch, every image whose file is durable (one folder fsync, one
   ledger write and fsync, however many images and nodes), and only then tells each node, in one
   ``release_many`` call per node (whatever the captures; the node makes the deletions durable
   with one fsync), that it may delete them (:mod:`.release`).

A node that stops answering fails its remaining images at once (they stay owed for the next
download) while the other nodes carry on; one stuck in a call (a capture it was taken as hung in)
is not waited for, and one that stopped answering is pinged before its transfers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from typing import Any

import xxhash

from plantimager.commons.errors import ImageUnavailable, PlantImagerError, RigError

from .dataset import Dataset, StagedImage, WrittenImage
from .gate import TransferGate
from .lane import Lane
from .node import RigNode, describe_error, is_connection_error
from .record import DownloadProgress, DownloadReport
from .release import Releases
from .roster import Roster
from .shot import ShotState, shots_by_node

__all__ = ["MAX_RELEASES", "Download"]

logger = logging.getLogger(__name__)

#: Attempts at fetching one image whose bytes do not match what the node recorded.
_FETCH_ATTEMPTS = 2
#: Most releases sent at the same time (one node each): a release mostly waits for its node's disk.
MAX_RELEASES = 16


class _NodeDownError(Exception):
    """The node stopped answering: its remaining images wait for the next download."""


@dataclasses.dataclass(slots=True)
class _Batch:
    """The images of one capture on one node, on their way to the ledger and the node's release."""

    node: RigNode
    #: Images being made durable (their future gives the WrittenImage; None: failed, reported).
    writing: list[tuple[ShotState, Future[WrittenImage | None]]]
    #: Everything the node may delete once the written images are recorded.
    releasable: list[tuple[ShotState, int]]
    #: Why the node is down ("" if it is not): then nothing is released.
    down: str


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
    executor : concurrent.futures.Executor, optional
        The thread pool the work runs on, in lanes (see :class:`~plantimager.rig.lane.Lane`):
        the rig's own, whose threads are kept from one download to the next. A private one,
        shut down at the end, when not given.
    progress : callable, optional
        Called with a :class:`~plantimager.rig.record.DownloadProgress` after each image is
        settled (recorded, or failed), on a worker thread.
    """

    def __init__(
        self,
        roster: Roster,
        dataset: Dataset,
        *,
        jobs: int,
        gate: TransferGate,
        executor: Executor | None = None,
        progress: Callable[[DownloadProgress], Any] | None = None,
    ) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
        self.roster = roster
        self.dataset = dataset
        self.jobs = jobs
        self.gate = gate
        self.executor = executor
        self.progress = progress
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._done = 0
        self._total = 0
        self._files: list[str] = []
        self._bytes = 0
        self._failures: dict[str, list[str]] = {}
        self._syncers: Lane | None = None
        self._releases: Releases | None = None
        self._batches: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()

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
        # Nodes (re)connected since the last download: asked what they hold (see Releases.leftovers).
        fresh = [n for n in self.roster.ready_nodes().values() if n.state == "ready" and n.take_fresh()]
        if work or fresh:
            own = self.executor is None
            executor = self.executor or ThreadPoolExecutor(3 * self.jobs + MAX_RELEASES + 1, "rig-download")
            try:
                self._transfer(executor, work, fresh)
            finally:
                if own:
                    executor.shutdown(wait=True)
        stale = self.dataset.flush(strict=False)
        failures = {camera: self._reason(reasons) for camera, reasons in self._failures.items()}
        owed = sum(1 for s in self.dataset.owed() if s.wanted and s.status != "received")
        report = DownloadReport(
            dataset=self.dataset.root,
            files=tuple(self._files),
            released=self._releases.released if self._releases is not None else 0,
            bytes=self._bytes,
            seconds=time.monotonic() - started,
            failures=failures,
            owed=owed,
        )
        if failures:
            error = RigError(
                f"download into {self.dataset.root}: {len(failures)} camera(s) still owe images "
                f"({owed} image(s) in all); they will be fetched by the next download"
                + (f"; and {stale}" if stale else ""),
                failures,
            )
            error.report = report  # type: ignore[attr-defined]
            raise error
        return report

    def _transfer(self, executor: Executor, work: dict[str, list[ShotState]], fresh: list[RigNode]) -> None:
        """The three stages, as lanes of ``executor``; returns once all is recorded and released."""
        workers = max(1, min(self.jobs, len(work)))
        transfers = Lane(executor, workers)
        self._syncers = Lane(executor, workers)
        releasing = Lane(executor, max(1, min(len(work) + len(fresh), MAX_RELEASES)))
        releases = self._releases = Releases(self.dataset, self.gate, releasing)
        recording = executor.submit(self._record_batches)
        for node in fresh:
            releases.leftovers(node)
        futures: list[Future[None]] = []
        try:
            for name, shots in work.items():
                futures.append(transfers.submit(self._node_task, name, shots))
            for future in futures:
                future.result()
        except BaseException:
            self._cancel.set()  # e.g. Ctrl-C: workers stop after their current image
            raise
        finally:
            wait(futures)
            self._batches.put(None)  # what was written is still recorded and released
            try:
                recording.result()
                self.dataset.flush(strict=False)  # while the last releases are on their way
            finally:
                releases.wait()

    @staticmethod
    def _reason(reasons: list[str]) -> str:
        first = reasons[0]
        return first if len(reasons) == 1 else f"{first} ({len(reasons)} images)"

    # -- per node --------------------------------------------------------------------------------
    def _node_task(self, name: str, shots: list[ShotState]) -> None:
        node = self.roster.node(name)
        down = "" if node is not None else f"node {name} is not in the rig (offline, or not registered yet)"
        if node is not None and node.state == "unreachable":
            down = self._still_down(node)
        for group in _by_capture(shots):
            if self._cancel.is_set():
                return
            down = self._capture_task(node, name, group, down)

    @staticmethod
    def _still_down(node: RigNode) -> str:
        """Why an unreachable node is still down ("" if it answers a ping now).

        One stuck in a call (a capture it was taken as hung in) is not waited for at all.
        """
        if not node.busy:
            try:
                node.call("ping", timed=True)
                return ""
            except Exception as exc:
                return f"node {node.name}: {describe_error(exc)}"
        return f"node {node.name} is unreachable: {node.error or 'it stopped answering'}"

    def _capture_task(self, node: RigNode | None, name: str, shots: list[ShotState], down: str) -> str:
        """Fetch the images of one capture on one node; returns why the node is down ("" if it is not).

        Each owed image is fetched, verified and staged in a temporary file, and handed on to be
        made durable; the batch of them then goes to the recorder, which records them and has the
        node release them. This worker goes on with its next transfer meanwhile.
        """
        writing: list[tuple[ShotState, Future[WrittenImage | None]]] = []
        releasable: list[tuple[ShotState, int]] = []
        try:
            for shot in shots:
                if self._cancel.is_set():
                    break
                if not down and self._releases is not None:
                    down = self._releases.down(name)  # a release of an earlier capture failed
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
                if shot.wanted and shot.status in ("sent", "stored"):
                    try:
                        staged = self._fetch(node, shot, index)
                    except _NodeDownError as exc:
                        down = str(exc)
                        self._fail(shot, down)
                        continue
                    if staged is None:
                        continue
                    assert self._syncers is not None
                    writing.append((shot, self._syncers.submit(self._finish, shot, staged)))
                releasable.append((shot, index))
        finally:
            if node is not None and (writing or releasable):
                self._batches.put(_Batch(node, writing, releasable, down))
        return down

    def _finish(self, shot: ShotState, staged: StagedImage) -> WrittenImage | None:
        """Make one staged image durable; None if that failed (reported)."""
        try:
            return self.dataset.finish_image(staged)
        except PlantImagerError as exc:  # a disk error, a different file at the name...
            self._fail(shot, describe_error(exc))
            return None

    def _record_batches(self) -> None:
        """The recorder: record what is durable, in as few ledger writes as possible, then release.

        Every batch waiting when the recorder comes round is recorded together, so the ledger's
        fsync is shared by all the nodes whose images arrived meanwhile.
        """
        while True:
            first = self._batches.get()
            if first is None:
                return
            batches, last = [first], False
            while True:
                try:
                    more = self._batches.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    last = True
                    break
                batches.append(more)
            self._record(batches)
            if last:
                return

    def _record(self, batches: list[_Batch]) -> None:
        written: list[tuple[ShotState, WrittenImage]] = []
        unwritten: set[int] = set()
        for batch in batches:
            for shot, future in batch.writing:
                image = future.result()
                if image is None:
                    unwritten.add(id(shot))
                else:
                    written.append((shot, image))
        if written and not self._commit(written):
            unwritten.update(id(shot) for shot, _ in written)
        releases: dict[str, tuple[RigNode, list[tuple[ShotState, int]]]] = {}
        for batch in batches:
            if batch.down:
                continue
            releasable = [(shot, i) for shot, i in batch.releasable if id(shot) not in unwritten]
            if releasable:
                releases.setdefault(batch.node.name, (batch.node, []))[1].extend(releasable)
        assert self._releases is not None
        for node, items in releases.values():
            self._releases.submit(node, items)

    def _fetch(self, node: RigNode, shot: ShotState, index: int) -> StagedImage | None:
        """Fetch, verify and stage one image; None if it failed (already reported)."""
        expected = shot.meta.get("sha256")
        problem = ""
        for attempt in range(1, _FETCH_ATTEMPTS + 1):
            try:
                with self.gate.transfer():
                    data, info = node.call("retrieve_still", shot.data_code, index)
            except ImageUnavailable as exc:
                self._unavailable(shot, describe_error(exc))
                return None
            except Exception as exc:
                if is_connection_error(exc):
                    raise _NodeDownError(f"node {node.name}: {describe_error(exc)}") from exc
                self._fail(shot, describe_error(exc))
                return None
            problem = self._check(data, info, expected)
            if not problem:
                try:
                    return self.dataset.stage_image(shot, data, info)
                except PlantImagerError as exc:  # a disk error, a name already taken...
                    self._fail(shot, describe_error(exc))
                    return None
            logger.warning("%s, capture %d: %s (attempt %d)", shot.camera, shot.capture_no, problem, attempt)
        self._fail(shot, problem)
        return None

    def _commit(self, written: list[tuple[ShotState, WrittenImage]]) -> bool:
        """Record written images in the dataset and report them; False if that failed (reported)."""
        try:
            self.dataset.record_images([image for _, image in written])
        except PlantImagerError as exc:
            for shot, _ in written:
                self._fail(shot, describe_error(exc))
            return False
        for shot, image in written:
            shot.status = "received"  # as the dataset now says: a failed release owes nothing more
            size = int(image.meta.get("size", 0))
            with self._lock:
                self._files.append(image.file)
                self._bytes += size
            self._report(shot, image.file, size, ok=True)
        return True

    @staticmethod
    def _check(data: memoryview, info: dict[str, Any], expected: str | None) -> str:
        """What is wrong with received bytes ("" if nothing).

        The bytes are checked against the XXH3-128 the node computed when it stored them, beside
        their SHA-256 (a tenth of the cost on the controller), or against the SHA-256 itself when
        the node sent no XXH3. The SHA-256 kept in the manifest is the one the node computed.
        """
        size, sha = info.get("size"), info.get("sha256")
        if not isinstance(size, int) or not isinstance(sha, str):
            return "the node sent no size or checksum with the image"
        if len(data) != size:
            return f"received {len(data)} bytes, the node recorded {size}"
        quick = info.get("xxh3_128")
        if isinstance(quick, str):
            kind, recorded, actual = "xxh3_128", quick, xxhash.xxh3_128_hexdigest(data)
        else:
            kind, recorded, actual = "sha256", sha, hashlib.sha256(data).hexdigest()
        # Either runs over the received frame: no copy, no lock held, the GIL released.
        if actual != recorded:
            return f"{kind} mismatch: received {actual[:12]}..., the node recorded {recorded[:12]}..."
        if expected and expected != sha:
            return f"the node now holds other bytes ({sha[:12]}...) than it captured ({expected[:12]}...)"
        return ""

    def _unavailable(self, shot: ShotState, reason: str) -> None:
        young = (
            shot.status == "sent" and time.time() - shot.sent_at < self.roster.limits.unknown_result / 1000
        )
        if young:
            self._fail(shot, f"not stored on the node yet ({reason})")
            return
        why = (
            "the node no longer holds it" if shot.status == "stored" else "the capture never reached the node"
        )
        try:
            self.dataset.mark_lost(shot, f"{why}: {reason}")
        except PlantImagerError as exc:  # still owed: the next download asks again
            self._fail(shot, f"{why} ({reason}), but that could not be recorded: {exc}")
            return
        self._fail(shot, f"lost: {why} ({reason})")

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


def _by_capture(shots: list[ShotState]) -> list[list[ShotState]]:
    """Split a node's shots into runs of the same capture, keeping their order."""
    groups: list[list[ShotState]] = []
    for shot in shots:
        if groups and groups[-1][0].capture_no == shot.capture_no:
            groups[-1].append(shot)
        else:
            groups.append([shot])
    return groups
