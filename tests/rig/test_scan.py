"""Scans: every position taken once, every image downloaded once, even across a controller killed mid-scan."""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from pathlib import Path

import pytest

from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.rig.shot import ShotPlan

pytestmark = pytest.mark.timeout(120)

#: Each simulated camera renders the plant at the still size, as its turntable turns it.
ON_TABLE = ("--backend-option", "turntable=table", "--backend-option", "render_size=[160,120]")


def nodes_on_table(spawn, count: int) -> list:
    started = [spawn(f"n{i}", extra=ON_TABLE) for i in range(1, count + 1)]
    return [node.ready() for node in started]


def ledger(dataset: Path) -> list[dict]:
    return [json.loads(line) for line in (dataset / ".rig" / "ledger.jsonl").read_text().splitlines() if line]


def check_complete(dataset: Path, positions: int, cameras: int) -> dict:
    """Every position taken by exactly one capture, every image received once and on disk."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    taken = Counter(c["position"]["index"] for c in manifest["captures"] if c["position"] and not c["lost"])
    assert taken == dict.fromkeys(range(positions), 1), manifest["captures"]
    images = manifest["images"]
    assert len(images) == positions * cameras
    assert len({image["file"] for image in images}) == len(images)
    assert all((dataset / image["file"]).stat().st_size > 0 for image in images)
    for image in images:  # the angle each camera saw as it fired is the one the scan recorded
        assert image["settings"]["controls"]["turntable_deg"] == image["position"]["angle"]
    received = Counter((r["capture_no"], r["camera"]) for r in ledger(dataset) if r["kind"] == "received")
    assert set(received.values()) == {1} and len(received) == len(images)
    return manifest


def test_a_scan_takes_each_position_once_and_downloads_during_the_moves(
    make_rig, spawn, table, pending_of, tmp_path
):
    nodes = nodes_on_table(spawn, 2)
    rig = make_rig(dataset=tmp_path / "scan")
    assert rig.wait_for_cameras(2, 20)
    steps = []
    report = rig.scan(positions=4, turntable="table", progress=steps.append)
    assert report.complete and sorted(report.captured) == [0, 1, 2, 3] and report.already == []
    assert report.late == {}  # the table turned on only once every camera had fired
    manifest = check_complete(tmp_path / "scan", 4, 2)
    assert sorted({image["position"]["angle"] for image in manifest["images"]}) == [0.0, 90.0, 180.0, 270.0]
    assert [s.phase for s in steps if s.phase != "download"] == ["moving", "captured"] * 4
    assert sum(s.download.ok for s in steps if s.download is not None) == 8
    assert pending_of(nodes) == {"n1": {}, "n2": {}}  # every image released
    again = rig.scan(positions=4, turntable="table")  # a finished scan is not taken again
    assert again.complete and again.captured == {} and again.already == [0, 1, 2, 3]
    assert len(json.loads((tmp_path / "scan" / "manifest.json").read_text())["captures"]) == 4
    new = rig.scan(positions=2, turntable="table", new=True)
    assert new.scan == 2 and sorted(new.captured) == [0, 1]


def test_without_a_turntable_a_plan_of_one_position_is_a_plain_capture(make_rig, spawn, tmp_path):
    spawn("n1").ready()
    rig = make_rig(dataset=tmp_path / "one")
    assert rig.wait_for_cameras(1, 20)
    report = rig.scan(positions=1)
    assert report.complete and report.captured == {0: 1}
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert [c["position"] for c in manifest["captures"]] == [{"scan": 1, "index": 0, "of": 1, "angle": None}]
    assert len(manifest["images"]) == 1


@pytest.mark.parametrize(
    ("positions", "turntable", "message"),
    [
        (0, "table", "positions must be between 1 and 3600, got 0"),
        (-3, "table", "positions must be between 1 and 3600"),
        (100_000, "table", "positions must be between 1 and 3600"),
        (True, "table", "positions must be a count"),
        ("many", "table", "positions must be a count"),
        ([0.0, 360.0], "table", "must differ"),
        ([0.0, math.nan], "table", "finite"),
        (3, "nope", r"no turntable named 'nope' is registered with .* \(turntables: table\)"),
    ],
)
def test_bad_scans_are_refused_and_nothing_is_captured(
    make_rig, spawn, table, pending_of, tmp_path, positions, turntable, message
):
    nodes = nodes_on_table(spawn, 1)
    rig = make_rig(dataset=tmp_path / "bad")
    assert rig.wait_for_cameras(1, 20)
    with pytest.raises(ValidationError, match=message):
        rig.scan(positions=positions, turntable=turntable)
    assert rig.dataset.manifest()["captures"] == []
    assert pending_of(nodes) == {"n1": {}}


def test_several_positions_need_a_turntable(make_rig, spawn, tmp_path):
    spawn("n1").ready()
    rig = make_rig(dataset=tmp_path / "none")
    assert rig.wait_for_cameras(1, 20)
    with pytest.raises(ValidationError, match=r"needs a turntable; .* has 0 \(turntables: none\)"):
        rig.scan(positions=3)
    assert rig.dataset.manifest()["captures"] == []


def test_an_unfinished_scan_with_another_plan_is_refused(make_rig, spawn, table, tmp_path):
    nodes_on_table(spawn, 1)
    rig = make_rig(dataset=tmp_path / "plan")
    assert rig.wait_for_cameras(1, 20)
    stop = threading.Event()

    def stop_after_the_first(step) -> None:
        if step.phase == "captured":
            stop.set()

    first = rig.scan(positions=3, turntable="table", progress=stop_after_the_first, stop=stop)
    assert not first.complete and sorted(first.captured) == [0]
    with pytest.raises(ValidationError, match="unfinished scan 1 of 3 positions \\(1 taken"):
        rig.scan(positions=5, turntable="table")
    assert len(rig.dataset.manifest()["captures"]) == 1
    finished = rig.scan(positions=3, turntable="table")
    assert finished.complete and finished.already == [0] and sorted(finished.captured) == [1, 2]


def test_while_a_scan_runs_other_threads_can_neither_capture_into_it_nor_move_its_dataset(
    make_rig, spawn, table, pending_of, tmp_path
):
    nodes = nodes_on_table(spawn, 2)
    rig = make_rig(dataset=tmp_path / "scan")
    assert rig.wait_for_cameras(2, 20)
    inside, go_on = threading.Event(), threading.Event()
    outcome: list = []

    def hold_after_the_first(step) -> None:  # runs on the scan's own thread
        if step.phase == "captured" and not inside.is_set():
            inside.set()
            go_on.wait(60)

    def scan() -> None:
        try:
            outcome.append(rig.scan(positions=3, turntable="table", progress=hold_after_the_first))
        except BaseException as exc:  # reported by the assertions below
            outcome.append(exc)

    scanner = threading.Thread(target=scan, name="the-scan")
    scanner.start()
    try:
        assert inside.wait(60)
        refusals = [
            ("capture", lambda: rig.capture_all()),
            ("capture", lambda: rig.capture(["n1"])),
            ("start a scan", lambda: rig.scan(positions=3, turntable="table")),
            ("change the dataset", lambda: rig.use_dataset(tmp_path / "elsewhere")),
        ]
        for action, attempt in refusals:
            with pytest.raises(PlantImagerError, match=f"cannot {action}: a scan is running .*'the-scan'"):
                attempt()
        assert len(rig.dataset.manifest()["captures"]) == 1  # the scan's first position, nothing else
        assert not (tmp_path / "elsewhere").exists()
    finally:
        go_on.set()
        scanner.join(60)
    assert not scanner.is_alive()
    report = outcome[0]
    assert not isinstance(report, BaseException), report
    assert report.complete and sorted(report.captured) == [0, 1, 2]
    check_complete(tmp_path / "scan", 3, 2)  # each position once, and no capture at no position
    record = rig.capture_all()  # the scan over, the rig is free again
    assert record.capture_no == 4 and len(rig.download_all().files) == 2
    assert rig.use_dataset(tmp_path / "elsewhere").root == tmp_path / "elsewhere"
    assert pending_of(nodes) == {"n1": {}, "n2": {}}


def test_a_scan_killed_mid_way_finishes_on_a_second_run_losing_and_repeating_nothing(
    run_cli, spawn, table, registry, pending_of, tmp_path
):
    nodes = nodes_on_table(spawn, 2)
    dataset = tmp_path / "killed"
    args = ["rig", "scan", "--positions", "6", "--turntable", "table", "--registry", registry.url]
    args += ["--dataset", str(dataset), "--expect", "2", "--wait", "20"]
    first = run_cli(*args)
    first.wait_for(r"^position 3/6 at 120\.0 deg: captured$", timeout=60)
    first.kill()  # SIGKILL: no chance to finish anything
    code, output = run_cli(*args).finish(60)
    assert code == 0, output
    done = re.search(r"scan 1 of 6 position\(s\) complete: (\d+) taken now, (\d+) before", output)
    assert done is not None, output
    assert int(done.group(2)) >= 3 and int(done.group(1)) >= 1  # the kill did land mid-scan
    check_complete(dataset, 6, 2)
    assert pending_of(nodes) == {"n1": {}, "n2": {}}


def test_scan_cli_refuses_bad_input_before_capturing(run_cli, spawn, registry, table, pending_of, tmp_path):
    nodes = nodes_on_table(spawn, 1)
    code, output = run_cli("rig", "scan", "--positions", "0", "--registry", registry.url).finish()
    assert code == 2 and "'--positions': 0 is not in the range 1<=x<=3600" in output
    dataset = tmp_path / "cli-bad"
    code, output = run_cli(
        *("rig", "scan", "--positions", "4", "--turntable", "nope", "--expect", "1", "--wait", "20"),
        *("--registry", registry.url, "--dataset", str(dataset)),
    ).finish()
    assert code == 1 and "no turntable named 'nope' is registered" in output, output
    assert not dataset.exists() or not [p for p in dataset.iterdir() if p.suffix == ".jpeg"]
    assert pending_of(nodes) == {"n1": {}}


def test_a_rig_with_no_camera_refuses_a_scan(make_rig, tmp_path):
    rig = make_rig(dataset=tmp_path / "empty")
    assert rig.wait_ready(10)
    with pytest.raises(PlantImagerError, match="the rig has no camera"):
        rig.scan(positions=1)


def test_a_capture_whose_outcome_was_never_learnt_is_taken_again_once(
    make_rig, spawn, table, pending_of, tmp_path
):
    nodes = nodes_on_table(spawn, 1)
    rig = make_rig(dataset=tmp_path / "doubt")
    assert rig.wait_for_cameras(1, 20)
    stop = threading.Event()
    rig.scan(
        positions=3,
        turntable="table",
        progress=lambda step: step.phase == "captured" and stop.set(),
        stop=stop,
    )
    # A controller stopped between recording position 1's capture and sending it: the capture is
    # in the dataset, its result unknown, and no node ever heard of it.
    cam = rig.cameras()[0]
    plan = ShotPlan(cam.key, cam.node, cam.node_id, cam.index, cam.name, "jpeg")
    rig.dataset.begin_capture([plan], position={"scan": 1, "index": 1, "of": 3, "angle": 120.0})
    report = rig.scan(positions=3, turntable="table", doubt_grace=0.0)
    assert report.complete and report.already == [0] and sorted(report.captured) == [1, 2]
    manifest = check_complete(tmp_path / "doubt", 3, 1)
    doubtful = [c for c in manifest["captures"] if c["lost"]]
    assert [c["position"]["index"] for c in doubtful] == [1] and doubtful[0]["capture_no"] == 2
    assert pending_of(nodes) == {"n1": {}}
