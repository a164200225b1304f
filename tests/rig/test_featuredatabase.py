"""The feature database kept between reconstructions: what is reused, what is redone, and when."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pycolmap
import pytest
from click.testing import CliRunner
from PIL import Image

from plantimager.cli.main import main
from plantimager.commons.errors import PlantImagerError
from plantimager.rig.colmap import colmap_model
from plantimager.rig.colmaprig import rig_layout
from plantimager.rig.featuredatabase import FeatureDatabase, features_record, matches_record
from plantimager.rig.reconstruction import reconstruct

from .test_colmap import ROTATION, TRANSLATION, image, posed_dataset, write_dataset


def records(root, method="exhaustive", neighbours=50):
    model = colmap_model(root)
    layout = rig_layout(model, root / "reconstruction" / "images")
    priors = model.centres() if method == "spatial" else None
    return matches_record(features_record(pycolmap, model, layout), method, neighbours, priors)


def made_database(store: FeatureDatabase) -> None:
    """A database as extraction and matching leave one: two images, 3 keypoints, a match, a prior."""
    store.path.parent.mkdir(parents=True, exist_ok=True)
    with pycolmap.Database.open(str(store.path)) as db:
        camera = db.write_camera(
            pycolmap.Camera(model="PINHOLE", width=64, height=48, params=[50, 50, 32, 24])
        )
        first, second = (db.write_image(pycolmap.Image(name=n, camera_id=camera)) for n in ("a.jpg", "b.jpg"))
        db.write_keypoints(first, np.zeros((3, 2), dtype=np.float32))
        db.write_matches(first, second, np.array([[0, 1]], dtype=np.uint32))
        prior = pycolmap.PosePrior(np.zeros((3, 1)), pycolmap.PosePriorCoordinateSystem.CARTESIAN)
        db.write_pose_prior(first, prior)


def grow(root, entries: list[dict], texture: np.random.Generator | None = None) -> None:
    """Add images to a dataset as a resumed scan does: new files and entries, the others untouched."""
    manifest = json.loads((root / "manifest.json").read_text())
    for entry in entries:
        pixels = texture.integers(0, 256, (240, 320), dtype=np.uint8) if texture else np.full((48, 64), 90)
        Image.fromarray(pixels.astype(np.uint8)).convert("RGB").save(root / entry["file"])
    manifest["images"] += entries
    (root / "manifest.json").write_text(json.dumps(manifest))


def posed(index: int) -> dict:
    """The ``index``-th image of :func:`posed_dataset`."""
    pose = {"R": ROTATION.tolist(), "t": TRANSLATION.tolist()}
    return image(f"p{index}.jpg", capture_no=index + 1, pose=pose, position={"angle": 5.0 * index})


def contents(store: FeatureDatabase) -> tuple[int, int, int, int]:
    with pycolmap.Database.open(str(store.path)) as db:
        return db.num_images(), db.num_keypoints(), db.num_matched_image_pairs(), db.num_pose_priors()


def test_the_records_change_with_the_images_cameras_and_matching(tmp_path):
    root = posed_dataset(tmp_path / "d", 4)
    base = records(root)
    assert records(root) == base  # the same inputs, the same record
    assert records(root, "spatial", 2) != records(root, "spatial", 3) != base
    assert records(root, "spatial", 2)["images"] == base["images"]  # the features' part is shared
    # An image written again (new bytes, new time) changes the features' record.
    path = root / "p1.jpg"
    stat = path.stat()
    path.write_bytes(path.read_bytes() + b"\0")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert records(root)["images"] != base["images"]
    # Other intrinsics for the same images change it too.
    manifest = json.loads((root / "manifest.json").read_text())
    for entry in manifest["images"]:
        entry["intrinsics"] = {
            "model": "PINHOLE",
            "width": 64,
            "height": 48,
            "fx": 40,
            "fy": 40,
            "cx": 32,
            "cy": 24,
        }
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert records(root)["cameras"] != base["cameras"]


def test_what_still_fits_is_kept_and_the_rest_removed(tmp_path):
    root = posed_dataset(tmp_path / "d", 4)
    store = FeatureDatabase(root / "reconstruction")
    exhaustive, spatial = records(root), records(root, "spatial", 2)
    assert store.keep(pycolmap, exhaustive) == ()  # nothing there yet
    made_database(store)
    assert store.keep(pycolmap, exhaustive) == ()  # a database without a record is not trusted
    assert not store.path.exists()

    made_database(store)
    store.record(exhaustive)
    assert store.keep(pycolmap, exhaustive) == ("features", "matches")
    assert contents(store) == (2, 3, 1, 1)  # untouched
    assert store.pairs(pycolmap) == 1

    # Another matching: the features stay, the matches and position priors go, and so does the
    # record until matching has run again (an interrupted run must not leave a stale one).
    assert store.keep(pycolmap, spatial) == ("features",)
    assert contents(store) == (2, 3, 0, 0)
    assert not store.record_path.exists()
    store.record(spatial)
    assert store.keep(pycolmap, spatial) == ("features", "matches")

    # Asked for a fresh start, nothing is kept.
    assert store.keep(pycolmap, spatial, fresh=True) == ()
    assert not store.path.exists() and not store.record_path.exists()


def test_other_features_or_an_unreadable_record_start_again(tmp_path, caplog):
    root = posed_dataset(tmp_path / "d", 4)
    store = FeatureDatabase(root / "reconstruction")
    made_database(store)
    store.record(records(root))
    (root / "p2.jpg").write_bytes((root / "p2.jpg").read_bytes() + b"\0")  # one image changed
    assert store.keep(pycolmap, records(root)) == ()
    assert not store.path.exists() and not store.record_path.exists()

    made_database(store)
    store.record_path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="plantimager.rig.featuredatabase"):
        assert store.keep(pycolmap, records(root)) == ()
    assert f"{store.record_path} is unreadable" in caplog.text
    assert not store.path.exists()


def test_a_second_run_reuses_features_and_matches_and_a_fresh_one_does_not(tmp_path, monkeypatch):
    # Flat grey images: extraction and matching run for real, then no model can start.
    root = write_dataset(tmp_path / "d", [image("1.jpg"), image("2.jpg", capture_no=2)])
    with pytest.raises(PlantImagerError, match="could not start a model"):
        reconstruct(root)
    store = FeatureDatabase(root / "reconstruction")
    assert json.loads(store.record_path.read_text())["pairing"] == {"method": "exhaustive"}
    assert contents(store)[0] == 2

    def refuse(*args, **kwargs):
        raise AssertionError("features or matches made again")

    monkeypatch.setattr(pycolmap, "extract_features", refuse)
    monkeypatch.setattr(pycolmap, "match_exhaustive", refuse)
    with pytest.raises(PlantImagerError, match="could not start a model"):
        reconstruct(root)  # the mapper ran again on what the first run made
    runner = CliRunner()
    result = runner.invoke(main, ["dataset", "reconstruct", str(root)])
    assert result.exit_code == 1 and "could not start a model" in result.output, result.output
    result = runner.invoke(main, ["dataset", "reconstruct", "--fresh", str(root)])
    assert isinstance(result.exception, AssertionError) and "made again" in str(result.exception)


def test_a_dataset_that_only_gained_images_keeps_the_features_of_those_it_had(tmp_path):
    root = posed_dataset(tmp_path / "d", 4)
    store = FeatureDatabase(root / "reconstruction")
    made_database(store)
    store.record(records(root))
    grow(root, [posed(4), posed(5)])  # two more positions of the same camera
    assert store.keep(pycolmap, records(root)) == ("features",)
    assert contents(store) == (2, 3, 0, 0)  # the features stay; the matches and priors go
    assert not store.record_path.exists()  # until matching has run again

    # Lost an image, or one of them changed: not a dataset that only grew; everything again.
    for change in ("lose", "rewrite"):
        store.path.unlink(missing_ok=True)
        made_database(store)
        store.record(records(root))
        manifest = json.loads((root / "manifest.json").read_text())
        if change == "lose":
            manifest["images"] = [entry for entry in manifest["images"] if entry["file"] != "p1.jpg"]
            (root / "manifest.json").write_text(json.dumps(manifest))
        else:
            stat = (root / "p2.jpg").stat()
            os.utime(root / "p2.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        grow(root, [posed(6 if change == "lose" else 7)])
        assert store.keep(pycolmap, records(root)) == (), change
        assert not store.path.exists()


def test_only_the_new_images_features_are_extracted_each_into_its_cameras_entry(tmp_path, monkeypatch):
    # Two cameras, two captures; images of noise (features, but nothing to map: the run ends there).
    texture = np.random.default_rng(5)
    root = write_dataset(tmp_path / "d", [])
    grow(root, [image(f"{cam}{no}.jpg", f"{cam}/cam0", no) for cam in ("a", "b") for no in (1, 2)], texture)
    with pytest.raises(PlantImagerError, match="could not start a model"):
        reconstruct(root)
    store = FeatureDatabase(root / "reconstruction")
    with pycolmap.Database.open(str(store.path)) as db:
        before = {im.name: (im.camera_id, db.read_keypoints(im.image_id)) for im in db.read_all_images()}
    assert len(before) == 4 and len({camera for camera, _ in before.values()}) == 2

    grow(root, [image(f"{cam}3.jpg", f"{cam}/cam0", 3) for cam in ("a", "b")], texture)  # a third capture
    extracted, steps, real = [], [], pycolmap.extract_features

    def spy(database, folder, *, image_names, **options):
        extracted.append(list(image_names))
        return real(database, folder, image_names=image_names, **options)

    monkeypatch.setattr(pycolmap, "extract_features", spy)
    with pytest.raises(PlantImagerError, match="could not start a model"):
        reconstruct(root, progress=lambda *step: steps.append(step))
    layout = rig_layout(colmap_model(root), tmp_path / "layout")
    new = sorted(name for name, source in layout.names.items() if source in ("a3.jpg", "b3.jpg"))
    assert sorted(name for names in extracted for name in names) == new  # one call per camera
    assert [s for s in steps if s[0] == "features"] == [
        ("features", 4, 6),
        ("features", 5, 6),
        ("features", 6, 6),
    ]
    with pycolmap.Database.open(str(store.path)) as db:
        after = {im.name: (im.camera_id, db.read_keypoints(im.image_id)) for im in db.read_all_images()}
        assert db.num_cameras() == 2 and len(after) == 6
        for name, (camera, keypoints) in before.items():  # untouched
            assert after[name][0] == camera
            np.testing.assert_array_equal(after[name][1], keypoints)
        for name in new:  # on the camera of the same folder's (the same camera's) earlier images
            siblings = {before[other][0] for other in before if other.split("/")[0] == name.split("/")[0]}
            assert siblings == {after[name][0]} and len(after[name][1]) > 0
    assert json.loads(store.record_path.read_text())["images"] == records(root)["images"]

    extracted.clear()
    with pytest.raises(PlantImagerError, match="could not start a model"):
        reconstruct(root)  # nothing new: nothing extracted
    assert extracted == []
