"""Records: result normalisation (B4, B6), Step.pretty(), to_dict round trips, what the model sees."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import pathlib
import uuid
from typing import Any

import pytest
from doubles import as_text, done

from looplet import (
    BaseToolRegistry,
    ErrorKind,
    LoopConfig,
    MockLLMBackend,
    RunResult,
    Step,
    ToolCall,
    ToolResult,
    Usage,
    register_done_tool,
)
from looplet.engine import render_result
from looplet.tools import normalize_result, to_jsonable


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int
    y: int


class HasToDict:
    def to_dict(self) -> dict[str, Any]:
        return {"kind": "custom", "when": datetime.date(2024, 1, 2)}


class BrokenToDict:
    def to_dict(self) -> dict[str, Any]:
        raise RuntimeError("nope")

    def __repr__(self) -> str:
        return "BrokenToDict()"


class BadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr")


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


def circular() -> dict[str, Any]:
    d: dict[str, Any] = {"name": "loop"}
    d["self"] = d
    return d


@pytest.mark.parametrize(
    "value, expected",
    [
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"b", "a"}), ["a", "b"]),
        ((1, "a"), [1, "a"]),
        (b"\x00\xff", {"$bytes": "AP8="}),
        (bytearray(b"hi"), {"$bytes": "aGk="}),
        (datetime.datetime(2024, 5, 6, 7, 8, 9), "2024-05-06T07:08:09"),
        (datetime.date(2024, 5, 6), "2024-05-06"),
        (datetime.time(7, 8), "07:08:00"),
        (decimal.Decimal("1.10"), "1.10"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (pathlib.PurePosixPath("/tmp/x"), "/tmp/x"),
        (Color.RED, "red"),
        (Level.HIGH, 3),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (Point(1, 2), {"x": 1, "y": 2}),
        (HasToDict(), {"kind": "custom", "when": "2024-01-02"}),
        (BrokenToDict(), {"$repr": "BrokenToDict()"}),
        (Opaque(), {"$repr": "<Opaque>"}),
        (BadRepr(), {"$repr": "<unrepresentable BadRepr: ValueError>"}),
        ({1: "a", Color.RED: "b", None: "c"}, {"1": "a", "red": "b", "None": "c"}),
        ({3, "a"}, None),  # unsortable set: kept in iteration order
    ],
)
def test_to_jsonable_follows_the_documented_rule(value: Any, expected: Any) -> None:
    out = to_jsonable(value)
    if expected is not None:
        assert out == expected
    json.dumps(out, allow_nan=False)


def test_circular_and_too_deep_values_are_marked() -> None:
    assert to_jsonable(circular()) == {"name": "loop", "self": "$circular"}
    deep: Any = []
    for _ in range(500):
        deep = [deep]
    out = to_jsonable(deep)
    json.dumps(out)
    assert "$too_deep" in json.dumps(out)
    shared = [1]
    assert to_jsonable({"a": shared, "b": shared}) == {"a": [1], "b": [1]}, "shared is not circular"


def test_long_reprs_are_cut() -> None:
    class Long:
        def __repr__(self) -> str:
            return "x" * 5000

    assert len(to_jsonable(Long())["$repr"]) == 2000


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, {"result": None}),
        ([1, 2], {"result": [1, 2]}),
        ("text", {"result": "text"}),
        (5, {"result": 5}),
        ({"a": 1}, {"a": 1}),
    ],
)
def test_non_dict_results_are_wrapped(value: Any, expected: Any) -> None:
    # B6
    assert normalize_result(value) == expected


ODD_RESULTS = [
    {1, 2},
    b"raw",
    datetime.datetime(2024, 1, 1),
    decimal.Decimal("2.5"),
    float("nan"),
    circular(),
    Opaque(),
    None,
    "plain",
    [Point(1, 2)],
]


@pytest.mark.parametrize("value", ODD_RESULTS, ids=lambda v: type(v).__name__)
def test_any_result_gives_a_json_step_that_round_trips(drive: Any, value: Any) -> None:
    # B4 + B6: the one rule applies at dispatch; steps serialise and read back equal
    tools = BaseToolRegistry()

    @tools.tool
    def produce() -> Any:
        """Return something odd."""
        return value

    register_done_tool(tools)
    steps, result = drive(MockLLMBackend([as_text("produce"), done()]), tools=tools)
    step = steps[0]
    assert step.tool_result.ok and isinstance(step.tool_result.data, dict)
    text = json.dumps(step.to_dict(), allow_nan=False)
    assert Step.from_dict(json.loads(text)) == step
    assert step.pretty().startswith("#1 ✓ produce() → ")
    json.dumps(result.to_dict(), allow_nan=False)


def test_error_steps_round_trip_too(drive: Any) -> None:
    tools = BaseToolRegistry()
    register_done_tool(tools)
    steps, _ = drive(MockLLMBackend(["{broken", as_text("nope", x=1), done()]), tools=tools)
    for step in steps:
        assert Step.from_dict(json.loads(json.dumps(step.to_dict()))) == step


def test_hook_replacement_results_are_normalised_too(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def real() -> str:
        """Real."""
        return "real"

    register_done_tool(tools)

    class Replace:
        def post_dispatch(self, state: Any, log: Any, call: Any, result: Any, step: int) -> Any:
            if call.tool == "real":
                return ToolResult(
                    tool="real", data={"when": datetime.date(2024, 1, 1), "ids": {2, 1}}
                )
            return None

    steps, _ = drive(MockLLMBackend([as_text("real"), done()]), tools=tools, hooks=[Replace()])
    assert steps[0].tool_result.data == {"when": "2024-01-01", "ids": [1, 2]}
    json.dumps(steps[0].to_dict())


# -- pretty() ---------------------------------------------------------------------------------


def make_step(
    args: dict[str, Any], data: Any = None, error: str | None = None, ms: float = 0.1
) -> Step:
    call = ToolCall(tool="greet", args=args, call_id="c1")
    result = ToolResult(tool="greet", data=data, error=error, duration_ms=ms)
    if error:
        result.error_kind = ErrorKind.EXECUTION
    return Step(number=1, tool_call=call, tool_result=result)


def test_pretty_matches_the_documented_format() -> None:
    step = make_step({"name": "Alice"}, {"greeting": "Hello, Alice!"})
    assert step.pretty() == "#1 ✓ greet(name='Alice') → greeting: 'Hello, Alice!' [0.1ms]"


def test_pretty_shows_failure_with_a_cross_and_the_error() -> None:
    step = make_step({"name": "A"}, error="ValueError: bad name", ms=182)
    assert step.pretty() == "#1 ✗ greet(name='A') → ValueError: bad name [182ms]"


@pytest.mark.parametrize(
    "data, summary",
    [
        ({"items": list(range(12))}, "12 items"),
        ({"result": [1, 2]}, "2 items"),
        ([1, 2, 3], "3 items"),
        ({}, "{}"),
        ({"a": 1, "b": 2}, '{"a": 1, "b": 2}'),
        ("x" * 100, "'" + "x" * 58 + "…"),
    ],
)
def test_pretty_summarises_the_data(data: Any, summary: str) -> None:
    assert f"→ {summary} [" in make_step({}, data).pretty()


@pytest.mark.parametrize(
    "ms, shown", [(0.04, "0.0ms"), (9.96, "10.0ms"), (182.4, "182ms"), (2500, "2.5s")]
)
def test_pretty_formats_durations(ms: float, shown: str) -> None:
    assert make_step({}, {"a": 1}, ms=ms).pretty().endswith(f"[{shown}]")


def test_pretty_cuts_long_arguments() -> None:
    line = make_step({"text": "y" * 500, "n": 3}, {"ok": True}).pretty()
    assert "n=3" in line and len(line) < 200 and "…" in line


def test_pretty_neutralises_control_characters_and_newlines() -> None:
    evil = "\x1b]0;pwned\x07\x1b[2J\r"
    line = make_step({"name": evil}, {"out": "line1\nline2\x1b[31m"}).pretty()
    assert "\x1b" not in line and "\x07" not in line and "\r" not in line and "\n" not in line
    line = make_step({}, error="bad\nthing\x1b[0m").pretty()
    assert "\n" not in line and "\x1b" not in line and "bad⏎thing" in line


def test_pretty_masks_secrets_in_arguments_results_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    # I1 (the pretty() sink): a known key shape, and the value of a secret env var,
    # long enough that cutting the argument would otherwise leave a readable prefix.
    monkeypatch.setenv("ACME_API_TOKEN", "acme-0f9e8d7c6b5a4f3e2d1c")
    key = "sk-" + "A1b2C3d4E5f6G7h8I9j0" * 3
    line = make_step({"auth": key, "note": "token acme-0f9e8d7c6b5a4f3e2d1c"}, {"echo": key}).pretty()
    assert "A1b2C3d4" not in line and "acme-0f9e" not in line and "[REDACTED]" in line
    line = make_step({}, error=f"401 for key {key}").pretty()
    assert "A1b2C3d4" not in line and "[REDACTED]" in line


def test_pretty_survives_huge_and_deep_and_odd_arguments() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    line = make_step({"deep": deep, "odd": BadRepr(), "big": "z" * 10_000_000}, {"a": 1}).pretty()
    assert len(line) < 300


# -- what the model sees of a result ------------------------------------------------------------


def test_results_longer_than_the_budget_are_cut_with_a_marker_naming_how_much(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def dump() -> str:
        """Return a lot."""
        return "".join(chr(97 + i % 26) for i in range(5000))

    register_done_tool(tools)
    llm = MockLLMBackend([as_text("dump"), done()])
    steps, _ = drive(llm, tools=tools, config=LoopConfig(max_result_chars=300))
    seen = llm.calls[1].messages[-1].content
    full = json.dumps({"result": steps[0].tool_result.data["result"]}, separators=(",", ":"))
    assert f"[cut {len(full) - 300:,} of {len(full):,} characters]" in seen
    assert seen.startswith(full[:200]) and seen.endswith(full[-100:])
    assert len(steps[0].tool_result.data["result"]) == 5000, "the step keeps the whole result"


def test_errors_reach_the_model_whole() -> None:
    result = ToolResult(tool="x", error="E" * 5000, error_kind="validation")
    text = render_result(result, [], limit=100)
    assert text == "Error (validation): " + "E" * 5000


def test_render_result_adds_warnings_and_notes() -> None:
    result = ToolResult(tool="x", data={"a": 1}, warnings=["w1", "w2"])
    assert render_result(result, ["n1"], 1000) == '{"a":1}\nWarnings: w1; w2\nNote: n1'
    assert render_result(ToolResult(tool="x", error="boom"), [], 10) == "Error (error): boom"


# -- the records themselves ----------------------------------------------------------------------


def test_records_round_trip_through_dicts() -> None:
    call = ToolCall("t", {"a": [1]}, "why", "c9", parse_error="bad")
    assert ToolCall.from_dict(call.to_dict()) == call
    assert "parse_error" not in ToolCall("t").to_dict()
    result = ToolResult("t", "a=1", {"x": 1}, None, None, True, 1.5, ["w"], {"m": 1}, "c9")
    assert ToolResult.from_dict(result.to_dict()) == result and result.ok
    usage = Usage(1, 2, 3, 0.25)
    assert Usage.from_dict(usage.to_dict()) == usage
    assert usage + Usage(1, 1) == Usage(2, 3, 3, 0.25)
    step = Step(
        2,
        call,
        result,
        turn=1,
        usage=usage,
        llm_ms=3.0,
        started_at=1.5,
        free=True,
        metadata={"k": 1},
    )
    assert Step.from_dict(json.loads(json.dumps(step.to_dict()))) == step


def test_run_result_ok_and_dict() -> None:
    run = RunResult(stop_reason="max_steps", steps=[], error=ValueError("x"))
    assert not run.ok and run.to_dict()["error"] == "ValueError: x"
    assert RunResult(stop_reason="done", steps=[]).ok


def test_nan_in_usage_or_data_never_breaks_json() -> None:
    step = make_step({}, normalize_result({"v": math.nan}))
    text = json.dumps(step.to_dict(), allow_nan=False)  # raises on a bare NaN
    assert json.loads(text)["tool_result"]["data"] == {"v": "NaN"}
