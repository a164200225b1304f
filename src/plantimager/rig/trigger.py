"""Firing a capture: every chosen node gets the same instant ``t0``, all at once.

The shots are recorded in the dataset before anything is sent; the capture command then goes to
every node in parallel (one thread per node, each with the node's own client), and each node fires
all its cameras at ``t0``. What the nodes answer (each camera's actual capture time, size, checksum
and settings) is recorded, the skew computed, and the lead of the next capture adjusted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any

from plantimager.commons.errors import RigError
from plantimager.commons.number import finite

from .dataset import Dataset
from .node import RigNode, describe_error, is_connection_error
from .record import CaptureRecord, Shot
from .shot import ShotPlan, ShotState, extension_for
from .timing import LeadPolicy, clock_flag, skew_ms

__all__ = ["FRESH_S", "STRAGGLER_FACTOR", "Trigger"]

logger = logging.getLogger(__name__)

#: A node silent for longer than this is pinged before a capture, seconds.
FRESH_S = 1.0
#: With a straggler wait, a node that has not answered a capture this many times as long as the
#: latest answer took (and at least the straggler wait) is taken as hung.
STRAGGLER_FACTOR = 2.0
_SETTING_KEYS = ("resolution", "encoding", "quality", "rotation", "controls")


class Trigger:
    """Fires captures on camera nodes and records them.

    Parameters
    ----------
    executor : concurrent.futures.Executor
        Runs one call per node (it needs at least as many threads as there are nodes to fire
        them all at once).
    lead : LeadPolicy
        Picks how far ahead ``t0`` lies, and learns from each capture.
    straggler_s : float or None
        Once some nodes answered a capture, how long a node that has not may still take (at least;
        longer if the others took longer, see :data:`STRAGGLER_FACTOR`) before it is taken as hung,
        seconds: its images stay owed, and it is not waited for until it answers again. None waits
        for every node up to its own time limit.
    """

    def __init__(self, executor: Executor, lead: LeadPolicy, straggler_s: float | None = None) -> None:
        self.executor = executor
        self.lead = lead
        self.straggler_s = straggler_s

    def capture(
        self,
        dataset: Dataset,
        nodes: Mapping[str, RigNode],
        wanted: Mapping[str, set[str]],
        position: Mapping[str, Any] | None = None,
        on_instant: Callable[[float], Any] | None = None,
        absent: Mapping[str, str] | None = None,
    ) -> CaptureRecord:
        """Fire every camera of ``nodes`` at one instant; record and return the capture.

        Parameters
        ----------
        dataset : Dataset
            Where the capture is recorded.
        nodes : mapping
            Node name -> node to fire.
        wanted : mapping
            Node name -> the camera keys wanted on it (the others are released at once).
        position : mapping, optional
            Where the object stood, recorded with the capture.
        on_instant : callable, optional
            Called with ``t0`` (wall clock, seconds) once it is chosen, before any node is told.
        absent : mapping, optional
            Node name -> why, for nodes that should have fired but are not connected: reported
            among the failures.

        Raises
        ------
        ValidationError
            If the dataset refuses the file names (nothing is fired).
        RigError
            If some cameras did not capture; its ``record`` attribute holds the CaptureRecord.
        """
        reasons = self._preflight(nodes)
        plans = [
            ShotPlan(
                cam.key,
                cam.node,
                cam.node_id,
                cam.index,
                cam.name,
                extension_for(cam.encoding),
                cam.key in wanted.get(name, ()),
            )
            for name, node in nodes.items()
            for cam in node.cameras()
        ]
        shots = dataset.begin_capture(plans, position=position)
        return self._fire(dataset, nodes, reasons, shots, on_instant, absent or {})

    def _preflight(self, nodes: Mapping[str, RigNode]) -> dict[str, str]:
        """Ping the nodes not heard from lately; name -> why it cannot fire (absent when it can).

        A node that stopped answering a call still under way (a capture it was taken as hung in)
        is not waited for: the rig notices when it answers again.
        """
        now = time.monotonic()
        reasons = {
            name: f"unreachable: {node.error or 'it stopped answering'}"
            for name, node in nodes.items()
            if node.state == "unreachable" and node.busy
        }
        pings: dict[str, Future[Any]] = {
            name: self.executor.submit(node.call, "ping", timed=True)
            for name, node in nodes.items()
            if name not in reasons and (node.state != "ready" or now - node.last_contact > FRESH_S)
        }
        for name, future in pings.items():
            try:
                future.result()
            except Exception as exc:
                reasons[name] = f"not answering before the capture: {describe_error(exc)}"
        return reasons

    def _fire(
        self,
        dataset: Dataset,
        nodes: Mapping[str, RigNode],
        reasons: Mapping[str, str],
        shots: list[ShotState],
        on_instant: Callable[[float], Any] | None,
        absent: Mapping[str, str],
    ) -> CaptureRecord:
        capture_no, data_code = shots[0].capture_no, shots[0].data_code
        by_camera = {shot.camera: shot for shot in shots}
        live = {name: node for name, node in nodes.items() if name not in reasons}
        lead = self.lead.lead(
            [node.round_trips.worst() for node in live.values()],
            len(live),
            usual=[node.round_trips.median() for node in live.values()],
        )
        t0 = time.time() + lead
        if on_instant is not None:
            on_instant(t0)
        decided = time.perf_counter()
        futures = {
            name: self.executor.submit(self._send, node, data_code, t0, decided)
            for name, node in live.items()
        }
        hung = self._wait(futures, decided)
        results: dict[str, dict[str, Any]] = {}
        failures: dict[str, str] = {}
        unknown: dict[str, str] = {}
        clocks: dict[str, float | None] = {}
        dispatch = 0.0
        arrival: float | None = None  # from choosing t0 until the last node was ready to fire
        for name in nodes:
            keys = [shot.camera for shot in shots if shot.node == name]
            if name in reasons:
                failures.update(dict.fromkeys(keys, reasons[name]))
                continue
            if name in hung:
                # It may have fired all the same, so its images stay owed.
                unknown.update(dict.fromkeys(keys, hung[name]))
                nodes[name].mark_unreachable(f"start_capture: {hung[name]}")
                continue
            try:
                sent_after, answer = futures[name].result()
                dispatch = max(dispatch, sent_after)
            except Exception as exc:
                text = f"start_capture: {describe_error(exc)}"
                # No answer: the node may have fired all the same, so its images stay owed.
                (unknown if is_connection_error(exc) else failures).update(dict.fromkeys(keys, text))
                continue
            ready = finite(answer.get("ready_at"))
            if ready is not None:
                arrival = max(arrival if arrival is not None else 0.0, ready - (t0 - lead))
            clocks[name] = finite(answer.get("clock_offset_ms"))
            nodes[name].note_clock(clocks[name])
            for meta in answer.get("cameras", []):
                results[f"{name}/{meta.get('camera')}"] = {**meta, "clock_offset_ms": clocks[name]}
            for camera, text in (answer.get("failures") or {}).items():
                failures[f"{name}/{camera}"] = str(text)
            for key in keys:
                if key not in results and key not in failures:
                    failures[key] = "the node's answer does not mention this camera"
        results = {key: meta for key, meta in results.items() if key in by_camera}
        failures = {key: text for key, text in failures.items() if key in by_camera}
        wanted = {key: meta for key, meta in results.items() if by_camera[key].wanted}
        skew = skew_ms(int(meta["captured_ns"]) for meta in wanted.values() if "captured_ns" in meta)
        files = dataset.finish_capture(
            capture_no,
            t0=t0,
            lead_ms=round(lead * 1e3, 3),
            results=results,
            failures=failures,
            unknown=unknown,
            skew_ms=skew,
        )
        late = [int(m["captured_ns"]) / 1e9 - t0 for m in results.values() if "captured_ns" in m]
        self.lead.observe(late, dispatch, lead, arrival)
        extra = [by_camera[key] for key in results if not by_camera[key].wanted]
        self._release_unwanted(dataset, live, data_code, extra)
        reported = {k: v for k, v in {**failures, **unknown}.items() if by_camera[k].wanted} | dict(absent)
        taken = sorted(
            (
                self._shot(by_camera[key], meta, files.get(key, by_camera[key].file), t0)
                for key, meta in wanted.items()
            ),
            key=lambda shot: (shot.node, shot.camera_index),
        )
        dataset.flush(strict=False)  # the capture is in the ledger: a manifest not written is only logged
        flags = {name: flag for name, offset in clocks.items() if (flag := clock_flag(offset))}
        record = CaptureRecord(
            capture_no,
            data_code,
            dataset.root,
            t0,
            round(lead * 1e3, 3),
            tuple(taken),
            reported,
            skew,
            clock_offsets_ms=clocks,
            clock_flags=flags,
        )
        if reported:
            error = RigError(f"capture {capture_no}: {len(reported)} camera(s) did not capture", reported)
            error.record = record  # type: ignore[attr-defined]
            raise error
        return record

    def _wait(self, futures: Mapping[str, Future[Any]], sent: float) -> dict[str, str]:
        """Wait for the nodes' answers; return name -> why, for the nodes taken as hung.

        Once some nodes answered, the others get :attr:`straggler_s`, or :data:`STRAGGLER_FACTOR`
        times as long as the latest answer took if that is longer. Their calls go on (each ends at
        its own time limit) but nothing waits for them. Without a straggler wait, every call is
        waited for until it ends.
        """
        if self.straggler_s is None:
            wait(futures.values())
            return {}
        names = {future: name for name, future in futures.items()}
        waiting = set(names)
        latest: float | None = None
        while waiting:
            timeout = None
            if latest is not None:
                allowed = max(self.straggler_s, STRAGGLER_FACTOR * latest)
                timeout = max(0.0, sent + allowed - time.perf_counter())
            done, waiting = wait(waiting, timeout=timeout, return_when=FIRST_COMPLETED)
            if not done:
                break
            latest = time.perf_counter() - sent
        if not waiting:
            return {}
        reason = (
            f"no answer {time.perf_counter() - sent:.1f} s after the capture was sent, while the "
            f"other nodes answered within {latest or 0.0:.1f} s; taken as hung"
        )
        return {names[future]: reason for future in waiting}

    @staticmethod
    def _send(node: RigNode, data_code: str, t0: float, decided: float) -> tuple[float, dict[str, Any]]:
        sent_after = time.perf_counter() - decided
        return sent_after, node.call("start_capture", data_code, t0)

    @staticmethod
    def _shot(shot: ShotState, meta: Mapping[str, Any], file: str, t0: float) -> Shot:
        captured = float(meta.get("captured_at", 0.0))
        return Shot(
            camera=shot.camera,
            node=shot.node,
            node_id=shot.node_id,
            camera_index=shot.camera_index,
            file=file,
            captured_at=captured,
            offset_ms=round((captured - t0) * 1e3, 4),
            size=int(meta.get("size", 0)),
            sha256=str(meta.get("sha256", "")),
            settings={key: meta.get(key) for key in _SETTING_KEYS},
            clock_offset_ms=meta.get("clock_offset_ms"),
        )

    @staticmethod
    def _release_unwanted(
        dataset: Dataset, live: Mapping[str, RigNode], data_code: str, shots: list[ShotState]
    ) -> None:
        """Release the images of cameras that fired only because they share a node with a chosen one."""
        by_node: dict[str, list[ShotState]] = {}
        for shot in shots:
            by_node.setdefault(shot.node, []).append(shot)
        for name, items in by_node.items():
            try:
                live[name].call("release", data_code, [shot.camera_index for shot in items])
                dataset.mark_released(*items)
            except Exception as exc:  # the next download releases them (or finds them gone)
                logger.warning("node %s: could not release the extra images of %s: %s", name, data_code, exc)
