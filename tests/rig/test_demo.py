"""``plantimager demo``: up, usable by ``plantimager rig``, and everything it started gone afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import urllib.request
from pathlib import Path

import pytest
import simplejpeg

pytestmark = pytest.mark.timeout(120)


def alive(pid: int) -> bool:
    """Whether a process (not a zombie) has this pid."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_demo(run_cli, captures: Path, nodes: int, *web: str):
    demo = run_cli(
        "demo",
        "--nodes",
        str(nodes),
        "--captures",
        str(captures),
        "--registry-port",
        "0",
        *(web or ["--no-web"]),
    )
    ready = demo.wait_for(r"^ready: (\d+) camera\(s\) on \d+ node\(s\), registry (tcp://\S+), captures")
    pids = [int(m.group(1)) for line in demo.seen if (m := re.match(r"^node node\d+ pid (\d+) ", line))]
    assert int(ready.group(1)) == nodes and len(pids) == nodes
    return demo, ready.group(2), pids


def test_demo_serves_a_rig_that_captures_and_downloads_then_stops_everything(run_cli, tmp_path):
    captures = tmp_path / "captures"
    demo, url, pids = start_demo(run_cli, captures, 3, "--web-port", "0")
    try:
        page = next(
            m for line in demo.seen if (m := re.match(r"^web page: (http://127\.0\.0\.1:\d+/)$", line))
        )
        with urllib.request.urlopen(page.group(1), timeout=20) as response:
            assert response.status == 200 and b"Capture All" in response.read()
        hints = [x.strip().split()[2:] for x in demo.seen if x.strip().startswith("plantimager rig ")]
        assert [h[0] for h in hints] == ["list", "capture", "download", "status", "scan"]
        assert ["capture", "--registry", url, "--captures", str(captures)] in hints
        wait = ["--expect", "3", "--wait", "20"]
        for hint in hints:  # every command the demo prints works as printed (a shorter scan)
            shorter = ["--positions", "2"] if hint[0] == "scan" else []
            code, output = run_cli("rig", *hint, *wait, *shorter).finish(40)
            assert code == 0, (hint, output)
        session = captures / (captures / ".session").read_text().strip()
        names = sorted(p.name for p in session.iterdir() if p.suffix == ".jpeg" and "_d1_" in p.name)
        assert names == ["idnode1_d1_cam0.jpeg", "idnode2_d1_cam0.jpeg", "idnode3_d1_cam0.jpeg"]
        assert all(simplejpeg.decode_jpeg((session / n).read_bytes()).size for n in names)
        assert len({(session / n).read_bytes() for n in names}) == 3  # each node sees its own side
        images = json.loads((session / "manifest.json").read_text())["images"]
        assert len(images) == 3 + 2 * 3  # the capture, then a scan of two positions
        scanned = [image["settings"]["controls"]["turntable_deg"] for image in images if image["position"]]
        assert sorted(scanned) == [0.0] * 3 + [180.0] * 3  # every camera saw the table where it stood
        assert json.loads((captures / ".demo" / "pids.json").read_text()) == {
            f"node{i}": pid for i, pid in enumerate(pids, 1)
        }

        os.kill(demo.pid, signal.SIGINT)
        code, output = demo.finish()
        assert code == 0, output
        assert output.splitlines()[-1] == "demo stopped"
        assert [pid for pid in pids if alive(pid)] == []
        assert not (captures / ".demo" / "pids.json").exists()
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_demo_killed_outright_leaves_nodes_that_the_next_demo_stops(run_cli, tmp_path):
    captures = tmp_path / "captures"
    first, _, orphans = start_demo(run_cli, captures, 2)
    try:
        first.kill()  # no chance to clean up: its nodes live on
        assert all(alive(pid) for pid in orphans)
        second, _, pids = start_demo(run_cli, captures, 2)
        assert "stopping 2 node(s) left by an earlier demo" in second.seen
        assert [pid for pid in orphans if alive(pid)] == []
        third = run_cli("demo", "--nodes", "1", "--captures", str(captures), "--registry-port", "0")
        code, output = third.finish()
        assert code == 1 and f"another demo (pid {second.pid}) is running with {captures}" in output
        assert all(alive(pid) for pid in pids)  # the running demo's nodes are left alone
        os.kill(second.pid, signal.SIGTERM)
        code, output = second.finish()
        assert code == 0, output
        assert [pid for pid in pids if alive(pid)] == []
    finally:
        for pid in orphans + locals().get("pids", []):
            with contextlib.suppress(ProcessLookupError):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_a_secure_demo_runs_everything_over_curve_and_removes_its_keys(run_cli, tmp_path):
    captures = tmp_path / "captures"
    demo, url, pids = start_demo(run_cli, captures, 2, "--no-web", "--secure")
    try:
        home = Path(next(m.group(1) for x in demo.seen if (m := re.match(r"^keys in (\S+) \(controller", x))))
        assert sorted(p.name for p in home.iterdir()) == ["controller", "node1", "node2"]
        assert all(
            stat.S_IMODE((home / n / "host.key_secret").stat().st_mode) == 0o600 for n in ("node1", "node2")
        )
        hints = [x.strip().split()[2:] for x in demo.seen if x.strip().startswith("plantimager rig ")]
        assert ["list", "--registry", url, "--keys", str(home / "controller")] in hints
        code, output = run_cli("rig", "list", "--registry", url, "--wait", "1").finish(40)
        assert code == 1 and "did not answer" in output  # a plaintext controller gets nothing
        wait = ["--expect", "2", "--wait", "20"]
        for hint in hints:
            if hint[0] in ("capture", "download", "scan"):
                shorter = ["--positions", "2"] if hint[0] == "scan" else []
                code, output = run_cli("rig", *hint, *wait, *shorter).finish(60)
                assert code == 0, (hint, output)
        session = captures / (captures / ".session").read_text().strip()
        images = json.loads((session / "manifest.json").read_text())["images"]
        assert len(images) == 2 + 2 * 2  # the capture, then a scan of two positions (turntable secured too)
        os.kill(demo.pid, signal.SIGINT)
        code, output = demo.finish()
        assert code == 0, output
        assert not home.exists() and [pid for pid in pids if alive(pid)] == []
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_web_port_in_use_is_a_clear_error_and_stops_what_was_started(run_cli, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = run_cli(
            *("demo", "--nodes", "1", "--captures", str(tmp_path / "captures")),
            *("--registry-port", "0", "--no-turntable", "--web-port", str(port)),
        )
        code, output = demo.finish(60)
    assert code == 1, output
    assert f"cannot serve the web page on 127.0.0.1:{port}: Address already in use" in output
    assert "(--web-port 0 picks a free port)" in output and "Traceback" not in output
    pids = [
        int(m.group(1)) for line in output.splitlines() if (m := re.match(r"^node node\d+ pid (\d+) ", line))
    ]
    assert len(pids) == 1 and not alive(pids[0])
