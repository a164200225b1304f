"""Slowing down password guessing: a few failed logins lock that account for that client a while.

Keys are ``(client host, account name)``: someone guessing from one machine is held up, while the
account's owner logging in from another machine is not locked out by them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

__all__ = ["LoginThrottle"]


class LoginThrottle:
    """Counts failed logins per key and refuses a key for a while after too many.

    Parameters
    ----------
    limit : int
        Failed logins within ``window`` seconds after which the key is locked.
    window : float
        Seconds over which failures are counted.
    lockout : float
        Seconds a locked key stays locked (from its last failure).
    keys : int
        Most keys remembered (the oldest are forgotten first), so guessing cannot fill the memory.
    """

    def __init__(
        self, limit: int = 5, window: float = 300.0, lockout: float = 30.0, keys: int = 10_000
    ) -> None:
        self.limit = limit
        self.window = window
        self.lockout = lockout
        self._keys = keys
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def locked_for(self, key: tuple[str, str], now: float) -> float:
        """Seconds ``key`` must still wait before trying again (0: it may try now)."""
        with self._lock:
            times = self._failures.get(key)
            if not times:
                return 0.0
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) < self.limit:
                return 0.0
            return max(0.0, times[-1] + self.lockout - now)

    def failed(self, key: tuple[str, str], now: float) -> None:
        """Count a failed login of ``key``."""
        with self._lock:
            times = self._failures.pop(key, None) or deque(maxlen=self.limit)
            times.append(now)
            self._failures[key] = times
            while len(self._failures) > self._keys:
                self._failures.popitem(last=False)

    def succeeded(self, key: tuple[str, str]) -> None:
        """Forget the failures of ``key`` (it logged in)."""
        with self._lock:
            self._failures.pop(key, None)
