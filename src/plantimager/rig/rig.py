"""The :class:`Rig`: every camera of a registry, fired together, downloaded into a dataset.

The CLI (``plantimager rig``) and the web app are thin adapters over this class; neither talks to
the network itself.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq

from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.commons.security import KeyRing

from .dataset import STATE_DIR, Dataset
from .download import Download
from .fanout import configure_nodes, node_statuses, select_cameras, shutdown_nodes
from .gate import TransferGate
from .node import CallLimits
from .record import (
    CameraInfo,
    CaptureRecord,
    DownloadProgress,
    DownloadReport,
    NodeInfo,
    RigEvent,
    split_camera_key,
)
from .roster import Roster
from .scan import ScanClaim, ScanReport, run_scan
from .session import prepare_folder
from .settings import check_settings
from .template import NameTemplate
from .timing import LeadPolicy
from .trigger import Trigger

__all__ = ["DEFAULT_REGISTRY_URL", "MAX_FANOUT", "Rig"]

logger = logging.getLogger(__name__)

#: The registry a rig follows by default.
DEFAULT_REGISTRY_URL = "tcp://127.0.0.1:5555"
#: Most calls to nodes in flight at once (threads are started as needed): a capture needs one per node.
MAX_FANOUT = 256


class Rig:
    """A rig of camera nodes found through a device registry.

    Parameters
    ----------
    registry_url : str
        The registry the camera nodes register with.
    dataset : path, optional
        The session folder captures go to (created on the first capture).
    template : str, optional
        File-name template of new images (checked at once); the dataset's own by default.
    context : zmq.Context, optional
        Context of the rig's sockets; a private one by default.
    limits : CallLimits, optional
        Longest waits of calls to nodes.
    jobs : int
        Default number of nodes transferring at the same time in :meth:`download_all`.
    lead : LeadPolicy, optional
        How far ahead the capture instant is chosen.
    health_interval : float
        Seconds of silence before an idle node is pinged; no node is pinged twice within it.
    keys : KeyRing, optional
        Talk CurveZMQ with these keys to the registry (whose key is ``keys.registry_key``) and to
        the nodes (whose keys the registry lists); None: plaintext.

    Raises
    ------
    ValidationError
        If the template or ``jobs`` is not acceptable.

    Examples
    --------
    ::

        with Rig("tcp://127.0.0.1:5555", dataset="captures/plant-1") as rig:
            rig.wait_ready(timeout=5)
            record = rig.capture_all()
            print(record.skew_ms, [shot.file for shot in record.shots])
            rig.download_all()
    """

    def __init__(
        self,
        registry_url: str = DEFAULT_REGISTRY_URL,
        *,
        dataset: str | os.PathLike[str] | None = None,
        template: str | None = None,
        context: zmq.Context | None = None,
        limits: CallLimits | None = None,
        jobs: int = 4,
        lead: LeadPolicy | None = None,
        health_interval: float = 2.0,
        keys: KeyRing | None = None,
    ) -> None:
        if template is not None:
            NameTemplate(template)
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValidationError(f"jobs must be an integer >= 1, got {jobs!r}")
        self.registry_url = registry_url
        self.keys = keys
        self.limits = limits or CallLimits()
        self.jobs = jobs
        self.lead = lead or LeadPolicy()
        self._template = template
        self._dataset_path = Path(dataset).expanduser().absolute() if dataset is not None else None
        self._dataset: Dataset | None = None
        self._own_context = context is None
        self._context = context if context is not None else zmq.Context()
        self._executor = ThreadPoolExecutor(max_workers=MAX_FANOUT, thread_name_prefix="rig")
        self._roster = Roster(
            self._context,
            registry_url,
            limits=self.limits,
            executor=self._executor,
            health_interval=health_interval,
            keys=keys,
        )
        self._gate = TransferGate()
        straggler = None if self.limits.straggler is None else self.limits.straggler / 1000
        self._trigger = Trigger(self._executor, self.lead, straggler)
        self._capture_lock = threading.Lock()
        self._dataset_lock = threading.Lock()
        self._scan = ScanClaim()
        self._started = self._closed = False

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> Rig:
        """Start following the registry; returns the rig itself."""
        if self._closed:
            raise PlantImagerError("this Rig was closed")
        if not self._started:
            self._started = True
            self._roster.start()
        return self

    def close(self) -> None:
        """Stop following the registry, close every client and the dataset. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._roster.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._dataset_lock:
            if self._dataset is not None:
                self._dataset.close()
                self._dataset = None
        if self._own_context:
            self._context.destroy(linger=0)

    def __enter__(self) -> Rig:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_running(self) -> None:
        if self._closed:
            raise PlantImagerError("this Rig was closed")
        if not self._started:
            raise PlantImagerError("call Rig.start() (or use it in a with block) first")

    # -- live list -------------------------------------------------------------------------------
    def cameras(self) -> list[CameraInfo]:
        """The cameras of the rig now, by node name then camera index."""
        return self._roster.cameras()

    def nodes(self) -> list[NodeInfo]:
        """The camera nodes of the registry, connected or not (see ``state``)."""
        return self._roster.nodes()

    @property
    def connected(self) -> bool:
        """Whether the registry answers."""
        return self._roster.connected

    def on_event(self, callback: Callable[[RigEvent], Any]) -> Callable[[RigEvent], Any]:
        """Call ``callback(event)`` for every arrival, departure or change (see :class:`RigEvent`).

        Callbacks run on the rig's threads and must return quickly; returns ``callback``.
        See :meth:`off_event` to stop.
        """
        return self._roster.on_event(callback)

    def off_event(self, callback: Callable[[RigEvent], Any]) -> bool:
        """Stop calling a callback given to :meth:`on_event`; False if it was not registered.

        An event already being delivered may still reach it.
        """
        return self._roster.off_event(callback)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the registry answered and every node it lists was tried; False on timeout."""
        self._check_running()
        return self._roster.wait_for(self._roster.settled, timeout)

    def wait_for(self, predicate: Callable[[Rig], bool], timeout: float) -> bool:
        """Wait until ``predicate(rig)`` is true, re-checked after every change; False on timeout."""
        self._check_running()
        return self._roster.wait_for(lambda: predicate(self), timeout)

    def preview_frame(self, camera: str, after: int = 0) -> tuple[int, bytes | None]:
        """The newest preview frame of ``camera`` (``node/cam0``) over RPC: its number, and its JPEG or
        None when it is not newer than frame ``after`` (see ``CameraNode.preview_frame``).

        Raises
        ------
        ValidationError
            If the rig has no such camera.
        PlantImagerError, zmq.ZMQError
            If its node does not answer or serves no preview frames.
        """
        node_name, camera_name = split_camera_key(camera)
        node = self._roster.node(node_name) if camera_name else None
        index = node.index_of(camera_name) if node is not None else None
        if node is None or index is None:
            raise ValidationError(f"the rig has no camera {camera[:100]!r}")
        return node.preview(index, after)

    def wait_for_cameras(self, count: int, timeout: float) -> bool:
        """Wait until the rig has at least ``count`` cameras; False on timeout."""
        return self.wait_for(lambda rig: len(rig.cameras()) >= count, timeout)

    # -- dataset ---------------------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        """The dataset captures go to, opened (and created) on first use.

        Raises
        ------
        ValidationError
            If no dataset was given, or its folder cannot be created or written.
        PlantImagerError
            If another controller uses it.
        """
        with self._dataset_lock:
            if self._dataset is None:
                if self._dataset_path is None:
                    raise ValidationError("this rig has no dataset folder: give one (dataset=...)")
                self._dataset = Dataset(self._dataset_path, template=self._template)
            return self._dataset

    def use_dataset(self, path: str | os.PathLike[str], *, template: str | None = None) -> Dataset:
        """Send the next captures to another dataset (a new session); returns it, opened.

        The dataset the rig already uses is returned as it is (reopened if ``template`` differs
        from its template). Refused (PlantImagerError) while a scan runs in another thread.
        """
        root = Path(path).expanduser().absolute()
        self._scan.check("change the dataset")
        with self._dataset_lock:
            current = self._dataset
            if current is not None and current.root == root:
                if template is None or template == current.template.text:
                    return current
                # Reopened below with the new template: a dataset admits one controller at a time.
                self._dataset = None
                current.close()
        new = Dataset(root, template=template if template is not None else self._template)
        with self._dataset_lock:
            old, self._dataset, self._dataset_path = self._dataset, new, new.root
        if old is not None:
            old.close()
        return new

    # -- capture ---------------------------------------------------------------------------------
    def capture_all(self) -> CaptureRecord:
        """Fire every camera of the rig at one instant and record the capture (see :meth:`capture`)."""
        return self.capture(None)

    def capture(
        self,
        cameras: Iterable[str] | None,
        *,
        position: Mapping[str, Any] | None = None,
        on_instant: Callable[[float], Any] | None = None,
    ) -> CaptureRecord:
        """Fire some cameras at one instant ``t0`` a few ms ahead; record the capture in the dataset.

        The capture number and the cameras are recorded durably before any node is told; each
        node fires all its cameras at ``t0`` and stores the images until they are downloaded.
        Cameras that share a node with a chosen one fire too; their images are released at once.

        Parameters
        ----------
        cameras : iterable of str or None
            Rig-wide camera names (``node/cam0``) or node names (all their cameras); None for all.
        position : mapping, optional
            Where the object stands (JSON-friendly), recorded with the capture in the manifest.
        on_instant : callable, optional
            Called with the chosen instant ``t0`` (wall clock, s) before any node is told.

        Returns
        -------
        CaptureRecord
            Every camera's actual capture time, the skew, the file names its images will get.

        Raises
        ------
        ValidationError
            Before anything is fired: unknown camera names, a dataset folder that cannot be
            written, a file-name template that gives an unusable or taken name.
        PlantImagerError
            If the rig has no camera, another controller uses the dataset, or a scan runs elsewhere.
        RigError
            If some cameras failed; ``failures`` maps each to its reason (and, for all cameras, each
            node the rig could not connect to), and ``record`` holds the CaptureRecord of the others.
        """
        self._check_running()
        self._scan.check("capture")
        wanted = self._select(cameras)
        dataset = self.dataset
        with self._capture_lock, self._gate.capture(self.limits.transfer / 1000):
            nodes = {name: node for name in wanted if (node := self._roster.node(name)) is not None}
            absent = self._roster.unconnected() if cameras is None and position is None else None
            return self._trigger.capture(dataset, nodes, wanted, position, on_instant, absent)

    def scan(
        self, positions: int | Sequence[float] = 1, turntable: str | None = None, **options: Any
    ) -> ScanReport:
        """Capture every camera at each position of a turntable; resumable. See :func:`~.scan.run_scan`.

        One scan at a time: until it ends, captures and :meth:`use_dataset` from other threads are
        refused (PlantImagerError), so nothing mixes into it.
        """
        with self._scan.hold():
            return run_scan(self, positions, turntable, **options)

    def _select(self, cameras: Iterable[str] | None) -> dict[str, set[str]]:
        """Node name -> the camera keys wanted on it (see :func:`~plantimager.rig.fanout.select_cameras`)."""
        return select_cameras(self._roster.cameras(), cameras, self.registry_url)

    # -- download --------------------------------------------------------------------------------
    def download_all(
        self,
        dest: str | os.PathLike[str] | None = None,
        *,
        jobs: int | None = None,
        progress: Callable[[DownloadProgress], Any] | None = None,
    ) -> DownloadReport:
        """Fetch every image the cameras owe a dataset, verify it, write it, and release it.

        Parameters
        ----------
        dest : path, optional
            The dataset to complete; the rig's own by default. It must hold captures (a folder
            that never received one is refused).
        jobs : int, optional
            How many nodes transfer at the same time (the rig's ``jobs`` by default).
        progress : callable, optional
            Called with a :class:`DownloadProgress` after each image, on a worker thread.

        Returns
        -------
        DownloadReport

        Raises
        ------
        ValidationError
            If ``dest`` is not a dataset or cannot be written; nothing is fetched.
        RigError
            If some cameras could not deliver (their images stay owed for the next download);
            its ``report`` attribute holds the DownloadReport.
        """
        self._check_running()
        if dest is None or (
            self._dataset_path is not None and Path(dest).expanduser().absolute() == self._dataset_path
        ):
            dataset, temporary = self.dataset, False
        else:
            root = Path(dest).expanduser().absolute()
            if not (root / STATE_DIR).is_dir():
                prepare_folder(root)  # explains a parent that is a file, a folder that is not writable...
                raise ValidationError(f"{root} is not a dataset: nothing was ever captured into it")
            dataset, temporary = Dataset(root), True
        try:
            jobs = jobs or self.jobs
            download = Download(
                self._roster, dataset, jobs=jobs, gate=self._gate, executor=self._executor, progress=progress
            )
            return download.run()
        finally:
            if temporary:
                dataset.close()

    # -- settings, shutdown, status --------------------------------------------------------------
    def configure_all(
        self,
        *,
        resolution: Iterable[int] | None = None,
        encoding: str | None = None,
        rotation: int | None = None,
        quality: int | None = None,
        controls: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Apply settings to every camera of the rig.

        Returns
        -------
        dict of str to dict
            Camera -> its settings afterwards.

        Raises
        ------
        ValidationError
            If a setting is not acceptable (nothing is sent).
        RigError
            If some nodes refused or did not answer; ``failures`` maps their cameras to the
            reason, and its ``result`` attribute holds the settings of the others.
        """
        settings = check_settings(resolution, encoding, rotation, quality, controls)
        self._check_running()
        targets: dict[str, int | None] = dict.fromkeys(self._select(None))  # refuses a rig with no camera
        return configure_nodes(self._roster, self._executor, targets, settings)

    def configure(
        self,
        camera: str,
        *,
        resolution: Iterable[int] | None = None,
        encoding: str | None = None,
        rotation: int | None = None,
        quality: int | None = None,
        controls: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Apply settings to one camera (``node/cam0``) or to every camera of one node (``node``).

        Returns and raises as :meth:`configure_all`; an unknown camera is a ValidationError.
        """
        settings = check_settings(resolution, encoding, rotation, quality, controls)
        self._check_running()
        wanted = self._select([camera])
        name, keys = next(iter(wanted.items()))
        node = self._roster.node(name)
        index = None
        if node is not None and camera != name:
            index = next(c.index for c in node.cameras() if c.key in keys)
        return configure_nodes(self._roster, self._executor, {name: index}, settings)

    def shutdown_all(self) -> list[str]:
        """Ask every camera node to stop; returns the names of those that agreed.

        A node powers its host off only if it was started to allow it. Images still owed stay in
        the nodes' spools and are downloaded once the nodes are back.

        Raises
        ------
        RigError
            If some nodes did not answer; its ``result`` attribute lists those that agreed.
        """
        self._check_running()
        return self.shutdown(list(self._roster.ready_nodes()))

    def shutdown(self, names: Iterable[str]) -> list[str]:
        """Ask some camera nodes (by node name, or the node of a camera name) to stop.

        Raises
        ------
        ValidationError
            If a name is unknown (no node is told anything).
        RigError
            As :meth:`shutdown_all`.
        """
        self._check_running()
        return shutdown_nodes(self._roster, self._executor, self._select(list(names)))

    def status(self) -> dict[str, Any]:
        """Health of the rig: each node's ``status()`` and round trip, and the dataset's counts.

        Returns
        -------
        dict
            ``registry``, ``connected``, ``nodes`` (name -> node info and its status, or its
            ``error``), ``dataset`` (:meth:`Dataset.summary`, or None without a dataset).
        """
        self._check_running()
        infos = node_statuses(self._roster, self._executor)
        summary = self._dataset.summary() if self._dataset is not None else None
        if summary is None and self._dataset_path is not None and (self._dataset_path / STATE_DIR).is_dir():
            with Dataset(self._dataset_path, readonly=True) as dataset:
                summary = dataset.summary()
        return {
            "registry": self.registry_url,
            "connected": self.connected,
            "nodes": infos,
            "dataset": summary,
        }
