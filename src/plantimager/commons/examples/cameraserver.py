"""Example camera server: a ``DummyCamera`` serving images from a folder, no hardware needed.

The upstream plantimager project ships the same example; this one keeps its interface and fixes its
defects (PNG images with red and blue swapped, unchecked property values, a ``video_url`` set while
in ``STILL`` mode, a ``lores`` flag that did nothing).

Environment
-----------
``PI3_CAMERASERVER_IMAGE``
    Folder of images to serve, in name order, looping. Defaults to the synthetic plant views shipped
    with the package (:func:`~plantimager.commons.examples.scene.default_image_dir`).
``PI3_CAMERASERVER_LAG``
    Extra delay of every ``get_image`` call, in milliseconds (default 0), to mimic a slow camera.

Run it next to a registry, then drive it with any ``Camera`` client::

    plantimager registry --bind tcp://127.0.0.1:5555 &
    python -m plantimager.commons.examples.cameraserver --registry tcp://127.0.0.1:5555
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import simplejpeg
import zmq
from PIL import Image

from plantimager.commons.cameradevice import Camera, CameraMode, Encoding
from plantimager.commons.errors import ValidationError
from plantimager.commons.examples.scene import default_image_dir
from plantimager.commons.mjpeg import MJPEGServer
from plantimager.commons.RPC import RPCProperty, RPCServer
from plantimager.commons.rpc.address import advertised_host, parse_url

__all__ = [
    "IMAGE_ENV",
    "LAG_ENV",
    "PREVIEW_UNAVAILABLE",
    "DummyCamera",
    "image_provider",
    "main",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the folder of images to serve.
IMAGE_ENV = "PI3_CAMERASERVER_IMAGE"
#: Environment variable giving the extra delay of ``get_image``, in milliseconds.
LAG_ENV = "PI3_CAMERASERVER_LAG"
#: ``video_url`` in ``VIDEO`` mode when no preview server could be started.
PREVIEW_UNAVAILABLE = "unavailable:preview-server-not-running"

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
_LORES = (640, 480)
_JPEG_QUALITY = 95
_PREVIEW_QUALITY = 80
_PREVIEW_FPS = 10.0
_ROTATIONS = (0, 90, 180, 270)
_MAX_SIDE = 16384


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} (from {IMAGE_ENV}) is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise ValidationError(
            f"image folder {str(folder)!r} holds no image ({', '.join(sorted(_IMAGE_SUFFIXES))})"
        )
    return files


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        array = np.asarray(img)
        if array.ndim == 3 and array.shape[2] == 4:  # drop the alpha channel
            array = array[:, :, :3]
        elif array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            array = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(array, dtype=np.uint8)


def image_provider() -> Iterator[np.ndarray]:
    """Yield the images of a folder one after the other, forever.

    The folder is ``$PI3_CAMERASERVER_IMAGE``, else the shipped synthetic plant views. Files are
    taken in name order and read again on every pass.

    Yields
    ------
    numpy.ndarray
        RGB ``uint8`` image of shape ``(height, width, 3)``; an alpha channel is dropped, other
        modes (grey, palette) are converted to RGB.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist (raised on the first ``next``).
    ValidationError
        If it holds no image file.
    """
    folder = os.getenv(IMAGE_ENV)
    files = _image_files(Path(folder) if folder else default_image_dir())
    index = 0
    while True:
        yield _load(files[index % len(files)])
        index += 1


def _lag_seconds() -> float:
    text = os.getenv(LAG_ENV, "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ValidationError(f"{LAG_ENV} must be a number of milliseconds, got {text!r}") from None
    if not 0 <= value <= 600_000:
        raise ValidationError(f"{LAG_ENV} must lie between 0 and 600000 ms, got {text!r}")
    return value / 1000.0


def _fit(image: np.ndarray, size: tuple[int, int], *, shrink_only: bool) -> np.ndarray:
    height, width = image.shape[:2]
    if (width, height) == size:
        return image
    img = Image.fromarray(image)
    if shrink_only:
        img.thumbnail(size, Image.Resampling.BILINEAR)
    else:
        img = img.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(img)


class DummyCamera(Camera, RPCServer):
    """A camera serving images from a folder, for tests and demonstrations.

    Initial state: mode ``STILL``, ``video_url`` empty, rotation 0, encoding ``"jpeg"``, config
    ``{}``, resolution the size of the first image (640x480 for the shipped views). Images are
    served at their own size until a resolution is set, then resized to it. Rotation is reported
    in the image metadata, not applied (as upstream). Property setters check their values and
    emit their change signal only when the value changes, except ``config``, which merges and
    always emits ``configChanged`` with the whole configuration.

    Parameters
    ----------
    context : zmq.Context
        ZeroMQ context used to create sockets for RPC communication.
    url : str
        Endpoint address that the RPC server will bind to (``tcp://host[:port]``).

    Raises
    ------
    FileNotFoundError, ValidationError
        If the image folder or ``PI3_CAMERASERVER_LAG`` is not usable.
    """

    def __init__(self, context: zmq.Context, url: str) -> None:
        provider = image_provider()
        first = next(provider)
        lag = _lag_seconds()
        RPCServer.__init__(self, context, url)
        self._bind_host = parse_url(url).host
        self._mode = CameraMode.STILL
        self._video_url = ""
        self._rotation = 0
        self._encoding = "jpeg"
        self._config: dict[str, Any] = {}
        self._image_provider = provider
        self._pending: np.ndarray | None = first
        self._resolution = (int(first.shape[1]), int(first.shape[0]))
        self._resolution_set = False
        self._lag = lag
        self._lock = threading.Lock()
        self._preview: Any = None  # MJPEGServer once VIDEO mode was asked for

    # -- images ------------------------------------------------------------------------------------
    def _next_image(self) -> np.ndarray:
        with self._lock:
            if self._pending is not None:
                image, self._pending = self._pending, None
            else:
                image = next(self._image_provider)
            resolution, resize = self._resolution, self._resolution_set
        return _fit(image, resolution, shrink_only=False) if resize else image

    @RPCServer.register_method_buffer(timeout=10000)
    def get_image(self, lores: bool = False) -> tuple[memoryview, dict]:
        """Return the next image, encoded as JPEG (quality 95) or PNG per :attr:`encoding`.

        Switches to ``STILL`` mode first if needed. Upstream ignored ``lores``; here it returns
        the image shrunk to fit 640x480.

        Parameters
        ----------
        lores : bool
            Return a preview-sized image.

        Returns
        -------
        tuple of (memoryview, dict)
            The encoded image and ``{"format", "rotation", "size"}``, ``size`` being the array shape
            ``[height, width, 3]`` of the encoded image.
        """
        if self._mode != CameraMode.STILL:
            self.mode = CameraMode.STILL
        image = self._next_image()
        if lores:
            image = _fit(image, _LORES, shrink_only=True)
        encoding = self._encoding
        if encoding == "png":
            out = io.BytesIO()
            Image.fromarray(image, "RGB").save(out, format="PNG")
            data = out.getvalue()
        else:
            data = simplejpeg.encode_jpeg(image, quality=_JPEG_QUALITY, colorsubsampling="420", fastdct=True)
        if self._lag:
            time.sleep(self._lag)
        return memoryview(data), {"format": encoding, "rotation": self._rotation, "size": list(image.shape)}

    # -- properties --------------------------------------------------------------------------------
    @RPCProperty(notify=Camera.encodingChanged)
    def encoding(self) -> Encoding:
        """``"jpeg"`` or ``"png"``; anything else is refused with an error."""
        return self._encoding  # type: ignore[return-value]

    @encoding.setter
    def encoding(self, value: Encoding) -> None:
        if value not in ("jpeg", "png"):
            raise ValidationError(f"encoding must be 'jpeg' or 'png', got {value!r}")
        if value != self._encoding:
            self._encoding = value
            self.encodingChanged.emit(value)

    @RPCProperty(notify=Camera.configChanged)
    def config(self) -> dict:
        """Camera controls by their Picamera2 names (``{'Brightness': 0.5, 'Contrast': 1.2}``).

        Setting merges the given controls into the current ones and emits ``configChanged`` with
        the whole configuration. The dummy camera only records them.
        """
        return dict(self._config)

    @config.setter
    def config(self, value: dict) -> None:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValidationError(f"config must be a dict of control names to values, got {value!r}")
        self._config.update(value)
        self.configChanged.emit(dict(self._config))

    @RPCProperty(notify=Camera.modeChanged)
    def mode(self) -> CameraMode:
        """``STILL`` or ``VIDEO``; ``VIDEO`` starts a live MJPEG preview whose URL is :attr:`video_url`."""
        return self._mode

    @mode.setter
    def mode(self, value: CameraMode) -> None:
        mode = CameraMode.parse(value)
        if mode == self._mode:
            return
        self._mode = mode
        url = self._preview_url() if mode == CameraMode.VIDEO else ""
        if url != self._video_url:
            self._video_url = url
            self.videoUrlChanged.emit(url)
        self.modeChanged.emit(str(mode))

    @RPCProperty(notify=Camera.videoUrlChanged)
    def video_url(self) -> str:
        """MJPEG preview URL in ``VIDEO`` mode (or :data:`PREVIEW_UNAVAILABLE`); empty in ``STILL``."""
        return self._video_url

    @RPCProperty(notify=Camera.rotationChanged)
    def rotation(self) -> int:
        """Rotation reported with each image: 0, 90, 180 or 270 degrees."""
        return self._rotation

    @rotation.setter
    def rotation(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value not in _ROTATIONS:
            raise ValidationError(f"rotation must be one of 0, 90, 180, 270, got {value!r}")
        if value != self._rotation:
            self._rotation = value
            self.rotationChanged.emit(value)

    @RPCProperty(notify=Camera.resolutionChanged)
    def resolution(self) -> tuple[int, int]:
        """``(width, height)`` of the images; setting it makes every image resized to it."""
        return self._resolution

    @resolution.setter
    def resolution(self, value: tuple[int, int]) -> None:
        try:
            width, height = value
        except (TypeError, ValueError):
            raise ValidationError(f"resolution must be (width, height), got {value!r}") from None
        for side in (width, height):
            if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= _MAX_SIDE:
                raise ValidationError(f"resolution sides must be ints in [1, {_MAX_SIDE}], got {value!r}")
        with self._lock:
            changed = (width, height) != self._resolution
            self._resolution, self._resolution_set = (width, height), True
        if changed:
            self.resolutionChanged.emit((width, height))

    # -- preview -----------------------------------------------------------------------------------
    def _preview_url(self) -> str:
        if self._preview is None:
            try:
                wildcard = self._bind_host in ("*", "0.0.0.0", "::")
                server = MJPEGServer(
                    "0.0.0.0" if wildcard else self._bind_host,
                    0,
                    advertise_host=advertised_host(self._bind_host) if wildcard else None,
                )
                server.add_source("preview", self._preview_grabber(), fps=_PREVIEW_FPS)
                server.start()
            except (OSError, ValueError) as exc:
                logger.warning("no preview for %s: %s", type(self).__name__, exc)
                return PREVIEW_UNAVAILABLE
            self._preview = server
        return str(self._preview.url_for("preview"))

    @staticmethod
    def _preview_grabber() -> Any:
        frames = image_provider()

        def grab() -> bytes:
            image = _fit(next(frames), _LORES, shrink_only=True)
            return simplejpeg.encode_jpeg(image, quality=_PREVIEW_QUALITY, colorsubsampling="420")

        return grab

    def _stop_preview(self) -> None:
        preview, self._preview = self._preview, None
        if preview is not None:
            preview.stop()

    # -- life cycle --------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Serve requests until stopped (see :meth:`RPCServer.serve_forever`), then stop the preview."""
        try:
            super().serve_forever()
        finally:
            self._stop_preview()

    def stop_server(self, timeout: float = 10.0) -> None:
        """Stop serving, unregister and stop the preview (see :meth:`RPCServer.stop_server`)."""
        super().stop_server(timeout)
        self._stop_preview()


def main(argv: list[str] | None = None) -> int:
    """Serve a :class:`DummyCamera`, registered as ``DummyCamera`` (type ``camera``), until Ctrl-C.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (``--registry URL``, ``--url URL``, ``-v``).

    Returns
    -------
    int
        The exit status: 0 after Ctrl-C, SIGTERM or a remote ``stop_server()``.
    """
    parser = argparse.ArgumentParser(
        description="Serve a DummyCamera and register it with a device registry."
    )
    parser.add_argument("--registry", default="tcp://127.0.0.1:5555", help="registry URL (%(default)s)")
    parser.add_argument(
        "--url",
        default="tcp://127.0.0.1",
        help="where to listen (%(default)s); no port: one in 10000-11999, ':0': picked by the system",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    context = zmq.Context()
    try:
        camera = DummyCamera(context, args.url)
    except (OSError, ValueError, zmq.ZMQError) as exc:
        print(f"cannot start the DummyCamera: {exc}", file=sys.stderr)
        context.destroy(linger=0)
        return 1
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def serve() -> None:
        try:
            camera.serve_forever()
        finally:
            stop.set()

    thread = threading.Thread(target=serve, name="dummy-camera", daemon=True)
    thread.start()
    try:
        print(f"DummyCamera listening on {camera.address}", flush=True)
        name = camera.register_to_registry("camera", "DummyCamera", args.registry, overwrite=False)
        if name:
            print(f"registered as {name} with {args.registry}", flush=True)
        else:
            print(
                f"registry {args.registry} unreachable: serving anyway, retrying in the background",
                flush=True,
            )
        while not stop.wait(1.0):
            pass
    finally:
        camera.stop_server()
        thread.join(10)
        context.destroy(linger=0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print("DummyCamera stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
