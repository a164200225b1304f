"""Pixel conversions for Picamera2 frames: still byte orders to RGB, YUV420 previews to RGB."""

from __future__ import annotations

import numpy as np
from PIL import Image

from plantimager.commons.errors import PlantImagerError, ValidationError

from .backend import LORES_SIZE

__all__ = ["STILL_FORMATS", "fit_preview", "preview_size", "still_to_rgb", "yuv420_to_rgb"]

#: Still formats accepted for the main stream, with the byte order of their pixels.
STILL_FORMATS = {"RGB888": "BGR", "BGR888": "RGB", "XRGB8888": "BGRX", "XBGR8888": "RGBX"}


def still_to_rgb(array: np.ndarray, fmt: str = "RGB888") -> np.ndarray:
    """Turn a main-stream array of Picamera2 format ``fmt`` into C-contiguous RGB ``uint8``.

    ``"RGB888"`` and ``"XRGB8888"`` arrays hold B, G, R(, X) bytes and are reversed;
    ``"BGR888"`` and ``"XBGR8888"`` hold R, G, B(, X) and only lose their fourth byte.
    """
    image = np.asarray(array)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise PlantImagerError(f"unexpected {fmt} frame: {image.dtype} array of shape {image.shape}")
    order = STILL_FORMATS.get(fmt)
    if order is None:
        raise ValidationError(f"unknown still format {fmt!r}; use one of {', '.join(STILL_FORMATS)}")
    return np.ascontiguousarray(image[:, :, 2::-1] if order.startswith("BGR") else image[:, :, :3])


def yuv420_to_rgb(buffer: np.ndarray, width: int, height: int) -> np.ndarray:
    """Convert a Picamera2 ``"YUV420"`` array to RGB ``uint8`` of shape ``(height, width, 3)``.

    The array is what ``make_array`` returns for a YUV420 stream: ``height * 3 // 2`` rows of
    ``stride`` bytes (``stride >= width``), holding the Y plane (``height`` rows of ``stride``) then
    the U and V planes (``height / 2`` rows of ``stride / 2`` each). Colours are full-range BT.601
    (sYCC); each chroma sample covers a 2x2 block. Integer arithmetic, no Python loop over pixels.

    Raises
    ------
    ValueError
        If the array does not have that layout or a dimension is odd.
    """
    buf = np.asarray(buffer)
    if width % 2 or height % 2 or width <= 0 or height <= 0:
        raise ValueError(f"YUV420 needs even dimensions, got {width}x{height}")
    if buf.dtype != np.uint8 or buf.ndim != 2 or buf.shape[0] != height * 3 // 2 or buf.shape[1] < width:
        raise ValueError(
            f"a {width}x{height} YUV420 frame must be uint8 of shape ({height * 3 // 2}, stride >= {width}), "
            f"got {buf.dtype} {buf.shape}"
        )
    stride = buf.shape[1]
    flat = np.ascontiguousarray(buf).reshape(-1)
    half_w, half_h, half_stride = width // 2, height // 2, stride // 2
    y = flat[: height * stride].reshape(height, stride)[:, :width]
    start = height * stride
    plane = half_h * half_stride
    u, v = (
        flat[first : first + plane].reshape(half_h, half_stride)[:, :half_w].astype(np.int32) - 128
        for first in (start, start + plane)
    )
    # 16.16 fixed point: R = Y + 1.402 V; G = Y - 0.344136 U - 0.714136 V; B = Y + 1.772 U
    offsets = (
        (91881 * v + 32768) >> 16,
        (-22554 * u - 46802 * v + 32768) >> 16,
        (116130 * u + 32768) >> 16,
    )
    luma = y.reshape(half_h, 2, half_w, 2).astype(np.int32)
    out = np.empty((half_h, 2, half_w, 2, 3), dtype=np.uint8)
    for channel, offset in enumerate(offsets):
        value = luma + offset[:, None, :, None]
        np.clip(value, 0, 255, out=value)
        out[..., channel] = value
    return out.reshape(height, width, 3)


def preview_size(main: tuple[int, int], box: tuple[int, int] = LORES_SIZE) -> tuple[int, int]:
    """The low-resolution stream size: ``main``'s aspect ratio, within ``box`` and within ``main``.

    Dimensions are even (YUV420 needs it) and at least 2.
    """
    width, height = main
    scale = min(box[0] / width, box[1] / height, 1.0)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def fit_preview(image: np.ndarray, box: tuple[int, int] = LORES_SIZE) -> np.ndarray:
    """Scale ``image`` to fit ``box`` (``(width, height)``), keeping its aspect, and centre it on black."""
    height, width = image.shape[:2]
    if (width, height) == box:
        return image
    scale = min(box[0] / width, box[1] / height)
    size = (max(1, min(box[0], round(width * scale))), max(1, min(box[1], round(height * scale))))
    if size != (width, height):
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    out = np.zeros((box[1], box[0], 3), dtype=np.uint8)
    top, left = (box[1] - size[1]) // 2, (box[0] - size[0]) // 2
    out[top : top + size[1], left : left + size[0]] = image
    return out


# -- controls ------------------------------------------------------------------------------------
