"""End to end: camera nodes in their own processes, one rig, captures, downloads, the dataset."""

from __future__ import annotations

import hashlib
import io
import json
import threading

import pytest
import simplejpeg
from PIL import Image

pytestmark = pytest.mark.timeout(60)


def test_capture_all_download_all_gives_a_complete_verified_dataset(spawn, make_rig, pending_of, tmp_path):
    nodes = [spawn("n1", cameras=2), spawn("n2"), spawn("n3"), spawn("n4")]
    for node in nodes:
        node.ready()
    dataset = tmp_path / "session"
    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(5, 20), rig.nodes()
    assert [c.key for c in rig.cameras()] == ["n1/cam0", "n1/cam1", "n2/cam0", "n3/cam0", "n4/cam0"]

    first = rig.capture_all()
    assert first.capture_no == 1 and not first.failures
    assert [s.file for s in first.shots] == [
        "idn1_d1_cam0.jpeg",
        "idn1_d1_cam1.jpeg",
        "idn2_d1_cam0.jpeg",
        "idn3_d1_cam0.jpeg",
        "idn4_d1_cam0.jpeg",
    ]
    times = [s.captured_at for s in first.shots]
    assert first.skew_ms == pytest.approx((max(times) - min(times)) * 1e3, abs=1e-3)
    assert all(s.size > 0 and len(s.sha256) == 64 for s in first.shots)

    settings = rig.configure("n2/cam0", encoding="png")
    assert settings["n2/cam0"]["encoding"] == "png"
    second = rig.capture_all()
    assert "idn2_d2_cam0.png" in [s.file for s in second.shots]

    # Only one camera of a two-camera node: the other fires too, but its image is released at once.
    third = rig.capture(["n1/cam1"])
    assert [s.file for s in third.shots] == ["idn1_d3_cam1.jpeg"]
    assert pending_of(nodes[:1])["n1"][third.data_code] == [1]

    progress = []
    report = rig.download_all(progress=progress.append)
    assert not report.failures and report.owed == 0
    assert len(report.files) == len(set(report.files)) == 11
    assert [p.done for p in progress] == list(range(1, 12)) and all(p.ok and p.total == 11 for p in progress)
    assert pending_of(nodes) == {node.name: {} for node in nodes}

    images = sorted(p.name for p in dataset.iterdir() if not p.name.startswith("."))
    expected = {s.file for record in (first, second, third) for s in record.shots}
    assert set(images) == expected | {"manifest.json"}
    manifest = json.loads((dataset / "manifest.json").read_text())
    entries = {entry["file"]: entry for entry in manifest["images"]}
    assert set(entries) == expected and len(manifest["images"]) == 11
    shots = {s.file: s for record in (first, second, third) for s in record.shots}
    for name, entry in entries.items():
        data = (dataset / name).read_bytes()
        assert entry["size"] == len(data) == shots[name].size
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() == shots[name].sha256
        if name.endswith(".png"):
            with Image.open(io.BytesIO(data)) as img:
                assert img.format == "PNG" and img.size == (320, 240)
        else:
            assert simplejpeg.decode_jpeg(data).shape == (240, 320, 3)
        for key in (
            "camera",
            "node_id",
            "camera_index",
            "capture_no",
            "requested_t0",
            "captured_at",
            "settings",
        ):
            assert entry[key] is not None, (name, key)
        assert entry["camera"] == shots[name].camera and entry["captured_at"] == shots[name].captured_at
        assert entry["settings"]["resolution"] == [320, 240]
    assert [c["capture_no"] for c in manifest["captures"]] == [1, 2, 3]
    assert manifest["captures"][2]["cameras"] == ["n1/cam1"]

    again = rig.download_all()
    assert again.files == () and again.owed == 0


def test_capture_numbers_survive_a_controller_restart(spawn, make_rig, tmp_path):
    node = spawn("solo").ready()
    dataset = tmp_path / "session"
    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(1, 20)
    assert rig.capture_all().capture_no == 1
    rig.close()

    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(1, 20)
    record = rig.capture_all()
    assert record.capture_no == 2 and record.shots[0].file == "idsolo_d2_cam0.jpeg"
    report = rig.download_all()
    assert sorted(report.files) == ["idsolo_d1_cam0.jpeg", "idsolo_d2_cam0.jpeg"]
    assert node.popen.poll() is None


def test_custom_template_and_configure_all(spawn, make_rig, tmp_path):
    spawn("a").ready()
    spawn("b", cameras=2).ready()
    rig = make_rig(dataset=tmp_path / "s", template="plant_{capture_no:03d}_{server_id}_{camera}.{ext}")
    assert rig.wait_for_cameras(3, 20)
    settings = rig.configure_all(rotation=90, controls={"Brightness": 0.1})
    assert set(settings) == {"a/cam0", "b/cam0", "b/cam1"}
    assert all(s["rotation"] == 90 and s["controls"]["Brightness"] == 0.1 for s in settings.values())
    assert all(c.rotation == 90 for c in rig.cameras())
    record = rig.capture_all()
    assert [s.file for s in record.shots] == [
        "plant_001_a_cam0.jpeg",
        "plant_001_b_cam0.jpeg",
        "plant_001_b_cam1.jpeg",
    ]
    assert all(s.settings["rotation"] == 90 for s in record.shots)
    rig.download_all()
    data = (tmp_path / "s" / "plant_001_b_cam1.jpeg").read_bytes()
    assert simplejpeg.decode_jpeg(data).shape == (320, 240, 3)  # rotated by the node
    status = rig.status()
    assert status["dataset"]["images"] == 3 and status["dataset"]["owed"] == {}
    assert {name: info["state"] for name, info in status["nodes"].items()} == {"a": "ready", "b": "ready"}
    assert status["nodes"]["b"]["status"]["spool"]["pending_captures"] == 0

    # The same dataset again is the one in use; with another template it is reopened with it.
    assert rig.use_dataset(tmp_path / "s") is rig.dataset
    rig.use_dataset(tmp_path / "s", template="again_{capture_no}_{server_id}_{camera}.{ext}")
    assert [s.file for s in rig.capture_all().shots] == [
        "again_2_a_cam0.jpeg",
        "again_2_b_cam0.jpeg",
        "again_2_b_cam1.jpeg",
    ]
    assert rig.download_all().owed == 0 and rig.dataset.summary()["images"] == 6


def test_only_calls_that_do_no_work_on_a_node_count_as_round_trips_for_the_lead(
    spawn, make_rig, monkeypatch, tmp_path
):
    # A release, a retrieve or a reconfiguration takes as long as its work on the node; counted
    # as a round trip it would lengthen the lead of every capture after it.
    from plantimager.rig.node import RigNode

    calls: list[tuple[str, bool]] = []
    real = RigNode.call

    def noted(self, method, *args, timed=False):
        calls.append((method, timed))
        return real(self, method, *args, timed=timed)

    monkeypatch.setattr(RigNode, "call", noted)
    spawn("n1").ready()
    rig = make_rig(dataset=tmp_path / "session")
    assert rig.wait_for_cameras(1, 20)
    rig.configure_all(quality=80)
    rig.capture_all()
    assert rig.download_all().released == 1
    rig.status()
    called = {method for method, _ in calls}
    assert {"configure", "start_capture", "retrieve_still", "release_many", "status"} <= called
    assert {method for method, timed in calls if timed} <= {"ping", "settings_revision", "status"}


def test_a_node_always_in_contact_still_has_its_round_trip_measured_again(
    spawn, make_rig, monkeypatch, tmp_path
):
    # A busy node is never silent, so the health pings alone would never measure it again, and
    # the lead would keep the round trips of its start-up forever.
    from plantimager.rig import roster
    from plantimager.rig.node import RigNode

    monkeypatch.setattr(roster, "RTT_REFRESH_S", 0.2)
    measured = threading.Event()
    real = RigNode.call

    def noted(self, method, *args, timed=False):
        result = real(self, method, *args, timed=timed)
        if timed and self.state == "ready":
            measured.set()
        return result

    spawn("n1").ready()
    rig = make_rig(dataset=tmp_path / "session", health_interval=3600.0)
    assert rig.wait_for_cameras(1, 20)
    (node,) = rig._roster.ready_nodes().values()
    samples = len(node.round_trips)
    monkeypatch.setattr(RigNode, "call", noted)
    assert measured.wait(20), "no round trip was measured again"
    assert len(node.round_trips) > samples


def test_the_lead_follows_when_nodes_were_ready_not_an_old_slow_round_trip(spawn, make_rig, tmp_path):
    spawn("n1").ready()
    rig = make_rig(dataset=tmp_path / "session")
    assert rig.wait_for_cameras(1, 20)
    (node,) = rig._roster.ready_nodes().values()
    node.round_trips.add(0.05)  # one slow ping, e.g. while the node was starting up
    first = rig.capture_all()
    assert first.lead_ms >= 100  # 2 x (50 ms + the hand-over) + 1 ms: nothing else known yet
    second = rig.capture_all()
    # The node said when it was ready to fire the first (a few ms on loopback): now 3 x that + 1 ms.
    # The slow round trip is not the node's usual one, so it no longer sets a floor of 3 x 25 ms.
    assert 5.0 <= second.lead_ms < 51
    assert rig.download_all().owed == 0


def test_round_trips_are_refreshed_one_node_at_a_time(spawn, make_rig, monkeypatch, tmp_path):
    # Every node of a busy rig goes stale at once: a ping each at the same moment would take as
    # many threads of the rig's pool, for nothing.
    from plantimager.rig import roster
    from plantimager.rig.node import RigNode

    nodes = [spawn(f"n{i}") for i in range(3)]
    for node in nodes:
        node.ready()
    rig = make_rig(dataset=tmp_path / "session", health_interval=3600.0)
    assert rig.wait_for_cameras(3, 20)
    cond = threading.Condition()
    state = {"in_flight": 0, "most": 0, "looks": 0}
    refreshed: set[str] = set()
    real_call, real_stale = RigNode.call, roster._rtt_stale

    def looked(node):  # the roster asks this of every idle node on each of its rounds
        with cond:
            state["looks"] += 1
            cond.notify_all()
        return real_stale(node)

    def noted(self, method, *args, timed=False):
        if not (method in ("ping", "settings_revision") and timed):  # the health check's call
            return real_call(self, method, *args, timed=timed)
        with cond:
            state["in_flight"] += 1
            state["most"] = max(state["most"], state["in_flight"])
            # Held until the roster has looked at the other nodes 6 times more (where a second
            # refresh would be sent), until a second one shows up, or until no node is left.
            until = state["looks"] + 6
            cond.notify_all()
            cond.wait_for(
                lambda: (
                    state["looks"] >= until
                    or state["in_flight"] > 1
                    or len(refreshed) + state["in_flight"] == len(nodes)
                ),
                20,
            )
        try:
            return real_call(self, method, *args, timed=timed)
        finally:
            with cond:
                state["in_flight"] -= 1
                refreshed.add(self.name)
                cond.notify_all()

    monkeypatch.setattr(roster, "_rtt_stale", looked)
    monkeypatch.setattr(RigNode, "call", noted)
    monkeypatch.setattr(roster, "RTT_REFRESH_S", 0.0)  # every node is stale at once
    with cond:
        assert cond.wait_for(lambda: len(refreshed) == 3, 30), f"only {sorted(refreshed)} were refreshed"
    assert state["most"] == 1
