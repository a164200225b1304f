"""The web page of a rig: live camera list, relayed previews, capture, download, settings, shutdown.

A Starlette app over the same :class:`~plantimager.rig.Rig` the ``plantimager rig`` command uses;
``plantimager web`` serves it. See ``docs/web.md``.
"""

from __future__ import annotations

from .app import create_app
from .server import DEFAULT_PORT, WebServer, start_web

__all__ = ["DEFAULT_PORT", "WebServer", "create_app", "start_web"]
