"""The one check of numbers from outside: finite, real, never a bool; and the checks built on it."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import zmq

from plantimager.camera.capture import check_settle_ms
from plantimager.camera.controls import check_control
from plantimager.camera.frametime import exposure_ns
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.commons.errors import ValidationError
from plantimager.commons.number import finite, is_finite
from plantimager.commons.registry.message import valid_timeout
from plantimager.commons.turntabledevice import check_angle, check_time
from plantimager.rig.geometry import image_angle
from plantimager.rig.scanplan import plan_angles

GOOD = [0, 3, -7, 2.5, -0.0, 1e300]
BAD = [True, False, None, "4", b"4", math.nan, math.inf, -math.inf, [1.0], {"a": 1}, 1j]


@pytest.mark.parametrize("value", GOOD)
def test_finite_real_numbers_pass_as_floats(value):
    assert is_finite(value)
    result = finite(value)
    assert isinstance(result, float) and result == value


@pytest.mark.parametrize("value", [np.float32(2.5), np.float64(-1.0), np.int64(3), np.uint8(7)], ids=repr)
def test_numpy_scalars_count_as_numbers(value):
    # Camera libraries hand back NumPy scalars (picamera2's metadata, a control's limits).
    assert is_finite(value)
    assert finite(value) == float(value)


@pytest.mark.parametrize("value", [np.bool_(True), np.float64("nan"), np.float32("inf")], ids=repr)
def test_numpy_bools_and_non_finite_scalars_do_not(value):
    assert not is_finite(value)


@pytest.mark.parametrize("value", BAD, ids=repr)
def test_bools_nan_infinities_and_non_numbers_do_not(value):
    assert not is_finite(value)
    assert finite(value) is None


@pytest.mark.parametrize("value", [True, math.nan, math.inf, "10"], ids=repr)
def test_the_checks_built_on_it_refuse_the_same_values_naming_them(value):
    checks = (
        check_angle,
        check_time,
        check_settle_ms,
        lambda v: plan_angles(4, start=v),
        lambda v: plan_angles([10.0, v]),
    )
    for check in checks:
        with pytest.raises(ValidationError, match=re.escape(repr(value))):
            check(value)


def test_an_image_whose_measured_angle_is_not_a_number_falls_back_to_the_planned_angle():
    assert image_angle({"position": {"measured": math.nan, "angle": 30}}) == 30.0
    assert image_angle({"position": {"measured": True, "angle": 30}}) == 30.0
    assert image_angle({"position": {"measured": 29.5, "angle": 30}}) == 29.5
    assert image_angle({"position": {"angle": math.inf}}) is None


@pytest.mark.parametrize("value", [True, math.nan, math.inf, "10"], ids=repr)
def test_camera_controls_and_registry_timeouts_refuse_them_too(value):
    with pytest.raises(ValidationError, match=re.escape(repr(value))):
        check_control("ExposureTime", value, (100, 1_000_000, 20_000))
    assert exposure_ns({"ExposureTime": value}) == 0
    assert not valid_timeout(value)
    context = zmq.Context()
    try:
        with pytest.raises(ValidationError, match="heartbeat_interval"):
            DeviceRegistry(context, "127.0.0.1", 0, heartbeat_interval=value)
    finally:
        context.destroy(linger=0)


def test_camera_controls_and_registry_timeouts_take_numpy_and_plain_numbers():
    assert check_control("ExposureTime", np.int64(5000), (100, 1_000_000, 20_000)) == 5000
    assert check_control("AnalogueGain", np.float32(2.0), (1.0, 16.0, 1.0)) == 2.0
    assert exposure_ns({"ExposureTime": np.int32(250)}) == 250_000
    assert valid_timeout(np.float64(0.5)) and valid_timeout(2)
    assert not valid_timeout(0) and not valid_timeout(-1.0)
