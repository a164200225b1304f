"""The live previews of a camera node: MJPEG over HTTP, and the newest frame over RPC.

A plaintext node serves each camera's preview as MJPEG on its preview port, where a browser ``<img>``
or the controller reads it. A secured node (one with keys) serves MJPEG on loopback only, for this
host's own use; the controller fetches frames over the authenticated, encrypted RPC connection with
:meth:`PreviewMembers.preview_frame` instead, and relays them to its web page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from plantimager.commons.errors import ValidationError
from plantimager.commons.mjpeg import MJPEGServer
from plantimager.commons.RPC import RPCServer
from plantimager.commons.rpc.address import advertised_host, parse_url
from plantimager.commons.security import is_loopback

from .slot import CameraSlot, preview_jpeg

__all__ = ["PREVIEW_FPS", "PREVIEW_LEASE_S", "PreviewMembers", "start_previews"]

#: Highest preview frame rate per camera.
PREVIEW_FPS = 15.0
#: Seconds a camera keeps producing preview frames after a ``preview_frame`` call.
PREVIEW_LEASE_S = 2.0


def start_previews(
    slots: list[CameraSlot], url: str, host: str | None, port: int, *, secured: bool
) -> MJPEGServer:
    """Start the MJPEG server of a node listening on ``url``: one source per camera.

    Parameters
    ----------
    slots : list of CameraSlot
        The node's cameras.
    url : str
        The node's RPC address; the previews listen on its host unless ``host`` says otherwise
        (``0.0.0.0`` for a wildcard).
    host : str, optional
        Interface of the preview server.
    port : int
        Its port (0: picked by the system).
    secured : bool
        The node has keys: previews listen on 127.0.0.1 only (the controller gets frames over RPC).

    Raises
    ------
    ValidationError
        If a secured node is asked to serve previews beyond loopback.
    """
    endpoint = parse_url(url)
    if secured:
        if host is not None and not is_loopback(host):
            raise ValidationError(
                f"a node with keys serves its MJPEG previews on loopback only, not on {host}: "
                "the controller relays them over the encrypted RPC connection"
            )
        host, advertise = host or "127.0.0.1", None
    else:
        wildcard = endpoint.is_wildcard
        advertise = advertised_host(endpoint.host) if host is None and wildcard else None
        host = host or ("0.0.0.0" if wildcard else endpoint.host)
    server = MJPEGServer(host, port, advertise_host=advertise)
    for slot in slots:
        server.add_source(slot.name, functools.partial(preview_jpeg, slot), fps=PREVIEW_FPS)
    server.start()
    return server


class PreviewMembers:
    """The preview members of a camera node (a mixin: the node provides ``slots``, ``slot_at`` and
    ``_streams``)."""

    slots: list[CameraSlot]
    _streams: MJPEGServer | None
    slot_at: Callable[[int], CameraSlot]

    @RPCServer.register_method_json(role="viewer")
    def stream_urls(self) -> list[str]:
        """The MJPEG preview URL of each camera, in camera order (empty when previews are off)."""
        if self._streams is None:
            return []
        return [self._streams.url_for(slot.name) for slot in self.slots]

    @RPCServer.register_method_buffer(timeout=5000, role="viewer")
    def preview_frame(self, camera: int = 0, after: int = 0) -> tuple[memoryview, dict]:
        """The newest preview frame of a camera, as JPEG, for a controller relaying previews over RPC.

        Each call keeps the camera's preview running for a few seconds more; poll it at the frame
        rate wanted (the node produces at most 15 frames per second).

        Parameters
        ----------
        camera : int
            The camera's index.
        after : int
            The number of the frame the caller has already: the reply carries no image until a newer
            one exists.

        Returns
        -------
        tuple of (memoryview, dict)
            The JPEG (empty when there is no newer frame yet) and ``{"seq", "camera"}``: the frame's
            number and the camera's name.

        Raises
        ------
        ValidationError
            If the camera index is out of range or the node runs without previews.
        """
        slot = self.slot_at(camera)
        if self._streams is None:
            raise ValidationError("this node runs without previews (no stream port)")
        seq, frame = self._streams.latest_frame(slot.name, PREVIEW_LEASE_S)
        data = frame if frame is not None and seq != after else b""
        return memoryview(data), {"seq": seq, "camera": slot.name}
