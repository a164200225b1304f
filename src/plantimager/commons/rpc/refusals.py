"""How refused connections are reported: one log line each (peer address, key id, reason), not a flood.

:class:`RefusalLog` rate-limits the lines: past :data:`BURST` refusals in :data:`WINDOW_S` seconds it
only counts them, and says how many it did not show once the window is over. :class:`HandshakeEvents`
turns a secured socket's monitor events into refusals: libzmq reports a failed handshake (a plaintext
client, a broken or forged CURVE handshake) and, right after it, the disconnection of that connection,
whose descriptor gives the peer's address. Some malformed input (garbage framing, a command claiming to
be enormous) makes libzmq drop the connection with no failure event: a connection that ends before any
handshake succeeded on the socket since it was accepted is reported as refused too. (One that ends while
another client's handshake succeeded meanwhile is not: it might have been that client.)
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import zmq

__all__ = ["BURST", "WINDOW_S", "HandshakeEvents", "RefusalLog", "peer_of_fd"]

logger = logging.getLogger(__name__)

#: Refusals logged one by one in a window; more are only counted.
BURST = 20
#: Length of a window, in seconds.
WINDOW_S = 10.0

_REASONS = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "security mechanism mismatch (a plaintext client?)",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "CURVE handshake failed its check (wrong server key?)",
    zmq.PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE: "CURVE key exchange failed",
}


def peer_of_fd(fd: int) -> str:
    """``host:port`` of the peer of the TCP socket ``fd``, or ``?`` when it is gone already."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return "?"
    try:
        peer = sock.getpeername()
    except OSError:
        return "?"
    finally:
        sock.detach()  # the descriptor belongs to libzmq: never close it here
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer) or "?"


class RefusalLog:
    """Logs refused connections and requests as warnings, at most :data:`BURST` per window. Thread-safe."""

    def __init__(self, burst: int = BURST, window: float = WINDOW_S) -> None:
        self.burst = burst
        self.window = window
        self.total = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._window_start = time.monotonic()
        self._shown = 0
        self._hidden = 0

    def refused(self, text: str) -> None:
        """Report one refusal, described by ``text`` (peer, key id, what and why; never a secret)."""
        with self._lock:
            self.total += 1
            self._changed.notify_all()
            self._roll(time.monotonic())
            if self._shown < self.burst:
                self._shown += 1
                logger.warning("refused %s", text)
            else:
                self._hidden += 1

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until at least ``count`` refusals were reported; False after ``timeout`` seconds."""
        with self._lock:
            return self._changed.wait_for(lambda: self.total >= count, timeout)

    def flush(self) -> None:
        """Say how many refusals were not shown, once their window is over."""
        with self._lock:
            self._roll(time.monotonic())

    def _roll(self, now: float) -> None:
        if now - self._window_start < self.window:
            return
        if self._hidden:
            logger.warning(
                "refused %d more connection(s) or request(s) in %.0f s, not logged one by one",
                self._hidden,
                self.window,
            )
        self._window_start, self._shown, self._hidden = now, 0, 0


class HandshakeEvents:
    """Reads the monitor events of one secured socket and reports its failed handshakes.

    Parameters
    ----------
    label : str
        What the socket is, for the log (``camera node on tcp://...``).
    log : RefusalLog
        Where refusals go.
    """

    def __init__(self, label: str, log: RefusalLog) -> None:
        self.label = label
        self.log = log
        self._peers: dict[int, tuple[str, int]] = {}  # fd -> (peer, successes counted when accepted)
        self._failure: str | None = None
        self._successes = 0
        self._denied = 0  # connections the ZAP handler refused (and logged) that have not ended yet

    def handle(self, event: int, value: int) -> None:
        """Take one monitor event (its number and value)."""
        if event == zmq.EVENT_ACCEPTED:
            self._peers[value] = (peer_of_fd(value), self._successes)
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self._failure = _REASONS.get(value, f"protocol error {_error_name(value)}")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._failure = f"handshake not completed ({_errno_text(value)})"
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self._failure = None  # the ZAP handler logged it, with the key
            self._denied += 1
        elif event == zmq.EVENT_DISCONNECTED:
            peer, successes = self._peers.pop(value, ("?", -1))
            if self._failure is not None:
                self.log.refused(f"a connection from {peer} to the {self.label}: {self._failure}")
            elif self._denied:
                self._denied -= 1
            elif successes == self._successes:
                reason = "closed before completing a handshake (malformed, or not ZMTP)"
                self.log.refused(f"a connection from {peer} to the {self.label}: {reason}")
            self._failure = None
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._failure = None
            self._successes += 1


#: libzmq's handshake error codes, by value (looked up for every failed handshake a peer causes).
_ERROR_NAMES = {
    getattr(zmq, name): name.removeprefix("PROTOCOL_ERROR_").lower()
    for name in dir(zmq)
    if name.startswith("PROTOCOL_ERROR_")
}


def _error_name(value: int) -> str:
    return _ERROR_NAMES.get(value, hex(value))


def _errno_text(value: int) -> str:
    if not value:
        return "connection closed"
    try:
        return zmq.strerror(value)
    except Exception:  # pragma: no cover - an errno libzmq does not know
        return f"errno {value}"
