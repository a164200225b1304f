"""Procedural surface textures of the synthetic scene: deterministic, in linear RGB.

The fine grain matters beyond looks: it gives feature matchers something to hold on to, so views of
the synthetic plant can be matched and reconstructed like photographs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hash_noise", "printed_dots", "soil", "srgb_to_linear", "terracotta"]


def hash_noise(*coords: np.ndarray) -> np.ndarray:
    """Cheap deterministic pseudo-random value in [0, 1) for each tuple of coordinates."""
    acc = np.zeros(np.broadcast_shapes(*(c.shape for c in coords)))
    for k, c in zip((12.9898, 78.233, 37.719), coords, strict=False):
        acc = acc + np.asarray(c) * k
    return np.modf(np.abs(np.sin(acc) * 43758.5453))[0]


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """Approximate sRGB to linear light (gamma 2.2), clipped to [0, 1]."""
    return np.power(np.clip(c, 0.0, 1.0), 2.2)


def terracotta(p: np.ndarray, shade: float) -> np.ndarray:
    """Linear RGB of fired clay at points ``p`` (N x 3, metres): fine grain and throwing streaks."""
    base = srgb_to_linear(np.array([0.76, 0.42, 0.27])) * shade
    cell = np.floor(p / 0.0025)
    grain = hash_noise(cell[:, 0], cell[:, 1], cell[:, 2])
    streak = 0.05 * np.sin(p[:, 2] * 260.0 + 2.0 * np.sin(np.arctan2(p[:, 1], p[:, 0]) * 3.0))
    return base[None, :] * (0.93 + 0.09 * grain + streak)[:, None]


def soil(p: np.ndarray) -> np.ndarray:
    """Linear RGB of potting soil at points ``p`` (N x 3, metres), speckled with perlite."""
    cell = np.floor(p[:, :2] / 0.0025)
    grain = hash_noise(cell[:, 0], cell[:, 1])
    colour = srgb_to_linear(np.array([0.33, 0.23, 0.16]))[None, :] * (0.45 + 0.9 * grain)[:, None]
    perlite = hash_noise(cell[:, 0] + 17.0, cell[:, 1] - 5.0) > 0.975
    colour[perlite] = srgb_to_linear(np.array([0.86, 0.85, 0.80]))
    return colour


#: Printing inks: black, red, blue, grey (sRGB).
_INKS = np.array([[0.08, 0.08, 0.09], [0.55, 0.12, 0.10], [0.10, 0.22, 0.45], [0.30, 0.32, 0.30]])
#: Layers of dots: (grid pitch, smallest and largest radius), metres.
_DOT_LAYERS = ((0.045, 0.006, 0.012), (0.024, 0.003, 0.007), (0.012, 0.0015, 0.0035))


def printed_dots(p: np.ndarray) -> np.ndarray:
    """Linear RGB of a turntable top printed with random dots at points ``p`` (N x 3, metres).

    Dots of three sizes, jittered on grids of 12, 24 and 45 mm, in dark inks on an off-white
    card: a pattern made for feature matchers (high contrast, no repeats, corners at every scale).
    The dots are placed in the table's own frame, so they turn with it.
    """
    colour = np.broadcast_to(srgb_to_linear(np.array([0.92, 0.91, 0.87])), (len(p), 3)).copy()
    inks = srgb_to_linear(_INKS)
    for layer, (pitch, r_min, r_max) in enumerate(_DOT_LAYERS):
        # Each dot lies wholly inside its own cell, so a point needs to look at one cell only.
        cell = np.floor(p[:, :2] / pitch)
        cx, cy, salt = cell[:, 0], cell[:, 1], 31.0 * layer
        radius = r_min + (r_max - r_min) * hash_noise(cx - salt, cy + 3.0)
        room = pitch - 2.0 * radius
        centre_x = cx * pitch + radius + room * hash_noise(cx + salt, cy)
        centre_y = cy * pitch + radius + room * hash_noise(cx, cy + salt + 7.0)
        inside = np.hypot(p[:, 0] - centre_x, p[:, 1] - centre_y) < radius
        inside &= hash_noise(cx + 5.0, cy - salt) < 0.7  # some cells stay empty
        ink = np.floor(hash_noise(cx + salt + 11.0, cy - 13.0) * len(inks)).astype(int)
        colour[inside] = inks[ink[inside]]
    return colour
