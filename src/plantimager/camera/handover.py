"""The members of a camera node by which the controller collects its captures: retrieve, release, pending.

Captures wait in the node's :class:`~plantimager.camera.spool.Spool` until the controller has them
safely: retrieving never deletes, and a release is the only way anything is deleted. A release names
one capture (``release``) or many (``release_many``, one fsync for all of them on the node).
:class:`HandoverMembers` gathers them for :class:`~plantimager.camera.node.CameraNodeServer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plantimager.commons.errors import ImageUnavailable, ValidationError
from plantimager.commons.RPC import RPCServer

from .capture import collect_stills
from .names import validate_name
from .slot import CameraSlot
from .spool import Spool

__all__ = ["HandoverMembers"]


class HandoverMembers:
    """Retrieval and release of stored captures, for a camera node.

    A mixin: the node provides ``spool`` and ``slots``, and ``slot_at(index)`` (see
    :class:`~plantimager.camera.percamera.PerCameraMembers`).
    """

    spool: Spool
    slots: list[CameraSlot]
    slot_at: Callable[[Any], CameraSlot]

    def _index_of(self, data_code: str, name: str) -> int:
        for slot in self.slots:
            if slot.name == name:
                return slot.index
        index = self.spool.get(data_code, name).meta.get("camera_index")
        return index if isinstance(index, int) else -1

    @RPCServer.register_method_buffer(timeout=60_000)
    def retrieve_stills_jpg(self, data_code: str) -> tuple[memoryview, dict]:
        """The stored images of ``data_code`` as JPEG files, camera after camera (see ``split_stills``).

        Images stored as PNG are converted; the stored files are left untouched. Nothing is deleted.

        Raises
        ------
        ImageUnavailable
            If nothing is stored under ``data_code``.
        """
        return self._retrieve_all(data_code, "jpeg")

    @RPCServer.register_method_buffer(timeout=60_000)
    def retrieve_stills_png(self, data_code: str) -> tuple[memoryview, dict]:
        """As :meth:`retrieve_stills_jpg`, as PNG files."""
        return self._retrieve_all(data_code, "png")

    def _retrieve_all(self, data_code: str, target: str) -> tuple[memoryview, dict]:
        validate_name(data_code, kind="data code")
        data, info = collect_stills(self.spool, data_code, target)
        info["cameras"] = [self._index_of(data_code, name) for name in info["names"]]
        return memoryview(data), info

    @RPCServer.register_method_buffer(timeout=60_000)
    def retrieve_still(self, data_code: str, camera: int = 0) -> tuple[memoryview, dict]:
        """One stored image, exactly as stored, with its metadata; nothing is deleted.

        The bytes are sent straight from a memory map of the stored file.

        Returns
        -------
        tuple of (memoryview, dict)
            The file, and its metadata (``format``, ``size``, ``sha256``, capture times...).

        Raises
        ------
        ImageUnavailable
            If that camera has nothing stored under ``data_code``.
        """
        validate_name(data_code, kind="data code")
        slot = self.slot_at(camera)
        capture = self.spool.get(data_code, slot.name)
        view = self.spool.read(data_code, slot.name)
        if len(view) != capture.size:  # replaced between get and read: describe what is sent
            capture = self.spool.get(data_code, slot.name)
        return view, {**capture.meta, "format": capture.meta.get("encoding", capture.meta.get("ext"))}

    @RPCServer.register_method_json
    def release(self, data_code: str, cameras: list[int] | None = None) -> int:
        """Delete stored captures the controller has safely received; the only way they are deleted.

        Parameters
        ----------
        data_code : str
            The capture to release.
        cameras : list of int, optional
            Release only these cameras' images; None releases them all.

        Returns
        -------
        int
            How many images were deleted.

        Raises
        ------
        ImageUnavailable
            If nothing (or nothing from a listed camera) is stored under ``data_code``; then nothing
            is deleted.
        """
        validate_name(data_code, kind="data code")
        names = None if cameras is None else [self.slot_at(i).name for i in cameras]
        return self.spool.release(data_code, names)

    @RPCServer.register_method_json
    def release_many(self, captures: dict[str, list[int] | None]) -> dict[str, Any]:
        """Take many stored captures out of the spool in one call (see ``CameraNode.release_many``).

        The captures are gone when this answers; their files are deleted right after, and all of
        it made durable within a second with one fsync (:mod:`~plantimager.camera.spoolrelease`).
        What is not stored is reported, not refused, so a release retried after a lost answer
        does no harm.

        Parameters
        ----------
        captures : dict of str to (list of int or None)
            For each data code, the indices of the cameras to release (None: every camera).

        Returns
        -------
        dict
            ``released`` (images taken out) and ``missing``: for each data code where something
            asked for is not stored, those camera indices, or None when nothing is stored there.

        Raises
        ------
        ValidationError
            If ``captures`` is not such a mapping, or names a bad data code or an unknown camera
            index; then nothing is deleted.
        """
        if not isinstance(captures, dict):
            raise ValidationError(
                f"captures must map data codes to lists of camera indices, got {type(captures).__name__}"
            )
        names: dict[str, list[str] | None] = {}
        index_of: dict[str, int] = {}
        for code, cameras in captures.items():
            if cameras is None:
                names[code] = None
                continue
            if not isinstance(cameras, list):
                raise ValidationError(
                    f"the cameras of data code {code!r} must be a list of camera indices, "
                    f"not {type(cameras).__name__}"
                )
            slots = [self.slot_at(index) for index in cameras]
            names[code] = [slot.name for slot in slots]
            index_of.update((slot.name, slot.index) for slot in slots)
        done = self.spool.release_many(names)
        missing = {
            code: None if absent is None else [index_of[name] for name in absent]
            for code, absent in done.missing.items()
        }
        return {"released": done.released, "missing": missing}

    @RPCServer.register_method_json(role="viewer")
    def pending(self) -> dict[str, list[int]]:
        """Data codes still stored, oldest first, with the camera indices stored under each."""
        out: dict[str, list[int]] = {}
        for code, names in self.spool.pending().items():
            try:
                out[code] = [self._index_of(code, name) for name in names]
            except ImageUnavailable:  # released meanwhile
                continue
        return out
