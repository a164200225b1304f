"""The soak's table: what was attempted, acknowledged and downloaded, what was lost, the faults."""

from __future__ import annotations

import os
import platform
import statistics
from collections import Counter
from typing import TYPE_CHECKING

from plantimager.commons.registry.link import UPSTREAM_INITIAL_WINDOW

if TYPE_CHECKING:
    from .engine import SoakResult

__all__ = ["NODE_HEARTBEAT_S", "machine", "render"]

#: A node's registry heartbeat, seconds: its alive timeout (60 s) bounded by upstream's first window, / 4.
NODE_HEARTBEAT_S = min(60.0, UPSTREAM_INITIAL_WINDOW) / 4


def machine() -> str:
    """This machine, in a few words: CPUs, architecture, kernel, Python."""
    return (
        f"{os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _seconds(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    missing = len(values) - len(got)
    if not got:
        return "-" if not values else f"never ({missing} restart(s))"
    text = f"median {statistics.median(got):.2f} s, max {max(got):.2f} s over {len(got)} restart(s)"
    return text + (f"; {missing} never" if missing else "")


def render(result: SoakResult) -> str:
    """The report of a soak: a Markdown table, then its findings and a sample of the errors seen."""
    config, found = result.config, result.audit
    rows: list[tuple[str, str]] = [
        ("seed", str(config.seed)),
        ("nodes (one camera each, dummy, " + config.resolution + ")", str(config.nodes)),
        ("faults injected for", f"{result.timings.get('chaos_s', 0):.0f} s"),
        ("whole soak (start, faults, drain, audit)", f"{result.timings.get('total_s', 0):.0f} s"),
        ("machine", machine()),
    ]
    if found is not None:
        rows += [
            ("captures begun", str(found.captures)),
            ("captures attempted (one per camera and capture)", str(found.attempted)),
            (
                "acknowledged (stored by a node)",
                f"{found.acknowledged} ({found.acknowledged_to_controller} answered to the controller)",
            ),
            ("downloaded", str(found.downloaded)),
            ("lost (must be 0)", str(len(found.lost))),
            ("duplicated (must be 0)", str(len(found.duplicated))),
            ("checksum mismatches", str(len(found.bad_checksums))),
            ("still owed after the drain", str(len(found.owed))),
            ("manifest complete", "yes" if not found.manifest_problems else "NO"),
            ("left in a node's spool", str(len(found.spool_held))),
            ("never stored (the node died or hung before storing)", str(found.never_stored)),
        ]
    kinds = Counter(o.kind for o in result.outcomes)
    for kind in ("node killed", "node hung", "registry restarted", "controller killed", "disk filled"):
        rows.append((f"faults: {kind}", str(kinds.get(kind, 0))))
    lost = [v for v in result.recoveries("rig_lost") if v is not None]
    rows += [
        (
            f"registry restart -> it lists every node again (node heartbeat {NODE_HEARTBEAT_S:g} s)",
            _seconds(result.recoveries("registry_s")),
        ),
        (
            "registry restart -> cameras the controller lost meanwhile",
            f"{sum(lost):.0f} over {len(lost)} restart(s)" if lost else "-",
        ),
        ("registry restart -> the controller has every camera again", _seconds(result.recoveries("rig_s"))),
        (
            "controller cycles (captures / downloads)",
            f"{result.cycles.get('capture', 0)} / {result.cycles.get('downloaded', 0)}",
        ),
        ("operations that failed whole (expected under faults)", str(sum(result.errors.values()))),
        ("verdict", "PASS" if result.ok else "FAIL"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    problems = dict(found.problems) if found is not None else {"audit": ["not run"]}
    if result.findings:
        problems["findings"] = result.findings
    for name, items in problems.items():
        lines.append(f"\n{name}:")
        lines += [f"  - {item}" for item in items[:20]]
    if result.errors:
        lines.append("\noperations that failed whole, by kind: " + dict(result.errors).__repr__())
        lines += [f"  e.g. {text}" for text in result.sample_errors]
    return "\n".join(lines)
