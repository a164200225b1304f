"""The JSON API against a live server: every bad input gets a clear 4xx, and the app keeps working."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plantimager.rig import Rig

from .conftest import download_done, error_of

pytestmark = pytest.mark.timeout(120)

CAMERAS = ["api1/cam0", "api2/cam0"]


@pytest.fixture(scope="module")
def rig(tmp_path_factory, make_rigging):
    with make_rigging(tmp_path_factory.mktemp("api"), ["api1", "api2"], refresh=1.0) as bundle:
        yield bundle


@pytest.fixture(scope="module")
def client(rig, http):
    return http(rig.url)


def still_working(client) -> None:
    """The app answers normally (after a bad request)."""
    response = client.get("/api/cameras")
    assert response.status_code == 200
    assert [c["key"] for c in response.json()["cameras"]] == CAMERAS


def test_the_live_rig(client):
    body = client.get("/api/cameras").json()
    assert body["count"] == 2 and body["healthy"] == 2 and body["connected"] is True
    cam = body["cameras"][0]
    assert cam["key"] == "api1/cam0" and cam["state"] == "ready"
    assert cam["preview"] == "/cameras/api1/cam0/preview.mjpg"
    assert client.get("/api/cameras/api2/cam0").json()["key"] == "api2/cam0"
    assert set(client.get("/api/status").json()["nodes"]) == {"api1", "api2"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/cameras/nope/cam0"),
        ("POST", "/api/cameras/nope/cam0/capture"),
        ("POST", "/api/cameras/nope/cam0/settings"),
        ("GET", "/cameras/nope/cam0/preview.mjpg"),
        ("GET", "/cameras/nope/cam0/snapshot.jpg"),
    ],
)
def test_an_unknown_camera_is_404_naming_it(client, method, path):
    response = client.request(method, path, json={"rotation": 90} if method == "POST" else None)
    message = error_of(response, 404)
    assert "unknown camera 'nope/cam0'" in message
    assert "api1/cam0, api2/cam0" in message  # what there is
    still_working(client)


def test_capture_of_unknown_cameras_is_404(client):
    message = error_of(client.post("/api/capture", json={"cameras": ["api1/cam0", "ghost"]}), 404)
    assert "'ghost'" in message
    message = error_of(client.post("/api/capture", json={"cameras": "api1"}), 422)
    assert "cameras must be a non-empty list" in message


def test_a_page_for_an_unknown_camera_is_a_readable_404_page(client):
    response = client.get("/view/nope/cam0", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "unknown camera &#39;nope/cam0&#39;" in response.text
    assert "Back to the cameras" in response.text


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"rotation": 45}, "rotation", "rotation must be one of 0, 90, 180, 270"),
        ({"rotation": "90"}, "rotation", "rotation must be one of"),
        ({"rotation": True}, "rotation", "rotation must be one of"),
        ({"encoding": "gif"}, "encoding", "encoding must be one of 'jpeg', 'png', got 'gif'"),
        ({"quality": 0}, "quality", "quality must be a whole number from 1 to 100 (JPEG quality), got 0"),
        ({"quality": 50.5}, "quality", "quality must be a whole number from 1 to 100"),
        ({"resolution": "big"}, "resolution", "each a whole number from 64 to 65535, got 'big'"),
        ({"resolution": [10, 10]}, "resolution", "each a whole number from 64 to 65535"),
        ({"resolution": [640]}, "resolution", "resolution must be [width, height]"),
        (
            {"controls": {"Nope": 1}},
            "controls.Nope",
            "unknown control 'Nope'; the camera(s) have: AnalogueGain",
        ),
        ({"controls": {"Brightness": None}}, "controls.Brightness", "controls.Brightness must be a number"),
        ({"controls": []}, "controls", "controls must be an object"),
        ({"colour": "red"}, "colour", "unknown field(s) 'colour'"),
        ({}, None, "nothing to configure"),
    ],
)
def test_bad_settings_are_422_naming_the_field_and_what_is_allowed(client, body, field, words):
    response = client.post("/api/settings", json=body)
    message = error_of(response, 422)
    assert words in message
    if field is not None:
        assert response.json()["field"] == field
    still_working(client)


def test_a_control_out_of_the_cameras_range_is_422_with_the_range(client):
    response = client.post("/api/settings", json={"controls": {"Brightness": 5}})
    message = error_of(response, 422)
    assert message == "control 'Brightness' must be a number in [-1.0, 1.0], got 5"
    assert response.json()["field"] == "controls"
    assert set(response.json()["failures"]) == set(CAMERAS)


@pytest.mark.parametrize(
    ("content", "ctype", "status", "words"),
    [
        (
            b'{"rotation": 90',
            "application/json",
            400,
            "malformed JSON: Expecting ',' delimiter at line 1 column 16",
        ),
        (b"[1, 2]", "application/json", 400, "the body must be a JSON object, got an array"),
        (b"\xff\xfe", "application/json", 400, "malformed JSON"),
        (b"NaN-ish", "application/json", 400, "malformed JSON"),
        (b'{"rotation": 90}', "text/plain", 415, "send the body as application/json"),
        (b"", "application/json", 400, "needs a JSON object"),
        (b"[" * 100_000, "application/json", 413, "larger than"),
    ],
)
def test_malformed_bodies_are_4xx(client, content, ctype, status, words):
    response = client.post("/api/settings", content=content, headers={"Content-Type": ctype})
    assert words in error_of(response, status)
    still_working(client)


def test_unknown_endpoints_and_methods(client):
    assert "no such page or endpoint: GET /api/nothing" in error_of(client.get("/api/nothing"), 404)
    response = client.get("/api/capture")
    assert "GET is not allowed on /api/capture; use POST" in error_of(response, 405)
    assert response.headers["allow"] == "POST"


def test_requests_from_other_sites_are_refused(client, rig):
    evil = {"Origin": "http://evil.example"}
    assert "may not act on this rig" in error_of(
        client.post("/api/shutdown", json={"confirm": True}, headers=evil), 403
    )
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what a plain HTML form sends
    assert "send the body as application/json" in error_of(client.post("/api/capture", headers=form), 415)
    same = {"Origin": rig.url}
    assert error_of(client.post("/api/settings", json={"rotation": 1}, headers=same), 422)
    assert all(node.popen.poll() is None for node in rig.nodes.values())
    assert client.get("/api/gallery").json()["capture"] is None  # nothing was fired


def test_nothing_to_download_before_a_capture(client):
    assert "nothing was captured yet" in error_of(client.post("/api/download", json={}), 409)
    assert client.get("/api/download").json()["state"] == "idle"
    assert client.get("/api/gallery").json() == {"dataset": None, "capture": None, "images": []}


def test_shutdown_needs_a_confirmation(client, rig):
    assert '{"confirm": true}' in error_of(client.post("/api/shutdown", json={}), 422)
    assert "unknown field" in error_of(client.post("/api/shutdown", json={"confirm": True, "x": 1}), 422)
    assert "malformed JSON" in error_of(
        client.post("/api/shutdown", content=b"{", headers={"Content-Type": "application/json"}), 400
    )
    assert all(node.popen.poll() is None for node in rig.nodes.values())
    still_working(client)


def test_settings_apply_to_one_camera_or_all(client):
    response = client.post("/api/cameras/api2/cam0/settings", json={"rotation": 180, "resolution": "400x300"})
    assert response.status_code == 200, response.text
    assert set(response.json()["settings"]) == {"api2/cam0"}
    assert response.json()["settings"]["api2/cam0"]["rotation"] == 180
    response = client.post("/api/settings", json={"camera": "api1", "controls": {"Brightness": 0.25}})
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["api1/cam0"]["controls"]["Brightness"] == 0.25
    response = client.post(
        "/api/settings", json={"resolution": [320, 240], "rotation": 0, "controls": {"Brightness": 0}}
    )
    assert response.status_code == 200 and set(response.json()["settings"]) == set(CAMERAS)
    cams = client.get("/api/cameras").json()["cameras"]
    assert [(c["resolution"], c["rotation"]) for c in cams] == [([320, 240], 0), ([320, 240], 0)]


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
SETTING_VALUES = {
    "resolution": st.one_of(st.lists(st.integers(-10, 70_000), max_size=3), st.text(max_size=12), JSON),
    "encoding": st.sampled_from(["jpeg", "png", "gif", ""]) | JSON,
    "rotation": st.sampled_from([0, 90, 180, 270, 45, -90]) | JSON,
    "quality": st.integers(-5, 105) | JSON,
    "controls": st.dictionaries(
        st.sampled_from(["Brightness", "Contrast", "ExposureTime", "AnalogueGain", "Bogus"]),
        st.floats(-1e7, 1e7) | st.integers(-(10**7), 10**7) | JSON,
        max_size=3,
    )
    | JSON,
    "camera": st.sampled_from(["api1/cam0", "api2", "nope"]) | JSON,
}
BODIES = (
    st.fixed_dictionaries({}, optional=SETTING_VALUES) | st.dictionaries(st.text(max_size=10), JSON) | JSON
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_any_json_body_of_the_settings_endpoint_gets_a_clear_answer(client, body):
    response = client.post(
        "/api/settings", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (200, 400, 404, 409, 422), response.text
    if response.status_code != 200:
        assert response.json()["error"]
    else:
        assert set(response.json()) == {"settings", "failures"} and not response.json()["failures"]


def test_the_app_still_works_after_all_that(client):
    still_working(client)
    response = client.post("/api/settings", json={"resolution": "320x240", "encoding": "jpeg", "rotation": 0})
    assert response.status_code == 200


def test_capture_download_and_the_dataset_files(client, rig):
    capture = client.post("/api/capture")
    assert capture.status_code == 200, capture.text
    result = capture.json()
    assert result["capture_no"] == 1 and result["answered"] == result["asked"] == 2
    assert isinstance(result["skew_ms"], float)
    started = client.post("/api/download", json={})
    assert started.status_code == 202 and started.json()["state"] == "running"
    assert rig.web.download.running or client.get("/api/download").json()["state"] == "done"
    state = download_done(client)
    assert state["done"] == state["total"] == 2
    folder = state["result"]["dataset"]
    gallery = client.get("/api/gallery").json()
    names = sorted(os.listdir(folder))
    assert [i["file"] for i in gallery["images"]] == ["idapi1_d1_cam0.jpeg", "idapi2_d1_cam0.jpeg"]
    assert {"idapi1_d1_cam0.jpeg", "idapi2_d1_cam0.jpeg", "manifest.json", ".rig"} <= set(names)

    image = client.get("/dataset/files/idapi1_d1_cam0.jpeg")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == Path(folder, "idapi1_d1_cam0.jpeg").read_bytes()
    thumb = client.get(gallery["images"][1]["thumb"])
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"

    os.symlink("/etc/passwd", os.path.join(folder, "sneaky.jpeg"))
    for name, status in [
        ("manifest.json", 404),  # a file of the folder, not an image of the dataset
        ("sneaky.jpeg", 404),
        ("missing.jpeg", 404),
        (".rig", 400),
        ("%2e%2e%2f%2e%2e%2fetc%2fpasswd", 400),
        ("..%2fmanifest.json", 400),
        ("%2fetc%2fpasswd", 400),
        ("idapi1_d1_cam0.jpeg%00.png", 400),
    ]:
        for kind in ("files", "thumbs"):
            response = client.get(f"/dataset/{kind}/{name}")
            message = error_of(response, status)
            assert "dataset" in message, message
    still_working(client)


def test_a_node_whose_clock_is_off_is_flagged(client, rig):
    """A node reporting a clock 3 ms behind NTP time is flagged in the live rig and after a capture."""
    cameras = client.get("/api/cameras").json()["cameras"]
    assert all(cam["clock_flag"] == "" for cam in cameras)
    rig.spawn("apiclock", extra=("--backend-option", "clock_offset_ms=-3"))
    try:
        assert rig.rig.wait_for_cameras(3, 20)
        cameras = {c["key"]: c for c in client.get("/api/cameras").json()["cameras"]}
        flagged = cameras["apiclock/cam0"]
        assert flagged["clock_offset_ms"] == -3.0
        assert flagged["clock_flag"].startswith("clock 3.000 ms behind NTP time")
        assert "fire about that much late" in flagged["clock_flag"]
        assert cameras["api1/cam0"]["clock_flag"] == ""
        status = client.get("/api/status").json()["nodes"]["apiclock"]
        assert status["clock_flag"] == flagged["clock_flag"] and status["status"]["clock_offset_ms"] == -3.0
        result = client.post("/api/capture", json={"cameras": ["apiclock", "api1"]}).json()
        assert result["clock_flags"] == {"apiclock": flagged["clock_flag"]}
        assert result["clock_offsets_ms"]["apiclock"] == -3.0
    finally:
        node = rig.nodes.pop("apiclock")
        node.stop(10)
    assert rig.rig.wait_for(lambda r: len(r.cameras()) == 2, 20)


def test_settings_changed_by_another_controller_reach_the_page(client, rig):
    with Rig(rig.registry.url) as other:  # a command line's rig beside the page, say
        assert other.wait_for_cameras(2, 20)
        other.configure("api2/cam0", rotation=270)
    try:
        name, deadline = "", time.monotonic() + 30
        with client.stream("GET", "/api/events") as events:  # the page's live list
            for line in events.iter_lines():
                assert time.monotonic() < deadline, "the page's live list never showed the new rotation"
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name == "cameras":
                    cameras = {cam["key"]: cam for cam in json.loads(line[6:])["cameras"]}
                    if cameras["api2/cam0"]["rotation"] == 270:
                        break
        assert cameras["api1/cam0"]["rotation"] == 0
        assert client.get("/api/cameras/api2/cam0").json()["rotation"] == 270
    finally:
        answer = client.post("/api/cameras/api2/cam0/settings", json={"rotation": 0})
        assert answer.status_code == 200, answer.text
