"""What runs on a turntable's host: backends (simulated), the RPC server, the runner.

The interface and its client live in :mod:`plantimager.commons.turntabledevice`;
``plantimager turntable`` serves one. See ``docs/turntable.md``.
"""

from __future__ import annotations

__all__: list[str] = []
