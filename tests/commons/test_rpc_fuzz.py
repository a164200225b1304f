"""Property-based robustness: thousands of generated requests, each must get a reply."""

from __future__ import annotations

import json

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.rpc_example import ThermostatClient, ThermostatServer, serving
from plantimager.commons.rpc.wire import decode_object

SAFE_METHODS = ["echo", "add", "blob", "fail", "nope", "__init__", "_stop", "stop_server", ""]
EVENTS = [
    "GET_INVENTORY",
    "INIT_SIGNALS_HANDLING",
    "METHOD_CALL",
    "PROPERTY_GET",
    "PROPERTY_SET",
    "EMIT_SIGNAL",
    "FIND_PEER_ADDRESS",
    "SIGNAL_CHECK",
    "get_inventory",
    "",
]
PROPERTIES = ["target", "pair", "serial", "_stop", "name", "__class__", "context"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

requests = st.fixed_dictionaries(
    {"event": st.sampled_from(EVENTS) | json_values},
    optional={
        "method": st.sampled_from(SAFE_METHODS) | json_values,
        "params": st.fixed_dictionaries(
            {},
            optional={
                "args": st.lists(json_values, max_size=3) | json_values,
                "kwargs": st.dictionaries(st.text(max_size=5), json_values, max_size=2) | json_values,
            },
        )
        | json_values,
        "property": st.sampled_from(PROPERTIES) | json_values,
        "value": json_values,
        "token": json_values,
    },
)

frames = st.one_of(
    requests.map(lambda r: [json.dumps(r).encode()]),
    json_values.map(lambda v: [json.dumps(v).encode()]),
    st.binary(max_size=200).map(lambda b: [b]),
    st.lists(st.binary(max_size=50), min_size=2, max_size=4),
)


@pytest.fixture
def target(ctx):
    srv = ThermostatServer(ctx)
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.rcvtimeo = 5000
    with serving(srv):
        sock.connect(f"tcp://127.0.0.1:{srv.port}")
        yield srv, sock
        sock.close()


def _exchange(sock, message_frames):
    sock.send_multipart(message_frames)
    reply = sock.recv_multipart()  # raises zmq.Again (test failure) if no reply in 5 s
    head = decode_object(reply[0])
    if head.get("success") is False:
        assert isinstance(head["error"], str) and head["error"]
        assert isinstance(head["traceback"], str)
    return reply


@settings(
    max_examples=2500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(message=frames)
def test_every_generated_request_gets_a_reply(target, message):
    server, sock = target
    _exchange(sock, message)
    assert server._stop is False


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(message=requests)
def test_generated_protocol_shaped_requests_never_break_the_server(target, message):
    server, sock = target
    _exchange(sock, [json.dumps(message).encode()])
    assert server._stop is False


def test_server_still_serves_normal_clients_after_fuzzing(ctx, target):
    server, sock = target
    for payload in ([b"\x00" * 10], [b"{", b"}"], [json.dumps({"event": None}).encode()]):
        _exchange(sock, payload)
    with ThermostatClient(ctx, f"tcp://127.0.0.1:{server.port}") as cli:
        assert cli.echo("alive") == "Echo: alive"
