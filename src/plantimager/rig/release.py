"""Telling nodes they may delete images the dataset now holds durably: one call per node and batch.

A download hands over, for each node, every image of a recorder batch (whatever its capture) once
the images are durable in the dataset (file, name and ledger record); :class:`Releases` tells the
node in one ``release_many`` call on a lane of the rig's thread pool, so the transfers go on
meanwhile, and records that it did. A node without ``release_many`` (an older one) gets one
``release`` call per capture. A node that does not answer is remembered as down: the download
fails its next images at once (they stay owed, and are released by a later download).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, wait

from plantimager.commons.errors import ImageUnavailable, PlantImagerError

from .dataset import Dataset
from .gate import TransferGate
from .lane import Lane
from .node import RigNode, describe_error, is_connection_error
from .shot import ShotState

__all__ = ["Releases"]

logger = logging.getLogger(__name__)

#: An image to release: its shot and its camera's index on the node.
Item = tuple[ShotState, int]


class Releases:
    """The releases of one download.

    Parameters
    ----------
    dataset : Dataset
        Where each release is recorded.
    gate : TransferGate
        Releases wait, like transfers, for a capture in progress.
    lane : Lane
        Where the calls run.

    Attributes
    ----------
    released : int
        Images the nodes have been told they may delete.
    """

    def __init__(self, dataset: Dataset, gate: TransferGate, lane: Lane) -> None:
        self.dataset = dataset
        self.gate = gate
        self.lane = lane
        self.released = 0
        self._lock = threading.Lock()
        self._futures: list[Future[None]] = []
        self._down: dict[str, str] = {}

    def submit(self, node: RigNode, items: list[Item]) -> None:
        """Release ``items`` of ``node`` in one call, soon, on the lane."""
        future = self.lane.submit(self._release, node, items)
        with self._lock:
            self._futures.append(future)

    def leftovers(self, node: RigNode) -> None:
        """Soon, ask ``node`` what it holds and release again what the dataset has released already.

        A node keeps what it was told to delete only if it lost power within a second of being told
        (see :mod:`plantimager.camera.spoolrelease`); it then restarts, and the rig connects to it
        again. Only this dataset's data codes are looked at.
        """
        future = self.lane.submit(self._leftovers, node)
        with self._lock:
            self._futures.append(future)

    def _leftovers(self, node: RigNode) -> None:
        prefix = f"{self.dataset.session_id}-d"
        try:
            with self.gate.transfer():
                held = node.call("pending")
        except Exception as exc:  # the transfers will tell what is wrong with the node
            logger.debug("node %s: could not list what it holds: %s", node.name, exc)
            return
        if not isinstance(held, dict):
            return
        ours = {
            code: cams for code, cams in held.items() if code.startswith(prefix) and isinstance(cams, list)
        }
        items = (
            [(shot, shot.camera_index) for shot in self.dataset.released_held(node.name, ours)]
            if ours
            else []
        )
        if items:
            logger.warning(
                "node %s still holds %d image(s) it was told to delete (did it lose power?): "
                "releasing them again",
                node.name,
                len(items),
            )
            self._release(node, items)

    def down(self, name: str) -> str:
        """Why node ``name`` did not answer a release ("" if it did, or was not asked yet)."""
        with self._lock:
            return self._down.get(name, "")

    def wait(self) -> None:
        """Return once every release submitted so far has been answered (or failed)."""
        with self._lock:
            futures = list(self._futures)
        wait(futures)
        for future in futures:
            future.result()

    def _release(self, node: RigNode, items: list[Item]) -> None:
        if not node.client.serves("release_many"):
            for data_code, group in by_code(items).items():
                self._release_one(node, data_code, group)
            return
        plan = {code: [index for _, index in group] for code, group in by_code(items).items()}
        try:
            with self.gate.transfer():
                node.call("release_many", plan)
        except Exception as exc:
            self._failed(node, items, exc)
            return
        # What the node no longer held was released before (the record of it was lost), or
        # never stored: nothing more to do for it either.
        self._done(items)

    def _release_one(self, node: RigNode, data_code: str, items: list[Item]) -> None:
        """Release some images of one capture with ``release`` (nodes without ``release_many``)."""
        try:
            with self.gate.transfer():
                node.call("release", data_code, [index for _, index in items])
        except ImageUnavailable:
            if len(items) > 1:  # one of them is gone already, so nothing was deleted: one by one
                for item in items:
                    self._release_one(node, data_code, [item])
                return
            # released before (the record of it was lost), or never stored
        except Exception as exc:
            self._failed(node, items, exc)
            return
        self._done(items)

    def _failed(self, node: RigNode, items: list[Item], exc: Exception) -> None:
        if is_connection_error(exc):
            with self._lock:
                self._down.setdefault(node.name, f"node {node.name}: {describe_error(exc)}")
            return
        for shot, _ in items:
            logger.warning("%s: release of capture %d failed: %s", shot.camera, shot.capture_no, exc)

    def _done(self, items: list[Item]) -> None:
        try:
            self.dataset.mark_released(*(shot for shot, _ in items))
        except PlantImagerError as exc:  # the next download asks again; the node says they are gone
            codes = sorted({shot.data_code for shot, _ in items})
            logger.warning("releases of %s were done but could not be recorded: %s", ", ".join(codes), exc)
            return
        with self._lock:
            self.released += len(items)


def by_code(items: list[Item]) -> dict[str, list[Item]]:
    """Group (shot, camera index) pairs by data code, keeping their order."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item[0].data_code, []).append(item)
    return groups
