"""Synthetic potted plant, rendered from a camera circling it.

A small software renderer written with NumPy only. It draws a terracotta pot with soil, a stem and a
handful of curved leaves on a photo-studio background, so that a machine with no camera and no dataset
can still serve images that look like a real multi-view acquisition of a plant.

Surfaces are sampled densely as points (at least one sample per pixel), projected through a pinhole
camera and resolved with a depth buffer; shading is Lambertian with one directional light plus a soft
sky term. The image is rendered at twice the requested size and averaged down for smooth edges, then
receives a little vignetting and sensor noise. Everything is deterministic for a given seed.

Examples
--------
>>> from plantimager.commons.examples.scene import render_view
>>> image = render_view(30.0, size=(320, 240), seed=1)
>>> image.shape, image.dtype
((240, 320, 3), dtype('uint8'))
"""

from __future__ import annotations

import colorsys
import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from .pinhole import camera_frame, focal_px
from .texture import printed_dots, soil, srgb_to_linear, terracotta

__all__ = ["TURNTABLE_RADIUS", "default_image_dir", "render_view", "render_views"]

logger = logging.getLogger(__name__)

_SUPERSAMPLE = 2
_DENSITY = 1.3  # surface samples per (supersampled) pixel along each parameter direction
_LIGHT = np.array([-0.45, -0.35, 0.82]) / np.linalg.norm([-0.45, -0.35, 0.82])

# Pot geometry (metres): body radius at the bottom and top, body height, rim band and soil level.
_POT_R_BOTTOM = 0.068
_POT_R_TOP = 0.092
_POT_H_BODY = 0.118
_POT_H_TOP = 0.142
_POT_R_RIM = 0.099
_POT_WALL = 0.008
_SOIL_Z = 0.126
#: Radius of the simulated turntable's top, in metres.
TURNTABLE_RADIUS = 0.17

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))

Grid = Callable[[np.ndarray, np.ndarray], np.ndarray]


def default_image_dir() -> Path:
    """Return the folder of pre-rendered views shipped with the package.

    Returns
    -------
    pathlib.Path
        Folder holding ``view_00.jpg`` ... ``view_23.jpg``, 640x480 views of the synthetic plant taken
        every 15 degrees of azimuth.
    """
    return Path(str(files("plantimager.commons.examples") / "data" / "plant"))


def render_view(
    azimuth_deg: float,
    elevation_deg: float = 20.0,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    *,
    object_deg: float = 0.0,
    turntable: bool = False,
) -> np.ndarray:
    """Render the synthetic potted plant seen from one camera position.

    Parameters
    ----------
    azimuth_deg : float
        Angle of the camera around the vertical axis of the pot, in degrees.
    elevation_deg : float, optional
        Angle of the camera above the horizontal plane through the plant centre, in degrees
        (between -80 and 80).
    size : tuple of int, optional
        Output ``(width, height)`` in pixels, each between 8 and 2048.
    seed : int, optional
        Chooses the plant (number, placement, size and colour of leaves) and the sensor noise.
    object_deg : float, optional
        Turn of the plant and pot about the vertical axis (as on a turntable); backdrop and light stay.
    turntable : bool, optional
        Stand the pot on a turntable: a disc of :data:`TURNTABLE_RADIUS` printed with dots
        (:func:`~.texture.printed_dots`) that turns with the plant and gives feature matchers
        plenty to hold on to.

    Returns
    -------
    numpy.ndarray
        RGB image of shape ``(height, width, 3)`` and dtype ``uint8``.

    Raises
    ------
    ValueError
        If the size is not two integers in range, or an angle is out of range.
    """
    width, height = _check_size(size)
    if not -80.0 <= float(elevation_deg) <= 80.0:
        raise ValueError(f"elevation_deg must lie in [-80, 80], got {elevation_deg!r}")
    if not (math.isfinite(float(azimuth_deg)) and math.isfinite(float(object_deg))):
        raise ValueError(f"angles must be finite, got azimuth_deg={azimuth_deg!r}, object_deg={object_deg!r}")
    cam = _Camera.looking_at(azimuth_deg, elevation_deg, width * _SUPERSAMPLE, height * _SUPERSAMPLE)
    plant = _make_plant(int(seed) & 0xFFFFFFFF)

    # Sample the plant as the camera sees it in the plant's own frame, then turn it into place.
    seen = _Camera.looking_at(azimuth_deg - float(object_deg), elevation_deg, cam.width, cam.height)
    cos, sin = math.cos(math.radians(object_deg)), math.sin(math.radians(object_deg))
    turn = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])  # p @ turn turns row vectors
    points, normals, albedo, materials = _collect(plant, seen, turntable)
    points, normals = points @ turn, normals @ turn
    # The backdrop is smooth: shade it at the output size and repeat it to the supersampled grid.
    backdrop = _background(_Camera.looking_at(azimuth_deg, elevation_deg, width, height))
    linear = np.repeat(np.repeat(backdrop, _SUPERSAMPLE, axis=0), _SUPERSAMPLE, axis=1)
    _draw(linear, cam, points, normals, albedo, materials)
    return _finish(linear, width, height, int(seed), float(azimuth_deg), float(elevation_deg))


def render_views(n: int, size: tuple[int, int] = (640, 480), seed: int = 0) -> list[np.ndarray]:
    """Render ``n`` views at evenly spaced azimuths, starting at 0 degrees.

    Parameters
    ----------
    n : int
        Number of views (at least 1).
    size : tuple of int, optional
        Output ``(width, height)`` in pixels.
    seed : int, optional
        Plant and noise seed, as in `render_view`.

    Returns
    -------
    list of numpy.ndarray
        ``n`` RGB images of shape ``(height, width, 3)``, dtype ``uint8``.
    """
    if int(n) < 1:
        raise ValueError(f"n must be at least 1, got {n!r}")
    return [render_view(360.0 * i / n, size=size, seed=seed) for i in range(int(n))]


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if not (8 <= width <= 2048 and 8 <= height <= 2048):
        raise ValueError(f"size must be between 8 and 2048 pixels per side, got {size!r}")
    return width, height


@dataclass(frozen=True)
class _Camera:
    position: np.ndarray
    right: np.ndarray
    down: np.ndarray
    forward: np.ndarray
    focal: float
    width: int
    height: int

    @classmethod
    def looking_at(cls, azimuth_deg: float, elevation_deg: float, width: int, height: int) -> _Camera:
        position, right, down, forward = camera_frame(azimuth_deg, elevation_deg)
        return cls(position, right, down, forward, focal_px(height), width, height)

    def ray_directions(self) -> np.ndarray:
        xs = (np.arange(self.width) + 0.5 - self.width / 2.0) / self.focal
        ys = (np.arange(self.height) + 0.5 - self.height / 2.0) / self.focal
        rays = self.forward + xs[None, :, None] * self.right + ys[:, None, None] * self.down
        return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


@dataclass(frozen=True)
class _Leaf:
    stem_t: float
    azimuth: float
    length: float
    width: float
    rise: float
    droop: float
    sideways: float
    roll: float
    cup: float
    wave: float
    petiole: float
    colour: np.ndarray


@dataclass(frozen=True)
class _Plant:
    stem_height: float
    stem_bend: np.ndarray
    leaves: tuple[_Leaf, ...]


@functools.lru_cache(maxsize=8)
def _make_plant(seed: int) -> _Plant:
    rng = np.random.default_rng([seed, 0x91A7])
    n_leaves = int(rng.integers(9, 13))
    start = rng.uniform(0.0, 2.0 * math.pi)
    leaves = []
    for i in range(n_leaves):
        t = float(np.clip(0.10 + 0.86 * (i / (n_leaves - 1)) ** 0.85 + rng.uniform(-0.03, 0.03), 0.06, 0.99))
        young = t  # upper leaves are younger: smaller, lighter, more upright
        hue = (rng.uniform(88.0, 118.0) - 10.0 * young) / 360.0
        colour = colorsys.hsv_to_rgb(
            hue, rng.uniform(0.55, 0.78) - 0.1 * young, rng.uniform(0.33, 0.47) + 0.12 * young
        )
        leaves.append(
            _Leaf(
                stem_t=t,
                azimuth=start + i * _GOLDEN_ANGLE + rng.uniform(-0.25, 0.25),
                length=(0.175 - 0.080 * young) * rng.uniform(0.88, 1.12),
                width=rng.uniform(0.48, 0.62),
                rise=math.radians(rng.uniform(18.0, 32.0) + 32.0 * young),
                droop=math.radians(rng.uniform(55.0, 85.0) - 35.0 * young),
                sideways=rng.uniform(-0.35, 0.35),
                roll=rng.uniform(-0.35, 0.35),
                cup=rng.uniform(0.10, 0.28),
                wave=rng.uniform(0.0, 0.0015),
                petiole=(0.034 - 0.018 * young) * rng.uniform(0.8, 1.2),
                colour=np.array(colour),
            )
        )
    return _Plant(rng.uniform(0.27, 0.31), rng.uniform(-0.025, 0.025, size=2), tuple(leaves))


def _direction(elevation: np.ndarray | float, heading: np.ndarray | float) -> np.ndarray:
    """Unit vectors from elevation above the horizontal plane and heading around z, in radians."""
    el, hd = np.asarray(elevation, dtype=float), np.asarray(heading, dtype=float)
    return np.stack([np.cos(el) * np.cos(hd), np.cos(el) * np.sin(hd), np.sin(el)], axis=-1)


def _stem_point(plant: _Plant, t: np.ndarray | float) -> np.ndarray:
    t = np.asarray(t, dtype=float)
    xy = plant.stem_bend[None, :] * (t.reshape(-1, 1) ** 2)
    z = _SOIL_Z - 0.01 + plant.stem_height * t.reshape(-1, 1)
    return np.concatenate([xy, z], axis=1).reshape(*t.shape, 3)


# Materials: how a sample is shaded and whether it is seen from both sides.
_MAT_MATTE, _MAT_LEAF, _MAT_SOIL = 0, 1, 2

# A colour function receives points, normals and the (u, v) surface parameters of each sample.
Paint = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _sample(fn: Grid, cam: _Camera, cull: bool) -> tuple[np.ndarray, ...]:
    """Sample a parametric surface densely enough for the camera: points, unit normals, u and v."""
    coarse = fn(np.linspace(0.0, 1.0, 9), np.linspace(0.0, 1.0, 9))
    per_metre = _DENSITY * cam.focal / max(float(((coarse - cam.position) @ cam.forward).min()), 0.05)
    len_u = np.linalg.norm(np.diff(coarse, axis=0), axis=-1).sum(axis=0).max()
    len_v = np.linalg.norm(np.diff(coarse, axis=1), axis=-1).sum(axis=1).max()
    nu, nv = (int(np.clip(math.ceil(length * per_metre), 4, 6000)) for length in (len_u, len_v))
    u1, v1 = np.linspace(0.0, 1.0, nu), np.linspace(0.0, 1.0, nv)
    grid = fn(u1, v1)
    normals = np.cross(np.gradient(grid, axis=0), np.gradient(grid, axis=1))
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 1e-15)
    out = (grid.reshape(-1, 3), normals.reshape(-1, 3), np.repeat(u1, nv), np.tile(v1, nu))
    if cull:  # drop samples facing away from the camera: something nearer hides them anyway
        keep = np.einsum("ij,ij->i", out[1], cam.position - out[0]) > 0.0
        out = tuple(a[keep] for a in out)
    return out


def _lathe(r0: float, r1: float, z0: float, z1: float) -> Grid:
    """Surface of revolution about the z axis, linear from (r0, z0) to (r1, z1) along u; v goes around.

    The normal points outwards where z rises along u, and upwards where r falls along u.
    """

    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        r = (r0 + (r1 - r0) * u)[:, None]
        z = np.broadcast_to((z0 + (z1 - z0) * u)[:, None], (len(u), len(v)))
        theta = -2.0 * math.pi * v[None, :]
        return np.stack([r * np.cos(theta), r * np.sin(theta), z], axis=-1)

    return fn


def _tube(centre: Callable[[np.ndarray], np.ndarray], radius: Callable[[np.ndarray], np.ndarray]) -> Grid:
    """Tube of varying radius around a curve; u runs along the curve, v around it."""

    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        c = centre(u)
        tangent = np.gradient(c, axis=0)
        tangent /= np.linalg.norm(tangent, axis=-1, keepdims=True)
        helper = np.where(np.abs(tangent[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
        side = np.cross(tangent, helper)
        side /= np.linalg.norm(side, axis=-1, keepdims=True)
        up = np.cross(side, tangent)
        theta = 2.0 * math.pi * v
        ring = np.cos(theta)[None, :, None] * side[:, None, :] + np.sin(theta)[None, :, None] * up[:, None, :]
        return c[:, None, :] + radius(u)[:, None, None] * ring

    return fn


def _leaf_blade(leaf: _Leaf, base: np.ndarray) -> Grid:
    """Curved, cupped, slightly wavy elliptic blade; u runs from base to tip, v across."""
    half_max = 0.5 * leaf.width * leaf.length

    def fn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        tangent = _direction(leaf.rise - leaf.droop * u**1.4, leaf.azimuth + leaf.sideways * u)
        steps = np.concatenate([[0.0], np.diff(u)])[:, None] * leaf.length
        centre = base + np.cumsum(steps * tangent, axis=0)
        side = np.cross(tangent, [0.0, 0.0, 1.0])
        side /= np.linalg.norm(side, axis=-1, keepdims=True)
        normal = np.cross(side, tangent)
        roll = (leaf.roll * u)[:, None]
        c, s = np.cos(roll), np.sin(roll)
        side, normal = c * side + s * normal, c * normal - s * side
        s = (2.0 * v - 1.0)[None, :]  # -1 at one margin, 0 on the midrib, 1 at the other
        across = s * (half_max * _leaf_outline(u))[:, None]
        lift = (
            leaf.cup * across**2 / half_max + leaf.wave * np.abs(s) * np.sin(u * 23.0 + leaf.azimuth)[:, None]
        )
        return centre[:, None] + across[..., None] * side[:, None] + lift[..., None] * normal[:, None]

    return fn


def _leaf_outline(u: np.ndarray) -> np.ndarray:
    a, b = 0.55, 1.05
    peak = (a / (a + b)) ** a * (b / (a + b)) ** b
    return np.clip(u, 0.0, 1.0) ** a * np.clip(1.0 - u, 0.0, 1.0) ** b / peak


def _collect(
    plant: _Plant, cam: _Camera, turntable: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample every surface of the scene; return points, normals, albedo (linear RGB) and material ids."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(fn: Grid, paint: Paint, material: int, cull: bool = True) -> None:
        pts, nrm, u, v = _sample(fn, cam, cull)
        parts.append((pts, nrm, paint(pts, nrm, u, v), np.full(len(pts), material, dtype=np.int8)))

    r_in_top = _POT_R_TOP - _POT_WALL
    slope = (_POT_R_TOP - _POT_R_BOTTOM) / _POT_H_BODY
    r_in_soil = r_in_top - slope * (_POT_H_TOP - _SOIL_Z)

    def pot(shade: float) -> Paint:
        return lambda p, n, u, v: terracotta(p, shade)

    if turntable:  # the top just below the pot's foot, the printed edge below it
        dots = lambda p, n, u, v: printed_dots(p)  # noqa: E731 - a paint like the others
        add(_lathe(TURNTABLE_RADIUS, 0.0, -0.0005, -0.0005), dots, _MAT_MATTE)
        rim = lambda p, n, u, v: printed_dots(  # noqa: E731 - the dots unrolled on the edge
            np.stack([np.arctan2(p[:, 1], p[:, 0]) * TURNTABLE_RADIUS, p[:, 2] + 1.0, p[:, 2]], axis=1)
        )
        add(_lathe(TURNTABLE_RADIUS, TURNTABLE_RADIUS, -0.0205, -0.0005), rim, _MAT_MATTE)
    add(_lathe(_POT_R_BOTTOM, _POT_R_TOP, 0.0, _POT_H_BODY), pot(1.0), _MAT_MATTE)
    add(_lathe(_POT_R_TOP, _POT_R_RIM, _POT_H_BODY, _POT_H_BODY), pot(0.9), _MAT_MATTE)
    add(_lathe(_POT_R_RIM, _POT_R_RIM, _POT_H_BODY, _POT_H_TOP), pot(1.04), _MAT_MATTE)
    add(_lathe(_POT_R_RIM, r_in_top, _POT_H_TOP, _POT_H_TOP), pot(1.1), _MAT_MATTE)
    inner_wall = _lathe(r_in_top, r_in_soil, _POT_H_TOP, _SOIL_Z - 0.002)  # z falls: normal points inwards
    add(
        inner_wall,
        lambda p, n, u, v: terracotta(p, 0.8) * (0.35 + 0.65 * (1 - u[:, None]) ** 0.7),
        _MAT_MATTE,
    )
    add(_lathe(r_in_soil, 0.0, _SOIL_Z, _SOIL_Z), lambda p, n, u, v: soil(p), _MAT_SOIL)

    stem_colour = srgb_to_linear(np.array([0.45, 0.58, 0.27]))

    def stem_paint(p: np.ndarray, n: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return stem_colour[None, :] * (0.9 + 0.1 * np.cos(6.0 * math.pi * v))[:, None]

    add(_tube(lambda u: _stem_point(plant, u), lambda u: 0.0048 - 0.0022 * u), stem_paint, _MAT_MATTE)
    for leaf in plant.leaves:
        attach = _stem_point(plant, leaf.stem_t)
        tip = attach + leaf.petiole * _direction(leaf.rise + 0.35, leaf.azimuth)
        petiole = _tube(lambda u, a=attach, b=tip: a + (b - a) * u[:, None], lambda u: 0.0017 - 0.0004 * u)
        add(petiole, stem_paint, _MAT_MATTE)
        add(_leaf_blade(leaf, tip), functools.partial(_leaf_paint, leaf), _MAT_LEAF, cull=False)

    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _leaf_paint(leaf: _Leaf, p: np.ndarray, n: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Leaf colour with a pale midrib, faint pinnate veins, a lighter margin and soft blotches."""
    across = np.abs(2.0 * v - 1.0) * leaf.width * 0.5 * _leaf_outline(u)  # fraction of the length
    midrib = np.exp(-((across * leaf.length / 0.0011) ** 2)) * (1.0 - u) ** 0.5
    phase = (u - 1.3 * across) * 9.0
    veins = np.exp(-(((phase - np.round(phase)) / 0.07) ** 2)) * (1.0 - np.abs(2.0 * v - 1.0))
    margin = np.clip((np.abs(2.0 * v - 1.0) - 0.85) / 0.15, 0.0, 1.0)
    blotch = 0.06 * np.sin(p[:, 0] * 180.0 + 1.3) * np.sin(p[:, 1] * 150.0 - 0.7) + 0.05 * (u - 0.5)
    base = srgb_to_linear(leaf.colour)[None, :] * (1.0 + blotch)[:, None]
    pale = srgb_to_linear(np.array([0.68, 0.80, 0.45]))[None, :]
    mix = np.clip(0.65 * midrib + 0.18 * veins + 0.15 * margin, 0.0, 1.0)[:, None]
    return base * (1.0 - mix) + pale * mix


def _background(cam: _Camera) -> np.ndarray:
    """Studio backdrop and floor (linear RGB) with a soft shadow around the pot."""
    rays = cam.ray_directions()
    height = cam.position[2]
    down = rays[..., 2] < -1e-6
    t = np.where(down, height / np.maximum(-rays[..., 2], 1e-6), np.inf)
    hit = cam.position[:2] + rays[..., :2] * np.where(np.isfinite(t), t, 0.0)[..., None]
    dist = np.where(down, np.linalg.norm(hit, axis=-1), np.inf)

    elevation = np.arcsin(np.clip(rays[..., 2], -1.0, 1.0))
    g = np.clip((elevation + 0.05) / 0.6, 0.0, 1.0)[..., None]
    top, horizon = srgb_to_linear(np.array([[0.60, 0.65, 0.71], [0.86, 0.87, 0.88]]))
    wall = g * top + (1.0 - g) * horizon
    floor = srgb_to_linear(np.array([0.80, 0.78, 0.74])) * np.ones_like(rays)
    r = np.linalg.norm(hit, axis=-1)
    contact = 1.0 - 0.55 * np.exp(-np.maximum(r - _POT_R_BOTTOM, 0.0) / 0.02)
    towards = -_LIGHT[:2] / _LIGHT[2] * 0.2
    along = np.clip((hit @ towards) / (towards @ towards), 0.0, 1.0)
    gap = np.linalg.norm(hit - along[..., None] * towards, axis=-1)
    cast = 1.0 - 0.35 * np.exp(-((gap / 0.085) ** 2))
    floor = floor * (contact * cast * (0.85 + 0.15 * np.exp(-dist / 1.5)))[..., None]
    blend = np.clip((dist - 1.0) / 2.0, 0.0, 1.0)
    blend = (blend * blend * (3.0 - 2.0 * blend))[..., None]
    return floor * (1.0 - blend) + wall * blend


def _draw(
    image: np.ndarray, cam: _Camera, pts: np.ndarray, nrm: np.ndarray, albedo: np.ndarray, mat: np.ndarray
) -> None:
    """Project samples, keep the nearest per pixel and write its shaded colour into ``image``."""
    rel = pts - cam.position
    z = rel @ cam.forward
    x = np.floor(cam.width / 2.0 + cam.focal * (rel @ cam.right) / np.maximum(z, 1e-6)).astype(np.int64)
    y = np.floor(cam.height / 2.0 + cam.focal * (rel @ cam.down) / np.maximum(z, 1e-6)).astype(np.int64)
    ok = (z > 0.05) & (x >= 0) & (x < cam.width) & (y >= 0) & (y < cam.height)
    index = np.flatnonzero(ok)
    pixel = y[index] * cam.width + x[index]
    bits = max(len(index).bit_length(), 1)  # depth in 10 um steps above, sample number below
    key = (np.minimum(z[index], 60.0) * 1e5).astype(np.int64) << bits | np.arange(len(index), dtype=np.int64)
    buffer = np.full(cam.width * cam.height, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(buffer, pixel, key)
    filled = np.flatnonzero(buffer != np.iinfo(np.int64).max)
    win = index[buffer[filled] & ((1 << bits) - 1)]

    n = nrm[win]
    view = cam.position - pts[win]
    view /= np.linalg.norm(view, axis=-1, keepdims=True)
    facing = np.einsum("ij,ij->i", n, view)
    colour = albedo[win]
    leaf = mat[win] == _MAT_LEAF
    back = leaf & (facing < 0.0)
    n = np.where((facing < 0.0)[:, None], -n, n)
    colour[back] = colour[back] * 0.7 + 0.3 * srgb_to_linear(np.array([0.62, 0.70, 0.50]))

    lambert = n @ _LIGHT
    sky = 0.5 + 0.5 * n[:, 2]
    light = 0.85 * np.maximum(lambert, 0.0) + 0.40 * sky + 0.08
    glow = np.where(leaf, 0.25 * np.maximum(-lambert, 0.0), 0.0)  # light through the leaf
    half = view + _LIGHT
    half /= np.linalg.norm(half, axis=-1, keepdims=True)
    spec = np.where(leaf, 0.06 * np.maximum(np.einsum("ij,ij->i", n, half), 0.0) ** 30, 0.0)
    occlusion = np.where(mat[win] == _MAT_SOIL, 0.55, 1.0)
    shaded = colour * ((light + glow) * occlusion)[:, None] + spec[:, None]
    image.reshape(-1, 3)[filled] = shaded


def _finish(
    linear: np.ndarray, width: int, height: int, seed: int, azimuth_deg: float, elevation_deg: float
) -> np.ndarray:
    """Average the supersampled image down, add vignetting and sensor noise, encode to 8-bit sRGB."""
    ss = _SUPERSAMPLE
    small = linear.reshape(height, ss, width, ss, 3).mean(axis=(1, 3))
    ys = (np.arange(height) + 0.5 - height / 2.0) / (height / 2.0)
    xs = (np.arange(width) + 0.5 - width / 2.0) / (height / 2.0)
    r2 = (ys[:, None] ** 2 + xs[None, :] ** 2) / (1.0 + (width / height) ** 2)
    small *= (1.0 - 0.35 * r2)[..., None]
    srgb = np.power(np.clip(small, 0.0, 1.0), 1.0 / 2.2) * 255.0
    rng = np.random.default_rng(
        [seed & 0xFFFFFFFF, round(azimuth_deg * 1e3) % 360000, round(elevation_deg * 1e3) % 360000]
    )
    grain = rng.normal(0.0, 1.1, size=(height, width, 1)) + rng.normal(0.0, 0.5, size=(height, width, 3))
    return np.clip(srgb + grain + 0.5, 0.0, 255.0).astype(np.uint8)
