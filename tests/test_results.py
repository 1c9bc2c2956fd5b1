"""What a tool returns becomes strict JSON data: never raising, never losing an entry.

Rows: issue 6 items 5 (conversion must not raise after the tool ran) and 6
(keys that collide once they are text). The rule is in `looplet.tools.results`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import fractions
import ipaddress
import json
import pathlib
import re
import sys
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from looplet import BaseToolRegistry, ToolCall
from looplet.tools import normalize_result, to_jsonable


def at_least(count: int) -> int:
    """`count` out of the default profile's 300 examples, scaled to the profile in use.

    A quick profile (fewer than 300 examples) is too small a sample to hold
    proportions, so there the counts are only reported (``event``), not asserted.
    """
    examples = settings().max_examples
    return count * examples // 300 if examples >= 300 else 0


def strict(value: Any) -> str:
    """The strictest JSON encoding: no NaN, no Infinity, nothing unknown."""
    return json.dumps(value, allow_nan=False)


# -- ints too long for decimal text ------------------------------------------------------------


def test_an_int_too_long_to_print_becomes_its_exact_hex_text() -> None:
    big = 7**6000  # 5,071 decimal digits: json.dumps(big) raises ValueError
    for value, expected in ((big, hex(big)), (-big, hex(-big))):
        out = to_jsonable({"n": value, "rest": [value]})
        assert out == {"n": {"$int": expected}, "rest": [{"$int": expected}]}
        assert int(out["n"]["$int"], 16) == value
        strict(out)
    assert normalize_result(big) == {"result": {"$int": hex(big)}}


def test_an_int_just_under_the_print_limit_stays_an_int() -> None:
    limit = sys.get_int_max_str_digits()
    edge = 10 ** (limit - 1)  # exactly `limit` digits
    assert to_jsonable([edge]) == [edge] and strict(to_jsonable([edge]))


def test_a_long_int_key_keeps_its_entry() -> None:
    big = 3**10000  # 4,772 digits
    out = to_jsonable({big: "x"})
    assert out == {hex(big): "x"}


def test_a_tool_returning_a_huge_int_gives_a_step_with_strict_json() -> None:
    from looplet.tools.dispatch import run_sync

    tools = BaseToolRegistry()

    @tools.tool
    def factorial() -> int:
        """Compute."""
        return 9**9000

    prepared = tools.prepare(ToolCall("factorial", {}))
    result = run_sync(prepared, None)  # type: ignore[arg-type]
    assert result.ok and result.data == {"result": {"$int": hex(9**9000)}}
    strict(result.data)


# -- hostile values ---------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
    name: str
    result: int = dataclasses.field(init=False)


class Boom(Exception):
    pass


class Explodes:
    """Each listed dunder raises."""

    def __repr__(self) -> str:
        raise Boom("repr")

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")

    def __hash__(self) -> int:
        raise Boom("hash")

    def __iter__(self) -> Any:
        raise Boom("iter")

    def __len__(self) -> int:
        raise Boom("len")


class BadDump:
    def model_dump(self) -> Any:
        raise Boom("model_dump")

    def __repr__(self) -> str:
        return "BadDump()"


class SelfDump:
    def to_dict(self) -> Any:
        return self


class LyingList(list):  # type: ignore[type-arg]
    def __len__(self) -> int:
        return -1

    def __iter__(self) -> Any:
        raise Boom("iter")


class BrokenItems(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise Boom("items")

    def __iter__(self) -> Any:
        raise Boom("iter")


class OddFloat(float):
    def __repr__(self) -> str:
        raise Boom("repr")

    def __float__(self) -> float:
        raise Boom("float")


class OddInt(int):
    def __int__(self) -> int:
        raise Boom("int")

    def __index__(self) -> int:
        raise Boom("index")


class OddStr(str):
    def __str__(self) -> str:
        raise Boom("str")


class NoClass:
    @property  # type: ignore[misc]
    def __class__(self) -> Any:  # noqa: PLW3201
        raise Boom("__class__")

    def __getattr__(self, name: str) -> Any:
        raise Boom(f"getattr {name}")


class BadStrError(Exception):
    def __str__(self) -> str:
        raise Boom("str of exception")


class RaisesBadError:
    def to_dict(self) -> Any:
        raise BadStrError()

    def __repr__(self) -> str:
        raise BadStrError()


class EndlessSequence(collections.abc.Sequence):  # type: ignore[type-arg]
    """Claims one item, never raises IndexError."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: Any) -> Any:
        return 1


class FailingMapping(collections.abc.Mapping):  # type: ignore[type-arg]
    def __getitem__(self, key: Any) -> Any:
        raise Boom("getitem")

    def __iter__(self) -> Any:
        return iter(["a"])

    def __len__(self) -> int:
        return 1


def test_a_dataclass_with_an_unset_field_keeps_its_other_fields() -> None:
    out = to_jsonable(Job("build"))
    assert out["name"] == "build"
    assert out["result"]["$unconvertible"] == "Job"
    assert out["result"]["error"].startswith("reading field 'result' raised AttributeError")
    strict(out)


@pytest.mark.parametrize(
    "value, expected",
    [
        (Explodes(), {"$repr": "<unrepresentable Explodes: Boom>"}),
        (BadDump(), {"$repr": "BadDump()", "error": "model_dump() raised Boom: model_dump"}),
        (LyingList([1, 2]), [1, 2]),
        (BrokenItems(a=1), {"a": 1}),
        (OddFloat(1.5), 1.5),
        (OddFloat("nan"), "NaN"),
        (OddInt(7), 7),
        (OddStr("text"), "text"),
        (
            RaisesBadError(),
            {
                "$repr": "<unrepresentable RaisesBadError: BadStrError>",
                "error": "to_dict() raised BadStrError",
            },
        ),
        (collections.OrderedDict(b=1), {"b": 1}),
        (collections.deque([1, 2]), [1, 2]),
        (range(3), [0, 1, 2]),
        (collections.ChainMap({"a": 1}), {"a": 1}),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, dict | list | str) else "",
)
def test_hostile_values_become_data_or_a_placeholder_saying_what_happened(
    value: Any, expected: Any
) -> None:
    out = to_jsonable(value)
    assert out == expected
    strict(out)
    assert type(normalize_result(value)) is dict


def test_an_object_whose_every_attribute_lookup_raises_is_shown_by_repr() -> None:
    out = to_jsonable(NoClass())
    assert out["$repr"].startswith("<test_results.NoClass object at ")
    assert "looking up model_dump raised Boom: getattr model_dump" in out["error"]
    strict(out)


def test_exact_plain_types_come_out_of_subclasses() -> None:
    out = to_jsonable([OddInt(3), OddFloat(2.5), OddStr("s")])
    assert [type(v) for v in out] == [int, float, str]


def test_a_value_that_dumps_to_itself_is_circular_not_endless() -> None:
    assert to_jsonable(SelfDump()) == "$circular"


def test_an_endless_sequence_is_cut_and_marked() -> None:
    out = to_jsonable(EndlessSequence())
    assert len(out) == 100_001 and out[-1] == "$truncated"


def test_a_mapping_whose_lookups_fail_becomes_a_placeholder() -> None:
    out = to_jsonable({"ok": 1, "bad": FailingMapping()})
    assert out["ok"] == 1
    assert out["bad"]["$unconvertible"] == "FailingMapping"
    assert "Boom: getitem" in out["bad"]["error"]


# -- the property -----------------------------------------------------------------------------


def hostile_class(base: type, failing: frozenset[str]) -> type:
    """A `base` subclass whose listed methods raise (and whose `__len__` lies when asked to)."""

    def raiser(name: str) -> Any:
        def method(self: Any, *args: Any) -> Any:
            raise Boom(name)

        return method

    body: dict[str, Any] = {name: raiser(name) for name in failing}
    if "lying_len" in failing:
        body["__len__"] = lambda self: -5
        body["__getitem__"] = lambda self, i: i
    body.pop("lying_len", None)
    return type("Hostile", (base,), body)


HOSTILE_METHODS = [
    "__repr__",
    "__eq__",
    "__hash__",
    "__iter__",
    "__str__",
    "model_dump",
    "to_dict",
    "tolist",
    "isoformat",
    "lying_len",
]

hostile = st.builds(
    lambda base, failing: hostile_class(base, failing)(),
    st.sampled_from([object, object, list, dict]),
    st.frozensets(st.sampled_from(HOSTILE_METHODS), min_size=1),
)

library_types: st.SearchStrategy[Any] = st.sampled_from(
    [
        int,
        float,
        complex,
        str,
        bytes,
        bytearray,
        decimal.Decimal,
        fractions.Fraction,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
        range,
        ipaddress.IPv4Address,
        slice,
        type(None),
        ValueError,
    ]
).flatmap(st.from_type) | st.text(max_size=20).map(pathlib.PurePosixPath)  # from_type gives one path

odd_scalars = (
    st.integers(-(10**40), 10**40)
    | st.sampled_from([5000, -4500]).map(lambda n: 11**n if n > 0 else -(13**-n))
    | st.floats()
    | st.floats().map(OddFloat)
    | st.integers().map(OddInt)
    | st.text(max_size=5).map(OddStr)
    | st.builds(Job, st.text(max_size=3))
)
any_key = st.integers(-3, 3) | st.text("0123-~", max_size=3) | st.booleans() | st.none() | st.floats(-2, 2)
values = st.recursive(
    library_types | library_types | odd_scalars | hostile | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(any_key, inner, max_size=4)
        | st.lists(inner, max_size=3).map(LyingList)
        | st.dictionaries(st.text(max_size=2), inner, max_size=3).map(BrokenItems)
        | st.frozensets(st.integers(-3, 3) | st.text(max_size=2), max_size=4)
    ),
    max_leaves=10,
)


def kinds_in(value: Any, seen: Counter[str], depth: int = 0) -> None:
    name = type(value).__name__
    seen[name] += 1
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**4300:
        seen["huge int"] += 1
    if depth > 20:
        return
    if isinstance(value, dict):
        for item in dict.values(value):
            kinds_in(item, seen, depth + 1)
    elif type(value) in (list, tuple, LyingList, frozenset):
        for item in list.__iter__(value) if isinstance(value, list) else iter(value):
            kinds_in(item, seen, depth + 1)


def test_any_value_converts_to_strict_json_without_raising() -> None:
    reached: Counter[str] = Counter()

    @given(values)
    def convert(value: Any) -> None:
        found: Counter[str] = Counter()
        kinds_in(value, found)
        for name in found:
            event(name)
        reached.update(found.keys())
        out = to_jsonable(value)
        strict(out)
        assert type(normalize_result(value)) is dict

    convert()
    for kind in ("Hostile", "huge int", "OddFloat", "Job", "LyingList", "BrokenItems", "dict"):
        assert reached[kind] >= at_least(10), f"{kind}: {sorted(reached.items())}"
    library = ("Decimal", "Fraction", "UUID", "range", "complex", "slice", "bytes", "ValueError")
    assert sum(reached[name] for name in library) >= at_least(20), sorted(reached.items())


# -- keys that collide once they are text (item 6) --------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ({1: "a", "1": "b"}, {"1~2": "a", "1": "b"}),
        ({"1": "b", 1: "a"}, {"1": "b", "1~2": "a"}),
        ({1: "a", "1": "b", "1~2": "c"}, {"1~3": "a", "1": "b", "1~2": "c"}),
        ({None: 1, "None": 2, 1.5: 3, "1.5": 4}, {"None~2": 1, "None": 2, "1.5~2": 3, "1.5": 4}),
        ({(1, 2): "t", "(1, 2)": "s"}, {"(1, 2)~2": "t", "(1, 2)": "s"}),
    ],
)
def test_keys_that_collide_as_text_are_all_kept_by_the_documented_rule(
    value: dict[Any, Any], expected: dict[str, Any]
) -> None:
    out = to_jsonable(value)
    assert out == expected and list(out) == list(expected)


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    return [value]


json_leaf = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
colliding_key = (
    st.integers(0, 3)
    | st.sampled_from(["0", "1", "2", "1~2", "None", "0.5"])
    | st.text("012~", max_size=3)
    | st.none()
    | st.just(0.5)
)
nested = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(colliding_key, inner, max_size=5),
    max_leaves=12,
)


def collisions_in(value: Any) -> int:
    if isinstance(value, dict):
        texts = [str(k) for k in value]
        here = len(texts) - len(set(texts))
        return here + sum(collisions_in(v) for v in value.values())
    if isinstance(value, list):
        return sum(collisions_in(v) for v in value)
    return 0


def test_no_entry_is_lost_when_keys_become_text() -> None:
    reached = Counter[str]()

    @given(nested)
    def convert(value: Any) -> None:
        n = collisions_in(value)
        event("keys collide" if n else "no collision")
        reached["collide" if n else "clean"] += 1
        out = to_jsonable(value)
        assert sorted(map(repr, leaves(out))) == sorted(map(repr, leaves(value)))
        check_string_keys_kept(value, out)
        strict(out)

    convert()
    assert reached["collide"] >= at_least(15), reached


def check_string_keys_kept(value: Any, out: Any) -> None:
    if isinstance(value, dict):
        assert len(out) == len(value)
        names = list(out)
        for (key, item), name in zip(value.items(), names, strict=True):
            if isinstance(key, str):
                assert name == key
            else:
                assert re.fullmatch(re.escape(str(key)) + r"(~\d+)?", name), (key, name)
            check_string_keys_kept(item, out[name])
    elif isinstance(value, list):
        for a, b in zip(value, out, strict=True):
            check_string_keys_kept(a, b)
