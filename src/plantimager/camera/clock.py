"""How far this host's clock is from the time its NTP daemon (chrony) tracks, and whether a rig agrees.

A synchronised capture fires every node at the same wall-clock instant, so the nodes' clocks must
agree: an error of a few milliseconds between two nodes is a skew of that much between their
images. Each node reports its offset in ``status()["clock_offset_ms"]`` and the controller compares
them with :func:`clock_warnings`.

The offset comes from ``chronyc -n -c tracking`` (``-c``: comma-separated values, ``-n``: no DNS
lookups). Its fifth field, *System time*, is the correction chronyd is still applying to the system
clock, in seconds: positive when the system clock is *slow* (behind NTP time), negative when it is
*fast* (the human-readable report prints the same number without its sign, followed by "slow" or
"fast"). We report the opposite sign, in milliseconds::

    clock_offset_ms = -(System time) * 1000     # > 0: this host's clock is ahead of NTP time

Nothing is reported (None) when ``chronyc`` is not installed, fails, is slow to answer, prints
something else, or when chronyd is not synchronised to any source (its offset is then meaningless).
Results are cached for a few seconds, so a status request costs at most one short subprocess.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from plantimager.commons.number import is_finite

__all__ = [
    "CACHE_SECONDS",
    "CHRONYC_TIMEOUT_S",
    "CLOCK_WARN_MS",
    "ClockWatch",
    "Tracking",
    "clear_cache",
    "clock_offset_ms",
    "clock_warnings",
    "parse_tracking",
    "read_tracking",
]

logger = logging.getLogger(__name__)

#: Largest disagreement between the clocks of a rig's nodes before the controller warns, ms. On a
#: wired LAN with chrony and the controller as NTP server, offsets stay within about 0.1 ms.
CLOCK_WARN_MS = 1.0
#: How long a measured offset is reused, seconds.
CACHE_SECONDS = 5.0
#: Longest wait for ``chronyc``, seconds.
CHRONYC_TIMEOUT_S = 1.0
#: The command run; ``chronyc`` is looked up on ``PATH``.
CHRONYC_ARGS = ("-n", "-c", "tracking")
_FIELDS = 14
_UNSYNCHRONISED = "Not synchronised"


@dataclass(frozen=True, slots=True)
class Tracking:
    """One ``chronyc -c tracking`` report.

    Attributes
    ----------
    reference_id : str
        Hex reference id of the selected source (``"00000000"`` when there is none).
    reference : str
        Its address or name.
    stratum : int
        NTP stratum of this host.
    system_time_s : float
        chrony's *System time* field: the correction still to apply to the system clock, seconds;
        positive when the clock is slow, negative when it is fast.
    last_offset_s, rms_offset_s : float
        Offset at the last clock update and its long-term RMS, seconds.
    frequency_ppm : float
        Rate at which the clock would drift without correction.
    root_delay_s, root_dispersion_s : float
        Network delay and dispersion accumulated up to the reference, seconds.
    leap_status : str
        ``"Normal"``, ``"Insert second"``, ``"Delete second"`` or ``"Not synchronised"``.
    """

    reference_id: str
    reference: str
    stratum: int
    system_time_s: float
    last_offset_s: float
    rms_offset_s: float
    frequency_ppm: float
    root_delay_s: float
    root_dispersion_s: float
    leap_status: str

    @property
    def synchronised(self) -> bool:
        """True when chronyd tracks a source (its leap status is not "Not synchronised")."""
        return self.leap_status != _UNSYNCHRONISED and self.reference_id != "00000000"

    @property
    def offset_ms(self) -> float:
        """This host's clock minus NTP time, ms (positive: ahead, chrony's "fast")."""
        return -self.system_time_s * 1000.0 + 0.0  # + 0.0 turns -0.0 into 0.0

    @property
    def max_error_ms(self) -> float:
        """chrony's bound on the clock error: |offset| + root dispersion + half the root delay, ms."""
        return (abs(self.system_time_s) + self.root_dispersion_s + self.root_delay_s / 2) * 1000.0


def parse_tracking(text: str) -> Tracking:
    """Parse the output of ``chronyc -c tracking`` (one line of 14 comma-separated fields).

    Parameters
    ----------
    text : str
        What the command printed.

    Returns
    -------
    Tracking
        The report.

    Raises
    ------
    ValueError
        If the text is not such a line (for example the human-readable report, or
        ``506 Cannot talk to daemon``).
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"expected one line of comma-separated values, got {len(lines)} lines")
    fields = [field.strip() for field in lines[0].split(",")]
    if len(fields) != _FIELDS:
        raise ValueError(f"expected {_FIELDS} comma-separated fields, got {len(fields)}: {lines[0][:120]!r}")
    try:
        numbers = [float(fields[i]) for i in (4, 5, 6, 7, 10, 11)]
        stratum = int(fields[2])
    except ValueError:
        raise ValueError(f"non-numeric tracking field in {lines[0][:120]!r}") from None
    if not all(math.isfinite(n) for n in numbers):
        raise ValueError(f"non-finite tracking value in {lines[0][:120]!r}")
    system_time, last_offset, rms_offset, frequency, root_delay, root_dispersion = numbers
    return Tracking(
        reference_id=fields[0],
        reference=fields[1],
        stratum=stratum,
        system_time_s=system_time,
        last_offset_s=last_offset,
        rms_offset_s=rms_offset,
        frequency_ppm=frequency,
        root_delay_s=root_delay,
        root_dispersion_s=root_dispersion,
        leap_status=fields[13],
    )


def read_tracking(timeout: float = CHRONYC_TIMEOUT_S) -> Tracking | None:
    """Run ``chronyc -n -c tracking`` and parse its report.

    Returns
    -------
    Tracking or None
        None when ``chronyc`` is not on ``PATH``, does not answer within ``timeout`` seconds,
        exits with an error or prints something unexpected.
    """
    chronyc = shutil.which("chronyc")
    if chronyc is None:
        return None
    try:
        result = subprocess.run(
            [chronyc, *CHRONYC_ARGS],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        logger.debug("chronyc did not answer within %g s", timeout)
        return None
    except OSError as exc:
        logger.debug("could not run chronyc: %s", exc)
        return None
    if result.returncode != 0:
        logger.debug("chronyc exited with status %d: %s", result.returncode, result.stdout.strip()[:200])
        return None
    try:
        return parse_tracking(result.stdout)
    except ValueError as exc:
        logger.debug("unexpected chronyc output: %s", exc)
        return None


_cache_lock = threading.Lock()
_cache: tuple[float, float | None] | None = None  # (monotonic time of the measurement, offset)


def clock_offset_ms(max_age: float = CACHE_SECONDS) -> float | None:
    """This host's clock offset from NTP time as chrony sees it, in milliseconds.

    Positive when this host's clock is ahead of NTP time (chrony's "fast"), negative when it is
    behind ("slow"). A value measured less than ``max_age`` seconds ago is reused (a missing one
    too), so calling this on every status request is cheap.

    Parameters
    ----------
    max_age : float
        Longest age of a cached measurement, seconds; 0 measures now.

    Returns
    -------
    float or None
        The offset, or None when chrony is absent, fails or is not synchronised.
    """
    global _cache
    with _cache_lock:
        now = time.monotonic()
        if _cache is not None and now - _cache[0] < max_age:
            return _cache[1]
        tracking = read_tracking()
        offset = tracking.offset_ms if tracking is not None and tracking.synchronised else None
        _cache = (time.monotonic(), offset)
        return offset


def clear_cache() -> None:
    """Forget the cached offset: the next :func:`clock_offset_ms` measures again."""
    global _cache
    with _cache_lock:
        _cache = None


class ClockWatch:
    """This host's clock offset, kept fresh on a background thread so that reading it never waits.

    A capture reports the offset with its images, and must not wait for ``chronyc`` to do so.

    Parameters
    ----------
    fixed : float, optional
        Report this offset, in ms, instead of measuring (a simulated host; no thread then).
    interval : float
        Seconds between measurements.
    source : callable, optional
        Measures the offset, ms or None; :func:`clock_offset_ms` (chrony) by default.
    """

    def __init__(
        self,
        fixed: float | None = None,
        *,
        interval: float = CACHE_SECONDS,
        source: Callable[[], float | None] | None = None,
    ) -> None:
        self.interval = interval
        self._source = source or (lambda: clock_offset_ms(max_age=0))
        self._offset = fixed
        self._measured = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if fixed is not None:
            self._measured.set()
        else:
            self._thread = threading.Thread(target=self._run, name="clock-watch", daemon=True)
            self._thread.start()

    @property
    def offset_ms(self) -> float | None:
        """The latest offset, ms (positive: this clock is ahead); None when unknown.

        Only before the first measurement does this wait for it (at most the ``chronyc`` time limit).
        """
        self._measured.wait(CHRONYC_TIMEOUT_S + 1.0)
        return self._offset

    def _run(self) -> None:
        while True:
            try:
                self._offset = self._source()
            except Exception:  # a failed measurement must not end the watch
                logger.exception("measuring the clock offset failed")
                self._offset = None
            self._measured.set()
            if self._stop.wait(self.interval):
                return

    def close(self) -> None:
        """Stop measuring (waits for a measurement in progress, bounded). Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(CHRONYC_TIMEOUT_S + 1.0)


def clock_warnings(statuses: Iterable[Mapping[str, Any]], threshold_ms: float = CLOCK_WARN_MS) -> list[str]:
    """Warnings for a controller whose nodes' clocks disagree.

    Parameters
    ----------
    statuses : iterable of dict
        Node statuses, as returned by ``status()``: each may hold ``clock_offset_ms`` (float or
        None) and names the node by ``name``, else ``id``.
    threshold_ms : float
        Largest acceptable spread (maximum minus minimum offset), ms.

    Returns
    -------
    list of str
        Empty when every known offset lies within ``threshold_ms`` of the others. Otherwise one
        message naming the two extreme nodes and the spread; and, when some nodes report an offset
        and others do not, one message listing those whose clock cannot be checked.
    """
    known: list[tuple[float, str]] = []
    unknown: list[str] = []
    for i, status in enumerate(statuses):
        label = str(status.get("name") or status.get("id") or f"node #{i}")
        offset = status.get("clock_offset_ms")
        if is_finite(offset):
            known.append((float(offset), label))
        else:
            unknown.append(label)
    warnings: list[str] = []
    if len(known) >= 2:
        low, high = min(known), max(known)
        spread = high[0] - low[0]
        if spread > threshold_ms:
            warnings.append(
                f"node clocks disagree by {spread:.3f} ms (more than {threshold_ms:g} ms): "
                f"{high[1]} is at {high[0]:+.3f} ms and {low[1]} at {low[0]:+.3f} ms from NTP time; "
                "synchronised captures will be skewed by about that much (check `chronyc sources` "
                "on those nodes)"
            )
    if known and unknown:
        warnings.append(
            f"clock offset unknown for {', '.join(sorted(unknown))}: chrony is not running or not "
            "synchronised there, so their capture times cannot be checked"
        )
    return warnings
