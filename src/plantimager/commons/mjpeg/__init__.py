"""MJPEG live preview over plain HTTP (standard library only).

Streams JPEG frames as ``multipart/x-mixed-replace``, which a browser ``<img>`` plays as video:
``GET /stream/<name>.mjpg`` streams, ``GET /snapshot/<name>.jpg`` returns one fresh frame and
``GET /`` lists the sources as JSON. Unknown or malformed names get ``404``, other methods ``405``.

Each source is a ``grab()`` callable returning one JPEG frame. Its single producer thread calls it
only while somebody watches, at most ``fps`` times per second, and parks within one frame interval
after the last viewer leaves. The producer publishes the latest frame under a condition variable and
every viewer sends the newest one when it is ready, so all viewers share frames and a slow viewer
skips frames instead of queueing them.
"""

from .server import MJPEGServer

__all__ = ["MJPEGServer"]
