"""The dataset on its own: ledger, capture numbers, file names, durable writes, manifest, sessions."""

from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest

from plantimager.commons.errors import PlantImagerError, ValidationError
from plantimager.rig import Dataset, NameTemplate, manifestwriter
from plantimager.rig.ledger import Ledger
from plantimager.rig.session import current_session, session_folder
from plantimager.rig.shot import ShotPlan
from plantimager.rig.timing import LeadPolicy, RoundTrips, skew_ms

pytestmark = pytest.mark.timeout(30)

PLANS = [
    ShotPlan("n1/cam0", "n1", "id1", 0, "cam0", "jpeg"),
    ShotPlan("n1/cam1", "n1", "id1", 1, "cam1", "png"),
    ShotPlan("n2/cam0", "n2", "id2", 0, "cam0", "jpeg", wanted=False),
]


def meta_of(data: bytes, **extra) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "captured_at": 1.5, **extra}


def test_ledger_drops_an_unfinished_last_record_and_keeps_the_rest(tmp_path):
    path = tmp_path / "ledger.jsonl"
    with_ledger = Ledger(path)
    with_ledger.append({"kind": "a", "n": 1})
    with_ledger.append({"kind": "b", "n": 2}, durable=False)
    with_ledger.close()
    with open(path, "ab") as fh:
        fh.write(b'{"kind": "c", "n"')  # a crash in the middle of a write
    reopened = Ledger(path)
    assert reopened.records == [{"kind": "a", "n": 1}, {"kind": "b", "n": 2}]
    reopened.append({"kind": "d"})
    reopened.close()
    assert [r["kind"] for r in Ledger(path, readonly=True).records] == ["a", "b", "d"]
    with pytest.raises(PlantImagerError, match="read-only"):
        Ledger(path, readonly=True).append({"kind": "e"})


def test_capture_numbers_are_durable_and_never_reused(tmp_path):
    with Dataset(tmp_path / "ds") as dataset:
        first = dataset.begin_capture(PLANS)
        second = dataset.begin_capture(PLANS[:1])
        session = dataset.session_id
    assert [s.capture_no for s in first] == [1, 1, 1] and second[0].capture_no == 2
    assert first[0].data_code == f"{session}-d1" and first[0].file == "idn1_d1_cam0.jpeg"
    assert first[1].file == "idn1_d1_cam1.png"
    with Dataset(tmp_path / "ds") as dataset:  # a new controller on the same folder
        assert dataset.session_id == session
        assert dataset.next_capture_no == 3
        assert [s.camera for s in dataset.owed()] == ["n1/cam0", "n1/cam1", "n2/cam0", "n1/cam0"]


def test_images_are_written_once_verified_and_recorded_in_the_manifest(tmp_path):
    with Dataset(tmp_path / "ds") as dataset:
        shots = dataset.begin_capture(PLANS)
        jpeg, png = b"\xff\xd8jpeg bytes", b"\x89PNG bytes"
        files = dataset.finish_capture(
            1,
            t0=1.0,
            lead_ms=5.0,
            results={"n1/cam0": meta_of(jpeg, encoding="jpeg"), "n1/cam1": meta_of(png, encoding="png")},
            failures={"n2/cam0": "broken"},
            unknown={},
            skew_ms=0.5,
        )
        assert files == {"n1/cam0": "idn1_d1_cam0.jpeg", "n1/cam1": "idn1_d1_cam1.png"}
        assert dataset.store_image(shots[0], jpeg, meta_of(jpeg, format="jpeg")) == "idn1_d1_cam0.jpeg"
        # The node stored PNG although JPEG was planned: the name follows what was stored.
        assert dataset.store_image(shots[1], png, meta_of(png, format="png")) == "idn1_d1_cam1.png"
        dataset.mark_released(shots[0])
        assert [(s.camera, s.status) for s in dataset.owed()] == [("n1/cam1", "received")]
        dataset.flush()
        manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert [e["file"] for e in manifest["images"]] == ["idn1_d1_cam0.jpeg", "idn1_d1_cam1.png"]
    entry = manifest["images"][0]
    assert entry["sha256"] == hashlib.sha256(jpeg).hexdigest() and entry["size"] == len(jpeg)
    assert entry["requested_t0"] == 1.0 and entry["offset_ms"] == 500.0 and entry["node_id"] == "id1"
    assert manifest["captures"][0]["skew_ms"] == 0.5 and manifest["captures"][0]["owed"] == []
    assert (tmp_path / "ds" / "idn1_d1_cam0.jpeg").read_bytes() == jpeg
    assert not [p for p in (tmp_path / "ds").iterdir() if p.name.startswith(".tmp-")]


def test_a_file_in_the_way_is_never_overwritten(tmp_path):
    with Dataset(tmp_path / "ds") as dataset:
        shots = dataset.begin_capture(PLANS[:1])
        (tmp_path / "ds" / "idn1_d1_cam0.jpeg").write_bytes(b"someone else's file")
        with pytest.raises(PlantImagerError, match="already exists and holds other bytes"):
            dataset.store_image(shots[0], b"ours", meta_of(b"ours"))
        assert (tmp_path / "ds" / "idn1_d1_cam0.jpeg").read_bytes() == b"someone else's file"
        assert dataset.owed()[0].status == "sent"
        # Names already taken are refused before a capture is recorded.
        (tmp_path / "ds" / "idn1_d2_cam0.jpeg").write_bytes(b"")
        with pytest.raises(ValidationError, match=r"names already taken .*n1/cam0 -> idn1_d2_cam0\.jpeg"):
            dataset.begin_capture(PLANS[:1])
        assert dataset.next_capture_no == 2


def test_the_same_bytes_already_written_are_accepted(tmp_path):
    with Dataset(tmp_path / "ds") as dataset:
        shots = dataset.begin_capture(PLANS[:1])
        (tmp_path / "ds" / "idn1_d1_cam0.jpeg").write_bytes(b"ours")  # written before a crash
        assert dataset.store_image(shots[0], b"ours", meta_of(b"ours")) == "idn1_d1_cam0.jpeg"
        assert dataset.summary()["images"] == 1


def test_a_staged_image_has_no_name_until_finished_and_a_crash_leaves_it_owed(tmp_path):
    folder = tmp_path / "ds"
    with Dataset(folder) as dataset:
        shots = dataset.begin_capture(PLANS[:2])
        staged = [
            dataset.stage_image(s, data, meta_of(data))
            for s, data in zip(shots, (b"one", b"two"), strict=True)
        ]
        assert not list(folder.glob("idn1_*"))  # no names yet
        assert {p.read_bytes() for p in folder.glob(".tmp-*")} == {b"one", b"two"}
        written = dataset.finish_image(staged[0])
        assert written.file == "idn1_d1_cam0.jpeg" and (folder / written.file).read_bytes() == b"one"
        assert not staged[0].tmp.exists()
        dataset.record_images([written])
        # The controller dies here: the second image was staged but never finished.
    with Dataset(folder) as dataset:
        assert not list(folder.glob(".tmp-*"))
        assert [(s.camera, s.status) for s in dataset.owed()] == [
            ("n1/cam0", "received"),
            ("n1/cam1", "sent"),
        ]
        assert not (folder / "idn1_d1_cam1.png").exists()


def test_one_controller_at_a_time_and_leftovers_are_cleaned(tmp_path):
    with Dataset(tmp_path / "ds"):
        with pytest.raises(PlantImagerError, match=f"in use by another controller \\(pid {os.getpid()}\\)"):
            Dataset(tmp_path / "ds", lock_timeout=0.1)
        with Dataset(tmp_path / "ds", readonly=True) as reader:
            assert reader.summary()["captures"] == 0
    (tmp_path / "ds" / ".tmp-0123").write_bytes(b"half an image")
    with Dataset(tmp_path / "ds"):
        assert not (tmp_path / "ds" / ".tmp-0123").exists()
    with pytest.raises(PlantImagerError, match="is not a dataset"):
        Dataset(tmp_path / "nothing", readonly=True)


def test_a_new_template_is_remembered_and_checked(tmp_path):
    with Dataset(tmp_path / "ds", template="{server_id}-{capture_no}-{camera_no}.{ext}") as dataset:
        assert dataset.begin_capture(PLANS[:1])[0].file == "n1-1-0.jpeg"
    with Dataset(tmp_path / "ds") as dataset:
        assert dataset.template == NameTemplate("{server_id}-{capture_no}-{camera_no}.{ext}")
    with pytest.raises(ValidationError):
        Dataset(tmp_path / "ds", template="{server_id}/{capture_no}-{camera_no}")


def test_manifest_writes_from_many_threads_stay_consistent(tmp_path):
    with Dataset(tmp_path / "ds") as dataset:
        plans = [ShotPlan(f"n{i}/cam0", f"n{i}", "id", 0, "cam0", "jpeg") for i in range(16)]
        shots = dataset.begin_capture(plans)
        threads = [
            threading.Thread(target=dataset.store_image, args=(s, b"x" * i, {})) for i, s in enumerate(shots)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        dataset.flush()
        manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert len(manifest["images"]) == 16


def test_the_manifest_is_replaced_atomically_as_it_changes_and_fsynced_when_the_dataset_closes(
    tmp_path, monkeypatch
):
    synced = []
    real = manifestwriter.sync_file
    monkeypatch.setattr(manifestwriter, "sync_file", lambda path: (synced.append(path.name), real(path)))
    manifest = tmp_path / "ds" / "manifest.json"
    dataset = Dataset(tmp_path / "ds")
    try:
        shots = dataset.begin_capture(PLANS[:1])
        dataset.store_image(shots[0], b"image", meta_of(b"image"))
        dataset.flush()
        assert [i["file"] for i in json.loads(manifest.read_text())["images"]] == [shots[0].file]
        assert synced == [], "a rewrite of the manifest was fsynced"
    finally:
        dataset.close()
    assert synced == ["manifest.json"]
    manifest.write_text("{}")  # as a crash might leave it
    with Dataset(tmp_path / "ds"):  # made again from the ledger when the dataset is opened
        pass
    assert [i["file"] for i in json.loads(manifest.read_text())["images"]] == [shots[0].file]


def test_the_manifest_follows_changes_to_older_captures(tmp_path):
    with Dataset(tmp_path / "ds") as dataset:
        first = dataset.begin_capture(PLANS[:2])
        second = dataset.begin_capture(PLANS[:2])
        files = [dataset.store_image(shot, b"two", meta_of(b"two")) for shot in second]
        before = dataset.manifest()
        assert [i["file"] for i in before["images"]] == files
        files.insert(0, dataset.store_image(first[1], b"one", meta_of(b"one")))
        dataset.mark_lost(first[0], "gone")
        after = dataset.manifest()
    assert [i["file"] for i in after["images"]] == files
    assert after["captures"][0]["lost"] == {first[0].camera: "gone"}
    assert after["captures"][1] == before["captures"][1]


def test_the_manifest_file_holds_the_document_one_entry_per_line_and_the_latest_known_geometry(tmp_path):
    pinhole = {"fx": 100.0, "fy": 100.0, "cx": 32.0, "cy": 24.0, "width": 64, "height": 48}
    turned = {"rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "translation": [0, 0, 1]}
    with Dataset(tmp_path / "ds") as dataset:
        first, second, third = (dataset.begin_capture(PLANS[:2]) for _ in range(3))
        dataset.store_image(first[0], b"a", meta_of(b"a", intrinsics=pinhole))
        dataset.store_image(first[1], b"b", meta_of(b"b"))  # nothing known about cam1 yet
        dataset.store_image(second[0], b"c", meta_of(b"c"))  # a later image without geometry
        dataset.store_image(third[1], b"d", meta_of(b"d", pose=turned))
        dataset.store_image(second[1], b"e", meta_of(b"e"))  # an older capture changes
        dataset.flush()
        text = (tmp_path / "ds" / "manifest.json").read_text()
        expected = dataset.manifest()
    written = json.loads(text)
    assert {**written, "updated": None} == {**expected, "updated": None}
    assert written["cameras"]["n1/cam0"]["intrinsics"] == pinhole  # not forgotten for a later image
    assert written["cameras"]["n1/cam1"]["pose"] == turned
    assert len(written["images"]) == 5
    # One capture, one camera, one image per line.
    assert sum(line.lstrip().startswith('{"file":') for line in text.splitlines()) == 5
    assert sum(line.lstrip().startswith('{"capture_no":') for line in text.splitlines()) == 3


def test_sessions_are_remembered_under_the_captures_folder(tmp_path):
    assert current_session(tmp_path) is None
    first = session_folder(tmp_path)
    assert session_folder(tmp_path) == first == current_session(tmp_path)
    second = session_folder(tmp_path, new=True)
    assert second != first and current_session(tmp_path) == second
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValidationError, match="is a file"):
        session_folder(blocker / "captures")


def test_lead_follows_round_trips_and_grows_after_a_slow_hand_over():
    policy = LeadPolicy(min_lead=0.004, max_lead=1.0)
    rtts = RoundTrips()
    for value in (0.0002, 0.0004, 0.0003):
        rtts.add(value)
    assert rtts.worst() == 0.0004 and rtts.median() == 0.0003
    assert policy.lead([0.010], 8) == pytest.approx(2 * (0.010 + 0.002 + 0.0016) + 0.001)  # a slow network
    first = policy.lead([rtts.worst()], 8)
    policy.observe([0.003], dispatch=0.0005, lead=first)  # late, but the request was in time
    steady = policy.lead([rtts.worst()], 8)
    assert 0.004 <= steady <= first
    policy.observe([0.003], dispatch=0.003, lead=steady)  # the hand-over took most of the lead
    # 2 x (worst round trip + worst hand-over) + 1 ms, plus the slow hand-over again
    assert policy.lead([rtts.worst()], 8) == pytest.approx(2 * (0.0004 + 0.003) + 0.001 + 0.003)
    for _ in range(20):
        policy.observe([0.0], dispatch=0.0005, lead=0.005)
    assert policy.lead([rtts.worst()], 8) == steady  # the slow one has left the window
    assert skew_ms([1_000_000, 3_500_000, 2_000_000]) == 2.5 and skew_ms([]) is None


def test_old_round_trips_stop_counting_but_the_newest_always_counts():
    now = [100.0]
    rtts = RoundTrips(max_age=60.0, clock=lambda: now[0])
    assert rtts.worst() is None and rtts.age() is None
    rtts.add(0.013)  # a node still starting up
    now[0] += 30.0
    rtts.add(0.0004)
    assert rtts.worst() == 0.013 and rtts.age() == 0.0
    now[0] += 31.0  # the slow one is now 61 s old
    assert rtts.worst() == 0.0004 and rtts.median() == 0.0004 and rtts.age() == 31.0
    now[0] += 3600.0  # nothing recent: the newest still counts
    assert rtts.worst() == 0.0004 and len(rtts) == 2


def test_once_nodes_say_when_they_were_ready_the_lead_follows_their_readiness():
    policy = LeadPolicy(min_lead=0.004, max_lead=1.0)
    before = policy.lead([0.013], 8)  # a round trip measured while the node was starting up
    assert before == pytest.approx(2 * (0.013 + 0.002 + 0.0016) + 0.001)
    policy.observe([0.0001], dispatch=0.001, lead=before, arrival=0.0015)
    # 3 x the latest readiness (at least half the worst round trip) + 1 ms
    assert policy.lead([0.002], 8) == pytest.approx(3 * 0.0015 + 0.001)
    assert policy.lead([0.013], 8) == pytest.approx(3 * 0.0065 + 0.001)
    # A slow round trip (measured while the node encoded or served a download) does not lengthen
    # it when the node's usual round trip is short: readiness says how soon a request is taken.
    assert policy.lead([0.030], 8, usual=[0.0008]) == pytest.approx(3 * 0.0015 + 0.001)
    # ... but a usual round trip longer than twice the readiness does: the way there takes that.
    assert policy.lead([0.030], 8, usual=[0.0008, 0.005, None]) == pytest.approx(3 * 0.0025 + 0.001)
    # A node ready only after half the lead: the next leads are longer, then shrink back.
    policy.observe([0.004], dispatch=0.001, lead=0.004, arrival=0.003)
    assert policy.lead([0.002], 8) == pytest.approx(3 * 0.003 + 0.001 + 0.003)
    for _ in range(20):
        policy.observe([0.0], dispatch=0.001, lead=0.005, arrival=0.001)
    assert policy.lead([0.002], 8) == pytest.approx(max(0.004, 3 * 0.001 + 0.001 + 0.003 / 2**20))
