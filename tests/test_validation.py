"""Checking a call before it runs: unknown tools, types, missing and unknown args, limits (A2-A8)."""

from __future__ import annotations

import enum
import json
from typing import Any, Literal, Optional

import pytest
from doubles import done

from looplet import (
    BaseToolRegistry,
    ErrorKind,
    MockLLMBackend,
    ToolCall,
    ToolContext,
    ToolResult,
    register_done_tool,
)
from looplet.tools import PreparedCall, validate_args, validate_value
from looplet.tools.dispatch import run_sync
from looplet.tools.validation import suggest


def registry() -> tuple[BaseToolRegistry, list[dict[str, Any]]]:
    tools = BaseToolRegistry()
    ran: list[dict[str, Any]] = []

    @tools.tool
    def read_file(file_path: str, limit: int = 100, verbose: bool = False) -> str:
        """Read a file."""
        ran.append({"file_path": file_path, "limit": limit, "verbose": verbose})
        return "text"

    @tools.tool
    def bash(command: str) -> str:
        """Run a command."""
        ran.append({"command": command})
        return ""

    @tools.tool
    def configure(options: dict[str, int], tags: list[str]) -> str:
        """Set options."""
        ran.append({"options": options, "tags": tags})
        return "ok"

    return tools, ran


def prepare(
    tools: BaseToolRegistry, tool: str, args: Any, **limits: Any
) -> PreparedCall | ToolResult:
    return tools.prepare(ToolCall(tool=tool, args=args, call_id="c1"), **limits)


def error_of(outcome: PreparedCall | ToolResult) -> str:
    assert isinstance(outcome, ToolResult), f"expected an error, got {outcome!r}"
    assert outcome.error_kind in (ErrorKind.VALIDATION, ErrorKind.PARSE)
    assert outcome.error
    return outcome.error


# -- A3: unknown tools ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, hint",
    [
        ("read_fil", "read_file"),  # typo
        ("Read_File", "read_file"),  # case variant
        ("READ_FILE", "read_file"),
        ("bаsh", "bash"),  # Cyrillic а
        (" bash ", "bash"),  # whitespace
        ("ｂａｓｈ", "bash"),  # fullwidth
    ],
)
def test_unknown_tool_suggests_the_closest_and_lists_the_tools(name: str, hint: str) -> None:
    tools, ran = registry()
    text = error_of(prepare(tools, name, {}))
    assert f"Did you mean {hint!r}?" in text
    assert "Available tools: read_file, bash, configure." in text
    assert ran == []


@pytest.mark.parametrize("name", ["", "   ", "launch_rockets"])
def test_hallucinated_or_empty_tool_name_lists_the_tools_without_a_guess(name: str) -> None:
    tools, _ = registry()
    text = error_of(prepare(tools, name, {}))
    assert text.startswith(f"unknown tool {name!r}.") and "Did you mean" not in text
    assert "Available tools:" in text


def test_unknown_tool_with_an_empty_registry_says_none() -> None:
    assert "Available tools: none." in error_of(prepare(BaseToolRegistry(), "x", {}))


def test_suggest_handles_no_options_and_far_names() -> None:
    assert suggest("x", []) is None
    assert suggest("zzzzzz", ["read_file"]) is None


def test_unknown_tool_in_a_run_is_a_validation_step_and_never_runs(drive: Any) -> None:
    tools, ran = registry()
    register_done_tool(tools)
    steps, _ = drive(
        MockLLMBackend(['{"tool": "bassh", "args": {"command": "ls"}}', done()]), tools=tools
    )
    assert steps[0].tool_result.error_kind == ErrorKind.VALIDATION and ran == []
    answer = next(m for m in drive.loop.history if m.role == "tool")
    assert "Did you mean 'bash'?" in answer.content


# -- A4: wrong types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        ({"file_path": "a", "limit": "five"}, "limit: expected integer, got string"),
        ({"file_path": "a", "limit": "5"}, "limit: expected integer, got string"),
        ({"file_path": "a", "limit": {"$gt": 1}}, "limit: expected integer, got object"),
        ({"file_path": "a", "limit": True}, "limit: expected integer, got boolean"),
        ({"file_path": "a", "limit": 2.5}, "limit: expected integer, got number"),
        ({"file_path": "a", "limit": float("nan")}, "limit: JSON has no NaN or Infinity"),
        ({"file_path": "a", "limit": float("inf")}, "limit: JSON has no NaN or Infinity"),
        ({"file_path": "a", "verbose": "true"}, "verbose: expected boolean, got string"),
        ({"file_path": "a", "verbose": 1}, "verbose: expected boolean, got integer"),
        ({"file_path": ["a"]}, "file_path: expected string, got array"),
        ({"file_path": None}, "file_path: expected string, got null"),
        ({"file_path": 3}, "file_path: expected string, got integer"),
    ],
)
def test_wrong_types_are_rejected_with_path_and_expected_type(
    args: dict[str, Any], fragment: str
) -> None:
    tools, ran = registry()
    text = error_of(prepare(tools, "read_file", args))
    assert fragment in text
    assert "Expected: read_file(file_path: str, limit: int = 100, verbose: bool = False)" in text
    assert ran == []


def test_integral_float_is_the_only_numeric_coercion() -> None:
    tools, _ = registry()
    prepared = prepare(tools, "read_file", {"file_path": "a", "limit": 3.0})
    assert isinstance(prepared, PreparedCall)
    assert prepared.args["limit"] == 3 and type(prepared.args["limit"]) is int


def test_oversized_int_is_an_int() -> None:
    tools, _ = registry()
    prepared = prepare(tools, "read_file", {"file_path": "a", "limit": 10**40})
    assert isinstance(prepared, PreparedCall) and prepared.args["limit"] == 10**40


def test_nested_types_are_checked_with_their_path() -> None:
    tools, _ = registry()
    text = error_of(prepare(tools, "configure", {"options": {"a": 1, "b": "2"}, "tags": ["x"]}))
    assert "options.b: expected integer, got string" in text
    text = error_of(prepare(tools, "configure", {"options": {}, "tags": ["x", 2]}))
    assert "tags[1]: expected string, got integer" in text


# -- A2: arguments that are not an object ------------------------------------------------------


@pytest.mark.parametrize("args", [[], 3, None, "str", [1, 2]])
def test_arguments_that_are_not_an_object_are_rejected(args: Any) -> None:
    tools, ran = registry()
    text = error_of(prepare(tools, "bash", args))
    assert "arguments must be a JSON object" in text and ran == []
    assert "Expected: bash(command: str)" in text


def test_json_string_is_decoded_once_where_an_object_or_array_is_declared() -> None:
    tools, _ = registry()
    prepared = prepare(tools, "configure", {"options": '{"a": 1}', "tags": '["x", "y"]'})
    assert isinstance(prepared, PreparedCall)
    assert prepared.args == {"options": {"a": 1}, "tags": ["x", "y"]}


def test_double_encoded_json_string_is_decoded_only_once() -> None:
    tools, _ = registry()
    twice = json.dumps(json.dumps({"a": 1}))
    assert "options: expected object, got string" in error_of(
        prepare(tools, "configure", {"options": twice, "tags": []})
    )


def test_json_string_is_not_decoded_where_a_string_is_declared() -> None:
    tools, _ = registry()
    prepared = prepare(tools, "bash", {"command": '{"a": 1}'})
    assert isinstance(prepared, PreparedCall) and prepared.args["command"] == '{"a": 1}'


def test_unreadable_arguments_from_the_parser_are_a_parse_error_naming_the_signature() -> None:
    tools, ran = registry()
    call = ToolCall(tool="bash", args={}, parse_error="arguments are not valid JSON")
    outcome = tools.prepare(call)
    assert isinstance(outcome, ToolResult) and outcome.error_kind == ErrorKind.PARSE
    assert "bash(command: str)" in (outcome.error or "") and ran == []


# -- A5: missing arguments ---------------------------------------------------------------------


def test_missing_required_lists_what_is_missing_and_what_was_given() -> None:
    tools, _ = registry()
    text = error_of(prepare(tools, "read_file", {"limit": 3}))
    assert "missing required argument(s): file_path (given: limit)" in text
    text = error_of(prepare(tools, "configure", {}))
    assert "missing required argument(s): options, tags (given: nothing)" in text


def test_optional_with_a_default_is_not_missing() -> None:
    tools, _ = registry()
    assert isinstance(prepare(tools, "read_file", {"file_path": "a"}), PreparedCall)


def test_none_for_a_required_string_is_rejected_and_empty_string_is_a_string() -> None:
    tools, _ = registry()
    assert "expected string, got null" in error_of(prepare(tools, "bash", {"command": None}))
    assert isinstance(prepare(tools, "bash", {"command": ""}), PreparedCall)


# -- A6: unknown and reserved arguments --------------------------------------------------------


def test_unknown_argument_gets_a_did_you_mean() -> None:
    tools, _ = registry()
    text = error_of(prepare(tools, "read_file", {"file_pth": "a"}))
    assert "unknown argument 'file_pth' for read_file; did you mean 'file_path'?" in text


def test_unknown_argument_without_a_close_match_lists_the_parameters() -> None:
    tools, _ = registry()
    text = error_of(prepare(tools, "bash", {"command": "ls", "__theory__": 1}))
    assert "unknown argument '__theory__' for bash; it takes: command" in text


def test_unknown_argument_for_a_tool_without_parameters() -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def ping() -> str:
        """Ping."""
        return "pong"

    assert "it takes no arguments" in error_of(prepare(tools, "ping", {"x": 1}))


@pytest.mark.parametrize("reserved", ["ctx", "self", "_raw_arg", "call_id"])
def test_model_cannot_pass_framework_names(reserved: str) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def note(text: str, ctx: ToolContext) -> str:
        """Write a note."""
        return text

    text = error_of(prepare(tools, "note", {"text": "a", reserved: "x"}))
    assert f"unknown argument {reserved!r}" in text


def test_model_sent_ctx_never_replaces_the_real_tool_context(drive: Any) -> None:
    # A6: a **kwargs tool accepts extra names, but ctx is always the real ToolContext
    tools = BaseToolRegistry()
    got: list[Any] = []

    @tools.tool
    def flexible(ctx: ToolContext, **extra: Any) -> str:
        """Take anything."""
        got.append((ctx, extra))
        return "ok"

    register_done_tool(tools)
    script = ['{"tool": "flexible", "args": {"ctx": "x", "other": 1}}', done()]
    steps, _ = drive(MockLLMBackend(script), tools=tools)
    assert steps[0].tool_result.ok
    ctx, extra = got[0]
    assert isinstance(ctx, ToolContext) and ctx.tool == "flexible" and ctx.call_id
    assert extra == {"other": 1}


def test_non_string_argument_names_are_rejected_not_crashing() -> None:
    tools, ran = registry()
    text = error_of(prepare(tools, "bash", {1: "ls", "command": "ls"}))
    assert "argument names must be strings" in text and ran == []


# -- A7: huge or deep arguments -----------------------------------------------------------------


def test_deep_arguments_are_rejected_before_running() -> None:
    tools, ran = registry()
    deep: Any = "x"
    for _ in range(10_000):
        deep = [deep]
    text = error_of(prepare(tools, "configure", {"options": {}, "tags": deep}))
    assert "nest deeper than 64 levels" in text and ran == []


def test_huge_arguments_are_rejected_by_size() -> None:
    tools, _ = registry()
    text = error_of(prepare(tools, "bash", {"command": "x" * 2_000_000}))
    assert "over the limit of 1,000,000" in text
    assert len(text) < 500, "the message never repeats the payload"


def test_many_keys_and_long_lists_count_toward_the_size_limit() -> None:
    tools, _ = registry()
    many = {f"k{i}": i for i in range(100_000)}
    assert "over the limit" in error_of(
        prepare(tools, "configure", {"options": many, "tags": []}, max_arg_chars=100_000)
    )
    assert "over the limit" in error_of(
        prepare(
            tools, "configure", {"options": {}, "tags": ["a"] * 1_000_000}, max_arg_chars=100_000
        )
    )


def test_size_and_depth_limits_come_from_the_config(drive: Any) -> None:
    from looplet import LoopConfig

    tools, ran = registry()
    register_done_tool(tools)
    script = [json.dumps({"tool": "bash", "args": {"command": "x" * 50}}), done()]
    steps, _ = drive(MockLLMBackend(script), tools=tools, config=LoopConfig(max_arg_chars=20))
    assert "over the limit of 20" in (steps[0].tool_result.error or "") and ran == []


# -- A8: whitespace ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["  indented\n", "a\r\nb\r\n", "\ttab\t", "nbsp\u00a0", " ", "\n\n"]
)
def test_strings_pass_through_byte_for_byte(drive: Any, text: str) -> None:
    tools, ran = registry()
    register_done_tool(tools)
    steps, _ = drive(
        MockLLMBackend([json.dumps({"tool": "bash", "args": {"command": text}}), done()]),
        tools=tools,
    )
    assert ran == [{"command": text}]
    assert steps[0].tool_call.args == {"command": text}


# -- the validator on its own -----------------------------------------------------------------


def test_validate_value_reports_the_first_problem() -> None:
    assert validate_value(3, {"type": "integer"}) is None
    assert validate_value("3", {"type": "integer"}) == 'expected integer, got string "3"'
    assert validate_value(None, {"type": ["string", "null"]}) is None
    assert validate_value(1, {"type": ["string", "null"]}) is not None
    assert validate_value("x", {}) is None
    assert validate_value("x", {"type": "mystery"}) is None


def test_validate_args_with_additional_properties_schema() -> None:
    schema = {"type": "object", "properties": {}, "additionalProperties": {"type": "integer"}}
    assert validate_args({"a": 1}, schema) == ({"a": 1}, [])
    assert validate_args({"a": "x"}, schema)[1] == ['a: expected integer, got string "x"']


def test_enum_and_unique_and_tuple_shapes() -> None:
    assert validate_value("a", {"enum": ["a", "b"]}) is None
    assert validate_value(True, {"enum": [1]}) is not None, "true is not 1"
    assert validate_value(1.0, {"enum": [1]}) is None
    assert validate_value([1, 1], {"type": "array", "uniqueItems": True}) == "items must be unique"
    pair = {
        "type": "array",
        "prefixItems": [{"type": "string"}, {"type": "integer"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert validate_value(["a", 1], pair) is None
    assert validate_value(["a"], pair) == "expected 2 items, got 1"
    assert validate_value(["a", "b"], pair) == '[1]: expected integer, got string "b"'


def test_object_schema_rejects_unknown_keys_and_missing_ones() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    assert validate_value({"name": "a"}, schema) is None
    assert validate_value({}, schema) == "missing required key(s): name"
    assert (
        validate_value({"name": "a", "nmae": 1}, schema)
        == "unknown key 'nmae'; did you mean 'name'?"
    )
    assert (
        validate_value({1: "a", "name": "b"}, {"type": "object"})
        == "keys must be strings, got integer"
    )


def test_error_messages_show_long_values_cut() -> None:
    problem = validate_value("x" * 500, {"type": "integer"})
    assert problem is not None and len(problem) < 120 and problem.endswith("…")


# -- NaN and Infinity never reach a tool, whatever its hint (item 23) -----------------------------------


def probe(hint: Any) -> tuple[BaseToolRegistry, list[Any]]:
    got: list[Any] = []

    def value_probe(value):  # type: ignore[no-untyped-def]
        got.append(value)
        return "ok"

    value_probe.__annotations__ = {"value": hint}
    return BaseToolRegistry([value_probe]), got


NON_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize(
    "hint, wrap, path",
    [
        (Any, lambda x: x, "value"),
        (dict, lambda x: {"a": {"b": x}}, "value.a.b"),
        (list, lambda x: [1, [x]], "value[1][0]"),
        (dict[str, Any], lambda x: {"k": x}, "value.k"),
        (list[Any], lambda x: [x], "value[0]"),
        (Optional[Any], lambda x: x, "value"),  # noqa: UP045 - the hint under test
        (Any, lambda x: {"deep": [{"x": [x]}]}, "value.deep[0].x[0]"),
        (float, lambda x: x, "value"),
    ],
)
@pytest.mark.parametrize("bad", NON_FINITE, ids=repr)
def test_nan_and_infinity_are_refused_anywhere_in_the_arguments(
    hint: Any, wrap: Any, path: str, bad: float
) -> None:
    tools, got = probe(hint)
    text = error_of(tools.prepare(ToolCall("value_probe", {"value": wrap(bad)})))
    assert f"{path}: JSON has no NaN or Infinity" in text and got == []


def test_validate_value_refuses_nan_for_an_any_schema() -> None:
    assert validate_value({"a": [float("nan")]}, {}) == "a[0]: JSON has no NaN or Infinity, got NaN"
    assert validate_args({"x": float("inf")}, {"type": "object"})[1] == [
        "x: JSON has no NaN or Infinity, got Infinity"
    ]


# -- integral floats, bools and ints in Literal and Enum (item 23) ---------------------------------------


class Level(enum.Enum):
    LOW = 1
    HIGH = 3


class Mode(enum.IntEnum):
    FAST = 1
    SLOW = 2


@pytest.mark.parametrize(
    "hint, sent, received",
    [
        (Literal[1, 2, 3], 2.0, 2),
        (Literal[1, 2, 3], 2, 2),
        (list[Literal[1, 2]], [1.0, 2], [1, 2]),
        (dict[str, Literal[1, 2]], {"a": 2.0}, {"a": 2}),
        (Optional[Literal[1, 2]], 1.0, 1),  # noqa: UP045 - the hint under test
        (Level, 3.0, Level.HIGH),
        (Mode, 2.0, Mode.SLOW),
        (Literal[True, 1], True, True),
        (Literal[True, 1], 1, 1),
        (Literal[0.5, 2.0], 2, 2.0),
        (int | float, 2.0, 2.0),
        (float | int, 2, 2),
        (int | str, 2.0, 2),
    ],
)
def test_a_matching_number_reaches_the_tool_as_the_declared_value_and_type(
    hint: Any, sent: Any, received: Any
) -> None:
    tools, got = probe(hint)
    prepared = tools.prepare(ToolCall("value_probe", {"value": sent}))
    assert isinstance(prepared, PreparedCall), getattr(prepared, "error", None)
    assert run_sync(prepared, None).ok
    assert got == [received] and same_types(got[0], received)


def same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return all(same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return all(same_types(x, y) for x, y in zip(a, b, strict=True))
    return True


@pytest.mark.parametrize(
    "hint, sent",
    [
        (Literal[1, 2, 3], True),
        (Literal[1, 2, 3], 2.5),
        (Literal[True], 1),
        (Literal[False], 0),
        (Literal[0], False),
        (Level, True),
        (Mode, True),
        (list[Literal[1]], [True]),
        (dict[str, int], {"a": True}),
        (list[list[int]], [[1], [False]]),
        (tuple[int, bool], [True, True]),
        (set[int], [1, 1.0]),
        (set[float], [1, 1.0]),
        (Literal["1"], 1),
    ],
)
def test_bools_ints_and_floats_are_not_confused_at_any_depth(hint: Any, sent: Any) -> None:
    tools, got = probe(hint)
    error_of(tools.prepare(ToolCall("value_probe", {"value": sent})))
    assert got == []


def test_enum_values_compare_bools_strictly_inside_containers() -> None:
    assert validate_value([True], {"enum": [[1]]}) is not None
    assert validate_value({"a": 1}, {"enum": [{"a": True}]}) is not None
    assert validate_value([1.0], {"enum": [[1]]}) is None
    assert validate_value(2, {"const": 2}) is None and validate_value(True, {"const": 1}) is not None


def test_array_length_messages_say_which_bound() -> None:
    assert validate_value([], {"type": "array", "minItems": 1}) == "expected at least 1 items, got 0"
    assert validate_value([1, 2], {"type": "array", "maxItems": 1}) == "expected at most 1 items, got 2"


# -- the done tool takes `answer` or `summary` (item 27) ----------------------------------------------


@pytest.mark.parametrize(
    "args",
    [{"answer": "42"}, {"summary": "Fixed the bug."}, {"answer": "42", "summary": "Fixed it."}],
)
def test_done_accepts_answer_or_the_originals_summary(drive: Any, args: dict[str, Any]) -> None:
    tools = BaseToolRegistry()
    register_done_tool(tools)
    steps, result = drive(
        MockLLMBackend([json.dumps({"tool": "done", "args": args})]), tools=tools
    )
    assert result.stop_reason == "done" and steps[-1].tool_result.ok
    assert steps[-1].tool_result.data == args


@pytest.mark.parametrize(
    "args, fragment",
    [
        ({}, "give at least one of: answer, summary (given: nothing)"),
        ({"answer": 42}, "answer: expected string, got integer"),
        ({"summry": "x"}, "did you mean 'summary'?"),
    ],
)
def test_done_without_answer_or_summary_says_what_it_takes(args: dict[str, Any], fragment: str) -> None:
    tools = BaseToolRegistry()
    register_done_tool(tools)
    text = error_of(tools.prepare(ToolCall("done", args)))
    assert fragment in text and text.endswith("Expected: done(answer?: str, summary?: str)")


def test_the_done_tool_tells_the_model_both_names() -> None:
    spec = register_done_tool(BaseToolRegistry())
    assert "`answer`" in spec.description and "`summary`" in spec.description


def test_at_least_one_of_several_keys_can_be_required_with_any_of() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
        "additionalProperties": False,
    }
    assert validate_args({"b": 2.0}, schema) == ({"b": 2}, [])
    assert validate_args({}, schema)[1] == [
        "expected an object with a or an object with b, got object {}"
    ]
    assert validate_value({"x": {}}, {"properties": {"x": schema}}) is not None
    assert validate_value({"a": "s"}, {"allOf": [schema, {"required": ["a"]}]}) is None
    assert validate_value({"b": 1}, {"allOf": [schema, {"required": ["a"]}]}) == (
        "missing required key(s): a"
    )
    too_many = {"type": "object", "maxProperties": 1}
    assert validate_args({"a": 1, "b": 2}, too_many)[1] == [
        "give at most 1 argument(s) (given: a, b)"
    ]


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": [Infinity]}', '{"a": 1e400}', '{"a": -Infinity}'])
def test_a_json_string_decoded_for_an_object_never_brings_nan_or_infinity(text: str) -> None:
    tools, got = probe(dict)
    outcome = tools.prepare(ToolCall("value_probe", {"value": text}))
    assert "value: expected object, got string" in error_of(outcome) and got == []
    listed, _ = probe(list)
    assert "expected array" in error_of(listed.prepare(ToolCall("value_probe", {"value": f"[{text}]"})))
