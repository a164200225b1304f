"""Tests of the name rule for data codes and camera names."""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantimager.camera.names import MAX_NAME_LENGTH, validate_name
from plantimager.commons.errors import ValidationError

ALLOWED = string.ascii_letters + string.digits + "._-"
valid_names = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")


@pytest.mark.parametrize(
    "name", ["1", "cam0", "0042", "run_2024-05-01.a", "_x", "a..b", "A" * MAX_NAME_LENGTH]
)
def test_accepts_plain_names(name: str) -> None:
    assert validate_name(name, kind="data code") is name


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        (".", "not starting with '.'"),
        ("..", "not starting with '.'"),
        (".hidden", "not starting with '.'"),
        ("-rf", "or '-'"),
        ("a/b", "'a/b'"),
        ("../etc", "'../etc'"),
        ("a\\b", "must be 1 to 128 characters"),
        ("a b", "must be"),
        ("a\x00b", "must be"),
        ("caméra", "must be"),
        ("x\n", "must be"),
        ("A" * (MAX_NAME_LENGTH + 1), "129 characters is longer than 128"),
    ],
)
def test_refuses_bad_strings_with_clear_message(value: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_name(value, kind="data code")
    message = str(info.value)
    assert message.startswith("invalid data code")
    assert fragment in message
    assert "A-Z, a-z, 0-9" in message  # the rule is always spelled out


@pytest.mark.parametrize("value", [None, 5, 1.5, b"cam0", ["cam0"], Path("cam0")])
def test_refuses_non_str(value: object) -> None:
    with pytest.raises(ValidationError, match=r"invalid camera name .*must be a str, not"):
        validate_name(value, kind="camera name")


def test_huge_value_is_shown_truncated() -> None:
    value = "x/" * 5000
    with pytest.raises(ValidationError) as info:
        validate_name(value, kind="data code")
    message = str(info.value)
    assert len(message) < 400
    assert "(10000 characters)" in message
    assert "'x/x/" in message


def test_huge_non_str_is_shown_truncated() -> None:
    with pytest.raises(ValidationError) as info:
        validate_name(list(range(10_000)), kind="camera name")
    assert len(str(info.value)) < 400
    assert "truncated" in str(info.value)


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_name("..", kind="data code")


@given(valid_names)
def test_every_name_of_the_documented_shape_is_accepted(name: str) -> None:
    assert validate_name(name, kind="camera name") == name


@given(st.one_of(st.text(max_size=200), st.text(alphabet=ALLOWED + "/\\:\x00 ", max_size=140)))
def test_accepted_names_stay_inside_their_directory(value: str) -> None:
    try:
        name = validate_name(value, kind="data code")
    except ValidationError:
        # Refused values must break the documented rule.
        assert not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", value)
        return
    base = Path("/srv/spool")
    joined = base / name
    assert joined.parent == base
    assert os.path.normpath(joined) == str(joined)
    assert Path(os.path.normpath(joined)).parent == base
    assert joined.name == name
