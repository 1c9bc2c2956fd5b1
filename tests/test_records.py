"""Records: result normalisation (B4, B6), Step.pretty(), masked repr (I1), round trips, categories."""

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
from looplet.types import ErrorCategory


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
        (BrokenToDict(), {"$repr": "BrokenToDict()", "error": "to_dict() raised RuntimeError: nope"}),
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
        ("x" * 100, "'" + "x" * 58 + "…"),
    ],
)
def test_pretty_summarises_the_data(data: Any, summary: str) -> None:
    assert f"→ {summary} [" in make_step({}, data).pretty()


@pytest.mark.parametrize("data", [[1], {"result": ["a"]}, {"items": [{"id": 1}]}])
def test_pretty_counts_one_item_in_the_singular(data: Any) -> None:
    # item 32: "1 items"
    assert "→ 1 item [" in make_step({}, data).pretty()


@pytest.mark.parametrize(
    "data, summary",
    [
        ({"greeting": "Hi"}, "greeting: 'Hi'"),
        ({"a": 1, "b": "x"}, "a: 1, b: 'x'"),
        ({"saved": "milk", "notes": 1, "ok": True}, "saved: 'milk', notes: 1, ok: True"),
        ({"a": 1, "tags": ["x", "y"]}, "a: 1, tags: ['x', 'y']"),
        ({"a": {"b": 2}, "c": None}, "a: {'b': 2}, c: None"),
        ({f"k{i}": i for i in range(12)}, "k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, …"),
        ({"a": "y" * 100, "b": 2}, "a: '" + "y" * 38 + "…, b: 2"),
    ],
)
def test_pretty_shows_every_dict_in_one_key_value_style(data: Any, summary: str) -> None:
    # item 32: a one-key dict printed `key: 'v'`, a larger one printed JSON
    assert f"→ {summary} [" in make_step({}, data).pretty()


def test_pretty_cuts_a_wide_dict_to_a_fixed_width() -> None:
    line = make_step({}, {f"key_{i}": "v" * 30 for i in range(6)}).pretty()
    summary = line.split(" → ")[1].rsplit(" [", 1)[0]
    assert len(summary) == 80 and summary.endswith("…") and summary.startswith("key_0: '")


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


# An env secret long enough that a value holding it is cut inside it, and one with a
# backslash and quotes, whose escaped form is what a repr or JSON shows.
LONG_SECRET = "acme-" + "Qz7Xw9Kv3" * 8
ESCAPED_SECRET = 'pw\\with"quote\'s-Zk41'


def secret_windows(secret: str, size: int = 6) -> list[str]:
    """Every `size`-character piece of `secret`: any of them showing is a partial leak."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


@pytest.fixture
def env_secrets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("ACME_API_TOKEN", LONG_SECRET)
    monkeypatch.setenv("ACME_DB_PASSWORD", ESCAPED_SECRET)
    return [LONG_SECRET, ESCAPED_SECRET]


def assert_nothing_of(secrets: list[str], text: str) -> None:
    for secret in secrets:
        for piece in secret_windows(secret):
            assert piece not in text, f"{piece!r} of a secret shows in {text!r}"
        assert json.dumps(secret)[1:-1] not in text and repr(secret)[1:-1] not in text


@pytest.mark.parametrize("offset", [0, 5, 30, 90, 180, 250])
def test_pretty_masks_a_secret_that_a_cut_runs_through(env_secrets: list[str], offset: int) -> None:
    # I1 (pretty): a long value is cut to width in the middle of a secret; no piece of it shows
    padded = "x" * offset + LONG_SECRET + "z" * 300
    step = make_step({"text": padded, "nested": {"deep": [padded]}}, {"echo": padded})
    assert_nothing_of(env_secrets, step.pretty())
    step = make_step({"a": 1}, {"first": padded, "second": [padded], "third": 3})
    assert_nothing_of(env_secrets, step.pretty())
    step = make_step({}, error="E: " + padded)
    assert_nothing_of(env_secrets, step.pretty())


def test_pretty_masks_the_escaped_form_of_a_secret(env_secrets: list[str]) -> None:
    # item 12: repr() and JSON escape the backslash and the quotes of this secret
    step = make_step({"dsn": f"db {ESCAPED_SECRET}"}, {"a": ESCAPED_SECRET, "b": [ESCAPED_SECRET]})
    line = step.pretty()
    assert_nothing_of(env_secrets, line)
    assert "[REDACTED]" in line


def test_pretty_masks_known_key_shapes_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-" + "A1b2C3d4E5f6G7h8I9j0" * 3
    step = make_step({"auth": key, "note": "x" * 25 + key}, {"echo": key})
    step.tool_result.warnings = [f"used {key}"]
    line = step.pretty()
    assert "A1b2C3d4" not in line and "[REDACTED]" in line
    line = make_step({}, error=f"401 for key {key}").pretty()
    assert "A1b2C3d4" not in line and "[REDACTED]" in line


def test_pretty_shows_tool_warnings_after_the_time() -> None:
    # item 32: ctx.warn() warnings were absent from pretty()
    step = make_step({}, {"rows": 3})
    step.tool_result.warnings = ["cut to 100 rows"]
    assert step.pretty().endswith("[0.1ms] ⚠ 1 warning: cut to 100 rows")
    step.tool_result.warnings = ["slow source", "stale cache\nline"]
    assert step.pretty().endswith("[0.1ms] ⚠ 2 warnings: slow source; stale cache⏎line")
    step.tool_result.warnings = ["w" * 200]
    assert step.pretty().endswith("⚠ 1 warning: " + "w" * 79 + "…")


def test_pretty_shows_the_text_of_a_reply_without_a_tool_call() -> None:
    # item 32/31: "#1 ✗ () → ..." hid what the model said
    call = ToolCall(tool="", reasoning="Hello! How can I help you today?", parse_error="no call")
    result = ToolResult(tool="", error="Your reply had no tool call.", error_kind=ErrorKind.NO_TOOL_CALL)
    line = Step(number=1, tool_call=call, tool_result=result).pretty()
    assert line == '#1 ✗ (text) "Hello! How can I help you today?" → Your reply had no tool call. [0.0ms]'
    call.reasoning = "A much longer answer that goes on\nand on " + "blah " * 50
    line = Step(number=2, tool_call=call, tool_result=result).pretty()
    assert line.startswith('#2 ✗ (text) "A much longer answer that goes on⏎and o…" → ')
    call.reasoning = "  "
    assert "#2 ✗ (empty reply) → " in Step(number=2, tool_call=call, tool_result=result).pretty()


def test_pretty_shows_a_models_text_answer_in_a_real_run(drive: Any) -> None:
    tools = BaseToolRegistry()
    register_done_tool(tools)
    steps, _ = drive(MockLLMBackend(["Sure, here is the plan.", done()]), tools=tools)
    assert steps[0].pretty().startswith('#1 ✗ (text) "Sure, here is the plan." → ')


def test_pretty_cuts_long_errors() -> None:
    line = make_step({}, error="E" * 5000).pretty()
    assert "E" * 199 + "…" in line and len(line) < 260


def test_pretty_and_repr_never_raise_on_records_a_hook_filled_oddly() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no str")

        __repr__ = __str__

    class RefusingDict(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise RuntimeError("no items")

    odd = ToolResult("t", data=RefusingDict(a=1), warnings=[Unprintable()])
    odd.duration_ms = "12ms"  # type: ignore[assignment]
    step = Step(1, ToolCall("t", {"a": Unprintable()}), odd)
    assert step.pretty() == "#1 ✓ <step that cannot be shown: RuntimeError>"
    assert repr(step).startswith("Step(number=1, tool_call=ToolCall(tool='t', args=<dict>")
    warned = ToolResult("t", data={"a": 1}, warnings=[Unprintable()])
    fine = Step(1, ToolCall("t", {"a": Unprintable()}), warned)
    assert fine.pretty() == "#1 ✓ t(a=<Unprintable>) → a: 1 [0.0ms] ⚠ 1 warning: <Unprintable>"


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
    assert not run.ok and run.to_dict()["error"] == "ValueError: x" == run.error_text
    assert RunResult(stop_reason="done", steps=[]).ok
    assert RunResult(stop_reason="done", steps=[]).to_dict()["error"] is None


# -- secrets in repr() and the run result (items 9, 10) ------------------------------------------


def secret_records(secrets: list[str]) -> tuple[ToolCall, ToolResult, Step, RunResult]:
    key = "sk-ant-api03-Zq9Zq9Zq9Zq9"
    text = f"{key} {' '.join(secrets)}"
    call = ToolCall("login", {"dsn": text, "nested": [{"k": text}], text: 1}, reasoning=text)
    result = ToolResult(
        "login", args_summary=text, data={"echo": text}, error=text, warnings=[text],
        metadata={"m": text},
    )
    step = Step(1, call, result, metadata={"note": text})
    run = RunResult(
        stop_reason="hook_error", steps=[step], error=RuntimeError(text), detail=f"hook raised {text}",
        dropped_calls=[call], final_answer={"answer": text},
    )
    return call, result, step, run


def test_repr_of_every_record_masks_secrets(env_secrets: list[str]) -> None:
    # item 10: repr() showed secrets raw while pretty() masked them
    for record in secret_records(env_secrets):
        text = repr(record)
        assert_nothing_of(env_secrets, text)
        assert "api03" not in text and "[REDACTED]" in text
        assert text.startswith(f"{type(record).__name__}(")


def test_repr_stays_dataclass_style() -> None:
    call = ToolCall("t", {"a": 1}, call_id="c1")
    assert repr(call) == "ToolCall(tool='t', args={'a': 1}, reasoning='', call_id='c1', parse_error=None)"
    assert repr(ToolResult("t", data={"x": [1]})) == (
        "ToolResult(tool='t', args_summary='', data={'x': [1]}, error=None, error_kind=None, "
        "retriable=False, duration_ms=0.0, warnings=[], metadata={}, call_id='')"
    )
    assert repr(Step(1, call, ToolResult("t"))).startswith("Step(number=1, tool_call=ToolCall(tool='t'")
    assert repr(RunResult("done", [])).startswith("RunResult(stop_reason='done', steps=[], final_answer=None")


def test_run_result_masks_error_and_detail_text(env_secrets: list[str]) -> None:
    # item 9: error and detail carried exception text unmasked
    *_, run = secret_records(env_secrets)
    out = run.to_dict()
    for text in (out["error"], out["detail"], run.detail, run.error_text):
        assert_nothing_of(env_secrets, text)
        assert "api03" not in text and "[REDACTED]" in text
    assert out["error"].startswith("RuntimeError: [REDACTED]")
    assert isinstance(run.error, RuntimeError), "the exception object itself is kept"


def test_step_dicts_stay_lossless_so_records_round_trip(env_secrets: list[str]) -> None:
    # the documented rule: to_dict() is the record (writers redact), renderings mask
    call, result, step, run = secret_records(env_secrets)
    assert Step.from_dict(json.loads(json.dumps(step.to_dict()))) == step
    assert run.to_dict()["steps"][0] == step.to_dict()
    assert LONG_SECRET in json.dumps(step.to_dict())


def test_a_hooks_exception_is_masked_in_the_run_result(drive: Any, env_secrets: list[str]) -> None:
    # item 9 through the real loop: a hook raises with a secret in its message
    class Leaky:
        def pre_prompt(self, state: Any, log: Any, ctx: Any, step: int) -> Any:
            raise RuntimeError(f"cannot reach {LONG_SECRET} with {ESCAPED_SECRET}")

    tools = BaseToolRegistry()
    register_done_tool(tools)
    _, result = drive(MockLLMBackend([done()]), tools=tools, hooks=[Leaky()])
    assert result.stop_reason == "hook_error"
    out = result.to_dict()
    for text in (out["error"], out["detail"], result.detail, repr(result), str(result.error_text)):
        assert_nothing_of(env_secrets, text)


# -- the original looplet's surface (item 33) -------------------------------------------------


def test_step_elapsed_ms_is_the_tools_own_time() -> None:
    step = make_step({}, {"a": 1}, ms=182.5)
    step.llm_ms = 900.0
    assert step.elapsed_ms == 182.5


@pytest.mark.parametrize(
    "kind, category",
    [
        (ErrorKind.PARSE, "validation"),
        (ErrorKind.VALIDATION, "validation"),
        (ErrorKind.NO_TOOL_CALL, "validation"),
        (ErrorKind.EXECUTION, "unknown"),
        (ErrorKind.TIMEOUT, "timeout"),
        (ErrorKind.DENIED, "permission_denied"),
        (ErrorKind.BLOCKED, "permission_denied"),
        (ErrorKind.HOOK_ERROR, "unknown"),
        (ErrorKind.BUSY, "rate_limit"),
        (ErrorKind.CANCELLED, "cancelled"),
        ("bad_result", "unknown"),
        ("a_kind_added_later", "unknown"),
        (None, "unknown"),
    ],
)
def test_error_kinds_read_as_the_original_error_categories(kind: Any, category: str) -> None:
    assert ToolResult("t", error="boom", error_kind=kind).error_category == category


def test_every_error_kind_has_a_category_and_success_has_none() -> None:
    kinds = [v for k, v in vars(ErrorKind).items() if k.isupper()]
    categories = {v for k, v in vars(ErrorCategory).items() if k.isupper()}
    assert categories == {
        "timeout", "validation", "permission_denied", "rate_limit", "context_overflow", "cancelled",
        "unknown",
    }
    assert all(ToolResult("t", error="x", error_kind=k).error_category in categories for k in kinds)
    assert ToolResult("t", data={"a": 1}).error_category is None


@pytest.mark.parametrize(
    "exception, category",
    [("TimeoutError", "timeout"), ("PermissionError", "permission_denied"), ("KeyError", "unknown")],
)
def test_a_tools_exception_type_refines_its_category(exception: str, category: str) -> None:
    result = ToolResult("t", error="x", error_kind=ErrorKind.EXECUTION, metadata={"exception": exception})
    assert result.error_category == category


def test_real_tool_errors_read_as_their_categories(drive: Any) -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def fetch() -> str:
        """Fetch."""
        raise PermissionError("no access")

    register_done_tool(tools)
    steps, _ = drive(MockLLMBackend([as_text("fetch"), as_text("nope"), done()]), tools=tools)
    assert [s.tool_result.error_category for s in steps] == ["permission_denied", "validation", None]


class KindError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@pytest.mark.parametrize(
    "stop, error, category",
    [
        ("done", None, None),
        ("max_steps", None, None),
        ("hook_stop:budget", None, None),
        ("deadline", None, "timeout"),
        ("cancelled", None, "cancelled"),
        ("context_overflow", None, "context_overflow"),
        ("hook_error", RuntimeError("x"), "unknown"),
        ("llm_error", KindError("rate_limit"), "rate_limit"),
        ("llm_error", KindError("overloaded"), "rate_limit"),
        ("llm_error", KindError("context_length"), "context_overflow"),
        ("llm_error", KindError("timeout"), "timeout"),
        ("llm_error", KindError("auth"), "permission_denied"),
        ("llm_error", KindError("server"), "unknown"),
        ("llm_error", RuntimeError("no kind"), "unknown"),
    ],
)
def test_run_results_read_as_the_original_error_categories(
    stop: str, error: BaseException | None, category: str | None
) -> None:
    assert RunResult(stop_reason=stop, steps=[], error=error).error_category == category


def test_nan_in_usage_or_data_never_breaks_json() -> None:
    step = make_step({}, normalize_result({"v": math.nan}))
    text = json.dumps(step.to_dict(), allow_nan=False)  # raises on a bare NaN
    assert json.loads(text)["tool_result"]["data"] == {"v": "NaN"}


def test_a_records_repr_stays_bounded_for_a_huge_value_and_never_shows_a_cut_secret(
    monkeypatch: Any,
) -> None:
    secret = "Zq" + "x9" * 40
    monkeypatch.setenv("HUGE_TEST_API_KEY", secret)
    big = "a" * (65_536 - 30) + secret + "b" * 10_000_000  # the secret straddles the repr's cut
    step = Step(1, ToolCall("t", {"x": big, "rows": list(range(100_000))}), ToolResult("t"))
    text = repr(step)
    assert len(text) < 100_000 and "more" in text
    assert secret[:12] not in text  # the half secret at the cut was dropped with the margin
