"""The dataset's disk fills up during a download: a clear error, nothing released, nothing lost.

The dataset lives on a tmpfs of a fixed size mounted for the test (it needs root, as on the
project's CI machines); a file then takes every free byte of it in the middle of a download.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import pytest

from plantimager.commons.errors import PlantImagerError, RigError
from plantimager.rig import CallLimits
from plantimager.rig.dataset import Dataset
from plantimager.rig.ledger import Ledger
from plantimager.rig.shot import ShotPlan
from soak.disk import Filler, Tmpfs

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted on ``tmp_path/disk``, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the project's CI runs the tests as root)")
    with Tmpfs(tmp_path / "disk", 4) as disk:
        yield disk.where


def test_a_full_disk_during_a_download_names_the_path_and_space_and_loses_nothing(
    spawn, make_rig, pending_of, small_disk
):
    nodes = [spawn(name).ready() for name in ("a", "b", "c")]
    dataset = small_disk / "session"
    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(3, 20)
    records = [rig.capture_all() for _ in range(3)]
    files = {s.file: s.sha256 for record in records for s in record.shots}
    assert len(files) == 9

    filler = Filler(small_disk)

    def fill_after_the_first_image(_event):
        if not filler.filled:
            filler.fill()

    with pytest.raises(RigError) as caught:
        rig.download_all(jobs=1, progress=fill_after_the_first_image)
    assert filler.filled > 0
    failures = caught.value.failures
    assert failures, "the full disk failed no image"
    for reason in failures.values():
        assert f"{dataset}" in reason, reason  # the path that could not be written
        assert "No space left on device" in reason, reason
        assert re.search(r"\d+(\.\d+)? [KMG]?i?B free of 4(\.0)? MiB", reason), reason  # the free space
    first = caught.value.report
    assert first.owed > 0

    # Nothing that is not safely in the dataset was released from its node.
    with Dataset(dataset, readonly=True) as recorded:
        kept = {entry["file"] for entry in recorded.manifest()["images"]}
    held = pending_of(nodes)
    for record in records:
        for shot in record.shots:
            if shot.file not in kept:
                assert shot.camera_index in held[shot.node].get(record.data_code, []), shot.file

    filler.free()
    report = rig.download_all()
    assert not report.failures and report.owed == 0
    assert set(report.files).isdisjoint(first.files)  # nothing fetched twice
    manifest = json.loads((dataset / "manifest.json").read_text())
    listed = [entry["file"] for entry in manifest["images"]]
    assert sorted(listed) == sorted(files)  # every image once
    on_disk = sorted(
        p.name for p in dataset.iterdir() if not p.name.startswith(".") and p.name != "manifest.json"
    )
    assert on_disk == sorted(files)
    for name, sha in files.items():
        assert hashlib.sha256((dataset / name).read_bytes()).hexdigest() == sha
    assert pending_of(nodes) == {node.name: {} for node in nodes}


def test_a_ledger_record_that_does_not_fit_says_why_and_leaves_no_partial_line(small_disk):
    path = small_disk / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.append({"kind": "first"})
    filler = Filler(small_disk)
    filler.fill()  # the ledger's last page still has room: the next write is cut short, then fails
    with pytest.raises(PlantImagerError) as caught:
        ledger.append({"kind": "big", "blob": "x" * 100_000})
    text = str(caught.value)
    assert str(path) in text and "No space left on device" in text and "B free of 4.0 MiB" in text
    assert path.read_bytes() == b'{"kind":"first"}\n'
    filler.free()
    ledger.append({"kind": "after"})
    ledger.close()
    assert [r["kind"] for r in Ledger(path, readonly=True).records] == ["first", "after"]


def test_a_manifest_that_cannot_be_written_does_not_fail_what_the_ledger_holds(small_disk):
    dataset = Dataset(small_disk / "session")
    try:
        plan = ShotPlan("n/cam0", "n", "id1", 0, "cam0", "jpeg")
        (shot,) = dataset.begin_capture([plan])
        filler = Filler(small_disk)
        filler.fill()
        dataset.mark_lost(shot, "gone")  # recorded in the ledger; the manifest rewrite fails, logged
        with pytest.raises(PlantImagerError) as caught:
            dataset.flush()
        text = str(caught.value)
        assert str(dataset.root / "manifest.json") in text and "No space left on device" in text
        assert "free of 4.0 MiB" in text
        assert dataset.flush(strict=False) == text
        filler.free()
        dataset.flush()
        manifest = json.loads((dataset.root / "manifest.json").read_text())
        assert manifest["captures"][0]["lost"] == {"n/cam0": "gone"}
    finally:
        dataset.close()


def fill_up(disk, ledger):
    """Take every free byte of ``disk``, the room left in the ledger's last block too (blank lines)."""
    filler = Filler(disk)
    filler.fill()
    with open(ledger, "ab", buffering=0) as fh:
        for _ in range(1 << 16):  # bounded: a block is at most a few KiB
            try:
                fh.write(b"\n")
            except OSError:
                break
    return filler


def test_a_disk_full_when_releases_are_recorded_fails_the_images_not_the_download(
    spawn, make_rig, pending_of, small_disk
):
    nodes = [spawn(name).ready() for name in ("a", "b")]
    dataset = small_disk / "session"
    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(2, 20)
    record = rig.capture_all()
    fillers = []

    def fill_after_the_first_image(_event):
        if not fillers:
            fillers.append(fill_up(small_disk, dataset / ".rig" / "ledger.jsonl"))

    with pytest.raises(RigError) as caught:  # not a bare error that loses the report
        rig.download_all(jobs=1, progress=fill_after_the_first_image)
    first = caught.value.report
    assert len(first.files) == 1 and first.owed == 1
    (failed,) = caught.value.failures.values()
    assert "No space left on device" in failed
    fillers[0].free()
    report = rig.download_all()
    assert not report.failures and report.owed == 0 and len(report.files) == 1
    assert set(report.files).isdisjoint(first.files)
    assert sorted(first.files + report.files) == sorted(s.file for s in record.shots)
    assert pending_of(nodes) == {"a": {}, "b": {}}
    with Dataset(dataset, readonly=True) as done:
        assert done.owed() == []


def test_an_image_found_gone_on_a_full_disk_stays_owed_until_that_can_be_recorded(
    spawn, make_rig, small_disk
):
    spawn("a").ready()
    dataset = small_disk / "session"
    rig = make_rig(dataset=dataset, limits=CallLimits(connect=2000, call=2000, unknown_result=0))
    assert rig.wait_for_cameras(1, 20)
    (cam,) = rig.cameras()
    # A capture recorded but never sent (as if its node had died first): the node does not hold it.
    rig.dataset.begin_capture([ShotPlan(cam.key, cam.node, cam.node_id, cam.index, cam.name, "jpeg")])
    filler = fill_up(small_disk, dataset / ".rig" / "ledger.jsonl")
    with pytest.raises(RigError) as caught:
        rig.download_all()
    reason = caught.value.failures["a/cam0"]
    assert "the capture never reached the node" in reason and "could not be recorded" in reason
    assert "No space left on device" in reason and caught.value.report.owed == 1
    filler.free()
    with pytest.raises(RigError) as caught:
        rig.download_all()
    assert caught.value.failures["a/cam0"].startswith("lost: the capture never reached the node")
    assert rig.download_all().owed == 0
