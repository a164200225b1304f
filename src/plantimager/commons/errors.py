"""The one exception tree of plantimager.

Every error the package raises on purpose derives from :class:`PlantImagerError`, so a caller can
catch everything of ours with one ``except`` and still tell the kinds apart.

::

    PlantImagerError
     +-- ProtocolError          a peer sent something that is not our protocol
     +-- RemoteError            the remote side ran the request and it failed (keeps its text + traceback)
     +-- RPCTimeoutError        no reply in time (also a built-in ``TimeoutError``)
     +-- InterfaceError         a name is not part of the interface / bad argument to a proxy
     +-- RegistryError          the device registry refused or could not be reached
     +-- ImageUnavailable       a capture / data code is unknown to a camera node
     +-- ValidationError        a value given by a user or peer is out of range or of the wrong kind
     +-- RigError               one or more cameras of a rig failed; lists each one and its reason
     +-- AccessDenied           the caller's key lacks the role a request needs (also a ``PermissionError``)
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "ImageUnavailable",
    "InterfaceError",
    "PlantImagerError",
    "ProtocolError",
    "RPCTimeoutError",
    "RegistryError",
    "RemoteError",
    "RigError",
    "ValidationError",
]


class PlantImagerError(Exception):
    """Base class of every error raised on purpose by plantimager."""


class ProtocolError(PlantImagerError):
    """A message did not follow the wire protocol (bad JSON, missing field, wrong type...)."""


class RemoteError(PlantImagerError):
    """The remote side handled the request and reported a failure.

    Parameters
    ----------
    error : str
        The error text sent by the remote side.
    traceback : str, optional
        The remote traceback text, possibly empty.
    """

    def __init__(self, error: str, traceback: str = "") -> None:
        # Not super(): a remote error is also an instance of the remote type (see
        # plantimager.commons.rpc.remote), whose own __init__ may want other arguments.
        Exception.__init__(self, error)
        self.error = error
        self.traceback = traceback


class RPCTimeoutError(PlantImagerError, TimeoutError):
    """No reply arrived within the allowed time. The client stays usable."""


class InterfaceError(PlantImagerError, AttributeError):
    """A member is not part of the interface, or cannot be used the way it was asked."""


class RegistryError(PlantImagerError):
    """The device registry refused a request or could not be reached."""


class ImageUnavailable(PlantImagerError, KeyError):  # noqa: N818 - name documented by PEPI
    """No capture is stored under the requested data code."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want plain text
        return str(self.args[0]) if self.args else ""


class ValidationError(PlantImagerError, ValueError):
    """A value is of the wrong kind or outside its allowed range."""


class RigError(PlantImagerError):
    """Some cameras of a rig failed; ``failures`` maps each camera name to its reason.

    Parameters
    ----------
    message : str
        A summary of what was attempted.
    failures : dict of str to str
        Camera name -> reason it failed.
    """

    def __init__(self, message: str, failures: dict[str, str]) -> None:
        lines = [message] + [f"  {name}: {reason}" for name, reason in sorted(failures.items())]
        super().__init__("\n".join(lines))
        self.failures = dict(failures)

    @staticmethod
    def failures_in(text: str) -> dict[str, str]:
        """The ``failures`` listed in the text of a RigError (its indented ``name: reason`` lines)."""
        found = {}
        for line in text.splitlines()[1:]:
            name, colon, reason = line.strip().partition(": ")
            if line.startswith("  ") and colon and name:
                found[name] = reason
        return found


class AccessDenied(PlantImagerError, PermissionError):  # noqa: N818 - reads as what happened
    """The caller's key does not have the role the request needs; nothing was done."""
