"""Properties of schemas from type hints and argument validation (rows A4, A5, A8, A9).

A schema is drawn from random type hints (int, float, bool, str, Literal,
Optional, list[...], TypedDict, dataclass). A reference predicate, written
independently of the validator, says which JSON values conform. Then:
conforming values are accepted unchanged, everything else is rejected, and no
wrong-typed value ever reaches the tool.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any, Literal, Optional, TypedDict

from doubles import done
from hypothesis import given
from hypothesis import strategies as st

from looplet import (
    BaseToolRegistry,
    MockLLMBackend,
    Step,
    ToolCall,
    ToolResult,
    composable_loop,
    register_done_tool,
)
from looplet.tools import PreparedCall
from looplet.tools.dispatch import run_sync

# -- drawing type hints --------------------------------------------------------------------------

_counter = iter(range(10**9))


def make_typeddict(types: list[Any]) -> Any:
    return TypedDict(f"TD{next(_counter)}", {f"f{i}": t for i, t in enumerate(types)})  # type: ignore[misc]


def make_dataclass(types: list[Any]) -> Any:
    return dataclasses.make_dataclass(
        f"DC{next(_counter)}", [(f"f{i}", t) for i, t in enumerate(types)]
    )


literals = st.lists(
    st.text("abc", min_size=1, max_size=3) | st.integers(-3, 3), min_size=1, max_size=3, unique=True
).map(lambda values: Literal[tuple(values)])  # type: ignore[misc]
leaf_hints = st.sampled_from([int, float, bool, str]) | literals
hints = st.recursive(
    leaf_hints,
    lambda inner: (
        inner.map(lambda t: Optional[t])  # noqa: UP045 - the hint under test
        | inner.map(lambda t: list[t])  # type: ignore[valid-type]
        | st.lists(inner, min_size=1, max_size=3).map(make_typeddict)
        | st.lists(inner, min_size=1, max_size=3).map(make_dataclass)
    ),
    max_leaves=5,
)

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["[]", "{}", "[1]", '{"f0": 1}', "true", "1", "a"])
)
any_json = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["f0", "f1", "f2", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)


def fields_of(hint: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(hint):
        return {f.name: f.type for f in dataclasses.fields(hint)}
    return typing.get_type_hints(hint)


def is_record(hint: Any) -> bool:
    return dataclasses.is_dataclass(hint) or (isinstance(hint, type) and issubclass(hint, dict))


def valid_values(hint: Any) -> st.SearchStrategy[Any]:
    """JSON values that conform to `hint`."""
    origin = typing.get_origin(hint)
    if hint is int:
        return st.integers()
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers()
    if hint is bool:
        return st.booleans()
    if hint is str:
        return st.text(max_size=10)
    if origin is Literal:
        return st.sampled_from(typing.get_args(hint))
    if origin is typing.Union:
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return st.none() | valid_values(inner)
    if origin is list:
        return st.lists(valid_values(typing.get_args(hint)[0]), max_size=3)
    return st.fixed_dictionaries({k: valid_values(t) for k, t in fields_of(hint).items()})


# -- the reference: which values conform, and what the tool may receive -----------------------------

_MISSING = object()


def conforms(value: Any, hint: Any) -> Any:
    """The value after the documented coercions if it conforms to `hint`, else _MISSING."""
    origin = typing.get_origin(hint)
    if hint in (int, float, bool, str):
        return scalar_conforms(value, hint)
    if origin is Literal:
        for allowed in typing.get_args(hint):
            if (
                not isinstance(value, bool)
                and isinstance(value, type(allowed))
                and value == allowed
            ):
                return value
            if isinstance(allowed, int) and isinstance(value, float) and value == allowed:
                return value
        return _MISSING
    if origin is typing.Union:
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else conforms(value, inner)
    return container_conforms(value, hint)


def scalar_conforms(value: Any, hint: Any) -> Any:
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)  # the one numeric coercion
        return _MISSING
    if hint is float:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value)
        )
        return value if ok else _MISSING
    return value if type(value) is hint else _MISSING


def container_conforms(value: Any, hint: Any) -> Any:
    is_list = typing.get_origin(hint) is list
    if isinstance(value, str):  # a JSON string where an array/object is declared is decoded once
        try:
            decoded = json.loads(value)
        except ValueError:
            return _MISSING
        if not isinstance(decoded, list if is_list else dict):
            return _MISSING
        value = decoded
    if is_list:
        if not isinstance(value, list):
            return _MISSING
        items = [conforms(v, typing.get_args(hint)[0]) for v in value]
        return _MISSING if any(i is _MISSING for i in items) else items
    if not isinstance(value, dict) or set(value) != set(fields_of(hint)):
        return _MISSING
    out = {k: conforms(v, fields_of(hint)[k]) for k, v in value.items()}
    return _MISSING if any(v is _MISSING for v in out.values()) else out


def received_ok(value: Any, hint: Any) -> bool:
    """Whether the tool got a Python value of the hinted type."""
    origin = typing.get_origin(hint)
    if hint is int:
        return type(value) is int
    if hint is float:
        return type(value) in (int, float)
    if hint is bool:
        return type(value) is bool
    if hint is str:
        return type(value) is str
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in typing.get_args(hint)) or (
            type(value) is float and value in typing.get_args(hint)
        )
    if origin is typing.Union:
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return value is None or received_ok(value, inner)
    if origin is list:
        return type(value) is list and all(received_ok(v, typing.get_args(hint)[0]) for v in value)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint) and all(
            received_ok(getattr(value, k), t) for k, t in fields_of(hint).items()
        )
    return type(value) is dict and all(received_ok(value[k], t) for k, t in fields_of(hint).items())


def probe_tool(hint: Any) -> tuple[BaseToolRegistry, list[Any]]:
    got: list[Any] = []

    def probe(value):  # type: ignore[no-untyped-def]
        got.append(value)
        return "ok"

    probe.__annotations__ = {"value": hint}
    return BaseToolRegistry([probe]), got


# -- properties -----------------------------------------------------------------------------------


@given(st.data())
def test_every_valid_value_is_accepted_unchanged(data: Any) -> None:
    hint = data.draw(hints, label="hint")
    value = data.draw(valid_values(hint), label="value")
    tools, got = probe_tool(hint)
    prepared = tools.prepare(ToolCall("probe", {"value": value}))
    assert isinstance(prepared, PreparedCall), getattr(prepared, "error", None)
    assert prepared.args == {"value": value}
    assert type(prepared.args["value"]) is type(value)
    result = run_sync(prepared, None)
    assert result.ok and received_ok(got[0], hint)


@given(st.data())
def test_wrong_typed_values_never_reach_the_tool(data: Any) -> None:
    hint = data.draw(hints, label="hint")
    value = data.draw(any_json | valid_values(hint), label="value")
    tools, got = probe_tool(hint)
    expected = conforms(value, hint)
    prepared = tools.prepare(ToolCall("probe", {"value": value}))
    if expected is _MISSING:
        assert isinstance(prepared, ToolResult) and prepared.error_kind == "validation"
        assert "probe(value: " in (prepared.error or "")
        return
    assert isinstance(prepared, PreparedCall), getattr(prepared, "error", None)
    assert prepared.args["value"] == expected
    assert run_sync(prepared, None).ok
    assert received_ok(got[0], hint)


@given(st.data())
def test_dropping_a_required_argument_never_runs_the_tool(data: Any) -> None:
    # A5
    hints_drawn = data.draw(st.lists(hints, min_size=1, max_size=4), label="hints")
    values = {f"p{i}": data.draw(valid_values(h)) for i, h in enumerate(hints_drawn)}
    dropped = data.draw(st.sampled_from(sorted(values)), label="dropped")
    got: list[Any] = []

    def many(**kwargs):  # type: ignore[no-untyped-def]
        got.append(kwargs)

    tools = BaseToolRegistry()
    import inspect

    params = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in values]
    many.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    many.__annotations__ = {f"p{i}": h for i, h in enumerate(hints_drawn)}
    tools.register(many)
    args = {k: v for k, v in values.items() if k != dropped}
    outcome = tools.prepare(ToolCall("many", args))
    assert isinstance(outcome, ToolResult) and f"missing required argument(s): {dropped}" in (
        outcome.error or ""
    )
    assert isinstance(tools.prepare(ToolCall("many", values)), PreparedCall)


def echo_tools() -> tuple[BaseToolRegistry, list[str]]:
    tools = BaseToolRegistry()
    got: list[str] = []

    @tools.tool
    def echo(text: str) -> str:
        """Echo the text."""
        got.append(text)
        return text

    register_done_tool(tools)
    return tools, got


@given(st.text(st.characters(blacklist_categories=("Cs",))), st.booleans(), st.booleans())
def test_strings_pass_byte_for_byte_through_the_loop_into_the_tool(
    text: str, ascii_only: bool, native: bool
) -> None:
    # A8: whitespace and unicode are never stripped or changed
    tools, got = echo_tools()
    call: Any = (
        ToolCall("echo", {"text": text})
        if native
        else json.dumps({"tool": "echo", "args": {"text": text}}, ensure_ascii=ascii_only)
    )
    steps = list(composable_loop(MockLLMBackend([call, done()]), tools=tools))
    assert got == [text]
    assert steps[0].tool_call.args == {"text": text} and steps[0].tool_result.data == {
        "result": text
    }


@given(st.text(st.characters(whitelist_categories=("Cs", "Cc", "Zs", "Lo")), max_size=20))
def test_lone_surrogates_and_control_characters_never_break_serialisation(text: str) -> None:
    # A9: accepted and stored escaped; the step stays valid JSON and round-trips
    tools, got = echo_tools()
    reply = json.dumps(
        {"tool": "echo", "args": {"text": text}}
    )  # ascii escapes carry lone surrogates
    steps = list(composable_loop(MockLLMBackend([reply, done()]), tools=tools))
    assert got == [text]
    encoded = json.dumps(steps[0].to_dict())
    assert Step.from_dict(json.loads(encoded)) == steps[0]
    steps[0].pretty()
