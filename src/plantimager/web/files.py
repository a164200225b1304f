"""Images of the dataset served to the page: only the dataset's own images, never another file.

A name is served when it is one plain file name (no folder, no ``..``, no leading dot), the
dataset's manifest lists it as an image, and the file is a regular file directly inside the
dataset folder once symbolic links are resolved. Anything else is answered ``404`` (``400`` for a
name that is not a file name at all), so nothing outside the dataset can be read.

Thumbnails are made on demand (at most :data:`THUMB_SIZE`, JPEG) and kept in a small cache; an
image never changes once written, so the cache is keyed by name, size and modification time.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .controller import WebController
from .errors import ApiError

__all__ = ["THUMB_SIZE", "Thumbnails", "dataset_image"]

logger = logging.getLogger(__name__)

#: Largest width and height of a thumbnail, pixels.
THUMB_SIZE = (320, 240)
_CACHE_ENTRIES = 256
_MAX_NAME = 255


def dataset_image(controller: WebController, name: str) -> Path:
    """The path of the dataset image called ``name``, after every check.

    Raises
    ------
    ApiError
        400 if ``name`` is not a plain file name, 404 if it is not an image of the dataset.
    """
    if (
        not name
        or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME
        or "/" in name
        or "\\" in name
        or "\0" in name
        or name.startswith(".")
    ):
        raise ApiError(400, f"{name[:80]!r} is not a file name of the dataset (no folders, no leading dot)")
    found = controller.dataset_files()
    if found is None:
        raise ApiError(404, "there is no dataset yet: nothing was captured and downloaded")
    folder, names = found
    if name not in names:
        raise ApiError(404, f"no image {name[:80]!r} in the dataset {folder}")
    root = folder.resolve()
    path = (root / name).resolve()
    try:
        info = os.stat(path)
    except OSError:
        raise ApiError(404, f"image {name[:80]!r} is listed but missing from {folder}") from None
    if path.parent != root or not stat.S_ISREG(info.st_mode):
        raise ApiError(404, f"no image {name[:80]!r} in the dataset {folder}")
    return path


class Thumbnails:
    """Small JPEG versions of dataset images, made on demand and cached. Thread-safe."""

    def __init__(self, size: tuple[int, int] = THUMB_SIZE, entries: int = _CACHE_ENTRIES) -> None:
        self.size = size
        self.entries = entries
        self._cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> bytes:
        """The thumbnail of the image at ``path`` (blocking: call it from a worker thread).

        Raises
        ------
        ApiError
            422 if the file is not an image that can be read.
        """
        info = path.stat()
        key = (str(path), info.st_size, info.st_mtime_ns)
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
                return data
        data = self._make(path)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.entries:
                self._cache.popitem(last=False)
        return data

    def _make(self, path: Path) -> bytes:
        try:
            with Image.open(path) as image:
                image.draft("RGB", self.size)  # JPEG: decode at a reduced scale, much faster
                image.thumbnail(self.size)
                out = io.BytesIO()
                image.convert("RGB").save(out, "JPEG", quality=80)
                return out.getvalue()
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise ApiError(422, f"cannot make a thumbnail of {path.name}: {exc}") from None
