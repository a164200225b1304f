"""When a scan may turn the table on: once every camera's exposure is over, not when it has stored.

During a scan the table turns to the next position while the nodes still encode and store the
images of this one. :class:`NextMove` starts that move a while after the capture's instant;
:class:`TurnHold` says how long that while is: the longest exposure of the cameras, and a margin
for cameras that fire later than the instant. The margin is 0.15 s until the scan has seen a
capture, then four times the latest any camera fired in the scan's recent captures, at least
50 ms and at most 0.15 s: the firing threads of the nodes wake within a millisecond or so of the
instant, so a fixed 0.15 s would mostly be spent waiting for nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from plantimager.commons.errors import PlantImagerError
from plantimager.commons.turntabledevice import TurntableClient

from .record import CaptureRecord

__all__ = ["LATE_FACTOR", "MAX_MARGIN_S", "MIN_MARGIN_S", "NextMove", "TurnHold"]

#: The margin before any capture of the scan was seen, and its ceiling, seconds.
MAX_MARGIN_S = 0.15
#: The least margin, seconds.
MIN_MARGIN_S = 0.05
#: The margin as a multiple of the latest a camera fired after the instant, recently.
LATE_FACTOR = 4.0
_RECENT = 8


class TurnHold:
    """How long after a capture's instant the table may turn, learnt from the scan's captures.

    Parameters
    ----------
    exposure : float
        The longest exposure time of the cameras, seconds.
    """

    def __init__(self, exposure: float) -> None:
        self.exposure = max(0.0, float(exposure))
        self._late: deque[float] = deque(maxlen=_RECENT)

    @property
    def margin(self) -> float:
        """Seconds allowed past the instant for cameras that fire late."""
        if not self._late:
            return MAX_MARGIN_S
        return min(MAX_MARGIN_S, max(MIN_MARGIN_S, LATE_FACTOR * max(self._late)))

    @property
    def seconds(self) -> float:
        """The wait after a capture's instant before the table turns: exposure and margin."""
        return self.exposure + self.margin

    def observe(self, record: CaptureRecord) -> None:
        """Learn how late the cameras of ``record`` fired after its instant."""
        late = [shot.captured_at - record.t0 for shot in record.shots]
        if late:
            self._late.append(max(0.0, max(late)))

    def late_cameras(self, record: CaptureRecord, turned_at: float) -> list[str]:
        """The cameras of ``record`` whose exposure was not over when the table began to turn."""
        return [shot.camera for shot in record.shots if shot.captured_at + self.exposure > turned_at]


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
