"""COLMAP export and reconstruction inputs, on hand-made datasets: geometry helpers and bad input."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from plantimager.cli.main import main
from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.commons.examples.pinhole import camera_pose, intrinsics
from plantimager.rig.calibration import load_calibration
from plantimager.rig.colmap import colmap_model, export_colmap
from plantimager.rig.colmaprig import rig_layout
from plantimager.rig.geometry import align_similarity, quaternion, turn
from plantimager.rig.manifest import MANIFEST_FORMAT, load_manifest
from plantimager.rig.meshroom import export_meshroom
from plantimager.rig.reconstruction import NEIGHBOURS, matching_method, reconstruct


def rotation_of(q: tuple[float, float, float, float]) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


@pytest.mark.parametrize(
    "rotation",
    [
        np.eye(3),
        turn(179.9),
        np.diag([1.0, -1.0, -1.0]),  # half turns about each axis: the trace is -1
        np.diag([-1.0, 1.0, -1.0]),
        np.diag([-1.0, -1.0, 1.0]),
        *(camera_pose(azimuth, elevation)[0] for azimuth in (0, 95, 200, 315) for elevation in (-30, 25, 70)),
    ],
)
def test_quaternions_give_back_their_rotation_with_w_not_negative(rotation):
    q = quaternion(rotation)
    assert q[0] >= 0 and math.isclose(sum(v * v for v in q), 1.0)
    np.testing.assert_allclose(rotation_of(q), rotation, atol=1e-12)


def test_the_similarity_between_two_point_sets_is_recovered():
    rng = np.random.default_rng(3)
    source = rng.normal(size=(20, 3))
    rotation = camera_pose(40.0, 30.0)[0]
    target = 2.5 * source @ rotation.T + np.array([0.1, -2.0, 3.0])
    scale, found, shift = align_similarity(source, target)
    assert scale == pytest.approx(2.5)
    np.testing.assert_allclose(found, rotation, atol=1e-12)
    np.testing.assert_allclose(shift, [0.1, -2.0, 3.0], atol=1e-12)
    mirrored = source * np.array([1.0, 1.0, -1.0])  # a reflection is not a similarity: R stays a rotation
    assert np.linalg.det(align_similarity(source, mirrored)[1]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        (np.zeros((2, 3)), np.zeros((2, 3)), "at least 3 points"),
        (np.zeros((4, 3)), np.zeros((5, 3)), "at least 3 points"),
        (np.zeros((4, 2)), np.zeros((4, 2)), "at least 3 points in 3D"),
        (np.ones((4, 3)), np.arange(12.0).reshape(4, 3), "not all in one place"),
    ],
)
def test_alignments_of_unusable_point_sets_are_refused(source, target, message):
    with pytest.raises(ValidationError, match=message):
        align_similarity(source, target)


def write_dataset(root: Path, images: list[dict], *, sizes: tuple[int, int] = (64, 48)) -> Path:
    """A dataset folder: its JPEGs and a manifest listing them (files named in ``images``)."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in images:
        if entry.pop("on_disk", True):
            path = root / entry["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".jpg":
                Image.new("RGB", sizes, (90, 120, 60)).save(path)
            else:
                path.write_bytes(b"raw sensor data")
    manifest = {"format": MANIFEST_FORMAT, "session": "s", "captures": [], "cameras": {}, "images": images}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def image(file: str, camera: str = "n1/cam0", capture_no: int = 1, **fields) -> dict:
    return {
        "file": file,
        "camera": camera,
        "capture_no": capture_no,
        "intrinsics": None,
        "pose": None,
    } | fields


#: The pose of the posed camera of :func:`two_cameras`.
ROTATION, TRANSLATION = camera_pose(30.0, 20.0)


def two_cameras(known: dict) -> list[dict]:
    """Two images of a posed camera with ``known`` intrinsics (two turntable angles), one of another."""
    pose = {"R": ROTATION.tolist(), "t": TRANSLATION.tolist()}
    return [
        image("a/1.jpg", intrinsics=known, pose=pose, position={"angle": 90.0}),
        image("a/2.jpg", capture_no=2, intrinsics=known, pose=pose, position={"angle": 180.0}),
        image("b/1.jpg", camera="n2/cam0"),
    ]


def test_cameras_are_grouped_by_intrinsics_and_unknown_ones_get_colmaps_prior(tmp_path):
    known = {**intrinsics((64, 48)), "model": "PINHOLE", "width": 64, "height": 48}
    root = write_dataset(
        tmp_path / "d",
        [
            *two_cameras(known),
            image("gone.jpg", camera="n2/cam0", capture_no=2, on_disk=False),
            image("raw.dng", camera="n2/cam0", capture_no=3),
        ],
    )
    model = colmap_model(root)
    assert [(c.name, c.model, c.known) for c in model.cameras] == [
        ("n1/cam0", "PINHOLE", True),
        ("n2/cam0", "SIMPLE_RADIAL", False),
    ]
    assert model.cameras[0].params == (known["fx"], known["fy"], known["cx"], known["cy"])
    assert model.cameras[1].params == (1.2 * 64, 32.0, 24.0, 0.0)  # COLMAP's own prior, from the JPEG
    assert [i.name for i in model.images] == ["a/1.jpg", "b/1.jpg", "a/2.jpg"]
    assert set(model.skipped) == {"gone.jpg", "raw.dng"} and "missing" in model.skipped["gone.jpg"]
    # The table turned the object: in its frame the camera stands turned the other way.
    first = model.images[0]
    np.testing.assert_allclose(first.pose[0], ROTATION @ turn(90.0))

    result = export_colmap(root, tmp_path / "out")
    text = (tmp_path / "out" / "images.txt").read_text()
    assert "a/1.jpg" in text and "b/1.jpg" not in text  # only the posed images carry a pose
    assert (tmp_path / "out" / "image-list.txt").read_text().split() == ["a/1.jpg", "b/1.jpg", "a/2.jpg"]
    assert result.folder == tmp_path / "out" and len(result.model.posed) == 2


def test_the_rig_layout_makes_one_frame_per_capture_with_linked_images(tmp_path):
    root = write_dataset(
        tmp_path / "d",
        [
            image("id1_d1_cam0.jpg"),
            image("id1_d1_cam1.jpg", camera="n1/cam1"),
            image("id2_d1_cam0.jpg", camera="n2/cam0"),
            image("id1_d2_cam0.jpg", capture_no=2),
            image("id2_d2_cam0.jpg", camera="n2/cam0", capture_no=2),
            image("again.jpg", capture_no=2),  # a second image of n1/cam0 in capture 2
            image("lone.jpg", camera="n2/cam0", capture_no=None),
        ],
    )
    model = colmap_model(root)
    layout = rig_layout(model, tmp_path / "d" / "reconstruction" / "images")
    by_name = {dataset: linked for linked, dataset in layout.names.items()}
    a, b, c = (f"c{camera.camera_id:03d}" for camera in sorted(model.cameras, key=lambda cam: cam.name))
    assert by_name["id1_d1_cam0.jpg"] == f"{a}/000001.jpg" and by_name["id1_d2_cam0.jpg"] == f"{a}/000002.jpg"
    assert by_name["id1_d1_cam1.jpg"] == f"{b}/000001.jpg"
    assert by_name["id2_d1_cam0.jpg"] == f"{c}/000001.jpg" and by_name["id2_d2_cam0.jpg"] == f"{c}/000002.jpg"
    # Neither a second image of one camera in a capture nor an image of no capture joins a frame.
    assert by_name["again.jpg"].startswith(f"{a}/image") and by_name["lone.jpg"].startswith(f"{c}/image")
    assert layout.frames == 2
    assert sorted(len(names) for names in layout.cameras.values()) == [1, 3, 3]
    for linked, dataset in layout.names.items():  # the same file, not a copy, on one file system
        assert (layout.folder / linked).samefile(root / dataset)
    assert rig_layout(model, layout.folder).names == layout.names  # a second layout replaces the first


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (image("../outside.jpg", on_disk=False), "not a plain path inside the dataset"),
        (image("/etc/passwd", on_disk=False), "not a plain path inside the dataset"),
        (image("a\\b.jpg", on_disk=False), "not a plain path inside the dataset"),
        (image("", on_disk=False), "has no file name"),
        (image("x.jpg", intrinsics={"model": "OPENCV"}), "x.jpg: intrinsics model 'OPENCV' is not PINHOLE"),
        (
            image("x.jpg", intrinsics={"model": "PINHOLE", "width": 64, "height": 48, "fx": "big"}),
            "x.jpg: fx must be a finite number, got 'big'",
        ),
        (
            image(
                "x.jpg",
                intrinsics={
                    "model": "PINHOLE",
                    "width": 0.5,
                    "height": 48,
                    "fx": 1,
                    "fy": 1,
                    "cx": 0,
                    "cy": 0,
                },
            ),
            "whole pixels",
        ),
        (image("x.jpg", pose={"R": [[1, 0], [0, 1]], "t": [0, 0, 0]}), r"x.jpg: a pose needs R of shape 3x3"),
        (image("x.jpg", pose={"R": np.diag([1, 1, -1]).tolist(), "t": [0, 0, 0]}), "must be a rotation"),
    ],
)
def test_malformed_manifest_images_are_named_in_the_error(tmp_path, entry, message):
    root = write_dataset(tmp_path / "d", [entry])
    with pytest.raises(ValidationError, match=message):
        colmap_model(root)
    assert not (root / "colmap").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "no such folder"),
        (lambda root: root.mkdir(), "it has no manifest.json"),
        (
            lambda root: (root.mkdir(), (root / "manifest.json").write_text("{not json")),
            "cannot be read as JSON",
        ),
        (lambda root: (root.mkdir(), (root / "manifest.json").write_text("[1, 2]")), "format 'list'"),
        (
            lambda root: (root.mkdir(), (root / "manifest.json").write_text('{"format": "other/2"}')),
            "format 'other/2', expected 'plantimager-dataset/1'",
        ),
        (
            lambda root: (
                root.mkdir(),
                (root / "manifest.json").write_text(json.dumps({"format": MANIFEST_FORMAT})),
            ),
            "has no list of images",
        ),
    ],
)
def test_folders_that_are_not_datasets_are_refused_by_every_command(tmp_path, make, message):
    root = tmp_path / "not-a-dataset"
    make(root)
    with pytest.raises(ValidationError, match=message):
        load_manifest(root)
    runner = CliRunner()
    for command in (
        ["dataset", "export", str(root)],
        ["dataset", "export", "--format", "meshroom", str(root)],
        ["dataset", "reconstruct", str(root)],
    ):
        result = runner.invoke(main, command)
        assert result.exit_code == 1 and message.split("'")[0] in result.output, result.output
    assert not any((root / made).exists() for made in ("colmap", "meshroom", "reconstruction"))


def test_an_empty_dataset_has_nothing_to_export_or_reconstruct(tmp_path):
    root = write_dataset(tmp_path / "d", [image("gone.jpg", on_disk=False)])
    for export in (export_colmap, export_meshroom):
        with pytest.raises(ValidationError, match="holds no image to export"):
            export(root)
    with pytest.raises(ValidationError, match="holds 0 usable image"):
        reconstruct(root)


def test_without_pycolmap_reconstruct_says_how_to_install_it(tmp_path, monkeypatch):
    root = write_dataset(tmp_path / "d", [image("1.jpg"), image("2.jpg", capture_no=2)])
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # makes `import pycolmap` raise ImportError
    with pytest.raises(PlantImagerError, match=r"needs pycolmap.*pip install 'plantimager\[sfm\]'"):
        reconstruct(root)
    result = CliRunner().invoke(main, ["dataset", "reconstruct", str(root)])
    assert result.exit_code == 1 and "plantimager[sfm]" in result.output
    assert not (root / "reconstruction").exists()


def aliceVision_pose(pose: dict) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera R (stored column after column) and the centre of an SfMData pose."""
    transform = pose["pose"]["transform"]
    rotation = np.array([float(v) for v in transform["rotation"]]).reshape(3, 3, order="F")
    return rotation, np.array([float(v) for v in transform["center"]])


def test_the_meshroom_export_holds_views_intrinsics_poses_and_the_sensor_database(tmp_path):
    known = {**intrinsics((64, 48)), "model": "PINHOLE", "width": 64, "height": 48}
    known["sensor_mm"] = [6.4, 4.8]
    root = write_dataset(tmp_path / "d", two_cameras(known))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["cameras"] = {
        "n1/cam0": {"camera_model": {"make": "RaspberryPi", "model": "imx477"}, "intrinsics": known},
        "n2/cam0": {"camera_model": {"make": "Other", "model": "unknown sensor"}, "intrinsics": None},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))

    result = CliRunner().invoke(main, ["dataset", "export", "--format", "meshroom", "--json", str(root)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["format"], summary["images"], summary["posed"]) == ("meshroom", 3, 2)
    sfm = json.loads((root / "meshroom" / "cameraInit.sfm").read_text())
    assert sfm["version"] == ["1", "0", "0"]
    views = {Path(v["path"]).relative_to(root.resolve()).as_posix(): v for v in sfm["views"]}
    assert set(views) == {"a/1.jpg", "a/2.jpg", "b/1.jpg"}
    assert (views["a/1.jpg"]["frameId"], views["a/2.jpg"]["frameId"]) == ("1", "2")
    assert (
        views["a/1.jpg"]["intrinsicId"] == views["a/2.jpg"]["intrinsicId"] != views["b/1.jpg"]["intrinsicId"]
    )
    by_id = {i["intrinsicId"]: i for i in sfm["intrinsics"]}
    pinhole = by_id[views["a/1.jpg"]["intrinsicId"]]
    assert (pinhole["type"], pinhole["initializationMode"], pinhole["locked"]) == (
        "pinhole",
        "calibrated",
        "1",
    )
    assert float(pinhole["pxFocalLength"]) == known["fx"]
    assert [float(v) for v in pinhole["principalPoint"]] == [known["cx"], known["cy"]]
    assert (float(pinhole["sensorWidth"]), pinhole["serialNumber"]) == (6.4, "n1/cam0")
    prior = by_id[views["b/1.jpg"]["intrinsicId"]]
    assert (prior["type"], prior["locked"], float(prior["pxFocalLength"])) == ("radial3", "0", 1.2 * 64)
    # Poses in the object's frame: the table turned the object by the capture's angle.
    poses = {p["poseId"]: p for p in sfm["poses"]}
    assert set(poses) == {views["a/1.jpg"]["poseId"], views["a/2.jpg"]["poseId"]}
    for name, angle in (("a/1.jpg", 90.0), ("a/2.jpg", 180.0)):
        found, centre = aliceVision_pose(poses[views[name]["poseId"]])
        np.testing.assert_allclose(found, ROTATION @ turn(angle), atol=1e-12)
        np.testing.assert_allclose(centre, -(ROTATION @ turn(angle)).T @ TRANSLATION, atol=1e-12)
        assert poses[views[name]["poseId"]]["pose"]["locked"] == "1"
    # Only the camera whose sensor is known goes into the sensor database.
    assert (root / "meshroom" / "sensor_db.txt").read_text() == "RaspberryPi;imx477;6.4;plantimager\n"
    listed = (root / "meshroom" / "image-list.txt").read_text().split()
    assert sorted(listed) == sorted(str((root / n).resolve()) for n in views)


def test_a_meshroom_camera_with_oblong_pixels_gets_two_focal_lengths(tmp_path):
    oblong = {**intrinsics((64, 48)), "model": "PINHOLE", "width": 64, "height": 48}
    oblong["fy"] = oblong["fx"] * 1.01
    root = write_dataset(
        tmp_path / "d", [image("1.jpg", intrinsics=oblong), image("2.jpg", camera="n2/cam0")]
    )
    export_meshroom(root)
    sfm = json.loads((root / "meshroom" / "cameraInit.sfm").read_text())
    assert sfm["version"] == ["1", "2", "0"]  # pxFocalLength as [fx, fy], for every camera
    focals = sorted(tuple(float(v) for v in i["pxFocalLength"]) for i in sfm["intrinsics"])
    assert focals == sorted([(oblong["fx"], oblong["fy"]), (1.2 * 64, 1.2 * 64)])
    assert "poses" not in sfm


def posed_dataset(root: Path, posed: int, unposed: int = 0) -> Path:
    """``posed`` images of a camera with a pose at as many table angles, then ``unposed`` without."""
    pose = {"R": ROTATION.tolist(), "t": TRANSLATION.tolist()}
    return write_dataset(
        root,
        [image(f"p{i}.jpg", capture_no=i + 1, pose=pose, position={"angle": 5.0 * i}) for i in range(posed)]
        + [image(f"u{i}.jpg", camera="n2/cam0", capture_no=i + 1) for i in range(unposed)],
    )


def test_auto_matching_is_spatial_when_every_image_has_a_pose_and_pairs_can_be_left_out(tmp_path):
    # With 4 images each has 3 others: 3 neighbours is every pair, 2 leaves pairs out.
    four = colmap_model(posed_dataset(tmp_path / "four", 4))
    assert matching_method(four, "auto", 2) == "spatial"
    assert matching_method(four, "auto", 3) == "exhaustive"
    assert matching_method(four, "auto") == "exhaustive"  # NEIGHBOURS is far more than 3
    assert NEIGHBOURS == 50
    assert matching_method(four, "exhaustive", 1) == "exhaustive"
    assert matching_method(four, "spatial", 3) == "spatial"  # asked for, even if it pairs all
    # One image without a pose: no position to match it by, so every pair.
    mixed = colmap_model(posed_dataset(tmp_path / "mixed", 4, 1))
    assert matching_method(mixed, "auto", 1) == "exhaustive"


@pytest.mark.parametrize(
    ("matching", "neighbours", "message"),
    [
        ("nearest", 5, "matching 'nearest' is not one of auto, exhaustive, spatial"),
        ("auto", 0, "neighbours must be a whole number of at least 1, not 0"),
        ("spatial", True, "neighbours must be a whole number of at least 1, not True"),
        ("auto", 2.5, "neighbours must be a whole number of at least 1, not 2.5"),
        (
            "spatial",
            5,
            r"spatial matching needs every image's recorded pose: 2 of 5 have none \(u0.jpg, u1.jpg\)",
        ),
    ],
)
def test_impossible_matchings_are_refused_before_anything_is_made(tmp_path, matching, neighbours, message):
    root = posed_dataset(tmp_path / "d", 3, 2)
    with pytest.raises(ValidationError, match=message):
        matching_method(colmap_model(root), matching, neighbours)
    with pytest.raises(ValidationError, match=message):
        reconstruct(root, matching=matching, neighbours=neighbours)
    assert not (root / "reconstruction").exists()


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (["--matching", "nearest"], 2, "'nearest' is not one of 'auto', 'exhaustive', 'spatial'"),
        (["--neighbours", "0"], 2, "0 is not in the range x>=1"),
        (["--neighbours", "many"], 2, "'many' is not a valid integer"),
        (["--matching", "spatial"], 1, "spatial matching needs every image's recorded pose: 2 of 5"),
    ],
)
def test_the_cli_refuses_impossible_matchings_naming_them(tmp_path, options, code, message):
    root = posed_dataset(tmp_path / "d", 3, 2)
    result = CliRunner().invoke(main, ["dataset", "reconstruct", *options, str(root)])
    assert result.exit_code == code and message in result.output, result.output
    assert not (root / "reconstruction").exists()


def test_images_that_share_no_features_make_no_model_and_say_why(tmp_path):
    root = write_dataset(tmp_path / "d", [image("1.jpg"), image("2.jpg", capture_no=2)])  # flat grey
    with pytest.raises(PlantImagerError, match="could not start a model from the 2 images"):
        reconstruct(root)


def calibrated_dataset(tmp_path: Path) -> Path:
    recorded = {**intrinsics((64, 48)), "model": "PINHOLE", "width": 64, "height": 48}
    return write_dataset(
        tmp_path / "d",
        [
            image("1.jpg", intrinsics=recorded, position={"angle": 30.0}),
            image("2.jpg", camera="n2/cam0", capture_no=1),
        ],
    )


def test_a_calibration_file_replaces_recorded_intrinsics_and_poses_and_is_recorded(tmp_path):
    root = calibrated_dataset(tmp_path)
    rotation, translation = camera_pose(10.0, 40.0)
    calibration_file = tmp_path / "rig.toml"
    calibration_file.write_text(
        '[cameras."n1/cam0"]\n'
        "intrinsics = { width = 64, height = 48, fx = 70.5, fy = 71.0, cx = 31.5, cy = 24.5 }\n"
        f"pose = {{ R = {rotation.tolist()}, t = {translation.tolist()} }}\n"
        '[cameras."n2/cam0"]\n'
        "intrinsics = { width = 64, height = 48, fx = 50, fy = 50, cx = 32, cy = 24 }\n"
    )
    calibration = load_calibration(calibration_file)
    model = export_colmap(root, calibration=calibration).model
    assert [(c.name, c.model, c.params) for c in model.cameras] == [
        ("n1/cam0", "PINHOLE", (70.5, 71.0, 31.5, 24.5)),
        ("n2/cam0", "PINHOLE", (50.0, 50.0, 32.0, 24.0)),  # was unknown: now a fixed pinhole
    ]
    np.testing.assert_allclose(model.images[0].pose[0], rotation @ turn(30.0))
    assert model.images[1].pose is None
    record = json.loads((root / "colmap" / "calibration.json").read_text())
    assert record["file"] == str(calibration_file) and record["cameras"] == ["n1/cam0", "n2/cam0"]
    assert len(record["sha256"]) == 64
    # The same as JSON; an export without it no longer claims one.
    as_json = tmp_path / "rig.json"
    as_json.write_text(
        json.dumps({"cameras": {"n2/cam0": {"intrinsics": calibration.cameras["n2/cam0"]["intrinsics"]}}})
    )
    assert load_calibration(as_json).cameras["n2/cam0"]["intrinsics"]["fx"] == 50.0
    export_colmap(root)
    assert not (root / "colmap" / "calibration.json").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[cameras."n9/cam0"]\nintrinsics = { width = 64, height = 48, fx = 1, fy = 1, cx = 0, cy = 0 }',
            r"does not have: n9/cam0 \(the dataset's cameras: n1/cam0, n2/cam0\)",
        ),
        (
            '[cameras."n1/cam0"]\nintrinsics = { width = 640, height = 480, fx = 1, fy = 1, cx = 0, cy = 0 }',
            "1.jpg: the calibration of n1/cam0 is for 640 x 480 images, this one is 64 x 48",
        ),
        (
            '[cameras."n2/cam0"]\nintrinsics = { width = 32, height = 48, fx = 1, fy = 1, cx = 0, cy = 0 }\n',
            "2.jpg: the calibration of n2/cam0 is for 32 x 48 images, this one is 64 x 48",
        ),
        (
            '[cameras."n1/cam0"]\npose = { R = [[1, 0], [0, 1]], t = [0, 0, 0] }\n',
            r"camera 'n1/cam0': a pose needs R of shape 3x3 and t of 3, got \(2, 2\)",
        ),
        (
            '[cameras."n1/cam0"]\npose = { R = [[1, 0, 0], [0, 1, 0], [0, 0, 1]], t = ["a", 0, 0] }\n',
            "pose R and t must be arrays of numbers",
        ),
        (
            '[cameras."n1/cam0"]\nintrinsics = { width = 64, height = 48, fx = -1, fy = 1, cx = 0, cy = 0 }',
            "intrinsics fx must be > 0",
        ),
        (
            '[cameras."n1/cam0"]\nintrinsics = { width = 64, height = 48, fx = 1, fy = 1, cx = 0 }\n',
            "intrinsics cy must be a finite number, got None",
        ),
        ('[cameras."n1/cam0"]\nintrinsics = { model = "OPENCV" }\n', "model must be PINHOLE, got 'OPENCV'"),
        ('[cameras."n1/cam0"]\nlens = "wide"\n', r"unknown key\(s\) lens \(expected intrinsics, pose\)"),
        ('[cameras."n1/cam0"]\n', "give intrinsics, a pose or both"),
        ("[rig]\nname = 'x'\n", r"has no \[cameras\] table"),
        ("cameras = [", "cannot be parsed"),
    ],
)
def test_bad_calibration_files_are_refused_naming_what_is_wrong(tmp_path, text, message):
    root = calibrated_dataset(tmp_path)
    calibration_file = tmp_path / "rig.toml"
    calibration_file.write_text(text)
    runner = CliRunner()
    for command in ("export", "reconstruct"):
        result = runner.invoke(main, ["dataset", command, "--calibration", str(calibration_file), str(root)])
        assert result.exit_code == 1, result.output
        assert re.search(message, " ".join(result.output.split())), result.output
    assert not (root / "colmap").exists() and not (root / "reconstruction").exists()


def test_a_calibration_file_that_cannot_be_read_is_named(tmp_path):
    with pytest.raises(ValidationError, match=r"calibration .*missing.toml cannot be read"):
        load_calibration(tmp_path / "missing.toml")


def test_in_a_dataset_with_scans_a_plain_captures_image_is_given_without_a_pose(tmp_path, caplog):
    pose = {"R": ROTATION.tolist(), "t": TRANSLATION.tolist()}
    scanned = [
        image(f"s{i}.jpg", capture_no=i, pose=pose, position={"scan": 1, "index": i, "angle": 90.0 * i})
        for i in (1, 2)
    ]
    # The table stood wherever the scan left it: the object's turn at this capture is unknown.
    plain = image("plain.jpg", capture_no=3, pose=pose, position=None)
    root = write_dataset(tmp_path / "mixed", [*scanned, plain])
    with caplog.at_level("WARNING", logger="plantimager.rig.colmap"):
        model = colmap_model(root)
    assert [i.name for i in model.images] == ["s1.jpg", "s2.jpg", "plain.jpg"]
    assert [i.name for i in model.posed] == ["s1.jpg", "s2.jpg"]
    assert "1 image(s) taken outside a scan, the turntable's angle unknown" in caplog.text
    assert "given without a pose (plain.jpg)" in caplog.text
    export_colmap(root)
    listed = (root / "colmap" / "images.txt").read_text()
    assert "s1.jpg" in listed and "plain.jpg" not in listed
    # Without any scan the object never turned: a plain capture's pose is its camera's.
    alone = write_dataset(tmp_path / "plain", [image("p.jpg", pose=pose, position=None)])
    assert [i.name for i in colmap_model(alone).posed] == ["p.jpg"]


@pytest.mark.parametrize("command", ["export", "reconstruct"])
def test_an_out_folder_under_a_file_is_refused_naming_the_file(tmp_path, command):
    root = posed_dataset(tmp_path / "d", 2)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(main, ["dataset", command, "--out", str(blocker / "x"), str(root)])
    assert result.exit_code == 1, result.output
    assert f"cannot use {blocker / 'x'} as a" in result.output and f"{blocker} is a file" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
