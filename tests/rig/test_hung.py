"""Hung nodes never stall the others: a node stopped (SIGSTOP) mid-capture or before its transfers.

The stopped node is reported in the rig's one aggregated error while every other node completes;
once it is taken as hung the rig stops waiting for it, and its threads and sockets stay bounded
however many captures and downloads go on meanwhile. Resumed (SIGCONT), it delivers what it owes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator

import pytest

from helpers.usage import steady_counts
from plantimager.commons.errors import RigError
from plantimager.rig import CallLimits, Rig

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0
#: Long limits: a test passes only if the rig stops waiting for the hung node well before them,
#: once the others answered (after the straggler wait).
LONG = CallLimits(connect=2000, call=2000, capture=60_000, transfer=60_000, straggler=2000)


@contextlib.contextmanager
def resumed_after(pid: int) -> Iterator[None]:
    """SIGCONT the process ``pid`` (by its pid) after the block, whatever happens in it."""
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def state_of(rig: Rig, name: str) -> tuple[str, str]:
    node = next(n for n in rig.nodes() if n.name == name)
    return node.state, node.error


def test_a_node_hung_during_a_capture_is_reported_while_the_others_complete(
    spawn, make_rig, pending_of, tmp_path
):
    # b fires a capture instant up to 10 min late: resumed, it fires the capture it was stopped in.
    nodes = {name: spawn(name, extra=("--max-late", "600") if name == "b" else ()) for name in "abc"}
    for node in nodes.values():
        node.ready()
    rig = make_rig(dataset=tmp_path / "session", limits=LONG)
    assert rig.wait_for_cameras(3, WAIT)
    first = rig.capture_all()
    assert len(first.shots) == 3

    with resumed_after(nodes["b"].pid):
        # Stopped once the instant is chosen: b gets the capture command but cannot answer it.
        with pytest.raises(RigError) as caught:
            rig.capture(None, on_instant=lambda t0: os.kill(nodes["b"].pid, signal.SIGSTOP))
        assert set(caught.value.failures) == {"b/cam0"}
        assert "taken as hung" in caught.value.failures["b/cam0"]
        hung = caught.value.record
        assert [s.camera for s in hung.shots] == ["a/cam0", "c/cam0"] and hung.skew_ms is not None
        # The rig did not wait for b's 60 s capture limit: its call is still on its way.
        state, error = state_of(rig, "b")
        assert state == "unreachable" and "taken as hung" in error

        # While b stays hung, captures and downloads go on for the others without waiting for it,
        # and the rig's threads and sockets do not grow with them.
        def rounds() -> None:
            for _ in range(2):
                with pytest.raises(RigError) as caught:
                    rig.capture_all()
                assert set(caught.value.failures) == {"b/cam0"}
                assert caught.value.failures["b/cam0"].startswith("unreachable: ")
                assert len(caught.value.record.shots) == 2
                with pytest.raises(RigError) as caught:
                    rig.download_all()
                assert set(caught.value.failures) == {"b/cam0"}
                assert "node b is unreachable" in caught.value.failures["b/cam0"]

        rounds()  # the pools reach their working size
        counts = steady_counts(rounds)
        assert counts[-1] == counts[-2], counts
        assert pending_of([nodes["a"], nodes["c"]]) == {"a": {}, "c": {}}

    # Resumed, b answers the capture it was stopped in; it fires late, and delivers both images.
    assert rig.wait_for(lambda r: state_of(r, "b")[0] == "ready", WAIT)
    report = rig.download_all()
    assert not report.failures and report.owed == 0
    assert {f"idb_d{first.capture_no}_cam0.jpeg", f"idb_d{hung.capture_no}_cam0.jpeg"} <= set(report.files)
    assert pending_of(list(nodes.values())) == {"a": {}, "b": {}, "c": {}}
    again = rig.capture_all()
    assert len(again.shots) == 3


def test_a_node_that_stops_answering_during_a_download_is_reported_while_the_others_complete(
    spawn, make_rig, pending_of, tmp_path
):
    nodes = {name: spawn(name, cameras=2 if name == "b" else 1) for name in ("a", "b", "c")}
    for node in nodes.values():
        node.ready()
    limits = CallLimits(connect=2000, call=2000, capture=20_000, transfer=3000)
    rig = make_rig(dataset=tmp_path / "session", limits=limits)
    assert rig.wait_for_cameras(4, WAIT)
    records = [rig.capture_all() for _ in range(3)]

    os.kill(nodes["b"].pid, signal.SIGSTOP)
    with resumed_after(nodes["b"].pid):
        # b was ready a moment ago: the download asks it for its first image and gets no answer.
        assert state_of(rig, "b")[0] == "ready"
        with pytest.raises(RigError) as caught:
            rig.download_all(jobs=2)
        assert set(caught.value.failures) == {"b/cam0", "b/cam1"}
        assert all("node b" in reason for reason in caught.value.failures.values())
        report = caught.value.report
        assert sorted(report.files) == sorted(s.file for r in records for s in r.shots if s.node != "b")
        assert report.owed == 6
        assert pending_of([nodes["a"], nodes["c"]]) == {"a": {}, "c": {}}
        # Known to be unreachable now: the next download does not try another transfer (transfer
        # limit): it pings b (short-call limit), or gives up at once while a health ping is on it.
        assert state_of(rig, "b")[0] == "unreachable"
        with pytest.raises(RigError) as caught:
            rig.download_all()
        reasons = set(caught.value.failures.values())
        assert all(r.startswith(("node b: no answer", "node b is unreachable: ")) for r in reasons), reasons

    assert rig.wait_for(lambda r: state_of(r, "b")[0] == "ready", WAIT)
    report = rig.download_all()
    assert not report.failures and report.owed == 0
    assert sorted(report.files) == sorted(s.file for r in records for s in r.shots if s.node == "b")
    assert pending_of(list(nodes.values())) == {"a": {}, "b": {}, "c": {}}


def test_without_a_straggler_wait_a_node_hung_in_a_capture_is_reported_at_the_capture_limit(
    spawn, make_rig, tmp_path
):
    nodes = {name: spawn(name, extra=("--max-late", "600") if name == "b" else ()) for name in "abc"}
    for node in nodes.values():
        node.ready()
    limits = CallLimits(connect=2000, call=2000, capture=3000, transfer=3000)  # straggler: None
    rig = make_rig(dataset=tmp_path / "session", limits=limits)
    assert rig.wait_for_cameras(3, WAIT)
    with resumed_after(nodes["b"].pid), pytest.raises(RigError) as caught:
        rig.capture(None, on_instant=lambda t0: os.kill(nodes["b"].pid, signal.SIGSTOP))
    assert set(caught.value.failures) == {"b/cam0"}
    assert caught.value.failures["b/cam0"].startswith("start_capture: no answer in time")
    assert [s.camera for s in caught.value.record.shots] == ["a/cam0", "c/cam0"]
    assert rig.wait_for(lambda r: state_of(r, "b")[0] == "ready", WAIT)
    assert not rig.download_all().failures  # b fired late once resumed: its image is fetched


def test_a_node_the_rig_could_not_connect_to_is_reported_by_a_capture_of_every_camera(
    spawn, make_rig, run_cli, registry, tmp_path
):
    nodes = {name: spawn(name) for name in "ab"}
    for node in nodes.values():
        node.ready()
    with resumed_after(nodes["b"].pid):
        os.kill(nodes["b"].pid, signal.SIGSTOP)  # registered, but it never answers this rig
        rig = make_rig(dataset=tmp_path / "session")
        assert rig.wait_ready(WAIT) and state_of(rig, "b")[0] == "failed"
        with pytest.raises(RigError) as caught:
            rig.capture_all()
        assert list(caught.value.failures) == ["b"]
        assert caught.value.failures["b"].startswith("not connected: ")
        assert [shot.camera for shot in caught.value.record.shots] == ["a/cam0"]
        assert rig.capture(["a"]).failures == {}  # cameras named: only those are asked for
        # The command line says so too, with the partial exit status, instead of a plain success.
        args = ["rig", "capture", "--registry", registry.url, "--dataset", str(tmp_path / "cli")]
        code, output = run_cli(*args, "--wait", "10").finish(60)
        assert code == 3, output
        assert "capture 1: 1 image(s)" in output and "capture: 1 camera(s) failed" in output, output
        assert re.search(r"\bb\W+not connected: no answer in time", output), output
        # A scan fires the cameras the rig has: it goes on (it would stop at every position).
        assert rig.scan(positions=1).complete
    # Resumed, it is connected again and fires with the others.
    assert rig.wait_for(lambda r: state_of(r, "b")[0] == "ready", WAIT)
    assert len(rig.capture_all().shots) == 2
