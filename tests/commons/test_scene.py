"""Tests for the synthetic plant renderer and the views shipped with the package."""

from __future__ import annotations

import numpy as np
import pytest
import simplejpeg

from plantimager.commons.examples.scene import default_image_dir, render_view, render_views

N_SHIPPED = 24


def _shipped() -> list[np.ndarray]:
    folder = default_image_dir()
    return [simplejpeg.decode_jpeg((folder / f"view_{i:02d}.jpg").read_bytes()) for i in range(N_SHIPPED)]


@pytest.fixture(scope="module")
def shipped() -> list[np.ndarray]:
    return _shipped()


def _green_fraction(image: np.ndarray) -> float:
    rgb = image.astype(np.int16)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float(np.mean((g > r + 12) & (g > b + 12)))


def _centre(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return image[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3]


def test_shipped_views_exist_and_nothing_else():
    names = sorted(p.name for p in default_image_dir().glob("view_*.jpg"))
    assert names == [f"view_{i:02d}.jpg" for i in range(N_SHIPPED)]


def test_shipped_views_decode_at_640x480(shipped):
    for image in shipped:
        assert image.shape == (480, 640, 3)
        assert image.dtype == np.uint8


def test_shipped_set_is_small():
    total = sum(p.stat().st_size for p in default_image_dir().glob("view_*.jpg"))
    assert total < 1_500_000


def test_consecutive_views_differ(shipped):
    for a, b in zip(shipped, shipped[1:] + shipped[:1], strict=True):
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        assert diff.mean() > 1.0
        assert np.mean(diff > 40) > 0.002  # the plant moved, not only the noise


def test_views_are_smooth_images_not_noise(shipped):
    for image in shipped:
        grey = image.astype(np.float64).mean(axis=2)
        step = np.abs(np.diff(grey, axis=1)).mean()
        assert grey.std() > 10.0, "image should have content"
        assert step < 0.25 * grey.std(), "neighbouring pixels should be strongly correlated"


def test_centre_shows_green_plant(shipped):
    for image in shipped:
        assert _green_fraction(_centre(image)) > 0.05
        assert _green_fraction(image[: image.shape[0] // 10]) < 0.001  # backdrop at the top is not green


def test_render_view_is_deterministic_for_a_seed():
    a = render_view(42.0, size=(160, 120), seed=5)
    b = render_view(42.0, size=(160, 120), seed=5)
    np.testing.assert_array_equal(a, b)


def test_seed_changes_the_plant():
    a = render_view(42.0, size=(160, 120), seed=5).astype(np.int16)
    b = render_view(42.0, size=(160, 120), seed=6).astype(np.int16)
    assert np.mean(np.abs(a - b) > 40) > 0.002


def test_render_view_shape_and_content():
    image = render_view(0.0, size=(200, 150))
    assert image.shape == (150, 200, 3)
    assert image.dtype == np.uint8
    assert _green_fraction(_centre(image)) > 0.05


def test_render_views_even_azimuths():
    views = render_views(4, size=(80, 60), seed=1)
    assert len(views) == 4
    np.testing.assert_array_equal(views[1], render_view(90.0, size=(80, 60), seed=1))


@pytest.mark.parametrize("size", [(0, 10), (10,), "640x480", (-5, 20)])
def test_render_view_rejects_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        render_view(0.0, size=size)


def test_render_view_rejects_bad_elevation():
    with pytest.raises(ValueError, match="elevation"):
        render_view(0.0, elevation_deg=95.0)


def test_render_views_rejects_zero():
    with pytest.raises(ValueError, match="n must"):
        render_views(0)


def test_render_view_rejects_non_finite_azimuth():
    with pytest.raises(ValueError, match="azimuth"):
        render_view(float("nan"))


def test_turning_the_plant_is_seeing_it_from_the_other_way_round():
    size = (160, 120)
    plain = render_view(30.0, size=size)
    assert np.array_equal(render_view(30.0, size=size, object_deg=0.0), plain)
    assert np.array_equal(render_view(30.0, size=size, object_deg=360.0), plain)
    turned = render_view(30.0, size=size, object_deg=40.0).astype(int)
    assert np.abs(turned - plain).mean() > 1.0
    # Turned by +40 deg (counter-clockwise from above), the plant shows the side a camera at
    # 30 - 40 deg sees; only the light and the backdrop differ.
    assert (
        np.abs(turned - render_view(-10.0, size=size)).mean()
        < np.abs(turned - render_view(70.0, size=size)).mean()
    )
    with pytest.raises(ValueError, match="object_deg"):
        render_view(30.0, size=size, object_deg=float("nan"))
