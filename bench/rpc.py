"""Cost of plantimager's RPC layer over raw pyzmq, measured against a floor in the same run.

Measured, on 127.0.0.1 with ports picked by the OS:

1. **JSON call latency.** Our client proxy calls ``echo("x")`` (a JSON method returning ``"x"``),
   once on a server that is not registered and once on a server registered with a running
   ``DeviceRegistry`` (in a process of its own). Floor: raw pyzmq REQ/REP exchanging the same
   message shapes with the standard ``json`` module on both sides: the client encodes
   ``{"event": "METHOD_CALL", "method": ..., "params": {"args": [...], "kwargs": {}}}``, the server
   decodes it, dispatches through a dict and encodes ``{"success": true, "result": ...}``, the
   client decodes the reply. Target: ours at most 1.25x the floor's time per call.
2. **5 MB buffer throughput.** Our buffer method returns a preallocated 5 MB ``bytes`` object.
   Floor: raw pyzmq zero-copy multipart, the REP side replying ``[json_header, payload]`` with
   ``send_multipart(copy=False)``, the REQ side receiving with ``recv_multipart(copy=False)``.
   Target: ours at least 0.9x the floor's MB/s.

For context (no target), an upstream-style server is also timed: the raw floor server plus what
the upstream server does on every request when registered, a ``CHECK_ALIVE`` round trip to the
registry on a fresh REQ socket.

3. **CurveZMQ.** In the same run, our server with keys (every request authenticated, its role
   checked) against our plaintext server: the JSON call (target: at most 1.3x plaintext) and the
   5 MB buffer (target: at least 0.5x plaintext's MB/s). Floor: the raw pyzmq client and server with
   CURVE keys set and nothing else, against raw plaintext, which shows what libzmq's encryption
   (libsodium, one stream per connection) costs by itself.

Method. Each server runs in its own process (``spawn``), the client in this process, so neither
side's GIL slows the other; ``--layout thread`` runs the servers in threads of this process
instead, to show what sharing one GIL costs. With two CPUs or more, the client is pinned to one
CPU and the servers to another (``--pin split``): a ping-pong is a chain of cross-thread wake-ups,
and letting the scheduler move the two sides between CPUs makes whole batches fast or slow at
random. ``--pin same`` puts everything on one CPU (the time per call is then the sum of both
sides' CPU work, which shows our overhead most plainly); ``--pin none`` leaves placement to the OS.

After a warm-up round, the variants are timed batch by batch in rotating order (ABC, BCA,
CAB...), so machine noise hits them alike; the table gives the median over the batches of the
time per call, with the 10th and 90th percentiles, and the ratio of the medians. The CPU time of
the client process and of each server process is read around every batch and reported per call,
which shows on which side any overhead lies. Every process started is stopped by its handle at
the end, also on errors and Ctrl-C.

Run: ``python bench/rpc.py [--quick] [--json PATH] [--layout process|thread] [--pin split|same|none]``;
``python bench/rpc.py --profile DIR`` profiles our client and server on both request paths
(cProfile files in DIR, top functions by own time printed; blocking waits in ``recv``/``poll``
come first) instead of benchmarking.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import zmq

from _common import (
    ChildLink,
    Children,
    Summary,
    Timings,
    cpu_split,
    machine_info,
    markdown_table,
    paired_ratios,
    pin_current_thread,
    run_interleaved,
    summarize,
    write_json,
)
from plantimager.commons.deviceregistry import DeviceRegistry, register_device
from plantimager.commons.RPC import RPCClient, RPCServer
from plantimager.commons.security import KeyRing, Role

__all__ = ["main"]

HOST = "127.0.0.1"
PAYLOAD_SIZE = 5_000_000
MB = 1_000_000
LATENCY_TARGET = 1.25
THROUGHPUT_TARGET = 0.9
SECURE_LATENCY_TARGET = 1.3
SECURE_THROUGHPUT_TARGET = 0.5
#: Longest wait for any reply, in ms: a dead server fails the benchmark instead of hanging it.
REPLY_TIMEOUT_MS = 10_000
LAYOUTS = {
    "process": "each server in its own process (spawn), client in the main process",
    "thread": "servers in threads of the client process (one GIL), registry in its own process",
}


# -- our server and client ------------------------------------------------------------------------
class BenchService(ABC):
    """The interface served in the benchmark."""

    @abstractmethod
    def echo(self, message: str) -> str:
        """Return ``message``."""

    @abstractmethod
    def blob(self) -> tuple[memoryview, dict]:
        """Return the preallocated payload and ``{"size": <bytes>}``."""


class BenchServer(BenchService, RPCServer):
    """Our server, with a payload allocated once."""

    def __init__(
        self, context: zmq.Context, url: str, payload_size: int, keys: KeyRing | None = None
    ) -> None:
        RPCServer.__init__(self, context, url, keys=keys)
        self._payload = os.urandom(payload_size)  # real pages, not the shared zero page of calloc

    @RPCServer.register_method_json
    def echo(self, message: str) -> str:
        """Return ``message``."""
        return message

    @RPCServer.register_method_buffer
    def blob(self) -> tuple[memoryview, dict]:
        """Return the preallocated payload and its size."""
        return memoryview(self._payload), {"size": len(self._payload)}


@RPCClient.register_interface(BenchService)
class BenchClient(BenchService, RPCClient):
    """Our client proxy."""


def ours_server(
    link: ChildLink, *, payload_size: int, registry_url: str = "", profile_path: str = "", keys: str = ""
) -> None:
    """Child: serve :class:`BenchServer` until told to stop (optionally registered, profiled, or secured
    with the key folder ``keys``)."""
    context = zmq.Context()
    server = BenchServer(context, f"tcp://{HOST}:0", payload_size, KeyRing(keys) if keys else None)
    try:
        name = server.register_to_registry("bench", "bench-rpc", registry_url) if registry_url else ""
        if registry_url and not name:
            raise RuntimeError(f"could not register with the registry at {registry_url}")
        link.on_stop(server.stop_server)
        link.ready({"url": f"tcp://{HOST}:{server.port}", "name": name})
        profiler = cProfile.Profile() if profile_path else None
        if profiler is not None:
            profiler.enable()
        try:
            server.serve_forever()
        except RuntimeError:
            if not link.stopping.is_set():  # stopped before it started serving: not an error
                raise
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile_path)
    finally:
        server.stop_server()
        context.destroy(linger=0)


# -- the floor: raw pyzmq and the standard json module ----------------------------------------------
def raw_server(
    link: ChildLink,
    *,
    payload_size: int,
    upstream_registry: str = "",
    profile_path: str = "",
    curve_secret: bytes = b"",
) -> None:
    """Child: raw REP server dispatching through dicts; upstream-style alive checks with a registry;
    a CURVE server (no ZAP: any client key) when given a secret key."""
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.linger = 0
    if curve_secret:
        sock.curve_secretkey = curve_secret
        sock.curve_publickey = zmq.curve_public(curve_secret)
        sock.curve_server = True
    sock.rcvtimeo = 100  # lets the loop notice a stop request
    port = sock.bind_to_random_port(f"tcp://{HOST}")
    payload = os.urandom(payload_size)

    def echo(message: str) -> str:
        return message

    def blob() -> tuple[bytes, dict[str, Any]]:
        return payload, {"size": len(payload)}

    json_methods: dict[str, Callable[..., Any]] = {"echo": echo}
    buffer_methods: dict[str, Callable[..., Any]] = {"blob": blob}
    device_uuid = ""
    if upstream_registry:
        _, device_uuid = register_device(
            context, "bench", f"tcp://{HOST}:{port}", "bench-upstream", upstream_registry, overwrite=True
        )
    profiler = cProfile.Profile() if profile_path else None
    link.ready({"url": f"tcp://{HOST}:{port}"})
    if profiler is not None:
        profiler.enable()
    try:
        last_check = 0.0
        handled = True
        while not link.stopping.is_set():
            # Upstream checks in with the registry before waiting for each request (and every 2 s idle).
            if device_uuid and (handled or time.monotonic() - last_check >= 2.0):
                _upstream_alive_check(context, upstream_registry, device_uuid)
                last_check = time.monotonic()
            try:
                request = json.loads(sock.recv())
            except zmq.Again:
                handled = False
                continue
            handled = True
            name = request["method"]
            params = request["params"]
            method = json_methods.get(name)
            if method is not None:
                result = method(*params["args"], **params["kwargs"])
                sock.send(json.dumps({"success": True, "result": result}).encode())
            else:
                buffer, info = buffer_methods[name](*params["args"], **params["kwargs"])
                sock.send_multipart([json.dumps(info).encode(), buffer], copy=False)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_path)
        sock.close()
        context.destroy(linger=0)


def _upstream_alive_check(context: zmq.Context, registry_url: str, device_uuid: str) -> None:
    """One ``CHECK_ALIVE`` round trip as upstream does it: a fresh REQ socket, stdlib json, 5 s wait."""
    sock = context.socket(zmq.REQ)
    try:
        sock.linger = 0
        sock.connect(registry_url)
        message = {"event": "CHECK_ALIVE", "payload": {"uuid": device_uuid, "alive_timeout": 60}}
        sock.send(json.dumps(message).encode())
        if not sock.poll(5000):
            raise RuntimeError(f"registry at {registry_url} did not answer CHECK_ALIVE")
        reply = json.loads(sock.recv())
        if reply.get("payload", {}).get("success") is not True:
            raise RuntimeError(f"registry at {registry_url} does not know the device: {reply}")
    finally:
        sock.close()


class RawClient:
    """The floor's client: a REQ socket, stdlib json, the request shape of the protocol."""

    def __init__(
        self, context: zmq.Context, url: str, curve: tuple[bytes, bytes, bytes] | None = None
    ) -> None:
        self.sock = context.socket(zmq.REQ)
        self.sock.linger = 0
        if curve is not None:  # (public, secret, server's public)
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = curve
        self.sock.rcvtimeo = REPLY_TIMEOUT_MS
        self.sock.connect(url)

    def call(self, method: str, *args: Any) -> Any:
        """Call a JSON method and return its result."""
        request = {"event": "METHOD_CALL", "method": method, "params": {"args": list(args), "kwargs": {}}}
        self.sock.send(json.dumps(request).encode())
        reply = json.loads(self.sock.recv())
        if reply.get("success") is not True:
            raise RuntimeError(f"{method} failed: {reply}")
        return reply["result"]

    def call_buffer(self, method: str, *args: Any) -> tuple[memoryview, dict[str, Any]]:
        """Call a buffer method and return ``(buffer, info)`` without copying the buffer."""
        request = {"event": "METHOD_CALL", "method": method, "params": {"args": list(args), "kwargs": {}}}
        self.sock.send(json.dumps(request).encode())
        frames = self.sock.recv_multipart(copy=False)
        return frames[1].buffer, json.loads(frames[0].bytes)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def registry_process(link: ChildLink) -> None:
    """Child: run our ``DeviceRegistry`` until told to stop."""
    context = zmq.Context()
    registry = DeviceRegistry(context, f"tcp://{HOST}", 0)
    try:
        registry.start()
        link.ready({"url": registry.url})
        link.stopping.wait()  # set by the link's watcher, which gives up on its own after a bounded time
    finally:
        registry.stop()
        context.destroy(linger=0)


# -- the benchmark ----------------------------------------------------------------------------------
def _repeat(func: Callable[..., Any], *args: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            func(*args)

    return run


def _check(label: str, got: Any, expected: Any) -> None:
    if got != expected:
        raise RuntimeError(f"{label} returned {got!r}, expected {expected!r}")


def _fmt_time(summary: Summary) -> str:
    return f"{summary.median * 1e6:.1f} µs (p10 {summary.p10 * 1e6:.1f}, p90 {summary.p90 * 1e6:.1f})"


def _fmt_rate(summary: Summary) -> str:
    # The fastest batches (p10 of time) give the highest rate (p90 of MB/s).
    rate = PAYLOAD_SIZE / MB
    return f"{rate / summary.median:.0f} MB/s (p10 {rate / summary.p90:.0f}, p90 {rate / summary.p10:.0f})"


def _make_keys(folder: Path) -> tuple[KeyRing, KeyRing]:
    """A server's and a client's key folders under ``folder``, the client trusted as an operator."""
    server, client = KeyRing.init(folder / "server"), KeyRing.init(folder / "client")
    server.trust(client.public_key.decode(), Role.OPERATOR, "client")
    return server, client


def _start_servers(children: Children, *, upstream: bool, server_keys: KeyRing) -> dict[str, dict[str, Any]]:
    children.start("registry", registry_process, layout="process")
    registry_url = children.wait_ready()["registry"]["url"]
    children.start("floor", raw_server, payload_size=PAYLOAD_SIZE)
    children.start("floor-curve", raw_server, payload_size=PAYLOAD_SIZE, curve_secret=server_keys.secret_key)
    children.start("ours", ours_server, payload_size=PAYLOAD_SIZE)
    children.start("ours-secured", ours_server, payload_size=PAYLOAD_SIZE, keys=str(server_keys.folder))
    children.start("ours-registered", ours_server, payload_size=PAYLOAD_SIZE, registry_url=registry_url)
    if upstream:
        children.start("upstream-style", raw_server, payload_size=0, upstream_registry=registry_url)
    return children.wait_ready()


def _pinning(mode: str) -> tuple[set[int] | None, set[int] | None, str]:
    """CPUs of the client and of the servers for ``--pin``, and a description."""
    split = cpu_split()
    if mode == "split" and split is not None:
        client, servers = split
        return client, servers, f"client on CPU {min(client)}, servers on CPU {min(servers)}"
    if mode == "same" and split is not None:
        client, _ = split
        return client, client, f"client and servers on CPU {min(client)}"
    return None, None, "not pinned (the OS places client and servers)"


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Start the servers, time every variant, print the tables; return the results."""
    client_cpus, server_cpus, pin_text = _pinning(args.pin)
    machine = machine_info(
        {
            "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(),
            "msgspec": msgspec.__version__,
            "layout": LAYOUTS[args.layout],
            "CPU pinning": pin_text,
        }
    )
    pin_current_thread(client_cpus)  # before any ZeroMQ context: its I/O threads inherit it
    if args.quick:
        lat_batches, lat_calls, buf_batches, buf_calls = 15, 1000, 30, 8
    else:
        lat_batches, lat_calls, buf_batches, buf_calls = 25, 2000, 100, 20
    upstream_calls = max(20, lat_calls // 10)
    context = zmq.Context()
    clients: list[Any] = []
    scratch = tempfile.TemporaryDirectory(prefix="bench-rpc-keys-")
    try:
        server_keys, client_keys = _make_keys(Path(scratch.name))
        curve = (client_keys.public_key, client_keys.secret_key, server_keys.public_key)
        with Children(args.layout, server_cpus) as children:
            t0 = time.perf_counter()
            info = _start_servers(children, upstream=not args.no_upstream, server_keys=server_keys)
            print(f"servers ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            floor = RawClient(context, info["floor"]["url"])
            clients.append(floor)
            ours = BenchClient(context, info["ours"]["url"])
            clients.append(ours)
            ours_reg = BenchClient(context, info["ours-registered"]["url"])
            clients.append(ours_reg)
            floor_curve = RawClient(context, info["floor-curve"]["url"], curve)
            clients.append(floor_curve)
            secured = BenchClient(
                context, info["ours-secured"]["url"], keys=client_keys, server_key=server_keys.public_key
            )
            clients.append(secured)
            _check("ours-registered name", ours_reg.name, info["ours-registered"]["name"])
            _check("floor echo", floor.call("echo", "x"), "x")
            _check("floor-curve echo", floor_curve.call("echo", "x"), "x")
            _check("ours echo", ours.echo("x"), "x")
            _check("ours-registered echo", ours_reg.echo("x"), "x")
            _check("ours-secured echo", secured.echo("x"), "x")
            latency = {
                "floor": _repeat(floor.call, "echo", "x"),
                "ours": _repeat(ours.echo, "x"),
                "ours-registered": _repeat(ours_reg.echo, "x"),
                "floor-curve": _repeat(floor_curve.call, "echo", "x"),
                "ours-secured": _repeat(secured.echo, "x"),
            }
            calls = dict.fromkeys(latency, lat_calls)
            if "upstream-style" in info:
                upstream = RawClient(context, info["upstream-style"]["url"])
                clients.append(upstream)
                _check("upstream-style echo", upstream.call("echo", "x"), "x")
                latency["upstream-style"] = _repeat(upstream.call, "echo", "x")
                calls["upstream-style"] = upstream_calls
            t0 = time.perf_counter()
            lat = run_interleaved(
                latency,
                batches=lat_batches,
                calls=calls,
                budget=120.0,
                counters=_cpu_counters(children, latency, args.layout),
            )
            print(f"latency measured in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

            view, head = ours.blob()
            _check("ours blob", (len(view), head), (PAYLOAD_SIZE, {"size": PAYLOAD_SIZE}))
            view, head = floor.call_buffer("blob")
            _check("floor blob", (len(view), head), (PAYLOAD_SIZE, {"size": PAYLOAD_SIZE}))
            view, head = floor_curve.call_buffer("blob")
            _check("floor-curve blob", (len(view), head), (PAYLOAD_SIZE, {"size": PAYLOAD_SIZE}))
            view, head = secured.blob()
            _check("ours-secured blob", (len(view), head), (PAYLOAD_SIZE, {"size": PAYLOAD_SIZE}))
            del view
            buffers = {
                "floor": _repeat(floor.call_buffer, "blob"),
                "ours": _repeat(ours.blob),
                "floor-curve": _repeat(floor_curve.call_buffer, "blob"),
                "ours-secured": _repeat(secured.blob),
            }
            t0 = time.perf_counter()
            buf = run_interleaved(
                buffers,
                batches=buf_batches,
                calls=dict.fromkeys(buffers, buf_calls),
                budget=90.0,
                counters=_cpu_counters(children, buffers, args.layout),
            )
            print(f"throughput measured in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    finally:
        for client in clients:
            client.close()
        context.destroy(linger=0)
        scratch.cleanup()
    sizes = {"latency": (lat_batches, lat_calls, upstream_calls), "buffer": (buf_batches, buf_calls)}
    return _report(args, machine, lat, buf, sizes)


def _cpu_counters(
    children: Children, variants: dict[str, Any], layout: str
) -> dict[str, dict[str, Callable[[], float]]]:
    """CPU seconds of this process and of each variant's server process (process layout only)."""
    if layout != "process":
        return {}
    return {
        name: {"client": time.process_time, "server": functools.partial(children.cpu_time, name)}
        for name in variants
    }


LATENCY_ROWS = {
    "ours": ('JSON call `echo("x")`, server not registered', True),
    "ours-registered": ('JSON call `echo("x")`, server registered', True),
    "upstream-style": ("upstream-style registered server (raw + CHECK_ALIVE per request)", False),
}


def _report(
    args: argparse.Namespace,
    machine: dict[str, str],
    lat: Timings,
    buf: Timings,
    sizes: dict[str, tuple[int, ...]],
) -> dict[str, Any]:
    stats = {f"latency/{k}": summarize(v) for k, v in lat.seconds.items()}
    stats |= {f"buffer/{k}": summarize(v) for k, v in buf.seconds.items()}
    rows: list[dict[str, Any]] = []
    for variant, (label, has_target) in LATENCY_ROWS.items():
        if variant not in lat.seconds:
            continue
        ours, floor = stats[f"latency/{variant}"], stats["latency/floor"]
        ratio = ours.median / floor.median
        met = "yes" if ratio <= LATENCY_TARGET else "NO"
        rows.append(
            {
                "measurement": label,
                "ours": _fmt_time(ours),
                "floor": _fmt_time(floor),
                "ratio": ratio,
                "paired": paired_ratios(lat.seconds[variant], lat.seconds["floor"]),
                "target": f"<= {LATENCY_TARGET:.2f}x" if has_target else "(context)",
                "met": met if has_target else "-",
            }
        )
    ours, floor = stats["buffer/ours"], stats["buffer/floor"]
    ratio = floor.median / ours.median  # MB/s ratio: the inverse of the time ratio
    rows.insert(
        2,
        {
            "measurement": "5 MB buffer method, throughput",
            "ours": _fmt_rate(ours),
            "floor": _fmt_rate(floor),
            "ratio": ratio,
            "paired": paired_ratios(buf.seconds["floor"], buf.seconds["ours"]),
            "target": f">= {THROUGHPUT_TARGET:.2f}x",
            "met": "yes" if ratio >= THROUGHPUT_TARGET else "NO",
        },
    )
    header = ["measurement", "ours", "floor", "ratio", "target", "met"]
    secure_rows = _secure_rows(stats, lat, buf)
    table = [
        [r["measurement"], r["ours"], r["floor"], f"{r['ratio']:.2f}x", r["target"], r["met"]] for r in rows
    ]
    lat_batches, lat_calls, upstream_calls = sizes["latency"]
    buf_batches, buf_calls = sizes["buffer"]
    print()
    print(markdown_table(header, table))
    print()
    print(
        f"Medians over {lat_batches} batches of {lat_calls} calls (upstream-style: {upstream_calls})"
        f" for latency, {buf_batches} batches of {buf_calls} calls for 5 MB ({PAYLOAD_SIZE} bytes);"
        " p10/p90 over batches; ratio = ours / floor (time per call, or MB/s)."
    )
    print()
    print("CurveZMQ against plaintext, same run (ratio = secured / plaintext, time per call or MB/s):")
    print()
    print(
        markdown_table(
            ["measurement", "secured", "against", "ratio", "target", "met"],
            [
                [r["measurement"], r["ours"], r["floor"], f"{r['ratio']:.2f}x", r["target"], r["met"]]
                for r in secure_rows
            ],
        )
    )
    print()
    print("Batch-by-batch ratios (same round), median (p10-p90):")
    for r in rows + secure_rows:
        p = r["paired"]
        print(f"  {r['measurement']}: {p.median:.2f}x ({p.p10:.2f}-{p.p90:.2f})")
    cpu = _cpu_table(lat, buf)
    if cpu:
        print()
        print("CPU time per call (median over batches; client = this process, server = its process):")
        print()
        print(
            markdown_table(
                [
                    "measurement",
                    "ours client",
                    "ours server",
                    "floor client",
                    "floor server",
                    "ratio (total)",
                ],
                cpu,
            )
        )
    print()
    print(markdown_table(["machine", ""], [[k, v] for k, v in machine.items()]))
    results = {
        "machine": machine,
        "quick": args.quick,
        "layout": args.layout,
        "pin": args.pin,
        "sizes": sizes,
        "rows": rows,
        "secure_rows": secure_rows,
        "cpu_per_call": cpu,
        "summaries_seconds_per_call": stats,
        "samples_seconds_per_call": {"latency": lat.seconds, "buffer": buf.seconds},
        "cpu_seconds_per_call": {"latency": lat.counters, "buffer": buf.counters},
    }
    if args.json:
        write_json(args.json, results)
        print(f"\nresults written to {args.json}")
    return results


def _secure_rows(stats: dict[str, Summary], lat: Timings, buf: Timings) -> list[dict[str, Any]]:
    """Rows of CurveZMQ against plaintext: ours (with targets) and the raw pyzmq floor."""
    specs = [
        ("latency", "ours-secured", "ours", 'ours: JSON call `echo("x")`', SECURE_LATENCY_TARGET),
        ("latency", "floor-curve", "floor", "floor: raw pyzmq REQ/REP + stdlib json", None),
        ("buffer", "ours-secured", "ours", "ours: 5 MB buffer method, throughput", SECURE_THROUGHPUT_TARGET),
        ("buffer", "floor-curve", "floor", "floor: raw pyzmq 5 MB multipart, throughput", None),
        ("buffer", "ours-secured", "floor-curve", "ours secured against the raw CURVE floor, 5 MB", None),
    ]
    rows = []
    for kind, secured, plain, label, target in specs:
        latency = kind == "latency"
        mine, other = stats[f"{kind}/{secured}"], stats[f"{kind}/{plain}"]
        samples = lat if latency else buf
        # Latency: time ratio, lower is better; throughput: MB/s ratio, higher is better.
        ratio = mine.median / other.median if latency else other.median / mine.median
        met = (ratio <= target if latency else ratio >= target) if target else None
        rows.append(
            {
                "measurement": label,
                "ours": (_fmt_time if latency else _fmt_rate)(mine),
                "floor": (_fmt_time if latency else _fmt_rate)(other),
                "ratio": ratio,
                "paired": paired_ratios(samples.seconds[secured], samples.seconds[plain])
                if latency
                else paired_ratios(samples.seconds[plain], samples.seconds[secured]),
                "target": f"{'<=' if latency else '>='} {target:.2f}x" if target else "(floor)",
                "met": "-" if met is None else ("yes" if met else "NO"),
            }
        )
    return rows


def _cpu_table(lat: Timings, buf: Timings) -> list[list[str]]:
    """Rows of CPU µs per call for ours against the floor, empty when no CPU was counted."""
    rows = []
    for timings, variant, label in (
        (lat, "ours", LATENCY_ROWS["ours"][0]),
        (lat, "ours-registered", LATENCY_ROWS["ours-registered"][0]),
        (buf, "ours", "5 MB buffer method"),
    ):
        ours, floor = timings.counters.get(variant, {}), timings.counters.get("floor", {})
        if not (ours.get("client") and floor.get("client")):
            continue
        cells = [statistics.median(series[side]) for series in (ours, floor) for side in ("client", "server")]
        ratio = (cells[0] + cells[1]) / (cells[2] + cells[3])
        rows.append([label, *(f"{c * 1e6:.1f} µs" for c in cells), f"{ratio:.2f}x"])
    return rows


# -- profiling ----------------------------------------------------------------------------------------
def run_profile(args: argparse.Namespace) -> None:
    """Profile our client and server on the JSON and buffer request paths (and the floor's, to compare)."""
    folder = Path(args.profile)
    folder.mkdir(parents=True, exist_ok=True)
    client_cpus, server_cpus, pin_text = _pinning(args.pin)
    pin_current_thread(client_cpus)
    print(f"# profile, {LAYOUTS[args.layout]}; {pin_text}")
    n_json, n_buffer = (2000, 20) if args.quick else (20000, 200)
    context = zmq.Context()
    try:
        for impl in ("ours", "floor"):
            for kind, n in (("json", n_json), ("buffer", n_buffer)):
                server_prof = folder / f"{impl}-{kind}-server.prof"
                client_prof = folder / f"{impl}-{kind}-client.prof"
                with Children(args.layout, server_cpus) as children:
                    target = ours_server if impl == "ours" else raw_server
                    children.start("server", target, payload_size=PAYLOAD_SIZE, profile_path=str(server_prof))
                    url = children.wait_ready()["server"]["url"]
                    client: Any = BenchClient(context, url) if impl == "ours" else RawClient(context, url)
                    try:
                        if impl == "ours":
                            call = _repeat(client.echo, "x") if kind == "json" else _repeat(client.blob)
                        else:
                            call = (
                                _repeat(client.call, "echo", "x")
                                if kind == "json"
                                else _repeat(client.call_buffer, "blob")
                            )
                        call(max(10, n // 10))  # warm-up
                        profiler = cProfile.Profile()
                        t0 = time.perf_counter()
                        profiler.enable()
                        call(n)
                        profiler.disable()
                        elapsed = time.perf_counter() - t0
                        profiler.dump_stats(client_prof)
                    finally:
                        client.close()
                    print(f"\n## {impl} {kind}: {n} calls, {elapsed / n * 1e6:.1f} µs per call, profiled")
                for side, path in (("client", client_prof), ("server", server_prof)):
                    if path.exists():
                        print(f"\n### {side} ({path})\n")
                        out = io.StringIO()
                        pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(14)
                        print(out.getvalue().split("\n", 6)[-1].rstrip())
    finally:
        context.destroy(linger=0)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (about 15 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--layout",
        choices=("process", "thread"),
        default="process",
        help="servers in separate processes (default) or in threads of the client process",
    )
    parser.add_argument(
        "--pin",
        choices=("split", "same", "none"),
        default="split",
        help="CPU pinning: client and servers on two different CPUs (default), all on one CPU, or none",
    )
    parser.add_argument("--no-upstream", action="store_true", help="skip the upstream-style context row")
    parser.add_argument(
        "--profile", metavar="DIR", help="profile instead of benchmarking; .prof files go to DIR"
    )
    args = parser.parse_args(argv)
    try:
        if args.profile:
            run_profile(args)
        else:
            run_benchmark(args)
    except KeyboardInterrupt:
        print("interrupted; every server was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
