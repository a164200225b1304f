"""A small TCP proxy on 127.0.0.1 that records every byte it forwards, both ways."""

from __future__ import annotations

import contextlib
import socket
import threading


class RecordingProxy:
    """Forwards connections made to :attr:`port` to ``target_port`` and keeps every byte in :attr:`seen`.

    Threads: one accepting, two per connection; :meth:`close` stops them all (bounded joins).
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._chunks: list[tuple[bool, bytes]] = []  # (from the client?, bytes)
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._accepter = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._accepter.start()

    @property
    def seen(self) -> bytes:
        """Every byte forwarded so far, in both directions."""
        with self._lock:
            return b"".join(data for _, data in self._chunks)

    @property
    def sent(self) -> bytes:
        """Every byte the clients sent, in order (one client: its whole stream)."""
        with self._lock:
            return b"".join(data for outbound, data in self._chunks if outbound)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                outbound = source is client
                thread = threading.Thread(target=self._pump, args=(source, sink, outbound), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, outbound: bool) -> None:
        source.settimeout(0.2)
        while not self._closing.is_set():
            try:
                data = source.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            with self._lock:
                self._chunks.append((outbound, data))
            try:
                sink.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop forwarding, close every socket and join every thread."""
        self._closing.set()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()
        self._listener.close()
