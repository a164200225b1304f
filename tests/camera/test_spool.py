"""Tests of the on-disk capture spool: life cycle, durability, bounds, validation, concurrency."""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import mmap
import os
import random
import selectors
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import xxhash

from plantimager.camera.spool import Capture, Spool, SpoolFull
from plantimager.camera.spoolrelease import Deletion, Janitor, remove_empty_folder
from plantimager.commons.errors import ImageUnavailable, PlantImagerError, ValidationError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def spool(root: Path) -> Iterator[Spool]:
    with Spool(root) as opened:
        yield opened


def blob(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def sha(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


def assert_disk_matches(spool: Spool, root: Path) -> None:
    """Every file on disk belongs to a held capture, every capture is intact, usage adds up."""
    spool.finish_deletions()  # the files of released captures are deleted on a thread, soon
    expected: set[str] = set()
    total = 0
    for code, cameras in spool.pending().items():
        for camera in cameras:
            cap = spool.get(code, camera)
            expected |= {f"{code}/{cap.path.name}", f"{code}/{camera}.json"}
            view = spool.read(code, camera)
            assert sha(view) == cap.sha256 == cap.meta["sha256"]
            assert len(view) == cap.size == cap.meta["size"]
            view.release()
            total += cap.path.stat().st_size + (root / code / f"{camera}.json").stat().st_size
    assert files_under(root) == expected
    assert spool.usage_bytes() == total


# ---------------------------------------------------------------- basic life cycle


def test_put_returns_capture_and_writes_documented_layout(spool: Spool, root: Path) -> None:
    data = blob(1000)
    cap = spool.put("7", "cam0", data, {"capture_ns": 123, "resolution": [64, 48]}, ext="jpeg")
    assert isinstance(cap, Capture)
    assert (cap.data_code, cap.camera, cap.size, cap.sha256) == ("7", "cam0", 1000, sha(data))
    assert cap.path == root / "7" / "cam0.jpeg"
    assert cap.path.read_bytes() == data
    on_disk = json.loads((root / "7" / "cam0.json").read_text())
    assert on_disk == cap.meta
    assert on_disk["capture_ns"] == 123 and on_disk["resolution"] == [64, 48]
    assert on_disk["size"] == 1000 and on_disk["sha256"] == sha(data) and on_disk["seq"] == 0
    assert on_disk["xxh3_128"] == xxhash.xxh3_128_hexdigest(data)
    assert on_disk["file"] == "cam0.jpeg" and on_disk["ext"] == "jpeg"


def test_read_returns_readonly_view_of_the_bytes(spool: Spool) -> None:
    data = blob(300_000, 1)
    spool.put("1", "cam0", memoryview(data), {}, ext="png")
    view = spool.read("1", "cam0")
    assert isinstance(view, memoryview) and view.readonly
    assert view == data
    with pytest.raises(TypeError):
        view[0] = 1  # type: ignore[index]


def test_put_accepts_any_contiguous_buffer_and_empty_data(spool: Spool) -> None:
    spool.put("1", "a", bytearray(b"abc"), {}, ext="raw")
    spool.put("1", "b", memoryview(b"\x01\x00\x02\x00").cast("H"), {}, ext="raw")
    spool.put("1", "c", b"", {}, ext="raw")
    assert bytes(spool.read("1", "a")) == b"abc"
    assert bytes(spool.read("1", "b")) == b"\x01\x00\x02\x00"
    assert spool.get("1", "b").size == 4
    assert bytes(spool.read("1", "c")) == b""


def test_get_meta_is_a_private_copy(spool: Spool) -> None:
    spool.put("1", "cam0", b"x", {"tags": ["a"]}, ext="jpeg")
    first = spool.get("1", "cam0")
    first.meta["tags"].append("mutated")
    assert spool.get("1", "cam0").meta["tags"] == ["a"]


def test_reads_never_delete(spool: Spool, root: Path) -> None:
    spool.put("1", "cam0", b"abc", {}, ext="jpeg")
    for _ in range(3):
        assert bytes(spool.read("1", "cam0")) == b"abc"
        spool.get("1", "cam0")
    assert spool.pending() == {"1": ["cam0"]}
    spool.close()
    with Spool(root) as again:
        assert bytes(again.read("1", "cam0")) == b"abc"


def test_restart_keeps_everything(root: Path) -> None:
    with Spool(root) as first:
        for i in range(5):
            for cam in ("cam0", "cam1"):
                first.put(f"d{i}", cam, blob(5000 + i, i), {"i": i, "camera_index": int(cam[-1])}, ext="jpeg")
        before = {(c, cam): first.get(c, cam) for c, cams in first.pending().items() for cam in cams}
        pending, usage = first.pending(), first.usage_bytes()
    with Spool(root) as second:
        assert second.pending() == pending
        assert second.usage_bytes() == usage
        for (code, cam), cap in before.items():
            assert second.get(code, cam) == cap
            assert bytes(second.read(code, cam)) == blob(5000 + int(code[1:]), int(code[1:]))
        newer = second.put("late", "cam0", b"z", {}, ext="jpeg")
        assert newer.meta["seq"] > max(c.meta["seq"] for c in before.values())
        assert second.list_codes()[-1] == "late"
        assert_disk_matches(second, root)


def test_second_open_of_same_root_is_refused(spool: Spool, root: Path) -> None:
    with pytest.raises(PlantImagerError, match="in use by another process"):
        Spool(root)
    spool.close()
    Spool(root).close()


def test_closed_spool_refuses_calls(spool: Spool) -> None:
    spool.put("1", "cam0", b"x", {}, ext="jpeg")
    spool.close()
    spool.close()  # idempotent
    for call in (
        lambda: spool.put("1", "cam1", b"x", {}, ext="jpeg"),
        lambda: spool.get("1", "cam0"),
        lambda: spool.read("1", "cam0"),
        spool.pending,
        lambda: spool.release("1"),
    ):
        with pytest.raises(PlantImagerError, match="closed"):
            call()


# ---------------------------------------------------------------- release


def test_release_whole_code(spool: Spool, root: Path) -> None:
    for cam in ("cam0", "cam1", "cam2"):
        spool.put("5", cam, b"data" + cam.encode(), {}, ext="jpeg")
    spool.put("6", "cam0", b"keep", {}, ext="jpeg")
    assert spool.release("5") == 3
    assert spool.pending() == {"6": ["cam0"]}
    spool.finish_deletions()
    assert not (root / "5").exists()
    with pytest.raises(ImageUnavailable, match='data code "5"'):
        spool.read("5", "cam0")
    assert_disk_matches(spool, root)


def test_release_some_cameras(spool: Spool, root: Path) -> None:
    for cam in ("cam0", "cam1", "cam2"):
        spool.put("5", cam, cam.encode(), {}, ext="jpeg")
    assert spool.release("5", ["cam2", "cam0", "cam0"]) == 2
    assert spool.cameras("5") == ["cam1"]
    assert spool.release("5", []) == 0
    assert spool.release("5") == 1
    assert spool.pending() == {}
    spool.finish_deletions()
    assert files_under(root) == set()


def test_release_unknown_is_refused_and_deletes_nothing(spool: Spool) -> None:
    spool.put("5", "cam0", b"x", {}, ext="jpeg")
    with pytest.raises(ImageUnavailable, match='No images are stored under the data code "nope"'):
        spool.release("nope")
    with pytest.raises(ImageUnavailable, match=r"'cam9'.*data code \"5\"; nothing was released"):
        spool.release("5", ["cam0", "cam9"])
    with pytest.raises(ValidationError, match="not a single string"):
        spool.release("5", "cam0")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="camera name"):
        spool.release("5", ["../cam0"])
    assert spool.pending() == {"5": ["cam0"]}
    spool.release("5")
    with pytest.raises(ImageUnavailable):
        spool.release("5")  # a retried release after success says so


def count_fsyncs(monkeypatch: pytest.MonkeyPatch, watch: threading.Condition | None = None) -> list[Path]:
    """Record every folder fsynced to make deletions durable, in order (the fsync still happens)."""
    from plantimager.camera import spoolrelease

    synced: list[Path] = []
    real = spoolrelease.fsync_dir

    def recording(path: Path) -> None:
        real(path)
        if watch is None:
            synced.append(Path(path))
            return
        with watch:
            synced.append(Path(path))
            watch.notify_all()

    monkeypatch.setattr(spoolrelease, "fsync_dir", recording)
    return synced


def test_release_many_deletes_at_once_and_one_fsync_later_makes_every_release_durable(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = count_fsyncs(monkeypatch)
    spool = Spool(root, deletion_sync_s=600)  # nothing synced before close: the test decides
    try:
        for code in ("a1", "a2", "a3", "a4"):
            for cam in ("cam0", "cam1"):
                spool.put(code, cam, blob(3000, hash(code + cam) % 1000), {}, ext="jpeg")
        result = spool.release_many({"a1": ["cam0", "cam1"], "a2": None})
        assert result.released == 4 and result.missing == {}
        assert spool.release_many({"a3": ["cam1", "cam0"]}).released == 2
        assert synced == [], "a release waited for an fsync"
        assert spool.pending() == {"a4": ["cam0", "cam1"]}
        for code in ("a1", "a2", "a3"):  # renamed away at once, deleted on the spool's thread
            left = {p.name for p in (root / code).glob("*")}  # the folder may be gone already
            assert not left & {"cam0.json", "cam1.json", "cam0.jpeg", "cam1.jpeg"}
    finally:
        spool.close()
    assert synced == [root], "one fsync of the spool folder for both releases"
    assert not any((root / code).exists() for code in ("a1", "a2", "a3"))
    with Spool(root) as again:
        assert again.pending() == {"a4": ["cam0", "cam1"]}


def test_deletions_are_made_durable_within_the_delay_by_the_spool_itself(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = threading.Condition()
    synced = count_fsyncs(monkeypatch, watch)
    with Spool(root, deletion_sync_s=0.05) as spool:
        spool.put("b1", "cam0", b"x", {}, ext="jpeg")
        spool.put("b1", "cam1", b"y", {}, ext="jpeg")
        spool.put("b2", "cam0", b"z", {}, ext="jpeg")
        assert spool.release_many({"b1": ["cam0"], "b2": None}).released == 2
        with watch:
            assert watch.wait_for(lambda: len(synced) >= 2, 10), "the deletions were not made durable"
        assert sorted(synced) == sorted([root / "b1", root]), "the kept folder, and the spool folder"
        assert spool.pending() == {"b1": ["cam1"]}


def test_a_capture_that_fsyncs_the_spool_folder_makes_earlier_folder_removals_durable(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = count_fsyncs(monkeypatch)
    root.mkdir()
    for code in ("e1", "e2"):
        (root / code).mkdir()
        (root / code / ".tmp-gone-x.img").write_bytes(b"released")
    janitor = Janitor(root, 600, lambda code: remove_empty_folder(root / code))
    try:
        for code in ("e1", "e2"):
            deletion = Deletion(root)
            deletion.trash.append(root / code / ".tmp-gone-x.img")
            deletion.remove_folder(code)
            janitor.add(deletion)
        janitor.clean()
        assert not (root / "e1").exists() and not (root / "e2").exists()
        janitor.root_synced()  # as a capture making its data-code folder does, under the spool's lock
    finally:
        janitor.close()
    assert synced == [], "the folders' removal was fsynced again"


def test_a_node_dying_before_the_files_of_a_release_are_deleted_does_not_get_them_back(root: Path) -> None:
    with Spool(root) as spool:
        kept = spool.put("f1", "cam0", b"kept", {}, ext="jpeg")
        gone = spool.put("f2", "cam0", b"gone", {}, ext="jpeg")
    deletion = Deletion(root)  # what a release does before it answers; the rest never happens
    deletion.remove("f2", "cam0", gone.path.name)
    assert {p.name for p in (root / "f2").iterdir()} == {p.name for p in deletion.trash}
    with Spool(root) as again:
        assert again.pending() == {"f1": ["cam0"]}
        assert bytes(again.read("f1", "cam0")) == b"kept" and kept.sha256 == again.get("f1", "cam0").sha256
        assert not (root / "f2").exists()


def test_release_many_reports_what_is_not_stored_and_deletes_the_rest(spool: Spool, root: Path) -> None:
    spool.put("c1", "cam0", b"x", {}, ext="jpeg")
    spool.put("c2", "cam0", b"y", {}, ext="jpeg")
    result = spool.release_many({"c1": ["cam0", "cam7"], "gone": ["cam0"], "never": None, "c2": []})
    assert result.released == 1
    assert result.missing == {"c1": ["cam7"], "gone": ["cam0"], "never": None}
    assert spool.pending() == {"c2": ["cam0"]}
    again = spool.release_many({"c1": ["cam0"]})  # a retried release after success says so
    assert again.released == 0 and again.missing == {"c1": ["cam0"]}
    assert_disk_matches(spool, root)


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (["c1"], "must map data codes to lists of cameras, got list"),
        ({"../c1": None}, "invalid data code '../c1'"),
        ({"c1": "cam0"}, "data code 'c1' must be a list of camera names, not a single string"),
        ({"c1": 7}, "data code 'c1' must be a list of camera names, not int"),
        ({"c1": ["cam0", "a/b"]}, "invalid camera name 'a/b'"),
        ({"c1": ["cam0"], 5: ["cam0"]}, "invalid data code 5: must be a str"),
        ({f"c{i}": None for i in range(10_001)}, "at most 10000 data codes, got 10001"),
    ],
)
def test_release_many_refuses_bad_requests_and_deletes_nothing(
    spool: Spool, root: Path, request_: object, match: str
) -> None:
    spool.put("c1", "cam0", b"x", {}, ext="jpeg")
    with pytest.raises(ValidationError, match=match):
        spool.release_many(request_)  # type: ignore[arg-type]
    assert spool.pending() == {"c1": ["cam0"]}
    assert_disk_matches(spool, root)


def test_release_many_keeps_the_folder_of_a_capture_being_stored(
    spool: Spool, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plantimager.camera import spool as spool_module

    spool.put("d1", "cam0", b"old", {}, ext="jpeg")
    entered, finish = threading.Event(), threading.Event()
    real = spool_module.write_durably

    def held_write(path: Path, view: memoryview) -> None:
        entered.set()
        assert finish.wait(10)
        real(path, view)

    monkeypatch.setattr(spool_module, "write_durably", held_write)
    with ThreadPoolExecutor(1) as pool:
        putting = pool.submit(spool.put, "d1", "cam1", b"new", {}, ext="jpeg")
        try:
            assert entered.wait(10)
            assert spool.release_many({"d1": None}).released == 1  # cam1 is not stored yet
            assert (root / "d1").is_dir(), "the folder of a capture being written was removed"
        finally:
            finish.set()
        putting.result(timeout=10)
    assert spool.pending() == {"d1": ["cam1"]}
    assert_disk_matches(spool, root)


def test_view_survives_release_and_overwrite(spool: Spool) -> None:
    spool.put("1", "cam0", b"first", {}, ext="jpeg")
    old = spool.read("1", "cam0")
    spool.put("1", "cam0", b"second!", {}, ext="jpeg")
    assert bytes(old) == b"first"
    newer = spool.read("1", "cam0")
    spool.release("1")
    assert bytes(newer) == b"second!" and bytes(old) == b"first"


# ---------------------------------------------------------------- overwrite and ordering


def test_overwrite_replaces_like_pepi(spool: Spool, root: Path) -> None:
    spool.put("1", "cam0", blob(2000, 1), {"take": 1}, ext="jpeg")
    cap = spool.put("1", "cam0", blob(500, 2), {"take": 2}, ext="png")
    assert spool.cameras("1") == ["cam0"]
    assert spool.get("1", "cam0") == cap and cap.meta["take"] == 2
    assert bytes(spool.read("1", "cam0")) == blob(500, 2)
    assert not (root / "1" / "cam0.jpeg").exists()  # the old file with another extension is gone
    assert_disk_matches(spool, root)


def test_failed_overwrite_never_pairs_old_metadata_with_new_image(
    spool: Spool, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool.put("1", "cam0", blob(1000, 1), {"take": 1}, ext="jpeg")
    real_replace = os.replace

    def replace_failing_on_metadata(src: object, dst: object) -> None:
        if str(dst).endswith(".json"):
            raise OSError(errno.EIO, "simulated failure while committing metadata")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace_failing_on_metadata)
    with pytest.raises(OSError, match="simulated failure"):
        spool.put("1", "cam0", blob(1000, 2), {"take": 2}, ext="jpeg")  # same size, same file name
    monkeypatch.undo()
    assert_disk_matches(spool, root)  # what the index says is what is on disk, intact
    spool.close()
    with Spool(root) as again:
        assert_disk_matches(again, root)


def test_codes_listed_in_capture_order(spool: Spool) -> None:
    for code in ("10", "9", "b", "a", "2"):
        spool.put(code, "cam0", b"x", {}, ext="jpeg")
    assert spool.list_codes() == ["10", "9", "b", "a", "2"]
    assert list(spool.pending()) == ["10", "9", "b", "a", "2"]
    spool.release("9")
    spool.put("9", "cam0", b"x", {}, ext="jpeg")
    assert spool.list_codes() == ["10", "b", "a", "2", "9"]


def test_cameras_in_camera_index_order(spool: Spool) -> None:
    spool.put("1", "zeta", b"x", {"camera_index": 0}, ext="jpeg")
    spool.put("1", "alpha", b"x", {"camera_index": 2}, ext="jpeg")
    spool.put("1", "extra2", b"x", {}, ext="jpeg")
    spool.put("1", "mid", b"x", {"camera_index": 1}, ext="jpeg")
    spool.put("1", "extra1", b"x", {}, ext="jpeg")
    assert spool.cameras("1") == ["zeta", "mid", "alpha", "extra2", "extra1"]
    assert spool.pending() == {"1": ["zeta", "mid", "alpha", "extra2", "extra1"]}


# ---------------------------------------------------------------- refusals


BAD_NAMES = ["", ".", "..", "../x", "a/b", "/abs", "a\\b", "x" * 10_000, 7, None, b"cam"]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_bad_names_are_refused_everywhere(spool: Spool, root: Path, bad: object) -> None:
    spool.put("ok", "cam0", b"x", {}, ext="jpeg")
    calls = [
        ("data code", lambda: spool.put(bad, "cam0", b"x", {}, ext="jpeg")),
        ("camera name", lambda: spool.put("ok", bad, b"x", {}, ext="jpeg")),
        ("data code", lambda: spool.get(bad, "cam0")),
        ("camera name", lambda: spool.read("ok", bad)),
        ("data code", lambda: spool.cameras(bad)),
        ("data code", lambda: spool.release(bad)),
    ]
    for kind, call in calls:
        with pytest.raises(ValidationError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"invalid {kind}") and len(message) < 400
    assert files_under(root) == {"ok/cam0.jpeg", "ok/cam0.json"}
    assert sorted(os.listdir(root)) == [".lock", "ok"]


@pytest.mark.parametrize("ext", ["", "json", "JSON", "jp.eg", "a/b", "x" * 17, None])
def test_bad_extension_is_refused(spool: Spool, ext: object) -> None:
    with pytest.raises(ValidationError, match="invalid extension"):
        spool.put("1", "cam0", b"x", {}, ext=ext)  # type: ignore[arg-type]
    assert spool.pending() == {}


@pytest.mark.parametrize(
    ("data", "meta", "match"),
    [
        ("text", {}, "bytes-like"),
        (12, {}, "bytes-like"),
        (memoryview(bytes(range(16)))[::2], {}, "contiguous"),
        (b"x", [("a", 1)], "mapping"),
        (b"x", {1: "a"}, "str keys"),
        (b"x", {"obj": object()}, "not JSON-encodable"),
        (b"x", {"camera_index": -1}, "camera_index"),
        (b"x", {"camera_index": True}, "camera_index"),
        (b"x", {"camera_index": "0"}, "camera_index"),
        (b"x", {"size": 2}, r"meta\['size'\]"),
        (b"x", {"sha256": "0" * 64}, r"meta\['sha256'\]"),
        (b"x", {"xxh3_128": "0" * 32}, r"meta\['xxh3_128'\]"),
        (b"x", {"seq": 0}, "assigned by the spool"),
        (b"x", {"camera": "other"}, r"meta\['camera'\]"),
        (b"x", {"blob": "y" * 70_000}, "too large"),
    ],
)
def test_bad_data_or_meta_is_refused(
    spool: Spool, root: Path, data: object, meta: object, match: str
) -> None:
    with pytest.raises(ValidationError, match=match):
        spool.put("1", "cam0", data, meta, ext="jpeg")  # type: ignore[arg-type]
    assert spool.pending() == {}
    assert files_under(root) == set()


def test_matching_reserved_keys_are_accepted(spool: Spool) -> None:
    data = b"checked"
    cap = spool.put("1", "cam0", data, {"sha256": sha(data), "size": 7, "camera": "cam0"}, ext="jpeg")
    assert cap.sha256 == sha(data)


def test_unknown_capture_errors_name_code_and_camera(spool: Spool) -> None:
    spool.put("1", "cam0", b"x", {}, ext="jpeg")
    with pytest.raises(ImageUnavailable) as info:
        spool.get("2", "cam0")
    assert str(info.value) == 'No images are stored under the data code "2"'
    assert isinstance(info.value, KeyError)
    with pytest.raises(ImageUnavailable, match=r'camera "cam1" .* data code "1"'):
        spool.read("1", "cam1")
    with pytest.raises(ImageUnavailable, match='data code "2"'):
        spool.cameras("2")


# ---------------------------------------------------------------- bound


def test_spool_full_keeps_what_is_there(root: Path) -> None:
    with Spool(root, max_bytes=10_000) as spool:
        spool.put("1", "cam0", blob(4000, 1), {}, ext="jpeg")
        spool.put("1", "cam1", blob(4000, 2), {}, ext="jpeg")
        used = spool.usage_bytes()
        with pytest.raises(SpoolFull, match=r"spool .* is full: capture 2/cam0 needs \d+ bytes") as info:
            spool.put("2", "cam0", blob(4000, 3), {}, ext="jpeg")
        assert info.value.max_bytes == 10_000 and info.value.used == used
        assert isinstance(info.value, PlantImagerError)
        # Nothing evicted, nothing half-written, and even an overwrite must fit.
        with pytest.raises(SpoolFull):
            spool.put("1", "cam0", blob(4000, 4), {}, ext="jpeg")
        assert spool.pending() == {"1": ["cam0", "cam1"]}
        assert bytes(spool.read("1", "cam0")) == blob(4000, 1)
        assert_disk_matches(spool, root)
        spool.release("1", ["cam0"])
        spool.put("2", "cam0", blob(4000, 3), {}, ext="jpeg")
        assert spool.pending() == {"1": ["cam1"], "2": ["cam0"]}


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_bad_max_bytes_is_refused(root: Path, bad: object) -> None:
    with pytest.raises(ValidationError, match="max_bytes"):
        Spool(root, max_bytes=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- recovery and memory


def test_open_cleans_up_interrupted_writes(root: Path) -> None:
    with Spool(root) as spool:
        spool.put("1", "good", b"good", {}, ext="jpeg")
        spool.put("1", "trunc", b"0123456789", {}, ext="jpeg")
        spool.put("1", "gone", b"gone", {}, ext="jpeg")
        spool.put("2", "bad", b"bad", {}, ext="jpeg")
    (root / "1" / ".tmp-0123abcd.img").write_bytes(b"partial")
    (root / "1" / ".tmp-0123abcd.json").write_bytes(b"{")
    (root / "1" / "orphan.jpeg").write_bytes(b"image whose metadata never landed")
    (root / "1" / "trunc.jpeg").write_bytes(b"01234")
    (root / "1" / "gone.jpeg").unlink()
    (root / "2" / "bad.json").write_text("not json")
    (root / "3").mkdir()
    (root / "3" / "lonely.jpeg").write_bytes(b"x")
    (root / "README").write_text("not ours")
    (root / ".hidden").mkdir()
    with Spool(root) as spool:
        assert spool.pending() == {"1": ["good"]}
        assert not (root / "2").exists() and not (root / "3").exists()
        assert (root / "README").exists() and (root / ".hidden").exists()
        assert sorted(os.listdir(root / "1")) == ["good.jpeg", "good.json"]
        (root / "README").unlink()
        assert_disk_matches(spool, root)


def reachable(obj: object) -> Iterator[object]:
    """Yield every object reachable from ``obj`` (not descending into modules or classes)."""
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (type, types.ModuleType, types.FunctionType)):
            continue
        seen.add(id(item))
        yield item
        stack.extend(gc.get_referents(item))


def test_spool_holds_no_image_bytes(spool: Spool) -> None:
    size = 256 * 1024
    for i in range(20):
        spool.put(f"c{i}", "cam0", blob(size, i), {"i": i}, ext="jpeg")
    for i in range(20):
        view = spool.read(f"c{i}", "cam0")
        assert len(view) == size
        view.release()
    buffers = [o for o in reachable(spool) if isinstance(o, (bytes, bytearray, memoryview, mmap.mmap))]
    assert buffers, "the index keeps encoded metadata as bytes: the walk must see it"
    assert not [o for o in buffers if isinstance(o, (bytearray, memoryview, mmap.mmap))]
    assert max(len(o) for o in buffers) < 1024
    assert sum(len(o) for o in buffers) < 20 * 1024


# ---------------------------------------------------------------- concurrency


def test_concurrent_puts_reads_and_releases_stay_consistent(root: Path) -> None:
    spool = Spool(root)
    errors: list[BaseException] = []
    start = threading.Barrier(6, timeout=10)
    guard = threading.Lock()
    written: dict[tuple[str, str], set[str]] = {}

    def worker(w: int) -> None:
        rng = random.Random(w)
        start.wait()
        for i in range(25):
            code, cam = f"k{rng.randrange(6)}", f"cam{rng.randrange(3)}"
            data = blob(rng.randrange(1, 20_000), w * 1000 + i)
            with guard:
                written.setdefault((code, cam), set()).add(sha(data))
            cap = spool.put(code, cam, data, {"w": w, "i": i}, ext=rng.choice(["jpeg", "png"]))
            assert cap.sha256 == sha(data)
            try:
                view = spool.read(code, cam)  # may hold another worker's newer put: still whole
                with guard:
                    assert sha(view) in written[(code, cam)]
                view.release()
                if rng.random() < 0.2:
                    spool.release(code, [cam])
            except ImageUnavailable:
                pass  # another worker released it first

    try:
        with ThreadPoolExecutor(6) as pool:
            for fut in [pool.submit(worker, w) for w in range(6)]:
                try:
                    fut.result(timeout=60)
                except BaseException as exc:  # collect, report below
                    errors.append(exc)
        assert not errors, errors
        assert_disk_matches(spool, root)
        pending, usage = spool.pending(), spool.usage_bytes()
    finally:
        spool.close()
    with Spool(root) as again:
        assert again.pending() == pending and again.usage_bytes() == usage


# ---------------------------------------------------------------- crash durability

CHILD = r"""
import hashlib, random, sys
from pathlib import Path
from plantimager.camera.spool import Spool

spool = Spool(Path(sys.argv[1]))
rng = random.Random(int(sys.argv[2]))
data = rng.randbytes(rng.randrange(1, 1_000_000))
for i in range(100_000):
    code = f"c{i // 2}" if i % 5 else f"c{rng.randrange(i // 2 + 1)}"  # every 5th put overwrites
    cam = f"cam{i % 2}"
    digest = hashlib.sha256(data).hexdigest()
    print("begin", code, cam, digest, flush=True)
    spool.put(code, cam, data, {"i": i}, ext="jpeg")
    # Make the next image before reporting, so a kill soon after "done" lands inside a put.
    data = rng.randbytes(rng.randrange(1, 1_000_000))
    print("done", code, cam, digest, flush=True)
"""


def run_child_until(root: Path, seed: int, event: str, count: int) -> list[list[str]]:
    """Run a writer, SIGKILL it once it printed ``count`` lines of ``event``, return all its lines.

    Killing on "begin" lands inside a put (hashing, writing, renaming), on "done" between puts.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    buffer = b""
    try:
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        deadline = time.monotonic() + 60
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while buffer.count(f"{event} ".encode()) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, "writer too slow"
                if sel.select(remaining):
                    chunk = os.read(fd, 65536)
                    assert chunk, f"writer died: {proc.stderr.read().decode()}"  # type: ignore[union-attr]
                    buffer += chunk
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        while chunk := os.read(fd, 65536):  # what it printed before dying
            buffer += chunk
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    return [line.split() for line in buffer.decode().splitlines() if line.endswith(tuple("0123456789abcdef"))]


@pytest.mark.parametrize(
    ("seed", "event", "count"), [(1, "done", 3), (2, "begin", 7), (3, "begin", 30), (4, "done", 25)]
)
def test_sigkill_loses_no_completed_capture(root: Path, seed: int, event: str, count: int) -> None:
    lines = run_child_until(root, seed, event, count)
    last_done: dict[tuple[str, str], str] = {}
    in_flight: dict[tuple[str, str], str] = {}
    for event, code, cam, digest in lines:
        if event == "begin":
            in_flight[(code, cam)] = digest
        else:
            last_done[(code, cam)] = digest
            in_flight.pop((code, cam))
    assert len(in_flight) <= 1
    with Spool(root) as spool:
        held = {(code, cam) for code, cams in spool.pending().items() for cam in cams}
        for key, digest in last_done.items():
            if key not in in_flight:
                assert key in held, f"completed capture {key} lost"
                assert spool.get(*key).sha256 == digest
        for key in held:
            # Anything held is either a completed put or the interrupted one, and intact.
            assert spool.get(*key).sha256 in {last_done.get(key), in_flight.get(key)}
        assert not [p for p in root.rglob(".tmp-*")]
        assert_disk_matches(spool, root)
