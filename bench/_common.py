"""Helpers shared by the benchmarks of this folder.

* :class:`Children` starts servers in separate processes (``spawn``) or in threads of the current
  process, waits until each reports it is ready, and stops every one of them by its handle at the
  end, also after an exception or Ctrl-C. A child target receives a :class:`ChildLink`: it calls
  :meth:`ChildLink.ready` once it accepts work and stops when :attr:`ChildLink.stopping` is set
  (callbacks given to :meth:`ChildLink.on_stop` run at that moment).
* :func:`run_interleaved` times variants batch by batch, rotating their order (ABC, BCA, CAB...)
  so that machine noise hits every variant alike.
* :func:`summarize`, :func:`paired_ratios`, :func:`markdown_table` and :func:`machine_info` turn
  samples into the figures a benchmark prints beside its floor.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ChildLink",
    "Children",
    "Summary",
    "Timings",
    "cpu_split",
    "machine_info",
    "markdown_table",
    "paired_ratios",
    "pin_current_thread",
    "run_interleaved",
    "summarize",
    "write_json",
]

#: A child that is never told to stop still ends after this many seconds.
MAX_CHILD_LIFETIME = 900.0
#: How long a child may take to report that it is ready, in seconds.
READY_TIMEOUT = 30.0


class ChildLink:
    """The child's side of its link to the benchmark: report readiness, learn when to stop.

    Parameters
    ----------
    report : multiprocessing.connection.Connection
        Where :meth:`ready` (or a start-up failure) is sent.
    control : multiprocessing.connection.Connection
        Where the benchmark sends ``"stop"``; its closing means stop as well.
    """

    def __init__(
        self, report: multiprocessing.connection.Connection, control: multiprocessing.connection.Connection
    ) -> None:
        self._report = report
        self._control = control
        self._callbacks: list[Callable[[], Any]] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="bench-child-watch", daemon=True)
        self._watcher.start()

    def ready(self, info: dict[str, Any]) -> None:
        """Tell the benchmark the child accepts work; ``info`` must be picklable (e.g. a URL)."""
        self._report.send({"ok": info})

    def failed(self, text: str) -> None:
        """Tell the benchmark the child could not start."""
        with contextlib.suppress(OSError, ValueError):
            self._report.send({"error": text})

    def on_stop(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` (from a watcher thread) when the benchmark asks the child to stop."""
        with self._lock:
            if not self.stopping.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def _watch(self) -> None:
        deadline = time.monotonic() + MAX_CHILD_LIFETIME
        while time.monotonic() < deadline:
            try:
                if not self._control.poll(0.5):
                    continue
                if self._control.recv() != "cpu":  # anything else means stop
                    break
                self._report.send({"cpu": time.process_time()})
            except (EOFError, OSError):
                break  # the benchmark went away
        with self._lock:
            self.stopping.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a failing stop must not keep the others from running
                traceback.print_exc()


def pin_current_thread(cpus: Collection[int] | None) -> None:
    """Restrict the calling thread, and the threads it creates later, to ``cpus`` (None: no change).

    Pin before creating a ZeroMQ context: its I/O threads inherit the affinity of their creator.
    """
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))  # pid 0: the calling thread on Linux


def cpu_split() -> tuple[set[int], set[int]] | None:
    """Two disjoint single-CPU sets (client side, server side), or None with fewer than 2 usable CPUs."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    return ({usable[0]}, {usable[1]}) if len(usable) >= 2 else None


def _child_main(
    target: Callable[..., Any],
    report: multiprocessing.connection.Connection,
    control: multiprocessing.connection.Connection,
    kwargs: dict[str, Any],
    cpus: Collection[int] | None = None,
) -> None:
    """Body of every child, process or thread: run ``target(link, **kwargs)``, report failures."""
    pin_current_thread(cpus)
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C reaches the whole process group: the benchmark, not each child, decides how to stop.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    link = ChildLink(report, control)
    try:
        target(link, **kwargs)
    except BaseException:
        link.failed(traceback.format_exc())
        if not link.stopping.is_set():
            raise


@dataclass
class _Child:
    name: str
    handle: Any  # multiprocessing.Process or threading.Thread
    control: multiprocessing.connection.Connection
    report: multiprocessing.connection.Connection
    info: dict[str, Any] | None = None  # what the child sent with ready(), once it did


class Children:
    """Owner of the servers a benchmark starts; a context manager that stops them all on exit.

    Parameters
    ----------
    layout : str
        ``"process"``: each child in its own process (``spawn`` start method, so nothing is
        inherited but the arguments); ``"thread"``: each child in a thread of this process.
    cpus : collection of int, optional
        CPUs every child is restricted to (see :func:`pin_current_thread`); None: no restriction.
    """

    def __init__(self, layout: str = "process", cpus: Collection[int] | None = None) -> None:
        if layout not in ("process", "thread"):
            raise ValueError(f"layout must be 'process' or 'thread', got {layout!r}")
        self.layout = layout
        self.cpus = None if cpus is None else set(cpus)
        self._mp = multiprocessing.get_context("spawn")
        self._children: list[_Child] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def start(
        self, name: str, target: Callable[..., Any], *, layout: str | None = None, **kwargs: Any
    ) -> None:
        """Start ``target(link, **kwargs)`` as a child called ``name``; see :meth:`wait_ready`.

        ``target`` must be a module-level function (it is pickled for a process). ``layout``
        overrides the layout of this object for this one child.
        """
        layout = layout or self.layout
        control_recv, control_send = multiprocessing.Pipe(duplex=False)
        report_recv, report_send = multiprocessing.Pipe(duplex=False)
        args = (target, report_send, control_recv, kwargs, self.cpus)
        handle: Any
        if layout == "process":
            handle = self._mp.Process(target=_child_main, args=args, name=f"bench-{name}", daemon=True)
        else:
            handle = threading.Thread(target=_child_main, args=args, name=f"bench-{name}", daemon=True)
        self._children.append(_Child(name, handle, control_send, report_recv))
        if layout == "process" and threading.current_thread() is threading.main_thread():
            # A child started with SIGINT ignored never installs Python's KeyboardInterrupt handler,
            # so Ctrl-C (sent to the whole process group) does not interrupt it mid-import.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                handle.start()
            finally:
                signal.signal(signal.SIGINT, previous)
        else:
            handle.start()
        if layout == "process":  # the child holds its own copies of these ends now
            control_recv.close()
            report_send.close()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict[str, dict[str, Any]]:
        """Wait until every started child reported ready; return ``name -> info``.

        Raises
        ------
        RuntimeError
            If a child failed or did not report within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        for child in self._children:
            while child.info is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"{child.name} did not start within {timeout:.0f} s")
                try:
                    if not child.report.poll(min(remaining, 0.5)):
                        if not child.handle.is_alive():
                            raise RuntimeError(f"{child.name} exited before it was ready")
                        continue
                    message = child.report.recv()
                except EOFError:
                    raise RuntimeError(f"{child.name} exited before it was ready") from None
                if "error" in message:
                    raise RuntimeError(f"{child.name} failed to start:\n{message['error']}")
                child.info = message["ok"]
        return {child.name: child.info or {} for child in self._children}

    def names(self) -> list[str]:
        """The names of the children started so far, in the order they were started."""
        return [child.name for child in self._children]

    def cpu_time(self, name: str, timeout: float = 5.0) -> float:
        """CPU seconds used so far by the process of child ``name`` (all its threads).

        Only meaningful with the ``process`` layout; call it after :meth:`wait_ready`.
        """
        child = next(c for c in self._children if c.name == name)
        child.control.send("cpu")
        if not child.report.poll(timeout):
            raise RuntimeError(f"{child.name} did not report its CPU time within {timeout:.0f} s")
        return float(child.report.recv()["cpu"])

    def stop_all(self, timeout: float = 5.0) -> list[str]:
        """Stop every child by its handle, one after the other, newest first.

        Newest first, so servers leave while the registry they registered with still answers. A
        process that does not end after ``"stop"`` is terminated, then killed. A thread cannot be
        killed: it is reported (it is a daemon thread, so it does not keep the process alive).
        Returns the warnings about such stubborn children (also printed).
        """
        warnings = []
        for child in reversed(self._children):
            with contextlib.suppress(OSError, ValueError):
                child.control.send("stop")
            handle = child.handle
            if handle.ident is not None:
                handle.join(timeout)
            if isinstance(handle, threading.Thread):
                if handle.is_alive():
                    warnings.append(f"thread {child.name} did not stop within {timeout:.0f} s")
            elif handle.is_alive():
                warnings.append(f"process {child.name} (pid {handle.pid}) did not stop; terminating it")
                handle.terminate()
                handle.join(2.0)
                if handle.is_alive():
                    handle.kill()
                    handle.join(2.0)
            for conn in (child.control, child.report):
                conn.close()
        self._children.clear()
        for text in warnings:
            print(f"warning: {text}", file=sys.stderr)
        return warnings


@dataclass
class Timings:
    """Per-call values of every measured batch, in batch order.

    Attributes
    ----------
    seconds : dict
        Variant -> wall-clock seconds per call, one value per batch.
    counters : dict
        Variant -> counter name -> increase of the counter per call, one value per batch.
    """

    seconds: dict[str, list[float]]
    counters: dict[str, dict[str, list[float]]]


def run_interleaved(
    variants: Mapping[str, Callable[[int], Any]],
    *,
    batches: int,
    calls: Mapping[str, int],
    warmup_batches: int = 1,
    budget: float | None = None,
    counters: Mapping[str, Mapping[str, Callable[[], float]]] | None = None,
) -> Timings:
    """Time ``variants[name](calls[name])`` batch by batch.

    Every round runs one batch of each variant, in an order rotated by one from the previous
    round, so drifting machine load is shared fairly. Warm-up rounds are run first and dropped.
    If ``budget`` seconds pass, no further round is started (at least one is always measured).
    ``counters[variant]`` maps counter names to functions returning a cumulative value (e.g. CPU
    seconds of a process); they are read outside the timed region, before and after each batch.
    """
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    probes = {name: dict((counters or {}).get(name, {})) for name in names}
    counted: dict[str, dict[str, list[float]]] = {name: {c: [] for c in probes[name]} for name in names}
    started = time.monotonic()
    for round_no in range(warmup_batches + batches):
        if budget is not None and round_no > warmup_batches and time.monotonic() - started > budget:
            done = round_no - warmup_batches
            print(f"note: time budget of {budget:.0f} s spent, stopping after {done} batches")
            break
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            n = calls[name]
            run = variants[name]
            before = {c: probe() for c, probe in probes[name].items()}
            t0 = time.perf_counter()
            run(n)
            elapsed = time.perf_counter() - t0
            if round_no >= warmup_batches:
                samples[name].append(elapsed / n)
                for c, probe in probes[name].items():
                    counted[name][c].append((probe() - before[c]) / n)
    return Timings(samples, counted)


@dataclass
class Summary:
    """Median and 10th/90th percentiles of per-call seconds over the batches."""

    median: float
    p10: float
    p90: float
    batches: int


def summarize(values: Sequence[float]) -> Summary:
    """Summarize per-batch values (at least one)."""
    if not values:
        raise ValueError("no samples to summarize")
    if len(values) == 1:
        return Summary(values[0], values[0], values[0], 1)
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return Summary(statistics.median(values), cuts[0], cuts[-1], len(values))


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> Summary:
    """Summary of the batch-by-batch ratios of two interleaved series (same batch index = same round)."""
    return summarize([a / b for a, b in zip(numerator, denominator, strict=False) if b > 0])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render a GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Describe the machine: CPU, usable cores, OS, Python, plus ``extra`` (library versions)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    info = {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} (usable: {usable})",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    with contextlib.suppress(OSError):
        info["load average"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    info.update(extra or {})
    return info


def write_json(path: str | Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` (dataclasses allowed) as indented JSON to ``path``."""

    def default(obj: Any) -> Any:
        if hasattr(obj, "__dataclass_fields__"):
            return asdict(obj)
        raise TypeError(f"cannot write {type(obj).__name__} as JSON")

    Path(path).write_text(json.dumps(document, indent=2, default=default) + "\n")
