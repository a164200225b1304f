"""MJPEG on the wire: reading a node's preview stream, and the frames the web server sends on.

A node serves each camera's previews as ``multipart/x-mixed-replace`` over HTTP/1.0;
:func:`open_mjpeg` connects and checks the response head, :class:`MultipartParser` cuts the body into
JPEG frames. :func:`mjpeg_part` and :func:`pack_frame` build what viewers of the relay receive.
"""

from __future__ import annotations

import asyncio
import re
import struct
from urllib.parse import urlsplit

__all__ = [
    "BOUNDARY",
    "MAX_FRAME",
    "MAX_HEAD",
    "MultipartParser",
    "RelayError",
    "mjpeg_part",
    "open_mjpeg",
    "pack_frame",
    "split_url",
]

#: Largest frame accepted from a node, bytes.
MAX_FRAME = 8 * 1024 * 1024
#: Largest response head accepted from a node, bytes.
MAX_HEAD = 16 * 1024
#: Boundary of the MJPEG streams this server sends.
BOUNDARY = "plantimagerframe"
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d{1,10})\s*$")


class RelayError(Exception):
    """A node's preview stream could not be opened or read (the text says why)."""


# -- parsing a node's stream ---------------------------------------------------------------------------
class MultipartParser:
    """Cut a ``multipart/x-mixed-replace`` body into its parts, fed chunk by chunk.

    Parameters
    ----------
    boundary : bytes
        The boundary from the response's ``Content-Type`` (without the leading ``--``).
    max_part : int
        Largest part accepted, bytes.

    Raises
    ------
    RelayError
        From :meth:`feed`, when a part is larger than ``max_part`` or the stream is not multipart.
    """

    def __init__(self, boundary: bytes, max_part: int = MAX_FRAME) -> None:
        if not boundary:
            raise RelayError("the stream has an empty multipart boundary")
        self._delimiter = b"--" + boundary
        self._max = max_part
        self._buffer = bytearray()
        self._state = "seek"  # seek -> head -> body -> seek ...
        self._length: int | None = None
        self.ended = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes of the body; return the parts completed by them, in order."""
        self._buffer += data
        parts: list[bytes] = []
        while not self.ended:
            part = self._step()
            if part is None:
                break
            if part:
                parts.append(part)
        if len(self._buffer) > self._max + MAX_HEAD:
            raise RelayError(f"a preview frame is larger than {self._max} bytes")
        return parts

    def _step(self) -> bytes | None:
        """Advance by one state; b"" for progress without a part, None when more bytes are needed."""
        buf = self._buffer
        if self._state == "seek":
            at = buf.find(self._delimiter)
            if at < 0:
                keep = len(self._delimiter)  # a delimiter may be cut across two chunks
                if len(buf) > keep:
                    del buf[: len(buf) - keep]
                return None
            end = at + len(self._delimiter)
            if len(buf) < end + 2:
                return None
            if buf[end : end + 2] == b"--":
                self.ended = True
                return None
            line_end = buf.find(b"\r\n", end)
            if line_end < 0:
                return None if len(buf) - end < MAX_HEAD else self._bad("no line end after the boundary")
            del buf[: line_end + 2]
            self._state = "head"
            return b""
        if self._state == "head":
            if buf.startswith(b"\r\n"):
                head, skip = b"", 2
            else:
                at = buf.find(b"\r\n\r\n")
                if at < 0:
                    return None if len(buf) < MAX_HEAD else self._bad("part headers too long")
                head, skip = bytes(buf[:at]), at + 4
            del buf[:skip]
            match = _CONTENT_LENGTH.search(head)
            self._length = int(match.group(1)) if match else None
            if self._length is not None and self._length > self._max:
                raise RelayError(f"a preview frame is larger than {self._max} bytes")
            self._state = "body"
            return b""
        # body
        if self._length is not None:
            if len(buf) < self._length:
                return None
            part = bytes(buf[: self._length])
            del buf[: self._length]
        else:
            at = buf.find(b"\r\n" + self._delimiter)
            if at < 0:
                if len(buf) > self._max + len(self._delimiter) + 2:
                    raise RelayError(f"a preview frame is larger than {self._max} bytes")
                return None
            part = bytes(buf[:at])
            del buf[:at]
        self._state = "seek"
        return part or b""

    @staticmethod
    def _bad(why: str) -> bytes:
        raise RelayError(f"not an MJPEG stream: {why}")


def split_url(url: str) -> tuple[str, int, str]:
    """Return (host, port, path) of an ``http://`` preview URL; RelayError if it is not one."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise RelayError(f"preview URL {url!r} is not an http:// URL")
    try:
        port = parts.port or 80
    except ValueError:
        raise RelayError(f"preview URL {url!r} has a bad port") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, path


async def open_mjpeg(
    url: str, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, MultipartParser]:
    """Connect to a node's MJPEG stream and read the response head.

    Returns
    -------
    tuple
        The reader and writer of the connection, and a parser for the body.

    Raises
    ------
    RelayError
        If the node cannot be reached within ``timeout`` seconds or does not answer with MJPEG.
    """
    host, port, path = split_url(url)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        raise RelayError(f"cannot connect to {host}:{port}: {exc or type(exc).__name__}") from None
    try:
        target = f"[{host}]" if ":" in host else host
        request = (
            f"GET {path} HTTP/1.0\r\nHost: {target}:{port}\r\nAccept: multipart/x-mixed-replace\r\n"
            "User-Agent: plantimager-web\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        await writer.drain()
        try:
            async with asyncio.timeout(timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise RelayError(f"{url} sent no proper HTTP response head ({type(exc).__name__})") from None
        except TimeoutError:
            raise RelayError(f"{url} did not answer within {timeout:g} s") from None
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "200":
            raise RelayError(f"{url} answered {lines[0]!r}")
        headers = {
            name.strip().lower(): value.strip()
            for name, sep, value in (line.partition(":") for line in lines[1:])
            if sep
        }
        ctype = headers.get("content-type", "")
        match = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.lower().startswith("multipart/x-mixed-replace") or match is None:
            raise RelayError(f"{url} is not an MJPEG stream (Content-Type {ctype!r})")
        return reader, writer, MultipartParser(match.group(1).encode("latin-1"))
    except BaseException:
        writer.close()
        raise


# -- sending --------------------------------------------------------------------------------------------
def mjpeg_part(frame: bytes) -> bytes:
    """One part of the MJPEG streams this server sends (boundary :data:`BOUNDARY`)."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n"
    return head.encode("ascii") + frame + b"\r\n"


def pack_frame(camera: str, frame: bytes) -> bytes:
    """One frame of ``/api/previews.bin``: u16 name length, u32 frame length (big-endian), name, JPEG."""
    name = camera.encode("utf-8")
    return struct.pack(">HI", len(name), len(frame)) + name + frame
