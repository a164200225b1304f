"""A node whose clock is off: its offset comes with every capture, and it is flagged everywhere.

A node's capture times are on its own clock, so a node whose clock is ahead fires early while its
timestamps say it fired on time: the skew alone cannot show it. The offset its time service reports
(here injected through the dummy camera, as chrony would report it) is carried with each capture and
in the manifest, and a node off by more than the skew budget is flagged by the rig and the CLI.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(60)

WAIT = 20.0
AHEAD = ("--backend-option", "clock_offset_ms=4")


def test_a_node_whose_clock_is_off_is_flagged_with_each_capture(spawn, make_rig, tmp_path):
    spawn("fine").ready()
    spawn("off", extra=AHEAD).ready()
    rig = make_rig(dataset=tmp_path / "session")
    assert rig.wait_for_cameras(2, WAIT)
    nodes = {node.name: node for node in rig.nodes()}
    assert nodes["off"].clock_offset_ms == 4.0
    assert nodes["off"].clock_flag == (
        "clock 4.000 ms ahead of NTP time, more than the 1 ms skew budget: its cameras fire about that "
        "much early"
    )
    assert nodes["fine"].clock_flag == ""  # no chrony here: unknown, not flagged

    record = rig.capture_all()
    assert record.clock_offsets_ms == {"fine": None, "off": 4.0}
    assert record.clock_flags == {"off": nodes["off"].clock_flag}
    assert {s.node: s.clock_offset_ms for s in record.shots} == {"fine": None, "off": 4.0}
    assert record.skew_ms is not None  # the skew as the clocks tell it, beside their offsets

    rig.download_all()
    manifest = json.loads((tmp_path / "session" / "manifest.json").read_text())
    assert {i["node"]: i["clock_offset_ms"] for i in manifest["images"]} == {"fine": None, "off": 4.0}


def test_the_cli_flags_a_node_whose_clock_is_off(spawn, registry, run_cli, tmp_path):
    spawn("fine").ready()
    spawn("off", extra=AHEAD).ready()
    common = ["--registry", registry.url, "--expect", "2", "--wait", "20"]
    warning = "node off: clock 4.000 ms ahead of NTP time, more than the 1 ms skew budget"
    for command in (
        ["list"],
        ["capture", "--dataset", str(tmp_path / "session")],
        ["status", "--dataset", str(tmp_path / "session")],
    ):
        code, output = run_cli("rig", *command, *common).finish()
        assert code == 0, output
        printed = [line for line in output.splitlines() if line.startswith("node off: ")]  # not logged
        assert printed and printed[0].startswith(warning[:50]), output
        assert warning in " ".join(output.split()), output
        assert "node fine:" not in output
    code, output = run_cli("rig", "capture", "--dataset", str(tmp_path / "session"), *common).finish()
    assert code == 0, output
    rows = {cells[0]: cells for line in output.splitlines() if (cells := line.replace("│", " ").split())}
    assert rows["off/cam0"][3:5] == ["+4.000", "!"]
    assert rows["fine/cam0"][3] == "-"
