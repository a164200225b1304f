"""Procedural surface textures of the synthetic scene: deterministic, in linear RGB.

The fine grain matters beyond looks: it gives feature matchers something to hold on to, so views of
the synthetic plant can be matched and reconstructed like photographs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hash_noise", "soil", "srgb_to_linear", "terracotta"]


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
