"""Helpers for testing camera implementations: serving, client proxies and a checked ZeroMQ context.

Everything here is plain Python (context managers and classes), usable with or without pytest;
:mod:`plantimager.testing.plugin` wraps some of it as pytest fixtures.

* :func:`serve_in_thread` runs an :class:`~plantimager.commons.RPC.RPCServer` in a thread until the
  ``with`` block ends, then stops it and joins the thread (an error if it does not stop in time).
* :func:`served_client` does that and also hands out a client proxy to the server.
* :class:`NodeClient` is the client proxy of a camera node (``CameraNode`` and ``Camera`` members);
  :func:`client_class` makes one for any other set of interfaces.
* :func:`checked_context` is a ZeroMQ context that fails if a socket is left open.

Servers under test listen on the loopback interface with a port the system picks
(:data:`LOOPBACK_URL`); nothing here waits on a timer to synchronise: a server is known to be
serving when it has answered a request.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Iterator
from typing import Any

import zmq

from plantimager.commons.cameradevice import Camera, CameraNode
from plantimager.commons.RPC import RPCClient, RPCServer

__all__ = [
    "LOOPBACK",
    "LOOPBACK_URL",
    "NodeClient",
    "NodeInterface",
    "ServedServer",
    "checked_context",
    "client_class",
    "open_client",
    "serve_in_thread",
    "served_client",
]

#: The only host the kit talks to.
LOOPBACK = "127.0.0.1"
#: Where a server under test should listen: loopback, on a port the system picks.
LOOPBACK_URL = f"tcp://{LOOPBACK}:0"
#: Default wait, in seconds, for a server thread to stop or a context to terminate.
STOP_TIMEOUT = 10.0
#: Default wait, in milliseconds, for a new client to get the server's inventory.
CONNECT_TIMEOUT_MS = 5000


class NodeInterface(CameraNode, Camera):
    """The members of a camera node: the ``CameraNode`` operations plus the upstream ``Camera``."""


@RPCClient.register_interface(NodeInterface)
class NodeClient(NodeInterface, RPCClient):
    """Client proxy of a camera node server (``CameraNode`` and ``Camera`` members).

    A member the server does not serve raises
    :class:`~plantimager.commons.errors.InterfaceError` when called, so the proxy also fits
    servers that implement only ``CameraNode``.
    """


_CLIENT_CLASSES: dict[tuple[type, ...], type[RPCClient]] = {(CameraNode, Camera): NodeClient}
_CLIENT_LOCK = threading.Lock()


def client_class(*interfaces: type) -> type[RPCClient]:
    """Return a client proxy class for a server implementing ``interfaces``.

    The classes are cached: the same interfaces give the same class.

    Parameters
    ----------
    *interfaces : type
        One or more interface classes (abstract classes with methods, ``RPCProperty`` and
        ``RPCSignal`` members).

    Returns
    -------
    type
        A subclass of the interfaces and :class:`~plantimager.commons.RPC.RPCClient`, constructed
        as ``cls(context, url, timeout=...)``.

    Raises
    ------
    ValueError
        If no interface is given.
    """
    if not interfaces:
        raise ValueError("client_class() needs at least one interface")
    key = tuple(interfaces)
    with _CLIENT_LOCK:
        cached = _CLIENT_CLASSES.get(key)
        if cached is not None:
            return cached
        if len(key) == 1:
            interface = key[0]
        else:
            interface = types.new_class("And".join(i.__name__ for i in key), key)
            interface.__module__ = __name__
        klass = types.new_class(f"{interface.__name__}Client", (interface, RPCClient))
        klass.__module__ = __name__
        klass.__doc__ = f"Client proxy of a server implementing {', '.join(i.__name__ for i in key)}."
        registered = RPCClient.register_interface(interface)(klass)
        _CLIENT_CLASSES[key] = registered
        return registered


class ServedServer:
    """A server running ``serve_forever`` in a thread, as handed out by :func:`serve_in_thread`.

    Attributes
    ----------
    server : RPCServer
        The server being served.
    url : str
        ``tcp://127.0.0.1:<port>``: where clients connect.
    thread : threading.Thread
        The thread running ``serve_forever``.
    error : BaseException or None
        What ``serve_forever`` raised, if it failed.
    """

    def __init__(self, server: RPCServer) -> None:
        self.server = server
        self.url = f"tcp://{LOOPBACK}:{server.port}"
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"serve-{type(server).__name__}-{server.port}", daemon=True
        )

    def _run(self) -> None:
        try:
            self.server.serve_forever()
        except BaseException as exc:  # reported by the owner of the thread
            self.error = exc

    @property
    def serving(self) -> bool:
        """True while the serving thread runs."""
        return self.thread.is_alive()

    def wait_stopped(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Wait until ``serve_forever`` has returned (at most ``timeout`` seconds).

        Returns
        -------
        bool
            True if the serving thread has ended.
        """
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop the server (harmless if it already stopped) and join its thread.

        Returns
        -------
        bool
            True if the serving thread has ended.
        """
        self.server.stop_server(timeout=timeout)
        return self.wait_stopped(timeout)


def _wait_until_serving(served: ServedServer, timeout_ms: int) -> None:
    """Return once the server has answered an inventory request (its loop is running)."""
    try:
        probe = RPCClient(served.server.context, served.url, timeout=timeout_ms)
    except Exception as exc:
        cause = served.error or exc
        raise RuntimeError(
            f"{type(served.server).__name__} on {served.url} did not start serving: {cause}"
        ) from cause
    probe.close()


@contextlib.contextmanager
def serve_in_thread(
    server: RPCServer, *, stop_timeout: float = STOP_TIMEOUT, start_timeout_ms: int = CONNECT_TIMEOUT_MS
) -> Iterator[ServedServer]:
    """Serve ``server`` in a thread for the duration of a ``with`` block.

    On entry the block waits until the server has answered one request, so it is serving. On exit
    (also on error) the server is stopped and its thread joined.

    Parameters
    ----------
    server : RPCServer
        A server constructed but not serving yet, listening on the loopback interface (for
        example on :data:`LOOPBACK_URL`).
    stop_timeout : float
        Seconds to wait for the serving thread to end on exit.
    start_timeout_ms : int
        Milliseconds to wait for the server to answer its first request.

    Yields
    ------
    ServedServer
        The running server, its URL and thread.

    Raises
    ------
    RuntimeError
        If the server does not start serving, does not stop within ``stop_timeout``, or if
        ``serve_forever`` raised.
    """
    served = ServedServer(server)
    served.thread.start()
    try:
        _wait_until_serving(served, start_timeout_ms)
        yield served
    finally:
        stopped = served.stop(stop_timeout)
    if not stopped:
        raise RuntimeError(f"{type(server).__name__} on {served.url} did not stop within {stop_timeout} s")
    if served.error is not None:
        raise RuntimeError(f"serve_forever of {type(server).__name__} failed: {served.error}") from (
            served.error
        )


@contextlib.contextmanager
def open_client(
    context: zmq.Context,
    url: str,
    client_cls: type[RPCClient] = NodeClient,
    *,
    timeout_ms: int = CONNECT_TIMEOUT_MS,
) -> Iterator[Any]:
    """Connect a client proxy for the duration of a ``with`` block, then close it.

    Parameters
    ----------
    context : zmq.Context
        Context for the client's sockets.
    url : str
        ``tcp://<host>:<port>`` of the server.
    client_cls : type
        The proxy class (:class:`NodeClient` by default, see :func:`client_class`).
    timeout_ms : int
        Milliseconds to wait for the server's inventory.

    Yields
    ------
    RPCClient
        The connected proxy.
    """
    client = client_cls(context, url, timeout=timeout_ms)
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def served_client(
    server: RPCServer,
    client_cls: type[RPCClient] = NodeClient,
    *,
    stop_timeout: float = STOP_TIMEOUT,
    timeout_ms: int = CONNECT_TIMEOUT_MS,
) -> Iterator[tuple[Any, ServedServer]]:
    """Serve ``server`` in a thread and connect a client proxy to it, for a ``with`` block.

    On exit the client is closed, then the server stopped and its thread joined.

    Parameters
    ----------
    server : RPCServer
        A server constructed but not serving yet, listening on the loopback interface.
    client_cls : type
        The proxy class (:class:`NodeClient` by default, see :func:`client_class`).
    stop_timeout : float
        Seconds to wait for the serving thread to end.
    timeout_ms : int
        Milliseconds to wait for the server to answer the client's first request.

    Yields
    ------
    tuple of (RPCClient, ServedServer)
        The proxy and the running server.
    """
    with (
        serve_in_thread(server, stop_timeout=stop_timeout, start_timeout_ms=timeout_ms) as served,
        open_client(server.context, served.url, client_cls, timeout_ms=timeout_ms) as client,
    ):
        yield client, served


def _open_sockets(context: zmq.Context) -> list[str]:
    """Describe the sockets of ``context`` still open (best effort: pyzmq keeps a weak set)."""
    found = []
    for sock in list(getattr(context, "_sockets", ()) or ()):
        with contextlib.suppress(Exception):
            if not sock.closed:
                endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
                found.append(f"{zmq.SocketType(sock.type).name} {endpoint}".strip())
    return found


@contextlib.contextmanager
def checked_context(*, term_timeout: float = STOP_TIMEOUT) -> Iterator[zmq.Context]:
    """A fresh ZeroMQ context that must be terminable when the ``with`` block ends.

    ``Context.term()`` blocks while any socket of the context is open, so a block that leaks a
    socket (a server never stopped, a client never closed) is reported instead of hanging.

    Parameters
    ----------
    term_timeout : float
        Seconds to wait for ``term()`` on exit.

    Yields
    ------
    zmq.Context
        The context.

    Raises
    ------
    AssertionError
        On exit, if the context could not be terminated in time; the message lists the sockets
        left open. (The terminating thread is then left waiting for those sockets to close.)
    """
    context = zmq.Context()
    try:
        yield context
    finally:
        leaked = _open_sockets(context)
        done = threading.Event()

        def terminate() -> None:
            context.term()
            done.set()

        terminator = threading.Thread(target=terminate, name="zmq-context-term", daemon=True)
        terminator.start()
        terminated = done.wait(term_timeout)
        if terminated:
            terminator.join(term_timeout)
    if not terminated:
        detail = "; ".join(leaked) if leaked else "unknown sockets"
        raise AssertionError(
            f"the ZeroMQ context could not terminate within {term_timeout} s: "
            f"{len(leaked) or 'some'} socket(s) left open ({detail})"
        )
