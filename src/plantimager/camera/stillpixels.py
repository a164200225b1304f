"""The pixels of a simulated camera's stills: the view fitted to the resolution, toned, and noisy.

A real sensor's noise makes a 12 MP JPEG about 3 MB, where a smooth synthetic view gives a sixth
of that: :func:`render_still` adds deterministic pseudo-random noise so that benchmarks see
camera-like file sizes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

__all__ = ["render_still", "tone_table"]

#: Side of the square tile of noise repeated over a still.
_NOISE_TILE = 512


def tone_table(controls: dict[str, float], default_exposure_us: float) -> list[int] | None:
    """The 256-entry lookup table simulated controls amount to, None when it is the identity.

    Parameters
    ----------
    controls : dict
        ``ExposureTime`` (us), ``AnalogueGain``, ``Brightness`` (-1 to 1) and ``Contrast``.
    default_exposure_us : float
        The exposure time at which, with a gain of 1, the light is left as it is.

    Returns
    -------
    list of int or None
        The table, for :meth:`PIL.Image.Image.point` on each band; None if it changes nothing.
    """
    gain = controls["ExposureTime"] / default_exposure_us * controls["AnalogueGain"]
    x = np.arange(256, dtype=np.float64)
    y = (x * gain - 128.0) * controls["Contrast"] + 128.0 + controls["Brightness"] * 128.0
    table = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    if np.array_equal(table, np.arange(256, dtype=np.uint8)):
        return None
    return table.tolist()


def render_still(
    source: Image.Image, size: tuple[int, int], table: list[int] | None, noise: int, seed: int
) -> np.ndarray:
    """``source`` fitted to ``size``, toned by ``table``, with deterministic noise of amplitude ``noise``.

    Parameters
    ----------
    source : PIL.Image.Image
        The RGB view; it is cropped to the aspect ratio of ``size`` and resized (bilinear).
    size : tuple of int
        ``(width, height)`` of the still.
    table : list of int or None
        A tone table from :func:`tone_table`, None for none.
    noise : int
        Amplitude of the noise added to every pixel (0 for none).
    seed : int
        Chooses the noise: the same seed gives the same still.

    Returns
    -------
    numpy.ndarray
        A read-only RGB ``uint8`` array of shape ``(height, width, 3)``.
    """
    img = source if source.size == size else ImageOps.fit(source, size, Image.Resampling.BILINEAR)
    if table is not None:
        img = img.point(table * 3)
    out = np.array(img, dtype=np.uint8)
    if noise:
        # In uint8 without overflow: squeeze the values into [0, 255 - 2 noise], then add a tile of
        # noise in [0, 2 noise] over the whole image (a JPEG encoder gains nothing from the repeats).
        np.clip(out, noise, 255 - noise, out=out)
        out -= noise
        tile = np.random.default_rng(seed).integers(
            0, 2 * noise + 1, size=(_NOISE_TILE, _NOISE_TILE, 3), dtype=np.uint8
        )
        height, width = out.shape[:2]
        for y in range(0, height, _NOISE_TILE):
            for x in range(0, width, _NOISE_TILE):
                part = out[y : y + _NOISE_TILE, x : x + _NOISE_TILE]
                part += tile[: part.shape[0], : part.shape[1]]
    out.flags.writeable = False
    return out
