"""Tests of plantimager.commons.rpc.typecheck.

The first two groups port the upstream plantimager checks and coercions (they describe behaviour we
keep); the next groups cover the stricter rules; the last group holds property-based tests.
"""

from __future__ import annotations

import collections
import enum
import math
import typing
from collections import abc
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Literal, Optional, TypeVar, Union

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantimager.commons.rpc.typecheck import MAX_SPEC_DEPTH, coerce_to_generic, is_instance_of_generic


class CameraMode(enum.StrEnum):
    VIDEO = "VIDEO"
    STILL = "STILL"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"
    ORIGIN = (0, 0)


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


class Celsius:
    """A class built from one value, as an RPC spec may declare."""

    def __init__(self, degrees: Any) -> None:
        self.degrees = float(degrees)


class Box:
    """A class that wraps any value, None included."""

    def __init__(self, content: Any) -> None:
        self.content = content


class Impostor:
    """A class whose constructor hands back something else."""

    def __new__(cls, value: Any) -> Any:
        return str(value)


class Strict:
    """A class whose constructor refuses negative values."""

    def __init__(self, amount: int) -> None:
        if amount < 0:
            raise ValueError("negative amount")
        self.amount = amount


def nested_list_spec(levels: int) -> Any:
    spec: Any = int
    for _ in range(levels):
        spec = list[spec]
    return spec


def nested_list_value(levels: int, leaf: Any = 1) -> Any:
    value: Any = leaf
    for _ in range(levels):
        value = [value]
    return value


# --------------------------------------------------------------------------------------------------
# Upstream type-check cases
# --------------------------------------------------------------------------------------------------


def test_check_plain_types():
    assert is_instance_of_generic(5, int)
    assert is_instance_of_generic("x", str)
    assert is_instance_of_generic(1.5, float)
    assert not is_instance_of_generic("5", int)
    assert not is_instance_of_generic(5, str)
    assert is_instance_of_generic(True, int)  # plain isinstance, as upstream


@pytest.mark.parametrize("value", [None, 0, "x", [1, "a"], {"k": object()}, object()])
def test_check_any_accepts_everything(value):
    assert is_instance_of_generic(value, Any)


def test_check_list_of_int():
    assert is_instance_of_generic([], list[int])
    assert is_instance_of_generic([1, 2, 3], list[int])
    assert not is_instance_of_generic([1, "2"], list[int])
    assert not is_instance_of_generic((1, 2), list[int])


def test_check_dict_of_str_to_int():
    assert is_instance_of_generic({}, dict[str, int])
    assert is_instance_of_generic({"a": 1}, dict[str, int])
    assert not is_instance_of_generic({"a": "1"}, dict[str, int])
    assert not is_instance_of_generic({1: 1}, dict[str, int])


def test_check_fixed_tuple():
    assert is_instance_of_generic((1, "a"), typing.Tuple[int, str])  # noqa: UP006 - the typing alias on purpose
    assert is_instance_of_generic((1, "a"), tuple[int, str])
    assert not is_instance_of_generic(("a", 1), tuple[int, str])
    assert not is_instance_of_generic([1, "a"], tuple[int, str])


def test_check_variadic_tuple():
    assert is_instance_of_generic((), tuple[int, ...])
    assert is_instance_of_generic((1, 2, 3), tuple[int, ...])
    assert not is_instance_of_generic((1, "2"), tuple[int, ...])


def test_check_nested_list():
    assert is_instance_of_generic([[1], [], [2, 3]], list[list[int]])
    assert not is_instance_of_generic([[1], [2, "3"]], list[list[int]])
    assert not is_instance_of_generic([1, [2]], list[list[int]])


def test_check_union():
    assert is_instance_of_generic(1, Union[int, str])  # noqa: UP007 - the typing form on purpose
    assert is_instance_of_generic("a", int | str)
    assert not is_instance_of_generic(1.5, Union[int, str])  # noqa: UP007
    assert not is_instance_of_generic(1.5, int | str)


def test_check_set_of_int():
    assert is_instance_of_generic({1, 2}, set[int])
    assert is_instance_of_generic(set(), set[int])
    assert not is_instance_of_generic({1, "2"}, set[int])
    assert not is_instance_of_generic([1, 2], set[int])


def test_check_tuple_of_specs_is_a_union():
    assert is_instance_of_generic(1, (int, str))
    assert is_instance_of_generic("a", (int, str))
    assert is_instance_of_generic([1], (str, list[int]))
    assert not is_instance_of_generic(1.5, (int, str))
    assert not is_instance_of_generic(1, ())


# --------------------------------------------------------------------------------------------------
# Upstream coercion cases
# --------------------------------------------------------------------------------------------------


def test_coerce_any_passes_through():
    marker = object()
    assert coerce_to_generic(marker, Any) is marker
    assert coerce_to_generic(None, Any) is None


def test_coerce_simple_casts():
    assert coerce_to_generic("123", int) == 123
    assert coerce_to_generic(123, str) == "123"
    result = coerce_to_generic(1, float)
    assert result == 1.0
    assert type(result) is float


def test_coerce_invalid_int_text_raises():
    with pytest.raises(TypeError):
        coerce_to_generic("abc", int)


@pytest.mark.parametrize(
    ("value", "spec", "expected"),
    [
        ("10", int | dict, 10),
        (10, dict | str, "10"),
        ("1.5", Union[int, float], 1.5),  # noqa: UP007
    ],
)
def test_coerce_union_tries_members_in_order(value, spec, expected):
    result = coerce_to_generic(value, spec)
    assert result == expected
    assert type(result) is type(expected)


def test_coerce_fixed_tuple_from_list():
    assert coerce_to_generic(["1", 2.0], tuple[int, float]) == (1, 2.0)
    result = coerce_to_generic([10, 20], tuple[int, int])
    assert result == (10, 20)
    assert type(result) is tuple


@pytest.mark.parametrize("value", [[1], [1, 2, 3], []])
def test_coerce_fixed_tuple_length_mismatch_raises(value):
    with pytest.raises(TypeError, match="expected 2 items"):
        coerce_to_generic(value, tuple[int, int])


def test_coerce_variadic_tuple():
    assert coerce_to_generic(["1", 2, 3.0], tuple[int, ...]) == (1, 2, 3)
    assert coerce_to_generic([], tuple[int, ...]) == ()


def test_coerce_dict_converts_keys_and_values():
    assert coerce_to_generic({1: "2", "3": 4}, dict[str, int]) == {"1": 2, "3": 4}


@pytest.mark.parametrize("value", [[("a", 1)], "a", 5])
def test_coerce_dict_from_non_mapping_raises(value):
    with pytest.raises(TypeError, match="not a mapping"):
        coerce_to_generic(value, dict[str, int])


def test_coerce_list_and_set_element_casts():
    assert coerce_to_generic(["1", 2], list[int]) == [1, 2]
    assert coerce_to_generic(("1", "2"), list[int]) == [1, 2]
    result = coerce_to_generic(["1", 2, "2"], set[int])
    assert result == {1, 2}
    assert type(result) is set


def test_coerce_string_is_not_a_list_source():
    with pytest.raises(TypeError, match="text is not split"):
        coerce_to_generic("123", list[int])


def test_coerce_nested_list_of_dicts_of_tuples():
    value = ({"a": ["1", 2]}, {"b": (3, "4")})
    result = coerce_to_generic(value, list[dict[str, tuple[int, int]]])
    assert result == [{"a": (1, 2)}, {"b": (3, 4)}]
    assert type(result) is list
    assert type(result[0]["a"]) is tuple


def test_coerce_arbitrary_class_is_constructed():
    result = coerce_to_generic("21.5", Celsius)
    assert isinstance(result, Celsius)
    assert result.degrees == 21.5


# --------------------------------------------------------------------------------------------------
# Stricter checks
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [(1, 2, 3), (1,), ()])
def test_check_fixed_tuple_length_is_enforced(value):
    assert not is_instance_of_generic(value, tuple[int, int])


def test_check_literal():
    spec = Literal["a", 1, True]
    assert is_instance_of_generic("a", spec)
    assert is_instance_of_generic(1, spec)
    assert is_instance_of_generic(True, spec)
    assert not is_instance_of_generic("b", spec)
    assert not is_instance_of_generic(2, spec)


def test_check_literal_tells_bool_from_int():
    assert not is_instance_of_generic(True, Literal[1])
    assert not is_instance_of_generic(1, Literal[True])
    assert not is_instance_of_generic(0, Literal[False])
    assert not is_instance_of_generic(1.0, Literal[1])


def test_check_enum_by_isinstance():
    assert is_instance_of_generic(CameraMode.VIDEO, CameraMode)
    assert not is_instance_of_generic("VIDEO", CameraMode)
    assert is_instance_of_generic(CameraMode.STILL, str)
    assert is_instance_of_generic(Color.RED, Color)
    assert not is_instance_of_generic("r", Color)


@pytest.mark.parametrize("spec", [Optional[int], int | None, Union[None, int]])  # noqa: UP007, UP045
def test_check_optional(spec):
    assert is_instance_of_generic(None, spec)
    assert is_instance_of_generic(3, spec)
    assert not is_instance_of_generic("3", spec)


@pytest.mark.parametrize("spec", [None, type(None)])
def test_check_none_spec_matches_only_none(spec):
    assert is_instance_of_generic(None, spec)
    assert not is_instance_of_generic(0, spec)
    assert not is_instance_of_generic("", spec)


def test_check_annotated_uses_the_underlying_spec():
    spec = Annotated[list[int], "pixels"]
    assert is_instance_of_generic([1, 2], spec)
    assert not is_instance_of_generic(["1"], spec)


def test_check_abstract_generics():
    assert is_instance_of_generic((1, 2), abc.Sequence[int])
    assert not is_instance_of_generic((1, "2"), typing.Sequence[int])
    assert is_instance_of_generic(collections.OrderedDict(a=1), abc.Mapping[str, int])
    assert is_instance_of_generic(frozenset({1}), abc.Set[int])


@pytest.mark.parametrize("spec", ["int", TypeVar("T"), ClassVar[int], 3])
def test_check_unsupported_spec_raises_type_error(spec):
    with pytest.raises(TypeError, match="unsupported type spec"):
        is_instance_of_generic(1, spec)
    with pytest.raises(TypeError):
        coerce_to_generic(1, spec)


# --------------------------------------------------------------------------------------------------
# Stricter coercion
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [str, int, float, bool, list[int], dict[str, int], Celsius, CameraMode])
def test_coerce_none_is_refused(spec):
    with pytest.raises(TypeError, match="None"):
        coerce_to_generic(None, spec)


def test_coerce_none_is_not_wrapped_by_a_permissive_class():
    assert coerce_to_generic(0, Box).content == 0
    with pytest.raises(TypeError, match="admits None"):
        coerce_to_generic(None, Box)
    with pytest.raises(TypeError, match="admits None"):
        coerce_to_generic([None], list[Box])


@pytest.mark.parametrize("spec", [Optional[int], int | None, str | None, Literal[None, 1], Any, None])  # noqa: UP045
def test_coerce_none_is_kept_where_admitted(spec):
    assert coerce_to_generic(None, spec) is None


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("on", True),
        ("ON", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("NO", False),
        ("off", False),
        ("Off", False),
    ],
)
def test_coerce_text_to_bool_accepted_words(word, expected):
    assert coerce_to_generic(word, bool) is expected


@pytest.mark.parametrize(
    "word", ["", "t", "f", "y", "n", "2", "-1", "maybe", "false ", " true", "truee", "none"]
)
def test_coerce_text_to_bool_other_words_raise(word):
    with pytest.raises(TypeError):
        coerce_to_generic(word, bool)


def test_coerce_int_to_bool_only_zero_and_one():
    assert coerce_to_generic(1, bool) is True
    assert coerce_to_generic(0, bool) is False
    for value in (2, -1, 1.0, 0.0, [], {}):
        with pytest.raises(TypeError):
            coerce_to_generic(value, bool)


def test_coerce_whole_float_to_int():
    result = coerce_to_generic(3.0, int)
    assert result == 3
    assert type(result) is int
    assert coerce_to_generic(-7.0, int) == -7
    assert coerce_to_generic(Decimal("4"), int) == 4


@pytest.mark.parametrize(
    "value", [3.9, -0.5, 0.1, math.nan, math.inf, -math.inf, Decimal("3.9"), Fraction(7, 2), 1 + 2j]
)
def test_coerce_fractional_or_non_finite_to_int_raises(value):
    with pytest.raises(TypeError):
        coerce_to_generic(value, int)


def test_coerce_fraction_is_not_truncated_inside_containers():
    with pytest.raises(TypeError, match="item 1"):
        coerce_to_generic([1.0, 2.5], list[int])
    assert coerce_to_generic([1.0, 2.0], tuple[int, int]) == (1, 2)


def test_coerce_to_str_from_numbers_only():
    assert coerce_to_generic(123, str) == "123"
    assert coerce_to_generic(-1.5, str) == "-1.5"
    for value in ({"a": 1}, [1], (1,), None, b"ab", True, Color.RED, object()):
        with pytest.raises(TypeError):
            coerce_to_generic(value, str)


def test_coerce_literal():
    assert coerce_to_generic("5", Literal[5]) == 5
    assert type(coerce_to_generic("5", Literal[5])) is int
    assert coerce_to_generic(5, Literal["5", "6"]) == "5"
    assert coerce_to_generic("yes", Literal[True]) is True
    assert coerce_to_generic("b", Literal["a", "b"]) == "b"
    assert coerce_to_generic(2.0, Literal[1, 2]) == 2
    assert coerce_to_generic("VIDEO", Literal[CameraMode.VIDEO]) is CameraMode.VIDEO


def test_coerce_literal_picks_the_first_matching_literal():
    assert coerce_to_generic("1", Literal["x", 1, True]) == 1
    assert type(coerce_to_generic("1", Literal["x", 1, True])) is int
    assert coerce_to_generic("1", Literal[True, 1]) is True


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        ("6", Literal[5]),
        (True, Literal[1]),
        (2, Literal[3, True]),
        ("c", Literal["a", "b"]),
        (None, Literal[0, ""]),
        (2.5, Literal[2]),
    ],
)
def test_coerce_literal_refuses_other_values(value, spec):
    with pytest.raises(TypeError, match="cannot coerce"):
        coerce_to_generic(value, spec)


def test_coerce_enum_from_value_and_name():
    assert coerce_to_generic("VIDEO", CameraMode) is CameraMode.VIDEO
    assert coerce_to_generic("STILL", CameraMode) is CameraMode.STILL
    assert coerce_to_generic("g", Color) is Color.GREEN
    assert coerce_to_generic("GREEN", Color) is Color.GREEN
    assert coerce_to_generic(2, Level) is Level.HIGH
    assert coerce_to_generic("LOW", Level) is Level.LOW
    assert coerce_to_generic("2", Level) is Level.HIGH
    assert coerce_to_generic([0, 0], Color) is Color.ORIGIN
    assert coerce_to_generic(3, Perm) == Perm.READ | Perm.WRITE


@pytest.mark.parametrize(
    ("value", "spec"),
    [("video", CameraMode), ("BLUE", Color), (3, Level), (True, Level), (1.5, Level), (4, Perm)],
)
def test_coerce_enum_refuses_unknown(value, spec):
    with pytest.raises(TypeError, match="member"):
        coerce_to_generic(value, spec)


def test_coerce_enum_inside_containers():
    result = coerce_to_generic({"a": "VIDEO", "b": "STILL"}, dict[str, CameraMode])
    assert result == {"a": CameraMode.VIDEO, "b": CameraMode.STILL}
    assert all(type(mode) is CameraMode for mode in result.values())


@pytest.mark.parametrize("spec", [set[int], frozenset[int], tuple[int, ...], tuple[str, str], list[str]])
@pytest.mark.parametrize("value", ["12", b"12", bytearray(b"12")])
def test_coerce_text_is_not_a_collection_source(spec, value):
    with pytest.raises(TypeError, match="text is not split"):
        coerce_to_generic(value, spec)


@pytest.mark.parametrize("spec", [list, tuple, set, frozenset])
def test_coerce_text_is_not_split_into_plain_collections(spec):
    with pytest.raises(TypeError, match="text is not split"):
        coerce_to_generic("ab", spec)
    assert coerce_to_generic([1, 2], spec) == spec([1, 2])


def test_coerce_mapping_is_not_a_sequence_source():
    with pytest.raises(TypeError, match="mapping"):
        coerce_to_generic({"a": 1}, list[str])


def test_coerce_non_iterable_to_list_raises():
    with pytest.raises(TypeError, match="not iterable"):
        coerce_to_generic(5, list[int])


def test_coerce_mapping_rebuilds_with_origin_type():
    result = coerce_to_generic({"a": "1"}, collections.OrderedDict[str, int])
    assert type(result) is collections.OrderedDict
    assert result == {"a": 1}
    abstract = coerce_to_generic(collections.OrderedDict(a="1"), abc.Mapping[str, int])
    assert type(abstract) is dict
    assert abstract == {"a": 1}


def test_coerce_mapping_key_collision_raises():
    with pytest.raises(TypeError, match="collide"):
        coerce_to_generic({"1": "a", 1: "b"}, dict[int, str])


def test_coerce_sequence_rebuilds_with_origin_type():
    queue = coerce_to_generic(["1", 2], collections.deque[int])
    assert type(queue) is collections.deque
    assert list(queue) == [1, 2]
    assert type(coerce_to_generic(("1",), abc.Sequence[int])) is list
    assert coerce_to_generic(("1",), abc.Sequence[int]) == [1]
    assert type(coerce_to_generic(["1"], abc.Set[int])) is set
    assert coerce_to_generic(["1", "1"], frozenset[int]) == frozenset({1})


def test_coerce_arbitrary_class_failure_becomes_type_error():
    with pytest.raises(TypeError, match="negative amount") as info:
        coerce_to_generic(-1, Strict)
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(TypeError):
        coerce_to_generic("warm", Celsius)


def test_coerce_result_is_checked_against_the_spec():
    with pytest.raises(TypeError, match="conversion produced a str"):
        coerce_to_generic(5, Impostor)


def test_coerce_refuses_building_classes_from_values():
    with pytest.raises(TypeError):
        coerce_to_generic("x", type[int])
    with pytest.raises(TypeError):
        coerce_to_generic("x", type)


def test_coerce_int_is_not_a_byte_string_length():
    with pytest.raises(TypeError):
        coerce_to_generic(3, bytes)
    assert coerce_to_generic([104, 105], bytes) == b"hi"


def test_coerce_error_message_names_spec_and_value_type():
    with pytest.raises(TypeError) as info:
        coerce_to_generic({"x": 1}, tuple[int, int])
    message = str(info.value)
    assert "dict" in message
    assert "tuple[int, int]" in message
    with pytest.raises(TypeError, match=r"cannot coerce str 'abc' to int"):
        coerce_to_generic("abc", int)
    with pytest.raises(TypeError, match=r"item 1: cannot coerce str 'b' to int"):
        coerce_to_generic(["1", "b"], list[int])


def test_coerce_returns_the_same_object_when_it_already_fits():
    value = [[1, 2], [3]]
    assert coerce_to_generic(value, list[list[int]]) is value
    assert coerce_to_generic(True, int) is True
    assert coerce_to_generic(CameraMode.VIDEO, str) is CameraMode.VIDEO


def test_coerce_union_keeps_a_value_that_fits_any_member():
    assert coerce_to_generic("10", int | str) == "10"
    assert coerce_to_generic("10", (int, str)) == "10"
    assert coerce_to_generic(10, (str, int)) == 10
    assert coerce_to_generic("10", (int, str, float)) == "10"
    assert coerce_to_generic("10", (list[int], int)) == 10


def test_coerce_union_failure_raises():
    with pytest.raises(TypeError, match="no alternative"):
        coerce_to_generic("abc", int | float)
    with pytest.raises(TypeError, match="no alternative"):
        coerce_to_generic("abc", ())


def test_coerce_annotated():
    assert coerce_to_generic(["1"], Annotated[list[int], "ids"]) == [1]


def test_nesting_up_to_the_limit_is_fine():
    spec = nested_list_spec(MAX_SPEC_DEPTH)
    value = nested_list_value(MAX_SPEC_DEPTH)
    assert is_instance_of_generic(value, spec)
    assert coerce_to_generic(value, spec) is value
    assert coerce_to_generic(nested_list_value(MAX_SPEC_DEPTH, "7"), spec) == nested_list_value(
        MAX_SPEC_DEPTH, 7
    )


@pytest.mark.parametrize("levels", [MAX_SPEC_DEPTH + 1, 200, 5000])
def test_nesting_beyond_the_limit_raises_type_error(levels):
    spec = nested_list_spec(levels)
    value = nested_list_value(levels)
    with pytest.raises(TypeError, match="nested"):
        is_instance_of_generic(value, spec)
    with pytest.raises(TypeError, match="nested"):
        coerce_to_generic(value, spec)


def test_nested_tuple_of_specs_beyond_the_limit_raises_type_error():
    spec: Any = int
    for _ in range(MAX_SPEC_DEPTH + 5):
        spec = (spec,)
    with pytest.raises(TypeError, match="nested"):
        is_instance_of_generic(1, spec)
    with pytest.raises(TypeError, match="nested"):
        coerce_to_generic("1", spec)


def test_nesting_error_is_not_hidden_by_a_later_union_member():
    value: Any = 1
    for _ in range(MAX_SPEC_DEPTH + 1):
        value = (value,)
    spec = nested_list_spec(MAX_SPEC_DEPTH + 1) | list
    assert coerce_to_generic((1,), list[int] | list) == [1]
    with pytest.raises(TypeError, match="nested"):
        coerce_to_generic(value, spec)


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["0", "1", "true", "off", "VIDEO", "STILL", "12", "1.5", "-3"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
python_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4), children, max_size=4)
        | st.sets(st.integers() | st.text(max_size=4), max_size=4)
    ),
    max_leaves=12,
)

SPECS = [
    Any,
    int,
    float,
    str,
    bool,
    None,
    CameraMode,
    Level,
    int | None,
    Optional[str],  # noqa: UP045
    (int, str),
    Literal[1, "a", True],
    list[int],
    list[Any],
    set[int],
    dict[str, int],
    dict[str, Any],
    tuple[int, ...],
    tuple[int, str],
    tuple[float, float, bool],
    list[dict[str, int | str]],
    dict[str, list[tuple[int, ...]]],
    abc.Sequence[str],
]
specs = st.sampled_from(SPECS)

BOOL_WORDS = {"true", "false", "1", "0", "yes", "no", "on", "off"}


@given(value=python_values, spec=specs)
def test_property_fitting_value_is_returned_unchanged(value, spec):
    if is_instance_of_generic(value, spec):
        assert coerce_to_generic(value, spec) is value


@given(value=json_values, spec=specs)
def test_property_coercion_fits_or_raises_type_error(value, spec):
    try:
        result = coerce_to_generic(value, spec)
    except TypeError:
        return
    assert is_instance_of_generic(result, spec)
    assert coerce_to_generic(result, spec) is result


@given(value=json_values, spec=specs)
def test_property_none_never_appears_from_elsewhere(value, spec):
    if value is None and not is_instance_of_generic(None, spec):
        with pytest.raises(TypeError):
            coerce_to_generic(value, spec)


@given(st.lists(st.integers()))
def test_property_int_tuples_round_trip_through_lists(items):
    as_tuple = coerce_to_generic(items, tuple[int, ...])
    assert as_tuple == tuple(items)
    assert type(as_tuple) is tuple
    assert coerce_to_generic(list(as_tuple), tuple[int, ...]) == as_tuple
    assert coerce_to_generic(list(as_tuple), list[int]) == items


@given(st.lists(st.integers(), max_size=6))
def test_property_fixed_tuple_needs_exact_length(items):
    fits = len(items) == 2
    assert is_instance_of_generic(tuple(items), tuple[int, int]) is fits
    if fits:
        assert coerce_to_generic(items, tuple[int, int]) == tuple(items)
    else:
        with pytest.raises(TypeError):
            coerce_to_generic(items, tuple[int, int])


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_property_float_to_int_never_truncates(number):
    if math.isfinite(number) and number.is_integer():
        result = coerce_to_generic(number, int)
        assert type(result) is int
        assert result == number
    else:
        with pytest.raises(TypeError):
            coerce_to_generic(number, int)


@given(st.text(max_size=6) | st.sampled_from(sorted(BOOL_WORDS)).map(str.upper))
def test_property_text_to_bool_only_from_known_words(text):
    if text.lower() in BOOL_WORDS:
        assert coerce_to_generic(text, bool) is (text.lower() in {"true", "1", "yes", "on"})
    else:
        with pytest.raises(TypeError):
            coerce_to_generic(text, bool)


@given(st.integers())
def test_property_int_text_round_trip(number):
    text = coerce_to_generic(number, str)
    assert text == str(number)
    assert coerce_to_generic(text, int) == number


@given(st.one_of(st.integers(-3, 3), st.booleans(), st.sampled_from(["a", "b", "1", "true"])))
def test_property_literal_check_tells_types_apart(value):
    spec = Literal[1, "a", False]
    expected = any(type(value) is type(literal) and value == literal for literal in (1, "a", False))
    assert is_instance_of_generic(value, spec) is expected
