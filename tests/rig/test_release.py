"""Releasing downloaded images on the nodes: batched per node, and only once they are durable.

An image may be deleted from its node only after its bytes, its name in the dataset folder and its
ledger record are on disk. The trace test follows every step of a download in order; the crash
tests kill the controller between the steps and check that nothing is lost or fetched twice.
Nodes run in-process here where the test watches their spool, in their own processes otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import zmq

from plantimager.camera.dummy import DummyBackend
from plantimager.camera.node import CameraNodeServer
from plantimager.camera.spool import Released, Spool
from plantimager.commons.deviceregistry import DeviceRegistry
from plantimager.rig import dataset as dataset_module
from plantimager.rig.ledger import Ledger
from plantimager.testing import serve_in_thread

pytestmark = pytest.mark.timeout(90)

WAIT = 20.0


class WatchedSpool(Spool):
    """A spool that tells the test what the node was asked: reads, releases."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.watch = threading.Condition()
        self.reads = 0
        self.releases: list[tuple[str, Any]] = []

    def read(self, data_code: str, camera: str) -> memoryview:
        view = super().read(data_code, camera)
        with self.watch:
            self.reads += 1
            self.watch.notify_all()
        return view

    def release(self, data_code: str, cameras: Any = None) -> int:
        count = super().release(data_code, cameras)
        with self.watch:
            self.releases.append(("release", {data_code: cameras}))
        return count

    def release_many(self, captures: Mapping[str, Any]) -> Released:
        done = super().release_many(captures)
        with self.watch:
            self.releases.append(("release_many", dict(captures)))
        return done


class OldNodeServer(CameraNodeServer):
    """A node from before ``release_many``: its inventory does not list it."""

    release_many = None  # type: ignore[assignment]


@contextlib.contextmanager
def in_process_node(
    ctx: zmq.Context, registry: DeviceRegistry, home: Path, name: str, node_class: type = CameraNodeServer
) -> Iterator[tuple[CameraNodeServer, WatchedSpool]]:
    """A node with one dummy camera, served in a thread and registered as ``name``."""
    spool = WatchedSpool(home / name / "spool")
    node = node_class(
        ctx,
        "tcp://127.0.0.1:0",
        backends=[DummyBackend(0, resolution=(160, 120))],
        spool=spool,
        node_id=f"id-{name}",
        stream_port=None,
        settle_ms=0,
    )
    try:
        with serve_in_thread(node):
            assert node.register_to_registry("camera", name, registry.url) == name
            yield node, spool
    finally:
        node.close()
        spool.close()


def released_codes(spool: WatchedSpool) -> list[set[str]]:
    with spool.watch:
        return [set(request) for kind, request in spool.releases]


def test_each_node_gets_one_release_for_every_capture_recorded_together(ctx, registry, make_rig, tmp_path):
    with (
        in_process_node(ctx, registry, tmp_path, "p") as (_, p),
        in_process_node(ctx, registry, tmp_path, "q") as (_, q),
    ):
        rig = make_rig(dataset=tmp_path / "session")
        assert rig.wait_for_cameras(2, WAIT)
        records = [rig.capture_all() for _ in range(3)]
        codes = {record.data_code for record in records}

        def hold_recording_until_q_is_read(event: Any) -> None:
            # One transfer worker takes p's captures, then q's. The recorder waits here (once, on
            # its first batch, one of p's) until q's images are read: by then p's other captures
            # wait together for the next round, which releases them in one call.
            with q.watch:
                assert q.watch.wait_for(lambda: q.reads >= 3, WAIT)

        report = rig.download_all(jobs=1, progress=hold_recording_until_q_is_read)
        assert len(report.files) == 6 and report.released == 6 and not report.failures
        for spool in (p, q):
            calls = released_codes(spool)
            assert [kind for kind, _ in spool.releases] == ["release_many"] * len(calls)
            assert set().union(*calls) == codes and sum(len(c) for c in calls) == 3
            assert spool.pending() == {}
        calls = released_codes(p)
        assert len(calls) <= 2, f"one release per capture instead of per batch: {calls}"
        assert max(len(c) for c in calls) >= 2


def test_a_node_without_release_many_is_released_one_capture_at_a_time(ctx, registry, make_rig, tmp_path):
    with in_process_node(ctx, registry, tmp_path, "old", OldNodeServer) as (node, spool):
        assert "release_many" not in node.inventory()["json_methods"]
        rig = make_rig(dataset=tmp_path / "session")
        assert rig.wait_for_cameras(1, WAIT)
        codes = [rig.capture_all().data_code for _ in range(2)]
        report = rig.download_all()
        assert report.released == 2 and not report.failures
        assert sorted(spool.releases, key=str) == sorted((("release", {c: ["cam0"]}) for c in codes), key=str)
        assert spool.pending() == {}


def test_an_image_is_released_only_after_its_file_name_and_record_are_durable(
    ctx, registry, make_rig, tmp_path, monkeypatch
):
    """The download's steps, traced in order: fsynced file, folder fsync, ledger fsync, release."""
    trace: list[tuple[str, Any]] = []
    lock = threading.Lock()

    def log(kind: str, what: Any) -> None:
        with lock:
            trace.append((kind, what))

    real_publish, real_fsync_dir, real_append = (
        dataset_module.publish_file,
        dataset_module.fsync_dir,
        Ledger.append_many,
    )

    def publish(tmp: Path, final: Path, sha256: str) -> bool:
        created = real_publish(tmp, final, sha256)  # fsyncs the file, then links it to its name
        log("file durable", final.name)
        return created

    def fsync_dir(path: Path) -> None:
        real_fsync_dir(path)
        log("folder durable", Path(path))

    def append_many(self: Ledger, records: Any, *, durable: bool = True) -> None:
        real_append(self, records, durable=durable)
        if durable:
            log("record durable", {r.get("file") for r in records if r.get("kind") == "received"})

    monkeypatch.setattr(dataset_module, "publish_file", publish)
    monkeypatch.setattr(dataset_module, "fsync_dir", fsync_dir)
    monkeypatch.setattr(Ledger, "append_many", append_many)
    with (
        in_process_node(ctx, registry, tmp_path, "p") as (_, p),
        in_process_node(ctx, registry, tmp_path, "q") as (_, q),
    ):
        real_release = {spool: spool.release_many for spool in (p, q)}

        def releasing(spool: WatchedSpool) -> Any:
            def release_many(captures: Mapping[str, Any]) -> Released:
                log("released", {(spool.root.parent.name, code) for code in captures})
                return real_release[spool](captures)

            return release_many

        for spool in (p, q):
            monkeypatch.setattr(spool, "release_many", releasing(spool))
        dataset = tmp_path / "session"
        rig = make_rig(dataset=dataset)
        assert rig.wait_for_cameras(2, WAIT)
        records = [rig.capture_all() for _ in range(4)]
        report = rig.download_all(jobs=2)
        assert report.released == 8 and not report.failures

    shots = {(s.node, r.data_code): s.file for r in records for s in r.shots}
    assert len(shots) == 8
    for (node, code), file in shots.items():
        steps = [
            next(i for i, (k, w) in enumerate(trace) if k == "file durable" and w == file),
            next(i for i, (k, w) in enumerate(trace) if k == "released" and (node, code) in w),
        ]
        folder = [i for i, (k, w) in enumerate(trace) if k == "folder durable" and w == dataset]
        record = [i for i, (k, w) in enumerate(trace) if k == "record durable" and file in w]
        assert len(record) == 1, f"{file} recorded {len(record)} times"
        assert any(steps[0] < i < record[0] for i in folder), (
            f"{file}: no folder fsync between file and record"
        )
        assert steps[0] < record[0] < steps[1], f"{file} released before it was durable: {trace}"


# -- the controller killed between the steps of a download -----------------------------------------
CONTROLLER = r"""
import os, signal, sys
from plantimager.rig import CallLimits, Rig
from plantimager.rig import dataset, ledger

registry, root, step = sys.argv[1:4]


def die(owner, name, when=lambda *a, **k: True, before=False):
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        if before and when(*args, **kwargs):
            print("dying after", step, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if not before and when(*args, **kwargs):
            print("dying after", step, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


if step == "staged":  # bytes in a temporary file, not durable
    die(dataset.Dataset, "stage_image")
elif step == "file":  # the file fsynced and given its name
    die(dataset.Dataset, "finish_image")
elif step == "folder":  # the folder fsynced, the ledger not written
    die(dataset, "fsync_dir")
elif step == "record":  # the ledger written and fsynced, the node not told
    die(ledger.Ledger, "append_many", lambda self, records, durable=True: durable)
elif step == "release":  # the node has deleted the images, the controller has not noted it
    die(dataset.Dataset, "mark_released", before=True)
limits = CallLimits(connect=2000, call=5000, capture=20000, transfer=5000)
with Rig(registry, dataset=root, limits=limits) as rig:
    assert rig.wait_for_cameras(3, 20)
    rig.download_all(jobs=2)
print("finished without dying", flush=True)
"""


@pytest.mark.parametrize("step", ["staged", "file", "folder", "record", "release"])
def test_a_controller_killed_between_the_steps_of_a_download_loses_nothing(
    step, spawn, registry, make_rig, pending_of, tmp_path
):
    nodes = [spawn("x", cameras=2).ready(), spawn("y").ready()]
    dataset = tmp_path / "session"
    rig = make_rig(dataset=dataset)
    assert rig.wait_for_cameras(3, WAIT)
    records = [rig.capture_all() for _ in range(2)]
    expected = {s.file: s.sha256 for r in records for s in r.shots}
    rig.close()  # one controller per dataset: the child takes it over

    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CONTROLLER), registry.url, str(dataset), step],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    assert f"dying after {step}" in child.stdout
    held = pending_of(nodes)
    still_held = sum(len(cams) for codes in held.values() for cams in codes.values())
    if step != "release":  # nothing may be released before its record is durable
        assert still_held == 6, f"released before the crash: {held}"

    again = make_rig(dataset=dataset)
    assert again.wait_for_cameras(3, WAIT)
    report = again.download_all()
    assert not report.failures and report.owed == 0
    assert pending_of(nodes) == {"x": {}, "y": {}}
    names = sorted(p.name for p in dataset.iterdir() if not p.name.startswith("."))
    assert names == sorted([*expected, "manifest.json"]), "an image is missing, or a stray file was left"
    for file, sha in expected.items():
        assert hashlib.sha256((dataset / file).read_bytes()).hexdigest() == sha
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert sorted(image["file"] for image in manifest["images"]) == sorted(expected)
    assert not any(p.name.startswith(".tmp-") for p in dataset.iterdir())


def test_what_a_node_kept_after_being_told_to_delete_it_is_released_when_it_is_back(
    spawn, make_rig, pending_of, tmp_path
):
    """A node that loses power within a second of a release may keep the images: they are released again."""
    node = spawn("p").ready()
    rig = make_rig(dataset=tmp_path / "session")
    assert rig.wait_for_cameras(1, WAIT)
    first = rig.capture_all()
    assert rig.download_all().released == 1
    assert pending_of([node]) == {"p": {}}
    node.stop()
    # As if the deletion had not reached the disk before a power cut: the image is back in the spool.
    with Spool(node.home / "spool") as spool:
        spool.put(first.data_code, "cam0", b"kept", {"camera_index": 0}, ext="jpeg")
    again = spawn("p").ready()
    assert rig.wait_for(
        lambda r: [(n.address, n.state) for n in r.nodes()] == [(again.address, "ready")], WAIT
    )
    second = rig.capture_all()
    report = rig.download_all()
    assert report.files == (second.shots[0].file,)  # the kept image is not fetched again
    assert report.released == 2
    assert pending_of([again]) == {"p": {}}
