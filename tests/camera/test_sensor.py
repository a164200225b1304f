"""Nominal optics of Raspberry Pi camera modules, and the Picamera2 backend reporting them."""

from __future__ import annotations

import pytest

from plantimager.camera.sensor import SENSORS, check_focal_mm, sensor_optics
from plantimager.commons.errors import ValidationError

IMX219 = {"Model": "imx219", "PixelArraySize": (3280, 2464), "UnitCellSize": (1120, 1120)}


def test_a_fixed_lens_module_gets_its_pinhole_from_the_table():
    optics = sensor_optics(IMX219, (3280, 2464))
    k = optics["intrinsics"]
    assert optics["make"] == "Raspberry Pi" and optics["model"] == "Camera Module 2 (imx219)"
    assert k["fx"] == k["fy"] == pytest.approx(3.04 / 0.00112)
    assert (k["cx"], k["cy"]) == (1640.0, 1232.0)
    assert k["sensor_mm"] == pytest.approx([3280 * 0.00112, 2464 * 0.00112])
    assert k["source"] == "nominal" and optics["pose"] is None


def test_binned_and_cropped_stills_keep_the_field_of_view_libcamera_gives():
    full = sensor_optics(IMX219, (3280, 2464))["intrinsics"]
    half = sensor_optics(IMX219, (1640, 1232))["intrinsics"]
    assert half["fx"] == pytest.approx(full["fx"] / 2)
    # A square still is the centred 2464 x 2464 crop, scaled: same focal per sensor pixel height.
    square = sensor_optics(IMX219, (1232, 1232))["intrinsics"]
    assert square["fx"] == pytest.approx(full["fx"] / 2) and square["cx"] == 616.0
    # A 16:9 still of a 4:3 sensor crops top and bottom: the width sets the scale.
    wide = sensor_optics(IMX219, (1920, 1080))["intrinsics"]
    assert wide["fx"] == pytest.approx(full["fx"] * 1920 / 3280)


def test_the_active_area_and_cell_size_libcamera_reports_win_over_the_table():
    properties = {**IMX219, "PixelArrayActiveAreas": [(8, 8, 3264, 2448)], "UnitCellSize": (1000, 1000)}
    k = sensor_optics(properties, (3264, 2448))["intrinsics"]
    assert k["fx"] == pytest.approx(3.04 / 0.001)


def test_an_interchangeable_lens_needs_its_focal_length():
    hq = {"Model": "imx477", "PixelArraySize": (4056, 3040)}
    unknown = sensor_optics(hq, (2028, 1520))
    assert unknown["model"] == "HQ Camera (imx477)" and unknown["intrinsics"] is None
    given = sensor_optics(hq, (2028, 1520), focal_mm=16.0)["intrinsics"]
    assert given["fx"] == pytest.approx(16.0 / (SENSORS["imx477"].pixel_um * 2 / 1000))
    assert given["source"] == "nominal, focal_mm given"


def test_an_unknown_sensor_reports_its_name_and_no_pinhole():
    optics = sensor_optics({"Model": "ov9281", "PixelArraySize": (1280, 800)}, (1280, 800))
    assert optics["model"] == "ov9281" and optics["intrinsics"] is None
    assert sensor_optics({}, (640, 480))["model"] == "unknown"


@pytest.mark.parametrize("bad", [0, -4, 0.1, 5000, "16", True, float("nan")])
def test_focal_lengths_that_are_not_lenses_are_refused(bad):
    with pytest.raises(ValidationError, match="focal_mm"):
        check_focal_mm(bad)
