"""End to end: the downloaded JPEGs carry EXIF, the manifest the cameras' pinholes and poses."""

from __future__ import annotations

import datetime as dt
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from plantimager.camera.dummy import SHIPPED_ELEVATION
from plantimager.camera.optics import focal_35mm
from plantimager.commons.examples.pinhole import CAMERA_DISTANCE, TARGET, fitted_intrinsics
from plantimager.rig.geometry import camera_centre

pytestmark = pytest.mark.timeout(60)

_EXIF_IFD, _DATETIME_ORIGINAL, _SUBSEC, _FOCAL, _FOCAL_35 = 0x8769, 0x9003, 0x9291, 0x920A, 0xA405
_OFFSET = 0x9011
_MAKE, _MODEL, _DESCRIPTION, _BODY_SERIAL = 0x010F, 0x0110, 0x010E, 0xA431


def _exif(data: bytes) -> tuple[Image.Exif, dict]:
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        return exif, dict(exif.get_ifd(_EXIF_IFD))


def test_downloaded_images_carry_their_capture_time_and_optics(spawn, make_rig, tmp_path):
    nodes = [spawn("n1", cameras=2), spawn("n2", extra=("--backend-option", "first_view=6"))]
    for node in nodes:
        node.ready()
    dataset = tmp_path / "session"
    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(3, 20), rig.nodes()
    rig.configure("n2/cam0", rotation=90)
    first = rig.capture_all()
    rig.configure("n1/cam1", encoding="png")
    second = rig.capture_all()
    assert not first.failures and not second.failures
    report = rig.download_all()
    assert not report.failures and len(report.files) == 6

    manifest = json.loads((dataset / "manifest.json").read_text())
    straight = fitted_intrinsics((640, 480), (320, 240))  # the renderer's pinhole, resized
    centres = {}
    for entry in manifest["images"]:
        data = (dataset / entry["file"]).read_bytes()
        k = entry["intrinsics"]
        assert entry["camera_model"] == {"make": "plantimager", "model": "simulated camera"}
        assert k["source"] == "renderer" and k["model"] == "PINHOLE"
        if entry["camera"] == "n2/cam0":  # stored turned by 90 degrees: width and height swap
            assert (k["width"], k["height"], k["fx"], k["fy"]) == (240, 320, straight["fy"], straight["fx"])
            assert (k["cx"], k["cy"]) == (240 - straight["cy"], straight["cx"])
        else:
            assert {key: k[key] for key in straight} == straight
        rotation, translation = np.asarray(entry["pose"]["R"]), np.asarray(entry["pose"]["t"])
        centre = camera_centre(rotation, translation)
        assert np.linalg.norm(centre - TARGET) == pytest.approx(CAMERA_DISTANCE)
        # The optical axis goes through the target: it projects onto the principal point.
        seen = rotation @ TARGET + translation
        assert seen[0] / seen[2] == pytest.approx(0.0, abs=1e-12)
        centres.setdefault(entry["camera"], centre)

        if entry["file"].endswith(".png"):
            assert entry["intrinsics"] is not None  # the manifest knows it even without EXIF
            continue
        exif, extra = _exif(data)
        # The node names its cameras by its own stable identity, whatever the rig calls it.
        body = f"{entry['node_id']}/{entry['camera'].split('/')[1]}"
        assert (exif[_MAKE], exif[_MODEL], exif[_DESCRIPTION]) == ("plantimager", "simulated camera", body)
        assert extra[_BODY_SERIAL] == body
        # Capture time to the microsecond, as the manifest records it.
        seconds, nanoseconds = divmod(entry["captured_ns"], 1_000_000_000)
        assert extra[_SUBSEC] == f"{nanoseconds // 1000:06d}"
        stamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y:%m:%d %H:%M:%S")
        assert extra[_DATETIME_ORIGINAL] == stamp and extra[_OFFSET] == "+00:00"
        assert entry["captured_at"] == pytest.approx(entry["captured_ns"] / 1e9, abs=1e-6)
        assert float(extra[_FOCAL]) == pytest.approx(k["focal_mm"], rel=1e-6)
        assert extra[_FOCAL_35] == round(focal_35mm(k))

    # Views 0, 1 and 6 of 24: cameras 15 and 90 degrees apart on one circle around the plant.
    assert len(centres) == 3
    ring = CAMERA_DISTANCE * math.cos(math.radians(SHIPPED_ELEVATION))
    chord = {name: math.dist(centres["n1/cam0"], centre) for name, centre in centres.items()}
    assert chord["n1/cam1"] == pytest.approx(2 * ring * math.sin(math.radians(15 / 2)))
    assert chord["n2/cam0"] == pytest.approx(2 * ring * math.sin(math.radians(90 / 2)))
    # The rig-wide record names each camera's latest geometry.
    assert set(manifest["cameras"]) == {"n1/cam0", "n1/cam1", "n2/cam0"}
    assert manifest["cameras"]["n2/cam0"]["intrinsics"]["width"] == 240
