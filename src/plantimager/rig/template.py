"""File names of a dataset's images: a ``str.format`` template, checked before anything is captured.

The default gives PEPI's names, ``id{server_id}_d{capture_no}_cam{camera_no}.jpeg``. A template may use
the fields below, with format specs (``{capture_no:04d}``) but no attribute or index access:

============  =====================================================================================
field         value
============  =====================================================================================
server_id     the node's name in the registry (a node registers under its hardware id by default)
node_id       what the node's ``identify()`` returns (Pi CPU serial, machine id...)
capture_no    the capture number in the dataset: 1, 2, 3... never reused
camera_no     the camera's index on its node (0, 1...)
camera        the camera's name on its node (``cam0``...)
ext           ``jpeg`` or ``png``, as the camera encodes
============  =====================================================================================

A rendered name must be a plain file name that stays inside the dataset folder: no path separator,
no ``..``, not hidden (no leading ``.``), no control character, at most 255 bytes. A template is also
refused when it would give two different captures, or two cameras, the same name.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping
from typing import Any

from plantimager.commons.errors import ValidationError

__all__ = ["DEFAULT_TEMPLATE", "FIELDS", "RESERVED_NAMES", "NameTemplate", "check_file_name"]

logger = logging.getLogger(__name__)

#: PEPI's image names.
DEFAULT_TEMPLATE = "id{server_id}_d{capture_no}_cam{camera_no}.{ext}"
#: Fields a template may use.
FIELDS = ("server_id", "node_id", "capture_no", "camera_no", "camera", "ext")
#: Names a rendered file name may not take: the dataset's own files.
RESERVED_NAMES = frozenset({"manifest.json"})
#: Longest template accepted, in characters.
MAX_TEMPLATE_LENGTH = 512
_MAX_NAME_BYTES = 255

# Two sets of sample values per field, used to check that a template tells images apart.
_SAMPLE: dict[str, Any] = {
    "server_id": "0000000079b7fd52",
    "node_id": "0000000079b7fd52",
    "capture_no": 1,
    "camera_no": 0,
    "camera": "cam0",
    "ext": "jpeg",
}
_DISTINCT: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("captures", {"capture_no": 2}, "{capture_no}"),
    ("cameras of a node", {"camera_no": 1, "camera": "cam1"}, "{camera_no} or {camera}"),
    ("nodes", {"server_id": "00000000a1b2c3d4", "node_id": "00000000a1b2c3d4"}, "{server_id}"),
)


def check_file_name(name: str, *, what: str = "file name") -> str:
    """Return ``name`` if it is a plain file name that stays inside its folder.

    Parameters
    ----------
    name : str
        The candidate, e.g. a rendered template.
    what : str
        How to call it in error messages.

    Returns
    -------
    str
        ``name``, unchanged.

    Raises
    ------
    ValidationError
        If ``name`` is empty, longer than 255 bytes, holds a path separator, ``..``, a control
        character, starts with ``.`` or is one of the dataset's own file names.
    """
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{what} {name!r} is empty or not text")
    problem = ""
    if "/" in name or "\\" in name:
        problem = "contains a path separator: images are stored directly in the dataset folder"
    elif ".." in name:
        problem = "contains '..': a file name may not lead out of the dataset folder"
    elif name.startswith("."):
        problem = "starts with '.': hidden names are reserved for the dataset's own files"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        problem = "contains a control character"
    elif len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        problem = f"is longer than {_MAX_NAME_BYTES} bytes"
    elif name in RESERVED_NAMES:
        problem = "is reserved for the dataset's manifest"
    if problem:
        raise ValidationError(f"{what} {name!r} {problem}")
    return name


class NameTemplate:
    """A validated file-name template.

    Parameters
    ----------
    text : str
        The template, e.g. ``"id{server_id}_d{capture_no}_cam{camera_no}.{ext}"``.

    Raises
    ------
    ValidationError
        If the template uses an unknown field, attribute or index access, a conversion or nested
        field, cannot be formatted, renders a name that is not a plain file name (see
        :func:`check_file_name`), or gives different captures, cameras or nodes the same name.

    Examples
    --------
    >>> template = NameTemplate()
    >>> template.render(server_id="n1", node_id="ab", capture_no=3, camera_no=1, camera="cam1", ext="png")
    'idn1_d3_cam1.png'
    """

    def __init__(self, text: str = DEFAULT_TEMPLATE) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ValidationError(f"file-name template must be a non-empty string, got {text!r}")
        if len(text) > MAX_TEMPLATE_LENGTH:
            raise ValidationError(f"file-name template is longer than {MAX_TEMPLATE_LENGTH} characters")
        self.text = text
        self.fields = self._parse(text)
        self._check_samples()

    @staticmethod
    def _parse(text: str) -> tuple[str, ...]:
        used: list[str] = []
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValidationError(f"file-name template {text!r} cannot be parsed: {exc}") from None
        for literal, field, spec, conversion in parts:
            if "/" in literal or "\\" in literal:
                raise ValidationError(
                    f"file-name template {text!r} contains a path separator: images are stored directly "
                    "in the dataset folder"
                )
            if field is None:
                continue
            if field not in FIELDS:
                shown = field or "{}"
                raise ValidationError(
                    f"file-name template {text!r} uses the unknown field {shown!r}; "
                    f"known fields: {', '.join(FIELDS)}"
                )
            if conversion is not None:
                raise ValidationError(
                    f"file-name template {text!r}: conversions such as '!{conversion}' are not allowed"
                )
            if spec and ("{" in spec or "}" in spec):
                raise ValidationError(f"file-name template {text!r}: nested fields are not allowed")
            used.append(field)
        return tuple(dict.fromkeys(used))

    def _check_samples(self) -> None:
        first = self._format(_SAMPLE)
        check_file_name(first, what=f"image name (template {self.text!r})")
        for label, change, hint in _DISTINCT:
            other = self._format({**_SAMPLE, **change})
            if other == first:
                raise ValidationError(
                    f"file-name template {self.text!r} gives different {label} the same name "
                    f"({first!r}); include {hint}"
                )

    def _format(self, values: Mapping[str, Any]) -> str:
        try:
            return self.text.format_map(dict(values))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValidationError(f"file-name template {self.text!r} cannot be formatted: {exc}") from None

    def render(
        self, *, server_id: str, node_id: str, capture_no: int, camera_no: int, camera: str, ext: str
    ) -> str:
        """Return the file name of one image.

        Raises
        ------
        ValidationError
            If the name is not a plain file name (a node name with a ``/``, say).
        """
        values = {
            "server_id": server_id,
            "node_id": node_id,
            "capture_no": capture_no,
            "camera_no": camera_no,
            "camera": camera,
            "ext": ext,
        }
        name = self._format(values)
        return check_file_name(name, what=f"image name (template {self.text!r}, camera {server_id}/{camera})")

    def __repr__(self) -> str:
        return f"NameTemplate({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NameTemplate) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)
