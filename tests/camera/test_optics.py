"""The geometry a simulated camera reports is the renderer's, and it turns with the stored image."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import simplejpeg
from PIL import Image, ImageOps

from plantimager.camera.dummy import SHIPPED_ELEVATION, DummyBackend
from plantimager.camera.exif import exif_bytes, with_exif
from plantimager.camera.optics import focal_35mm, rotate_optics
from plantimager.camera.slot import rotate
from plantimager.commons.errors import ValidationError
from plantimager.commons.examples import scene
from plantimager.commons.examples.pinhole import camera_pose, fitted_intrinsics, intrinsics
from plantimager.rig.geometry import camera_centre, intrinsic_matrix, object_pose

VIEWS = [(0.0, 20.0), (37.5, -10.0), (200.0, 45.0), (315.0, 70.0)]


def project(optics_intrinsics: dict, rotation: np.ndarray, translation: np.ndarray, point: np.ndarray):
    """Pixel coordinates (u, v) of a world point through a pinhole and a world-to-camera pose."""
    camera = rotation @ point + translation
    assert camera[2] > 0, "the point is behind the camera"
    u, v, w = intrinsic_matrix(optics_intrinsics) @ camera
    return u / w, v / w


@pytest.mark.parametrize(("azimuth", "elevation"), VIEWS)
def test_the_pinhole_sends_each_renderer_ray_back_to_its_own_pixel(azimuth, elevation):
    width, height = 96, 64
    cam = scene._Camera.looking_at(azimuth, elevation, width, height)
    rays = cam.ray_directions()
    rotation, translation = camera_pose(azimuth, elevation)
    np.testing.assert_allclose(camera_centre(rotation, translation), cam.position, atol=1e-12)
    k = intrinsics((width, height))
    for row, col in [(0, 0), (5, 80), (31, 47), (63, 95)]:
        point = cam.position + 1.7 * rays[row, col]
        u, v = project(k, rotation, translation, point)
        assert (u, v) == (pytest.approx(col + 0.5, abs=1e-9), pytest.approx(row + 0.5, abs=1e-9))


@pytest.mark.parametrize("angle", [0.0, 30.0, 137.0, -90.0])
def test_a_turned_object_is_seen_as_if_the_camera_went_the_other_way(angle):
    rotation, translation = camera_pose(60.0, 25.0)
    pose = {"R": rotation.tolist(), "t": translation.tolist()}
    moved_rotation, moved_translation = object_pose(pose, angle)
    expected_rotation, expected_translation = camera_pose(60.0 - angle, 25.0)
    np.testing.assert_allclose(moved_rotation, expected_rotation, atol=1e-12)
    np.testing.assert_allclose(moved_translation, expected_translation, atol=1e-12)
    assert object_pose(pose, None)[0].tolist() == rotation.tolist()


def test_the_renderer_turns_the_object_as_object_pose_says():
    # A turned plant seen from azimuth 50 is the plant seen from azimuth 50 - angle, unturned.
    turned = scene.render_view(50.0, size=(64, 48), object_deg=40.0).astype(np.int16)
    plain = scene.render_view(10.0, size=(64, 48)).astype(np.int16)
    wrong = scene.render_view(90.0, size=(64, 48)).astype(np.int16)
    # The backdrop and light stay with the rig, so compare the plant's middle only.
    middle = (slice(12, 40), slice(20, 44))
    assert np.abs(turned - plain)[middle].mean() < 0.5 * np.abs(turned - wrong)[middle].mean()


@pytest.mark.parametrize(
    "bad",
    [
        {"R": [[1, 0], [0, 1]], "t": [0, 0, 0]},
        {"R": np.eye(3).tolist(), "t": [0, 0]},
        {"R": (2 * np.eye(3)).tolist(), "t": [0, 0, 0]},
        {"R": np.diag([1.0, 1.0, -1.0]).tolist(), "t": [0, 0, 0]},
        {"R": np.eye(3).tolist(), "t": [0, math.nan, 0]},
    ],
)
def test_object_pose_refuses_what_is_not_a_pose(bad):
    with pytest.raises(ValidationError, match="pose"):
        object_pose(bad, 10.0)


def _marker(width: int, height: int, row: int, col: int) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[row, col] = 255
    return image


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotated_optics_project_where_the_rotated_image_shows_the_point(rotation):
    width, height = 40, 24
    k = {"model": "PINHOLE", "width": width, "height": height, "fx": 30.0, "fy": 33.0, "cx": 17.2, "cy": 9.6}
    rotation0, translation0 = camera_pose(75.0, 15.0)
    optics = {"intrinsics": k, "pose": {"R": rotation0.tolist(), "t": translation0.tolist(), "frame": "rig"}}
    turned = rotate_optics(optics, rotation)
    point = np.array([0.03, -0.02, 0.25])
    u, v = project(k, rotation0, translation0, point)
    image = rotate(_marker(width, height, math.floor(v), math.floor(u)), rotation)
    rows, cols = np.nonzero(image[..., 0])
    tk = turned["intrinsics"]
    assert (tk["width"], tk["height"]) == (image.shape[1], image.shape[0])
    u2, v2 = project(tk, np.asarray(turned["pose"]["R"]), np.asarray(turned["pose"]["t"]), point)
    assert (math.floor(u2), math.floor(v2)) == (cols[0], rows[0])
    assert turned["pose"]["frame"] == "rig"
    # The camera has not moved: only its axes were renamed.
    np.testing.assert_allclose(
        camera_centre(np.asarray(turned["pose"]["R"]), np.asarray(turned["pose"]["t"])),
        camera_centre(rotation0, translation0),
        atol=1e-12,
    )


def test_rotate_optics_refuses_other_angles():
    with pytest.raises(ValidationError, match="rotation"):
        rotate_optics({"intrinsics": None, "pose": None}, 45)


@pytest.mark.parametrize(
    ("source", "size"), [((640, 480), (320, 320)), ((640, 480), (800, 400)), ((160, 120), (80, 60))]
)
def test_fitted_intrinsics_follow_what_fitting_does_to_the_pixels(source, size):
    rotation, translation = camera_pose(0.0, 20.0)
    point = np.array([0.02, 0.05, 0.2])
    u, v = project(intrinsics(source), rotation, translation, point)
    block = np.zeros((source[1], source[0]), dtype=np.float32)
    block[math.floor(v) - 2 : math.floor(v) + 3, math.floor(u) - 2 : math.floor(u) + 3] = 255
    fitted = np.asarray(ImageOps.fit(Image.fromarray(block), size, Image.Resampling.BILINEAR), dtype=float)
    rows, cols = np.indices(fitted.shape)
    centroid = ((fitted * cols).sum() / fitted.sum() + 0.5, (fitted * rows).sum() / fitted.sum() + 0.5)
    # The block's centre is pixel floor(u) + 0.5: where the point projects, up to half a pixel.
    expected = project(fitted_intrinsics(source, size), rotation, translation, point)
    scale = max(size[0] / source[0], size[1] / source[1])
    assert centroid == (
        pytest.approx(expected[0], abs=0.5 * scale + 0.3),
        pytest.approx(expected[1], abs=0.5 * scale + 0.3),
    )


def test_35mm_equivalent_of_a_full_frame_sensor_is_its_focal_length():
    # A 36 x 24 "pixel" sensor at one pixel per millimetre with a 50 mm lens.
    assert focal_35mm({"width": 36, "height": 24, "fx": 50.0, "fy": 50.0}) == pytest.approx(50.0)
    # Half the sensor width, same lens: twice the crop.
    assert focal_35mm({"width": 18, "height": 12, "fx": 50.0, "fy": 50.0}) == pytest.approx(100.0)


def test_a_shipped_view_is_the_renderer_at_the_reported_pose():
    camera = DummyBackend(first_view=3)
    optics = camera.optics((640, 480))
    azimuth = 360.0 * 3 / 24
    rotation, translation = camera_pose(azimuth, SHIPPED_ELEVATION)
    assert optics["pose"]["R"] == rotation.tolist() and optics["pose"]["t"] == translation.tolist()
    assert {k: optics["intrinsics"][k] for k in ("width", "height", "fx", "fy", "cx", "cy")} == {
        k: v for k, v in intrinsics((640, 480)).items() if k != "model"
    }
    shipped = simplejpeg.decode_jpeg((scene.default_image_dir() / "view_03.jpg").read_bytes())
    shipped = shipped.astype(np.int16)
    here = np.abs(shipped - scene.render_view(azimuth, SHIPPED_ELEVATION)).mean()
    elsewhere = np.abs(shipped - scene.render_view(azimuth + 7.5, SHIPPED_ELEVATION + 5)).mean()
    assert here < 2.0 and here < 0.5 * elsewhere


def test_a_dummy_camera_reports_the_pinhole_of_its_resized_views():
    camera = DummyBackend(first_view=5, resolution=(320, 320))
    optics = camera.optics((320, 320))
    expected = fitted_intrinsics((640, 480), (320, 320))
    assert {k: optics["intrinsics"][k] for k in expected} == expected
    assert optics["intrinsics"]["source"] == "renderer"
    focal_mm, sensor = optics["intrinsics"]["focal_mm"], optics["intrinsics"]["sensor_mm"]
    # Millimetres and pixels agree: focal / sensor width is fx / width.
    assert focal_mm / sensor[0] == pytest.approx(expected["fx"] / 320)
    # Someone else's images: nothing is known of where they were taken.
    other = DummyBackend(images=[np.zeros((48, 64, 3), dtype=np.uint8)])
    assert other.optics((64, 48)) is None


def test_exif_carries_time_to_the_microsecond_optics_and_exposure():
    camera = DummyBackend(first_view=1, resolution=(320, 240))
    optics = camera.optics((320, 240))
    meta = {"captured_ns": 1_765_000_000_123_456_789, "controls": {"ExposureTime": 8000, "AnalogueGain": 2.0}}
    jpeg = simplejpeg.encode_jpeg(np.zeros((240, 320, 3), dtype=np.uint8), quality=80)
    tagged = with_exif(jpeg, exif_bytes(meta, optics, camera="n1/cam0", serial="n1/cam0"))
    image = Image.open(io.BytesIO(tagged))
    assert image.size == (320, 240)
    exif = image.getexif()
    extra = exif.get_ifd(0x8769)
    assert (exif[0x010F], exif[0x0110], exif[0x010E]) == ("plantimager", "simulated camera", "n1/cam0")
    assert extra[0x9003] == "2025:12:06 05:46:40" and extra[0x9291] == "123456" and extra[0x9011] == "+00:00"
    assert float(extra[0x829A]) == pytest.approx(0.008) and extra[0x8827] == 200
    assert float(extra[0x920A]) == pytest.approx(optics["intrinsics"]["focal_mm"], rel=1e-6)
    assert extra[0xA405] == round(focal_35mm(optics["intrinsics"]))
    assert extra[0xA431] == "n1/cam0"
    # The pixels are untouched.
    np.testing.assert_array_equal(simplejpeg.decode_jpeg(tagged), simplejpeg.decode_jpeg(jpeg))


def test_exif_refuses_what_is_not_a_jpeg():
    with pytest.raises(ValidationError, match="not a JPEG"):
        with_exif(b"\x89PNG\r\n", b"Exif\x00\x00")
