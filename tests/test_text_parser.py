"""The JSON-in-text tool-call parser (row A1 seed table) and the text-only backend adapter."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from looplet import LLMRequest, Message, ParseError, ToolCall
from looplet.backends.text import (
    FORMAT_HELP,
    AsyncTextBackend,
    TextBackend,
    parse_arguments,
    parse_tool_calls,
    render_prompt,
    wrap_backend,
)

GREET = ToolCall(tool="greet", args={"name": "Alice"})


def names_and_args(calls: list[ToolCall]) -> list[tuple[str, dict[str, Any]]]:
    return [(c.tool, c.args) for c in calls]


# -- A1: seeds that parse ------------------------------------------------------------------------

PARSES = {
    "plain": ('{"tool": "greet", "args": {"name": "Alice"}}', [("greet", {"name": "Alice"})]),
    "code fence": (
        'Sure!\n```json\n{"tool": "greet", "args": {"name": "Alice"}}\n```\nDone.',
        [("greet", {"name": "Alice"})],
    ),
    "prose around": (
        'I will greet her now: {"tool": "greet", "args": {"name": "Alice"}} and then stop.',
        [("greet", {"name": "Alice"})],
    ),
    "trailing comma": (
        '{"tool": "greet", "args": {"name": "Alice",},}',
        [("greet", {"name": "Alice"})],
    ),
    "single quotes": (
        "{'tool': 'greet', 'args': {'name': 'Alice'}}",
        [("greet", {"name": "Alice"})],
    ),
    "python literals": (
        '{"tool": "flag", "args": {"on": True, "off": False, "none": None}}',
        [("flag", {"on": True, "off": False, "none": None})],
    ),
    "raw newline in string": (
        '{"tool": "write", "args": {"text": "a\nb"}}',
        [("write", {"text": "a\nb"})],
    ),
    "raw tab in string": (
        '{"tool": "write", "args": {"text": "a\tb"}}',
        [("write", {"text": "a\tb"})],
    ),
    "bad escape": (
        '{"tool": "grep", "args": {"pattern": "\\d+"}}',
        [("grep", {"pattern": "\\d+"})],
    ),
    "two objects": (
        '{"tool": "a", "args": {}}\n{"tool": "b", "args": {"x": 1}}',
        [("a", {}), ("b", {"x": 1})],
    ),
    "array of calls": (
        '[{"tool": "a", "args": {}}, {"tool": "b", "args": {}}]',
        [("a", {}), ("b", {})],
    ),
    "batch object": (
        '{"tools": [{"tool": "a", "args": {}}, {"tool": "b"}]}',
        [("a", {}), ("b", {})],
    ),
    "bom": ('\ufeff{"tool": "greet", "args": {"name": "Alice"}}', [("greet", {"name": "Alice"})]),
    "nul bytes": (
        '{"tool": "greet", "args": {"name": "Alice"}}\x00\x00',
        [("greet", {"name": "Alice"})],
    ),
    "name and arguments keys": (
        '{"name": "greet", "arguments": {"name": "A"}}',
        [("greet", {"name": "A"})],
    ),
    "openai shape": (
        '{"id": "call_1", "type": "function", '
        '"function": {"name": "greet", "arguments": "{\\"name\\": \\"A\\"}"}}',
        [("greet", {"name": "A"})],
    ),
    "double encoded args": (
        '{"tool": "greet", "args": "{\\"name\\": \\"A\\"}"}',
        [("greet", {"name": "A"})],
    ),
    "no args": ('{"tool": "ping"}', [("ping", {})]),
    "null args": ('{"tool": "ping", "args": null}', [("ping", {})]),
    "empty string args": ('{"tool": "ping", "args": ""}', [("ping", {})]),
    "negative numbers in python form": (
        "{'tool': 'move', 'args': {'dx': -3, 'dy': +2}}",
        [("move", {"dx": -3, "dy": 2})],
    ),
    "unicode": (
        '{"tool": "say", "args": {"text": "héllo ☃ 你好"}}',
        [("say", {"text": "héllo ☃ 你好"})],
    ),
    "braces in prose first": ('use {tool} like [this]: {"tool": "a", "args": {}}', [("a", {})]),
}


@pytest.mark.parametrize("text, expected", list(PARSES.values()), ids=list(PARSES))
def test_parses_when_the_intent_is_unambiguous(text: str, expected: list[Any]) -> None:
    assert names_and_args(parse_tool_calls(text)) == expected


def test_reasoning_and_call_id_are_kept() -> None:
    (call,) = parse_tool_calls('{"tool": "a", "args": {}, "reasoning": "because", "call_id": 7}')
    assert call.reasoning == "because" and call.call_id == "7"
    (call,) = parse_tool_calls('{"tool": "a", "thought": {"plan": 1}, "id": "x"}')
    assert call.reasoning == '{"plan": 1}' and call.call_id == "x"


# -- A1/A2: seeds that do not parse, or parse with a problem -------------------------------------

FAILS = {
    "empty": ("", "no JSON tool call found"),
    "prose only": ("I think we are done here.", "no JSON tool call found"),
    "truncated": ('{"tool": "greet", "args": {"name": "Ali', "cut off"),
    "truncated array": ('[{"tool": "a"}, {"tool": "b"', "cut off"),
    "not a call": ('{"answer": 42}', 'no "tool" key'),
    "empty name": ('{"tool": "  ", "args": {}}', 'no "tool" key'),
    "nonsense inside": ('{"tool": "a", "args": {"x": <<>>}}', "invalid"),
    "set literal": ("{'tool': 'a', 'args': {1, 2}}", "invalid"),
    "non-string key": ("{'tool': 'a', 'args': {1: 'x'}}", "invalid"),
}


@pytest.mark.parametrize("text, fragment", list(FAILS.values()), ids=list(FAILS))
def test_unreadable_replies_raise_parse_error_with_the_format(text: str, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_tool_calls(text)
    assert fragment in str(info.value)
    assert FORMAT_HELP in str(info.value)
    assert info.value.raw == text[:2000]


def test_non_text_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="expected text"):
        parse_tool_calls(None)  # type: ignore[arg-type]


def test_huge_reply_is_refused_with_a_cut_raw() -> None:
    with pytest.raises(ParseError, match="over") as info:
        parse_tool_calls("x" * 2_000_001)
    assert len(info.value.raw) == 200


def test_deeply_nested_reply_raises_parse_error_not_recursion_error() -> None:
    for depth in (900, 5_000, 100_000):
        with pytest.raises(ParseError):
            parse_tool_calls("[" * depth + "]" * depth)
        try:
            (call,) = parse_tool_calls('{"tool": "a", "args": ' + "[" * depth + "]" * depth + "}")
        except ParseError:
            continue
        assert call.args == {} and call.parse_error == "arguments must be a JSON object, got array"


@pytest.mark.parametrize(
    "raw, problem",
    [
        ("[]", "arguments must be a JSON object, got array"),
        ("3", "arguments must be a JSON object, got int"),
        ('"str"', "arguments must be a JSON object, got str"),
        ("{not json", "arguments are not valid JSON"),
        ([1], "arguments must be a JSON object, got array"),
    ],
)
def test_arguments_that_are_not_an_object_are_a_problem_never_a_silent_empty_dict(
    raw: Any, problem: str
) -> None:
    args, found = parse_arguments(raw)
    assert args == {} and found is not None and found.startswith(problem)


def test_arguments_that_are_not_an_object_mark_the_call() -> None:
    (call,) = parse_tool_calls('{"tool": "greet", "args": [1, 2]}')
    assert call.args == {} and call.parse_error == "arguments must be a JSON object, got array"


def test_parse_arguments_accepts_objects_and_empties() -> None:
    assert parse_arguments({"a": 1}) == ({"a": 1}, None)
    assert parse_arguments(None) == ({}, None)
    assert parse_arguments("  ") == ({}, None)
    assert parse_arguments('{"a": 1,}') == ({"a": 1}, None)


def test_many_false_starts_before_the_call_are_survived() -> None:
    noise = "{x} " * 100
    assert names_and_args(parse_tool_calls(noise + '{"tool": "a", "args": {}}')) == [("a", {})]


def test_valid_json_strings_are_kept_byte_for_byte() -> None:
    text = json.dumps({"tool": "say", "args": {"text": "\ufeff lead\x00 nul \u2028 sep"}})
    assert parse_tool_calls(text)[0].args == {"text": "\ufeff lead\x00 nul \u2028 sep"}


# -- rendering and the text backend --------------------------------------------------------------


def request(**kw: Any) -> LLMRequest:
    base: dict[str, Any] = {
        "messages": [
            Message("user", "Greet Alice"),
            Message("assistant", "", (GREET,)),
            Message("tool", '{"greeting":"Hi"}', call_id="c1", name="greet"),
            Message("assistant", "", (GREET, ToolCall("done", {"answer": "x"}))),
        ],
        "system": "SYSTEM",
        "tools": [{"name": "greet", "description": "Greet.", "parameters": {"type": "object"}}],
    }
    base.update(kw)
    return LLMRequest(**base)


def test_render_prompt_has_system_tools_format_and_conversation() -> None:
    text = render_prompt(request(extra=("be brief",)))
    assert text.startswith('SYSTEM\n\n## Tools\n- greet: Greet.\n  parameters: {"type":"object"}')
    assert FORMAT_HELP in text
    assert "[user]\nGreet Alice" in text
    assert '[assistant]\n{"tool": "greet", "args": {"name": "Alice"}}' in text
    assert '[tool result: greet #c1]\n{"greeting":"Hi"}' in text
    assert '"tools": [' in text
    assert text.endswith("[user]\nbe brief")


def test_render_prompt_without_system_or_tools() -> None:
    text = render_prompt(LLMRequest(messages=[Message("user", "hi")]))
    assert text == "## Conversation\n[user]\nhi"


def test_text_backend_sends_the_whole_prompt_and_reads_text_back() -> None:
    class Echo:
        def __init__(self) -> None:
            self.prompts: list[str] = []

        def generate(self, prompt: str) -> str:
            self.prompts.append(prompt)
            return '{"tool": "done", "args": {"answer": "ok"}}'

    llm = Echo()
    backend, is_async = wrap_backend(llm)
    assert isinstance(backend, TextBackend) and not is_async and "Echo" in repr(backend)
    req = request()
    response = backend.complete(req)
    assert response.text.startswith('{"tool": "done"') and response.tool_calls == []
    assert llm.prompts[0] == render_prompt(req) == backend.last_prompt
    # a grown history renders the same as from scratch
    longer = request(messages=[*req.messages, Message("user", "more")])
    backend.complete(longer)
    assert llm.prompts[1] == render_prompt(longer)
    shorter = request(messages=[Message("user", "other")])
    backend.complete(shorter)
    assert llm.prompts[2] == render_prompt(shorter)


def test_text_backend_rejects_a_non_string_reply() -> None:
    class Wrong:
        def generate(self, prompt: str) -> Any:
            return {"tool": "x"}

    backend, _ = wrap_backend(Wrong())
    with pytest.raises(TypeError, match="must return a str"):
        backend.complete(request())


def test_async_text_backend() -> None:
    class AsyncEcho:
        async def generate(self, prompt: str) -> str:
            return "hello"

    backend, is_async = wrap_backend(AsyncEcho())
    assert isinstance(backend, AsyncTextBackend) and is_async
    assert asyncio.run(backend.complete(request())).text == "hello"


def test_request_conversation_appends_extra_as_a_user_turn() -> None:
    req = request(extra=("a", "b"))
    assert req.conversation()[-1] == Message("user", "a\n\nb")
    assert request().conversation() == list(request().messages)
