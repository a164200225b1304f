"""Bad input is refused with a clear error before any camera fires (no node is sent start_capture)."""

from __future__ import annotations

import pytest

from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.rig import Dataset

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def two_nodes(spawn):
    nodes = [spawn("good"), spawn("other", cameras=2)]
    return [node.ready() for node in nodes]


def test_unknown_camera_names_are_refused_before_capture(two_nodes, make_rig, pending_of, tmp_path):
    rig = make_rig(dataset=tmp_path / "s")
    assert rig.wait_for_cameras(3, 20)
    with pytest.raises(
        ValidationError, match=r"unknown camera\(s\): 'good/cam7', 'nobody'; the rig has: good/cam0"
    ):
        rig.capture(["good/cam0", "good/cam7", "nobody"])
    with pytest.raises(ValidationError, match="no camera given"):
        rig.capture([])
    with pytest.raises(ValidationError, match="unknown camera"):
        rig.configure("nobody/cam0", rotation=90)
    with pytest.raises(ValidationError, match="rotation must be one of 0, 90, 180, 270"):
        rig.configure_all(rotation=45)
    with pytest.raises(
        ValidationError, match=r"two whole numbers \(width, height\) from 64 to 65535, got \(10, 10\)"
    ):
        rig.configure_all(resolution=(10, 10))  # as the web page says, not silently clamped by the camera
    with pytest.raises(ValidationError, match="unknown camera"):
        rig.shutdown(["nobody"])
    assert pending_of(two_nodes) == {"good": {}, "other": {}}
    assert all(c.rotation == 0 for c in rig.cameras())
    assert not (tmp_path / "s").exists()  # checked before the dataset was even created


def test_a_dataset_that_cannot_be_written_is_refused_before_capture(
    two_nodes, make_rig, pending_of, tmp_path
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rig = make_rig(dataset=blocker / "session")
    assert rig.wait_for_cameras(3, 20)
    with pytest.raises(
        ValidationError, match=rf"cannot use {blocker}/session as a dataset folder: {blocker} is a file"
    ):
        rig.capture_all()
    with pytest.raises(ValidationError, match=f"{blocker} is a file"):
        rig.download_all(blocker / "elsewhere")
    with pytest.raises(ValidationError, match="is not a dataset: nothing was ever captured into it"):
        rig.download_all(tmp_path)
    assert pending_of(two_nodes) == {"good": {}, "other": {}}


def test_a_dataset_used_by_another_controller_is_refused_before_capture(
    two_nodes, make_rig, pending_of, tmp_path
):
    with Dataset(tmp_path / "s"):
        rig = make_rig(dataset=tmp_path / "s")
        assert rig.wait_for_cameras(3, 20)
        with pytest.raises(PlantImagerError, match="is in use by another controller"):
            rig.capture_all()
    assert pending_of(two_nodes) == {"good": {}, "other": {}}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("../{capture_no}_{camera_no}_{server_id}.{ext}", "contains a path separator"),
        ("{server_id}/{capture_no}_{camera_no}.{ext}", "contains a path separator"),
        ("..{server_id}_{capture_no}_{camera_no}", r"contains '\.\.'"),
        ("{capture_no}.{ext}", "gives different cameras of a node the same name"),
        ("{camera.__class__}{capture_no}", "unknown field 'camera.__class__'"),
        ("manifest.json", "is reserved for the dataset's manifest"),
        ("{capture_no}{camera_no}{server_id:d}", "cannot be formatted: Unknown format code 'd'"),
    ],
)
def test_templates_that_leave_the_dataset_are_refused_at_once(make_rig, tmp_path, template, message):
    with pytest.raises(ValidationError, match=message):
        make_rig(dataset=tmp_path / "s", template=template)


def test_a_node_name_that_would_leave_the_dataset_is_refused_before_capture(
    spawn, make_rig, pending_of, tmp_path
):
    nodes = [spawn("fine").ready(), spawn("up..there").ready()]
    rig = make_rig(dataset=tmp_path / "s")
    assert rig.wait_for_cameras(2, 20)
    with pytest.raises(ValidationError, match=r"'idup\.\.there_d1_cam0\.jpeg' contains '\.\.'"):
        rig.capture_all()
    assert pending_of(nodes) == {"fine": {}, "up..there": {}}
    assert rig.capture(["fine"]).shots[0].file == "idfine_d1_cam0.jpeg"  # nothing was taken before


def test_the_cli_reports_bad_input_with_exit_status_1(two_nodes, registry, run_cli, pending_of, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    captures = ["--captures", str(tmp_path / "c")]
    cases = [
        (["capture", "nobody", *captures], "unknown camera(s): 'nobody'"),
        (["capture", "--dataset", str(blocker / "s")], f"{blocker} is a file"),
        (["capture", "--template", "../{capture_no}", *captures], "contains a path separator"),
        (["download", "--captures", str(tmp_path / "empty")], "no session under"),
        (["config", "--rotation", "90", "nobody"], "unknown camera(s): 'nobody'"),
        (["config", "--resolution", "10x10"], "from 64 to 65535"),
    ]
    processes = [run_cli("rig", args[0], "--registry", registry.url, *args[1:]) for args, _ in cases]
    for process, (_args, message) in zip(processes, cases, strict=True):
        code, output = process.finish()
        assert code == 1, output
        assert message in output
    assert pending_of(two_nodes) == {"good": {}, "other": {}}
