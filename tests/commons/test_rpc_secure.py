"""A secured RPC server: who may connect, what each role may do, what is refused and how it is logged."""

from __future__ import annotations

import logging
import re
import socket
import threading

import pytest
import zmq

from helpers.keys import RigKeys
from helpers.proxy import RecordingProxy
from helpers.rpc_example import ThermostatClient, ThermostatServer, serving
from plantimager.commons.errors import AccessDenied, RemoteError, RPCTimeoutError, ValidationError

pytestmark = pytest.mark.timeout(60)
WAIT = 10.0


@pytest.fixture
def keys(tmp_path):
    return RigKeys(tmp_path / "keys")


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog, keys):
    """Every test of this module runs with debug logs on, and no secret key may reach them."""
    caplog.set_level(logging.DEBUG)
    yield
    text = caplog.text
    leaked = [secret for secret in keys.secrets() if secret in text]
    assert not leaked, "a secret key was logged"


@pytest.fixture
def server(ctx, keys):
    srv = ThermostatServer(ctx, keys=keys.node("server"))
    with serving(srv):
        yield srv


def connect(ctx, server, ring, *, timeout=3000, server_key=None):
    key = server_key if server_key is not None else server.keys.public_key
    return ThermostatClient(ctx, f"tcp://127.0.0.1:{server.port}", timeout=timeout, keys=ring, server_key=key)


def test_an_operator_key_does_everything_and_gets_signals(ctx, server, keys):
    seen = threading.Event()
    with connect(ctx, server, keys.controller) as client:
        client.targetChanged.connect(lambda value: seen.set() if value == 25.5 else None)
        assert client.echo("hi") == "Echo: hi" and client.add(2) == 12
        data, info = client.blob(1000)
        assert bytes(data) == (bytes(range(256)) * 4)[:1000] and info["size"] == 1000
        client.target = 25.5
        assert client.target == 25.5 and client.serial == "TH-001"
        assert seen.wait(WAIT), "the change signal did not arrive over CURVE"
        assert client.stop_server() is True
    assert server._stopped.wait(WAIT)


def test_a_viewer_reads_and_every_change_is_refused_naming_what_and_the_role(ctx, server, keys):
    with connect(ctx, server, keys.viewer) as viewer:
        assert viewer.add(1, 2) == 3 and viewer.target == 20.0 and viewer.serial == "TH-001"
        with pytest.raises(
            AccessDenied, match=r"^echo\(\) needs the operator role; the key viewer \(key id "
        ):
            viewer.echo("x")
        with pytest.raises(AccessDenied, match="setting property 'target' needs the operator role"):
            viewer.target = 30.0
        with pytest.raises(RemoteError) as refused:
            viewer.fail("boom")
        assert isinstance(refused.value, PermissionError) and refused.value.traceback == ""
        assert viewer.stop_server() is False
        assert viewer.add(5) == 15  # still served
    assert server.calls == 0 and server.target == 20.0  # nothing was executed
    assert server.refusals is not None and server.refusals.total == 4
    with connect(ctx, server, keys.controller) as operator:
        assert operator.echo("still there") == "Echo: still there"


def test_a_plaintext_client_is_refused_and_logged(ctx, server, keys, caplog):
    with pytest.raises(RPCTimeoutError):
        ThermostatClient(ctx, f"tcp://127.0.0.1:{server.port}", timeout=500)
    assert server.refusals.wait_for(1, WAIT)
    # Whichever side sees the mismatch first: the server reports it, or the client hangs up on it.
    assert re.search(
        rf"to the ThermostatServer on port {server.port}: "
        r"(security mechanism mismatch|handshake not completed)",
        caplog.text,
    )
    with connect(ctx, server, keys.controller) as operator:
        assert operator.echo("ok") == "Echo: ok"


def test_an_unknown_key_is_refused_with_its_address_and_key_id(ctx, server, keys, caplog):
    with pytest.raises(RPCTimeoutError):
        connect(ctx, server, keys.stranger, timeout=500)
    assert server.refusals.wait_for(1, WAIT)
    expected = f"refused a connection from 127.0.0.1 to the ThermostatServer on port {server.port}: "
    assert expected + f"unknown key (key id {keys.stranger.key_id})" in caplog.text
    assert server.calls == 0


def test_a_revoked_key_is_refused_on_its_open_connection_and_on_new_ones(ctx, server, keys, caplog):
    viewer = connect(ctx, server, keys.viewer)
    try:
        assert viewer.add(1) == 11
        server.keys.refresh_s = 0.0  # read the trust at every request (by default: at most every second)
        RigKeys.revoke(keys.node("server").folder, "viewer")  # as `plantimager keys revoke` does
        with pytest.raises(
            AccessDenied, match=r"add\(\) refused: the key viewer \(key id .* no longer trusted"
        ):
            viewer.add(1)
    finally:
        viewer.close()
    before = server.refusals.total
    with pytest.raises(RPCTimeoutError):
        connect(ctx, server, keys.viewer, timeout=500)
    assert server.refusals.wait_for(before + 1, WAIT)
    assert f"revoked key viewer (key id {keys.viewer.key_id})" in caplog.text


def test_a_client_expecting_another_server_key_never_talks_to_the_server(ctx, server, keys, caplog):
    with pytest.raises(RPCTimeoutError):
        connect(ctx, server, keys.controller, timeout=500, server_key=keys.stranger.public_key)
    assert server.refusals.wait_for(1, WAIT)
    assert "CURVE handshake failed its check (wrong server key?)" in caplog.text
    assert server.calls == 0


def test_a_secured_client_needs_the_servers_key(ctx, server, keys):
    with pytest.raises(ValidationError, match="needs the server's public key"):
        ThermostatClient(ctx, f"tcp://127.0.0.1:{server.port}", keys=keys.controller)


def test_oversized_requests_are_refused_and_the_server_keeps_serving(ctx, keys):
    srv = ThermostatServer(ctx, keys=keys.node("server"), max_request_size=1024)
    with serving(srv), connect(ctx, srv, keys.controller) as client:
        with pytest.raises(RemoteError, match="exceeds the limit of 1024 bytes"):
            client.echo("x" * 2000)
        client.limit_waits(500)
        with pytest.raises(RPCTimeoutError):  # above libzmq's hard cap: the connection is dropped
            client.echo("y" * (2 << 20))
        assert client.echo("small") == "Echo: small"
    assert srv.calls == 1


def test_a_replayed_session_executes_nothing(ctx, server, keys, caplog):
    proxy = RecordingProxy(server.port)
    try:
        client = ThermostatClient(
            ctx, f"tcp://127.0.0.1:{proxy.port}", keys=keys.controller, server_key=server.keys.public_key
        )
        with client:
            assert client.echo("replay-me") == "Echo: replay-me"
        recorded = proxy.sent
    finally:
        proxy.close()
    assert server.calls == 1 and b"replay-me" not in recorded
    before = server.refusals.total
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(recorded)
        raw.settimeout(5)
        while raw.recv(65536):  # the server answers the greeting, then closes on the stale handshake
            pass
    assert server.refusals.wait_for(before + 1, WAIT)
    with connect(ctx, server, keys.controller) as operator:
        assert operator.add(0, 0) == 0
    assert server.calls == 1  # the replayed echo() never ran


def monitor_threads() -> int:
    return sum(t.name == "zmq-handshake-monitor" and t.is_alive() for t in threading.enumerate())


def test_the_servers_of_a_context_share_one_guard_which_stops_with_the_last(ctx, keys):
    before = monitor_threads()
    first = ThermostatServer(ctx, keys=keys.node("one"))
    second = ThermostatServer(ctx, keys=keys.node("two"))
    assert monitor_threads() == before + 1
    with serving(first), serving(second):
        for server, ring in ((first, keys.controller), (second, keys.viewer)):
            with connect(ctx, server, ring) as client:
                assert client.add(1) == 11
    assert monitor_threads() == before
    for _ in range(3):  # stopped and started again at once, in the same context
        again = ThermostatServer(ctx, keys=keys.node("one"))
        with serving(again), connect(ctx, again, keys.controller) as client:
            assert client.echo("again") == "Echo: again"
    assert monitor_threads() == before


def test_a_zap_handler_of_someone_else_in_the_context_is_reported(ctx, keys):
    foreign = ctx.socket(zmq.REP)
    foreign.linger = 0
    foreign.bind("inproc://zeromq.zap.01")  # what another library's ZAP handler binds
    try:
        with pytest.raises(RuntimeError, match="another ZAP handler runs in this ZeroMQ context"):
            ThermostatServer(ctx, keys=keys.node("one"))
    finally:
        foreign.close()
    server = ThermostatServer(ctx, keys=keys.node("one"))  # once it is gone, the guard starts
    with serving(server), connect(ctx, server, keys.controller) as client:
        assert client.add(1) == 11
