"""A secured server under a flood of malformed handshakes and frames keeps serving trusted clients.

Generated from a fixed seed (so a failure can be replayed): 2,400 connections each sending a malformed
or forged ZMTP handshake, then 600 malformed requests over an authenticated connection of a viewer.
"""

from __future__ import annotations

import json
import random
import socket

import pytest
import zmq

from helpers.keys import RigKeys
from helpers.rpc_example import ThermostatClient, ThermostatServer, serving
from plantimager.commons.rpc.sockets import SocketOptions, make_socket
from plantimager.commons.rpc.wire import decode_object

pytestmark = pytest.mark.timeout(120)
SEED = 20261207
HANDSHAKES = 2400
REQUESTS = 600


def greeting(mechanism: bytes = b"CURVE", major: int = 3, minor: int = 0, as_server: int = 0) -> bytes:
    """A ZMTP 3 greeting: signature, version, mechanism, as-server flag, filler (64 bytes)."""
    return (
        b"\xff"
        + bytes(8)
        + b"\x7f"
        + bytes([major, minor])
        + mechanism.ljust(20, b"\0")
        + bytes([as_server])
        + bytes(31)
    )


def hello(rng: random.Random, size: int = 200) -> bytes:
    """A CURVE HELLO command of the right shape whose keys and box are random: it cannot be opened."""
    body = b"\x05HELLO" + b"\x01\x00" + bytes(72) + rng.randbytes(32) + rng.randbytes(8) + rng.randbytes(80)
    body = body[:size] if size <= len(body) else body + rng.randbytes(size - len(body))
    return (
        bytes([0x04, len(body)]) + body
        if len(body) < 256
        else bytes([0x06]) + len(body).to_bytes(8, "big") + body
    )


def malformed(rng: random.Random) -> bytes:
    """One malformed or forged handshake."""
    kind = rng.randrange(9)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 300))
    if kind == 1:
        return greeting(b"NULL") + rng.randbytes(rng.randrange(0, 100))
    if kind == 2:
        return greeting() + rng.randbytes(rng.randrange(0, 300))
    if kind == 3:
        return greeting() + hello(rng)
    if kind == 4:
        return greeting() + hello(rng, rng.randrange(1, 400))
    if kind == 5:
        mechanism = rng.choice([b"PLAIN", b"GSSAPI", b"CURVEX", rng.randbytes(20)])
        return greeting(mechanism, rng.randrange(256), rng.randrange(256), rng.randrange(2))
    if kind == 6:  # a command claiming to be enormous
        return greeting() + b"\x06" + rng.randrange(1 << 32, 1 << 63).to_bytes(8, "big") + rng.randbytes(50)
    if kind == 7:
        whole = greeting() + hello(rng)
        return whole[: rng.randrange(1, len(whole))]
    return bytes([rng.randrange(1, 255)]) + rng.randbytes(rng.randrange(0, 60))  # ZMTP 1.0-like framing


def request(rng: random.Random) -> list[bytes]:
    """One malformed (or merely unauthorised) request frame list."""
    kind = rng.randrange(5)
    if kind == 0:
        return [rng.randbytes(rng.randrange(0, 200))]
    if kind == 1:
        return [rng.randbytes(10) for _ in range(rng.randrange(2, 4))]
    event = rng.choice(["METHOD_CALL", "PROPERTY_SET", "STOP_SERVER", "GET_INVENTORY", "BOGUS", 7, None])
    message = {"event": event, "method": rng.choice(["echo", "fail", "add", "__init__", "nope", 3])}
    if kind == 3:
        message["params"] = rng.choice([{"args": [rng.random()]}, [], "x", {"kwargs": 5}])
    if kind == 4:
        message.update(property=rng.choice(["target", "_stop", 1]), value=rng.random())
    return [json.dumps(message).encode()]


@pytest.fixture
def keys(tmp_path):
    return RigKeys(tmp_path / "keys")


def test_thousands_of_malformed_handshakes_and_frames_leave_trusted_clients_served(ctx, keys):
    rng = random.Random(SEED)
    server = ThermostatServer(ctx, keys=keys.node("server"))
    with serving(server):
        for _ in range(HANDSHAKES):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
                raw.sendall(malformed(rng))
        assert server.refusals is not None
        # Every connection is refused, and counted (logged one by one up to a burst, then summed up).
        assert server.refusals.wait_for(HANDSHAKES, 30), server.refusals.total
        assert server.calls == 0

        viewer = make_socket(
            ctx, zmq.REQ, options=SocketOptions(curve=keys.viewer.client_curve(server.keys.public_key))
        )
        viewer.rcvtimeo = 5000
        viewer.connect(f"tcp://127.0.0.1:{server.port}")
        try:
            for _ in range(REQUESTS):
                viewer.send_multipart(request(rng))
                reply = viewer.recv_multipart()  # every malformed request gets an answer
                assert isinstance(decode_object(reply[0]), dict)
        finally:
            viewer.close()
        assert server.calls == 0 and server.target == 20.0  # nothing the viewer sent changed anything

        with ThermostatClient(
            ctx, f"tcp://127.0.0.1:{server.port}", keys=keys.controller, server_key=server.keys.public_key
        ) as operator:
            assert operator.echo("after the storm") == "Echo: after the storm"
            operator.target = 21.0
            assert operator.target == 21.0
