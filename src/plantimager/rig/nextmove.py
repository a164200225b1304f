"""When a scan may turn the table on: once every camera's frame is taken, not when it has stored.

During a scan the table turns to the next position while the nodes still encode and store the
images of this one. :class:`NextMove` starts that move a while after the capture's instant;
:class:`TurnHold` says how long that while is, learnt from the scan's own captures:

* how long a camera takes its frame: its exposure, plus the readout of a rolling shutter (the
  last row starts exposing that much after the first). Both come from each frame's metadata:
  ``ExposureTime``, and ``FrameDuration`` as the bound of the readout (a rolling-shutter sensor
  reads its rows out within one frame period). A camera that reports no frame duration (the
  simulated one, a global shutter) has no readout;
* how late after the instant the cameras fired, and a margin of four times the latest of that,
  at least 10 ms and at most 0.15 s, for a camera firing later than the recent captures showed.

Before the scan has seen a capture the hold is the longest configured exposure and the 0.15 s
ceiling.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from plantimager.commons.errors import PlantImagerError
from plantimager.commons.number import finite
from plantimager.commons.turntabledevice import TurntableClient

from .record import CaptureRecord, Shot

__all__ = ["LATE_FACTOR", "MAX_MARGIN_S", "MIN_MARGIN_S", "NextMove", "TurnHold"]

#: The margin before any capture of the scan was seen, and its ceiling, seconds.
MAX_MARGIN_S = 0.15
#: The least margin, seconds: exposure and readout are measured, this covers firing jitter only.
MIN_MARGIN_S = 0.01
#: The margin as a multiple of the latest a camera fired after the instant, recently.
LATE_FACTOR = 4.0
_RECENT = 8


class TurnHold:
    """How long after a capture's instant the table may turn, learnt from the scan's captures.

    Parameters
    ----------
    exposure : float
        The longest configured exposure time of the cameras, seconds: what a camera is taken to
        need when its frames do not say.
    """

    def __init__(self, exposure: float) -> None:
        self.exposure = max(0.0, float(exposure))
        self._late: deque[float] = deque(maxlen=_RECENT)
        self._taking: deque[float] = deque(maxlen=_RECENT)

    @property
    def margin(self) -> float:
        """Seconds allowed past the instant for cameras that fire late."""
        if not self._late:
            return MAX_MARGIN_S
        return min(MAX_MARGIN_S, max(MIN_MARGIN_S, LATE_FACTOR * max(self._late)))

    @property
    def taking(self) -> float:
        """The longest a camera of the recent captures took to take its frame, seconds.

        Exposure and readout from the frames' metadata; the configured exposure until a capture
        was seen.
        """
        return max(self._taking, default=self.exposure)

    @property
    def seconds(self) -> float:
        """The wait after a capture's instant before the table turns: taking the frame, and margin."""
        return self.taking + self.margin

    def observe(self, record: CaptureRecord) -> None:
        """Learn how late the cameras of ``record`` fired after its instant and how long they took."""
        if not record.shots:
            return
        self._late.append(max(0.0, *(shot.captured_at - record.t0 for shot in record.shots)))
        self._taking.append(max(self.frame_seconds(shot) for shot in record.shots))

    def frame_seconds(self, shot: Shot) -> float:
        """Seconds from the start of ``shot``'s exposure until its last row was exposed.

        Its exposure (the configured one when the frame does not say) and, when the frame reports
        its duration, that duration as the readout of a rolling shutter.
        """
        controls = shot.settings.get("controls")
        if not isinstance(controls, dict):
            controls = {}
        exposure = _microseconds(controls.get("ExposureTime"))
        readout = _microseconds(controls.get("FrameDuration"))
        return (self.exposure if exposure is None else exposure) + (readout or 0.0)

    def late_cameras(self, record: CaptureRecord, turned_at: float) -> list[str]:
        """The cameras of ``record`` whose frame was not taken when the table began to turn."""
        return [
            shot.camera for shot in record.shots if shot.captured_at + self.frame_seconds(shot) > turned_at
        ]


def _microseconds(value: object) -> float | None:
    """A frame's duration in microseconds, as seconds; None if it is not a plain finite number."""
    number = finite(value)
    return None if number is None else max(0.0, number) / 1e6


class NextMove:
    """Starts the table's move to ``angle`` ``hold`` seconds after the instant it is armed with.

    Parameters
    ----------
    table : TurntableClient
        The scan's turntable.
    angle : float
        The next position's angle, degrees.
    hold : float
        Seconds after the capture's instant (see :class:`TurnHold`).
    """

    def __init__(self, table: TurntableClient, angle: float, hold: float) -> None:
        self.table, self.angle, self.hold = table, angle, hold
        self.started = threading.Event()
        self.move = 0
        self.at = 0.0
        self.error: Exception | None = None
        self._timer: threading.Timer | None = None

    def arm(self, t0: float) -> None:
        """Called with the capture's instant: start the move ``hold`` seconds after it."""
        self._timer = threading.Timer(max(0.0, t0 + self.hold - time.time()), self._go)
        self._timer.daemon = True
        self._timer.start()

    def _go(self) -> None:
        try:
            self.at = time.time()
            self.move = self.table.move_to(self.angle)
        except Exception as exc:
            self.error = exc
        finally:
            self.started.set()

    def result(self, timeout: float) -> int | None:
        """The move's number; None if the capture never armed it.

        Raises
        ------
        PlantImagerError
            If the move did not start within ``timeout`` seconds, or the table refused it.
        """
        if self._timer is None:
            return None
        if not self.started.wait(timeout):
            raise PlantImagerError(f"the turntable's next move did not start within {timeout:g} s")
        if self.error is not None:
            raise PlantImagerError(f"the turntable refused its next move: {self.error}")
        return self.move
