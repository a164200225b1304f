"""The web app: a Starlette application over a :class:`~plantimager.rig.Rig`.

:func:`create_app` assembles it: the pages and their static files, the relayed previews, the
dataset's images and the JSON/SSE API, plus the background parts (event hub, preview hub, download
job) that start and stop with the app's lifespan. It never talks to ZeroMQ: everything goes through
the rig's API, blocking calls on the thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from plantimager.rig import Rig
from plantimager.rig.session import DEFAULT_CAPTURES

from .context import WebContext
from .controller import WebController
from .errors import error_handlers
from .events import EventHub
from .files import Thumbnails
from .gate import AuthGate, WebAuth, page_context, session_cookie
from .jobs import DownloadJob
from .relay import PreviewHub
from .routes import api, login, media, pages, scan
from .scanjob import ScanJob

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_HERE = Path(__file__).parent


def create_app(
    rig: Rig,
    *,
    captures: str | os.PathLike[str] = DEFAULT_CAPTURES,
    dataset: str | os.PathLike[str] | None = None,
    refresh: float = 2.0,
    auth: WebAuth | None = None,
) -> Starlette:
    """Build the web app of a rig.

    Parameters
    ----------
    rig : Rig
        A started rig, created without a dataset: the app chooses it (``dataset``, else the
        current session under ``captures``, else a new session there) at the first capture.
    captures : path
        Folder holding one folder per session.
    dataset : path, optional
        The dataset folder to capture into instead of the current session.
    refresh : float
        Seconds between two comparisons of the live rig when no rig event arrived.
    auth : WebAuth, optional
        Accounts and sessions: every route but ``/login`` and ``/static/`` then needs a login,
        actions need the session's CSRF token and the operator role (see :mod:`.gate`). None: the
        page is open to whoever reaches it.

    Returns
    -------
    starlette.applications.Starlette
        The app; ``app.state.web`` is its :class:`~plantimager.web.context.WebContext`.
    """
    controller = WebController(rig, captures=captures, dataset=dataset)
    holder: dict[str, WebContext] = {}
    events = EventHub(
        controller, on_snapshot=lambda snapshot: holder["web"].follow(snapshot), refresh=refresh
    )
    # A secured rig's nodes keep their MJPEG on loopback: previews come over the encrypted RPC instead.
    previews = PreviewHub(
        lambda key: holder["web"].stream_urls.get(key),
        fetch=rig.preview_frame if rig.keys is not None else None,
    )
    web = WebContext(
        controller=controller,
        events=events,
        previews=previews,
        download=DownloadJob(controller, events),
        thumbnails=Thumbnails(),
        scan=ScanJob(controller, events),
    )
    holder["web"] = web

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        web.loop = asyncio.get_running_loop()
        await events.start()
        try:
            yield
        finally:
            await web.close()
            await web.download.wait(5.0)
            if web.scan.running:
                web.scan.stop()  # after the position under way; the rest stays to be done
            await web.scan.wait(5.0)

    middleware = []
    if auth is not None:
        middleware = [
            Middleware(SessionMiddleware, secret_key=auth.secret, **session_cookie(auth)),
            Middleware(AuthGate, auth=auth),
        ]
    app = Starlette(
        routes=[
            *(login.routes if auth is not None else ()),
            *pages.routes,
            *media.routes,
            *api.routes,
            *scan.routes,
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ],
        middleware=middleware,
        exception_handlers=error_handlers,
        lifespan=lifespan,
    )
    app.state.web = web
    app.state.auth = auth
    app.state.templates = Jinja2Templates(directory=_HERE / "templates", context_processors=[page_context])
    return app
