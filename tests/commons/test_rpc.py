"""Client and server together: behaviour, and each upstream defect that must not exist here."""

from __future__ import annotations

import gc
import math
import threading

import numpy as np
import pytest
import zmq

from helpers.rpc_example import Thermostat, ThermostatClient, ThermostatServer, serving
from plantimager.commons.errors import InterfaceError, RemoteError, RPCTimeoutError, ValidationError
from plantimager.commons.RPC import RPCClient, RPCServer, RPCSignal
from plantimager.commons.rpc.wire import decode_object, encode


@pytest.fixture
def server(ctx):
    srv = ThermostatServer(ctx)
    with serving(srv):
        yield srv


@pytest.fixture
def client(ctx, server):
    cli = ThermostatClient(ctx, f"tcp://127.0.0.1:{server.port}")
    yield cli
    cli.close()


def raw_request(ctx, port, message, *, frames=None, timeout=2000):
    """Send one request as an upstream REQ client would; return the decoded first reply frame."""
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.rcvtimeo = timeout
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        if frames is not None:
            sock.send_multipart(frames)
        else:
            sock.send(message if isinstance(message, bytes) else encode(message))
        reply = sock.recv_multipart()
        return decode_object(reply[0]), reply
    finally:
        sock.close()


# -- behaviour --------------------------------------------------------------------------------------
def test_json_method_with_defaults_and_keywords(client):
    assert client.echo("Hello World") == "Echo: Hello World"
    assert client.add(1) == 11
    assert client.add(1, 2) == 3
    assert client.add(a=1, b=5) == 6


def test_buffer_method_returns_raw_frame_without_copy(client):
    data, info = client.blob(1000)
    assert isinstance(data, memoryview)
    assert isinstance(data.obj, zmq.Frame)  # the memory of the received frame itself
    assert bytes(data) == (bytes(range(256)) * 4)[:1000]
    assert info == {"size": 1000, "type": "raw"}


def test_buffer_method_accepts_numpy_arrays(ctx):
    class ArrayServer(RPCServer):
        @RPCServer.register_method_buffer
        def frame(self):
            return np.arange(12, dtype=np.uint16).reshape(3, 4), {"shape": [3, 4]}

    class ArrayIface:
        def frame(self): ...

    @RPCClient.register_interface(ArrayIface)
    class ArrayClient(ArrayIface, RPCClient):
        pass

    srv = ArrayServer(ctx, "tcp://127.0.0.1:0")
    with serving(srv), ArrayClient(ctx, f"tcp://127.0.0.1:{srv.port}") as cli:
        data, info = cli.frame()
        assert (
            np.frombuffer(data, dtype=np.uint16).reshape(info["shape"]).tolist()
            == np.arange(12).reshape(3, 4).tolist()
        )


def test_properties_get_set_and_server_state(client, server):
    assert client.target == 20.0
    client.target = 42
    assert client.target == 42
    assert server._target == 42
    client.pair = [3, 4]  # JSON has no tuples: coerced to the declared tuple[int, int]
    assert server._pair == (3, 4)


def test_signal_reaches_client_after_property_set(client):
    received = []
    arrived = threading.Event()

    def on_target(value):
        received.append(value)
        arrived.set()

    client.targetChanged.connect(on_target)
    client.target = 100
    assert arrived.wait(5)
    assert received == [100.0]


def test_signal_arguments_are_coerced_to_the_client_types(client):
    got = []
    arrived = threading.Event()
    client.pairChanged.connect(lambda v: (got.append(v), arrived.set()))
    client.pair = (7, 8)
    assert arrived.wait(5)
    assert got == [(7, 8)]
    assert isinstance(got[0], tuple)


def test_interface_with_abstract_members_gives_instantiable_client(client):
    assert isinstance(client, Thermostat)
    assert not getattr(ThermostatClient, "__abstractmethods__", frozenset())


def test_register_interface_requires_both_bases():
    with pytest.raises(RuntimeError, match="must inherit from both"):

        @RPCClient.register_interface(Thermostat)
        class Wrong(RPCClient):
            pass


def test_remote_exception_is_raised_with_text_type_and_traceback(client):
    with pytest.raises(RemoteError) as info:
        client.fail("nope")
    assert isinstance(info.value, ValueError)
    assert info.value.error == "nope"
    assert "fail" in info.value.traceback
    assert "/" not in info.value.traceback.split("\n")[1]  # file names without full paths


def test_execute_returns_noresult_on_failure(client):
    ok, result = client.execute("fail", {"args": ["bad"], "kwargs": {}})
    assert ok is False
    assert not result
    assert result.error == "bad"
    assert client.execute("add", {"args": [2, 3], "kwargs": {}}) == (True, 5)


def test_wrong_argument_types_get_an_error_reply(client):
    with pytest.raises(RemoteError, match="argument 'a'"):
        client.add("not a number")
    with pytest.raises(RemoteError, match="argument"):
        client.execute("add", {"args": [], "kwargs": {"zzz": 1}}) and None
        client._call("add", [], {"zzz": 1})


def test_remote_stop_ends_serve_forever(ctx):
    srv = ThermostatServer(ctx)
    thread = threading.Thread(target=srv.serve_forever)
    thread.start()
    try:
        with ThermostatClient(ctx, f"tcp://127.0.0.1:{srv.port}") as cli:
            assert cli.stop_server() is True
        thread.join(5)
        assert not thread.is_alive()
        with pytest.raises(RuntimeError, match="stopped"):
            srv.serve_forever()
    finally:
        srv.stop_server()
        thread.join(5)


def test_client_reconnects_to_a_restarted_server(ctx):
    first = ThermostatServer(ctx)
    port = first.port
    with serving(first), ThermostatClient(ctx, f"tcp://127.0.0.1:{port}") as cli:
        assert cli.echo("1") == "Echo: 1"
        first.stop_server()
        second = ThermostatServer(ctx, f"tcp://127.0.0.1:{port}")
        with serving(second):
            # A request written while the old connection is being torn down can be lost (the
            # dying server reads and drops it): the client must then time out and recover by
            # itself, without being re-created. Two attempts are therefore always enough.
            cli._json_methods["echo"] = 500
            replies = []
            for attempt in range(2):
                try:
                    replies.append(cli.echo(f"2.{attempt}"))
                    break
                except RPCTimeoutError:
                    continue
            assert replies and replies[0].startswith("Echo: 2.")
            assert cli.echo("3") == "Echo: 3"


def test_client_finalizer_closes_sockets(ctx, server):
    cli = ThermostatClient(ctx, f"tcp://127.0.0.1:{server.port}")
    assert cli.echo("x") == "Echo: x"
    cli.targetChanged.connect(print)
    del cli
    gc.collect()  # the ctx fixture fails if a socket stayed open


# -- upstream defects (reference section 12), one test each ------------------------------------------
@pytest.mark.parametrize(
    "name", ["_stop", "name", "__class__", "context", "port", "uuid", "_socket", "nothing"]
)
def test_D1_property_get_reaches_only_declared_properties(ctx, server, name):
    reply, _ = raw_request(ctx, server.port, {"event": "PROPERTY_GET", "property": name})
    assert reply["success"] is False
    assert name in reply["error"]
    assert (
        raw_request(ctx, server.port, {"event": "PROPERTY_GET", "property": "serial"})[0]["value"] == "TH-001"
    )


@pytest.mark.parametrize("name", ["_stop", "name", "__class__", "echo", "_members", "nothing"])
def test_D2_property_set_reaches_only_declared_properties(ctx, server, name):
    before = server.name
    reply, _ = raw_request(ctx, server.port, {"event": "PROPERTY_SET", "property": name, "value": True})
    assert reply["success"] is False
    assert server._stop is False and server.name == before
    assert (
        raw_request(
            ctx,
            server.port,
            {"event": "METHOD_CALL", "method": "echo", "params": {"args": ["k"], "kwargs": {}}},
        )[0]["result"]
        == "Echo: k"
    )


@pytest.mark.parametrize(
    "method",
    [
        "stop_server",
        "serve_forever",
        "register_to_registry",
        "_handle_method_call",
        "__init__",
        "not_exposed",
        "inventory",
    ],
)
def test_D1_calls_reach_only_registered_methods(ctx, server, method):
    reply, _ = raw_request(
        ctx, server.port, {"event": "METHOD_CALL", "method": method, "params": {"args": [], "kwargs": {}}}
    )
    assert reply == {
        "success": False,
        "error": f"Method {method} not implemented",
        "traceback": "",
        "error_type": "InterfaceError",
    }
    assert server._stop is False


def test_D2_readonly_property_refused_remotely_and_locally(ctx, server, client):
    reply, _ = raw_request(ctx, server.port, {"event": "PROPERTY_SET", "property": "serial", "value": "X"})
    assert reply["success"] is False and "no setter" in reply["error"]
    with pytest.raises(InterfaceError, match="read-only"):
        client.serial = "X"


def test_D3_property_values_are_validated(client, server):
    with pytest.raises(RemoteError, match="pair"):
        client.pair = "not a pair"
    assert server._pair == (1, 2)


def test_D4_timed_out_call_leaves_client_usable(client, server):
    with pytest.raises(RPCTimeoutError):
        client.slow()  # advertised 100 ms, blocks until released
    assert server.slow_entered.wait(5)
    server.release_slow.set()
    # The late reply of the first socket is never read by a later call.
    assert client.echo("after") == "Echo: after"
    assert client.target == 20.0


def test_D5_unknown_method_is_refused_before_sending(client, server):
    calls_before = server.calls
    del client._json_methods["echo"]
    with pytest.raises(InterfaceError, match="does not serve a method 'echo'"):
        client.echo("x")
    assert server.calls == calls_before
    assert client.add(1, 1) == 2  # not wedged


def test_D8_each_signal_reaches_each_of_four_clients_exactly_once(ctx, server):
    clients = [ThermostatClient(ctx, f"tcp://127.0.0.1:{server.port}") for _ in range(4)]
    try:
        seen = [[] for _ in clients]
        done = [threading.Event() for _ in clients]
        for cli, box, flag in zip(clients, seen, done, strict=True):

            def on_mode(value, box=box, flag=flag):
                box.append(value)
                if value == "end":
                    flag.set()

            cli.modeChanged.connect(on_mode)
        assert clients[0].emit_many(50) == 50
        server.modeChanged.emit("end")
        for flag in done:
            assert flag.wait(5)
        expected = [f"m{i}" for i in range(50)] + ["end"]
        for box in seen:
            assert box == expected
    finally:
        for cli in clients:
            cli.close()


def test_D13_signal_thread_survives_unknown_signals_and_bad_arguments(client, server):
    got = []
    arrived = threading.Event()
    client.targetChanged.connect(lambda v: (got.append(v), arrived.set()))
    publisher = server._publisher
    publisher.publish("noSuchSignal", (1,))
    publisher.publish("targetChanged", ("not a float", 2))
    publisher.publish("targetChanged", ({"bad": 1},))
    publisher.send_raw({"event": "EMIT_SIGNAL", "signal": "targetChanged", "args": "nope"})
    publisher.send_raw({"no": "event"})

    def explode(_value):
        raise RuntimeError("handler failure")

    client.modeChanged.connect(explode)
    server.modeChanged.emit("x")
    client.target = 55
    assert arrived.wait(5)
    assert got == [55.0]
    assert client._receiver.is_alive()


def test_D9_D10_D11_bad_requests_get_error_replies_and_server_keeps_serving(ctx, server):
    bad = [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2, 3]",
        b"null",
        b"{}",
        b'"text"',
        encode({"event": "NO_SUCH_EVENT"}),
        encode({"event": 12}),
        encode({"event": "METHOD_CALL"}),
        encode({"event": "METHOD_CALL", "method": "echo", "params": 3}),
        encode({"event": "METHOD_CALL", "method": "echo", "params": {"args": {}, "kwargs": []}}),
        encode({"event": "METHOD_CALL", "method": "echo", "params": {"args": [], "kwargs": {}}}),
        encode({"event": "PROPERTY_GET"}),
        encode({"event": "PROPERTY_SET", "property": "target"}),
        encode({"event": "FIND_PEER_ADDRESS"}),
    ]
    for message in bad:
        reply, frames = raw_request(ctx, server.port, message)
        assert len(frames) == 1
        assert reply["success"] is False, message
        assert isinstance(reply["error"], str) and reply["error"]
        assert isinstance(reply["traceback"], str)  # D12: uniform error shape
    assert raw_request(ctx, server.port, {"event": "GET_INVENTORY"})[0]["json_methods"]["echo"] == 2000


def test_D10_multipart_request_gets_error_reply(ctx, server):
    reply, _ = raw_request(ctx, server.port, None, frames=[encode({"event": "GET_INVENTORY"}), b"extra"])
    assert reply["success"] is False and "one frame" in reply["error"]
    assert "json_methods" in raw_request(ctx, server.port, {"event": "GET_INVENTORY"})[0]


def test_oversized_request_gets_error_reply(ctx):
    srv = ThermostatServer(ctx, max_request_size=64 * 1024)
    with serving(srv):
        huge = encode(
            {"event": "METHOD_CALL", "method": "echo", "params": {"args": ["x" * 100_000], "kwargs": {}}}
        )
        reply, _ = raw_request(ctx, srv.port, huge)
        assert reply["success"] is False and "exceeds the limit" in reply["error"]
        assert (
            raw_request(
                ctx,
                srv.port,
                {"event": "METHOD_CALL", "method": "echo", "params": {"args": ["ok"], "kwargs": {}}},
            )[0]["result"]
            == "Echo: ok"
        )


def test_D11_unserialisable_results_get_error_replies(ctx):
    class Bad(RPCServer):
        @RPCServer.register_method_json
        def obj(self):
            return object()

        @RPCServer.register_method_buffer
        def info_with_error(self):
            return b"x", {"error": "looks like a failure"}

        @RPCServer.register_method_buffer
        def not_a_pair(self):
            return b"x"

    srv = Bad(ctx, "tcp://127.0.0.1:0")
    with serving(srv):
        for name in ("obj", "info_with_error", "not_a_pair"):
            reply, frames = raw_request(
                ctx, srv.port, {"event": "METHOD_CALL", "method": name, "params": {"args": [], "kwargs": {}}}
            )
            assert len(frames) == 1 and reply["success"] is False and name in reply["error"]
        assert "buffer_methods" in raw_request(ctx, srv.port, {"event": "GET_INVENTORY"})[0]


def test_D21_one_client_is_safe_from_many_threads(client):
    errors = []

    def work(tag):
        try:
            for i in range(150):
                assert client.echo(f"{tag}-{i}") == f"Echo: {tag}-{i}"
                if i % 10 == 0:
                    assert client.add(i, tag) == i + tag
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_D22_subclass_of_concrete_server_exposes_inherited_members(ctx):
    class Derived(ThermostatServer):
        extraChanged = RPCSignal(int)

    srv = Derived(ctx)
    inventory = srv.inventory()
    assert {"echo", "add", "fail"} <= set(inventory["json_methods"])
    assert inventory["buffer_methods"] == {"blob": 5000}
    assert {"target", "pair", "serial"} == set(inventory["properties"])
    assert {"targetChanged", "modeChanged", "pairChanged", "extraChanged"} == set(inventory["signals"])
    srv.stop_server()


def test_D29_failed_construction_closes_its_socket(ctx):
    with socket_reserving_port() as port, pytest.raises(RPCTimeoutError):
        ThermostatClient(ctx, f"tcp://127.0.0.1:{port}", timeout=100)
    # the ctx fixture asserts that term() does not hang on a leaked socket


def test_D8_repeated_init_does_not_multiply_publications(ctx, server):
    for _ in range(5):
        reply, _ = raw_request(ctx, server.port, {"event": "INIT_SIGNALS_HANDLING"})
        assert reply["success"] is True
    port = reply["signal_port"]
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    try:
        messages = []
        for _ in range(200):  # bounded: resend until the subscription is live
            server.modeChanged.emit("probe")
            if sub.poll(20):
                break
        while sub.poll(100):
            messages.append(decode_object(sub.recv()))
        seqs = [m["seq"] for m in messages]
        assert len(seqs) == len(set(seqs)), "a signal was published more than once"
    finally:
        sub.close()


def socket_reserving_port():
    """A bound TCP socket that never answers ZeroMQ: a port where nobody replies."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def reserve():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        try:
            yield s.getsockname()[1]
        finally:
            s.close()

    return reserve()


def test_numbers_are_not_silently_turned_into_string_arguments(client):
    with pytest.raises(RemoteError, match="argument 'message' must be a string, got int"):
        client.echo(5)
    assert client.add(2.0, 3) == 5  # structural conversions JSON needs still apply


def test_limit_waits_caps_advertised_timeouts(client, server):
    client.limit_waits(50, {"echo": 1000})
    assert client._json_methods["echo"] == 1000 and client._json_methods["slow"] == 50
    with pytest.raises(RPCTimeoutError, match="50 ms"):
        client.slow()
    server.release_slow.set()
    assert client.echo("still usable") == "Echo: still usable"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_before_sending_naming_the_argument(client, server, value):
    # JSON has neither: sent, they would arrive as null, and the server would complain about None.
    with pytest.raises(ValidationError, match=r"^echo\(\): argument 'message' is not a finite number"):
        client.echo(value)
    with pytest.raises(ValidationError, match=r"^add\(\): argument 'b' \(at \[1\]\) is not a finite"):
        client.add(1, b=[0.5, value])
    with pytest.raises(ValidationError, match=r"^property 'target': the value is not a finite number"):
        client.target = value
    assert server.calls == 0 and client.target == 20.0  # nothing reached the server
    assert client.echo("still here") == "Echo: still here" and client.add(1, 2) == 3
