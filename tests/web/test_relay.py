"""The preview relay: parsing a node's MJPEG, relaying it to viewers, stopping when they leave."""

from __future__ import annotations

import struct

import pytest
import simplejpeg

from plantimager.web.mjpegstream import MultipartParser, RelayError, mjpeg_part, pack_frame

pytestmark = pytest.mark.timeout(60)


def stream_of(frames: list[bytes], boundary: str = "xyz", lengths: bool = True) -> bytes:
    parts = []
    for frame in frames:
        head = f"--{boundary}\r\nContent-Type: image/jpeg\r\n"
        head += f"Content-Length: {len(frame)}\r\n\r\n" if lengths else "\r\n"
        parts.append(head.encode() + frame + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


FRAMES = [b"\xff\xd8one\xff\xd9", b"\xff\xd8--xyz inside\r\n\xff\xd9", b"\xff\xd8" + bytes(range(256)) * 40]


@pytest.mark.parametrize("lengths", [True, False])
def test_the_parser_cuts_a_stream_into_frames_however_it_is_chunked(lengths):
    frames = FRAMES if lengths else [FRAMES[0], FRAMES[2]]  # without lengths a frame may not hold "--xyz"
    data = stream_of(frames, lengths=lengths)
    for size in (1, 2, 3, 7, 64, len(data)):
        parser = MultipartParser(b"xyz")
        got = []
        for start in range(0, len(data), size):
            got += parser.feed(data[start : start + size])
        assert got == frames, size
        assert parser.ended


def test_the_parser_refuses_oversized_frames_and_garbage():
    parser = MultipartParser(b"xyz", max_part=100)
    with pytest.raises(RelayError, match="larger than 100 bytes"):
        parser.feed(stream_of([b"x" * 101]))
    parser = MultipartParser(b"xyz", max_part=100)
    with pytest.raises(RelayError, match="larger than 100 bytes"):
        for _ in range(100):
            parser.feed(b"--xyz\r\nContent-Type: image/jpeg\r\n\r\n" + b"y" * 50)
    with pytest.raises(RelayError):
        MultipartParser(b"")


def test_our_own_parts_and_packed_frames_read_back():
    parser = MultipartParser(b"plantimagerframe")
    assert parser.feed(b"".join(mjpeg_part(f) for f in FRAMES)) == FRAMES
    packed = pack_frame("node1/cam0", b"JPEG")
    assert struct.unpack(">HI", packed[:6]) == (10, 4) and packed[6:] == b"node1/cam0JPEG"


@pytest.fixture(scope="module")
def rig(tmp_path_factory, make_rigging):
    with make_rigging(tmp_path_factory.mktemp("relay"), ["relay1", "relay2"]) as bundle:
        yield bundle


def test_a_relayed_stream_carries_fresh_frames_and_stops_when_the_viewer_leaves(rig, http):
    client = http(rig.url)
    with client.stream("GET", "/cameras/relay1/cam0/preview.mjpg") as response:
        assert response.status_code == 200
        ctype = response.headers["content-type"]
        assert ctype == "multipart/x-mixed-replace; boundary=plantimagerframe"
        parser = MultipartParser(b"plantimagerframe")
        frames: list[bytes] = []
        for chunk in response.iter_raw():
            frames += parser.feed(chunk)
            if frames:
                stats = rig.web.previews.stats()["relay1/cam0"]
                assert (stats["viewers"], stats["state"]) == (1, "streaming")
            if len(frames) >= 3:
                break  # leaving the loop closes the connection, as a browser closing the page
        assert len(set(frames)) == 3  # distinct frames, not one repeated
        image = simplejpeg.decode_jpeg(frames[0])
        assert image.shape == (480, 640, 3)
    # The viewer left: the relay lets go of the node's stream.
    assert rig.web.previews.wait_for(
        lambda s: s["relay1/cam0"]["viewers"] == 0 and s["relay1/cam0"]["state"] == "idle", 10
    ), rig.web.previews.stats()
    received = rig.web.previews.stats()["relay1/cam0"]["frames_in"]
    snapshot = client.get("/cameras/relay1/cam0/snapshot.jpg")
    assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
    assert simplejpeg.decode_jpeg(snapshot.content).shape == (480, 640, 3)
    assert rig.web.previews.stats()["relay1/cam0"]["frames_in"] > received  # a fresh frame, not a stale one
    assert rig.web.previews.wait_for(lambda s: s["relay1/cam0"]["state"] == "idle", 10)


def test_one_connection_carries_every_cameras_frames(rig, http):
    client = http(rig.url)
    seen: dict[str, int] = {}
    with client.stream("GET", "/api/previews.bin") as response:
        assert response.status_code == 200
        buffer = b""
        for chunk in response.iter_raw():
            buffer += chunk
            while len(buffer) >= 6:
                name_length, frame_length = struct.unpack(">HI", buffer[:6])
                end = 6 + name_length + frame_length
                if len(buffer) < end:
                    break
                name = buffer[6 : 6 + name_length].decode()
                assert buffer[6 + name_length : 8 + name_length] == b"\xff\xd8"
                seen[name] = seen.get(name, 0) + 1
                buffer = buffer[end:]
            if len(seen) == 2 and min(seen.values()) >= 2:
                break
    assert set(seen) == {"relay1/cam0", "relay2/cam0"}
    assert rig.web.previews.wait_for(lambda s: all(v["viewers"] == 0 for v in s.values()), 10)
    assert client.get("/api/previews.bin", params={"cameras": "nope"}).status_code == 404
    stats = client.get("/api/previews").json()
    assert stats["viewers"] == 0 and stats["frames_out"] >= 4
