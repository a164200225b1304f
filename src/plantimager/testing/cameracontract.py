"""The camera contract: PEPI's per-camera operations on camera 0, locally and over RPC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from .checks import (
    CONTRACT_MARK,
    LOW_RES,
    RPC_MARK,
    assert_resolution,
    decode_raw_rgb,
)
from .fixtures import served_client

__all__ = ["CameraContract", "CameraOverRPC"]


class CameraContract:
    """Contract of the per-camera operations (PEPI's camera contract, with its gaps closed).

    Provide a ``camera`` fixture: an object with ``still``, ``low_res_still``,
    ``get_max_resolution``, ``get_current_resolution`` and ``set_resolution`` as in
    :class:`~plantimager.commons.cameradevice.CameraNode`, acting on camera 0 by default (a
    ``CameraNode`` itself qualifies). Each test should get a fresh camera.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [CONTRACT_MARK]

    @pytest.fixture
    def camera(self) -> Any:
        """The camera under test: override this fixture in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define a `camera` fixture returning the camera under test",
            pytrace=False,
        )

    def test_still(self, camera: Any) -> None:
        """``still()`` returns uint8 RGB pixels whose shape is given in the metadata."""
        data, info = camera.still()
        decode_raw_rgb(data, info, "still()")

    def test_low_res_still(self, camera: Any) -> None:
        """``low_res_still()`` is exactly 640x480 RGB."""
        data, info = camera.low_res_still()
        array = decode_raw_rgb(data, info, "low_res_still()")
        height, width, _ = array.shape
        assert (width, height) == LOW_RES, f"low_res_still() is {width}x{height}, expected 640x480"

    def test_max_resolution(self, camera: Any) -> None:
        """``get_max_resolution()`` is ``[width, height]``, two positive ints, and the current one fits."""
        maximum = camera.get_max_resolution()
        assert_resolution(maximum, "get_max_resolution()")
        current = camera.get_current_resolution()
        assert_resolution(current, "get_current_resolution()")
        assert current[0] <= maximum[0] and current[1] <= maximum[1], (
            f"current resolution {current} exceeds the maximum {maximum}"
        )

    def test_set_resolution(self, camera: Any) -> None:
        """1280x720 is honoured, or clamped to the maximum; the maximum is unchanged; stills follow."""
        maximum = list(camera.get_max_resolution())
        expected = [min(1280, maximum[0]), min(720, maximum[1])]
        applied = camera.set_resolution(x=1280, y=720)
        current = list(camera.get_current_resolution())
        honoured = "honoured" if expected == [1280, 720] else f"clamped to the maximum {maximum}"
        assert current == expected, (
            f"after set_resolution(1280, 720) the resolution is {current}; expected {expected} "
            f"(the request {honoured})"
        )
        assert list(applied) == current, (
            f"set_resolution() returned {applied!r} but get_current_resolution() is {current}"
        )
        assert list(camera.get_max_resolution()) == maximum, "set_resolution() changed the maximum resolution"
        data, info = camera.still()
        array = decode_raw_rgb(data, info, "still() after set_resolution()")
        assert [array.shape[1], array.shape[0]] == current, (
            f"still() is {array.shape[1]}x{array.shape[0]} but the current resolution is {current}"
        )

    def test_set_resolution_beyond_max_is_clamped(self, camera: Any) -> None:
        """A request larger than the maximum is clamped to it, not refused nor honoured."""
        maximum = list(camera.get_max_resolution())
        applied = camera.set_resolution(x=maximum[0] * 2, y=maximum[1] * 2)
        current = list(camera.get_current_resolution())
        assert current == maximum, (
            f"set_resolution({maximum[0] * 2}, {maximum[1] * 2}) gave {current}; "
            f"expected the maximum {maximum}"
        )
        assert list(applied) == current, f"set_resolution() returned {applied!r}, applied {current}"

    def test_low_res_still_ignores_resolution(self, camera: Any) -> None:
        """``low_res_still()`` stays 640x480 whatever the still resolution (here 1280x720 or less)."""
        camera.set_resolution(x=1280, y=720)
        data, info = camera.low_res_still()
        array = decode_raw_rgb(data, info, "low_res_still() after set_resolution(1280, 720)")
        height, width, _ = array.shape
        assert (width, height) == LOW_RES, (
            f"low_res_still() is {width}x{height} after set_resolution(1280, 720), expected 640x480"
        )


class CameraOverRPC(CameraContract):
    """:class:`CameraContract` run through an RPC client.

    Provide a ``local_camera`` fixture: an ``RPCServer`` implementing the per-camera operations
    of ``CameraNode`` (a node server qualifies), constructed on ``tcp://127.0.0.1:0`` and not
    serving yet. Each test serves it in a thread and gets a client proxy as ``camera``; the server
    is stopped and its thread joined after the test.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [CONTRACT_MARK, RPC_MARK]

    @pytest.fixture
    def local_camera(self) -> Any:
        """The server under test: override this fixture in your subclass."""
        pytest.fail(
            f"{type(self).__name__} must define a `local_camera` fixture returning an RPCServer "
            "(constructed on tcp://127.0.0.1:0, not serving)",
            pytrace=False,
        )

    @pytest.fixture
    def camera(self, local_camera: Any) -> Iterator[Any]:
        """A client proxy of ``local_camera``, served for the duration of the test."""
        with served_client(local_camera) as (client, _):
            yield client
