"""The soak's controller: a :class:`~plantimager.rig.Rig` in a process of its own.

``python -m soak.controller --registry URL --dataset DIR --cameras N`` captures and downloads over
and over until SIGTERM; with ``--drain S`` it only downloads, until nothing is owed (exit 0) or S
seconds have passed (exit 1). Either way it prints one JSON object per line, for the soak to follow:

=================  ===============================================================================
``event``          when
=================  ===============================================================================
``ready``          the rig follows the registry (``cameras``: how many it has)
``cameras``        a camera came or went (``n``: how many the rig has now)
``capture``        a capture ended (``capture_no``, ``images``, ``failures``)
``download``       a download starts
``image``          an image of the download is settled (``n``: how many so far)
``downloaded``     the download ended (``files``, ``released``, ``owed``, ``failures``)
``error``          an operation failed as a whole with a PlantImagerError (``op``, ``kind``, ``text``)
``unexpected``     an operation raised anything else: a bug (``op``, ``kind``, ``text``, ``trace``)
``drained``        the drain ended (``owed``: what the dataset still needs, ``rounds``)
=================  ===============================================================================

SIGUSR1 prints every thread's stack (to find where a hang is).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from plantimager.commons.errors import PlantImagerError, RigError
from plantimager.rig import CallLimits, DownloadProgress, Rig

__all__ = ["LIMITS", "main"]

#: The controller's longest waits of nodes, ms: short, so that a hung node costs seconds. An image
#: whose capture result never arrived is asked for 20 s: the soak's faults keep a node from
#: answering for at most ~9 s, and a node refuses a capture instant more than 5 s late.
LIMITS = CallLimits(connect=1500, call=2000, capture=5000, transfer=3000, unknown_result=20_000)
#: Pause between rounds when nothing could be done (no camera, no space), seconds.
_IDLE_S = 0.5

_print_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    """Print one event as a JSON line."""
    line = json.dumps({"event": event, "t": round(time.time(), 3), **fields}, default=str)
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def attempt(op: str, action: Callable[[], Any]) -> tuple[Any, bool]:
    """Run ``action``; report how it failed. Returns (result or partial result, done as a whole)."""
    try:
        return action(), True
    except RigError as exc:
        partial = getattr(exc, "record", None) or getattr(exc, "report", None)
        return (partial, True) if partial is not None else (None, False)
    except PlantImagerError as exc:
        emit("error", op=op, kind=type(exc).__name__, text=str(exc))
    except Exception as exc:
        emit(
            "unexpected",
            op=op,
            kind=type(exc).__name__,
            text=str(exc),
            trace="".join(traceback.format_exception(exc)),
        )
    return None, False


def capture(rig: Rig) -> bool:
    """One capture_all; True if it went out (even with failed cameras)."""
    record, done = attempt("capture", rig.capture_all)
    if record is not None:
        emit(
            "capture",
            capture_no=record.capture_no,
            images=len(record.shots),
            failures=sorted(record.failures.values())[:3],
            failed=len(record.failures),
        )
    return done and record is not None


def download(rig: Rig) -> Any:
    """One download_all, reporting each settled image; returns its report (None if it failed whole)."""
    count = [0]
    lock = threading.Lock()

    def progress(_event: DownloadProgress) -> None:
        with lock:
            count[0] += 1
            n = count[0]
        emit("image", n=n)

    emit("download")
    report, _ = attempt("download", lambda: rig.download_all(progress=progress))
    if report is not None:
        emit(
            "downloaded",
            files=len(report.files),
            released=report.released,
            owed=report.owed,
            failed=len(report.failures),
            failures=sorted(report.failures.values())[:3],
        )
    return report


def run(rig: Rig, stop: threading.Event, seconds: float) -> None:
    """Capture and download until ``stop`` is set, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        fired = capture(rig)
        if stop.is_set():
            break
        report = download(rig)
        if not fired and (report is None or not report.files):
            stop.wait(_IDLE_S)  # nothing to do for now (no camera, disk full...): a short pause


def drain(rig: Rig, seconds: float, stop: threading.Event) -> int:
    """Download until the dataset owes nothing; 0 if so within ``seconds``, else 1."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while not stop.is_set():
        rounds += 1
        download(rig)
        owed = rig.dataset.owed()
        if not owed:
            emit("drained", owed=0, rounds=rounds)
            return 0
        if time.monotonic() >= deadline:
            break
        stop.wait(1.0)  # what is still owed waits for a node, or for its grace period to pass
    owed = rig.dataset.owed()
    emit(
        "drained",
        owed=len(owed),
        rounds=rounds,
        left=[f"{s.camera} d{s.capture_no} {s.status} {s.reason}" for s in owed[:10]],
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the soak's controller (see the module documentation)."""
    parser = argparse.ArgumentParser(prog="python -m soak.controller")
    parser.add_argument("--registry", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--cameras", type=int, required=True, help="cameras to wait for at the start")
    parser.add_argument("--wait", type=float, default=60.0, help="longest wait for them, seconds")
    parser.add_argument("--drain", type=float, default=None, help="only download, for at most S seconds")
    parser.add_argument("--seconds", type=float, default=3600.0, help="capture for at most S seconds")
    args = parser.parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Rig(args.registry, dataset=args.dataset, limits=LIMITS, health_interval=0.5) as rig:
        rig.on_event(
            lambda e: (
                emit("cameras", n=len(rig.cameras()))
                if e.kind in ("camera_added", "camera_removed")
                else None
            )
        )
        rig.wait_for_cameras(args.cameras, args.wait)
        emit("ready", cameras=len(rig.cameras()))
        if args.drain is not None:
            return drain(rig, args.drain, stop)
        run(rig, stop, args.seconds)
    emit("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
