"""Notifications to systemd (``sd_notify`` protocol) when running as a ``Type=notify`` service.

Every function is a no-op when ``NOTIFY_SOCKET`` is not set, so code can call them freely.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

__all__ = ["notify", "notify_ready", "notify_stopping", "notify_watchdog", "under_systemd"]

logger = logging.getLogger(__name__)
_lock = threading.Lock()


def under_systemd() -> bool:
    """True when the process was started by systemd."""
    return "NOTIFY_SOCKET" in os.environ or "SYSTEMD_EXEC_PID" in os.environ


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to the socket named by ``NOTIFY_SOCKET``.

    Not for signal handlers: it takes a lock, so set a flag there and notify from normal code.

    Returns
    -------
    bool
        True if the datagram was sent, False when there is no socket or sending failed.
    """
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with _lock, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
        return True
    except OSError as exc:
        logger.debug("sd_notify(%s) failed: %s", state, exc)
        return False


def notify_ready() -> bool:
    """Tell systemd that start-up is finished."""
    return notify("READY=1")


def notify_stopping() -> bool:
    """Tell systemd that the service is stopping."""
    return notify("STOPPING=1")


def notify_watchdog() -> bool:
    """Feed the systemd watchdog."""
    return notify("WATCHDOG=1")
