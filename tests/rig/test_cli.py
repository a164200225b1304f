"""``plantimager rig``: list, capture, download, config, status and shutdown from the command line."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers.process import LAUNCH, WAIT
from plantimager.commons.errors import ValidationError
from plantimager.rig import Rig

pytestmark = pytest.mark.timeout(60)


def parse_json(output: str):
    """The JSON document printed by a command (log lines may surround it)."""
    start = min(i for i in (output.find("{"), output.find("[")) if i >= 0)
    value, _ = json.JSONDecoder().raw_decode(output[start:])
    return value


def test_the_rig_command_drives_a_rig(spawn, registry, run_cli, pending_of, tmp_path):
    nodes = [spawn("n1", cameras=2).ready(), spawn("n2").ready()]
    captures = tmp_path / "captures"

    def rig(*args: str, expect_code: int = 0) -> str:
        process = run_cli(
            "-q", "rig", args[0], "--registry", registry.url, "--expect", "3", "--wait", "20", *args[1:]
        )
        code, output = process.finish()
        assert code == expect_code, output
        return output

    listing = parse_json(rig("list", "--json"))
    assert [c["key"] for c in listing["cameras"]] == ["n1/cam0", "n1/cam1", "n2/cam0"]
    assert [(n["name"], n["state"]) for n in listing["nodes"]] == [("n1", "ready"), ("n2", "ready")]

    output = rig(
        "config", "n1/cam1", "--resolution", "640x480", "--encoding", "png", "--control", "Contrast=2"
    )
    assert "n1/cam1" in output and "640x480" in output and "Contrast=2" in output
    cameras = {c["key"]: c for c in parse_json(rig("list", "--json"))["cameras"]}
    assert cameras["n1/cam1"]["resolution"] == [640, 480] and cameras["n1/cam1"]["encoding"] == "png"
    assert cameras["n1/cam0"]["resolution"] == [320, 240]

    output = rig("config", "--control", "Bogus=1", expect_code=3)
    assert "configure: 3 camera(s) failed" in output and "unknown control 'Bogus'" in output

    records = parse_json(rig("capture", "--captures", str(captures), "--count", "2", "--json"))
    assert [r["capture_no"] for r in records] == [1, 2]
    assert [s["file"] for s in records[1]["shots"]] == [
        "idn1_d2_cam0.jpeg",
        "idn1_d2_cam1.png",
        "idn2_d2_cam0.jpeg",
    ]
    assert all(r["skew_ms"] is not None for r in records)

    status = parse_json(rig("status", "--captures", str(captures), "--json"))
    assert status["dataset"]["owed"] == {"n1/cam0": 2, "n1/cam1": 2, "n2/cam0": 2}
    assert status["nodes"]["n1"]["status"]["spool"]["pending_captures"] == 4

    output = rig("download", "--captures", str(captures))
    assert "6 image(s) written" in output and "6 released on the nodes" in output
    assert pending_of(nodes) == {"n1": {}, "n2": {}}
    output = rig("status", "--captures", str(captures))
    assert "2 capture(s), 6 image(s) received, 0 owed, 0 lost, next capture number 3" in output

    output = rig("capture", "n2", "--captures", str(captures), "--new-session", "--download")
    assert "capture 1: 1 image(s)" in output and "1 image(s) written" in output

    refused = subprocess.run(
        [*LAUNCH, "rig", "shutdown", "n2", "--registry", registry.url, "--expect", "3", "--wait", "20"],
        input="n\n",
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert refused.returncode == 1 and "Shut down 1 camera node(s): n2? [y/N]" in refused.stdout
    assert "Aborted" in refused.stderr and nodes[1].popen.poll() is None
    output = rig("shutdown", "n2", "--yes")
    assert "shut down 1 node(s): n2" in output
    assert nodes[1].popen.wait(20) == 0
    process = run_cli("-q", "rig", "list", "--registry", registry.url, "--json")
    code, output = process.finish()
    assert code == 0 and [c["key"] for c in parse_json(output)["cameras"]] == ["n1/cam0", "n1/cam1"]


def test_an_unreachable_registry_is_reported(run_cli, tmp_path):
    code, output = run_cli("rig", "list", "--registry", "tcp://127.0.0.1:9", "--wait", "0.5").finish()
    assert code == 1
    assert "the registry at tcp://127.0.0.1:9 did not answer within 0.5 s" in output


def test_a_command_refused_with_new_session_leaves_the_sessions_as_they_were(
    spawn, registry, run_cli, tmp_path
):
    spawn("n1").ready()
    captures = tmp_path / "captures"

    def rig(*args: str) -> tuple[int, str]:
        common = ("--registry", registry.url, "--expect", "1", "--wait", "20", "--captures", str(captures))
        return run_cli("-q", "rig", args[0], *common, *args[1:]).finish()

    code, output = rig("capture")
    assert code == 0, output
    current = (captures / ".session").read_text()
    refused = [
        (("capture", "--new-session", "--template", "{nope}.{ext}"), "unknown field"),
        (("capture", "nope", "--new-session"), "unknown camera(s): 'nope'"),
        (("scan", "--positions", "3", "--turntable", "nope", "--new-session"), "no turntable named 'nope'"),
    ]
    for args, reason in refused:
        code, output = rig(*args)
        assert code == 1 and reason in output, output
        # No empty session left behind, and the one before is still the current one.
        assert sorted(p.name for p in captures.iterdir()) == [".session", current.strip()]
        assert (captures / ".session").read_text() == current
    code, output = rig("status")
    assert code == 0 and "1 capture(s)" in output, output
    code, output = rig("capture", "--new-session")  # accepted: the new session stays
    assert code == 0 and len([p for p in captures.iterdir() if p.is_dir()]) == 2, output


@pytest.mark.parametrize("url", ["foo:bar", "http://127.0.0.1:5555", "tcp://127.0.0.1", "tcp://*:5555"])
def test_a_malformed_registry_address_is_refused_at_once(run_cli, url):
    code, output = run_cli("rig", "list", "--registry", url, "--wait", "5").finish()
    assert code == 1 and "a registry address is tcp://HOST:PORT" in output, output
    assert "WARNING" not in output and "did not answer" not in output
    with pytest.raises(ValidationError, match="a registry address is tcp://HOST:PORT"):
        Rig(url)
