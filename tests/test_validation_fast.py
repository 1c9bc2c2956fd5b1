"""The one-pass check of flat arguments (`fast_args`) never disagrees with the full validation.

For any flat schema of plain parameters and any arguments: when the fast path accepts, the
full validation accepts the same arguments unchanged; and `prepare` (which tries the fast path
first) gives exactly what the full validation alone gives.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from looplet import BaseToolRegistry, ToolCall
from looplet.tools.registry import PreparedCall, ToolSpec
from looplet.tools.validation import fast_args, plan_for, validate_args

TYPES = ["string", "integer", "number", "boolean"]
NAMES = st.sampled_from(["a", "b", "query", "n", "flag", "x1"])
VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def flat_schemas(draw: Any) -> dict[str, Any]:
    names = draw(st.lists(NAMES, unique=True, max_size=4))
    props = {n: {"type": draw(st.sampled_from(TYPES)), "description": "d"} for n in names}
    schema: dict[str, Any] = {"type": "object", "properties": props}
    schema["required"] = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    if draw(st.booleans()):
        schema["additionalProperties"] = draw(st.booleans())
    return schema


def _spec(schema: dict[str, Any]) -> ToolSpec:
    return ToolSpec(name="t", description="", parameters=schema, fn=lambda **kw: kw)


@given(flat_schemas(), st.dictionaries(NAMES, VALUES, max_size=5), st.integers(5, 200))
def test_the_fast_path_accepts_only_what_the_full_validation_passes_unchanged(
    schema: dict[str, Any], args: dict[str, Any], max_chars: int
) -> None:
    plan = plan_for(schema)
    assert plan is not None, "every flat schema of plain parameters has a plan"
    fast = fast_args(plan, args, max_chars)
    slow, problems = validate_args(args, schema, "t")
    event("fast path" if fast is not None else "full validation")
    if fast is not None:
        assert problems == [] and slow == args == fast
        assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in fast.values())


@given(flat_schemas(), st.dictionaries(NAMES, VALUES, max_size=5))
def test_prepare_gives_what_the_full_validation_alone_gives(
    schema: dict[str, Any], args: dict[str, Any]
) -> None:
    tools = BaseToolRegistry([_spec(schema)])
    call = ToolCall("t", args, call_id="c1")
    prepared = tools.prepare(call)
    slow, problems = validate_args(args, schema, "t")
    if problems:
        assert not isinstance(prepared, PreparedCall) and prepared.error_kind == "validation"
        event("refused")
    else:
        assert isinstance(prepared, PreparedCall) and prepared.args == slow
        event("accepted")


def test_schemas_that_need_more_than_one_pass_have_no_plan() -> None:
    assert plan_for({"type": "object", "properties": {"a": {"type": "string", "minLength": 2}}}) is None
    assert plan_for({"type": "object", "properties": {"a": {"type": "array"}}}) is None
    assert plan_for({"type": "object", "properties": {}, "anyOf": []}) is None
    assert plan_for({"type": "object", "properties": {"a": {"enum": ["x"]}}}) is None
    assert plan_for({"type": "object", "properties": {}, "minProperties": 1}) is None
    assert plan_for({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}) is None


def test_a_schema_replaced_on_the_spec_gets_its_own_plan() -> None:
    first = {"type": "object", "properties": {"a": {"type": "string"}}}
    second = {"type": "object", "properties": {"a": {"type": "integer"}}}
    plan_a, plan_b = plan_for(first), plan_for(second)
    assert plan_a is not None and plan_b is not None
    assert fast_args(plan_a, {"a": "x"}, 100) == {"a": "x"}
    assert fast_args(plan_b, {"a": "x"}, 100) is None
