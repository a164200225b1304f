"""What the contract tests share: constants, marks, and checks of images, records and refusals."""

from __future__ import annotations

import io
import math
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from plantimager.commons.errors import (
    PlantImagerError,
    RemoteError,
    RPCTimeoutError,
)

from .fixtures import ServedServer

__all__ = [
    "BAD_DATA_CODES",
    "CONTRACT_MARK",
    "JPEG_MAGIC",
    "LOW_RES",
    "PIXEL_TOLERANCE",
    "PNG_MAGIC",
    "REMOTE_LINE",
    "RPC_MARK",
    "SCHEDULE_AHEAD",
    "SCHEDULE_SLACK",
    "SERVED_KEY",
    "assert_camera_order",
    "assert_record",
    "assert_resolution",
    "camera_names",
    "check_files",
    "decode_raw_rgb",
    "decoded",
    "expect_refusal",
    "is_clear_refusal",
    "is_ours",
    "new_data_code",
    "pixel_distance",
]

#: Size of ``low_res_still`` images, ``(width, height)``.
LOW_RES = (640, 480)
#: First bytes of every JPEG file (SOI marker and the start of the next marker).
JPEG_MAGIC = b"\xff\xd8\xff"
#: The PNG file signature.
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Data codes a node must refuse: path escapes, separators, empty, far too long.
BAD_DATA_CODES = ("../x", "a/b", "", "x" * 10000)
#: Largest mean absolute pixel difference (0..255 scale) tolerated between two encodings of one
#: still when a retrieved file is matched to its camera (decoders differ slightly).
PIXEL_TOLERANCE = 2.0
#: Earliest accepted capture time before the requested instant, in seconds.
SCHEDULE_SLACK = 0.002
#: How far ahead a scheduled capture is requested, in seconds.
SCHEDULE_AHEAD = 0.05

CONTRACT_MARK = pytest.mark.plantimager_contract
RPC_MARK = pytest.mark.plantimager_over_rpc
#: Where the over-RPC contracts keep the served server of each client, per test.
SERVED_KEY = pytest.StashKey[dict[int, ServedServer]]()


def new_data_code(tag: str) -> str:
    """A data code unique to this call, valid for any node (``kit-<tag>-<hex>``)."""
    return f"kit-{tag}-{uuid.uuid4().hex[:12]}"


def decode_raw_rgb(data: Any, info: dict, what: str) -> np.ndarray:
    """Turn a raw still (``(buffer, info)``) into a ``(height, width, 3)`` uint8 array, checking it.

    Parameters
    ----------
    data : bytes-like
        The pixels.
    info : dict
        Metadata with ``shape`` (``[height, width, 3]``) and optionally ``dtype`` (``"uint8"``).
    what : str
        Name of the call, for messages.

    Returns
    -------
    numpy.ndarray
        The image, sharing memory with ``data``.
    """
    assert isinstance(info, dict), f"{what}: info must be a dict, got {type(info).__name__}"
    shape = info.get("shape")
    assert isinstance(shape, (list, tuple)) and len(shape) == 3, (
        f"{what}: info['shape'] must be [height, width, 3], got {shape!r}"
    )
    assert all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape), (
        f"{what}: info['shape'] must hold positive ints, got {shape!r}"
    )
    assert shape[2] == 3, f"{what}: expected 3 colour channels (RGB), info['shape'] is {shape!r}"
    dtype = info.get("dtype", "uint8")
    assert np.dtype(dtype) == np.uint8, f"{what}: pixels must be uint8, info['dtype'] is {dtype!r}"
    view = memoryview(data)
    assert view.nbytes == math.prod(shape), (
        f"{what}: buffer holds {view.nbytes} bytes but shape {list(shape)} needs {math.prod(shape)}"
    )
    pixels = np.frombuffer(view.cast("B") if view.format != "B" else view, dtype=np.uint8)
    array = pixels.reshape(tuple(shape))
    image = Image.fromarray(array)
    assert image.mode == "RGB", f"{what}: the pixels do not form an RGB image (mode {image.mode})"
    return array  # uint8: every value is within 0..255 by construction


def decoded(data: bytes) -> np.ndarray:
    """Decode an image file into an RGB array."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def pixel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two RGB arrays of the same shape, on a 0..255 scale."""
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a - b).mean())


def check_files(parts: Sequence[memoryview], magic: bytes, pil_format: str, what: str) -> list[bytes]:
    """Check that each part is a file of ``pil_format`` starting with ``magic``; return them as bytes."""
    files = []
    for i, part in enumerate(parts):
        blob = bytes(part)
        assert len(blob) > 0, f"{what}: file {i} is empty"
        assert blob.startswith(magic), (
            f"{what}: file {i} is not {pil_format} (starts with {blob[:8]!r}, expected {magic!r})"
        )
        with Image.open(io.BytesIO(blob)) as image:
            assert image.format == pil_format, f"{what}: Pillow reads file {i} as {image.format}"
            width, height = image.size
            assert width > 0 and height > 0, f"{what}: file {i} has size {image.size}"
        files.append(blob)
    return files


def assert_camera_order(files: Sequence[bytes], stored: Sequence[bytes], what: str) -> None:
    """Each retrieved file ``i`` must be the still of camera ``i`` (``retrieve_still(code, i)``).

    Identical bytes match at once; otherwise (the node re-encoded the still) both are decoded and
    file ``i`` must be at least as close to camera ``i``'s still as to any other camera's, within
    :data:`PIXEL_TOLERANCE`.
    """
    decoded_stored: list[np.ndarray | None] = [None] * len(stored)
    for i, blob in enumerate(files):
        if blob == stored[i]:
            continue
        pixels = decoded(blob)
        distances = []
        for j, original in enumerate(stored):
            if decoded_stored[j] is None:
                decoded_stored[j] = decoded(original)
            distances.append(pixel_distance(pixels, decoded_stored[j]))
        nearest = min(range(len(stored)), key=distances.__getitem__)
        assert distances[i] <= distances[nearest] + PIXEL_TOLERANCE, (
            f"{what}: file {i} is not camera {i}'s still: it matches camera {nearest}'s "
            f"(mean pixel difference {distances[nearest]:.2f}, against {distances[i]:.2f} for camera {i}); "
            "files must come in camera order"
        )


# RemoteError and its bases: what every remote failure is, whatever the remote side raised.
REMOTE_LINE = frozenset(RemoteError.__mro__)


def expect_refusal(call: Any, what: str) -> None:
    """``call()`` must raise a clear refusal (see :func:`is_clear_refusal`) with a message."""
    try:
        call()
    except Exception as exc:
        assert is_clear_refusal(exc), (
            f"{what} failed with {type(exc).__name__}: {exc}; expected a ValueError or an error "
            "of plantimager.commons.errors"
        )
        assert str(exc).strip(), f"{what} was refused without a message"
    else:
        pytest.fail(f"{what} was accepted; a bad data code must be refused")


def is_clear_refusal(exc: BaseException) -> bool:
    """A refusal the caller can act on: ValueError or one of our errors naming a real cause."""
    if isinstance(exc, ValueError):
        return True
    if isinstance(exc, RPCTimeoutError):
        return False
    if isinstance(exc, RemoteError):  # judge what the remote side raised, kept as a second base
        return any(is_ours(base) for base in type(exc).__mro__)
    return isinstance(exc, PlantImagerError)


def is_ours(kind: type) -> bool:
    """A kind of error of plantimager.commons.errors, not merely "failed remotely"."""
    return (
        issubclass(kind, PlantImagerError) and not issubclass(kind, RemoteError) and kind not in REMOTE_LINE
    )


def assert_resolution(value: Any, what: str) -> None:
    """Check that ``value`` is a ``[width, height]`` pair of positive ints."""
    assert isinstance(value, (list, tuple)) and len(value) == 2, (
        f"{what} must be [width, height], got {value!r}"
    )
    assert all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value), (
        f"{what} must hold two positive ints, got {value!r}"
    )


def camera_names(node: Any) -> list[str]:
    """The names of the node's cameras, in order."""
    return [camera["name"] for camera in node.cameras()]


def assert_record(record: Any, code: str, names: Sequence[str], what: str) -> None:
    """A capture record: the data code, then one entry per camera, in camera order, with its time.

    An entry names its camera by ``index`` (its position in ``cameras()``) or by ``camera`` (its name).
    """
    assert isinstance(record, dict), f"{what} returned {type(record).__name__}, expected a dict"
    assert record.get("data_code") == code, (
        f"{what}: data_code is {record.get('data_code')!r}, expected {code!r}"
    )
    cameras = record.get("cameras")
    assert isinstance(cameras, list) and len(cameras) == len(names), (
        f"{what}: expected one entry per camera ({len(names)}) under 'cameras', got {cameras!r}"
    )
    for i, entry in enumerate(cameras):
        assert isinstance(entry, dict), f"{what}: cameras[{i}] is {entry!r}"
        assert entry.get("index") == i or entry.get("camera") == names[i], (
            f"{what}: cameras[{i}] is not camera {i} ({names[i]!r}): index {entry.get('index')!r}, "
            f"camera {entry.get('camera')!r}"
        )
        assert isinstance(entry.get("captured_at"), (int, float)), (
            f"{what}: cameras[{i}] has no captured_at time: {entry!r}"
        )
