"""Serving the web app with uvicorn on a thread of its own, and the demo's hook.

:class:`WebServer` binds its socket before anything else (port 0: the system picks one, readable
at once from :attr:`WebServer.port`), runs uvicorn on a thread with its own event loop, and stops
it: event streams and preview relays are ended first, so open pages do not hold the shutdown up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from plantimager.rig import Rig

from .app import create_app
from .context import WebContext
from .exposure import check_exposure

__all__ = ["DEFAULT_PORT", "WebServer", "start_web"]

logger = logging.getLogger(__name__)

#: Port of ``plantimager web`` and of the demo's page.
DEFAULT_PORT = 8000


class WebServer:
    """The web app served on ``host:port`` by uvicorn, on a thread of its own.

    Parameters
    ----------
    app : Starlette
        The app (see :func:`~plantimager.web.app.create_app`).
    host : str
        Address to listen on (127.0.0.1: this machine only).
    port : int
        TCP port; 0 lets the system pick a free one.
    insecure : bool
        Serve an app without accounts on an address other than loopback (logged as a warning).

    Raises
    ------
    OSError
        If the address cannot be bound (from the constructor: the port is known at once).
    ValidationError
        If the app has no accounts, ``host`` is not a loopback address and ``insecure`` is false.
    """

    def __init__(
        self, app: Starlette, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, insecure: bool = False
    ) -> None:
        check_exposure(host, authenticated=getattr(app.state, "auth", None) is not None, insecure=insecure)
        self.app = app
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
        except BaseException:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level=logging.WARNING,
            access_log=False,
            lifespan="on",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="web-server", daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Where the page is, e.g. ``http://127.0.0.1:8000``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def web(self) -> WebContext:
        """The app's shared parts (controller, event hub, previews...)."""
        return self.app.state.web

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # SystemExit when the app's startup failed
            self._error = exc
            logger.error("the web server stopped: %r", exc)

    def start(self, timeout: float = 15.0) -> WebServer:
        """Start serving; return once the app has started.

        Raises
        ------
        RuntimeError
            If the app does not start within ``timeout`` seconds.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.02)  # bounded wait for uvicorn's startup
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"the web server did not start: {self._error!r}")
        logger.info("web page at %s", self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End open streams, stop the server and join its thread. Safe to call twice."""
        loop = self.web.loop
        if self._thread.is_alive() and loop is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self.web.close(), loop).result(min(timeout, 5.0))
            except Exception as exc:  # the server is going anyway
                logger.debug("closing the streams: %r", exc)
        self._server.should_exit = True
        if self._thread.ident is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the web server did not stop within %g s", timeout)
        self._sock.close()

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_web(
    rig: Rig,
    captures: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    say: Callable[[str], Any] = print,
) -> Callable[[], None]:
    """Serve the web page of a running rig (the hook ``plantimager demo`` calls); return its stop.

    Parameters
    ----------
    rig : Rig
        A started rig without a dataset.
    captures : path
        Where sessions go.
    host, port : str, int
        Where the page is served.
    say : callable
        Where the page's address is written.
    """
    server = WebServer(create_app(rig, captures=Path(captures)), host, port).start()
    say(f"web page: {server.url}/")
    return server.stop
