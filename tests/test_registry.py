"""Registering tools: names and time limits checked up front; the original's `dispatch` and `catalog`.

Rows: issue 6 items 16 (time limits), 26 (the shown signature comes from the
schema), 32 (names providers accept) and 33 (the original looplet's frozen
`BaseToolRegistry.dispatch(call)` and `.catalog()`).
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
from typing import Any, Literal

import pytest

from looplet import BaseToolRegistry, ErrorKind, ToolCall, ToolContext, register_done_tool
from looplet.errors import ConfigError, ToolDefinitionError
from looplet.tools import ToolSpec, tool
from looplet.tools.validation import check_timeout

# -- time limits (item 16) --------------------------------------------------------------------------

BAD_TIMEOUTS = [
    math.inf,
    -math.inf,
    math.nan,
    0,
    -1.0,
    threading.TIMEOUT_MAX * 2,
    1e300,
    True,
    False,
    "5",
    [5],
]


def noop() -> None:
    """Do nothing."""


@pytest.mark.parametrize("value", BAD_TIMEOUTS, ids=repr)
def test_time_limits_threads_cannot_wait_for_are_refused_at_registration(value: Any) -> None:
    allowed = re.escape(f"at most {threading.TIMEOUT_MAX:.0f} (threading.TIMEOUT_MAX)")
    with pytest.raises(ToolDefinitionError, match="timeout_s") as raised:
        tool(timeout_s=value)
    assert re.search(allowed, str(raised.value)) and "or None for no limit" in str(raised.value)
    with pytest.raises(ToolDefinitionError, match=allowed):
        BaseToolRegistry().register(noop, timeout_s=value)
    with pytest.raises(ToolDefinitionError, match=allowed):
        BaseToolRegistry().tool(timeout_s=value)
    with pytest.raises(ToolDefinitionError, match=allowed):
        BaseToolRegistry([ToolSpec("noop", "Do nothing.", {"type": "object"}, fn=noop, timeout_s=value)])


@pytest.mark.parametrize("value", [None, 0.001, 1, 30.5, threading.TIMEOUT_MAX])
def test_time_limits_in_range_are_kept(value: Any) -> None:
    spec = BaseToolRegistry().register(noop, timeout_s=value)
    assert spec.timeout_s == value


def test_the_time_limit_check_is_shared_with_the_config() -> None:
    with pytest.raises(ConfigError, match=r"tool_timeout_s must be a number of seconds above 0"):
        check_timeout("tool_timeout_s", math.inf, error=ConfigError)
    assert check_timeout("tool_timeout_s", 5, error=ConfigError) == 5
    assert check_timeout("tool_timeout_s", None) is None


# -- names providers accept (item 32) -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["<lambda>", "has space", "dotted.name", "café", "x" * 65, "a/b"])
def test_names_providers_reject_are_refused_with_a_hint_to_pass_name(name: str) -> None:
    fn: Any = lambda: None  # noqa: E731
    fn.__name__ = name
    with pytest.raises(ToolDefinitionError, match="pass name=") as raised:
        BaseToolRegistry([fn])
    assert repr(name) in str(raised.value) and "1-64" in str(raised.value)
    with pytest.raises(ToolDefinitionError, match="name="):
        BaseToolRegistry().register(noop, name=name)
    with pytest.raises(ToolDefinitionError, match="name="):
        BaseToolRegistry([ToolSpec(name, "Odd.", {"type": "object"}, fn=noop)])
    with pytest.raises(ToolDefinitionError, match="name="):
        register_done_tool(BaseToolRegistry(), name=name)
    with pytest.raises(ToolDefinitionError, match="name="):
        tool(name=name)


def test_a_lambda_registers_once_it_is_given_a_name() -> None:
    tools = BaseToolRegistry()
    spec = tools.register(lambda: "hi", name="say-hi_2")
    assert spec.name == "say-hi_2" and tools.register(noop, name="x" * 64).name == "x" * 64


# -- the shown signature comes from the schema (item 26) ---------------------------------------------


def test_a_tool_with_an_explicit_schema_shows_that_schema_in_its_errors() -> None:
    tools = BaseToolRegistry()
    register_done_tool(
        tools,
        parameters={
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
            "additionalProperties": False,
        },
    )
    outcome = tools.prepare(ToolCall("done", {}))
    assert not isinstance(outcome, ToolSpec)
    error = getattr(outcome, "error", "")
    assert "missing required argument(s): answer" in error
    assert error.endswith("Expected: done(answer: str)")


@pytest.mark.parametrize(
    "parameters, shown",
    [
        ({"type": "object"}, "t(**kwargs)"),
        ({"type": "object", "properties": {}, "additionalProperties": False}, "t()"),
        (
            {
                "type": "object",
                "properties": {
                    "q": {"type": "string"},
                    "n": {"type": "integer", "default": 3},
                    "mode": {"enum": ["a", "b"]},
                    "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                    "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "number"}]},
                    "opts": {"type": "object", "additionalProperties": {"type": "boolean"}},
                    "where": {
                        "type": "object",
                        "properties": {"x": {"type": "integer"}, "label": {"type": ["string", "null"]}},
                        "required": ["x"],
                    },
                    "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
                    "anything": {},
                    "one": {"const": 1},
                },
                "required": ["q", "where"],
                "additionalProperties": {"type": "integer"},
            },
            "t(q: str, n: int = 3, mode?: Literal['a', 'b'], tags?: set[str], "
            "pair?: tuple[int, float], opts?: dict[str, bool], "
            "where: {x: int, label?: str | None}, maybe: int | None = None, anything?: Any, "
            "one?: Literal[1], **kwargs: int)",
        ),
    ],
)
def test_the_signature_is_read_from_the_schema(parameters: dict[str, Any], shown: str) -> None:
    spec = BaseToolRegistry().register(noop, name="t", parameters=parameters)
    assert spec.signature == shown


def test_the_signature_follows_the_schema_when_the_schema_changes() -> None:
    spec = BaseToolRegistry().register(noop, name="t", parameters={"type": "object", "properties": {}})
    spec.parameters = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    assert spec.signature == "t(a: int, **kwargs)"


# -- dispatch(call) and catalog() (item 33) -------------------------------------------------------------


def sample_tools() -> tuple[BaseToolRegistry, list[Any]]:
    tools = BaseToolRegistry()
    ran: list[Any] = []

    @tools.tool
    def add(a: int, b: int = 1) -> int:
        """Add two numbers.

        Args:
            a: the first number.
            b: the second number.
        """
        ran.append((a, b))
        return a + b

    @tools.tool
    async def shout(text: str, style: Literal["loud", "quiet"] = "loud") -> str:
        """Shout the text."""
        await asyncio.sleep(0)
        return text.upper()

    @tools.tool
    def whoami(ctx: ToolContext) -> str:
        """Say which call this is."""
        return f"{ctx.tool}:{ctx.call_id}"

    register_done_tool(tools)
    return tools, ran


def test_dispatch_validates_and_runs_one_call_outside_a_loop() -> None:
    tools, ran = sample_tools()
    result = tools.dispatch(ToolCall("add", {"a": 2.0, "b": 3}, call_id="c1"))
    assert result.ok and result.data == {"result": 5} and result.call_id == "c1"
    assert ran == [(2, 3)] and type(ran[0][0]) is int
    assert tools.dispatch(ToolCall("shout", {"text": "hi"})).data == {"result": "HI"}
    assert tools.dispatch(ToolCall("whoami", {}, call_id="c9")).data == {"result": "whoami:c9"}
    done = tools.dispatch(ToolCall("done", {"summary": "all good"}))
    assert done.ok and done.data == {"summary": "all good"}


def test_dispatch_answers_bad_calls_with_an_error_result_and_never_runs_them() -> None:
    tools, ran = sample_tools()
    wrong = tools.dispatch(ToolCall("add", {"a": "two"}))
    assert wrong.error_kind == ErrorKind.VALIDATION and "Expected: add(a: int, b: int = 1)" in (
        wrong.error or ""
    )
    unknown = tools.dispatch(ToolCall("ad", {"a": 1}))
    assert unknown.error_kind == ErrorKind.VALIDATION and "Did you mean 'add'?" in (unknown.error or "")
    assert ran == []


def test_dispatch_honours_the_tools_time_limit() -> None:
    release = threading.Event()
    tools = BaseToolRegistry()

    @tools.tool(timeout_s=0.05)
    def stuck() -> str:
        """Wait for the test."""
        release.wait(10)
        return "late"

    try:
        result = tools.dispatch(ToolCall("stuck", {}))
    finally:
        release.set()
    assert result.error_kind == ErrorKind.TIMEOUT and result.retriable


def test_dispatch_turns_what_a_tool_raises_into_an_error_result() -> None:
    tools = BaseToolRegistry()

    @tools.tool
    def broken() -> None:
        """Fail."""
        raise ValueError("no luck")

    result = tools.dispatch(ToolCall("broken", {}))
    assert result.error_kind == ErrorKind.EXECUTION and "ValueError: no luck" in (result.error or "")


def test_the_catalog_lists_every_tool_with_its_signature_and_description() -> None:
    tools, _ = sample_tools()
    text = tools.catalog()
    assert text.splitlines() == [
        "Available tools:",
        "  add(a: int, b: int = 1)",
        "    Add two numbers.",
        "      a: the first number.",
        "      b: the second number.",
        "  shout(text: str, style: Literal['loud', 'quiet'] = 'loud')",
        "    Shout the text.",
        "  whoami()",
        "    Say which call this is.",
        "  done(answer?: str, summary?: str)",
        *[f"    {line}" for line in tools.get("done").description.splitlines()],  # type: ignore[union-attr]
        "      answer: The final answer, or a summary of what was done.",
        "      summary: The same as answer (the name looplet 1.x's done tool used).",
    ]
    assert BaseToolRegistry().catalog() == "No tools."


def test_the_size_check_of_a_huge_list_stops_at_the_limit() -> None:
    import tracemalloc

    from looplet.tools.validation import measure

    rows = list(range(1_000_000))
    tracemalloc.start()
    depth, size = measure({"rows": rows}, 64, 1_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert size > 1_000 and peak < 100_000  # no per-item copy of a list already too big
