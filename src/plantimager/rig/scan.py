"""Scans: every camera captured at each position of a turntable, downloads overlapping the moves.

:func:`run_scan` (``Rig.scan``) runs a scan plan (see :mod:`plantimager.rig.scanplan`): for each
position not yet taken, it turns the table, waits until it has settled, fires every camera with
the position recorded in the capture, and lets a download of what the cameras hold run while the
table turns to the next position. The table turns on as soon as every camera's frame is taken
(exposure, rolling-shutter readout and a margin after the capture's instant: see
:mod:`.nextmove`), while the nodes still encode and store the images. Running the same scan again
on the same dataset continues from the first position not yet taken; a finished scan is not taken
again unless asked (``new``).

Without a turntable a scan has one position: a plain capture, recorded as position 0.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import zmq

from plantimager.commons.errors import PlantImagerError, RegistryError, RigError, ValidationError
from plantimager.commons.registry import DeviceInfo, list_devices
from plantimager.commons.security import KeyRing
from plantimager.commons.turntabledevice import DEVICE_TYPE, TurntableClient, wait_settled

from .dataset import Dataset
from .nextmove import NextMove, TurnHold
from .node import CallLimits
from .record import CameraInfo, CaptureRecord, DownloadProgress, DownloadReport
from .scanplan import ScanPlan, load_plans, plan_angles, position_states, save_plans

__all__ = [
    "DOUBT_GRACE_S",
    "ScanClaim",
    "ScanProgress",
    "ScanReport",
    "ScanningRig",
    "check_scan",
    "find_turntable",
    "run_scan",
]

logger = logging.getLogger(__name__)


class ScanningRig(Protocol):
    """What a scan needs of its rig (:class:`plantimager.rig.Rig` is one): capture, download, look."""

    registry_url: str
    limits: CallLimits
    keys: KeyRing | None

    @property
    def dataset(self) -> Dataset: ...

    def cameras(self) -> list[CameraInfo]: ...

    def capture(
        self,
        cameras: Any,
        *,
        position: Any = None,
        on_instant: Callable[[float], Any] | None = None,
    ) -> CaptureRecord: ...

    def download_all(self, *, progress: Any = None) -> DownloadReport: ...


class ScanClaim:
    """Which thread runs a rig's scan: no other thread may capture into it or move its dataset.

    A capture from elsewhere during a scan would join the scan's dataset at no known position,
    and a new dataset would take the rest of the scan elsewhere. The scan's own thread passes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: threading.Thread | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Claim the rig for a scan in the calling thread, for the ``with`` block.

        Raises
        ------
        PlantImagerError
            If a scan already runs on the rig.
        """
        with self._lock:
            if self._owner is not None:  # a second scan is refused in any thread
                raise self._refusal("start a scan", self._owner)
            self._owner = threading.current_thread()
        try:
            yield
        finally:
            with self._lock:
                self._owner = None

    def check(self, action: str) -> None:
        """Refuse ``action`` if a scan runs in another thread.

        Raises
        ------
        PlantImagerError
            Naming the action and the scan's thread.
        """
        owner = self._owner
        if owner is not None and owner is not threading.current_thread():
            raise self._refusal(action, owner)

    @staticmethod
    def _refusal(action: str, owner: threading.Thread) -> PlantImagerError:
        return PlantImagerError(
            f"cannot {action}: a scan is running on this rig (thread {owner.name!r}) and captures at"
            " each position; stop it (its stop event) or wait for its end"
        )


#: A capture whose outcome the controller never learnt is taken as never fired after this long
#: (its nodes store a capture within a few seconds of its instant).
DOUBT_GRACE_S = 15.0
_SETTLE_MARGIN_S = 10.0
_DOWNLOAD_JOIN_S = 600.0


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """Reported as a scan goes: ``phase`` is ``moving``, ``captured`` or ``download``.

    ``index`` and ``angle`` are those of the position concerned (the last one for ``download``);
    ``taken`` counts the positions taken so far, out of ``total``; ``download`` is the image
    progress for the ``download`` phase.
    """

    scan: int
    phase: str
    index: int
    angle: float | None
    taken: int
    total: int
    download: DownloadProgress | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        return asdict(self)


@dataclass(slots=True)
class ScanReport:
    """The outcome of a scan run.

    Attributes
    ----------
    scan : int
        The scan's number in the dataset.
    angles : tuple of float
        The plan.
    captured : dict of int to int
        Position index -> capture number, for the positions taken by this run.
    already : list of int
        Positions taken by an earlier run.
    downloads : list of DownloadReport
        The downloads of this run.
    complete : bool
        Whether every position is now taken.
    late : dict of int to list of str
        Position index -> cameras whose frame was not taken when the table began to turn to the
        next position (normally none: it turns once every frame is taken, while the nodes store
        the images).
    """

    scan: int
    angles: tuple[float, ...]
    captured: dict[int, int] = field(default_factory=dict)
    already: list[int] = field(default_factory=list)
    downloads: list[DownloadReport] = field(default_factory=list)
    complete: bool = False
    late: dict[int, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        out = asdict(self)
        out["downloads"] = [d.as_dict() for d in self.downloads]
        return out


def find_turntable(
    context: zmq.Context, registry_url: str, name: str | None, keys: KeyRing | None = None
) -> DeviceInfo:
    """The registry entry of turntable ``name`` (the only one when None), asked with ``keys`` if given.

    Raises
    ------
    ValidationError
        If there is no turntable of that name (or none, or several when no name is given).
    RegistryError
        If the registry does not answer.
    """
    devices = list_devices(context, registry_url, device_type=DEVICE_TYPE, keys=keys)
    names = ", ".join(d.name for d in devices) or "none"
    if name is None:
        if len(devices) != 1:
            raise ValidationError(
                f"a scan of several positions needs a turntable; {registry_url} has {len(devices)} "
                f"(turntables: {names}): name one"
            )
        return devices[0]
    for device in devices:
        if device.name == name:
            return device
    raise ValidationError(
        f"no turntable named {name!r} is registered with {registry_url} (turntables: {names})"
    )


def check_scan(
    rig: ScanningRig, positions: int | Sequence[float], turntable: str | None = None
) -> str | None:
    """Check a scan's plan and turntable without capturing anything; return the turntable's name.

    Raises
    ------
    ValidationError
        As :func:`run_scan` would, before capturing: bad positions, an unknown turntable...
    PlantImagerError
        If the registry cannot be asked.
    """
    angles = plan_angles(positions)
    if turntable is None and len(angles) == 1:
        return None
    context = zmq.Context()
    try:
        return find_turntable(context, rig.registry_url, turntable, rig.keys).name
    except RegistryError as exc:
        raise PlantImagerError(f"cannot look the turntable up: {exc}") from None
    finally:
        context.destroy(linger=0)


class _Downloader:
    """Runs the rig's downloads on a thread of its own whenever kicked, one at a time."""

    def __init__(self, rig: ScanningRig, on_progress: Callable[[DownloadProgress], Any] | None) -> None:
        self.rig, self.on_progress = rig, on_progress
        self.reports: list[DownloadReport] = []
        self.errors: list[Exception] = []
        self._kick = threading.Event()
        self._finish = False
        self._thread = threading.Thread(target=self._run, name="scan-download", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._kick.set()

    def _run(self) -> None:
        while True:
            self._kick.wait()
            self._kick.clear()
            try:
                self.reports.append(self.rig.download_all(progress=self.on_progress))
            except RigError as exc:  # what could not be fetched stays owed for the next download
                report = getattr(exc, "report", None)
                if report is not None:
                    self.reports.append(report)
                self.errors.append(exc)
            except Exception as exc:
                logger.exception("download during the scan failed")
                self.errors.append(exc)
            if self._finish and not self._kick.is_set():
                return

    def close(self) -> None:
        """Run one last download and wait for it."""
        self._finish = True
        self._kick.set()
        self._thread.join(_DOWNLOAD_JOIN_S)


def _plan(rig: ScanningRig, angles: tuple[float, ...], turntable: str | None, new: bool) -> ScanPlan:
    """The scan to run: the unfinished one with this plan, or a new one."""
    dataset = rig.dataset
    plans = load_plans(dataset)
    last = plans[-1] if plans else None
    if last is not None and not new:
        states = position_states(dataset, last)
        finished = all(s.taken for s in states)
        if last.same_as(angles, turntable):
            return last
        if not finished:
            taken = sum(bool(s.taken) for s in states)
            raise ValidationError(
                f"{dataset.root} has an unfinished scan {last.scan} of {len(last.angles)} positions "
                f"({taken} taken, turntable {last.turntable!r}); run that scan again to finish it, "
                "start a new one (new=True, --new), or use another dataset"
            )
    plan = ScanPlan((last.scan if last else 0) + 1, angles, turntable, time.time())
    save_plans(dataset, [*plans, plan])
    return plan


def _settle_doubts(
    rig: ScanningRig, plan: ScanPlan, stop: threading.Event, report: ScanReport, grace: float
) -> None:
    """Resolve the captures whose outcome an earlier run never learnt: fetched, or taken as lost."""
    dataset = rig.dataset
    doubtful = {n for s in position_states(dataset, plan) for n in s.doubtful}
    if not doubtful:
        return
    shots = [s for s in dataset.owed() if s.capture_no in doubtful and s.status == "sent"]
    youngest = max((s.sent_at for s in shots), default=0.0)
    wait = youngest + grace - time.time()
    if wait > 0:  # a capture that reached its nodes is stored by then
        logger.info("waiting %.1f s for the outcome of captures %s", wait, sorted(doubtful))
        stop.wait(min(wait, grace))
    try:
        report.downloads.append(rig.download_all())
    except RigError as exc:
        logger.warning("download of the interrupted captures: %s", exc)
    still = {n for s in position_states(dataset, plan) for n in s.doubtful}
    for shot in dataset.owed():
        if shot.capture_no in still and shot.status == "sent":
            dataset.mark_lost(
                shot, "the controller stopped before the capture was confirmed; position taken again"
            )


def run_scan(
    rig: ScanningRig,
    positions: int | Sequence[float] = 1,
    turntable: str | None = None,
    *,
    start: float = 0.0,
    new: bool = False,
    settle_timeout: float | None = None,
    progress: Callable[[ScanProgress], Any] | None = None,
    stop: threading.Event | None = None,
    doubt_grace: float = DOUBT_GRACE_S,
) -> ScanReport:
    """Run (or finish) a scan of the rig's dataset.

    Parameters
    ----------
    rig : ScanningRig
        A started rig with a dataset.
    positions : int or sequence of float
        How many positions evenly spaced around a full turn (from ``start``), or their angles.
    turntable : str, optional
        The turntable's registry name; with several positions, the only turntable of the
        registry by default. A plan of one position without one is a plain capture.
    start : float
        First angle of an evenly spaced plan, in degrees.
    new : bool
        Start a new scan even if this dataset's last scan has the same plan.
    settle_timeout : float, optional
        Longest wait for one move, in seconds (by default a half turn at the table's speed plus
        ten seconds).
    progress : callable, optional
        Called with a :class:`ScanProgress` at each step (downloads: on another thread).
    stop : threading.Event, optional
        Set it to stop after the position under way (the rest stays to be done).
    doubt_grace : float
        Seconds after its instant a capture whose outcome an earlier run never learnt (it was
        stopped in between) is taken as never fired: its position is then taken again.

    Returns
    -------
    ScanReport

    Raises
    ------
    ValidationError
        Before anything is captured: bad positions, an unknown turntable, several positions
        without one, or a dataset whose unfinished scan has another plan.
    RigError
        If cameras failed at a position (the scan stops there; run it again to go on).
    PlantImagerError
        If the rig has no camera, or the turntable does not settle in time.
    """
    angles = plan_angles(positions, start)
    stop = stop if stop is not None else threading.Event()
    if not rig.cameras():
        raise PlantImagerError(f"the rig has no camera: no camera node is registered with {rig.registry_url}")
    context = zmq.Context()
    table: TurntableClient | None = None
    try:
        device: DeviceInfo | None = None
        if turntable is not None or len(angles) > 1:
            try:
                device = find_turntable(context, rig.registry_url, turntable, rig.keys)
                turntable = device.name
            except RegistryError as exc:
                raise PlantImagerError(f"cannot look the turntable up: {exc}") from None
        plan = _plan(rig, angles, turntable, new)
        report = ScanReport(plan.scan, plan.angles)
        _settle_doubts(rig, plan, stop, report, doubt_grace)
        states = position_states(rig.dataset, plan)
        report.already = [s.index for s in states if s.taken]
        todo = [s.index for s in states if not s.taken]
        if device is not None:
            table = TurntableClient(
                context,
                device.addr,
                timeout=rig.limits.connect,
                keys=rig.keys,
                server_key=device.public_key or None,
            )
        report.downloads.extend(_take(rig, plan, todo, table, report, settle_timeout, progress, stop))
        report.complete = all(s.taken for s in position_states(rig.dataset, plan))
        return report
    finally:
        if table is not None:
            table.close()
        context.destroy(linger=0)


def _hold(rig: ScanningRig) -> TurnHold:
    """How long after a capture's instant the table may turn, for the rig's cameras."""
    exposures = [float(cam.controls.get("ExposureTime") or 0.0) / 1e6 for cam in rig.cameras()]
    return TurnHold(max(exposures, default=0.0))


def _take(
    rig: ScanningRig,
    plan: ScanPlan,
    todo: list[int],
    table: TurntableClient | None,
    report: ScanReport,
    settle_timeout: float | None,
    progress: Callable[[ScanProgress], Any] | None,
    stop: threading.Event,
) -> list[DownloadReport]:
    total = len(plan.angles)
    taken = len(report.already)

    def tell(phase: str, index: int, angle: float | None, download: DownloadProgress | None = None) -> None:
        if progress is not None:
            progress(ScanProgress(plan.scan, phase, index, angle, taken, total, download))

    last = todo[-1] if todo else 0
    downloader = _Downloader(rig, lambda p: tell("download", last, None, p))
    failure: RigError | None = None
    moving: int | None = None  # a move already started towards the position to take
    hold = _hold(rig)
    try:
        for number, index in enumerate(todo):
            if stop.is_set():
                break
            angle = plan.angles[index]
            position: dict[str, Any] = {"scan": plan.scan, "index": index, "of": total, "angle": angle}
            early: NextMove | None = None
            if table is not None:
                tell("moving", index, angle)
                timeout = settle_timeout or 180.0 / max(float(table.speed), 1e-3) + _SETTLE_MARGIN_S
                move = moving if moving is not None else table.move_to(angle)
                position["measured"] = wait_settled(table, move, timeout)
                position["turntable"] = plan.turntable
                if number + 1 < len(todo):
                    early = NextMove(table, plan.angles[todo[number + 1]], hold.seconds)
            else:
                position["angle"] = None
            try:
                record: CaptureRecord | None = rig.capture(
                    None, position=position, on_instant=early.arm if early is not None else None
                )
            except RigError as exc:
                failure, record = exc, getattr(exc, "record", None)
            downloader.kick()  # fetch this position while the table turns to the next
            if record is not None:
                report.captured[index] = record.capture_no
                taken += 1
            tell("captured", index, angle)
            moving = early.result(_SETTLE_MARGIN_S) if early is not None else None
            if record is not None:
                hold.observe(record)
            if early is not None and record is not None and moving is not None:
                late = hold.late_cameras(record, early.at)
                if late:  # still taking their frame when the table began to turn: their view may be off
                    report.late[index] = late
                    logger.warning("position %d: %s still taking a frame when the table turned", index, late)
            if failure is not None:
                break
    finally:
        downloader.close()
    if failure is not None:
        error = RigError(
            f"scan {plan.scan} stopped at a position where cameras failed (run it again to go on)",
            failure.failures,
        )
        error.report = report  # type: ignore[attr-defined]
        raise error from failure
    return downloader.reports
