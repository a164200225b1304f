"""Failures during a download lose nothing: a node killed, the controller killed, both restarted."""

from __future__ import annotations

import hashlib
import json
import os
import signal

import pytest

from plantimager.commons.errors import RigError
from plantimager.rig import CallLimits
from plantimager.rig.dataset import Dataset
from plantimager.rig.shot import ShotPlan

pytestmark = pytest.mark.timeout(60)


def check_dataset(folder, count):
    """Every image of the manifest is there once, with its checksum; returns the file names."""
    manifest = json.loads((folder / "manifest.json").read_text())
    files = [entry["file"] for entry in manifest["images"]]
    assert len(files) == len(set(files)) == count
    on_disk = sorted(
        p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name != "manifest.json"
    )
    assert on_disk == sorted(files)
    for entry in manifest["images"]:
        assert hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    return files


def test_a_node_killed_before_a_download_fails_alone_and_delivers_after_restart(
    spawn, make_rig, pending_of, tmp_path
):
    nodes = {name: spawn(name, cameras=2 if name == "b" else 1) for name in ("a", "b", "c")}
    for node in nodes.values():
        node.ready()
    dataset = tmp_path / "session"
    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(4, 20)
    records = [rig.capture_all() for _ in range(4)]
    assert all(len(r.shots) == 4 for r in records)

    # Killed outright just before the download (the rig still takes it for ready): its transfers
    # fail, the others' go on. (Nodes killed in the middle of transfers: the chaos soak, tests/soak.)
    os.kill(nodes["b"].pid, signal.SIGKILL)
    assert nodes["b"].popen.wait(10) == -signal.SIGKILL
    with pytest.raises(RigError) as caught:
        rig.download_all(jobs=2)
    assert set(caught.value.failures) == {"b/cam0", "b/cam1"}
    assert all("node b" in reason for reason in caught.value.failures.values())
    report = caught.value.report
    assert report.owed == 8 and not any(f.startswith("idb_") for f in report.files)
    assert pending_of([nodes["a"], nodes["c"]]) == {"a": {}, "c": {}}
    first_files = set(report.files)

    old_address = nodes["b"].address
    restarted = spawn("b", cameras=2).ready()  # same spool and state folder
    assert restarted.address != old_address
    assert rig.wait_for(
        lambda r: any(
            n.name == "b" and n.address == restarted.address and n.state == "ready" for n in r.nodes()
        ),
        20,
    )
    report = rig.download_all()
    assert not report.failures and report.owed == 0
    assert first_files.isdisjoint(report.files)  # nothing fetched twice
    files = check_dataset(dataset, 16)
    assert sorted(files) == sorted(s.file for r in records for s in r.shots)
    assert pending_of([nodes["a"], restarted, nodes["c"]]) == {"a": {}, "b": {}, "c": {}}


def test_a_controller_killed_mid_download_resumes_without_loss(
    spawn, registry, run_cli, pending_of, tmp_path
):
    nodes = [spawn("x", cameras=2).ready(), spawn("y").ready()]
    dataset = tmp_path / "session"
    common = ["--registry", registry.url, "--dataset", str(dataset), "--expect", "3", "--wait", "20"]
    code, output = run_cli("rig", "capture", *common, "--count", "3").finish()
    assert code == 0, output
    assert "capture 3: 3 image(s)" in output

    flag = tmp_path / "go-on"
    pause = {"PLANTIMAGER_RIG_PAUSE_AFTER": f"2:{flag}"}
    controller = run_cli("rig", "download", *common, "--jobs", "1", env=pause)
    controller.wait_for("^paused after 2 images$")
    controller.kill()
    assert controller.popen.returncode == -signal.SIGKILL
    # What was recorded before the kill is intact. Files written after the last record are whole
    # (their names are given only once their bytes are on disk and checked): the next download
    # fetches those images again and keeps the files.
    with Dataset(dataset, readonly=True) as recorded:
        manifest, owed = recorded.manifest(), recorded.owed()
    files = [entry["file"] for entry in manifest["images"]]
    assert len(files) == len(set(files)) == 2
    shas = {entry["file"]: entry["sha256"] for entry in manifest["images"]}
    shas.update({shot.file: shot.meta["sha256"] for shot in owed if shot.status == "stored"})
    on_disk = [p.name for p in dataset.iterdir() if not p.name.startswith(".") and p.name != "manifest.json"]
    assert set(files) <= set(on_disk) <= set(shas)
    for name in on_disk:
        assert hashlib.sha256((dataset / name).read_bytes()).hexdigest() == shas[name]

    code, output = run_cli("rig", "download", *common, "--json").finish()
    assert code == 0, output
    report, _ = json.JSONDecoder().raw_decode(output[output.index("{") :])
    assert len(report["files"]) == 7 and report["owed"] == 0 and report["failures"] == {}
    check_dataset(dataset, 9)
    assert pending_of(nodes) == {"x": {}, "y": {}}
    assert not flag.exists()


def flip_first_byte(path):
    """Change one byte of a file in place (same size), as a failing card would; returns a restorer."""
    data = path.read_bytes()
    path.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    return lambda: path.write_bytes(data)


def stored_image(node, data_code):
    """The path of the one image a one-camera node holds under ``data_code``."""
    (image,) = [p for p in (node.home / "spool" / data_code).iterdir() if not p.name.endswith(".json")]
    return image


def test_a_corrupted_transfer_is_refused_and_stays_owed_until_the_bytes_are_right(
    spawn, make_rig, pending_of, tmp_path
):
    nodes = [spawn("a").ready(), spawn("b").ready()]
    dataset = tmp_path / "session"
    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(2, 20)
    record = rig.capture_all()
    restore = flip_first_byte(stored_image(nodes[0], record.data_code))

    with pytest.raises(RigError) as caught:
        rig.download_all()
    assert list(caught.value.failures) == ["a/cam0"]
    assert "xxh3_128 mismatch" in caught.value.failures["a/cam0"]
    assert caught.value.report.owed == 1
    assert pending_of(nodes) == {"a": {record.data_code: [0]}, "b": {}}  # not released
    assert check_dataset(dataset, 1) == ["idb_d1_cam0.jpeg"]  # nothing of the bad bytes was kept

    restore()
    report = rig.download_all()
    assert report.files == ("ida_d1_cam0.jpeg",) and report.owed == 0
    check_dataset(dataset, 2)
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert all(len(entry["xxh3_128"]) == 32 for entry in manifest["images"])
    assert pending_of(nodes) == {"a": {}, "b": {}}


def test_images_stored_without_a_quick_checksum_are_checked_with_sha256(
    spawn, make_rig, pending_of, tmp_path
):
    # A node that stored its images before it recorded XXH3-128 checksums: the controller checks
    # what it receives against the SHA-256 instead.
    node = spawn("a").ready()
    dataset = tmp_path / "session"
    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(1, 20)
    record = rig.capture_all()
    assert node.stop() == 0
    meta_file = stored_image(node, record.data_code).with_suffix(".json")
    meta = json.loads(meta_file.read_text())
    del meta["xxh3_128"]
    meta_file.write_text(json.dumps(meta))
    restore = flip_first_byte(stored_image(node, record.data_code))
    node = spawn("a").ready()  # same spool: it reads the edited record
    assert rig.wait_for(
        lambda r: any(n.address == node.address and n.state == "ready" for n in r.nodes()), 20
    )

    with pytest.raises(RigError) as caught:
        rig.download_all()
    assert "sha256 mismatch" in caught.value.failures["a/cam0"]
    assert pending_of([node]) == {"a": {record.data_code: [0]}}

    restore()
    assert rig.download_all().owed == 0
    check_dataset(dataset, 1)


def test_a_file_in_the_way_fails_that_image_alone_and_it_is_not_released(
    spawn, make_rig, pending_of, tmp_path
):
    nodes = [spawn("a").ready(), spawn("b").ready(), spawn("c").ready()]
    dataset = tmp_path / "session"
    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(3, 20)
    record = rig.capture_all()
    (dataset / "idb_d1_cam0.jpeg").write_bytes(b"someone else's file")

    with pytest.raises(RigError) as caught:
        rig.download_all()
    assert list(caught.value.failures) == ["b/cam0"]
    assert "already exists and holds other bytes" in caught.value.failures["b/cam0"]
    assert sorted(caught.value.report.files) == ["ida_d1_cam0.jpeg", "idc_d1_cam0.jpeg"]
    assert (dataset / "idb_d1_cam0.jpeg").read_bytes() == b"someone else's file"
    assert pending_of(nodes) == {"a": {}, "b": {record.data_code: [0]}, "c": {}}
    assert not list(dataset.glob(".tmp-*"))


def test_an_image_whose_capture_never_reached_its_node_is_given_up_after_the_rigs_limit(
    spawn, make_rig, tmp_path
):
    spawn("a").ready()
    dataset = tmp_path / "session"
    patient = make_rig(dataset=dataset)
    assert patient.wait_for_cameras(1, 20)
    (cam,) = patient.cameras()
    # Recorded as a controller records a capture before sending it, but never sent: as if the
    # node had died before the command reached it.
    plan = ShotPlan(cam.key, cam.node, cam.node_id, cam.index, cam.name, "jpeg")
    patient.dataset.begin_capture([plan])
    with pytest.raises(RigError) as caught:
        patient.download_all()
    assert "not stored on the node yet" in caught.value.failures["a/cam0"]
    assert caught.value.report.owed == 1
    patient.close()  # lets go of the dataset

    hasty = make_rig(dataset=dataset, limits=CallLimits(connect=2000, call=2000, unknown_result=0))
    assert hasty.wait_for_cameras(1, 20)
    with pytest.raises(RigError) as caught:
        hasty.download_all()
    assert caught.value.failures["a/cam0"].startswith("lost: the capture never reached the node")
    assert hasty.download_all().owed == 0  # taken as never captured: not asked for again
