"""Choosing nodes and cameras by name, and running one call on many nodes at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from typing import Any

from plantimager.commons.errors import PlantImagerError, RigError, ValidationError

from .node import RigNode, describe_error
from .record import CameraInfo
from .roster import Roster

__all__ = ["configure_nodes", "fan_out", "node_statuses", "select_cameras", "shutdown_nodes"]


def select_cameras(
    known: Sequence[CameraInfo], cameras: Iterable[str] | str | None, registry_url: str
) -> dict[str, set[str]]:
    """Return node name -> the camera keys wanted on it, for camera or node names (None: all cameras).

    Raises
    ------
    PlantImagerError
        If the rig has no camera at all (``registry_url`` is named).
    ValidationError
        If no name is given, or a name is neither a camera nor a node of the rig.
    """
    if not known:
        raise PlantImagerError(f"the rig has no camera: no camera node is registered with {registry_url}")
    wanted: dict[str, set[str]] = {}
    if cameras is None:
        for cam in known:
            wanted.setdefault(cam.node, set()).add(cam.key)
        return wanted
    names = [cameras] if isinstance(cameras, str) else list(cameras)
    if not names:
        raise ValidationError("no camera given (pass None to capture them all)")
    unknown = []
    for name in names:
        matches = [cam for cam in known if name in (cam.key, cam.node)]
        if not matches:
            unknown.append(name)
        for cam in matches:
            wanted.setdefault(cam.node, set()).add(cam.key)
    if unknown:
        listing = ", ".join(cam.key for cam in known[:20]) + (", ..." if len(known) > 20 else "")
        raise ValidationError(f"unknown camera(s): {', '.join(map(repr, unknown))}; the rig has: {listing}")
    return wanted


def fan_out(
    roster: Roster, executor: Executor, targets: Mapping[str, Any], call: Callable[[RigNode, Any], Any]
) -> dict[str, tuple[RigNode | None, Any]]:
    """Run ``call(node, argument)`` on every target node in parallel.

    Parameters
    ----------
    roster : Roster
        Where the nodes are looked up by name.
    executor : concurrent.futures.Executor
        Runs the calls.
    targets : mapping of str to object
        Node name -> the argument of its call.
    call : callable
        ``call(node, argument)``.

    Returns
    -------
    dict of str to (RigNode or None, object)
        Node name -> (the node, its call's result or the exception it raised); a node that is not
        connected gets ``(None, PlantImagerError)``.
    """
    futures: dict[str, tuple[RigNode | None, Future[Any] | None]] = {}
    for name, argument in targets.items():
        node = roster.node(name)
        futures[name] = (node, None if node is None else executor.submit(call, node, argument))
    out: dict[str, tuple[RigNode | None, Any]] = {}
    for name, (node, future) in futures.items():
        if future is None:
            out[name] = (None, PlantImagerError(f"node {name} is not connected"))
            continue
        try:
            out[name] = (node, future.result())
        except Exception as exc:
            out[name] = (node, exc)
    return out


def configure_nodes(
    roster: Roster, executor: Executor, targets: Mapping[str, int | None], settings: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Apply ``settings`` on every target node (name -> camera index, None: all its cameras).

    Returns rig-wide camera name -> the settings now in force. Raises :class:`RigError` naming
    each camera not configured, its ``result`` attribute holding those that were.
    """

    def apply(node: RigNode, index: int | None) -> list[dict[str, Any]]:
        result = node.call("configure", settings, index)
        node.update_cameras(result)
        return result

    out: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for name, (node, outcome) in fan_out(roster, executor, targets, apply).items():
        if isinstance(outcome, BaseException):
            cameras = node.cameras() if node is not None else []
            keys = [c.key for c in cameras if targets[name] is None or c.index == targets[name]] or [name]
            failures.update(dict.fromkeys(keys, describe_error(outcome)))
            continue
        for item in outcome:
            out[f"{name}/{item.get('name')}"] = item
    if failures:
        error = RigError(f"configure: {len(failures)} camera(s) were not configured", failures)
        error.result = out  # type: ignore[attr-defined]
        raise error
    return out


def shutdown_nodes(roster: Roster, executor: Executor, names: Iterable[str]) -> list[str]:
    """Ask each named node to stop; returns the sorted names of those that agreed.

    Raises :class:`RigError` naming the nodes that did not answer, its ``result`` attribute
    holding those that agreed.
    """
    done, failures = [], {}
    targets = dict.fromkeys(names)
    for name, (_node, outcome) in fan_out(
        roster, executor, targets, lambda node, _: node.call("shutdown")
    ).items():
        if isinstance(outcome, BaseException):
            failures[name] = describe_error(outcome)
        else:
            done.append(name)
    if failures:
        error = RigError(f"shutdown: {len(failures)} node(s) did not answer", failures)
        error.result = sorted(done)  # type: ignore[attr-defined]
        raise error
    return sorted(done)


def node_statuses(roster: Roster, executor: Executor) -> dict[str, dict[str, Any]]:
    """Each node's info (see :class:`~.record.NodeInfo`) with its ``status()``, or the ``error``.

    The clock offset each node reports is noted on the way (see ``RigNode.note_clock``).
    """
    targets = {name: None for name in roster.ready_nodes()}
    outcomes = fan_out(roster, executor, targets, lambda node, _: node.call("status", timed=True))
    for node, outcome in outcomes.values():
        if node is not None and isinstance(outcome, dict):
            node.note_clock(outcome.get("clock_offset_ms"))
    infos = {info.name: info.as_dict() for info in roster.nodes()}
    for name, (_node, outcome) in outcomes.items():
        info = infos.setdefault(name, {"name": name, "state": "gone"})
        if isinstance(outcome, BaseException):
            info["error"] = describe_error(outcome)
        else:
            info["status"] = outcome
    return infos
