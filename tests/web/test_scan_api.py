"""The scan endpoints against a real rig on a simulated turntable: what a running scan refuses,
stopping it, going on with it, and bad input."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .conftest import Rigging, error_of, job_ended, scan_rigging

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def scan_rig(tmp_path_factory) -> Iterator[Rigging]:
    with scan_rigging(tmp_path_factory.mktemp("scan-api")) as bundle:
        yield bundle


@pytest.fixture
def client(scan_rig) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=scan_rig.url, timeout=30) as http:
        yield http


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"positions": "3"}, 422, "positions must be a whole number, got '3'"),
        ({"positions": True}, 422, "positions must be a whole number, got True"),
        ({"positions": 0}, 422, "positions must be between 1 and 3600, got 0"),
        ({"positions": 3, "turntable": 5}, 422, "turntable must be a name, got 5"),
        ({"positions": 3, "turntable": "nosuch"}, 422, "nosuch"),
        ({"positions": 3, "speed": 2}, 422, "unknown field(s) 'speed'; this endpoint takes positions"),
        ([3], 400, "JSON object"),
    ],
)
def test_a_bad_plan_is_refused_naming_what_is_wrong(client, scan_rig, body, status, words):
    assert words in error_of(client.post("/api/scan", json=body), status)
    assert client.get("/api/scan").json()["state"] == "idle"  # nothing started
    assert not list(scan_rig.captures.rglob("*.jpeg"))


def test_stop_without_a_scan_or_with_a_field_is_refused(client):
    assert error_of(client.post("/api/scan/stop"), 409) == "no scan is running"
    assert "this endpoint takes no field" in error_of(client.post("/api/scan/stop", json={"now": 1}), 422)


def test_a_running_scan_refuses_what_would_mix_into_it_and_stops_and_goes_on(client, scan_rig):
    started = client.post("/api/scan", json={"positions": 3})
    assert started.status_code == 202, started.text
    assert (started.json()["state"], started.json()["stopping"]) == ("running", False)
    # Each move of the table takes 2 s: all of this happens while the scan runs.
    assert "a scan is already running" in error_of(client.post("/api/scan", json={"positions": 3}), 409)
    assert "a scan is running" in error_of(client.post("/api/download", json={}), 409)
    assert "a scan is running" in error_of(client.post("/api/capture", json={}), 409)
    assert "a scan is running" in error_of(client.post("/api/cameras/node1/cam0/capture"), 409)
    assert "a scan is running" in error_of(client.post("/api/session"), 409)
    stopping = client.post("/api/scan/stop")
    assert stopping.status_code == 200 and stopping.json()["stopping"] is True, stopping.text
    assert client.post("/api/scan/stop").json()["stopping"] is True  # asked twice: the same

    stopped = job_ended(client, "scan")
    assert stopped["state"] == "done", stopped
    first = stopped["result"]
    assert first["complete"] is False and first["taken"] < 3, first  # after the position under way
    assert error_of(client.post("/api/scan/stop"), 409) == "no scan is running"

    # The same plan goes on where it stopped, and no capture of the first run is taken again.
    assert client.post("/api/scan", json={"positions": 3}).status_code == 202
    rest = job_ended(client, "scan")["result"]
    assert rest["complete"] is True and rest["scan"] == first["scan"], rest
    assert (rest["already"], rest["taken"]) == (first["taken"], 3 - first["taken"])
    dataset = scan_rig.rig.dataset.root
    assert len(list(dataset.rglob("*.jpeg"))) == 6  # 3 positions, 2 cameras, each once
    # Once it has ended, captures are the operator's again.
    assert client.post("/api/capture", json={}).status_code == 200


def test_stopping_the_web_server_asks_a_running_scan_to_stop(tmp_path):
    with scan_rigging(tmp_path) as bundle, httpx.Client(base_url=bundle.url, timeout=30) as http:
        assert http.post("/api/scan", json={"positions": 3}).status_code == 202
        assert bundle.web.scan.running and not bundle.web.scan.stopping
        bundle.server.stop()
        assert bundle.web.scan.stopping  # it ends after the position under way, not after all
