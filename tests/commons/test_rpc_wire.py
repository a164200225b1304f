"""Wire compatibility with upstream plantimager peers, speaking its messages byte for byte.

Upstream encodes with Python's ``json`` defaults (``", "`` / ``": "`` separators, NaN tokens) and
uses a REQ socket per client, a REP socket per server, and short-lived REQ sockets to the registry.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import zmq

from helpers.rpc_example import Thermostat, ThermostatClient, ThermostatServer, serving
from plantimager.commons.errors import RemoteError
from plantimager.commons.RPC import RPCClient


def upstream_send(sock, message):
    sock.send(json.dumps(message).encode())  # Python defaults, exactly as upstream


def upstream_recv(sock):
    return json.loads(sock.recv().decode())


@pytest.fixture
def server(ctx):
    srv = ThermostatServer(ctx)
    with serving(srv):
        yield srv


@pytest.fixture
def req(ctx, server):
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.rcvtimeo = 5000
    sock.connect(f"tcp://127.0.0.1:{server.port}")
    yield sock
    sock.close()


# -- an upstream REQ client driving our server ----------------------------------------------------
def test_upstream_client_gets_inventory(req):
    upstream_send(req, {"event": "GET_INVENTORY"})
    inventory = upstream_recv(req)
    for key in ("json_methods", "buffer_methods", "signals", "properties", "name"):
        assert key in inventory
    assert "success" not in inventory
    assert inventory["json_methods"]["echo"] == 2000
    assert inventory["buffer_methods"] == {"blob": 5000}
    assert set(inventory["signals"]) == {"targetChanged", "modeChanged", "pairChanged"}
    assert set(inventory["properties"]) == {"target", "pair", "serial"}
    assert inventory["name"] == ""


def test_upstream_client_calls_json_method_with_defaults_filled_positionally(req):
    upstream_send(req, {"event": "METHOD_CALL", "method": "add", "params": {"args": [1, 10], "kwargs": {}}})
    assert upstream_recv(req) == {"success": True, "result": 11}
    upstream_send(
        req, {"event": "METHOD_CALL", "method": "echo", "params": {"args": ["Hello World"], "kwargs": {}}}
    )
    assert upstream_recv(req) == {"success": True, "result": "Echo: Hello World"}


def test_upstream_client_gets_failure_reply_with_error_and_traceback(req):
    upstream_send(req, {"event": "METHOD_CALL", "method": "fail", "params": {"args": ["bad"], "kwargs": {}}})
    reply = upstream_recv(req)
    assert reply["success"] is False
    assert reply["error"] == "bad"
    assert "Traceback" in reply["traceback"]


def test_upstream_client_unknown_method_says_not_implemented(req):
    upstream_send(req, {"event": "METHOD_CALL", "method": "non_existent_method", "params": {}})
    reply = upstream_recv(req)
    assert reply["success"] is False
    assert "not implemented" in reply["error"]


def test_upstream_client_buffer_method_two_frames(req):
    upstream_send(req, {"event": "METHOD_CALL", "method": "blob", "params": {"args": [4], "kwargs": {}}})
    frames = req.recv_multipart()
    assert len(frames) == 2
    info = json.loads(frames[0])
    assert info == {"size": 4, "type": "raw"}  # no "success" key added, no "error" key
    assert frames[1] == b"\x00\x01\x02\x03"


def test_upstream_client_buffer_failure_is_one_frame_with_error(req):
    upstream_send(req, {"event": "METHOD_CALL", "method": "blob", "params": {"args": ["x"], "kwargs": {}}})
    frames = req.recv_multipart()
    assert len(frames) == 1
    reply = json.loads(frames[0])
    assert reply["success"] is False and "error" in reply and "traceback" in reply


def test_upstream_client_gets_and_sets_properties(req, server):
    upstream_send(req, {"event": "PROPERTY_GET", "property": "target"})
    assert upstream_recv(req) == {"success": True, "value": 20.0}
    upstream_send(req, {"event": "PROPERTY_SET", "property": "target", "value": 42})
    assert upstream_recv(req) == {"success": True}
    assert server._target == 42
    upstream_send(req, {"event": "PROPERTY_GET", "property": "pair"})
    assert upstream_recv(req) == {"success": True, "value": [1, 2]}  # tuples travel as arrays
    # Python's json writes NaN tokens; they must be accepted
    req.send(b'{"event": "PROPERTY_SET", "property": "target", "value": NaN}')
    assert upstream_recv(req) == {"success": True}


def test_upstream_client_subscribes_to_signals(ctx, req, server):
    upstream_send(req, {"event": "INIT_SIGNALS_HANDLING"})
    reply = upstream_recv(req)
    assert reply["success"] is True and isinstance(reply["signal_port"], int)
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{reply['signal_port']}")
    try:
        message = None
        for attempt in range(200):  # PUB/SUB drops messages until the subscription is live
            upstream_send(req, {"event": "PROPERTY_SET", "property": "pair", "value": [10, attempt]})
            assert upstream_recv(req) == {"success": True}
            if sub.poll(20):
                frames = sub.recv_multipart()
                assert len(frames) == 1  # no topic frame: upstream decodes the first frame as JSON
                message = json.loads(frames[0])
                break
        assert message is not None
        assert message["event"] == "EMIT_SIGNAL"
        assert message["signal"] == "pairChanged"
        assert message["args"][0][0] == 10 and len(message["args"]) == 1
        assert message["blocking"] is False
    finally:
        sub.close()


def test_upstream_client_stops_server(ctx):
    srv = ThermostatServer(ctx)
    thread = threading.Thread(target=srv.serve_forever)
    thread.start()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.rcvtimeo = 5000
    sock.connect(f"tcp://127.0.0.1:{srv.port}")
    try:
        upstream_send(sock, {"event": "STOP_SERVER"})
        assert upstream_recv(sock) == {"success": True}
        thread.join(5)
        assert not thread.is_alive()
    finally:
        sock.close()
        srv.stop_server()
        thread.join(5)


def test_relaxed_correlated_req_client_is_answered(ctx, server):
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.rcvtimeo = 5000
    sock.setsockopt(zmq.REQ_RELAXED, 1)
    sock.setsockopt(zmq.REQ_CORRELATE, 1)
    sock.connect(f"tcp://127.0.0.1:{server.port}")
    try:
        upstream_send(sock, {"event": "GET_INVENTORY"})
        assert "json_methods" in upstream_recv(sock)
    finally:
        sock.close()


# -- our client driving an upstream-style REP server ----------------------------------------------
class UpstreamStyleServer(threading.Thread):
    """A REP server answering as upstream's RPCServer does (reference sections 3 and 4)."""

    def __init__(self, ctx):
        super().__init__(daemon=True)
        self.ctx = ctx
        self.rep = ctx.socket(zmq.REP)
        self.rep.linger = 0
        self.port = self.rep.bind_to_random_port("tcp://127.0.0.1")
        self.pub = None
        self.requests = []
        self.target = 20.0
        self.stopping = threading.Event()

    def emit(self, name, *args):
        self.pub.send(
            json.dumps(
                {"event": "EMIT_SIGNAL", "signal": name, "args": list(args), "blocking": False}
            ).encode()
        )

    def run(self):
        try:
            while not self.stopping.is_set():
                if not self.rep.poll(50):
                    continue
                frames = self.rep.recv_multipart()
                assert len(frames) == 1, "upstream servers die on multipart requests"
                request = json.loads(frames[0])
                self.requests.append(request)
                self.handle(request)
        finally:
            self.rep.close()
            if self.pub is not None:
                self.pub.close()

    def handle(self, request):
        event = request["event"]  # upstream has no default case: unknown events are never answered
        if event == "GET_INVENTORY":
            upstream_send(
                self.rep,
                {
                    "json_methods": {"echo": 1000, "add": 1000, "fail": 1000},
                    "buffer_methods": {"blob": 1000},
                    "signals": ["targetChanged"],
                    "properties": ["target"],
                    "name": "legacy",
                },
            )
        elif event == "INIT_SIGNALS_HANDLING":
            if self.pub is None:
                self.pub = self.ctx.socket(zmq.PUB)
                self.pub.linger = 0
                self.pub_port = self.pub.bind_to_random_port("tcp://127.0.0.1")
            upstream_send(self.rep, {"success": True, "signal_port": self.pub_port})
        elif event == "METHOD_CALL":
            method, args = request["method"], request["params"]["args"]
            request["params"]["kwargs"]  # upstream crashes when missing: we must always send it
            if method == "echo":
                upstream_send(self.rep, {"success": True, "result": f"Echo: {args[0]}"})
            elif method == "add":
                upstream_send(self.rep, {"success": True, "result": args[0] + args[1]})
            elif method == "fail":
                upstream_send(self.rep, {"success": False, "error": "it failed", "traceback": "tb"})
            elif method == "blob":
                self.rep.send_multipart([json.dumps({"size": args[0]}).encode(), b"\x07" * args[0]])
        elif event == "PROPERTY_GET":
            upstream_send(self.rep, {"success": True, "value": getattr(self, request["property"])})
        elif event == "PROPERTY_SET":
            setattr(self, request["property"], request["value"])
            upstream_send(self.rep, {"success": True})
        elif event == "STOP_SERVER":
            upstream_send(self.rep, {"success": True})
            self.stopping.set()


@pytest.fixture
def legacy(ctx):
    srv = UpstreamStyleServer(ctx)
    srv.start()
    yield srv
    srv.stopping.set()
    srv.join(5)


def test_our_client_drives_upstream_style_server(ctx, legacy):
    with ThermostatClient(ctx, f"tcp://127.0.0.1:{legacy.port}") as cli:
        assert cli.name == "legacy"
        assert cli.echo("hi") == "Echo: hi"
        assert cli.add(2) == 12  # default filled in and sent positionally
        data, info = cli.blob(8)
        assert bytes(data) == b"\x07" * 8 and info == {"size": 8}
        with pytest.raises(RemoteError, match="it failed"):
            cli.fail("x")
        assert cli.target == 20.0
        cli.target = 30.5
        assert legacy.target == 30.5
        received = threading.Event()
        cli.targetChanged.connect(lambda v: received.set())
        for _ in range(200):  # upstream has no subscription check: retry while the SUB joins
            legacy.emit("targetChanged", 1.5)
            if received.wait(0.02):
                break
        assert received.is_set()
        assert cli.stop_server() is True
    events = [r["event"] for r in legacy.requests]
    known = {
        "GET_INVENTORY",
        "INIT_SIGNALS_HANDLING",
        "METHOD_CALL",
        "PROPERTY_GET",
        "PROPERTY_SET",
        "STOP_SERVER",
    }
    assert set(events) <= known, "an unknown event would wedge an upstream server"
    assert events.count("INIT_SIGNALS_HANDLING") == 1
    for r in legacy.requests:
        if r["event"] == "METHOD_CALL":
            assert set(r["params"]) == {"args", "kwargs"}
        if r["event"].startswith("PROPERTY"):
            assert r["property"] == "target"


def test_our_client_never_sends_to_upstream_what_it_does_not_serve(ctx, legacy):
    class Bigger(Thermostat):
        def missing(self) -> None: ...

    @RPCClient.register_interface(Bigger)
    class BiggerClient(Bigger, RPCClient):
        pass

    with BiggerClient(ctx, f"tcp://127.0.0.1:{legacy.port}") as cli:
        n = len(legacy.requests)
        with pytest.raises(AttributeError):
            cli.missing()
        with pytest.raises(AttributeError):
            cli.serial  # noqa: B018 - not advertised by that server
        assert len(legacy.requests) == n
        assert cli.echo("still fine") == "Echo: still fine"


# -- registry interplay ----------------------------------------------------------------------------
class UpstreamStyleRegistry(threading.Thread):
    """A REP registry answering as upstream's does (reference section 7); records what it receives."""

    def __init__(self, ctx, port=None):
        super().__init__(daemon=True)
        self.rep = ctx.socket(zmq.REP)
        self.rep.linger = 0
        if port is None:
            self.port = self.rep.bind_to_random_port("tcp://127.0.0.1")
        else:
            self.rep.bind(f"tcp://127.0.0.1:{port}")
            self.port = port
        self.messages = []
        self.known = {}
        self.stopping = threading.Event()
        self.changed = threading.Condition()

    @property
    def url(self):
        return f"tcp://127.0.0.1:{self.port}"

    def run(self):
        try:
            while not self.stopping.is_set():
                if not self.rep.poll(50):
                    continue
                message = json.loads(self.rep.recv())
                payload = message["payload"]
                event = message["event"]
                if event == "REGISTER":
                    uid = str(uuid.uuid1())
                    self.known[uid] = payload
                    upstream_send(
                        self.rep, {"event": "REGISTER_ACK", "payload": {"name": payload["name"], "uuid": uid}}
                    )
                elif event in ("CHECK_ALIVE", "UNREGISTER"):
                    ok = payload["uuid"] in self.known
                    if event == "UNREGISTER":
                        self.known.pop(payload["uuid"], None)
                    upstream_send(self.rep, {"event": "ACK", "payload": {"req_event": event, "success": ok}})
                else:
                    upstream_send(self.rep, {"event": "UNSUPPORTED", "payload": {"req_event": event}})
                with self.changed:
                    self.messages.append(message)
                    self.changed.notify_all()
        finally:
            self.rep.close()

    def wait_for(self, predicate, timeout=10):
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self.messages), timeout)

    def stop(self):
        self.stopping.set()
        self.join(5)


def test_our_server_registers_with_upstream_style_registry(ctx):
    registry = UpstreamStyleRegistry(ctx)
    registry.start()
    srv = ThermostatServer(ctx, alive_timeout=1)
    try:
        with serving(srv):
            assert srv.register_to_registry("thermostat", "th", registry.url, overwrite=False) == "th"
            register = registry.messages[0]
            assert register["event"] == "REGISTER"
            payload = register["payload"]
            assert payload["device_type"] == "thermostat"
            assert payload["name"] == "th"
            assert payload["overwrite"] is False  # always explicit
            assert payload["addr"] == f"tcp://127.0.0.1:{srv.port}"  # never tcp://h:p:p (D15)
            assert registry.wait_for(lambda ms: any(m["event"] == "CHECK_ALIVE" for m in ms))
            check = next(m for m in registry.messages if m["event"] == "CHECK_ALIVE")
            assert check["payload"]["uuid"] == srv.uuid and check["payload"]["alive_timeout"] == 1
        assert registry.wait_for(lambda ms: ms[-1]["event"] == "UNREGISTER")  # stop unregisters (D14)
        assert registry.messages[-1]["payload"]["uuid"] not in registry.known
    finally:
        registry.stop()


def test_D6_registry_is_never_contacted_in_the_request_path(ctx):
    registry = UpstreamStyleRegistry(ctx)
    registry.start()
    srv = ThermostatServer(ctx)  # alive_timeout 60 s: heartbeat every 5 s
    try:
        with serving(srv), ThermostatClient(ctx, f"tcp://127.0.0.1:{srv.port}") as cli:
            srv.register_to_registry("thermostat", "th", registry.url)
            before = len(registry.messages)
            for i in range(300):
                assert cli.echo(str(i)) == f"Echo: {i}"
            during = len(registry.messages) - before
            assert during <= 1, f"{during} registry messages while serving 300 requests"
    finally:
        registry.stop()


def test_D6_registry_outage_never_stops_serving_and_server_registers_again(ctx):
    from plantimager.commons.deviceregistry import DeviceRegistry

    registry = DeviceRegistry(ctx, "127.0.0.1", 0)
    port = registry.port
    registry.start()
    srv = ThermostatServer(ctx, alive_timeout=1)
    try:
        with serving(srv), ThermostatClient(ctx, f"tcp://127.0.0.1:{srv.port}") as cli:
            assert srv.register_to_registry("thermostat", "th", registry.url) == "th"
            registry.stop()
            registry.join(5)
            for i in range(50):  # the registry is gone: requests are still answered at once
                assert cli.echo(str(i)) == f"Echo: {i}"
            back = threading.Event()
            registry = DeviceRegistry(ctx, "127.0.0.1", port)
            registry.add_new_device_callback(lambda t, a, n: back.set() if n == "th" else None)
            registry.start()
            assert back.wait(15), "server did not register again after the registry came back"
            assert registry.get_devices()["th"] == ("thermostat", f"tcp://127.0.0.1:{srv.port}")
            assert cli.echo("end") == "Echo: end"
    finally:
        registry.stop()
        registry.join(5)


def test_upstream_style_device_registers_checks_and_unregisters_with_our_registry(ctx):
    from plantimager.commons.deviceregistry import DeviceRegistry

    registry = DeviceRegistry(ctx, "127.0.0.1", 0)
    registry.start()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.rcvtimeo = 5000
    try:
        sock.connect(registry.url)
        # upstream's advertised address is malformed when its URL carried a port: accept it as is
        upstream_send(
            sock,
            {
                "event": "REGISTER",
                "payload": {"device_type": "camera", "addr": "tcp://127.0.0.1:9001:9001", "name": "cam"},
            },
        )
        ack = upstream_recv(sock)
        assert ack["event"] == "REGISTER_ACK" and ack["payload"]["name"] == "cam"
        uid = ack["payload"]["uuid"]
        assert len(uid) == 36
        upstream_send(sock, {"event": "CHECK_ALIVE", "payload": {"uuid": uid, "alive_timeout": 60}})
        assert upstream_recv(sock) == {
            "event": "ACK",
            "payload": {"req_event": "CHECK_ALIVE", "success": True},
        }
        upstream_send(sock, {"event": "UNREGISTER", "payload": {"uuid": uid}})
        assert upstream_recv(sock) == {
            "event": "ACK",
            "payload": {"req_event": "UNREGISTER", "success": True},
        }
        upstream_send(sock, {"event": "CHECK_ALIVE", "payload": {"uuid": uid}})
        assert upstream_recv(sock)["payload"]["success"] is False  # triggers re-registration upstream
    finally:
        sock.close()
        registry.stop()
        registry.join(5)
