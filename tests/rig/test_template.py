"""File-name templates: PEPI's names by default, anything else checked before use."""

from __future__ import annotations

import pytest

from plantimager.commons.errors import ValidationError
from plantimager.rig import DEFAULT_TEMPLATE, NameTemplate
from plantimager.rig.template import check_file_name

VALUES = {
    "server_id": "0000000079b7fd52",
    "node_id": "ab",
    "capture_no": 70,
    "camera_no": 0,
    "camera": "cam0",
}


def test_default_names_are_pepis():
    assert DEFAULT_TEMPLATE == "id{server_id}_d{capture_no}_cam{camera_no}.{ext}"
    assert NameTemplate().render(**VALUES, ext="jpeg") == "id0000000079b7fd52_d70_cam0.jpeg"
    assert NameTemplate().render(**VALUES, ext="png") == "id0000000079b7fd52_d70_cam0.png"


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("{capture_no:05d}_{server_id}_{camera}.{ext}", "00070_0000000079b7fd52_cam0.jpeg"),
        (
            "plante é {node_id} {server_id} {capture_no} {camera_no}.{ext}",
            "plante é ab 0000000079b7fd52 70 0.jpeg",
        ),
        ("{server_id}{capture_no}x{camera_no}", "0000000079b7fd5270x0"),
    ],
)
def test_custom_templates(template, name):
    assert NameTemplate(template).render(**VALUES, ext="jpeg") == name


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("", "non-empty"),
        ("{0}{capture_no}{camera_no}{server_id}", "unknown field '0'"),
        ("{}{capture_no}{camera_no}{server_id}", "unknown field '{}'"),
        ("{server_id[0]}{capture_no}{camera_no}", "unknown field"),
        ("{server_id!r}{capture_no}{camera_no}", "conversions"),
        ("{server_id:{camera}}{capture_no}{camera_no}", "nested fields"),
        ("{server_id}{capture_no{camera_no}", "cannot be parsed"),
        ("{server_id}_{camera_no}.{ext}", "gives different captures the same name"),
        ("{capture_no}_{camera_no}.{ext}", "gives different nodes the same name"),
        ("a\\{server_id}{capture_no}{camera_no}", "path separator"),
        ("{server_id}{capture_no}{camera_no}\t", "control character"),
        ("x" * 300 + "{server_id}{capture_no}{camera_no}", "longer than 255 bytes"),
    ],
)
def test_bad_templates_are_refused_with_the_reason(template, message):
    with pytest.raises(ValidationError, match=message):
        NameTemplate(template)


def test_rendering_refuses_values_that_would_leave_the_folder():
    template = NameTemplate()
    with pytest.raises(ValidationError, match="path separator"):
        template.render(**{**VALUES, "server_id": "a/b"}, ext="jpeg")
    with pytest.raises(ValidationError, match=r"contains '\.\.'"):
        template.render(**{**VALUES, "server_id": ".."}, ext="jpeg")
    for bad in ("", ".hidden", "..", "a/b", "manifest.json"):
        with pytest.raises(ValidationError):
            check_file_name(bad)
    assert check_file_name("idX_d1_cam0.jpeg") == "idX_d1_cam0.jpeg"
