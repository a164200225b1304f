"""Live renderings of the synthetic plant as a turntable turns it, for simulated cameras.

The plant stands on the simulated turntable's dotted top, which turns with it.

:class:`TurnedViews` renders the plant from one camera position at any angle of the turntable
and keeps the latest few renderings. A rendering can be prepared ahead (when a move starts) on the
object's own worker thread; asking for an angle being rendered waits for that rendering instead of
starting another.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from PIL import Image

from plantimager.commons.errors import PlantImagerError
from plantimager.commons.examples.scene import render_view

__all__ = ["TurnedViews"]

logger = logging.getLogger(__name__)

#: Renderings kept by default (the latest ones).
_KEEP = 4
#: Longest wait for a rendering made by another thread, in seconds.
_RENDER_WAIT_S = 120.0


def _key(angle: float) -> float:
    return round(float(angle) % 360.0, 6) % 360.0


class TurnedViews:
    """Renderings of the plant seen from ``azimuth`` degrees, turned by any angle.

    Parameters
    ----------
    azimuth : float
        The camera's azimuth around the plant, in degrees.
    size : tuple of int
        ``(width, height)`` of the renderings.
    elevation : float
        The camera's elevation, in degrees.
    seed : int
        The plant (see :func:`~plantimager.commons.examples.scene.render_view`).
    then : callable, optional
        Called on the worker thread with ``(angle, image)`` after each rendering made ahead (the
        camera prepares its still from it).
    keep : int
        How many renderings to keep (the most recently used ones), at least 1.
    """

    def __init__(
        self,
        azimuth: float,
        size: tuple[int, int],
        *,
        elevation: float = 20.0,
        seed: int = 0,
        then: Callable[[float, Image.Image], object] | None = None,
        keep: int = _KEEP,
    ) -> None:
        self.then = then
        self.keep = max(1, int(keep))
        self.azimuth, self.size, self.elevation, self.seed = float(azimuth), tuple(size), elevation, seed
        self._cond = threading.Condition()
        self._done: OrderedDict[float, Image.Image] = OrderedDict()
        self._busy: set[float] = set()
        self._wanted: float | None = None
        self._closed = False
        self._worker: threading.Thread | None = None

    def view(self, angle: float) -> tuple[float, Image.Image]:
        """The rendering at ``angle`` (rendered now unless it is ready or under way)."""
        key = _key(angle)
        with self._cond:
            if not self._cond.wait_for(lambda: key not in self._busy or self._closed, _RENDER_WAIT_S):
                raise PlantImagerError(f"rendering the plant at {key} deg took over {_RENDER_WAIT_S} s")
            self._check_open()
            image = self._done.get(key)
            if image is not None:
                self._done.move_to_end(key)
                return key, image
            self._busy.add(key)
        image = None
        try:
            image = Image.fromarray(
                render_view(
                    self.azimuth, self.elevation, self.size, self.seed, object_deg=key, turntable=True
                )
            )
        finally:
            with self._cond:
                self._busy.discard(key)
                if image is not None:
                    self._done[key] = image
                    while len(self._done) > self.keep:
                        self._done.popitem(last=False)
                self._cond.notify_all()
        return key, image

    def latest(self) -> tuple[float, Image.Image] | None:
        """The most recent rendering, None before the first."""
        with self._cond:
            if not self._done:
                return None
            key = next(reversed(self._done))
            return key, self._done[key]

    def prepare(self, angle: float) -> None:
        """Render ``angle`` ahead, on the worker thread (only the latest angle asked is rendered)."""
        with self._cond:
            if self._closed:
                return
            self._wanted = _key(angle)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="turned-views", daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted is not None or self._closed)
                if self._closed:
                    return
                angle, self._wanted = self._wanted, None
            try:
                key, image = self.view(angle)
                if self.then is not None:
                    self.then(key, image)
            except Exception:  # a failed rendering ahead is tried again when the camera fires
                logger.exception("rendering the plant ahead at %s deg failed", angle)

    def _check_open(self) -> None:
        if self._closed:
            raise PlantImagerError("the simulated camera is closed")

    def close(self) -> None:
        """Stop the worker; later calls of :meth:`view` raise."""
        with self._cond:
            self._closed = True
            self._done.clear()
            self._cond.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(_RENDER_WAIT_S)
