"""The web page of a secured rig: previews relayed over the encrypted RPC, captures and downloads."""

from __future__ import annotations

import pytest
import simplejpeg

from helpers.keys import RigKeys
from plantimager.web.mjpegstream import MultipartParser

from .conftest import download_done

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def rig(tmp_path_factory, make_rigging):
    home = tmp_path_factory.mktemp("secure-web")
    with make_rigging(home, ["sec1", "sec2"], keys=RigKeys(home / "keys")) as bundle:
        yield bundle


def test_the_page_shows_live_previews_of_a_secured_rig(rig, http):
    client = http(rig.url)
    cameras = client.get("/api/cameras").json()
    assert cameras["count"] == 2 and cameras["healthy"] == 2
    assert all(cam["stream_url"].startswith("http://127.0.0.1:") for cam in cameras["cameras"])
    with client.stream("GET", "/cameras/sec1/cam0/preview.mjpg") as response:
        assert response.status_code == 200
        parser = MultipartParser(b"plantimagerframe")
        frames: list[bytes] = []
        for chunk in response.iter_raw():
            frames += parser.feed(chunk)
            if len(frames) >= 3:
                break
    assert len(set(frames)) == 3 and simplejpeg.decode_jpeg(frames[0]).shape == (480, 640, 3)
    stats = rig.web.previews.stats()["sec1/cam0"]
    assert stats["frames_in"] >= 3 and stats["error"] == ""
    assert rig.web.previews.wait_for(lambda s: s["sec1/cam0"]["viewers"] == 0, 10)
    snapshot = client.get("/cameras/sec2/cam0/snapshot.jpg")
    assert snapshot.status_code == 200 and simplejpeg.decode_jpeg(snapshot.content).shape == (480, 640, 3)


def test_the_page_captures_and_downloads_from_a_secured_rig(rig, http):
    client = http(rig.url)
    captured = client.post("/api/capture", json={}).json()
    assert captured["answered"] == captured["asked"] == 2 and not captured["failures"]
    started = client.post("/api/download", json={})
    assert started.status_code == 202 and started.json()["state"] == "running"
    state = download_done(client)
    assert state["done"] == state["total"] == 2 and not state["result"]["failures"]
    gallery = client.get("/api/gallery").json()
    assert [i["file"] for i in gallery["images"]] == ["idsec1_d1_cam0.jpeg", "idsec2_d1_cam0.jpeg"]
    image = client.get("/dataset/files/idsec1_d1_cam0.jpeg")
    assert image.status_code == 200 and simplejpeg.decode_jpeg(image.content).shape == (240, 320, 3)
