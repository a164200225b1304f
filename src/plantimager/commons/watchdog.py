"""Feeding the systemd watchdog only while the serve loops of this process are healthy.

systemd's watchdog (``WatchdogSec=`` in a unit) restarts a service that stops sending
``WATCHDOG=1``. Sending it from the serve loop itself, as upstream does, has two faults: nothing is
sent while a long handler runs, so a legitimate 2-minute capture gets the service killed (D26), and
a loop that spins without serving keeps feeding, so a wedged service is never restarted (D27).

Here a thread, :class:`Watchdog`, sends ``WATCHDOG=1`` every half interval, but only while every
watched loop is healthy. Each loop owns a :class:`LoopMonitor` and tells it two things, each costing
one attribute write:

* :meth:`LoopMonitor.beat` at the top of every iteration: the loop is alive and idle;
* :meth:`LoopMonitor.enter` before running a handler: from now on the loop counts as healthy for as
  long as that handler's budget, which is the timeout the method advertises to clients (capped at
  :data:`MAX_HANDLER_BUDGET_S`; :data:`DEFAULT_HANDLER_BUDGET_S` for other requests).

A loop is unhealthy when a handler has run past its budget, or when no iteration has started for
longer than the idle bound (the loop is stuck outside any handler). The watchdog then stops feeding
and systemd restarts the service once ``WatchdogSec`` has passed; if the loop recovers first,
feeding resumes.

The watchdog is enabled with the rules of ``sd_watchdog_enabled(3)``: ``WATCHDOG_USEC`` holds the
interval in microseconds, and ``WATCHDOG_PID``, when set, must be this process. One watchdog thread
serves the whole process (:func:`watch_loop` starts it with the first loop, :func:`unwatch_loop`
stops it with the last), so a process serving several loops is fed only while all are healthy.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import systemd

__all__ = [
    "DEFAULT_HANDLER_BUDGET_S",
    "DEFAULT_IDLE_BOUND_S",
    "MAX_HANDLER_BUDGET_S",
    "LoopMonitor",
    "Watchdog",
    "unwatch_loop",
    "watch_loop",
    "watchdog_interval",
]

logger = logging.getLogger(__name__)

#: Budget of a request that is not a call of an advertised method (inventory, properties...), seconds.
DEFAULT_HANDLER_BUDGET_S = 10.0
#: Longest budget a handler gets, whatever its advertised timeout (``None`` included), seconds.
MAX_HANDLER_BUDGET_S = 300.0
#: Longest time between two iterations of an idle loop before it counts as stuck, seconds. A loop
#: must start an iteration well within this (ours waits at most 1 s for a request).
DEFAULT_IDLE_BOUND_S = 5.0
_METHOD_CALL = "METHOD_CALL"


def watchdog_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog interval systemd expects, in seconds, or None when the watchdog is off.

    Follows ``sd_watchdog_enabled(3)``: ``WATCHDOG_USEC`` must be a positive integer of
    microseconds and ``WATCHDOG_PID``, when set, must be ``pid`` (this process by default).

    Parameters
    ----------
    environ : mapping, optional
        The environment to read; ``os.environ`` by default.
    pid : int, optional
        The process to check ``WATCHDOG_PID`` against; ``os.getpid()`` by default.

    Returns
    -------
    float or None
        ``WatchdogSec`` in seconds.
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "").strip()
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        logger.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw)
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "").strip()
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            logger.warning("ignoring the watchdog: WATCHDOG_PID=%r is not a process id", owner)
            return None
    return usec / 1e6


class LoopMonitor:
    """What the watchdog knows about one serve loop: when it last iterated, and what it runs now.

    Parameters
    ----------
    label : str
        Names the loop in log messages.
    timeouts : mapping of str to int or None, optional
        Advertised timeout of each method, in ms (``None``: no limit); a method call gets that
        budget, capped at ``max_budget_s``.
    default_budget_s : float
        Budget of any other request, seconds.
    max_budget_s : float
        Cap on every budget, seconds.
    idle_bound_s : float
        Longest time between two iterations of the loop outside a handler, seconds.
    """

    __slots__ = ("_beat", "_budgets", "_busy", "_default", "idle_bound_s", "label")

    def __init__(
        self,
        label: str,
        timeouts: Mapping[str, int | None] | None = None,
        *,
        default_budget_s: float = DEFAULT_HANDLER_BUDGET_S,
        max_budget_s: float = MAX_HANDLER_BUDGET_S,
        idle_bound_s: float = DEFAULT_IDLE_BOUND_S,
    ) -> None:
        self.label = label
        self.idle_bound_s = float(idle_bound_s)
        self._default = min(float(default_budget_s), float(max_budget_s))
        self._budgets = {
            name: max_budget_s if ms is None else min(ms / 1000.0, max_budget_s)
            for name, ms in (timeouts or {}).items()
        }
        self._beat = time.monotonic()
        # (start, budget, what) while a handler runs; None when idle. One tuple, written at once.
        self._busy: tuple[float, float, str] | None = None

    def beat(self) -> None:
        """Record an iteration of the loop: it is alive and not inside a handler."""
        self._busy = None
        self._beat = time.monotonic()

    def enter(self, request: Mapping[str, Any]) -> None:
        """Record that the loop now runs the handler of ``request`` (a decoded request object)."""
        if request.get("event") == _METHOD_CALL:
            method = request.get("method")
            budget = self._budgets.get(method, self._default) if isinstance(method, str) else self._default
            self._busy = (time.monotonic(), budget, f"method {method!r}")
        else:
            self._busy = (time.monotonic(), self._default, str(request.get("event")))

    def problem(self, now: float | None = None) -> str | None:
        """Why the loop is unhealthy, or None when it is healthy.

        Parameters
        ----------
        now : float, optional
            ``time.monotonic()`` value to judge at; the current time by default.
        """
        now = time.monotonic() if now is None else now
        busy = self._busy
        if busy is not None:
            started, budget, what = busy
            if now - started >= budget:
                return f"{self.label}: {what} has run {now - started:.1f} s, beyond its {budget:g} s budget"
            return None
        idle = now - self._beat
        if idle >= self.idle_bound_s:
            return f"{self.label}: no iteration for {idle:.1f} s (bound {self.idle_bound_s:g} s)"
        return None

    def healthy(self, now: float | None = None) -> bool:
        """True while the loop makes progress (see :meth:`problem`)."""
        return self.problem(now) is None


class Watchdog(threading.Thread):
    """Sends ``WATCHDOG=1`` every ``timeout_s / 2`` seconds while every watched loop is healthy.

    Most code uses :func:`watch_loop` / :func:`unwatch_loop`, which share one watchdog per process.

    Parameters
    ----------
    timeout_s : float
        systemd's ``WatchdogSec``, in seconds (see :func:`watchdog_interval`).
    notify : callable, optional
        ``notify(state) -> bool``; :func:`plantimager.commons.systemd.notify` by default.
    name : str
        Thread name.
    """

    def __init__(
        self,
        timeout_s: float,
        *,
        notify: Callable[[str], bool] | None = None,
        name: str = "systemd-watchdog",
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"the watchdog timeout must be > 0 seconds, got {timeout_s!r}")
        super().__init__(name=name, daemon=True)
        self.timeout_s = float(timeout_s)
        self.period_s = self.timeout_s / 2
        self._notify = notify or systemd.notify
        self._lock = threading.Lock()
        self._monitors: list[LoopMonitor] = []
        self._stop_event = threading.Event()
        #: How many ``WATCHDOG=1`` were sent.
        self.fed = 0

    def add(self, monitor: LoopMonitor) -> None:
        """Watch ``monitor``'s loop too."""
        with self._lock:
            self._monitors.append(monitor)

    def remove(self, monitor: LoopMonitor) -> int:
        """Stop watching ``monitor``'s loop; returns how many loops remain watched."""
        with self._lock:
            if monitor in self._monitors:
                self._monitors.remove(monitor)
            return len(self._monitors)

    def problems(self, now: float | None = None) -> list[str]:
        """Why the watched loops are unhealthy (empty when all are healthy)."""
        with self._lock:
            monitors = list(self._monitors)
        now = time.monotonic() if now is None else now
        return [p for p in (m.problem(now) for m in monitors) if p is not None]

    def run(self) -> None:
        """Feed systemd until :meth:`stop` (the body of the thread; call :meth:`start`)."""
        starving = False
        while True:
            problems = self.problems()
            if problems:
                if not starving:
                    logger.error(
                        "not feeding the systemd watchdog (systemd restarts the service after %g s): %s",
                        self.timeout_s,
                        "; ".join(problems),
                    )
                starving = True
            else:
                if starving:
                    logger.warning("serve loops healthy again: feeding the systemd watchdog")
                starving = False
                if self._notify("WATCHDOG=1"):
                    self.fed += 1
            if self._stop_event.wait(self.period_s):
                return

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (no more ``WATCHDOG=1``) and wait up to ``timeout`` seconds for it."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)


# -- the process-wide watchdog -------------------------------------------------------------------
_shared_lock = threading.Lock()
_shared: Watchdog | None = None


def watch_loop(
    label: str, timeouts: Mapping[str, int | None] | None = None, **budgets: float
) -> LoopMonitor | None:
    """Watch a serve loop with the process's watchdog, starting it if needed.

    Does nothing (returns None) unless systemd asked for a watchdog: ``NOTIFY_SOCKET`` set and
    :func:`watchdog_interval` not None.

    Parameters
    ----------
    label : str
        Names the loop in log messages.
    timeouts : mapping of str to int or None, optional
        The loop's methods and their advertised timeouts in ms (see :class:`LoopMonitor`).
    **budgets : float
        ``default_budget_s``, ``max_budget_s``, ``idle_bound_s`` for :class:`LoopMonitor`.

    Returns
    -------
    LoopMonitor or None
        The loop's monitor: call its ``beat()`` on every iteration and ``enter(request)`` before
        every handler, and give it to :func:`unwatch_loop` when the loop ends.
    """
    global _shared
    if not os.environ.get("NOTIFY_SOCKET"):
        return None
    interval = watchdog_interval()
    if interval is None:
        return None
    monitor = LoopMonitor(label, timeouts, **budgets)
    with _shared_lock:
        if _shared is None or not _shared.is_alive():
            _shared = Watchdog(interval)
            _shared.add(monitor)
            _shared.start()
            logger.info("feeding the systemd watchdog every %g s while %s is healthy", interval / 2, label)
        else:
            _shared.add(monitor)
    return monitor


def unwatch_loop(monitor: LoopMonitor | None) -> None:
    """Stop watching a loop; the watchdog thread ends with the last watched loop. None is ignored."""
    global _shared
    if monitor is None:
        return
    with _shared_lock:
        watchdog = _shared
        if watchdog is None or watchdog.remove(monitor):
            return
        _shared = None
    watchdog.stop()
